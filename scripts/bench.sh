#!/usr/bin/env bash
# Side-by-side benchmark, in one run: pgbench against PostgreSQL directly,
# through pgwarden and through PgBouncer (Debian's package), both poolers in
# transaction mode with the same pool size. Reports tps, the ratio to
# direct, average latency, each proxy's CPU microseconds per transaction
# (utime+stime from /proc/PID/stat) and memory per idle client (VmRSS with
# IDLE_CLIENTS idle connections). Prints a Markdown table.
#
#   scripts/bench.sh                     # 10 s per run
#   BENCH_SECONDS=30 BENCH_ROUNDS=5 scripts/bench.sh   # rounds of the load rows (3)
#   BENCH_SECTIONS=split scripts/bench.sh   # only the read/write split rows
#   BENCH_SECTIONS=tls scripts/bench.sh     # only the TLS rows
#   BENCH_SECTIONS=idle IDLE_COUNTS="1000 10000 100000" scripts/bench.sh
#                                           # memory per idle client, a
#                                           # fresh proxy per count
#   IDLE_QUERY=1 BENCH_SECTIONS=idle ...    # each idle client runs one
#                                           # SELECT 1 before it idles
#                                           # (IDLE_PLAIN=1: it logs in with
#                                           # user and database only)
#   BENCH_BIN=/path/to/pgwarden scripts/bench.sh   # another build
#   BENCH_SECTIONS=routing scripts/bench.sh # routing's own cost: user CPU
#                                           # of routed (and of routed with
#                                           # its replicas drained) against
#                                           # primary-only, in rotation,
#                                           # BENCH_ROUNDS (5)
#   BENCH_SECTIONS=kernel scripts/bench.sh  # user and system CPU and context
#                                           # switches per transaction,
#                                           # pgwarden beside PgBouncer,
#                                           # BENCH_ROUNDS (5)
#   BENCH_SECTIONS=ab BENCH_AB_BIN=/path/to/old/pgwarden scripts/bench.sh
#                                           # this build against another,
#                                           # alternating, BENCH_AB_ROUNDS each
#
# The split section runs a second pgwarden that spreads reads over the
# primary and two streaming replicas, next to the same load direct to the
# primary and through PgBouncer (which cannot split), and the cost of
# read-your-writes against eventual consistency.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/routing_toml.sh
. scripts/bouncer_ini.sh
scripts/deps.sh --bench

SECS=${BENCH_SECONDS:-10}
SECTIONS=${BENCH_SECTIONS:-all}
POOL=${BENCH_POOL_SIZE:-20}
IDLE=${IDLE_CLIENTS:-10000}
SCALE=${BENCH_SCALE:-10}
PGPORT=${BENCH_PG_PORT:-24432}
WPORT=$((PGPORT + 10)); BPORT=$((PGPORT + 20)); QSPORT=$((PGPORT + 30)); SPORT=$((PGPORT + 40)); MPORT=$((PGPORT + 50)); RPORT=$((PGPORT + 60))
TPORT=$((PGPORT + 70)); BTPORT=$((PGPORT + 80)); STPORT=$((PGPORT + 90)); SPPORT=$((PGPORT + 100))

cargo build --release --locked --bin pgwarden --example idle_clients >&2
BIN=${BENCH_BIN:-$PWD/target/release/pgwarden}
HOLDER=$PWD/target/release/examples/idle_clients
PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)
[ -x "$PGBIN/pgbench" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
TICK=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/pgwarden-bench-XXXXXX)
chmod 755 "$WORK"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -INT "$p" 2>/dev/null || true; done
  for pidfile in "$WORK"/pgbouncer*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# PostgreSQL: the quickstart cluster, a primary and two streaming replicas
# (its own proxy idles on QSPORT). Only the split rows use the replicas.
"$BIN" quickstart --state-dir "$WORK/pg" --pg-port "$PGPORT" --replicas 2 --listen "127.0.0.1:$QSPORT" >"$WORK/qs.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do grep -q DATABASE_URL "$WORK/qs.log" && break; sleep 1; done
grep -q DATABASE_URL "$WORK/qs.log" || { cat "$WORK/qs.log" >&2; exit 1; }

cat >"$WORK/pgwarden.toml" <<TOML
[proxy]
listen = "127.0.0.1:$WPORT"
pool_mode = "transaction"
default_pool_size = $POOL
max_client_conn = 20000
auth_type = "trust"
# As PgBouncer here: the servers have no TLS until the TLS section.
server_tls_sslmode = "disable"
[users.app]
password = "app"
[databases.app]
primary = "127.0.0.1:$PGPORT"
TOML
RUST_LOG=warn "$BIN" run --config "$WORK/pgwarden.toml" >"$WORK/pgwarden.log" 2>&1 &
W_PID=$!; pids+=($W_PID)

