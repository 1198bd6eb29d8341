#!/usr/bin/env python3
"""Summarises scripts/bench.sh's core rounds: each round's figures, their
medians, and the medians against issue 19's targets (met or missed).

Input: a TSV of `round, workload, clients, target, tps, latency_ms,
proxy_us_per_tx, failed` lines, target being direct, pgwarden or pgbouncer.
A workload named "... , routed" is pgwarden splitting reads over the
primary and two replicas, compared with the primary-only row of that name.
"""
import statistics
import sys
from collections import defaultdict


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main(path):
    runs = defaultdict(list)  # (workload, clients, target) -> [(round, tps, lat, us, failed)]
    order = []
    with open(path) as f:
        for line in f:
            r, name, clients, target, tps, lat, us, failed = line.rstrip("\n").split("\t")
            row = (name, int(clients))
            if row not in order:
                order.append(row)
            runs[row + (target,)].append((int(r), num(tps), num(lat), num(us), failed))

    def med(row, target, i):
        return median([x[i] for x in runs.get(row + (target,), [])])

    rounds = sorted({x[0] for v in runs.values() for x in v})
    print(f"Each round (the two proxies' order alternates by round; {len(rounds)} rounds):")
    print()
    print("| round | workload | clients | direct tps | pgwarden tps | PgBouncer tps | CPU µs/tx pgwarden / PgBouncer | failed (w/b) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rounds:
        for row in order:
            get = {t: next((x for x in runs.get(row + (t,), []) if x[0] == r), None) for t in ("direct", "pgwarden", "pgbouncer")}
            w = get["pgwarden"]
            if w is None:
                continue
            name = row[0]
            d, b = get["direct"], get["pgbouncer"]
            print(f"| {r} | {name} | {row[1]} | {fmt(d and d[1])} | {fmt(w[1])} | {fmt(b and b[1])} | "
                  f"{fmt(w[3], 1)} / {fmt(b and b[3], 1)} | {w[4]} / {b[4] if b else 'n/a'} |")
    print()
    print("Medians over the rounds:")
    print()
    print("| workload | clients | direct tps | pgwarden tps | PgBouncer tps | tps pgwarden ÷ PgBouncer | CPU µs/tx pgwarden / PgBouncer | CPU ÷ PgBouncer |")
    print("|---|---|---|---|---|---|---|---|")
    for row in order:
        dt, wt, bt = med(row, "direct", 1), med(row, "pgwarden", 1), med(row, "pgbouncer", 1)
        wu, bu = med(row, "pgwarden", 3), med(row, "pgbouncer", 3)
        name = row[0]
        print(f"| {name} | {row[1]} | {fmt(dt)} | {fmt(wt)} | {fmt(bt)} | "
              f"{fmt(wt / bt if wt and bt else None, 2)} | {fmt(wu, 1)} / {fmt(bu, 1)} | "
              f"{fmt(wu / bu if wu and bu else None, 2)} |")
    print()
    print("Targets (issue 19), on the medians:")
    print()
    print("| target | row | value | met? |")
    print("|---|---|---|---|")

    def verdict(ok):
        return "met" if ok else "**missed**"

    for row in order:
        name, clients = row
        wu, bu = med(row, "pgwarden", 3), med(row, "pgbouncer", 3)
        wt, bt = med(row, "pgwarden", 1), med(row, "pgbouncer", 1)
        if name.startswith("-S simple") or name.startswith("-S extended") or name.startswith("TPC-B"):
            if clients != 1000 and wu and bu:
                ratio = wu / bu
                print(f"| CPU/tx ≤ 0.9× PgBouncer | {name} c{clients} | {ratio:.2f}× ({wu:.1f} vs {bu:.1f} µs) | {verdict(ratio <= 0.9)} |")
        if wt and bt:
            ratio = wt / bt
            print(f"| tps ≥ 1.0× PgBouncer | {name} c{clients} | {ratio:.2f}× ({wt:.0f} vs {bt:.0f}) | {verdict(ratio >= 1.0)} |")
        if name.startswith("-S prepared"):
            own = med(("-S simple", clients), "pgwarden", 3)
            if wu and own:
                print(f"| -M prepared CPU/tx ≤ own -M simple | c{clients} | {wu:.1f} vs {own:.1f} µs | {verdict(wu <= own)} |")
    for row in order:
        if not row[0].endswith(", routed"):
            continue
        base = (row[0][: -len(", routed")], row[1])
        ru, pu = med(row, "pgwarden", 3), med(base, "pgwarden", 3)
        if ru and pu:
            print(f"| routing costs ≤ 1 µs/tx over primary-only | {row[0]} c{row[1]} | {ru - pu:+.1f} µs ({ru:.1f} vs {pu:.1f}) | {verdict(ru - pu <= 1.0)} |")


if __name__ == "__main__":
    main(sys.argv[1])
