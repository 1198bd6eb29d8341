#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, 60 by
# default) on the corpus kept in fuzz/corpus/, and prints per target how
# many inputs ran and whether anything was found. cargo-fuzz needs a nightly
# toolchain: without one (or without cargo-fuzz and a registry to install it
# from) the run is skipped with the reason printed, also under CI.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-60}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (cargo-fuzz needs one)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  if ! cargo install --locked cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: skipped: cargo-fuzz could not be installed"
    exit 0
  fi
fi

cd fuzz
failed=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="target/fuzz-$target.log"
  mkdir -p target
  if cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
    echo "fuzz: $target: $runs executions in ${secs} s, nothing found"
  else
    echo "fuzz: $target: FAILED, see fuzz/$log and fuzz/artifacts/$target/"
    tail -30 "$log"
    failed=1
  fi
done
exit "$failed"
