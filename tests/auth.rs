//! Authentication in both directions, with every method PostgreSQL offers
//! and every place a secret can come from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;
use pgwarden::config::{AuthType, UserSettings};

async fn login_works(
    proxy: &pgwarden::app::Proxy,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let client = connect_url(&url(proxy, user, password, DB))
        .await
        .map_err(|e| format!("{user}: {e:?}"))?;
    let rows = client
        .simple_query("SELECT current_user")
        .await
        .map_err(|e| format!("{user}: {e:?}"))?;
    let who = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    if who.as_deref() == Some(user) {
        Ok(())
    } else {
        Err(format!("{user}: current_user was {who:?}"))
    }
}

/// Clients log in with each auth_type; the proxy then logs in to servers
/// that ask for md5 (pgw_md5), SCRAM (pgw_scram) and cleartext (pgw_plain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_method_against_every_server_method() {
    for auth_type in [
        AuthType::Md5,
        AuthType::ScramSha256,
        AuthType::Plain,
        AuthType::Trust,
    ] {
        let proxy = proxy(|c| c.proxy.auth_type = auth_type).await;
        for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
            login_works(&proxy, user, PASSWORD)
                .await
                .unwrap_or_else(|e| panic!("{auth_type:?}: {e}"));
        }
        if auth_type != AuthType::Trust {
            let err = connect_err(&url(&proxy, SCRAM_USER, "nope", DB)).await;
            assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{auth_type:?}");
        }
    }
}

/// A server that asks for a cleartext password is refused unless
/// `server_require_auth` allows it, as libpq's `require_auth` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_cleartext_is_refused_by_default() {
    let proxy = proxy(|c| {
        c.proxy.server_require_auth =
            pgwarden::config::ProxySettings::default().server_require_auth;
    })
    .await;
    let err = connect_err(&url(&proxy, PLAIN_USER, PASSWORD, DB)).await;
    let message = err
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("server_require_auth"), "{err:?}");
    login_works(&proxy, SCRAM_USER, PASSWORD).await.unwrap();
}

fn stored_secret(user: &str) -> String {
    cluster()
        .psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
        )
        .unwrap()
}

/// A userlist.txt with only the servers' stored secrets: md5 logs in with
/// the md5 hash, SCRAM with the keys recovered from the client's proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_file_with_stored_secrets_only() {
    let scram = stored_secret(SCRAM_USER);
    let md5 = stored_secret(MD5_USER);
    assert!(scram.starts_with("SCRAM-SHA-256$"), "{scram}");
    assert!(md5.starts_with("md5"), "{md5}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("userlist.txt");
    std::fs::write(
        &file,
        format!(";; test users\n\"{SCRAM_USER}\" \"{scram}\"\n\"{MD5_USER}\" \"{md5}\"\n"),
    )
    .unwrap();
    for auth_type in [AuthType::Md5, AuthType::ScramSha256] {
        let file = file.display().to_string();
        let proxy = proxy(|c| {
            c.users.clear();
            c.proxy.auth_type = auth_type;
            c.proxy.auth_file = Some(file);
        })
        .await;
        login_works(&proxy, SCRAM_USER, PASSWORD).await.unwrap();
        login_works(&proxy, MD5_USER, PASSWORD).await.unwrap();
        // A second client reuses the pool's servers or opens new ones with the same keys.
        let a = connect(&proxy, SCRAM_USER).await.unwrap();
        let b = connect(&proxy, SCRAM_USER).await.unwrap();
        a.batch_execute("BEGIN").await.unwrap();
        b.simple_query("SELECT 1").await.unwrap();
        a.batch_execute("COMMIT").await.unwrap();
        let err = connect_err(&url(&proxy, MD5_USER, "bad", DB)).await;
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    }
}

/// auth_query through an auth_user: no secrets in the config at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_query_looks_secrets_up() {
    let c = cluster();
    let proxy = proxy(|cfg| {
        cfg.users.clear();
        cfg.users.insert(
            "postgres".into(),
            UserSettings {
                password: Some(c.superuser_password.clone().into()),
                ..Default::default()
            },
        );
        cfg.proxy.auth_user = Some("postgres".into());
        cfg.proxy.auth_type = AuthType::ScramSha256;
    })
    .await;
    login_works(&proxy, SCRAM_USER, PASSWORD).await.unwrap();
    login_works(&proxy, MD5_USER, PASSWORD).await.unwrap();
    let err = connect_err(&url(&proxy, SCRAM_USER, "wrong", DB)).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    let err = connect_err(&url(&proxy, "nobody_here", "x", DB)).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
}

/// A database with its own login user shares one pool among all clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_with_forced_user() {
    let proxy = proxy(|c| {
        let db = c.databases.get_mut(DB).unwrap();
        db.user = Some(MD5_USER.into());
        db.password = Some(PASSWORD.into());
    })
    .await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let rows = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, String>(0), MD5_USER);
}

/// pgwarden's own tokio-postgres connections (the topology monitor,
/// auth_query, SWITCHOVER) obey `server_require_auth` as the pool's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_connections_obey_server_require_auth() {
    use pgwarden::auth::backend::AuthMethods;
    use pgwarden::server::control::{connect, ControlLogin};
    let addr = cluster().primary.addr();
    let cleartext = pgwarden::net::tls::TlsTarget::disabled();
    let login = |user, allowed_auth| ControlLogin {
        tls: &cleartext,
        addr: &addr,
        user,
        password: Some(PASSWORD),
        dbname: DB,
        application_name: "pgwarden test",
        timeout: std::time::Duration::from_secs(5),
        allowed_auth,
    };
    let strict = AuthMethods::from_names(&["md5".to_string(), "scram-sha-256".to_string()]);
    let err = connect(&login(PLAIN_USER, strict)).await.unwrap_err();
    assert!(err.to_string().contains("server_require_auth"), "{err}");
    let err = connect(&login(TRUST_USER, strict)).await.unwrap_err();
    assert!(err.to_string().contains("server_require_auth"), "{err}");
    let client = connect(&login(SCRAM_USER, strict)).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let client = connect(&login(MD5_USER, AuthMethods::MD5)).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let client = connect(&login(PLAIN_USER, AuthMethods::PASSWORD))
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    // auth_query: its auth_user's server asks for a cleartext password,
    // so the lookup happens only where that is allowed.
    for (allow_password, works) in [(false, false), (true, true)] {
        let proxy = proxy(|cfg| {
            cfg.users.clear();
            cfg.users.insert(
                PLAIN_USER.into(),
                UserSettings {
                    password: Some(PASSWORD.into()),
                    ..Default::default()
                },
            );
            cfg.proxy.auth_user = Some(PLAIN_USER.into());
            cfg.proxy.auth_query = format!("SELECT $1::text, '{PASSWORD}'::text");
            cfg.proxy.auth_type = AuthType::ScramSha256;
            let mut methods = vec!["scram-sha-256".to_string(), "md5".to_string()];
            if allow_password {
                methods.push("password".into());
            }
            cfg.proxy.server_require_auth = pgwarden::config::NameList(methods);
        })
        .await;
        let result = login_works(&proxy, SCRAM_USER, PASSWORD).await;
        assert_eq!(result.is_ok(), works, "{allow_password}: {result:?}");
    }
}
