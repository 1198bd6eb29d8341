#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, and the
# integration tests, which start their own PostgreSQL primary and streaming
# replicas on free loopback ports and stop them when done, then the fuzz
# targets for FUZZ_SECONDS each (60).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Tests that skip (a dependency missing, outside CI) list themselves here;
# with CI=true a missing dependency fails its test instead.
rm -f target/test-skips.txt
cargo test --locked --all-targets
if [ -s target/test-skips.txt ]; then
  echo "SKIPPED $(sort -u target/test-skips.txt | wc -l) checks: $(sort -u target/test-skips.txt | paste -sd ';' -)"
fi
# Every fuzz target for a bounded time (skipped, with the reason, without
# a nightly toolchain).
scripts/fuzz.sh
