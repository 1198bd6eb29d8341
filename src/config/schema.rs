//! The configuration file's shape. Names and meanings follow PgBouncer's
//! `pgbouncer.ini` wherever PgBouncer has the setting; see
//! `proxy.toml.example` for every key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duration::Secs;
use super::residency::{ResidencySettings, TenantMap};
pub use crate::auth::AuthType;
pub use crate::net::tls::SslMode;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client keeps its server until it disconnects.
    Session,
    /// A client holds a server for one transaction.
    #[default]
    Transaction,
    /// A client holds a server for one statement; transactions are refused.
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// How the runtime's threads share the work (restart to change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerModel {
    /// One single-threaded event loop per worker; a client, and the servers
    /// it borrows first, stay on one thread (see `worker.rs`).
    #[default]
    PerCore,
    /// tokio's work-stealing runtime over `workers` threads.
    Shared,
}

/// A list that may be written as a TOML array or as PgBouncer's comma-separated string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NameList(pub Vec<String>);

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        Ok(NameList(match Either::deserialize(d)? {
            Either::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            Either::Many(v) => v,
        }))
    }
}

/// A secret in the config (a password, a token): the text as written, but
/// `{:?}` shows `********`, so that no debug output of a config leaks it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"********\"")
    }
}

impl std::ops::Deref for Password {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password(s.to_owned())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Password(s)
    }
}

impl ProxySettings {
    /// `[proxy]` keys read at start only.
    pub const RESTART_ONLY: &'static [&'static str] = &[
        "listen",
        "listen_addr",
        "listen_port",
        "unix_socket_dir",
        "unix_socket_mode",
        "unix_socket_group",
        "tcp_defer_accept",
        "so_reuseport",
        "pidfile",
        "peer_id",
        "workers",
        "worker_model",
        "admin_listen",
    ];

    /// Worker threads (`workers`, where 0 means automatic). Per core, the
    /// automatic count is half the cores, at least one: a pooler usually
    /// shares its machine with PostgreSQL or with the application it sits
    /// beside, and one event loop that stays busy measured cheaper per
    /// transaction than two that take turns sleeping (docs/benchmarks.md,
    /// issue 19). On a host of its own, set `workers` to the core count.
    pub fn worker_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        match (self.workers, self.worker_model) {
            (0, WorkerModel::PerCore) => (cores / 2).max(1),
            (0, WorkerModel::Shared) => cores,
            (n, _) => n,
        }
    }

    /// The `tcp_*` options for client and server sockets, where 0 means
    /// "the system's value" as in PgBouncer.
    /// Logging's settings (`crate::logging` does not read the config).
    pub fn log_settings(&self) -> crate::logging::LogSettings {
        crate::logging::LogSettings {
            verbose: self.verbose,
            json: self.log_format == LogFormat::Json,
            logfile: self.logfile.clone(),
            syslog: self.syslog.then(|| crate::logging::SyslogTarget {
                socket: self.syslog_socket.clone(),
                ident: self.syslog_ident.clone(),
                facility: crate::logging::facility_code(&self.syslog_facility).unwrap_or(3),
            }),
        }
    }

    pub fn tcp_options(&self) -> crate::net::tcp::TcpOptions {
        use std::time::Duration;
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        crate::net::tcp::TcpOptions {
            keepalive: self.tcp_keepalive,
            keepidle: secs(self.tcp_keepidle),
            keepintvl: secs(self.tcp_keepintvl),
            keepcnt: (self.tcp_keepcnt > 0).then_some(self.tcp_keepcnt),
            user_timeout: (self.tcp_user_timeout > 0)
                .then(|| Duration::from_millis(self.tcp_user_timeout)),
            socket_buffer: (self.tcp_socket_buffer > 0).then_some(self.tcp_socket_buffer),
        }
    }

    /// Logins in progress allowed at once.
    pub fn login_budget(&self) -> usize {
        match self.max_login_clients {
            0 => (self.max_client_conn / 4).max(64),
            n => n,
        }
    }

    /// The restart-only keys whose values differ in `next`.
    pub fn restart_only_changes(&self, next: &ProxySettings) -> Vec<&'static str> {
        let changes = [
            ("listen", self.listen != next.listen),
            (
                "unix_socket_dir",
                self.unix_socket_dir != next.unix_socket_dir,
            ),
            (
                "unix_socket_mode",
                self.unix_socket_mode != next.unix_socket_mode,
            ),
            (
                "unix_socket_group",
                self.unix_socket_group != next.unix_socket_group,
            ),
            (
                "tcp_defer_accept",
                self.tcp_defer_accept != next.tcp_defer_accept,
            ),
            ("so_reuseport", self.so_reuseport != next.so_reuseport),
            ("pidfile", self.pidfile != next.pidfile),
            ("peer_id", self.peer_id != next.peer_id),
            ("workers", self.workers != next.workers),
            ("worker_model", self.worker_model != next.worker_model),
            ("admin_listen", self.admin_listen != next.admin_listen),
        ];
        changes
            .into_iter()
            .filter_map(|(key, changed)| changed.then_some(key))
            .collect()
    }
}

