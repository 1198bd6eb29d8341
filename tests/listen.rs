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

/// Sockets of `/proc/net/tcp` (established) with their keepalive timer, in
/// seconds from now: `(local port, remote port, seconds)`.
fn keepalive_timers() -> Vec<(u16, u16, f64)> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (timer, when) = f[5].split_once(':')?;
            // State 01 is ESTABLISHED; timer 2 is keepalive; `when` is in
            // clock ticks (USER_HZ, 100 a second).
            (f[3] == "01" && timer == "02").then(|| {
                let ticks = u64::from_str_radix(when, 16).unwrap();
                (port(f[1]), port(f[2]), ticks as f64 / 100.0)
            })
        })
        .collect()
}

/// `tcp_keepalive`, `tcp_keepidle`...: both a client's socket and the
/// servers' carry the keepalive timer the settings ask for (read back from
/// the kernel's table of sockets, not from pgwarden).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_settings_reach_client_and_server_sockets() {
    let on = proxy(|c| {
        c.proxy.tcp_keepidle = 4242;
        c.proxy.tcp_keepintvl = 5;
        c.proxy.tcp_keepcnt = 3;
    })
    .await;
    let port = on.addr.port();
    let client = connect(&on, MD5_USER).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let pg_port = cluster().primary.port;
    let near = |s: f64| s > 4000.0 && s <= 4242.0;
    // Until the peer has acknowledged the last bytes, the table shows the
    // retransmission timer instead.
    let client_side = || {
        keepalive_timers()
            .iter()
            .any(|&(l, _, s)| l == port && near(s))
    };
    eventually(std::time::Duration::from_secs(3), || async {
        client_side()
    })
    .await;
    let timers = keepalive_timers();
    assert!(
        timers.iter().any(|&(l, _, s)| l == port && near(s)),
        "the client's socket on pgwarden's side: {timers:?}"
    );
    assert!(
        timers.iter().any(|&(_, r, s)| r == pg_port && near(s)),
        "a server socket towards PostgreSQL: {timers:?}"
    );
    drop(client);

    // Off: no keepalive timer on a new client's socket.
    let off = proxy(|c| c.proxy.tcp_keepalive = false).await;
    let c = connect(&off, MD5_USER).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let off_port = off.addr.port();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!keepalive_timers().iter().any(|&(l, _, _)| l == off_port));
}