# The same proxy with read/write splitting over the primary and both
# replicas; the monitor logs in as the quickstart's superuser.
MONPW=$(awk -F'"' '/^monitor_password/ {print $2}' "$WORK/pg/proxy.toml")
sed -e "s/^listen = .*/listen = \"127.0.0.1:$SPORT\"/" "$WORK/pgwarden.toml" >"$WORK/split.toml"
routing_toml "$PGPORT" "$MONPW" >>"$WORK/split.toml"
RUST_LOG=warn "$BIN" run --config "$WORK/split.toml" >"$WORK/split.log" 2>&1 &
S_PID=$!; pids+=($S_PID)
# And once more, learning write positions from the monitor (no round trip).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$MPORT\"/" "$WORK/split.toml" >"$WORK/monitor.toml"
echo 'ryw_commit_lsn = "monitor"' >>"$WORK/monitor.toml"
RUST_LOG=warn "$BIN" run --config "$WORK/monitor.toml" >"$WORK/monitor.log" 2>&1 &
M_PID=$!; pids+=($M_PID)
# And with strict data residency: every node in one region, the tenant
# (the user) bound to it, so every transaction is checked and counted.
sed -e "s/^listen = .*/listen = \"127.0.0.1:$RPORT\"/" \
    -e "s/^primary = .*/&\nregion = \"eu-west-1\"/" "$WORK/split.toml" >"$WORK/residency.toml"
cat >>"$WORK/residency.toml" <<TOML
[databases.app.residency]
policy = "strict"
tenant_from = "user"
[tenants]
app = ["eu-west-1"]
TOML
RUST_LOG=warn "$BIN" run --config "$WORK/residency.toml" >"$WORK/residency.log" 2>&1 &
R_PID=$!; pids+=($R_PID)

echo '"app" "app"' >"$WORK/userlist.txt"
{
  bouncer_ini "$BPORT" "$PGPORT" "$WORK" "$POOL"
  echo "pidfile = $WORK/pgbouncer.pid"
} >"$WORK/pgbouncer.ini"
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK" "$WORK"/userlist.txt "$WORK"/pgbouncer.ini
# PgBouncer needs one descriptor per client: raise the soft limit (pgwarden
# raises its own). setpriv, unlike runuser, keeps the limit (no PAM).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# start_pgbouncer NAME: runs PgBouncer on $WORK/NAME.ini (daemonized, so
# not in a command substitution); its pid is then in $WORK/NAME.pid.
start_pgbouncer() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups "$PGBOUNCER" -d "$WORK/$1.ini"
  else
    "$PGBOUNCER" -d "$WORK/$1.ini"
  fi
  for _ in $(seq 50); do [ -s "$WORK/$1.pid" ] && break; sleep 0.1; done
}
start_pgbouncer pgbouncer
B_PID=$(cat "$WORK/pgbouncer.pid")
sleep 1

export PGPASSWORD=app
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U app app >/dev/null 2>&1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
# Busy ticks of the whole machine (user nice system irq softirq steal).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# run PORT PID ARGS... -> "tps latency_ms proxy_us_per_tx failed machine_us_per_tx"
run() {
  local port=$1 pid=$2; shift 2
  local before=0 after=0 ubefore=0 uafter=0 mbefore mafter
  [ "$pid" != "-" ] && before=$(cpu_ticks "$pid") && ubefore=$(user_ticks "$pid")
  mbefore=$(machine_ticks)
  local out
  out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U app -n -T "$SECS" -j 2 "$@" app 2>&1) || true
  [ "$pid" != "-" ] && after=$(cpu_ticks "$pid") && uafter=$(user_ticks "$pid")
  mafter=$(machine_ticks)
  local tps lat n failed
  tps=$(echo "$out" | awk -F'= ' '/^tps/ {split($2,a," "); print a[1]}')
  lat=$(echo "$out" | awk -F'= ' '/latency average/ {split($2,a," "); print a[1]}')
  n=$(echo "$out" | awk -F': ' '/number of transactions actually processed/ {split($2,a,"/"); print a[1]}')
  failed=$(echo "$out" | awk -F': ' '/number of failed transactions/ {split($2,a," "); print a[1]}')
  local us="-" uus="-"
  if [ "$pid" != "-" ] && [ -n "$n" ] && [ "$n" -gt 0 ]; then
    us=$(awk -v d=$((after - before)) -v t="$TICK" -v n="$n" 'BEGIN {printf "%.1f", d * 1e6 / t / n}')
    uus=$(awk -v d=$((uafter - ubefore)) -v t="$TICK" -v n="$n" 'BEGIN {printf "%.2f", d * 1e6 / t / n}')
  fi
  local mus="-"
  if [ -n "$n" ] && [ "$n" -gt 0 ]; then
    mus=$(awk -v d=$((mafter - mbefore)) -v t="$TICK" -v n="$n" 'BEGIN {printf "%.1f", d * 1e6 / t / n}')
  fi
  # Fields: tps, latency, CPU µs/tx, failed, machine CPU µs/tx, user CPU µs/tx.
  echo "${tps:-0} ${lat:-0} $us ${failed:-?} $mus $uus"
}