impl NameList {
    /// For names PostgreSQL folds (parameter names).
    pub fn contains_ignore_case(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// For role names, which are case-sensitive: `ADMIN` is not `admin`.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// `host:port`; `*` as host listens on every IPv4 address.
    pub listen: String,
    /// PgBouncer's spelling: each, when set, overrides its half of `listen`.
    pub listen_addr: Option<String>,
    pub listen_port: Option<u16>,
    /// A directory for a Unix-domain socket `.s.PGSQL.<port>` beside the
    /// TCP listener (empty: none). PgBouncer's name and meaning; its
    /// default is `/tmp`, pgwarden's is off, so that a pgwarden beside a
    /// PostgreSQL on the same port never takes over its socket name.
    pub unix_socket_dir: String,
    /// The socket file's permissions, in octal as PgBouncer writes them.
    pub unix_socket_mode: String,
    /// The socket file's group, a name or id (empty: the process's).
    pub unix_socket_group: String,
    /// How long a server host name's addresses are kept (0: looked up on
    /// every connect), and a failed lookup.
    pub dns_max_ttl: Secs,
    pub dns_nxdomain_ttl: Secs,
    /// A file to write the process id to (empty: none), removed at exit.
    pub pidfile: String,
    /// How many instances share `default_pool_size`, `pool_size`,
    /// `min_pool_size`, `reserve_pool_size`, `max_db_connections` and
    /// `max_user_connections`: each instance uses its share, rounded down
    /// (at least one server). 0: one per `[peers]` entry.
    pub fleet_size: usize,
    /// This instance's id among its `[peers]` (1-65535; 0: peering off).
    /// Cancel keys carry it, so a cancel that reaches another instance is
    /// forwarded here. Restart to change (issued keys carry the old one).
    /// A string of digits is taken too, so that `"${PEER_ID}"` works.
    #[serde(deserialize_with = "number_or_digits")]
    pub peer_id: u16,
    /// Append the client's address to its `application_name` at login.
    pub application_name_add_host: bool,
    /// The period of `SHOW STATS`' averages (0: PgBouncer's 60 s).
    pub stats_period: Secs,
    /// Log each database's averages once a period.
    pub log_stats: bool,
    /// Log each client's login, and each end with its cause.
    pub log_connections: bool,
    pub log_disconnections: bool,
    /// Log each error pgwarden itself sends a client.
    pub log_pooler_errors: bool,
    /// 0 logs at info, 1 adds debug, 2 trace (`RUST_LOG`, if set, wins).
    pub verbose: u8,
    /// Also append log lines to this file (empty: none); reopened on reload.
    pub logfile: String,
    /// `text` (human) or `json` (one object per line, for log shippers),
    /// on stderr and in `logfile`; syslog lines stay text.
    pub log_format: LogFormat,
    /// Also send log lines to syslog.
    pub syslog: bool,
    pub syslog_ident: String,
    pub syslog_facility: String,
    /// The local syslog socket (pgwarden's own key; PgBouncer's is fixed).
    pub syslog_socket: String,
    /// PgBouncer 1.20+'s list of extra parameters to follow per client:
    /// accepted for compatibility; pgwarden follows every parameter.
    pub track_extra_parameters: NameList,
    /// PgBouncer's TCP options, on client and server sockets alike
    /// (`net::tcp`); 0 keeps the system's value.
    pub tcp_keepalive: bool,
    /// Seconds.
    pub tcp_keepidle: u64,
    /// Seconds.
    pub tcp_keepintvl: u64,
    pub tcp_keepcnt: u32,
    /// Milliseconds, as in PgBouncer.
    pub tcp_user_timeout: u64,
    /// Bytes, for both the send and the receive buffer.
    pub tcp_socket_buffer: usize,
    /// Seconds (`TCP_DEFER_ACCEPT` on the listener). PgBouncer's default
    /// is 45 on Linux; pgwarden's is off, so that a client that connects
    /// and says nothing is seen (and timed out by `client_login_timeout`)
    /// rather than held back by the kernel.
    pub tcp_defer_accept: u32,
    /// Bind the listener with `SO_REUSEPORT`, so that a new pgwarden can
    /// listen on the same port while this one drains (a rolling restart:
    /// start the new one, then SIGTERM the old). Restart to change.
    pub so_reuseport: bool,
    /// Worker threads; 0 means automatic ([`ProxySettings::worker_count`]).
    pub workers: usize,
    pub worker_model: WorkerModel,
    pub pool_mode: PoolMode,
    pub max_client_conn: usize,
    /// Logins in progress at once (0: a quarter of `max_client_conn`, at
    /// least 64).
    pub max_login_clients: usize,
    pub default_pool_size: usize,
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: Secs,
    pub max_db_connections: usize,
    pub max_user_connections: usize,
    /// Clients logged in to one database (as clients name it) at once; 0: no limit.
    pub max_db_client_connections: usize,
    /// Clients logged in as one user at once; 0: no limit.
    pub max_user_client_connections: usize,
    pub server_lifetime: Secs,
    pub server_idle_timeout: Secs,
    pub server_connect_timeout: Secs,
    pub server_login_retry: Secs,
    pub query_wait_timeout: Secs,
    /// A cancel forwarded to a server must be done within this (0: no limit).
    pub cancel_wait_timeout: Secs,
    /// Tell a client queued this long for a server that it is (a NOTICE).
    pub query_wait_notify: Secs,
    pub client_idle_timeout: Secs,
    /// A client idle (no server, nothing buffered) this long is parked:
    /// its socket is watched by one task per worker instead of a task of
    /// its own, so that it costs only its session's state (0: never).
    pub park_idle_clients_after: Secs,
    pub client_login_timeout: Secs,
    pub idle_transaction_timeout: Secs,
    /// A transaction open longer than this ends its client (PgBouncer 1.25).
    pub transaction_timeout: Secs,
    pub query_timeout: Secs,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    /// In session mode, end a client between transactions once its server
    /// is to be replaced (`RECONNECT`, a reload), not when it leaves.
    pub server_fast_close: bool,
    /// Lend the least recently used idle server (spreads load) instead of
    /// the most recently used (PgBouncer's default, LIFO).
    pub server_round_robin: bool,
    /// Run on a server idle `server_check_delay` before lending it;
    /// `"<empty>"` sends an empty query (PgBouncer 1.25's default), `""`
    /// checks nothing.
    pub server_check_query: String,
    pub server_check_delay: Secs,
    pub ignore_startup_parameters: NameList,
    pub max_packet_size: usize,
    /// The most client bytes buffered per client: a message pgwarden must
    /// read whole (Query, Parse...; a Bind streams), or requests pipelined
    /// behind one it is waiting on.
    pub max_client_buffer: usize,
    /// The most client bytes buffered across all clients beyond each one's
    /// first 64 KiB: `max_total_client_buffer / max_client_buffer` clients
    /// at a time may buffer more; the others wait to be read.
    pub max_total_client_buffer: usize,
    /// Named prepared statements kept per server connection in transaction
    /// and statement mode (PgBouncer 1.21+'s setting); 0 turns tracking off.
    pub max_prepared_statements: usize,
    pub auth_type: AuthType,
    pub auth_file: Option<String>,
    /// A `pg_hba.conf`-format file, used when `auth_type = "hba"`.
    pub auth_hba_file: Option<String>,
    pub auth_user: Option<String>,
    pub auth_query: String,
    /// The configured database (a `[databases]` key) whose primary answers
    /// `auth_query`; unset: the database the client asked for.
    pub auth_dbname: Option<String>,
    pub shutdown_timeout: Secs,
    /// `SHOW QUERIES`: keep calls and latency per query fingerprint.
    pub query_stats: bool,
    /// At most this many fingerprints (the rest count as "(other)").
    pub query_stats_max: usize,
    /// HTTP `/metrics`, `/health`, `/ready` and `/pools`, e.g. "127.0.0.1:9127"
    /// (off when unset).
    pub admin_listen: Option<String>,
    /// When set, the HTTP endpoints but `/health` want
    /// `Authorization: Bearer <token>`.
    pub admin_http_token: Option<Password>,
    /// How a server may authenticate pgwarden (libpq's `require_auth`):
    /// `password`, `md5`, `scram-sha-256`, `none`.
    pub server_require_auth: NameList,
    /// TLS towards clients (PgBouncer's meanings): `disable`, `allow`,
    /// `prefer`, `require`, `verify-ca`, `verify-full`.
    pub client_tls_sslmode: SslMode,
    pub client_tls_key_file: Option<String>,
    pub client_tls_cert_file: Option<String>,
    /// CA that client certificates must chain to (asked for when set).
    pub client_tls_ca_file: Option<String>,
    pub client_tls_protocols: String,
    /// TLS towards servers (default `prefer`, as PgBouncer and libpq).
    pub server_tls_sslmode: SslMode,
    /// CA for server certificates (the system's when unset).
    pub server_tls_ca_file: Option<String>,
    /// A client certificate pgwarden shows servers.
    pub server_tls_key_file: Option<String>,
    pub server_tls_cert_file: Option<String>,
    pub server_tls_protocols: String,
    /// Users with the full admin console (database `pgwarden` or `pgbouncer`).
    pub admin_users: NameList,
    /// Users with the read-only console (`SHOW` commands only).
    pub stats_users: NameList,
    /// Where this proxy runs: nodes in this region are preferred.
    pub region: Option<String>,
    /// More `[tenants]` entries, in a TOML file of `tenant = ["region", ...]`
    /// lines, read again on reload.
    pub tenants_file: Option<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        // PgBouncer's defaults, except `listen`, `pool_mode` (transaction is
        // why people deploy a pooler) and `shutdown_timeout` (PgBouncer waits forever).
        Self {
            listen: "127.0.0.1:6432".into(),
            listen_addr: None,
            listen_port: None,
            unix_socket_dir: String::new(),
            unix_socket_mode: "0777".into(),
            unix_socket_group: String::new(),
            dns_max_ttl: Secs::from_secs(15),
            dns_nxdomain_ttl: Secs::from_secs(15),
            pidfile: String::new(),
            peer_id: 0,
            fleet_size: 1,
            application_name_add_host: false,
            stats_period: Secs::from_secs(60),
            log_stats: true,
            log_connections: true,
            log_disconnections: true,
            log_pooler_errors: true,
            verbose: 0,
            logfile: String::new(),
            syslog: false,
            syslog_ident: "pgwarden".into(),
            syslog_facility: "daemon".into(),
            syslog_socket: "/dev/log".into(),
            log_format: LogFormat::Text,
            track_extra_parameters: NameList(vec!["IntervalStyle".into()]),
            tcp_keepalive: true,
            tcp_keepidle: 0,
            tcp_keepintvl: 0,
            tcp_keepcnt: 0,
            tcp_user_timeout: 0,
            tcp_socket_buffer: 0,
            tcp_defer_accept: 0,
            so_reuseport: false,
            workers: 0,
            worker_model: WorkerModel::PerCore,
            pool_mode: PoolMode::Transaction,
            max_client_conn: 100,
            max_login_clients: 0,
            default_pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Secs::from_secs(5),
            max_db_connections: 0,
            max_user_connections: 0,
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            server_lifetime: Secs::from_secs(3600),
            server_idle_timeout: Secs::from_secs(600),
            server_connect_timeout: Secs::from_secs(15),
            server_login_retry: Secs::from_secs(15),
            query_wait_timeout: Secs::from_secs(120),
            query_wait_notify: Secs::from_secs(5),
            cancel_wait_timeout: Secs::from_secs(10),
            client_idle_timeout: Secs::ZERO,
            park_idle_clients_after: Secs::from_secs(2),
            client_login_timeout: Secs::from_secs(60),
            idle_transaction_timeout: Secs::ZERO,
            transaction_timeout: Secs::ZERO,
            query_timeout: Secs::ZERO,
            server_reset_query: "DISCARD ALL".into(),
            server_reset_query_always: false,
            server_round_robin: false,
            server_fast_close: false,
            server_check_query: "<empty>".into(),
            server_check_delay: Secs::from_secs(30),
            ignore_startup_parameters: NameList::default(),
            max_packet_size: i32::MAX as usize,
            max_client_buffer: 8 << 20,
            max_total_client_buffer: 256 << 20,
            max_prepared_statements: 200,
            auth_type: AuthType::Md5,
            auth_file: None,
            auth_hba_file: None,
            auth_user: None,
            auth_query: "SELECT usename, passwd FROM pg_shadow WHERE usename=$1".into(),
            auth_dbname: None,
            shutdown_timeout: Secs::from_secs(30),
            query_stats: false,
            query_stats_max: 1000,
            admin_listen: None,
            admin_http_token: None,
            server_require_auth: NameList(vec![
                "md5".into(),
                "scram-sha-256".into(),
                "none".into(),
            ]),
            client_tls_sslmode: SslMode::Disable,
            client_tls_key_file: None,
            client_tls_cert_file: None,
            client_tls_ca_file: None,
            client_tls_protocols: "secure".into(),
            server_tls_sslmode: SslMode::Prefer,
            server_tls_ca_file: None,
            server_tls_key_file: None,
            server_tls_cert_file: None,
            server_tls_protocols: "secure".into(),
            admin_users: NameList::default(),
            stats_users: NameList::default(),
            region: None,
            tenants_file: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The database's name on the server; defaults to the table's name.
    pub dbname: Option<String>,
    /// `"host:port"` of the primary (empty for a database made of `clusters`).
    #[serde(default)]
    pub primary: String,
    /// Region of the primary, and of replicas that name none.
    pub region: Option<String>,
    /// A database served by other configured databases, one per region
    /// set: each session uses the one its tenant's regions allow.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Each streaming replica: `"host:port"`, or a table with `addr` and
    /// optional `weight` (for `weighted_random`) and `region`.
    #[serde(default)]
    pub replicas: Vec<NodeSpec>,
    pub pool_size: Option<usize>,
    pub min_pool_size: Option<usize>,
    pub reserve_pool_size: Option<usize>,
    pub max_db_connections: Option<usize>,
    pub max_db_client_connections: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    pub server_lifetime: Option<Secs>,
    /// Run on every new server connection before any client gets it
    /// (PgBouncer's `connect_query`); its failure closes that server.
    pub connect_query: Option<String>,
    /// Startup parameters of every server connection, so the session
    /// defaults clients start from (and `RESET` returns to).
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    pub application_name: Option<String>,
    /// Override `[proxy] auth_user`, `auth_query`, `auth_dbname` here.
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
    /// Overrides `[proxy] server_tls_sslmode` for this database's nodes.
    pub server_tls_sslmode: Option<SslMode>,
    /// The name `verify-full` checks instead of each node address's host.
    pub server_tls_server_name: Option<String>,
    /// Log in to the server as this user, whoever the client is.
    pub user: Option<String>,
    pub password: Option<Password>,
    /// In transaction/statement mode, what `LISTEN`, session advisory
    /// locks, temporary tables, `WITH HOLD` cursors and `SET ROLE` do:
    /// `pin` the client to its server while the state lasts, or `refuse`.
    #[serde(default)]
    pub session_features: SessionFeatures,
    /// Read/write splitting and the topology monitor (`[databases.NAME.routing]`).
    #[serde(default)]
    pub routing: RoutingSettings,
    /// Which regions serve which tenants (`[databases.NAME.residency]`).
    #[serde(default)]
    pub residency: ResidencySettings,
}

impl DatabaseSettings {
    /// The region of the node at `addr` (the primary's, or a replica's own
    /// falling back to the database's); `None` for an unknown node or none set.
    pub fn node_region(&self, addr: &str) -> Option<&str> {
        if self.primary == addr {
            return self.region.as_deref();
        }
        let replica = self.replicas.iter().find(|r| r.addr == addr)?;
        replica.region.as_deref().or(self.region.as_deref())
    }
}

/// A replica as configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeSpec {
    pub addr: String,
    pub weight: u32,
    pub region: Option<String>,
}

impl From<String> for NodeSpec {
    fn from(addr: String) -> Self {
        Self {
            addr,
            weight: 1,
            region: None,
        }
    }
}

impl<'de> Deserialize<'de> for NodeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            addr: String,
            #[serde(default = "one")]
            weight: u32,
            region: Option<String>,
        }
        fn one() -> u32 {
            1
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Addr(String),
            Table(Table),
        }
        Ok(match Either::deserialize(d)? {
            Either::Addr(a) => a.into(),
            Either::Table(t) => NodeSpec {
                addr: t.addr,
                weight: t.weight,
                region: t.region,
            },
        })
    }
}

