//! Where clients come in: the Unix-domain socket beside the TCP listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::os::unix::fs::PermissionsExt;

use harness::tls::{psql as libpq, Pki};
use harness::*;
use pgwarden::config::{AuthType, SslMode};

/// `unix_socket_dir`: `<dir>/.s.PGSQL.<port>` with the configured mode,
/// found by `psql -h <dir>` and by a driver; `local` lines of the hba file
/// apply to it and `host` lines to TCP; TLS is neither offered nor asked
/// there (even under `client_tls_sslmode = require`); the socket file goes
/// away with the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_psql_and_drivers_under_local_lines() {
    let dir = tempfile::tempdir().unwrap();
    let socket_dir = dir.path().display().to_string();
    let hba_path = dir.path().join("hba.conf");
    std::fs::write(
        &hba_path,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let pki = Pki::new("listen-ca");
    let (crt, key) = pki.server("pgwarden", &["localhost", "127.0.0.1"]);
    let proxy = proxy(|c| {
        c.proxy.unix_socket_dir = socket_dir.clone();
        c.proxy.unix_socket_mode = "0770".into();
        c.proxy.auth_type = AuthType::Hba;
        c.proxy.auth_hba_file = Some(hba_path.display().to_string());
        c.proxy.client_tls_sslmode = SslMode::Require;
        c.proxy.client_tls_cert_file = Some(crt.display().to_string());
        c.proxy.client_tls_key_file = Some(key.display().to_string());
        c.proxy.admin_users.0.push(MD5_USER.into());
    })
    .await;
    let port = proxy.addr.port();
    let path = dir.path().join(format!(".s.PGSQL.{port}"));
    assert_eq!(proxy.unix_path.as_deref(), Some(path.as_path()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o770);

    // libpq: no password (a `local ... trust` line), no TLS on a socket.
    let over_socket = format!("host={socket_dir} port={port} user={MD5_USER} dbname={DB}");
    let who = tokio::task::spawn_blocking(move || {
        libpq(&over_socket, "", "SELECT current_user || ' ' || 42")
    })
    .await
    .unwrap();
    assert_eq!(who.as_deref(), Ok("pgw_md5 42"));

    // A driver, in transaction mode, twice on the same pooled servers.
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(dir.path())
        .port(port)
        .user(SCRAM_USER)
        .dbname(DB);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT $1::int + 1", &[&41])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 42);
        held.push(client);
    }

    // TCP: the `host` line asks for SCRAM, and TLS is required there.
    let over_tcp =
        format!("host=127.0.0.1 port={port} user={MD5_USER} dbname={DB} sslmode=disable");
    let refused = tokio::task::spawn_blocking(move || libpq(&over_tcp, PASSWORD, "SELECT 1"))
        .await
        .unwrap();
    assert!(
        refused.is_err_and(|e| e.contains("TLS")),
        "TCP without TLS is refused"
    );
    let ca = pki.ca.display().to_string();
    let over_tls = format!(
        "host=127.0.0.1 port={port} user={MD5_USER} dbname={DB} sslmode=verify-ca sslrootcert={ca}"
    );
    let wrong = over_tls.clone();
    let r = tokio::task::spawn_blocking(move || libpq(&wrong, "wrong", "SELECT 1"))
        .await
        .unwrap();
    assert!(r.is_err_and(|e| e.contains("password authentication failed")));
    let r = tokio::task::spawn_blocking(move || libpq(&over_tls, PASSWORD, "SELECT 7"))
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Ok("7"));

    // The console over the socket lists its client as PgBouncer does.
    let admin = format!("host={socket_dir} port={port} user={MD5_USER} dbname=pgbouncer");
    let shown = tokio::task::spawn_blocking(move || libpq(&admin, "", "SHOW CLIENTS"))
        .await
        .unwrap();
    let shown = shown.unwrap();
    assert!(
        shown.lines().any(|l| l.contains("|unix|")),
        "a driver's client, over the socket: {shown}"
    );
    drop(held);

    assert!(proxy.shutdown(std::time::Duration::from_secs(5)).await);
    assert!(!path.exists(), "the socket file leaves with the proxy");
}

/// A mode that is not octal, or a relative directory, is a config error
/// naming the key.
#[test]
fn bad_socket_settings_are_config_errors() {
    type Edit = fn(&mut pgwarden::config::Config);
    let cases: [(&str, Edit); 2] = [
        ("proxy.unix_socket_mode", |c| {
            c.proxy.unix_socket_dir = "/tmp".into();
            c.proxy.unix_socket_mode = "rwx".into();
        }),
        ("proxy.unix_socket_dir", |c| {
            c.proxy.unix_socket_dir = "relative/dir".into();
        }),
    ];
    for (key, edit) in cases {
        let mut cfg = pgwarden::config::Config::default();
        cfg.databases.insert(
            DB.into(),
            pgwarden::config::DatabaseSettings {
                primary: "127.0.0.1:5432".into(),
                ..Default::default()
            },
        );
        edit(&mut cfg);
        let problems = match pgwarden::config::from_config(cfg, std::path::Path::new(".")) {
            Err(problems) => problems,
            Ok(_) => panic!("{key}: accepted"),
        };
        assert!(problems.iter().any(|p| p.key == key), "{key}: {problems:?}");
    }
}
