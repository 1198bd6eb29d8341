#!/usr/bin/env python3
"""Exclusive instructions per transaction, by function, of two callgrind
dumps that scripts/callgrind.sh saved (`last-<bin>-<mode>-<clients>.out`),
largest differences first.

    scripts/cg_diff.py BASE.out NEW.out TRANSACTIONS
    scripts/cg_diff.py --lines FUNCTION NEW.out TRANSACTIONS

TRANSACTIONS is the row's clients times its transactions per client (1000
for -S rows, 200 for TPC-B). `--lines` gives one function's instructions
by source line.

Why not callgrind_annotate: the dump callgrind.sh keeps is the second of a
run (the first holds the warm-up); callgrind names a function only in the
first dump that mentions it, and callgrind_annotate 3.19 then charges every
instruction of the second to `__libc_start_main`. This reads the names from
wherever they appear.
"""
import collections
import re
import sys

# `fn=(7) name` names id 7; `fn=(7)` refers to it; `fn=name` is uncompressed.
NAMED = re.compile(r"(c?f[nlie]|cf[il])=(?:\((\d+)\))? ?(.*)")


def costs(path, function=None):
    """Self cost per function, or per (file, line) of `function`."""
    names, files = {}, {}
    fn = fl = sub = None
    line_no = 0
    after_call = False
    out = collections.Counter()
    for raw in open(path, encoding="utf-8", errors="replace"):
        raw = raw.rstrip("\n")
        m = NAMED.match(raw)
        if m:
            kind, ident, name = m.groups()
            ident = ident or name
            table = names if kind in ("fn", "cfn") else files
            if name:
                table[ident] = name
            if kind == "fn":
                fn, sub = ident, fl
            elif kind == "fl":
                fl = sub = ident
            elif kind in ("fi", "fe"):
                sub = ident
            continue
        if raw.startswith("calls="):
            # The next cost line is the call's inclusive cost, not this
            # function's own.
            after_call = True
            continue
        if not raw or not (raw[0].isdigit() or raw[0] in "+-*"):
            continue
        parts = raw.split()
        pos = parts[0]
        if pos[0] in "+-":
            line_no += int(pos)
        elif pos != "*":
            line_no = int(pos)
        if after_call:
            after_call = False
            continue
        if len(parts) < 2:
            continue
        if function is None:
            out[fn] += int(parts[1])
        elif function in names.get(fn, ""):
            out[(files.get(sub, sub), line_no)] += int(parts[1])
    if function is None:
        return {names.get(k, k): v for k, v in out.items()}
    return out


def main(argv):
    try:
        return report(argv)
    except BrokenPipeError:
        return 0


def report(argv):
    if len(argv) == 5 and argv[1] == "--lines":
        n = float(argv[4])
        for (f, line), c in sorted(costs(argv[3], argv[2]).items(), key=lambda x: -x[1]):
            if c / n >= 1:
                print("%7.0f  %s:%d" % (c / n, str(f).rsplit("/", 1)[-1], line))
        return 0
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, new, n = costs(argv[1]), costs(argv[2]), float(argv[3])
    print("total per transaction: %.0f -> %.0f" % (sum(base.values()) / n, sum(new.values()) / n))
    rows = sorted(
        ((new.get(k, 0) - base.get(k, 0)) / n, base.get(k, 0) / n, new.get(k, 0) / n, k)
        for k in set(base) | set(new)
    )
    print("%7s %7s %7s  function" % ("diff", "base", "new"))
    for d, b, a, k in sorted(rows, key=lambda r: -abs(r[0])):
        if abs(d) >= 8:
            print("%7.0f %7.0f %7.0f  %s" % (d, b, a, str(k)[:160]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