/// How reads pick among qualifying replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaSelection {
    /// Fewest transactions in flight through pgwarden.
    #[default]
    LeastOutstanding,
    /// Two random replicas, the less busy (then faster) one wins.
    P2c,
    RoundRobin,
    /// By each replica's `weight`.
    WeightedRandom,
}

/// What a read does when no replica qualifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaFallback {
    #[default]
    Primary,
    Error,
}

/// Whether the primary serves reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryReads {
    Never,
    /// Only when no replica qualifies (and `replica_fallback = "primary"`).
    #[default]
    Fallback,
    /// Always in the read rotation, alongside the replicas.
    Always,
}

/// How fresh a session's reads must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Any replica in rotation.
    Eventual,
    /// After a client's write commits, its reads only see replicas that
    /// have replayed it.
    #[default]
    ReadYourWrites,
    /// Only replicas within the session's `pgwarden.max_staleness_ms`.
    Bounded,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eventual" => Some(Self::Eventual),
            "read_your_writes" | "ryw" => Some(Self::ReadYourWrites),
            "bounded" => Some(Self::Bounded),
            _ => None,
        }
    }
}

/// Where read-your-writes learns the position a client's write reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitLsn {
    /// `SELECT pg_current_wal_insert_lsn()` on the primary as each write
    /// transaction ends, reported to the client as `pgwarden.commit_lsn`
    /// before its ReadyForQuery: one round trip per write, and a read right
    /// after it may use a replica that has caught up.
    #[default]
    Query,
    /// No extra round trip: the monitor's next check of the primary gives
    /// the position; until then (one `monitor_interval`) the client's reads
    /// go to the primary.
    Monitor,
}

