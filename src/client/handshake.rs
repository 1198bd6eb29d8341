//! A client's way in: startup packet, SSL refusal, protocol negotiation,
//! authentication, pool choice and the welcome (ParameterStatus,
//! BackendKeyData, ReadyForQuery).

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::members::{choose, ServerLogin};
use super::route::RouteState;
use super::secure::Negotiation;
use crate::admission::{ClientLimits, ClientSlot, LoginTicket};
use crate::auth::frontend::{authenticate, Authenticated, Claim};
use crate::auth::hba::{Connection, HbaMethod};
use crate::auth::query::lookup as lookup_secret;
use crate::auth::secret::Secret;
use crate::cancel::Registration;
use crate::config::access::{Access, CONSOLE_DATABASES};
use crate::config::{AuthType, Loaded, PoolMode};
use crate::error::{HbaConnection, ProxyError};
use crate::logline::Clean;
use crate::net::{MessageStream, Stream};
use crate::pool::Pool;
use crate::server::control::{self, ControlLogin};
use crate::shared::Shared;
use crate::state::StartupSet;
use crate::topology::lag::parse_lsn;
use crate::wire::backend as be;
use crate::wire::startup::{decode_startup, StartupError, StartupPacket};

/// Startup parameters pgwarden accepts from clients; the session-state work
/// applies them per transaction. Anything else is refused unless listed in
/// `ignore_startup_parameters`, as in PgBouncer.
const TRACKED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "search_path",
    "extra_float_digits",
    "options",
    "default_transaction_read_only",
    // pgwarden's own, for routing: placeholders to PostgreSQL.
    "pgwarden.route",
    "pgwarden.consistency",
    "pgwarden.max_staleness_ms",
    "pgwarden.tenant",
    "pgwarden.min_lsn",
];

/// Parameters the client's ParameterStatus reports take from its own startup packet.
const REPORTED_FROM_CLIENT: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
];

/// A logged-in client.
pub struct Login {
    /// The database the client named.
    pub database: Arc<str>,
    /// The pool on the configured primary (on the only node, without
    /// replicas; of the tenant's cluster, for a database made of clusters).
    pub pool: Arc<Pool>,
    /// How its transactions are routed (the pools on every node of each
    /// cluster, its tenant), when the database is routed. Built here, once;
    /// the session takes it over.
    pub route: Option<Box<RouteState>>,
    pub mode: PoolMode,
    pub registration: Registration,
    /// Its startup parameters but `application_name` (shared with every
    /// client that sent the same; its own application name is in the
    /// registration's `ClientInfo`).
    pub params: Arc<StartupSet>,
    /// Its place under `max_client_conn`.
    pub slot: ClientSlot,
}

impl Login {
    /// The startup parameters as the client sent them, `application_name`
    /// included.
    pub fn startup(&self) -> impl Iterator<Item = (&str, &str)> {
        let app = self.registration.control.info.get();
        let app = app
            .filter(|i| !i.application_name.is_empty())
            .map(|i| ("application_name", &*i.application_name));
        self.params.iter().map(|(k, v)| (&**k, &**v)).chain(app)
    }
}

/// What the first packets asked for.
pub enum Asked {
    Login(Login),
    /// A user of the admin console, logged in and greeted.
    Console {
        access: Access,
        user: String,
        slot: ClientSlot,
        /// Lists it in `SHOW CLIENTS` while it stays.
        registration: Registration,
    },
    /// A CancelRequest was handled; close the socket.
    Cancelled,
}