# Waits (20 s at most) until the splitter sends a replica-routed read to a
# replica: its monitor has seen the replicas, so reads spread.
await_spread() {
  for _ in $(seq 100); do
    [ "$(PGOPTIONS='-c pgwarden.route=replica' "$PGBIN/psql" -h 127.0.0.1 -p "$SPORT" -U app -Atc 'SELECT pg_is_in_recovery()' app 2>/dev/null)" = t ] && return
    sleep 0.2
  done
}

# Sends a signal (STOP, CONT) to the three splitting proxies.
splitters() { kill "-$1" "$S_PID" "$M_PID" "$R_PID"; }

if [ "$SECTIONS" = idle ]; then
# Memory per idle client, a fresh pgwarden and PgBouncer per count, each
# client logging in with what drivers send (a distinct application_name,
# client_encoding, DateStyle, TimeZone, extra_float_digits); RSS again once
# they have left. Then, with the most clients connected, how long a
# `SELECT 1` through a fresh client takes.
# As root the descriptor limit can be raised past 100,000 for both sides.
ulimit -Hn 400000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
IPORT=$((PGPORT + 110)); IBPORT=$((PGPORT + 120))
sed -e "s/^listen = .*/listen = \"127.0.0.1:$IPORT\"/" -e "s/^max_client_conn = .*/max_client_conn = 200000/" \
  "$WORK/pgwarden.toml" >"$WORK/idle.toml"
sed -e "s/^listen_port = .*/listen_port = $IBPORT/" -e "s/^max_client_conn = .*/max_client_conn = 200000/" \
  -e "s/pgbouncer\.\(log\|pid\)/idle-bouncer.\1/" "$WORK/pgbouncer.ini" >"$WORK/idle-bouncer.ini"
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK/idle-bouncer.ini"
echo "| proxy | clients | VmRSS before (KiB) | with clients (KiB) | per idle client (KiB) | after they left (KiB) | SELECT 1 through a fresh client (ms) |"
echo "|---|---|---|---|---|---|---|"
idle_row() {
  local name=$1 port=$2 pid=$3 count=$4
  local before after left ready ms
  # One client first, as a proxy in service has had: the code of a login
  # and a query is paged in before "before", not charged to the crowd.
  "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U app -d app -c 'SELECT 1' >/dev/null 2>&1 || true
  sleep 1
  before=$(rss_kib "$pid")
  "$HOLDER" "127.0.0.1:$port" app app "$count" 900 >"$WORK/holder.out" 2>&1 &
  local hp=$!
  for _ in $(seq 1800); do grep -q ready "$WORK/holder.out" && break; sleep 0.5; done
  # Past park_idle_clients_after (2 s), so that the last clients are parked
  # too, as every idle client of a proxy in service is.
  sleep 4
  after=$(rss_kib "$pid")
  ready=$(cat "$WORK/holder.out")
  local t0 t1
  t0=$(date +%s%N)
  "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U app -d app -c 'SELECT 1' >/dev/null 2>&1 || t0=0
  t1=$(date +%s%N)
  ms=$([ "$t0" -gt 0 ] && awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}' || echo failed)
  kill "$hp" 2>/dev/null || true; wait "$hp" 2>/dev/null || true
  sleep 3
  left=$(rss_kib "$pid")
  printf "| %s | %s | %s | %s | %s (%s) | %s | %s |\n" "$name" "$count" "$before" "$after" \
    "$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN {printf "%.2f", (a - b) / n}')" "$ready" "$left" "$ms"
}
for count in ${IDLE_COUNTS:-1000 10000}; do
  # Each side holds one descriptor per client (and the holder as many):
  # past the hard limit (20,000 on this machine, which lacks
  # CAP_SYS_RESOURCE to raise it) the run would only wait for accepts.
  if [ "$(ulimit -n)" -lt $((count + 1000)) ]; then
    printf "| (both) | %s | - | - | not run: descriptor limit %s | - | - |\n" "$count" "$(ulimit -n)"
    continue
  fi
  RUST_LOG=warn "$BIN" run --config "$WORK/idle.toml" >"$WORK/idle.log" 2>&1 &
  I_PID=$!; pids+=($I_PID)
  for _ in $(seq 50); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$IPORT" && break; sleep 0.1; done
  idle_row pgwarden "$IPORT" "$I_PID" "$count"
  kill -INT "$I_PID"; wait "$I_PID" 2>/dev/null || true
  if [ "${IDLE_PGBOUNCER:-1}" = 1 ]; then
    start_pgbouncer idle-bouncer
    IB_PID=$(cat "$WORK/idle-bouncer.pid")
    idle_row PgBouncer "$IBPORT" "$IB_PID" "$count"
    kill "$IB_PID"; for _ in $(seq 50); do kill -0 "$IB_PID" 2>/dev/null || break; sleep 0.1; done
    rm -f "$WORK/idle-bouncer.pid"
  fi
done
fi

