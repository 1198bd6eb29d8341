//! Every error pgwarden raises towards a client, mapped in one place to the
//! SQLSTATE, severity and text a PostgreSQL client expects.
//!
//! Client text never carries internal detail (addresses, OS errors): those
//! go to the log. Errors that a server sent are forwarded verbatim and do
//! not pass through here.
//!
//! SQLSTATE list: <https://www.postgresql.org/docs/current/errcodes-appendix.html>

use bytes::BytesMut;

use crate::auth::backend::BackendAuthError;
use crate::pool::PoolError;
use crate::server::ServerError;
use crate::wire::backend::{self, Severity};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no more connections allowed (max_client_conn)")]
    TooManyClients,
    #[error("client connections exceeded (max_db_client_connections)")]
    TooManyDbClients,
    #[error("client connections exceeded (max_user_client_connections)")]
    TooManyUserClients,
    #[error("too many logins in progress (max_login_clients)")]
    TooManyLogins,
    #[error("{0}")]
    MessageTooLarge(String),
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    #[error("role \"{0}\" does not exist")]
    UnknownRole(String),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("no user name in startup packet")]
    NoUser,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("unsupported startup parameter: {0}")]
    UnsupportedParameter(String),
    /// The `options` startup parameter, refused as PostgreSQL refuses it.
    #[error("{0}")]
    StartupOption(String),
    #[error("{0} is not supported by pgwarden")]
    Unsupported(&'static str),
    #[error("query_wait_timeout: no server connection became free in time")]
    QueryWaitTimeout,
    #[error("canceling statement due to query_timeout")]
    QueryTimeout,
    /// A cancel request reached the client while it waited for a server:
    /// its request never ran. PostgreSQL's own text for a cancel.
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error(
        "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)"
    )]
    IdleTransactionTimeout,
    #[error("terminating connection due to transaction timeout (transaction_timeout)")]
    TransactionTimeout,
    #[error("terminating connection due to idle timeout (client_idle_timeout)")]
    ClientIdleTimeout,
    #[error("client_login_timeout: login not completed in time")]
    LoginTimeout,
    /// The client closed its connection during login: psql does this when
    /// a password is asked for and it has none (it prompts and reconnects).
    /// Nobody is told: the socket is gone.
    #[error("the client closed the connection during login")]
    LoginAbandoned,
    /// `client_tls_sslmode` is `require` or stronger and the client did
    /// not start TLS (PgBouncer's "SSL required", PostgreSQL's 28000).
    #[error("SSL required: pgwarden accepts only TLS connections (connect with sslmode=require or stronger)")]
    TlsRequired,
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(String),
    #[error("connection requires a valid client certificate")]
    CertRequired,
    #[error("certificate authentication failed for user \"{0}\"")]
    CertRefused(String),
    /// No `auth_hba_file` line matched, in PostgreSQL's words.
    #[error("no pg_hba.conf entry for {0}")]
    HbaNoEntry(HbaConnection),
    #[error("pg_hba.conf rejects connection for {0}")]
    HbaReject(HbaConnection),
    #[error("server connection lost; the current transaction's outcome is unknown")]
    ServerLost,
    #[error("could not connect to the database server")]
    ServerUnavailable,
    /// A new server's `connect_query` failed (with this message).
    #[error("could not set up a server connection: connect_query failed: {0}")]
    ConnectQueryFailed(String),
    #[error("the server asks user \"{0}\" for a password that pgwarden does not know (add it to auth_file or [users], or use auth_query)")]
    NoServerPassword(String),
    /// The server did not authenticate as `server_require_auth` wants.
    #[error("{0}")]
    ServerAuthNotAllowed(String),
    /// A `SET pgwarden.route|consistency|max_staleness_ms|min_lsn` (or its
    /// startup parameter, for `min_lsn`) to a value it cannot take.
    #[error("invalid value for a pgwarden routing setting: {0}")]
    BadRoutingValue(String),
    #[error("pgwarden is shutting down")]
    Shutdown,
    #[error("transaction blocks are not allowed in statement pooling mode")]
    TransactionInStatementMode,
    #[error(
        "no primary is reachable for database \"{db}\" (waited failover_wait_ms = {waited_ms})"
    )]
    NoPrimary { db: String, waited_ms: u64 },
    /// Which two nodes go to the log and `SHOW NODES`, not to the client.
    #[error("writes refused: two nodes both claim to be the primary of database \"{db}\"; stop or demote one (split brain, see SHOW NODES)")]
    SplitBrain { db: String },
    #[error(
        "no replica of database \"{0}\" is within the lag limits and replica_fallback = \"error\""
    )]
    NoReplica(String),
    /// Data residency (class RZ, see `docs/data-residency.md`): no node in
    /// the tenant's regions can serve it, and `strict` never uses another.
    #[error("no node of database \"{db}\" in tenant \"{tenant}\"'s regions ({regions}) is available; residency is strict, so no other region is used")]
    NoNodeInRegion {
        db: String,
        tenant: String,
        regions: String,
    },
    #[error("tenant \"{0}\" is not in the tenant map")]
    UnknownTenant(String),
    #[error("no tenant is set: connect with options=-c pgwarden.tenant=... or run SET pgwarden.tenant = '...' first")]
    TenantNotSet,
    #[error("the tenant of this session cannot be changed ({0})")]
    TenantFixed(&'static str),
    #[error("database \"{0}\" is disabled (DISABLE from the admin console)")]
    DatabaseDisabled(String),
    /// Admin console (see `src/admin/`).
    #[error("user \"{0}\" may not use the admin console (not in admin_users or stats_users)")]
    AdminNotAllowed(String),
    #[error("permission denied: {0} needs a user in admin_users")]
    AdminReadOnly(String),
    /// A console command pgwarden does not know or cannot parse: 08P01, as
    /// PgBouncer answers every console error.
    #[error("{0}")]
    AdminSyntax(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    AdminUnknownSetting(String),
    /// A console command naming a database that is not configured:
    /// PgBouncer's words and code (08P01, as every console error of its).
    #[error("no such database: {0}")]
    AdminNoSuchDatabase(String),
    #[error("client not found: {0}")]
    AdminNoSuchClient(u64),
    /// `KILL_CLIENT`: what its client is told.
    #[error("admin forced disconnect")]
    AdminKilled,
    /// `server_fast_close`: its session-mode server was replaced.
    #[error("database configuration changed")]
    ServerFastClose,
    #[error("invalid value for parameter \"{key}\": {why}")]
    AdminBadValue { key: String, why: String },
    #[error("no node \"{0}\" in any database (see SHOW NODES)")]
    UnknownNode(String),
    #[error("node {node} is the primary of database \"{db}\": move writes first (SWITCHOVER)")]
    NodeIsWriter { node: String, db: String },
    #[error("switchover not done: {0}")]
    SwitchoverFailed(String),
    #[error("parameter \"{0}\" cannot be changed without restarting pgwarden")]
    AdminRestartOnly(String),
    #[error("{0}")]
    AdminNotYet(String),
    #[error("configuration file error, the running configuration is kept: {0}")]
    ConfigRefused(String),
    #[error("internal error")]
    Internal,
    /// A server's refusal when pgwarden opened a connection for the client,
    /// passed on with the server's own code and message.
    #[error("{message}")]
    Server { code: String, message: String },
}

/// A connection as PostgreSQL names it in its pg_hba.conf refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaConnection {
    pub host: String,
    pub user: String,
    pub database: String,
    pub tls: bool,
}