/// Runs the handshake up to the first ReadyForQuery.
///
/// # Errors
/// A `ProxyError` to send to the client (if the socket still works), after
/// which the connection is closed.
pub async fn handshake(
    stream: &mut MessageStream<Stream>,
    shared: &Arc<Shared>,
    ticket: &LoginTicket,
) -> Result<Asked, ProxyError> {
    let tls = shared.config.load().client_tls.clone();
    let mut negotiation = Negotiation::default();
    let Some((minor, params)) = negotiate(stream, shared, ticket, &mut negotiation).await? else {
        return Ok(Asked::Cancelled);
    };
    // A Unix-domain socket is local by construction: TLS is not asked of
    // it (PostgreSQL cannot offer it there, PgBouncer exempts it too).
    let exempt = stream.io.is_unix();
    if tls.as_ref().is_some_and(|t| t.mode.requires_tls()) && !stream.io.is_tls() && !exempt {
        return Err(ProxyError::TlsRequired);
    }
    let loaded = shared.config.load_full();
    let Requested {
        user,
        database,
        tracked,
        mut out,
    } = requested(minor, &params, &loaded)?;
    // The console's name wins over the `*` template, as in PgBouncer.
    if CONSOLE_DATABASES.contains(&database.as_str()) && !loaded.configured(&database) {
        stream
            .write_all(&out)
            .await
            .map_err(ProxyError::login_lost)?;
        let attempt = Attempt::new(&negotiation, &user, &database);
        return console_login(stream, shared, &loaded, attempt, &tracked).await;
    }
    if !out.is_empty() {
        stream
            .write_all(&out)
            .await
            .map_err(ProxyError::login_lost)?;
        out.clear();
    }
    let mut tracked = tracked;
    if loaded.config.proxy.application_name_add_host {
        add_host(&mut tracked, &stream.io);
    }
    let Some(db_settings) = loaded.database(&database).cloned() else {
        // Only a client that proves who it is learns that a database does
        // not exist (its secret from `auth_file`/`[users]`: there is no
        // database to run `auth_query` in).
        let claim = Attempt::new(&negotiation, &user, &database);
        check_password(stream, &loaded, claim, loaded.users.get(&user)).await?;
        return Err(ProxyError::UnknownDatabase(database));
    };

    let secret = find_secret(&loaded, &user, &database).await;
    let claim = Attempt::new(&negotiation, &user, &database);
    let auth = check_password(stream, &loaded, claim, secret.as_ref()).await?;
    if shared.gates.is_disabled(&database) {
        return Err(ProxyError::DatabaseDisabled(database));
    }
    let slot = admit(shared, &loaded, &user, &database)?;
    let mode = loaded.pool_mode(&database, &user);
    let server = ServerLogin::of(&db_settings, &loaded, &user, auth.backend_secret);
    let chosen = choose(
        shared,
        &loaded,
        (&database, &db_settings),
        &user,
        &tracked,
        &server,
    )?;
    super::validate::check_settings(&chosen.welcome, &tracked).await?;
    report_parameters(&mut out, &chosen.welcome, &tracked).await?;
    let registration = register(shared, stream, &user, &database, &tracked, false);
    let params = startup_set(shared, tracked);
    be::backend_key_data(&mut out, registration.process_id, registration.secret_key);
    be::ready_for_query(&mut out, be::TX_IDLE);
    stream
        .write_all(&out)
        .await
        .map_err(ProxyError::login_lost)?;
    if loaded.config.proxy.log_connections {
        tracing::info!(
            user = %Clean(&user),
            database = %Clean(&database),
            addr = %crate::logline::peer(stream.io.peer_addr().ok()),
            tls = stream.io.is_tls(),
            "client logged in"
        );
    }
    let route = route_state(chosen.routed, mode);
    Ok(Asked::Login(Login {
        database: shared.names.get(&database),
        mode,
        route,
        pool: chosen.pool,
        registration,
        params,
        slot,
    }))
}

/// The client's place under `max_client_conn` and its database's and
/// user's client limits (a login, or a client handed over).
pub(super) fn admit(
    shared: &Shared,
    loaded: &Loaded,
    user: &str,
    database: &str,
) -> Result<ClientSlot, ProxyError> {
    shared.admission.admit_pooled(&ClientLimits {
        max_client_conn: loaded.config.proxy.max_client_conn,
        database: (database, loaded.max_db_client_connections(database)),
        user: (user, loaded.max_user_client_connections(user)),
    })
}

/// The session's routing state, for a routed database.
pub(super) fn route_state(
    routed: Option<(crate::pool::Clusters, Box<super::tenancy::Tenancy>)>,
    mode: PoolMode,
) -> Option<Box<RouteState>> {
    routed.and_then(|(clusters, tenancy)| {
        RouteState::new(clusters, tenancy, mode != PoolMode::Session)
    })
}