if [ "$SECTIONS" = all ] || [ "$SECTIONS" = core ]; then
# Idle memory first, while both proxies are fresh: after the load rows their
# allocators hold freed memory that idle clients would reuse, hiding their cost.
echo "| proxy | VmRSS before (KiB) | with $IDLE idle clients (KiB) | per idle client (KiB) |"
echo "|---|---|---|---|"
mem() {
  local name=$1 port=$2 pid=$3
  local before after ready
  before=$(rss_kib "$pid")
  "$HOLDER" "127.0.0.1:$port" app app "$IDLE" 600 >"$WORK/holder.out" &
  local hp=$!
  for _ in $(seq 600); do grep -q ready "$WORK/holder.out" && break; sleep 0.5; done
  sleep 4
  after=$(rss_kib "$pid")
  ready=$(cat "$WORK/holder.out")
  kill "$hp" 2>/dev/null || true; wait "$hp" 2>/dev/null || true
  printf "| %s | %s | %s | %s (%s) |\n" "$name" "$before" "$after" \
    "$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN {printf "%.2f", (a - b) / n}')" "$ready"
}
mem pgwarden "$WPORT" "$W_PID"
mem PgBouncer "$BPORT" "$B_PID"
# Both proxies fresh for the load rows: a proxy that held the idle crowd
# (its allocator's free lists, tokio's grown tables) is not the one a
# deployment runs most of the time, and it measured slower.
kill -INT "$W_PID"; wait "$W_PID" 2>/dev/null || true
RUST_LOG=warn "$BIN" run --config "$WORK/pgwarden.toml" >>"$WORK/pgwarden.log" 2>&1 &
W_PID=$!; pids+=($W_PID)
kill "$B_PID"; for _ in $(seq 50); do kill -0 "$B_PID" 2>/dev/null || break; sleep 0.1; done
rm -f "$WORK/pgbouncer.pid"
start_pgbouncer pgbouncer
B_PID=$(cat "$WORK/pgbouncer.pid")
for _ in $(seq 50); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$WPORT" && break; sleep 0.1; done
echo
# The load rows, BENCH_ROUNDS times (3 by default). Within a round each
# row runs direct, then through the two proxies in an order that alternates
# by round, so that drift in the machine hits both alike; the summary gives
# every round and the medians, against issue 19's targets. Rows a side
# cannot run are left out: PgBouncer 1.18 has no prepared statements in
# transaction mode (1.21 has), and PostgreSQL's max_connections (400 here)
# is below 1,000 clients. ", routed" is the splitting pgwarden (primary and
# two replicas), against the primary-only row of that name.
await_spread
ROUNDS=${BENCH_ROUNDS:-3}
# An unmeasured warm-up each: both open their servers first.
for port in "$WPORT" "$BPORT" "$SPORT"; do run "$port" - -c 50 -S -M simple -T 2 >/dev/null; done
# The splitting proxies are stopped (SIGSTOP) while the two poolers are
# measured: their monitors' checks (three nodes every 250 ms each) share the
# two cores with the rows, and with them running pgwarden's `-S extended -c
# 50` row read 1.4-1.6x PgBouncer's CPU in every round, without them 1.0-1.2x
# (docs/benchmarks.md, ninth session; not the whole of that outlier). The routed row
# resumes its proxy, lets its monitor see the nodes again, and stops it after.
splitters STOP
routed_row() {
  kill -CONT "$S_PID"
  run "$SPORT" - -c 50 -S -M simple -T 2 >/dev/null
  measure "$1" pgwarden "$SPORT" "$S_PID" "-S simple, routed" 50 -S -M simple
  kill -STOP "$S_PID"
}
: >"$WORK/core.tsv"
# measure ROUND TARGET PORT PID WORKLOAD CLIENTS PGBENCH-ARGS...
measure() {
  local r=$1 target=$2 port=$3 pid=$4 name=$5 clients=$6; shift 6
  local t l u f
  read -r t l u f _ < <(run "$port" "$pid" -c "$clients" "$@")
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$name" "$clients" "$target" "$t" "$l" "$u" "$f" >>"$WORK/core.tsv"
}
# core_row ROUND SKIP WORKLOAD CLIENTS PGBENCH-ARGS... (SKIP: direct,
# pgbouncer or none)
core_row() {
  local r=$1 skip=$2 name=$3 clients=$4 order who; shift 4
  if [ "$skip" != direct ]; then measure "$r" direct "$PGPORT" - "$name" "$clients" "$@"; fi
  order="pgwarden pgbouncer"
  if [ $((r % 2)) -eq 0 ]; then order="pgbouncer pgwarden"; fi
  for who in $order; do
    if [ "$who" = pgwarden ]; then
      measure "$r" pgwarden "$WPORT" "$W_PID" "$name" "$clients" "$@"
    elif [ "$skip" != pgbouncer ]; then
      measure "$r" pgbouncer "$BPORT" "$B_PID" "$name" "$clients" "$@"
    fi
  done
}
for r in $(seq "$ROUNDS"); do
  for c in 10 50 200; do core_row "$r" none "-S simple" "$c" -S -M simple; done
  for c in 10 50 200; do core_row "$r" none "-S extended" "$c" -S -M extended; done
  for c in 10 50 200; do core_row "$r" pgbouncer "-S prepared" "$c" -S -M prepared; done
  core_row "$r" none "TPC-B simple" 50 -M simple
  core_row "$r" direct "-S simple" 1000 -S -M simple
  routed_row "$r"
