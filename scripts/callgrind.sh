#!/usr/bin/env bash
# Instructions per transaction: pgwarden under callgrind, the whole
# user-space count divided by the transactions. Repeatable to a few
# percent for one binary (how often the loop parks moves it: 7,834-8,370
# for one `-S simple -c 10` build), where a 10 s pgbench row on this
# machine moves by 20% or more: the way to compare two builds of the hot
# path, over more than one run when the difference is small.
#
#   scripts/callgrind.sh [BIN ...]          # default: target/release/pgwarden
#   CG_ROWS="simple:10 extended:100 prepared:10 tpcb:10 routed:10" scripts/callgrind.sh old new
#   scripts/callgrind.sh target/release/pgwarden pgbouncer   # PgBouncer beside it
#                                           # (not first: the first binary
#                                           # starts the cluster)
#
# `pgbouncer` (Debian's package) runs with the same pool in transaction
# mode, as the postgres user when this runs as root, and so does
# callgrind_control (vgdb as root left it stopped); it has no routed or
# -M prepared rows (1.18 cannot). `target/release/examples/relay_floor`
# (`cargo build --release --example relay_floor`) is the floor of a tokio
# task per client: bytes copied both ways, a server per client, no pool.
#
# Each dump is kept as $CG_DIR/last-<bin>-<mode>-<clients>.out; where the
# instructions go, by function or by line: scripts/cg_diff.py.
#
# Each row is MODE:CLIENTS. MODE is a pgbench -S protocol (simple,
# extended, prepared), `tpcb` (TPC-B, -M simple) or `routed` (-S simple
# through a splitter over the primary and two streaming replicas). The
# cluster (the quickstart's, scale 10) stays in CG_DIR between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/routing_toml.sh
. scripts/bouncer_ini.sh

DIR=${CG_DIR:-/tmp/pgwarden-callgrind}
ROWS=${CG_ROWS:-simple:10 extended:10 prepared:10}
PGPORT=${CG_PG_PORT:-26500}
PORT=$((PGPORT + 10))
PGBIN=$(pg_config --bindir)
export PGPASSWORD=app
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  cargo build --release --locked --bin pgwarden >&2
  BINS=("$PWD/target/release/pgwarden")
fi
mkdir -p "$DIR"
chmod 755 "$DIR"

# The cluster: the quickstart's, kept in $DIR between runs and running
# while this script does (its own idle proxy listens on another port).
"${BINS[0]}" quickstart --state-dir "$DIR/pg" --pg-port "$PGPORT" --replicas 2 \
  --listen "127.0.0.1:$((PGPORT + 20))" >"$DIR/qs.log" 2>&1 &
QS=$!
trap 'kill -INT $QS 2>/dev/null; wait $QS 2>/dev/null' EXIT
for _ in $(seq 180); do grep -q DATABASE_URL "$DIR/qs.log" && break; sleep 1; done
grep -q DATABASE_URL "$DIR/qs.log" || { cat "$DIR/qs.log" >&2; exit 1; }
if [ ! -f "$DIR/scale10" ]; then
  "$PGBIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$PGPORT" -U app app >/dev/null 2>&1
  touch "$DIR/scale10"
fi
MONPW=$(awk -F'"' '/^monitor_password/ {print $2}' "$DIR/pg/proxy.toml")

config() { # $1: routed or not
  cat <<TOML
[proxy]
listen = "127.0.0.1:$PORT"
pool_mode = "transaction"
default_pool_size = 20
max_client_conn = 20000
auth_type = "trust"
server_tls_sslmode = "disable"
workers = 1
[users.app]
password = "app"
[databases.app]
primary = "127.0.0.1:$PGPORT"
TOML
  if [ "$1" = routed ]; then
    routing_toml "$PGPORT" "$MONPW"
  fi
}

# As root, PgBouncer (and the tools that talk to its valgrind) run as postgres.
OWNER=()
[ "$(id -u)" -eq 0 ] && OWNER=(setpriv --reuid=postgres --regid=postgres --init-groups)

# One row for one binary: prints instructions per transaction.
row() { # $1 binary (or pgbouncer), $2 mode, $3 clients
  local bin=$1 mode=$2 c=$3 proto=$2 script=(-S) per=1000 ctl=() stop=INT
  case $mode in
    tpcb) proto=simple; script=(); per=200 ;;
    routed) proto=simple ;;
  esac
  rm -f "$DIR"/cg.out*
  if [ "$bin" = pgbouncer ]; then
    case $mode in routed | prepared) echo n/a; return ;; esac
    echo '"app" "app"' >"$DIR/userlist.txt"
    bouncer_ini "$PORT" "$PGPORT" "$DIR" 20 >"$DIR/bouncer.ini"
    [ "$(id -u)" -eq 0 ] && chown postgres "$DIR" "$DIR/userlist.txt" "$DIR/bouncer.ini"
    ctl=("${OWNER[@]}")
    "${OWNER[@]}" valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" \
      "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" "$DIR/bouncer.ini" >"$DIR/proxy.log" 2>&1 &
  elif [ "$(basename "$bin")" = relay_floor ]; then
    [ "$mode" = routed ] && { echo n/a; return; }
    # It keeps the default signal dispositions, and a background job
    # ignores SIGINT.
    stop=TERM
    valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" \
      "$bin" "127.0.0.1:$PORT" "127.0.0.1:$PGPORT" >"$DIR/proxy.log" 2>&1 &
  else
    config "$mode" >"$DIR/w.toml"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" \
      "$bin" run --config "$DIR/w.toml" >"$DIR/proxy.log" 2>&1 &
  fi
  local vg=$!
  for _ in $(seq 100); do
    "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U app -d app -Atc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.3
  done
  local bench=("$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U app -n -j 2 -c "$c" -M "$proto" "${script[@]}")
  "${bench[@]}" -t 100 app >/dev/null 2>&1
  "${ctl[@]}" callgrind_control -z "$vg" >/dev/null 2>&1
  "${bench[@]}" -t "$per" app >/dev/null 2>&1
  "${ctl[@]}" callgrind_control -d "$vg" >/dev/null 2>&1
  kill -"$stop" "$vg"; wait "$vg" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$DIR"/cg.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1}')
  echo $((total / (c * per)))
  cp "$DIR"/cg.out.1 "$DIR/last-$(basename "$bin")-$mode-$c.out"
}

printf '| row |'; for b in "${BINS[@]}"; do printf ' %s |' "$b"; done; echo
printf '|---|'; for _ in "${BINS[@]}"; do printf -- '---:|'; done; echo
for r in $ROWS; do
  mode=${r%%:*}; c=${r##*:}
  printf '| %s c%s |' "$mode" "$c"
  for b in "${BINS[@]}"; do printf ' %s |' "$(row "$b" "$mode" "$c")"; done
  echo
done