/// `[databases.NAME.routing]`: read/write splitting, replica choice,
/// consistency, failover and the topology monitor. Used only when the
/// database has replicas and runs in transaction or statement mode.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// Send read-only transactions to replicas at all.
    pub read_write_split: bool,
    pub replica_selection: ReplicaSelection,
    /// A replica further behind than this leaves rotation (0: no limit).
    pub max_replica_lag_bytes: u64,
    pub max_replica_lag_ms: u64,
    pub replica_fallback: ReplicaFallback,
    pub primary_reads: PrimaryReads,
    pub consistency: Consistency,
    /// Staleness allowed by `consistency = "bounded"` unless the session sets
    /// `pgwarden.max_staleness_ms`.
    pub max_staleness_ms: u64,
    /// How long a read-your-writes read waits for a replica to catch up
    /// before it goes to the primary.
    pub ryw_wait_ms: u64,
    pub ryw_commit_lsn: CommitLsn,
    /// How long a write waits for a primary when there is none (failover).
    pub failover_wait_ms: u64,
    /// `SWITCHOVER` may promote the target itself (`pg_promote()`); when
    /// off it waits for an operator to promote it.
    pub switchover_promote: bool,
    /// Functions (lower-case, optionally schema-qualified) that do not
    /// write, so that a `SELECT` calling them may go to a replica.
    pub read_only_functions: NameList,
    /// How often each node is checked.
    pub monitor_interval: Secs,
    /// A check slower than this fails.
    pub monitor_timeout: Secs,
    /// Good checks in a row before a node that failed (or lagged) returns.
    pub monitor_rise: u32,
    /// Login of the monitor's own connections; defaults to the database's
    /// `user`, then `auth_user`.
    pub monitor_user: Option<String>,
    pub monitor_password: Option<Password>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            read_write_split: true,
            replica_selection: ReplicaSelection::default(),
            max_replica_lag_bytes: 16 << 20,
            max_replica_lag_ms: 1000,
            replica_fallback: ReplicaFallback::default(),
            primary_reads: PrimaryReads::default(),
            consistency: Consistency::default(),
            max_staleness_ms: 1000,
            ryw_wait_ms: 50,
            ryw_commit_lsn: CommitLsn::default(),
            failover_wait_ms: 5000,
            switchover_promote: false,
            read_only_functions: NameList::default(),
            monitor_interval: Secs::from_millis(250),
            monitor_timeout: Secs::from_secs(1),
            monitor_rise: 2,
            monitor_user: None,
            monitor_password: None,
        }
    }
}