done
splitters CONT
# The monitors resume: reads spread once they have seen the replicas again.
await_spread
echo
python3 scripts/bench_summary.py "$WORK/core.tsv"
fi

if [ "$SECTIONS" = all ] || [ "$SECTIONS" = split ]; then
# Read/write splitting. A replica replays the primary's WAL on the same two
# cores, so the machine's CPU per transaction is reported next to the proxy's.
await_spread
split_row() {
  local name=$1 port=$2 pid=$3; shift 3
  # Unmeasured warm-up: the proxy opens its server connections first.
  "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U app -n -T 2 -j 2 "$@" app >/dev/null 2>&1 || true
  read -r t l u f m _ < <(run "$port" "$pid" "$@")
  printf "| %s | %.0f | %s | %s | %s | %s |\n" "$name" "$t" "$l" "$u" "$m" "$f"
}
echo
echo "Read-heavy: pgbench -S -M simple, 100 clients"
echo
echo "| target | tps | latency ms | proxy CPU µs/tx | machine CPU µs/tx | failed |"
echo "|---|---|---|---|---|---|"
split_row "direct to the primary" "$PGPORT" - -c 100 -S -M simple
split_row "pgwarden, primary only" "$WPORT" "$W_PID" -c 100 -S -M simple
split_row "pgwarden, split over primary + 2 replicas" "$SPORT" "$S_PID" -c 100 -S -M simple
split_row "PgBouncer, primary only" "$BPORT" "$B_PID" -c 100 -S -M simple
split_row "pgwarden split, -M extended" "$SPORT" "$S_PID" -c 100 -S -M extended
split_row "pgwarden split + strict residency" "$RPORT" "$R_PID" -c 100 -S -M simple

# Read-your-writes with ryw_commit_lsn = "query" costs one extra round trip
# after each write transaction (SELECT pg_current_wal_lsn() on the same
# server before it is released), and a read after a write waits for a
# replica to replay it or goes to the primary; with "monitor" there is no
# extra round trip and reads within one monitor check of a write go to the
# primary. write-then-read: an auto-commit UPDATE, then a SELECT of that row.
cat >"$WORK/write_read.sql" <<SQL
\set aid random(1, 100000 * $SCALE)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SQL
echo
echo "Consistency through the splitting pgwarden, 50 clients (-M simple)"
echo
echo "| workload | consistency | tps | latency ms | proxy CPU µs/tx | machine CPU µs/tx | failed |"
echo "|---|---|---|---|---|---|---|"
for w in tpcb write-then-read; do
  args=(-c 50 -M simple)
  [ "$w" = write-then-read ] && args+=(-f "$WORK/write_read.sql")
  read -r t l u f m _ < <(run "$WPORT" "$W_PID" "${args[@]}")
  printf "| %s | %s | %.0f | %s | %s | %s | %s |\n" "$w" "(primary-only pgwarden)" "$t" "$l" "$u" "$m" "$f"
  for c in eventual read_your_writes; do
    read -r t l u f m < <(PGOPTIONS="-c pgwarden.consistency=$c" run "$SPORT" "$S_PID" "${args[@]}")
    printf "| %s | %s | %.0f | %s | %s | %s | %s |\n" "$w" "$c" "$t" "$l" "$u" "$m" "$f"
  done
  read -r t l u f m < <(PGOPTIONS="-c pgwarden.consistency=read_your_writes" run "$MPORT" "$M_PID" "${args[@]}")
  printf "| %s | %s | %.0f | %s | %s | %s | %s |\n" "$w" "read_your_writes, monitor" "$t" "$l" "$u" "$m" "$f"
done
fi

if [ "$SECTIONS" = all ] || [ "$SECTIONS" = tls ]; then
# TLS: the same certificate (ECDSA P-256, from a CA made here) for
# pgwarden and PgBouncer, clients with sslmode=require, transaction mode.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" >"$WORK/san.ext"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/san.ext" -out "$WORK/tls.crt" 2>/dev/null
chmod 600 "$WORK/tls.key"
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK/tls.key" "$WORK/tls.crt"
sed -e "s/^listen = .*/listen = \"127.0.0.1:$TPORT\"/" "$WORK/pgwarden.toml" >"$WORK/tls.toml"
sed -i "/^\[proxy\]/a client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"$WORK/tls.crt\"\nclient_tls_key_file = \"$WORK/tls.key\"" "$WORK/tls.toml"
RUST_LOG=warn "$BIN" run --config "$WORK/tls.toml" >"$WORK/tls.log" 2>&1 &
T_PID=$!; pids+=($T_PID)
sed -e "s/^listen_port = .*/listen_port = $BTPORT/" -e "s#pgbouncer.log#pgbouncer-tls.log#" \
  -e "s#pgbouncer.pid#pgbouncer-tls.pid#" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer-tls.ini"
