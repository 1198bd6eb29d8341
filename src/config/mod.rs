//! Loading and validating the configuration file.
//!
//! Owns: turning a TOML file (plus its `auth_file`) into a checked
//! [`Loaded`] config. Must not: start anything; a config that fails here is
//! never used, and on reload the old one stays in force.

pub mod access;
pub mod duration;
mod env;
mod explain;
mod lookup;
pub mod overrides;
pub mod residency;
pub mod schema;
mod url;
mod validate_residency;
pub use validate_residency::monitored;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use lookup::{AuthLookup, SessionTimeouts};
pub use overrides::Overrides;
pub use schema::{
    AuthType, CommitLsn, Config, Consistency, DatabaseSettings, NameList, NodeSpec, Password,
    PoolMode, PrimaryReads, ProxySettings, ReplicaFallback, ReplicaSelection, RoutingSettings,
    SessionFeatures, SslMode, UserSettings, WorkerModel,
};
pub use url::{from_database_url, UrlOptions};

use crate::auth::hba::Hba;
use crate::auth::scram::{self, ScramSecret};
use crate::auth::secret::Secret;
use crate::auth::userlist;
use crate::net::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles, TlsPolicy};

/// One thing wrong with a config, located by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub what: String,
}

/// Why a config file was refused: every problem found, with the file named.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.file.display(), p.key, p.what)?;
        }
        Ok(())
    }
}

/// A validated config and the users it knows.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Users from `auth_file` overlaid with `[users]` passwords.
    pub users: HashMap<String, Secret>,
    /// SCRAM secrets derived at load from the cleartext passwords in
    /// `users` (when `auth_type` is SCRAM): a login then costs the same
    /// for every user, where deriving per attempt would tell users with a
    /// cleartext password apart from unknown ones by time, and spend 4,096
    /// HMAC rounds on every guess.
    pub scram_of_plain: HashMap<String, ScramSecret>,
    /// What a client's TLS handshake needs (`None`: `client_tls_sslmode =
    /// disable`), read from the files at load.
    pub client_tls: Option<ClientTls>,
    /// rustls configs for server connections, read from the files at load.
    pub server_tls: ServerTls,
    /// `auth_hba_file`, parsed at load (when `auth_type = "hba"`).
    pub hba: Option<Hba>,
    pub path: Option<PathBuf>,
    /// Tells configs apart: sessions recompute what they derived from the
    /// config (a tenant's nodes) when it changes.
    pub generation: u64,
}

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Loaded {
    /// How to secure connections to `db`'s nodes.
    pub fn tls_policy(&self, db: &str) -> TlsPolicy {
        let d = self.database(db);
        TlsPolicy {
            mode: d
                .and_then(|d| d.server_tls_sslmode)
                .unwrap_or(self.config.proxy.server_tls_sslmode),
            server_name: d.and_then(|d| d.server_tls_server_name.clone()),
            tls: self.server_tls.clone(),
        }
    }

    /// How servers may authenticate pgwarden (`server_require_auth`).
    pub fn allowed_server_auth(&self) -> crate::auth::backend::AuthMethods {
        crate::auth::backend::AuthMethods::from_names(&self.config.proxy.server_require_auth.0)
    }

    /// Settings of the database a client named: its own table, else the
    /// `[databases."*"]` template (PgBouncer's auto-database), if any.
    pub fn database(&self, name: &str) -> Option<&DatabaseSettings> {
        self.config
            .databases
            .get(name)
            .or_else(|| self.config.databases.get(AUTO_DATABASE))
    }

    /// Whether `name` has a table of its own (not served by `*`).
    pub fn configured(&self, name: &str) -> bool {
        self.config.databases.contains_key(name)
    }
}

/// Why pgwarden does not take PgBouncer's setting `key`, if known.
pub fn pgbouncer_key_note(key: &str) -> Option<&'static str> {
    explain::pgbouncer_key(key)
}

