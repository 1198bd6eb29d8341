# The read/write split both benchmarks measure (sourced by bench.sh and
# callgrind.sh): the quickstart's two streaming replicas, on the primary's
# port + 1 and + 2, beside its primary; every read spread
# (`primary_reads = "always"`); the monitor logged in as the quickstart's
# superuser.
routing_toml() { # $1: the primary's port, $2: the monitor's password
  cat <<TOML
replicas = ["127.0.0.1:$(($1 + 1))", "127.0.0.1:$(($1 + 2))"]
[databases.app.routing]
primary_reads = "always"
monitor_user = "postgres"
monitor_password = "$2"
TOML
}