printf "client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n" \
  "$WORK/tls.crt" "$WORK/tls.key" >>"$WORK/pgbouncer-tls.ini"
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK/pgbouncer-tls.ini"
start_pgbouncer pgbouncer-tls
BT_PID=$(cat "$WORK/pgbouncer-tls.pid")
sleep 1
echo
echo "TLS to the proxy (sslmode=require, ECDSA P-256, TLS 1.3), transaction mode"
echo
echo "| workload | clients | pgwarden tps | PgBouncer tps | tps ratio | CPU µs/tx pgwarden / PgBouncer | failed (w/b) |"
echo "|---|---|---|---|---|---|---|"
tls_row() {
  local name=$1 clients=$2; shift 2
  read -r wt _ wu wf _ < <(PGSSLMODE=require run "$TPORT" "$T_PID" -c "$clients" "$@")
  read -r bt _ bu bf _ < <(PGSSLMODE=require run "$BTPORT" "$BT_PID" -c "$clients" "$@")
  printf "| %s | %s | %.0f | %.0f | %s | %s / %s | %s / %s |\n" "$name" "$clients" "$wt" "$bt" \
    "$(awk -v a="$wt" -v b="$bt" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')" "$wu" "$bu" "$wf" "$bf"
}
tls_row "-S simple" 10 -S -M simple
tls_row "-S simple" 50 -S -M simple
tls_row "-S extended" 50 -S -M extended
# A new TLS connection (and handshake) per transaction.
tls_row "-C -S simple" 10 -C -S -M simple

# Server-side TLS: PostgreSQL with ssl = on (from here on), and two fresh
# pgwardens that differ only in server_tls_sslmode.
PGPASSWORD=$MONPW "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d app -q \
  -c "ALTER SYSTEM SET ssl_cert_file = '$WORK/tls.crt'" -c "ALTER SYSTEM SET ssl_key_file = '$WORK/tls.key'" \
  -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
for mode in require disable; do
  port=$STPORT; [ "$mode" = disable ] && port=$SPPORT
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e "s/^server_tls_sslmode = .*/server_tls_sslmode = \"$mode\"/" \
    "$WORK/pgwarden.toml" >"$WORK/server-$mode.toml"
  RUST_LOG=warn "$BIN" run --config "$WORK/server-$mode.toml" >"$WORK/server-$mode.log" 2>&1 &
  pids+=($!)
done
sleep 1
ST_PID=$(pgrep -f "server-require.toml" | head -1); SP_PID=$(pgrep -f "server-disable.toml" | head -1)
echo
echo "TLS from pgwarden to PostgreSQL (server_tls_sslmode), cleartext clients"
echo
echo "| workload | clients | server TLS require: tps | CPU µs/tx | server TLS disable: tps | CPU µs/tx | failed (r/d) |"
echo "|---|---|---|---|---|---|---|"
for args in "-S -M simple" "-C -S -M simple"; do
  # shellcheck disable=SC2086
  read -r rt _ ru rf _ < <(run "$STPORT" "$ST_PID" -c 50 $args)
  # shellcheck disable=SC2086
  read -r dt _ du df _ < <(run "$SPPORT" "$SP_PID" -c 50 $args)
  printf "| %s | 50 | %.0f | %s | %.0f | %s | %s / %s |\n" "$args" "$rt" "$ru" "$dt" "$du" "$rf" "$df"
done
fi

if [ "$SECTIONS" = routing ]; then
# Routing's own cost: the primary-only proxy and the splitting one (both this
# build, both running since the start), pgbench -S -M simple alternating
# between them, BENCH_ROUNDS rounds (5). Both make the same system calls
# per transaction, so the difference in user CPU is what routing costs;
# the kernel's share, the noisy one on this machine, is reported apart.
# 10 clients (ROUTING_CLIENTS): with more than the pool's 20, primary-only's
# clients wait in line for a server while the routed proxy has 20 on each
# of three nodes, and the line's cost (~3,000 instructions a transaction)
# would be counted against primary-only.
# A third proxy is the same splitter with both replicas drained (`DRAIN
# NODE`): every decision is made as in the routed one, but every read runs
# on the primary, as primary-only's do. It tells routing's own code from
# what spreading reads over three PostgreSQL instances costs the proxy
# (more servers in use, colder caches, a slower cluster).
ROUNDS=${BENCH_ROUNDS:-5}
CLIENTS=${ROUTING_CLIENTS:-10}
DPORT=$((PGPORT + 130))
sed -e "s/^listen = .*/listen = \"127.0.0.1:$DPORT\"/" -e "s/^\[users.app\]/admin_users = \"app\"\n&/" \
  "$WORK/split.toml" >"$WORK/drained.toml"
