"""Read-your-writes across two pgwarden instances with psycopg in its
default mode: each write commits through instance A, which answers with
the write's position (ParameterStatus pgwarden.commit_lsn); the read of it
goes through instance B, carrying that position as pgwarden.min_lsn.

Usage: cross_instance.py DSN_A DSN_B TABLE N CARRY
  CARRY: "carry": even pairs reconnect to B with the position as a startup
         parameter (options=-c pgwarden.min_lsn=...), odd pairs SET it on
         a long-lived B connection; "none": B is never told.
Prints one line: "missed M replica R reads N reported K"."""
import sys

import psycopg

READ = "SELECT pg_is_in_recovery(), count(*) FROM {t} WHERE id = %s"


def main():
    dsn_a, dsn_b, table, n, carry = sys.argv[1:6]
    n = int(n)
    carry = carry == "carry"
    a = psycopg.connect(dsn_a)
    b = psycopg.connect(dsn_b, autocommit=True)
    read = READ.format(t=table)
    missed = replica = reads = reported = 0
    last = None
    for i in range(n):
        a.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
        a.commit()
        lsn = a.info.parameter_status("pgwarden.commit_lsn")
        if lsn is not None and lsn != last:
            reported += 1
        last = lsn
        if carry and i % 2 == 0:
            with psycopg.connect(dsn_b, options=f"-c pgwarden.min_lsn={lsn}") as fresh:
                row = fresh.execute(read, (i,)).fetchone()
        else:
            if carry:
                b.execute(f"SET pgwarden.min_lsn = '{lsn}'")
            row = b.execute(read, (i,)).fetchone()
        reads += 1
        missed += row[1] != 1
        replica += bool(row[0])
    a.close()
    b.close()
    print(f"missed {missed} replica {replica} reads {reads} reported {reported}")


if __name__ == "__main__":
    main()