/// The servers' parameters, learnt from a first server as PgBouncer does,
/// except those the client set itself, reported as it set them.
async fn report_parameters(
    out: &mut BytesMut,
    pool: &Arc<Pool>,
    tracked: &[(String, String)],
) -> Result<(), ProxyError> {
    let welcome = match pool.welcome() {
        Some(w) => w,
        None => {
            let guard = pool
                .checkout()
                .await
                .map_err(|e| ProxyError::from_pool(e, &pool.key.user))?;
            drop(guard);
            pool.welcome().unwrap_or_default()
        }
    };
    for (name, value) in welcome.iter() {
        let own = REPORTED_FROM_CLIENT
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
            .then(|| tracked.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .flatten();
        let value = own.map(|(_, v)| v.as_str()).unwrap_or(value);
        be::parameter_status(out, name, value);
    }
    Ok(())
}

/// The client's cancel key, and what `SHOW CLIENTS` tells of it.
fn register(
    shared: &Shared,
    stream: &MessageStream<Stream>,
    user: &str,
    database: &str,
    tracked: &[(String, String)],
    console: bool,
) -> Registration {
    let registration = shared.cancels.register();
    let info = client_info(shared, &stream.io, (user, database), tracked, console);
    let _ = registration.control.info.set(info);
    registration
}

/// What `SHOW CLIENTS` tells of a client, as of now.
pub(super) fn client_info(
    shared: &Shared,
    io: &Stream,
    (user, database): (&str, &str),
    tracked: &[(String, String)],
    console: bool,
) -> crate::cancel::ClientInfo {
    crate::cancel::ClientInfo {
        id: crate::server::next_connection_id(),
        console,
        fd: io.fd(),
        user: shared.names.get(user),
        database: shared.names.get(database),
        addr: io.peer_addr().ok(),
        local: io.local_addr().ok(),
        tls: io.tls_label(),
        connected: std::time::SystemTime::now(),
        application_name: tracked
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("application_name"))
            .map(|(_, v)| Box::from(v.as_str()))
            .unwrap_or_default(),
    }
}

/// `application_name_add_host`: the client's address after its application
/// name, as PgBouncer writes it (`app - 10.0.0.7:51234`), so that
/// `pg_stat_activity` tells pooled clients apart; a client that sent no
/// name gets the address alone after the dash.
fn add_host(tracked: &mut Vec<(String, String)>, io: &Stream) {
    let host = match io.peer_addr() {
        Ok(a) => format!("{}:{}", a.ip(), a.port()),
        Err(_) => "unix".to_owned(),
    };
    match tracked
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("application_name"))
    {
        Some((_, name)) => *name = format!("{name} - {host}"),
        None => tracked.push(("application_name".into(), format!(" - {host}"))),
    }
}

/// The shared copy of the client's startup parameters, `application_name`
/// left out (it is in the client's `ClientInfo`).
pub(super) fn startup_set(shared: &Shared, tracked: Vec<(String, String)>) -> Arc<StartupSet> {
    let set: Vec<(Box<str>, Box<str>)> = tracked
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("application_name"))
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect();
    shared.startup_sets.get(&set)
}

/// TLS (direct, or after an SSLRequest) and the startup packet; `None`
/// when the connection was a CancelRequest, now forwarded.
async fn negotiate(
    stream: &mut MessageStream<Stream>,
    shared: &Shared,
    ticket: &LoginTicket,
    negotiation: &mut Negotiation,
) -> Result<Option<(u16, Vec<(String, String)>)>, ProxyError> {
    let tls = shared.config.load().client_tls.clone();
    negotiation.direct(stream, tls.as_ref()).await?;
    loop {
        let packet = read_startup(stream).await?;
        ticket.spoke();
        match packet {
            StartupPacket::SslRequest => negotiation.ssl_request(stream, tls.as_ref()).await?,
            StartupPacket::GssEncRequest => negotiation.gss_request(stream).await?,
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                shared.cancels.cancel(process_id, secret_key).await;
                return Ok(None);
            }
            StartupPacket::Startup { minor, params } => return Ok(Some((minor, params))),
        }
    }
}

/// What a startup packet asks for.
#[derive(Debug)]
struct Requested {
    user: String,
    /// The user name when the client named no database, as PostgreSQL.
    database: String,
    /// The parameters pgwarden follows, `options` expanded.
    tracked: Vec<(String, String)>,
    /// A NegotiateProtocolVersion to send first, when the client asked for
    /// a newer minor version or `_pq_.` options (else empty).
    out: BytesMut,
}