impl std::fmt::Display for HbaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encryption = if self.tls {
            "SSL encryption"
        } else {
            "no encryption"
        };
        write!(
            f,
            "host \"{}\", user \"{}\", database \"{}\", {encryption}",
            self.host, self.user, self.database
        )
    }
}

impl ProxyError {
    pub fn sqlstate(&self) -> &str {
        use ProxyError::*;
        match self {
            Server { code, .. } => code,
            TooManyClients | TooManyLogins | TooManyDbClients | TooManyUserClients => "53300",
            MessageTooLarge(_) => "54000",
            BadPassword(_) => "28P01",
            UnknownRole(_) | NoUser | NoServerPassword(_) | ServerAuthNotAllowed(_) => "28000",
            UnknownDatabase(_) => "3D000",
            Protocol(_) | UnsupportedParameter(_) | LoginTimeout | TlsHandshake(_) => "08P01",
            TlsRequired | CertRequired | CertRefused(_) | HbaNoEntry(_) | HbaReject(_) => "28000",
            // ERRCODE_SYNTAX_ERROR, as PostgreSQL answers a bad `options`.
            StartupOption(_) => "42601",
            Unsupported(_) | TransactionInStatementMode => "0A000",
            QueryWaitTimeout | QueryTimeout | Cancelled => "57014",
            // PgBouncer's code (it answers every error of its own with
            // 08P01); PostgreSQL's own timeout would say 25P03.
            IdleTransactionTimeout | TransactionTimeout => "08P01",
            ClientIdleTimeout => "57P05",
            ServerLost | NoPrimary { .. } | LoginAbandoned => "08006",
            SplitBrain { .. } => "25006",
            NoReplica(_) => "57P03",
            NoNodeInRegion { .. } => "RZ001",
            UnknownTenant(_) => "RZ002",
            TenantNotSet => "RZ003",
            TenantFixed(_) => "RZ004",
            ServerUnavailable | ConnectQueryFailed(_) => "08001",
            Shutdown => "57P01",
            DatabaseDisabled(_) => "57P03",
            AdminNotAllowed(_) => "28000",
            AdminReadOnly(_) => "42501",
            AdminSyntax(_)
            | AdminNoSuchDatabase(_)
            | AdminNoSuchClient(_)
            | AdminKilled
            | ServerFastClose => "08P01",
            AdminUnknownSetting(_) => "42704",
            AdminBadValue { .. } | BadRoutingValue(_) => "22023",
            AdminRestartOnly(_) => "55P02",
            UnknownNode(_) => "42704",
            NodeIsWriter { .. } | SwitchoverFailed(_) => "55000",
            AdminNotYet(_) => "0A000",
            ConfigRefused(_) => "F0000",
            Internal => "XX000",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            ProxyError::QueryTimeout
            | ProxyError::Cancelled
            | ProxyError::TransactionInStatementMode
            | ProxyError::NoPrimary { .. }
            | ProxyError::SplitBrain { .. }
            | ProxyError::NoReplica(_)
            | ProxyError::NoNodeInRegion { .. }
            | ProxyError::UnknownTenant(_)
            | ProxyError::TenantNotSet
            | ProxyError::TenantFixed(_)
            | ProxyError::AdminReadOnly(_)
            | ProxyError::AdminSyntax(_)
            | ProxyError::AdminUnknownSetting(_)
            | ProxyError::AdminBadValue { .. }
            | ProxyError::BadRoutingValue(_)
            | ProxyError::AdminRestartOnly(_)
            | ProxyError::UnknownNode(_)
            | ProxyError::NodeIsWriter { .. }
            | ProxyError::SwitchoverFailed(_)
            | ProxyError::AdminNotYet(_)
            | ProxyError::ConfigRefused(_) => Severity::Error,
            _ => Severity::Fatal,
        }
    }

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        use ProxyError::*;
        match self {
            TooManyClients | TooManyLogins | TooManyDbClients | TooManyUserClients => {
                "too_many_clients"
            }
            BadPassword(_) => "bad_password",
            UnknownRole(_) | NoUser => "unknown_role",
            UnknownDatabase(_) => "unknown_database",
            Protocol(_) | UnsupportedParameter(_) | StartupOption(_) => "protocol",
            MessageTooLarge(_) => "message_too_large",
            Unsupported(_) => "unsupported",
            QueryWaitTimeout => "query_wait_timeout",
            QueryTimeout => "query_timeout",
            Cancelled => "cancelled",
            IdleTransactionTimeout => "idle_transaction_timeout",
            TransactionTimeout => "transaction_timeout",
            ClientIdleTimeout => "client_idle_timeout",
            LoginTimeout => "client_login_timeout",
            LoginAbandoned => "login_abandoned",
            TlsRequired => "tls_required",
            TlsHandshake(_) => "tls_handshake",
            CertRequired | CertRefused(_) => "cert_refused",
            HbaNoEntry(_) | HbaReject(_) => "hba_refused",
            ServerLost => "server_lost",
            ServerUnavailable => "server_unavailable",
            ConnectQueryFailed(_) => "connect_query_failed",
            NoServerPassword(_) => "no_server_password",
            ServerAuthNotAllowed(_) => "server_auth_not_allowed",
            BadRoutingValue(_) => "bad_routing_value",
            Shutdown => "shutdown",
            TransactionInStatementMode => "statement_mode",
            NoPrimary { .. } => "no_primary",
            SplitBrain { .. } => "split_brain",
            NoReplica(_) => "no_replica",
            NoNodeInRegion { .. } => "residency_no_node",
            UnknownTenant(_) => "residency_unknown_tenant",
            TenantNotSet => "residency_tenant_not_set",
            TenantFixed(_) => "residency_tenant_fixed",
            DatabaseDisabled(_) => "database_disabled",
            AdminNotAllowed(_) => "admin_not_allowed",
            AdminReadOnly(_) => "admin_read_only",
            AdminSyntax(_) => "admin_syntax",
            AdminNoSuchDatabase(_) => "admin_no_such_database",
            AdminNoSuchClient(_) => "admin_no_such_client",
            AdminKilled => "admin_killed",
            ServerFastClose => "server_fast_close",
            AdminUnknownSetting(_) => "admin_unknown_setting",
            AdminBadValue { .. } => "admin_bad_value",
            AdminRestartOnly(_) => "admin_restart_only",
            UnknownNode(_) => "admin_unknown_node",
            NodeIsWriter { .. } => "admin_node_is_writer",
            SwitchoverFailed(_) => "admin_switchover_failed",
            AdminNotYet(_) => "admin_not_yet",
            ConfigRefused(_) => "config_refused",
            Internal => "internal",
            Server { .. } => "server_refused",
        }
    }

    /// Appends this error as an ErrorResponse.
    pub fn encode(&self, buf: &mut BytesMut) {
        backend::error_response(
            buf,
            self.severity(),
            self.sqlstate(),
            &self.to_string(),
            None,
        );
    }
}

