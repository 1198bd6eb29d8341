"""Session settings through transaction pooling, set the way drivers set
them: psycopg 3 in its default mode (autocommit off: every SET inside a
transaction block, savepoints for nested transactions) and with
prepare_threshold=0 (every statement a named prepared statement), and
asyncpg. Many clients with different settings share a few servers; each
keeps a model of what its settings must be and checks it after every
transaction. Usage: settings.py DSN [ROUNDS]. Prints OK and the counts.
"""
import asyncio
import random
import sys

import asyncpg
import psycopg

ZONES = ["Asia/Tokyo", "Europe/Paris", "America/New_York", "Australia/Sydney",
         "Africa/Cairo", "America/Sao_Paulo", "Asia/Kolkata"]
CHECK = "SELECT current_setting('TimeZone'), coalesce(current_setting('app.tenant', true), '')"


class Model:
    """What one client's settings must be, and the count of checks."""

    def __init__(self, who):
        self.who = who
        self.tz = None
        self.tenant = ""
        self.checks = 0

    def check(self, row, when):
        tz, tenant = row
        if self.tz is not None and tz != self.tz:
            raise AssertionError(f"{self.who} {when}: TimeZone {tz!r}, expected {self.tz!r}")
        if tenant != self.tenant:
            raise AssertionError(f"{self.who} {when}: app.tenant {tenant!r}, expected {self.tenant!r}")
        self.tz = tz
        self.checks += 1


async def psycopg_client(dsn, i, rounds, prepared):
    """psycopg's default mode, or prepare_threshold=0 with autocommit."""
    kind = "psycopg-prepared" if prepared else "psycopg-default"
    m = Model(f"{kind} {i}")
    rnd = random.Random(f"{kind}{i}")
    kwargs = {"prepare_threshold": 0, "autocommit": True} if prepared else {}
    conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
    try:
        cur = conn.cursor()
        await cur.execute(CHECK)
        m.check(await cur.fetchone(), "at start")
        if not prepared:
            await conn.commit()
        for r in range(rounds):
            zone = rnd.choice(ZONES)
            tenant = f"t{i}_{r}"
            step = rnd.randrange(6)
            async with conn.transaction():
                if step == 0:
                    # SET in a block that commits: it holds.
                    await cur.execute(f"SET TimeZone = '{zone}'")
                    m.tz = zone
                elif step == 1:
                    # A nested transaction (SAVEPOINT) rolled back: dropped.
                    await cur.execute("SELECT 1")
                    try:
                        async with conn.transaction():
                            await cur.execute(f"SET TimeZone = '{zone}'")
                            raise psycopg.Rollback()
                    except psycopg.Rollback:
                        pass
                elif step == 2:
                    # A nested transaction released: kept at the commit;
                    # the value as a parameter (psycopg binds it as $1).
                    async with conn.transaction():
                        await cur.execute("SELECT set_config('app.tenant', %s, false)", (tenant,))
                    m.tenant = tenant
                elif step == 3:
                    # SET LOCAL never outlives its transaction.
                    await cur.execute(f"SET LOCAL TimeZone = '{zone}'")
                    await cur.execute("SELECT current_setting('TimeZone')")
                    (tz,) = await cur.fetchone()
                    assert tz == zone, (m.who, tz, zone)
                elif step == 4:
                    await cur.execute(f"SET TimeZone = '{zone}'")
                    await cur.execute(f"SET app.tenant = '{tenant}'")
                    m.tz, m.tenant = zone, tenant
                else:
                    await cur.execute(CHECK)
                    m.check(await cur.fetchone(), f"round {r} inside")
            # A block that rolls back drops its SET.
            if rnd.randrange(3) == 0:
                try:
                    async with conn.transaction():
                        await cur.execute(f"SET TimeZone = '{rnd.choice(ZONES)}'")
                        raise psycopg.Rollback()
                except psycopg.Rollback:
                    pass
            async with conn.transaction():
                await cur.execute(CHECK)
                m.check(await cur.fetchone(), f"after round {r} (step {step})")
    finally:
        await conn.close()
    return m


async def asyncpg_client(dsn, i, rounds):
    """asyncpg: transactions and savepoints as it runs them, SET through
    execute() (the simple protocol) and through prepared statements."""
    m = Model(f"asyncpg {i}")
    rnd = random.Random(f"asyncpg{i}")
    conn = await asyncpg.connect(dsn)
    try:
        m.check(tuple(await conn.fetchrow(CHECK)), "at start")
        for r in range(rounds):
            zone = rnd.choice(ZONES)
            tenant = f"a{i}_{r}"
            step = rnd.randrange(4)
            async with conn.transaction():
                if step == 0:
                    await conn.execute(f"SET TimeZone = '{zone}'")
                    m.tz = zone
                elif step == 1:
                    try:
                        async with conn.transaction():
                            await conn.execute(f"SET TimeZone = '{zone}'")
                            raise RuntimeError("roll back to the savepoint")
                    except RuntimeError:
                        pass
                elif step == 2:
                    # A prepared statement (asyncpg's cache names it), the
                    # tenant as its parameter: the usual row-level-security
                    # pattern.
                    await conn.fetchval("SELECT set_config('app.tenant', $1, false)", tenant)
                    m.tenant = tenant
                else:
                    await conn.fetchval(f"SET TimeZone = '{zone}'")
                    m.tz = zone
            m.check(tuple(await conn.fetchrow(CHECK)), f"after round {r} (step {step})")
    finally:
        await conn.close()
    return m


async def main(dsn, rounds):
    clients = []
    for i in range(6):
        clients.append(psycopg_client(dsn, i, rounds, prepared=False))
        clients.append(psycopg_client(dsn, i, rounds, prepared=True))
        clients.append(asyncpg_client(dsn, i, rounds))
    models = await asyncio.gather(*clients)
    checks = sum(m.checks for m in models)
    print(f"OK {len(models)} clients, {checks} checks, 0 leaks, 0 lost")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40))