/// Reads the startup parameters: the user and database, the ones pgwarden
/// follows, and a refusal for the rest (unless `ignore_startup_parameters`
/// lists them), as PgBouncer does.
fn requested(
    minor: u16,
    params: &[(String, String)],
    loaded: &Loaded,
) -> Result<Requested, ProxyError> {
    let mut out = BytesMut::new();
    let unknown_pq: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if minor > 0 || !unknown_pq.is_empty() {
        be::negotiate_protocol_version(&mut out, 0, &unknown_pq);
    }
    let mut user = None;
    let mut database = None;
    let mut tracked = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "user" => user = Some(v.clone()),
            "database" => database = Some(v.clone()),
            "replication" if v != "false" && v != "0" && v != "off" => {
                return Err(ProxyError::Unsupported("replication connections"))
            }
            k if k.starts_with("_pq_.") => {}
            k if TRACKED_PARAMS.iter().any(|t| t.eq_ignore_ascii_case(k)) => {
                tracked.push((k.to_owned(), v.clone()))
            }
            k if loaded
                .config
                .proxy
                .ignore_startup_parameters
                .contains_ignore_case(k) => {}
            k => return Err(ProxyError::UnsupportedParameter(k.to_owned())),
        }
    }
    let tracked = expand_options(tracked, loaded)?;
    if let Some((_, v)) = tracked
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("pgwarden.min_lsn") && parse_lsn(v).is_none())
    {
        return Err(ProxyError::BadRoutingValue(v.clone()));
    }
    let user = user.filter(|u| !u.is_empty()).ok_or(ProxyError::NoUser)?;
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(Requested {
        user,
        database,
        tracked,
        out,
    })
}

/// Logs a user in to the admin console: the same authentication as any
/// client (its secret from `auth_file`/`[users]`), then its access.
async fn console_login(
    stream: &mut MessageStream<Stream>,
    shared: &Arc<Shared>,
    loaded: &Loaded,
    attempt: Attempt<'_>,
    tracked: &[(String, String)],
) -> Result<Asked, ProxyError> {
    let user = attempt.user.to_owned();
    let database = attempt.database.to_owned();
    let attempt_db = database.as_str();
    check_password(stream, loaded, attempt, loaded.users.get(&user)).await?;
    let access = Access::of(&loaded.config.proxy, &user)
        .ok_or_else(|| ProxyError::AdminNotAllowed(user.clone()))?;
    let slot = shared
        .admission
        .admit(shared.config.load().config.proxy.max_client_conn)?;
    let mut out = BytesMut::new();
    let version = format!("15.0 (pgwarden {})", env!("CARGO_PKG_VERSION"));
    let app = tracked
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("application_name"))
        .map_or("", |(_, v)| v.as_str());
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", app),
    ] {
        be::parameter_status(&mut out, name, value);
    }
    // Listed in SHOW CLIENTS as PgBouncer lists its console's clients; its
    // key cancels nothing (a console command is not a server query).
    let registration = register(shared, stream, &user, attempt_db, tracked, true);
    be::backend_key_data(&mut out, registration.process_id, registration.secret_key);
    be::ready_for_query(&mut out, be::TX_IDLE);
    stream
        .write_all(&out)
        .await
        .map_err(ProxyError::login_lost)?;
    Ok(Asked::Console {
        access,
        user,
        slot,
        registration,
    })
}

/// Who is logging in where, over what.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    negotiation: &'a Negotiation,
    user: &'a str,
    database: &'a str,
}

impl<'a> Attempt<'a> {
    fn new(negotiation: &'a Negotiation, user: &'a str, database: &'a str) -> Self {
        Attempt {
            negotiation,
            user,
            database,
        }
    }
}

