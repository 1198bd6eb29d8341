#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, and the
# integration tests, which start their own PostgreSQL primary and streaming
# replicas on free loopback ports and stop them when done.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