/// A number, or a string of its digits (what `${VAR}` expands to).
fn number_or_digits<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64> + std::str::FromStr,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Digits(String),
    }
    let wrong = || serde::de::Error::custom("expected a number (or a string of digits)");
    match Raw::deserialize(d)? {
        Raw::Number(n) => T::try_from(n).map_err(|_| wrong()),
        Raw::Digits(s) => s.trim().parse().map_err(|_| wrong()),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionFeatures {
    #[default]
    Pin,
    Refuse,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Cleartext, `md5...` or `SCRAM-SHA-256$...` secret.
    pub password: Option<Password>,
    pub pool_mode: Option<PoolMode>,
    /// Over the database's and `default_pool_size`, as in PgBouncer.
    pub pool_size: Option<usize>,
    pub reserve_pool_size: Option<usize>,
    pub max_user_connections: Option<usize>,
    pub max_user_client_connections: Option<usize>,
    /// Over `[proxy]`'s for this user's sessions.
    pub query_timeout: Option<Secs>,
    pub idle_transaction_timeout: Option<Secs>,
    pub transaction_timeout: Option<Secs>,
    pub client_idle_timeout: Option<Secs>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSettings>,
    #[serde(default)]
    pub users: BTreeMap<String, UserSettings>,
    /// Regions each tenant may be served from.
    #[serde(default)]
    pub tenants: TenantMap,
    /// The other instances behind the same load balancer: peer id
    /// (`"1"`..`"65535"`) → `"host:port"` (PgBouncer's `[peers]`).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
}

impl Config {
    /// `peer_id` and `[peers]` for the cancel registry (validated ids).
    pub fn peer_settings(&self) -> crate::peers::PeerSettings {
        crate::peers::PeerSettings {
            me: self.proxy.peer_id,
            peers: self
                .peers
                .iter()
                .filter_map(|(id, addr)| Some((id.parse().ok()?, addr.clone())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tcp_tests {
    use super::*;

    #[test]
    fn zero_means_the_systems_value() {
        let mut p = ProxySettings::default();
        assert!(p.tcp_options().keepalive, "on by default");
        assert_eq!(p.tcp_options().keepidle, None);
        p.tcp_keepidle = 600;
        p.tcp_user_timeout = 2500;
        let o = p.tcp_options();
        assert_eq!(o.keepidle, Some(std::time::Duration::from_secs(600)));
        assert_eq!(o.user_timeout, Some(std::time::Duration::from_millis(2500)));
    }
}
