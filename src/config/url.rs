//! `pgwarden run --database-url postgres://user:pass@host:port/db`: the
//! one-database sidecar, configured by the URL the application already
//! has, with no file. The URL's user logs in to pgwarden with the URL's
//! password and pgwarden logs in to PostgreSQL as that user; each
//! `--replica-url` adds a streaming replica that reads are routed to.
//!
//! The URL is parsed by tokio-postgres (percent-encoding, IPv6 hosts,
//! `?options`), except `sslmode`, whose `verify-ca`/`verify-full` it does
//! not know: pgwarden reads that one itself and applies it towards every
//! node.

use std::path::Path;

use tokio_postgres::config::Host;

use super::schema::{Config, DatabaseSettings, Password, UserSettings};
use super::{from_config, AuthType, Loaded, Problem};
use crate::net::tls::SslMode;

/// What `run` takes besides the URLs.
#[derive(Debug, Clone)]
pub struct UrlOptions {
    pub listen: String,
    pub admin_listen: Option<String>,
}

/// Builds and validates the config the URLs describe.
///
/// # Errors
/// A URL that does not parse or lacks a user, host or database, and every
/// problem validation finds; messages never quote a password.
pub fn from_database_url(
    primary: &str,
    replicas: &[String],
    options: &UrlOptions,
) -> Result<Loaded, Vec<Problem>> {
    let fail = |key: &str, what: String| {
        vec![Problem {
            key: key.into(),
            what,
        }]
    };
    let main = parse(primary).map_err(|e| fail("--database-url", e))?;
    let mut config = Config::default();
    config.proxy.listen = options.listen.clone();
    config.proxy.admin_listen = options.admin_listen.clone();
    config.proxy.auth_type = match main.password {
        Some(_) => AuthType::ScramSha256,
        // PostgreSQL trusts this user without a password, and so do we;
        // the listener is the sidecar's loopback unless `--listen` says.
        None => AuthType::Trust,
    };
    let mut db = DatabaseSettings {
        primary: main.addr,
        server_tls_sslmode: main.sslmode,
        ..DatabaseSettings::default()
    };
    for (i, url) in replicas.iter().enumerate() {
        let replica = parse(url).map_err(|e| fail(&format!("--replica-url #{}", i + 1), e))?;
        if (&replica.user, &replica.dbname) != (&main.user, &main.dbname) {
            return Err(fail(
                &format!("--replica-url #{}", i + 1),
                "a replica must name the same user and database as --database-url".into(),
            ));
        }
        db.replicas.push(replica.addr.into());
    }
    if !replicas.is_empty() {
        // The topology monitor logs in as the application's user: lag and
        // recovery state need no privilege beyond a login.
        db.routing.monitor_user = Some(main.user.clone());
        db.routing.monitor_password = main.password.clone().map(Password);
    }
    config.databases.insert(main.dbname.clone(), db);
    config.users.insert(
        main.user,
        UserSettings {
            password: main.password.map(Password),
            ..UserSettings::default()
        },
    );
    from_config(config, Path::new("."))
}

struct ParsedUrl {
    user: String,
    password: Option<String>,
    dbname: String,
    addr: String,
    sslmode: Option<SslMode>,
}

fn parse(url: &str) -> Result<ParsedUrl, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected postgres://user:password@host:port/database".into());
    }
    let (url, sslmode) = take_sslmode(url)?;
    // tokio-postgres's own errors may quote the URL, password included.
    let parsed: tokio_postgres::Config = url
        .parse()
        .map_err(|_| "not a valid postgres:// URL".to_string())?;
    let user = parsed
        .get_user()
        .filter(|u| !u.is_empty())
        .ok_or("the URL names no user")?
        .to_string();
    let dbname = parsed.get_dbname().unwrap_or(&user).to_string();
    let host = match parsed.get_hosts() {
        [Host::Tcp(h)] => h.clone(),
        [] => return Err("the URL names no host".into()),
        [Host::Unix(_)] => return Err("a Unix-socket host needs a config file".into()),
        _ => return Err("one host per URL (give replicas with --replica-url)".into()),
    };
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let addr = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let password = parsed
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Ok(ParsedUrl {
        user,
        password,
        dbname,
        addr,
        sslmode,
    })
}

/// Removes `sslmode=` from the query string and reads it.
fn take_sslmode(url: &str) -> Result<(String, Option<SslMode>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut mode = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("sslmode=") {
            Some(value) => {
                mode = Some(
                    serde_json::from_value(serde_json::Value::String(value.into()))
                        .map_err(|_| format!("unknown sslmode {value:?}"))?,
                )
            }
            None => rest.push(pair),
        }
    }
    Ok(match rest.is_empty() {
        true => (base.to_string(), mode),
        false => (format!("{base}?{}", rest.join("&")), mode),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn options() -> UrlOptions {
        UrlOptions {
            listen: "127.0.0.1:6432".into(),
            admin_listen: None,
        }
    }

    #[test]
    fn a_url_becomes_one_database_and_its_user() {
        let loaded = from_database_url(
            "postgres://app:p%40ss@db.internal:5433/shop?sslmode=verify-full&application_name=x",
            &["postgresql://app:p%40ss@[::1]:5434/shop".into()],
            &options(),
        )
        .unwrap();
        let db = &loaded.config.databases["shop"];
        assert_eq!(db.primary, "db.internal:5433");
        assert_eq!(db.replicas[0].addr, "[::1]:5434");
        assert_eq!(db.server_tls_sslmode, Some(SslMode::VerifyFull));
        assert_eq!(db.routing.monitor_user.as_deref(), Some("app"));
        let user = &loaded.config.users["app"];
        assert_eq!(user.password.as_deref(), Some("p@ss"), "percent-decoded");
        assert_eq!(loaded.config.proxy.auth_type, AuthType::ScramSha256);
    }

    #[test]
    fn defaults_and_refusals() {
        let loaded = from_database_url("postgres://app@localhost", &[], &options()).unwrap();
        assert!(loaded.config.databases.contains_key("app"), "dbname = user");
        assert_eq!(loaded.config.databases["app"].primary, "localhost:5432");
        assert_eq!(loaded.config.proxy.auth_type, AuthType::Trust);

        let refused = |url: &str, replicas: &[String]| {
            from_database_url(url, replicas, &options())
                .err()
                .unwrap()
                .remove(0)
        };
        let p = refused("mysql://a:secret@h/d", &[]);
        assert_eq!(p.key, "--database-url");
        let p = refused("postgres://:secret@h/d", &[]);
        assert!(
            p.what.contains("no user") && !p.what.contains("secret"),
            "{p:?}"
        );
        let p = refused("postgres://a:secret@h/d?sslmode=sometimes", &[]);
        assert!(p.what.contains("sslmode"), "{p:?}");
        let p = refused("postgres://a:b@h/d", &["postgres://other:b@r/d".into()]);
        assert_eq!(p.key, "--replica-url #1");
        let p = refused("postgres://a:b@h1,h2/d", &[]);
        assert!(p.what.contains("one host"), "{p:?}");
    }
}