/// Authenticates the client against `secret` as `auth_type` (or its
/// `auth_hba_file` line) says, with the SCRAM secret derived at load for a
/// cleartext password, SCRAM bound to the connection's TLS certificate
/// when it has one, and the client certificate's name for `cert`.
async fn check_password(
    stream: &mut MessageStream<Stream>,
    loaded: &Loaded,
    login: Attempt<'_>,
    secret: Option<&Secret>,
) -> Result<Authenticated, ProxyError> {
    let auth_type = auth_type_for(stream, loaded, login)?;
    let cert = stream.io.peer_certificates().and_then(|c| c.first());
    let cert_name = cert.and_then(|c| crate::net::tls::binding::common_name(c));
    let claim = Claim {
        user: login.user,
        secret,
        derived: loaded.scram_of_plain.get(login.user),
        channel_binding: login.negotiation.end_point.as_deref(),
        cert_name: cert_name.as_deref(),
        auth_type,
    };
    authenticate(stream, &claim).await.map_err(ProxyError::from)
}

/// `auth_type`, or with `hba` the method of the first matching line.
///
/// # Errors
/// No line matches, or the line that does is `reject` (28000, in
/// PostgreSQL's words).
fn auth_type_for(
    stream: &MessageStream<Stream>,
    loaded: &Loaded,
    login: Attempt<'_>,
) -> Result<AuthType, ProxyError> {
    let configured = loaded.config.proxy.auth_type;
    let Some(hba) = loaded.hba.as_ref().filter(|_| configured == AuthType::Hba) else {
        return Ok(configured);
    };
    // `None` is a `local` connection: only the Unix socket's. A TCP peer
    // whose address cannot be read has gone; it must not pass as local.
    let addr = match stream.io.is_unix() {
        true => None,
        false => Some(
            stream
                .io
                .peer_addr()
                .map_err(|e| ProxyError::login_lost(e.into()))?
                .ip(),
        ),
    };
    let tls = stream.io.is_tls();
    let conn = Connection {
        database: login.database,
        user: login.user,
        addr,
        tls,
    };
    let refused = || HbaConnection {
        host: addr.map_or_else(|| "[local]".to_owned(), |a| a.to_string()),
        user: login.user.to_owned(),
        database: login.database.to_owned(),
        tls,
    };
    Ok(match hba.method(&conn) {
        Some(HbaMethod::Trust) => AuthType::Trust,
        Some(HbaMethod::Md5) => AuthType::Md5,
        Some(HbaMethod::ScramSha256) => AuthType::ScramSha256,
        Some(HbaMethod::Password) => AuthType::Plain,
        Some(HbaMethod::Cert) => AuthType::Cert,
        Some(HbaMethod::Reject) => return Err(ProxyError::HbaReject(refused())),
        None => return Err(ProxyError::HbaNoEntry(refused())),
    })
}

/// The user's secret: `auth_file`/`[users]` first, then `auth_query`.
/// The client's secret: from `auth_file`/`[users]`, else looked up with
/// `auth_query` as the database's (or `[proxy]`'s) `auth_user`.
pub(super) async fn find_secret(loaded: &Loaded, user: &str, database: &str) -> Option<Secret> {
    if let Some(s) = loaded.users.get(user) {
        return Some(s.clone());
    }
    let lookup = loaded.auth_lookup(database)?;
    let Some(Secret::Plain(auth_password)) = loaded.users.get(lookup.user) else {
        tracing::warn!("auth_user needs a cleartext password in auth_file or [users]");
        return None;
    };
    let timeout = loaded
        .config
        .proxy
        .server_connect_timeout
        .enabled()
        .unwrap_or(std::time::Duration::from_secs(15));
    let tls = loaded.tls_policy(lookup.database).target(lookup.addr);
    let login = ControlLogin {
        tls: &tls,
        addr: lookup.addr,
        user: lookup.user,
        password: Some(auth_password),
        dbname: &lookup.dbname,
        application_name: "pgwarden auth_query",
        timeout,
        allowed_auth: loaded.allowed_server_auth(),
    };
    let looked_up = async {
        let client = control::connect(&login).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(timeout, lookup_secret(&client, lookup.query, user))
            .await
            .map_err(|_| "auth_query timed out".to_owned())?
            .map_err(|e| e.to_string())
    };
    match looked_up.await {
        Ok(secret) => secret,
        Err(e) => {
            tracing::warn!(error = %e, "auth_query lookup failed");
            None
        }
    }
}