impl ProxyError {
    /// Why no server could be had for `user`: the server's own refusal
    /// passed on (its code and message), else pgwarden's words; the
    /// address and OS error stay in the log.
    pub fn from_pool(e: PoolError, user: &str) -> Self {
        match e {
            PoolError::WaitTimeout => ProxyError::QueryWaitTimeout,
            PoolError::Connect(err) => match (err.server_error(), &*err) {
                (Some(fields), _) => ProxyError::Server {
                    code: fields.code.clone(),
                    message: fields.message.clone(),
                },
                (
                    None,
                    ServerError::Auth(
                        BackendAuthError::NoPassword | BackendAuthError::CannotAnswer(_),
                    ),
                ) => ProxyError::NoServerPassword(user.to_owned()),
                (None, ServerError::Auth(e @ BackendAuthError::NotAllowed(_))) => {
                    ProxyError::ServerAuthNotAllowed(e.to_string())
                }
                (None, ServerError::ConnectQuery(e)) => ProxyError::ConnectQueryFailed(
                    e.server_error()
                        .map_or_else(|| e.to_string(), |f| f.message.clone()),
                ),
                (None, _) => ProxyError::ServerUnavailable,
            },
        }
    }

    /// The client's socket failed during login: it left (psql does when
    /// it must ask for a password), and nobody is there to be told.
    pub fn login_lost(_: crate::net::NetError) -> Self {
        ProxyError::LoginAbandoned
    }
}

