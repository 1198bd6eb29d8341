"""Drives pgwarden with Python's asyncpg (its default statement cache:
named prepared statements) and psycopg 3 (prepare_threshold=0: every
query prepared), many connections at once over few servers, and checks
every answer. Usage: python_drivers.py DSN. Prints OK on success."""
import asyncio
import sys

import asyncpg
import psycopg


async def asyncpg_client(dsn, i):
    conn = await asyncpg.connect(dsn)
    try:
        for j in range(30):
            v = await conn.fetchval("SELECT $1::int + $2::int", i, j)
            assert v == i + j, (v, i, j)
            row = await conn.fetchrow("SELECT $1::text AS t, $2::int * 2 AS n", str(i), j)
            assert row["t"] == str(i) and row["n"] == 2 * j, row
    finally:
        await conn.close()


async def psycopg_client(dsn, i):
    conn = await psycopg.AsyncConnection.connect(dsn, prepare_threshold=0, autocommit=True)
    try:
        async with conn.cursor() as cur:
            for j in range(30):
                await cur.execute("SELECT %s::int + %s::int", (i, j))
                (v,) = await cur.fetchone()
                assert v == i + j, (v, i, j)
    finally:
        await conn.close()


async def main(dsn):
    await asyncio.gather(*(asyncpg_client(dsn, i) for i in range(40)))
    await asyncio.gather(*(psycopg_client(dsn, i) for i in range(40)))
    print("OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