RUST_LOG=warn "$BIN" run --config "$WORK/drained.toml" >"$WORK/drained.log" 2>&1 &
D_PID=$!; pids+=($D_PID)
for _ in $(seq 50); do "$PGBIN/psql" -h 127.0.0.1 -p "$DPORT" -U app -Atc 'SHOW VERSION' pgwarden >/dev/null 2>&1 && break; sleep 0.2; done
for n in 1 2; do
  "$PGBIN/psql" -h 127.0.0.1 -p "$DPORT" -U app -Atc "DRAIN NODE 127.0.0.1:$((PGPORT + n))" pgwarden >/dev/null
done
# Reads spread only once the monitor has seen the replicas.
await_spread
for port in "$WPORT" "$SPORT" "$DPORT"; do run "$port" - -c "$CLIENTS" -S -M simple -T 2 >/dev/null; done
echo "Routing: pgbench -S -M simple -c $CLIENTS, $SECS s per run, primary-only, routed and routed with its replicas drained, in rotation"
echo
echo "| round | primary-only tps | user µs/tx | CPU µs/tx | routed tps | user µs/tx | CPU µs/tx | drained tps | user µs/tx | CPU µs/tx |"
echo "|---|---|---|---|---|---|---|---|---|---|"
: >"$WORK/routing.rounds"
for r in $(seq "$ROUNDS"); do
  # The order rotates, so that drift in the machine hits all three alike.
  declare -A res=()
  order=(w s d)
  for _ in $(seq $(((r - 1) % 3))); do order=("${order[@]:1}" "${order[0]}"); done
  for k in "${order[@]}"; do
    case $k in
      w) res[w]=$(run "$WPORT" "$W_PID" -c "$CLIENTS" -S -M simple) ;;
      s) res[s]=$(run "$SPORT" "$S_PID" -c "$CLIENTS" -S -M simple) ;;
      d) res[d]=$(run "$DPORT" "$D_PID" -c "$CLIENTS" -S -M simple) ;;
    esac
  done
  read -r pt _ pu _ _ puu <<<"${res[w]}"
  read -r st _ su _ _ suu <<<"${res[s]}"
  read -r dt _ du _ _ duu <<<"${res[d]}"
  printf "| %s | %.0f | %s | %s | %.0f | %s | %s | %.0f | %s | %s |\n" "$r" "$pt" "$puu" "$pu" "$st" "$suu" "$su" "$dt" "$duu" "$du"
  echo "$pt $puu $pu $st $suu $su $dt $duu $du" >>"$WORK/routing.rounds"
done
python3 - "$WORK/routing.rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
med = [statistics.median(r[i] for r in rows) for i in range(9)]
print("| median | %.0f | %.2f | %.1f | %.0f | %.2f | %.1f | %.0f | %.2f | %.1f |" % tuple(med))
print()
for name, u, c in (("routed", 4, 5), ("routed with its replicas drained", 7, 8)):
    diffs = sorted(r[u] - r[1] for r in rows)
    print("%s minus primary-only, user CPU µs/tx: median %.2f (rounds: %s); all CPU: median %.1f"
          % (name, statistics.median(diffs), ", ".join("%.2f" % d for d in diffs),
             statistics.median(r[c] - r[2] for r in rows)))
PY
fi

if [ "$SECTIONS" = kernel ]; then
# Where a transaction's CPU goes, pgwarden beside PgBouncer: user and system
# time and context switches per transaction (summed over each process's
# threads), the two alternating, BENCH_ROUNDS rounds (5), medians. The
# splitting proxies are stopped, as in the core rows. Both make the same
# system calls per transaction, so this tells the kernel's share, which
# no proxy code changes, from the user space each spends
# (docs/benchmarks.md, tenth session).
ROUNDS=${BENCH_ROUNDS:-5}
splitters STOP
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary/ {n += $2} END {print v + 0, n + 0}'; }
# cpu_split NAME PID PORT MODE:CLIENTS appends "NAME ROW user system all
# voluntary involuntary" per transaction.
cpu_split() {
  local name=$1 pid=$2 port=$3 row=$4
  local v0 n0 v1 n1 tps us uus
  read -r v0 n0 < <(switches "$pid")
  read -r tps _ us _ _ uus < <(run "$port" "$pid" -c "${row##*:}" -S -M "${row%%:*}")
  read -r v1 n1 < <(switches "$pid")
  awk -v n="$name" -v r="$row" -v tps="$tps" -v secs="$SECS" -v us="$us" -v uus="$uus" -v v=$((v1 - v0)) -v nv=$((n1 - n0)) \
    'BEGIN {tx = tps * secs; if (tx > 0) printf "%s %s %.2f %.2f %.2f %.3f %.3f\n", n, r, uus, us - uus, us, v / tx, nv / tx}' \
    >>"$WORK/kernel.rounds"
}
: >"$WORK/kernel.rounds"
for port in "$WPORT" "$BPORT"; do run "$port" - -c 50 -S -M simple -T 2 >/dev/null; done
for r in $(seq "$ROUNDS"); do
  for row in simple:10 extended:10 simple:50 extended:50 simple:200; do
    if [ $((r % 2)) -eq 1 ]; then
      cpu_split pgwarden "$W_PID" "$WPORT" "$row"; cpu_split PgBouncer "$B_PID" "$BPORT" "$row"
    else
      cpu_split PgBouncer "$B_PID" "$BPORT" "$row"; cpu_split pgwarden "$W_PID" "$WPORT" "$row"
    fi
  done
