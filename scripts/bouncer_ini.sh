# PgBouncer's config for the benchmarks (sourced by bench.sh and
# callgrind.sh): one database `app` on the local PostgreSQL, transaction
# mode, trust login with the user list in DIR, its log in DIR.
bouncer_ini() { # $1: its port, $2: PostgreSQL's port, $3: DIR, $4: pool size
  cat <<INI
[databases]
app = host=127.0.0.1 port=$2 dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = trust
ignore_startup_parameters = extra_float_digits
auth_file = $3/userlist.txt
pool_mode = transaction
default_pool_size = $4
max_client_conn = 20000
logfile = $3/pgbouncer.log
INI
}