/// The `[databases]` key of the template any other database name is
/// served from, its server database named as the client named it.
pub const AUTO_DATABASE: &str = "*";

/// Reads, parses and validates a config file.
///
/// # Errors
/// Every problem found, each naming its key.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let fail = |key: &str, what: String| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            key: key.into(),
            what,
        }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(
            "(file)",
            format!(
                "no such file: {} (start from proxy.toml.example)",
                path.display()
            ),
        ),
        _ => fail("(file)", format!("cannot read {}: {e}", path.display())),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str(&text, base)
        .map(|mut l| {
            l.path = Some(path.to_owned());
            l
        })
        .map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })
}

/// Parses and validates config text; relative paths resolve against `base`.
///
/// # Errors
/// Every problem found.
pub fn from_str(text: &str, base: &Path) -> Result<Loaded, Vec<Problem>> {
    let expanded = env::expand(text, |name| std::env::var(name).ok())?;
    let text = expanded.as_str();
    let de = toml::Deserializer::new(text);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        let start = e.span().map(|s| s.start.min(text.len()));
        let line = start.map(|at| text[..at].matches('\n').count() + 1);
        // The key when serde knows it (a type error), else the line.
        let key = match (path.as_str(), line) {
            ("." | "", Some(line)) => format!("line {line}"),
            ("." | "", None) => "(parse)".into(),
            (path, _) => path.to_owned(),
        };
        // The message may quote the value: never a secret's.
        let mut what = match start.is_some_and(|at| holds_secret(text, at)) {
            true => NOT_SHOWN.to_owned(),
            false => explain::plain(e.message()),
        };
        if let (Some(line), false) = (line, key.starts_with("line ")) {
            what.push_str(&format!(" (line {line})"));
        }
        let first = with_unknown_field(&path, e.message());
        let mut problems = vec![Problem { key, what }];
        problems.extend(more_type_errors(text, &first));
        problems
    })?;
    from_config(config, base)
}

/// `path`, with the field an "unknown field" message names appended: the
/// key the problem is about, spelled the same for every error.
fn with_unknown_field(path: &str, message: &str) -> String {
    let path = path.trim_matches('.');
    let field = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match (path.is_empty(), field) {
        (_, None) => path.to_owned(),
        // serde_path_to_error names the field itself where it can.
        (_, Some(f)) if path == f || path.ends_with(&format!(".{f}")) => path.to_owned(),
        (true, Some(f)) => f.to_owned(),
        (false, Some(f)) => format!("{path}.{f}"),
    }
}

/// Type errors and unknown keys after the first: serde stops at the first,
/// so each found is taken out of a copy of the file and the rest read
/// again (up to a bound), so that `check` reports them all at once.
fn more_type_errors(text: &str, first: &str) -> Vec<Problem> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        // A syntax error: nothing after it can be read.
        return Vec::new();
    };
    let mut out = Vec::new();
    for _ in 0..MAX_TYPE_ERRORS {
        let value = toml::Value::Table(table.clone());
        let Err(e) = serde_path_to_error::deserialize::<_, Config>(value) else {
            break;
        };
        let path = e.path().to_string();
        let message = e.into_inner().message().to_owned();
        let key = with_unknown_field(&path, &message);
        if !remove(&mut table, &key) {
            break;
        }
        if key != first {
            let secret = key.rsplit('.').next().is_some_and(names_a_secret);
            let what = match secret {
                true => NOT_SHOWN.to_owned(),
                false => explain::plain(&message),
            };
            out.push(Problem { key, what });
        }
    }
    out
}

/// How many type errors one `check` reports.
const MAX_TYPE_ERRORS: usize = 32;

/// Takes the value at dotted `key` out of `table`; false when not there.
fn remove(table: &mut toml::Table, key: &str) -> bool {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut at = table;
    for part in parts {
        match at.get_mut(part) {
            Some(toml::Value::Table(t)) => at = t,
            _ => return false,
        }
    }
    at.remove(last).is_some()
}

