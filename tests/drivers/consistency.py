"""Write-then-read pairs through pgwarden with a real driver, checking that
every read sees the write just before it (read-your-writes).

Usage: consistency.py DSN DRIVER MODE TABLE N SYNC
  DRIVER/MODE: psycopg extended | psycopg simple | psycopg pipeline |
               psycopg scenarios | asyncpg extended
  SYNC: the session's synchronous_commit (on/off)
Prints one line: "missed M replica R of N"."""
import asyncio
import sys

import asyncpg
import psycopg

READ = "SELECT pg_is_in_recovery(), count(*) FROM {t} WHERE id = %s"


def tally(rows, counts):
    in_recovery, n = rows
    counts[0] += n != 1
    counts[1] += bool(in_recovery)


async def psycopg_pairs(dsn, mode, table, n, sync):
    kw = {"cursor_factory": psycopg.AsyncClientCursor} if mode == "simple" else {}
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, **kw)
    await conn.execute(f"SET synchronous_commit = {sync}")
    counts = [0, 0]
    for i in range(n):
        if mode == "pipeline":
            # A read, the write and the read of it sent back to back.
            async with conn.pipeline():
                c1 = await conn.execute(READ.format(t=table), (-1,))
                await conn.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
            await c1.fetchone()
        else:
            await conn.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
        cur = await conn.execute(READ.format(t=table), (i,))
        tally(await cur.fetchone(), counts)
    await conn.close()
    return counts


async def psycopg_scenarios(dsn, table, n, sync):
    """DDL then a read; a write then a READ ONLY block; a write in a
    transaction block then a read after COMMIT."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"SET synchronous_commit = {sync}")
    counts = [0, 0]
    for i in range(n):
        t = f"{table}_ddl"
        await conn.execute(f"DROP TABLE IF EXISTS {t}")
        await conn.execute(f"CREATE TABLE {t} (id int)")
        try:
            cur = await conn.execute(f"SELECT pg_is_in_recovery(), count(*) + 1 FROM {t}")
            tally(await cur.fetchone(), counts)
        except psycopg.errors.UndefinedTable:
            counts[0] += 1
        await conn.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
        await conn.execute("BEGIN READ ONLY")
        cur = await conn.execute(READ.format(t=table), (i,))
        tally(await cur.fetchone(), counts)
        await conn.execute("COMMIT")
        await conn.execute("BEGIN")
        await conn.execute(f"INSERT INTO {table} VALUES (%s)", (-i - 1,))
        await conn.execute("COMMIT")
        cur = await conn.execute(READ.format(t=table), (-i - 1,))
        tally(await cur.fetchone(), counts)
    await conn.close()
    return counts


async def asyncpg_pairs(dsn, table, n, sync):
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"SET synchronous_commit = {sync}")
    counts = [0, 0]
    read = READ.format(t=table).replace("%s", "$1")
    for i in range(n):
        await conn.execute(f"INSERT INTO {table} VALUES ($1)", i)
        row = await conn.fetchrow(read, i)
        tally((row[0], row[1]), counts)
    await conn.close()
    return counts


async def main(dsn, driver, mode, table, n, sync):
    if driver == "asyncpg":
        counts = await asyncpg_pairs(dsn, table, n, sync)
    elif mode == "scenarios":
        counts = await psycopg_scenarios(dsn, table, n, sync)
        n *= 3
    else:
        counts = await psycopg_pairs(dsn, mode, table, n, sync)
    print(f"missed {counts[0]} replica {counts[1]} of {n}")


if __name__ == "__main__":
    dsn, driver, mode, table, n, sync = sys.argv[1:7]
    asyncio.run(main(dsn, driver, mode, table, int(n), sync))
