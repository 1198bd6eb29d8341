"""Drives pgwarden with Python's asyncpg (its default statement cache:
named prepared statements) and psycopg 3 (prepare_threshold=0: every
query prepared; and its default mode with SQL PREPARE/EXECUTE), many
connections at once over few servers, and checks every answer. Usage: python_drivers.py DSN. Prints OK on success."""
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


async def psycopg_sql_prepare(dsn, i):
    """SQL PREPARE/EXECUTE/DEALLOCATE in psycopg's default mode: autocommit
    off (each statement in a transaction), statements prepared by psycopg
    itself after five runs (so EXECUTE becomes a named statement too).
    (psycopg sends DEALLOCATE ALL on ROLLBACK once it has prepared any:
    errors are provoked before that.)"""
    conn = await psycopg.AsyncConnection.connect(dsn)
    try:
        async with conn.cursor() as cur:
            await cur.execute("PREPARE add_one (int) AS SELECT $1 + 1")
            assert cur.statusmessage == "PREPARE", cur.statusmessage
            await conn.commit()
            try:
                await cur.execute("PREPARE add_one AS SELECT 1")
                raise AssertionError("duplicate PREPARE accepted")
            except psycopg.errors.DuplicatePreparedStatement:
                await conn.rollback()
            # PostgreSQL takes no parameters in EXECUTE through the
            # extended protocol: the value is in the text, the same text
            # each time, so that psycopg prepares it after five runs.
            for j in range(12):
                await cur.execute(f"EXECUTE add_one({i})")
                (v,) = await cur.fetchone()
                assert v == i + 1, (v, i, j)
                await conn.commit()
            # The statement psycopg prepared runs whatever add_one is now.
            await cur.execute("DEALLOCATE add_one")
            assert cur.statusmessage == "DEALLOCATE", cur.statusmessage
            await cur.execute("PREPARE add_one (int) AS SELECT $1 + 2")
            await conn.commit()
            for j in range(3):
                await cur.execute(f"EXECUTE add_one({i})")
                assert (await cur.fetchone())[0] == i + 2
                await conn.commit()
            await cur.execute("DEALLOCATE add_one")
            await conn.commit()
            try:
                await cur.execute(f"EXECUTE add_one({i})")
                raise AssertionError("EXECUTE after DEALLOCATE ran")
            except psycopg.errors.InvalidSqlStatementName:
                await conn.rollback()
    finally:
        await conn.close()


async def main(dsn):
    await asyncio.gather(*(asyncpg_client(dsn, i) for i in range(40)))
    await asyncio.gather(*(psycopg_client(dsn, i) for i in range(40)))
    await asyncio.gather(*(psycopg_sql_prepare(dsn, i) for i in range(20)))
    print("OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