async fn read_startup(stream: &mut MessageStream<Stream>) -> Result<StartupPacket, ProxyError> {
    loop {
        match decode_startup(&stream.rbuf) {
            Ok(Some((packet, used))) => {
                stream.rbuf.advance(used);
                return Ok(packet);
            }
            Ok(None) => {}
            Err(StartupError::UnsupportedProtocol { major, minor }) => {
                return Err(ProxyError::Protocol(format!(
                    "unsupported frontend protocol {major}.{minor}: server supports 3.0"
                )))
            }
            Err(e) => return Err(ProxyError::Protocol(e.to_string())),
        }
        stream.fill().await.map_err(ProxyError::login_lost)?;
    }
}

/// Replaces `options` with the settings it carries, as PostgreSQL reads it
/// ([`crate::state::options`]), minus those `ignore_startup_parameters`
/// lists (as PgBouncer ignores them as parameters of their own).
fn expand_options(
    tracked: Vec<(String, String)>,
    loaded: &Loaded,
) -> Result<Vec<(String, String)>, ProxyError> {
    let ignored = &loaded.config.proxy.ignore_startup_parameters;
    let mut out = Vec::with_capacity(tracked.len());
    for (k, v) in tracked {
        if !k.eq_ignore_ascii_case("options") {
            out.push((k, v));
            continue;
        }
        let settings = crate::state::options::parse(&v)
            .map_err(|e| ProxyError::StartupOption(e.to_string()))?;
        out.extend(
            settings
                .into_iter()
                .filter(|(name, _)| !ignored.contains_ignore_case(name)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(extra: &str) -> Loaded {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nauth_type = \"trust\"\n{extra}\n[users.app]\npassword = \"app\"\n[databases.app]\nprimary = \"127.0.0.1:1\"\n"
        );
        match crate::config::from_str(&text, std::path::Path::new(".")) {
            Ok(l) => l,
            Err(p) => panic!("{p:?}"),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused(r: Result<Requested, ProxyError>) -> String {
        match r {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.sqlstate().to_owned(),
        }
    }

    #[test]
    fn the_user_names_the_database_when_the_client_does_not() {
        let l = loaded("");
        let Ok(r) = requested(
            0,
            &params(&[("user", "app"), ("application_name", "x")]),
            &l,
        ) else {
            panic!("a plain startup packet");
        };
        assert_eq!((r.user.as_str(), r.database.as_str()), ("app", "app"));
        assert_eq!(r.tracked, params(&[("application_name", "x")]));
        assert!(r.out.is_empty(), "nothing to negotiate");
    }

    #[test]
    fn unknown_parameters_are_refused_unless_ignored() {
        let l = loaded("");
        let p = params(&[("user", "app"), ("geqo", "off")]);
        assert_eq!(refused(requested(0, &p, &l)), "08P01");
        let l = loaded("ignore_startup_parameters = \"geqo\"");
        assert!(requested(0, &p, &l).is_ok());
        let no_user = params(&[("database", "app")]);
        assert_eq!(refused(requested(0, &no_user, &l)), "28000");
        let replication = params(&[("user", "app"), ("replication", "database")]);
        assert_eq!(refused(requested(0, &replication, &l)), "0A000");
    }

    #[test]
    fn a_newer_minor_version_or_pq_options_are_negotiated_down() {
        let l = loaded("");
        let p = params(&[("user", "app"), ("_pq_.compression", "on")]);
        let Ok(r) = requested(2, &p, &l) else {
            panic!("_pq_ options are answered, not refused");
        };
        assert_eq!(r.out.first(), Some(&b'v'), "NegotiateProtocolVersion");
        assert!(r.tracked.is_empty());
    }

    #[test]
    fn options_are_expanded_into_settings() {
        let l = loaded("");
        let p = params(&[
            ("user", "app"),
            ("options", "-c search_path=s1 --work_mem=8MB"),
        ]);
        let Ok(r) = requested(0, &p, &l) else {
            panic!("options carry settings");
        };
        assert!(
            r.tracked
                .iter()
                .any(|(k, v)| k == "search_path" && v == "s1"),
            "{:?}",
            r.tracked
        );
        let bad = params(&[("user", "app"), ("options", "-c")]);
        assert_eq!(refused(requested(0, &bad, &l)), "42601");
    }
}