/// The node could not be reached, or says it is starting, stopping or in
/// a state that serves no one (classes 57P and 08), as opposed to refusing
/// this login: the node leaves rotation and another may serve.
pub fn node_unavailable(e: &PoolError) -> bool {
    match e {
        PoolError::WaitTimeout => false,
        PoolError::Connect(err) => match &**err {
            ServerError::Connect { .. } | ServerError::Timeout | ServerError::Net(_) => true,
            other => other
                .server_error()
                .is_some_and(|f| f.code.starts_with("57P") || f.code.starts_with("08")),
        },
    }
}

impl From<crate::auth::frontend::AuthError> for ProxyError {
    fn from(e: crate::auth::frontend::AuthError) -> Self {
        use crate::auth::frontend::AuthError;
        match e {
            AuthError::BadPassword(user) => ProxyError::BadPassword(user),
            AuthError::CertRequired => ProxyError::CertRequired,
            AuthError::CertRefused(user) => ProxyError::CertRefused(user),
            AuthError::Protocol(why) => ProxyError::Protocol(why),
            AuthError::Abandoned => ProxyError::LoginAbandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_clients_expect() {
        assert_eq!(ProxyError::TooManyClients.sqlstate(), "53300");
        assert_eq!(ProxyError::BadPassword("a".into()).sqlstate(), "28P01");
        assert_eq!(ProxyError::UnknownDatabase("a".into()).sqlstate(), "3D000");
        assert_eq!(ProxyError::QueryTimeout.sqlstate(), "57014");
        assert_eq!(ProxyError::ServerLost.sqlstate(), "08006");
        assert_eq!(ProxyError::Shutdown.sqlstate(), "57P01");
        assert_eq!(ProxyError::TenantNotSet.sqlstate(), "RZ003");
    }

    fn connect_failed(e: ServerError) -> PoolError {
        PoolError::Connect(std::sync::Arc::new(e))
    }

    #[test]
    fn pool_failures_map_to_codes_without_internal_detail() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "os error 111");
        let down = ProxyError::from_pool(
            connect_failed(ServerError::Connect {
                addr: "10.1.2.3:5432".into(),
                source: refused,
            }),
            "app",
        );
        assert_eq!(down.sqlstate(), "08001");
        let text = down.to_string();
        assert!(
            !text.contains("10.1.2.3") && !text.contains("os error"),
            "{text}"
        );
        let waited = ProxyError::from_pool(PoolError::WaitTimeout, "app");
        assert_eq!(waited.sqlstate(), "57014");
        let server = crate::wire::backend::ErrorFields {
            code: "3D000".into(),
            message: "database \"gone\" does not exist".into(),
            ..Default::default()
        };
        let passed_on = ProxyError::from_pool(connect_failed(ServerError::Refused(server)), "app");
        assert_eq!(passed_on.sqlstate(), "3D000");
        let no_password = ProxyError::from_pool(
            connect_failed(ServerError::Auth(BackendAuthError::NoPassword)),
            "app",
        );
        assert_eq!(no_password.sqlstate(), "28000");
    }

    #[test]
    fn only_an_unreachable_or_stopping_node_leaves_rotation() {
        assert!(node_unavailable(&connect_failed(ServerError::Timeout)));
        assert!(!node_unavailable(&PoolError::WaitTimeout));
        let with_code = |code: &str| {
            connect_failed(ServerError::Refused(crate::wire::backend::ErrorFields {
                code: code.into(),
                ..Default::default()
            }))
        };
        assert!(node_unavailable(&with_code("57P03")));
        assert!(node_unavailable(&with_code("08006")));
        assert!(!node_unavailable(&with_code("28P01")));
        assert!(!node_unavailable(&with_code("3D000")));
    }
}