done
splitters CONT
echo "Where the CPU goes: pgbench -S, $SECS s per run, $ROUNDS rounds alternating; medians per transaction, pgwarden / PgBouncer"
echo
python3 - "$WORK/kernel.rounds" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, row, *vals = line.split()
    rows[(name, row)].append(list(map(float, vals)))
print("| row | user µs | system µs | all µs | voluntary switches | involuntary switches |")
print("|---|---|---|---|---|---|")
for row in dict.fromkeys(r for _, r in rows):
    w, b = rows[("pgwarden", row)], rows[("PgBouncer", row)]
    cells = []
    for i, fmt in enumerate(("%.2f", "%.2f", "%.2f", "%.3f", "%.3f")):
        cells.append((fmt + " / " + fmt) % (statistics.median(x[i] for x in w), statistics.median(x[i] for x in b)))
    print("| -S %s | %s |" % (row.replace(":", " c"), " | ".join(cells)))
PY
fi

if [ "$SECTIONS" = ab ]; then
# A/B: this build and another pgwarden binary (BENCH_AB_BIN, e.g. built from
# the commit before a change) with the same config side by side, pgbench
# -S -M simple at 50 clients alternating between them, so that drift in the
# machine hits both alike. Each round starts both proxies fresh and swaps
# their ports and their order: with the main proxy (started first, on the
# first port) as "new", whatever binary it ran measured 3-8% fewer tps
# than the one started for the A/B. Each round prints both; the last rows give medians and means.
OLD_BIN=${BENCH_AB_BIN:?set BENCH_AB_BIN to the binary to compare against}
ROUNDS=${BENCH_AB_ROUNDS:-4}
AB_PORTS=($((PGPORT + 110)) $((PGPORT + 111)))
kill -INT "$W_PID" 2>/dev/null || true; wait "$W_PID" 2>/dev/null || true
# ab_start BIN PORT NAME: a fresh proxy; its pid in AB_PID.
ab_start() {
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$2\"/" "$WORK/pgwarden.toml" >"$WORK/$3.toml"
  RUST_LOG=warn "$1" run --config "$WORK/$3.toml" >"$WORK/$3.log" 2>&1 &
  AB_PID=$!; pids+=($AB_PID)
  for _ in $(seq 50); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$2" && break; sleep 0.1; done
}
echo "A/B: pgbench -S -M simple -c 50, $SECS s per run; new = $BIN, old = $OLD_BIN"
echo
echo "| round | new tps | new CPU µs/tx | old tps | old CPU µs/tx |"
echo "|---|---|---|---|---|"
: >"$WORK/ab.rounds"
for r in $(seq "$ROUNDS"); do
  swap=$((r % 2))
  np=${AB_PORTS[$swap]}; op=${AB_PORTS[$((1 - swap))]}
  ab_start "$BIN" "$np" ab-new; N_PID=$AB_PID
  ab_start "$OLD_BIN" "$op" ab-old; O_PID=$AB_PID
  # One short warm-up each, so that both have their servers open.
  run "$np" - -c 50 -S -M simple -T 2 >/dev/null
  run "$op" - -c 50 -S -M simple -T 2 >/dev/null
  if [ "$swap" -eq 1 ]; then
    read -r nt _ nu _ _ < <(run "$np" "$N_PID" -c 50 -S -M simple)
    read -r ot _ ou _ _ < <(run "$op" "$O_PID" -c 50 -S -M simple)
  else
    read -r ot _ ou _ _ < <(run "$op" "$O_PID" -c 50 -S -M simple)
    read -r nt _ nu _ _ < <(run "$np" "$N_PID" -c 50 -S -M simple)
  fi
  kill -INT "$N_PID" "$O_PID" 2>/dev/null || true
  wait "$N_PID" "$O_PID" 2>/dev/null || true
  printf "| %s | %.0f | %s | %.0f | %s |\n" "$r" "$nt" "$nu" "$ot" "$ou"
  echo "$nt $nu $ot $ou" >>"$WORK/ab.rounds"
done
# Medians (robust to one disturbed round) and means of each column.
for stat in median mean; do
  line="| $stat |"
  for col in 1 2 3 4; do
    v=$(awk -v c="$col" '{print $c}' "$WORK/ab.rounds" | sort -g | awk -v s="$stat" '
      {v[NR] = $1; t += $1}
      END {
        if (s == "mean") { printf "%.1f", t / NR; exit }
        if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2
      }')
    line="$line $v |"
  done
  echo "$line"
done
fi

