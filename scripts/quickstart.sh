#!/usr/bin/env bash
# Runs pgwarden on its embedded default: a local PostgreSQL primary with two
# streaming replicas (created on first run under /tmp/pgwarden-quickstart,
# reused after) and the proxy in front. Prints the psql line and
# DATABASE_URL; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec cargo run --release --locked -- quickstart "$@"