/// True when the line of `text` around byte `at` sets a key whose name
/// says it holds a secret.
fn holds_secret(text: &str, at: usize) -> bool {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    names_a_secret(line.split('=').next().unwrap_or(""))
}

/// True when a key's name says it holds a secret: its value is never quoted.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key.contains("token")
}

/// In place of a secret key's value in an error.
const NOT_SHOWN: &str = "invalid value (not shown: the key holds a secret)";

/// Validates an already-built config (used by `quickstart` and tests).
///
/// # Errors
/// Every problem found.
pub fn from_config(mut config: Config, base: &Path) -> Result<Loaded, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, what: String| {
        problems.push(Problem {
            key: key.into(),
            what,
        })
    };
    validate_residency::check(&mut config, base, &mut problem);
    pgbouncer_listen(&mut config.proxy);
    let p = &config.proxy;
    if let Err(e) = check_listen(&p.listen) {
        problem("proxy.listen", e);
    }
    if let Some(Err(e)) = p.admin_listen.as_deref().map(check_listen) {
        problem("proxy.admin_listen", e);
    }
    if crate::net::unix::parse_mode(&p.unix_socket_mode).is_none() {
        problem(
            "proxy.unix_socket_mode",
            format!(
                "{:?} is not an octal file mode (e.g. \"0777\")",
                p.unix_socket_mode
            ),
        );
    }
    if !p.unix_socket_dir.is_empty() && !std::path::Path::new(&p.unix_socket_dir).is_absolute() {
        problem("proxy.unix_socket_dir", "must be an absolute path".into());
    }
    if crate::logging::facility_code(&p.syslog_facility).is_none() {
        problem(
            "proxy.syslog_facility",
            format!(
                "unknown facility {:?} (daemon, user, local0 ... local7, ...)",
                p.syslog_facility
            ),
        );
    }
    if p.max_client_conn == 0 {
        problem("proxy.max_client_conn", "must be at least 1".into());
    }
    if p.default_pool_size == 0 {
        problem("proxy.default_pool_size", "must be at least 1".into());
    }
    if p.min_pool_size > p.default_pool_size {
        problem(
            "proxy.min_pool_size",
            format!(
                "{} is larger than default_pool_size {}",
                p.min_pool_size, p.default_pool_size
            ),
        );
    }
    for method in &p.server_require_auth.0 {
        let known = crate::auth::backend::AuthMethods::NAMES
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(method));
        if !known {
            problem(
                "proxy.server_require_auth",
                format!("unknown method {method:?} (password, md5, scram-sha-256, none)"),
            );
        }
    }
    if p.max_total_client_buffer < p.max_client_buffer {
        problem(
            "proxy.max_total_client_buffer",
            "must be at least max_client_buffer".into(),
        );
    }
    if p.max_client_buffer < 2 << 20 {
        // A routed unit is waited for up to 1 MiB.
        problem(
            "proxy.max_client_buffer",
            "must be at least 2 MiB (2097152)".into(),
        );
    }
    if p.max_packet_size < 1024 || p.max_packet_size > i32::MAX as usize {
        problem(
            "proxy.max_packet_size",
            "must be between 1024 and 2147483647".into(),
        );
    }
    if p.auth_user.is_some() && p.auth_query.trim().is_empty() {
        problem(
            "proxy.auth_query",
            "auth_user is set but auth_query is empty".into(),
        );
    }
    // No database is allowed, as in PgBouncer: the console still answers
    // and a reload may add them (`pgwarden check` says so).
    for (id, addr) in &config.peers {
        let key = format!("peers.{id}");
        if !matches!(id.parse::<u16>(), Ok(1..)) {
            problem(&key, "a peer id is a number from 1 to 65535".into());
        }
        if let Err(e) = check_addr(addr) {
            problem(&key, e);
        }
    }
    if config.proxy.peer_id == 0 && !config.peers.is_empty() {
        problem(
            "proxy.peer_id",
            "[peers] needs this instance's own peer_id (1-65535)".into(),
        );
    }
    for (name, db) in &config.databases {
        if db.clusters.is_empty() {
            if let Err(e) = check_addr(&db.primary) {
                problem(&format!("databases.{name}.primary"), e);
            }
        }
        for (i, r) in db.replicas.iter().enumerate() {
            if let Err(e) = check_addr(&r.addr) {
                problem(&format!("databases.{name}.replicas[{i}]"), e);
            }
            if r.weight == 0 && db.routing.replica_selection == ReplicaSelection::WeightedRandom {
                problem(
                    &format!("databases.{name}.replicas[{i}].weight"),
                    "must be at least 1 with weighted_random".into(),
                );
            }
        }
        let r = &db.routing;
        if r.primary_reads == PrimaryReads::Never && r.replica_fallback == ReplicaFallback::Primary
        {
            problem(
                &format!("databases.{name}.routing.primary_reads"),
                "\"never\" contradicts replica_fallback = \"primary\"; set replica_fallback = \"error\""
                    .into(),
            );
        }
        if r.monitor_interval.0.is_zero() {
            problem(
                &format!("databases.{name}.routing.monitor_interval"),
                "must be above 0".into(),
            );
        }
        if validate_residency::monitored(&config, name)
            && r.monitor_user.is_none()
            && db.user.is_none()
            && db.auth_user.is_none()
            && p.auth_user.is_none()
        {
            problem(
                &format!("databases.{name}.routing.monitor_user"),
                "replicas and residency need a login for the topology monitor: set monitor_user (or the database's user, or auth_user)".into(),
            );
        }
        let routed = !db.replicas.is_empty()
            || !db.clusters.is_empty()
            || validate_residency::monitored(&config, name);
        if name == AUTO_DATABASE && routed {
            problem(
                &format!("databases.{name}"),
                "the \"*\" template cannot have replicas, clusters or residency (their monitors start with the proxy, per named database)".into(),
            );
        }
        if db.pool_size == Some(0) {
            problem(
                &format!("databases.{name}.pool_size"),
                "must be at least 1".into(),
            );
        }
        if db.password.is_some() && db.user.is_none() {
            problem(
                &format!("databases.{name}.password"),
                "password given without user".into(),
            );
        }
    }

    lookup::check(&config, &mut problem);

    let mut users = HashMap::new();
    if let Some(file) = &p.auth_file {
        let path = base.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => match userlist::parse(&text) {
                Ok(u) => users = u,
                Err(e) => problem("proxy.auth_file", format!("{}: {e}", path.display())),
            },
            Err(e) => problem(
                "proxy.auth_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    for (name, u) in &config.users {
        if let Some(pw) = &u.password {
            users.insert(name.clone(), Secret::parse(pw));
        }
    }
    let auth_users = config
        .databases
        .iter()
        .map(|(db, d)| (format!("databases.{db}.auth_user"), &d.auth_user));
    for (key, auth_user) in
        std::iter::once(("proxy.auth_user".to_owned(), &p.auth_user)).chain(auth_users)
    {
        if let Some(auth_user) = auth_user.as_ref().filter(|u| !users.contains_key(*u)) {
            problem(
                &key,
                format!("{auth_user:?} has no password in auth_file or [users]"),
            );
        }
    }
    let hba = load_hba(p, base).map_err(|why| problem("proxy.auth_hba_file", why));
    let needs_ca = p.auth_type == AuthType::Cert
        || hba
            .as_ref()
            .is_ok_and(|h| h.as_ref().is_some_and(Hba::has_cert_lines));
    if needs_ca && p.client_tls_ca_file.is_none() {
        problem(
            "proxy.client_tls_ca_file",
            "certificate authentication needs a CA to check client certificates against".into(),
        );
    }
    let (client_tls, server_tls) = load_tls(&config, base);
    let client_tls = client_tls.map_err(|(key, why)| problem(&format!("proxy.{key}"), why));
    let server_tls = server_tls
        .map_err(|(key, why)| problem(&format!("proxy.{key}"), why))
        .ok();
    if problems.is_empty() {
        let scram_of_plain = derive_scram(&users, config.proxy.auth_type);
        let (Some(server_tls), Ok(client_tls), Ok(hba)) = (server_tls, client_tls, hba) else {
            return Err(problems);
        };
        Ok(Loaded {
            config,
            users,
            scram_of_plain,
            client_tls,
            server_tls,
            hba,
            path: None,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    } else {
        Err(problems)
    }
}

/// Reads `auth_hba_file` when `auth_type = "hba"`.
fn load_hba(p: &ProxySettings, base: &Path) -> Result<Option<Hba>, String> {
    if p.auth_type != AuthType::Hba {
        return Ok(None);
    }
    let file = p
        .auth_hba_file
        .as_ref()
        .ok_or("auth_type = \"hba\" needs auth_hba_file")?;
    let path = base.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Hba::parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

type TlsResult<T> = Result<T, (&'static str, String)>;

/// Reads the TLS files named in `[proxy]` (relative to the config's folder).
fn load_tls(config: &Config, base: &Path) -> (TlsResult<Option<ClientTls>>, TlsResult<ServerTls>) {
    let p = &config.proxy;
    let path = |f: &Option<String>| f.as_ref().map(|f| base.join(f));
    let (key, cert, ca) = (
        path(&p.client_tls_key_file),
        path(&p.client_tls_cert_file),
        path(&p.client_tls_ca_file),
    );
    let client = ClientTls::build(&ClientTlsFiles {
        mode: p.client_tls_sslmode,
        key: key.as_deref(),
        cert: cert.as_deref(),
        ca: ca.as_deref(),
        protocols: &p.client_tls_protocols,
    });
    let (key, cert, ca) = (
        path(&p.server_tls_key_file),
        path(&p.server_tls_cert_file),
        path(&p.server_tls_ca_file),
    );
    let verifies = p.server_tls_sslmode.verifies()
        || config
            .databases
            .values()
            .any(|d| d.server_tls_sslmode.is_some_and(SslMode::verifies));
    let server = ServerTls::build(&ServerTlsFiles {
        key: key.as_deref(),
        cert: cert.as_deref(),
        ca: ca.as_deref(),
        protocols: &p.server_tls_protocols,
        verifies,
    });
    (client, server)
}

/// The SCRAM secret of each cleartext password, salted with the user's
/// stable per-process salt (the one an unknown user of that name sees).
fn derive_scram(
    users: &HashMap<String, Secret>,
    auth_type: AuthType,
) -> HashMap<String, ScramSecret> {
    if !matches!(auth_type, AuthType::ScramSha256 | AuthType::Hba) {
        return HashMap::new();
    }
    users
        .iter()
        .filter_map(|(name, secret)| match secret {
            Secret::Plain(pw) if !pw.is_empty() => Some((
                name.clone(),
                ScramSecret::from_password(
                    pw,
                    scram::mock_salt(name).to_vec(),
                    scram::DEFAULT_ITERATIONS,
                ),
            )),
            _ => None,
        })
        .collect()
}

/// PgBouncer's `listen_addr` and `listen_port` (either overrides its half
/// of `listen`), and `*` for every address, as PgBouncer takes it.
fn pgbouncer_listen(p: &mut ProxySettings) {
    let (host, port) = p
        .listen
        .rsplit_once(':')
        .map_or((p.listen.clone(), String::new()), |(h, pt)| {
            (h.to_owned(), pt.to_owned())
        });
    let host = p.listen_addr.clone().unwrap_or(host);
    let port = p.listen_port.map_or(port, |pt| pt.to_string());
    p.listen = format!("{}:{port}", all_addresses(&host));
    if let Some(admin) = &p.admin_listen {
        if let Some((h, pt)) = admin.rsplit_once(':') {
            p.admin_listen = Some(format!("{}:{pt}", all_addresses(h)));
        }
    }
}

/// `*` means every IPv4 address (PgBouncer's `listen_addr = *`).
fn all_addresses(host: &str) -> &str {
    match host {
        "*" => "0.0.0.0",
        h => h,
    }
}

/// A listen address must be `host:port` and its host must resolve here,
/// so that `check` finds what `run` would fail on.
fn check_listen(addr: &str) -> Result<(), String> {
    check_addr(addr)?;
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs().map(|mut found| found.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{addr:?}: the host has no address")),
        Err(e) => Err(format!("{addr:?}: cannot resolve the host ({e})")),
    }
}

/// Checks a `"host:port"` string.
fn check_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not \"host:port\""))?;
    if host.is_empty() {
        return Err(format!("{addr:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{addr:?} has an invalid port"))
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleartext_passwords_get_their_scram_secret_at_load() {
        let text = |auth| {
            format!(
                "[proxy]\nauth_type = \"{auth}\"\n[databases.app]\nprimary = \"127.0.0.1:5432\"\n\
                 [users.alice]\npassword = \"pw\"\n[users.bob]\npassword = \"md5{:032}\"\n",
                0
            )
        };
        let loaded = from_str(&text("scram-sha-256"), Path::new("."));
        let loaded = loaded.unwrap_or_else(|p| panic!("{p:?}"));
        let alice = loaded.scram_of_plain.get("alice");
        let expected = ScramSecret::from_password("pw", scram::mock_salt("alice").to_vec(), 4096);
        assert_eq!(alice, Some(&expected));
        assert!(!loaded.scram_of_plain.contains_key("bob"));
        let md5 = from_str(&text("md5"), Path::new(".")).unwrap_or_else(|p| panic!("{p:?}"));
        assert!(md5.scram_of_plain.is_empty());
    }

    use super::*;

    #[test]
    fn minimal_config() {
        let text = "[databases.app]\nprimary = \"127.0.0.1:5432\"\n";
        let loaded = from_str(text, Path::new("."));
        let Ok(loaded) = loaded else {
            panic!("{loaded:?}")
        };
        assert_eq!(loaded.pool_size("app", "any"), 20);
        assert_eq!(loaded.pool_mode("app", "x"), PoolMode::Transaction);
    }

    #[test]
    fn debug_of_a_config_never_shows_a_secret() {
        let text = "[proxy]\nadmin_http_token = \"tok-hunter2\"\n\
                    [databases.app]\nprimary = \"h:1\"\nuser = \"u\"\npassword = \"db-hunter2\"\n\
                    [databases.app.routing]\nmonitor_password = \"mon-hunter2\"\n\
                    [users.bob]\npassword = \"user-hunter2\"\n";
        let loaded = from_str(text, Path::new("."));
        let Ok(loaded) = loaded else {
            panic!("{loaded:?}")
        };
        let shown = format!("{:?} {:?}", loaded.config, loaded.users);
        assert!(!shown.contains("hunter2"), "{shown}");
        // The values themselves are intact.
        assert_eq!(
            loaded.monitor_login("app").and_then(|l| l.1).as_deref(),
            Some("db-hunter2")
        );
    }

    #[test]
    fn every_type_error_and_unknown_key_is_reported() {
        let text = "[proxy]\ndefault_pool_size = \"twenty\"\nmax_client_conn = \"many\"\ndefualt_pool_mode = 1\n\
                    [databases.app]\nprimary = \"127.0.0.1:5432\"\npool_size = -1\n";
        let problems = match from_str(text, Path::new(".")) {
            Err(p) => p,
            Ok(_) => panic!("accepted"),
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "proxy.default_pool_size",
            "proxy.max_client_conn",
            "proxy.defualt_pool_mode",
            "databases.app.pool_size",
        ] {
            assert_eq!(
                keys.iter().filter(|k| **k == key).count(),
                1,
                "{key} in {problems:?}"
            );
        }
    }

    #[test]
    fn type_errors_never_quote_a_secret() {
        for text in [
            "[users.bob]\npassword = [\"hunter2-in-a-list\"]\n",
            "[databases.app]\nprimary = \"h:1\"\n[databases.app.routing]\nmonitor_password = { x = \"hunter2-in-a-table\" }\n",
        ] {
            let problems = from_str(text, Path::new(".")).err().unwrap_or_default();
            let shown = format!("{problems:?}");
            assert!(!problems.is_empty() && !shown.contains("hunter2"), "{shown}");
        }
        // Other keys keep their helpful message.
        let problems = from_str("[proxy]\ndefault_pool_size = \"many\"\n", Path::new("."));
        assert!(format!("{problems:?}").contains("many"));
    }

    #[test]
    fn names_keys_of_problems() {
        let text = "[proxy]\nlisten = \"nope\"\n[databases.app]\nprimary = \"h:99999\"\n";
        let keys: Vec<String> = from_str(text, Path::new("."))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, vec!["proxy.listen", "databases.app.primary"]);
    }

    #[test]
    fn residency_is_checked_and_tenants_file_merged() {
        let dir = std::env::temp_dir().join(format!("pgw-res-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(dir.join("tenants.toml"), "globex = [\"us-east-1\"]\n").unwrap_or_default();
        let good = "[proxy]\ntenants_file = \"tenants.toml\"\n\
            [tenants]\nacme = [\"eu-west-1\"]\n\
            [databases.app_eu]\nprimary = \"h:1\"\nregion = \"eu-west-1\"\n";
        let loaded = from_str(good, &dir).map_err(|p| format!("{p:?}"));
        assert_eq!(
            loaded.map(|l| l.config.tenants.keys().cloned().collect::<Vec<_>>()),
            Ok(vec!["acme".to_owned(), "globex".to_owned()])
        );
        let bad = "[databases.app]\nclusters = [\"nope\"]\n\
            [databases.app.residency]\npolicy = \"strict\"\nunknown_tenant = \"default_region\"\n\
            [databases.b]\nprimary = \"h:1\"\npool_mode = \"session\"\n\
            [databases.b.residency]\npolicy = \"preferred\"\n";
        let problems = from_str(bad, &dir).err().unwrap_or_default();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "databases.app.residency.default_region",
                "databases.app.clusters",
                "databases.b.residency.policy",
                "databases.b.routing.monitor_user",
            ],
            "{problems:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_key_is_an_error_with_key_line_and_suggestion() {
        let text = "[proxy]\nlisten = \"127.0.0.1:1\"\npool_mod = \"session\"\n";
        let problems = from_str(text, Path::new(".")).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "proxy.pool_mod");
        assert!(
            problems[0].what.contains("did you mean \"pool_mode\"?")
                && problems[0].what.contains("(line 3)"),
            "{}",
            problems[0].what
        );
    }

    #[test]
    fn durations_and_lists() {
        let text = "[proxy]\nquery_wait_timeout = \"250ms\"\nserver_lifetime = 60\nignore_startup_parameters = \"extra_float_digits, options\"\n[databases.a]\nprimary = \"h:1\"\n";
        let l = from_str(text, Path::new(".")).ok();
        let p = l.map(|l| l.config.proxy).unwrap_or_default();
        assert_eq!(p.query_wait_timeout, duration::Secs::from_millis(250));
        assert_eq!(p.server_lifetime, duration::Secs::from_secs(60));
        assert!(p.ignore_startup_parameters.contains_ignore_case("OPTIONS"));
    }
}
