//! TLS on both sides: clients (psql/libpq, raw sockets) to pgwarden, and
//! pgwarden to a PostgreSQL that accepts only TLS (`hostssl` lines).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::tls::{psql, tls_cluster, Pki};
use harness::*;
use pgwarden::config::{Config, DatabaseSettings, SslMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// pgwarden's own certificate for localhost and 127.0.0.1, from `pki`.
fn client_side(c: &mut Config, pki: &Pki, mode: SslMode) {
    let (crt, key) = pki.server("pgwarden", &["localhost", "127.0.0.1"]);
    c.proxy.client_tls_sslmode = mode;
    c.proxy.client_tls_cert_file = Some(crt.display().to_string());
    c.proxy.client_tls_key_file = Some(key.display().to_string());
}

fn conninfo(port: u16, db: &str, extra: &str) -> String {
    format!("host=localhost port={port} user={SCRAM_USER} dbname={db} {extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_tls_as_libpq_asks() {
    let pki = Pki::new("test-ca");
    let other = Pki::new("other-ca");
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::Require);
        c.proxy.admin_users = pgwarden::config::NameList(vec![SCRAM_USER.into()]);
    })
    .await;
    let port = proxy.addr.port();
    let ca = format!("sslrootcert={}", pki.ca.display());
    let run = |extra: String, sql: &'static str| {
        let info = conninfo(port, DB, &extra);
        tokio::task::spawn_blocking(move || psql(&info, PASSWORD, sql))
    };
    let full = run(
        format!("sslmode=verify-full {ca}"),
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    // The server side is cleartext here: PostgreSQL sees no TLS, the client did.
    assert_eq!(full.await.unwrap().as_deref(), Ok("f"));
    let required = run("sslmode=require".into(), "SELECT 1").await.unwrap();
    assert_eq!(required.as_deref(), Ok("1"));
    let plain = run("sslmode=disable".into(), "SELECT 1").await.unwrap();
    assert!(
        plain.as_ref().is_err_and(|e| e.contains("SSL required")),
        "{plain:?}"
    );
    let wrong_ca = format!("sslmode=verify-full sslrootcert={}", other.ca.display());
    let refused = run(wrong_ca, "SELECT 1").await.unwrap();
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("certificate verify failed")),
        "{refused:?}"
    );

    // A large result (about 40 MB) over TLS arrives whole: nothing is left
    // in rustls's buffer when the socket fills.
    let big = run(
        "sslmode=require".into(),
        "SELECT repeat('x', 2000) FROM generate_series(1, 20000)",
    );
    let big = tokio::time::timeout(Duration::from_secs(60), big)
        .await
        .expect("no stall")
        .unwrap();
    assert_eq!(big.map(|out| out.lines().count()), Ok(20000));

    // SHOW CLIENTS names the protocol and cipher of a TLS client.
    let long = run(format!("sslmode=verify-full {ca}"), "SELECT pg_sleep(2)");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let info = conninfo(port, "pgwarden", &format!("sslmode=verify-full {ca}"));
    let clients = tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SHOW CLIENTS"))
        .await
        .unwrap()
        .unwrap();
    assert!(clients.contains("|TLSv1.3/TLS_"), "{clients}");
    long.await.unwrap().unwrap();
}

/// libpq's `channel_binding=require`: SCRAM-SHA-256-PLUS bound to
/// pgwarden's certificate, for users whose secret pgwarden holds in
/// cleartext and for users with a stored SCRAM secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_channel_binding_through_libpq() {
    let pki = Pki::new("binding-ca");
    let stored = cluster()
        .psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{SCRAM_USER}'"),
        )
        .unwrap();
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::Prefer);
        c.proxy.auth_type = pgwarden::config::AuthType::ScramSha256;
        c.users.get_mut(SCRAM_USER).unwrap().password = Some(stored.into());
    })
    .await;
    let ca = format!("sslrootcert={}", pki.ca.display());
    for user in [SCRAM_USER, MD5_USER] {
        let info = format!(
            "host=localhost port={} user={user} dbname={DB} sslmode=verify-full {ca} channel_binding=require",
            proxy.addr.port()
        );
        let out = tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT current_user"))
            .await
            .unwrap();
        assert_eq!(out.as_deref(), Ok(user), "{user}");
    }
    // Without TLS there is nothing to bind to: libpq refuses, as it would
    // with PostgreSQL.
    let info = format!(
        "host=localhost port={} user={SCRAM_USER} dbname={DB} sslmode=disable channel_binding=require",
        proxy.addr.port()
    );
    let plain = tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT 1"))
        .await
        .unwrap();
    assert!(plain.is_err(), "{plain:?}");
}

/// Direct TLS (PostgreSQL 17+ libpq's `sslnegotiation=direct`), through
/// psycopg's own libpq; and a direct handshake without ALPN refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_negotiation() {
    let pki = Pki::new("direct-ca");
    let proxy = proxy(|c| client_side(c, &pki, SslMode::Require)).await;
    let Some(python) = python_with_drivers() else {
        return missing_dependency("psycopg");
    };
    let script = format!(
        "import psycopg\n\
         print(psycopg.pq.version())\n\
         with psycopg.connect('{}') as c:\n    print(c.execute('SELECT 40 + 2').fetchone()[0])\n",
        conninfo(
            proxy.addr.port(),
            DB,
            &format!(
                "password={PASSWORD} sslmode=verify-full sslnegotiation=direct sslrootcert={}",
                pki.ca.display()
            )
        )
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", &script])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let libpq: u32 = text
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    if libpq < 170_000 {
        skipped(&format!("psycopg's libpq is {libpq}, direct TLS needs 17"));
        return;
    }
    assert!(
        out.status.success() && text.lines().nth(1) == Some("42"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A ClientHello without ALPN: the handshake may finish, the session not.
    let config = client_config(&pki);
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        let mut out = bytes::BytesMut::new();
        pgwarden::wire::frontend::startup_message(
            &mut out,
            &[("user", SCRAM_USER), ("database", DB)],
        );
        let _ = tls.write_all(&out).await;
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf))
            .await
            .expect("closed, not left hanging");
        assert!(
            n.is_err() || !buf.starts_with(b"R"),
            "no login without ALPN"
        );
    }
    // The proxy still serves everyone else.
    let cleartext = connect_err(&url(&proxy, TRUST_USER, PASSWORD, DB)).await;
    assert_eq!(sqlstate(&cleartext).as_deref(), Some("28000"));
}

/// A TLS client that trusts `pki`'s CA (and offers no ALPN).
fn client_config(pki: &Pki) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types_certs(&pki.ca) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(config)
}

fn rustls_pki_types_certs(
    path: &std::path::Path,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Hostile bytes around the negotiation: each gets its error or a closed
/// socket, and the proxy goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_negotiation() {
    let pki = Pki::new("hostile-ca");
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::Prefer);
        c.proxy.client_login_timeout = pgwarden::config::duration::Secs::from_secs(1);
        c.proxy.admin_listen = Some("127.0.0.1:0".into());
    })
    .await;
    // Cleartext bytes behind the SSLRequest, in the same packet.
    let mut sock = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut packet = SSL_REQUEST.to_vec();
    let mut startup = bytes::BytesMut::new();
    pgwarden::wire::frontend::startup_message(&mut startup, &[("user", TRUST_USER)]);
    packet.extend_from_slice(&startup);
    sock.write_all(&packet).await.unwrap();
    assert_eq!(sock.read_u8().await.unwrap(), b'S');
    let messages = read_until_error(&mut sock).await;
    assert!(
        messages.contains("08P01") && messages.contains("unencrypted data"),
        "{messages}"
    );

    // Garbage where the ClientHello should be.
    let mut sock = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    sock.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(sock.read_u8().await.unwrap(), b'S');
    sock.write_all(b"\x16\x03\x01\x00\x05garbage and more garbage")
        .await
        .ok();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "closed after a broken handshake");

    // A client that stops in the middle of the handshake: client_login_timeout.
    let mut sock = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    sock.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(sock.read_u8().await.unwrap(), b'S');
    let closed = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a stalled handshake ends at client_login_timeout"
    );

    // SSLRequest twice (the first answered N when TLS is off).
    let plain = harness::proxy(|_| {}).await;
    let mut sock = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
    sock.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(sock.read_u8().await.unwrap(), b'N');
    sock.write_all(&SSL_REQUEST).await.unwrap();
    let messages = read_until_error(&mut sock).await;
    assert!(messages.contains("08P01"), "{messages}");

    // Everyone else is still served, over TLS and not.
    connect(&proxy, SCRAM_USER)
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
    let info = conninfo(
        proxy.addr.port(),
        DB,
        &format!("sslmode=verify-full sslrootcert={}", pki.ca.display()),
    );
    let out = tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT 7"))
        .await
        .unwrap();
    assert_eq!(out.as_deref(), Ok("7"));

    // /metrics counts the handshakes, good and failed.
    let (_, metrics) = http_get(&proxy, "/metrics").await;
    let count = |result: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("pgwarden_tls_handshakes_total")
                    && l.contains(&format!("result=\"{result}\""))
                    && l.contains("side=\"client\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("ok") >= 1 && count("failed") >= 2, "{metrics}");
}

/// Reads until an ErrorResponse and returns its fields as text.
async fn read_until_error(sock: &mut tokio::net::TcpStream) -> String {
    let messages = read_messages(sock, |tag, _| tag == b'E').await;
    let (_, body) = messages.last().unwrap();
    String::from_utf8_lossy(body).into_owned()
}

/// pgwarden to a PostgreSQL that accepts only TLS, with verify-full: pools,
/// the monitor (read/write splitting) and a certificate for another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_over_tls_only() {
    let pki = Pki::new("server-ca");
    let c = tls_cluster(&pki, 1);
    let ca = pki.ca.display().to_string();
    let edit = |name: Option<&str>| {
        let ca = ca.clone();
        let (primary, replica) = (c.primary.addr(), c.replicas[0].addr());
        let name = name.map(str::to_owned);
        move |cfg: &mut Config| {
            cfg.proxy.server_tls_sslmode = SslMode::VerifyFull;
            cfg.proxy.server_tls_ca_file = Some(ca);
            let mut db = DatabaseSettings {
                primary,
                replicas: vec![replica.into()],
                server_tls_server_name: name,
                ..Default::default()
            };
            db.routing.monitor_user = Some(SCRAM_USER.into());
            db.routing.monitor_password = Some(PASSWORD.into());
            cfg.databases.insert(DB.into(), db);
            cfg.proxy.admin_users = pgwarden::config::NameList(vec![SCRAM_USER.into()]);
        }
    };
    let proxy = proxy(edit(None)).await;
    assert!(
        replicas_ready(&proxy).await,
        "the monitor reaches both nodes over TLS"
    );
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS tls_t (v int); INSERT INTO tls_t VALUES (1)")
        .await
        .unwrap();
    let on_replica = eventually(Duration::from_secs(10), || {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, bool>(0) && row.get::<_, bool>(1)
        }
    })
    .await;
    assert!(on_replica, "reads reach the replica, over TLS");
    let on_primary = client
        .query_one(
            "WITH w AS (INSERT INTO tls_t VALUES (2) RETURNING 1) \
             SELECT ssl FROM pg_stat_ssl, w WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(
        on_primary.get::<_, bool>(0),
        "writes reach the primary, over TLS"
    );
    let admin = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgwarden"))
        .await
        .unwrap();
    let servers = admin.simple_query("SHOW SERVERS").await.unwrap();
    let tls_cells: Vec<String> = servers
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("tls").map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(
        !tls_cells.is_empty() && tls_cells.iter().all(|t| t.starts_with("TLSv1.3/")),
        "{tls_cells:?}"
    );

    // A cancel goes to the server over cleartext, which even a
    // hostssl-only server takes (it reads CancelRequest before pg_hba).
    let slow = connect(&proxy, SCRAM_USER).await.unwrap();
    let token = slow.cancel_token();
    let running = tokio::spawn(async move { slow.simple_query("SELECT pg_sleep(20)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cancelled.err().and_then(|e| sqlstate(&e)).as_deref(),
        Some("57014")
    );

    // A certificate that does not name the host: 08001, nothing in cleartext.
    let wrong = proxy_from(edit(Some("db.example.com"))).await;
    let err = match connect(&wrong, SCRAM_USER).await {
        Ok(client) => client.simple_query("SELECT 1").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err:?}");
}

async fn proxy_from(edit: impl FnOnce(&mut Config)) -> pgwarden::app::Proxy {
    harness::proxy(edit).await
}

/// `auth_type = "cert"` and an `auth_hba_file` with each method, over TLS
/// and not, as psql (libpq) sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_hba() {
    let pki = Pki::new("clients-ca");
    let stranger = Pki::new("stranger-ca");
    let (scram_crt, scram_key) = pki.client("scram-client", SCRAM_USER);
    let (md5_crt, md5_key) = pki.client("md5-client", MD5_USER);
    let (alien_crt, alien_key) = stranger.client("alien-client", SCRAM_USER);
    let ca = pki.ca.display().to_string();
    let with_cert = |crt: &std::path::Path, key: &std::path::Path| {
        format!(
            "sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
            crt.display(),
            key.display()
        )
    };
    let try_as = |port: u16, user: &'static str, extra: String| {
        let info = format!("host=localhost port={port} user={user} dbname={DB} {extra}");
        tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT current_user"))
    };

    let cert = proxy(|c| {
        client_side(c, &pki, SslMode::Require);
        c.proxy.client_tls_ca_file = Some(ca.clone());
        c.proxy.auth_type = pgwarden::config::AuthType::Cert;
    })
    .await;
    let port = cert.addr.port();
    let ok = try_as(port, SCRAM_USER, with_cert(&scram_crt, &scram_key))
        .await
        .unwrap();
    assert_eq!(ok.as_deref(), Ok(SCRAM_USER));
    let no_cert = try_as(
        port,
        SCRAM_USER,
        format!("sslmode=verify-full sslrootcert={ca}"),
    )
    .await
    .unwrap();
    assert!(
        no_cert
            .as_ref()
            .is_err_and(|e| e.contains("requires a valid client certificate")),
        "{no_cert:?}"
    );
    let other_name = try_as(port, SCRAM_USER, with_cert(&md5_crt, &md5_key))
        .await
        .unwrap();
    assert!(
        other_name
            .as_ref()
            .is_err_and(|e| e.contains("certificate authentication failed for user \"pgw_scram\"")),
        "{other_name:?}"
    );
    let alien = try_as(port, SCRAM_USER, with_cert(&alien_crt, &alien_key))
        .await
        .unwrap();
    assert!(alien.is_err(), "a certificate from another CA: {alien:?}");

    let hba_path = pki.dir.join("pg_hba.conf");
    let hba = format!(
        "# first match wins\n\
         hostssl all {SCRAM_USER} 127.0.0.1/32 cert\n\
         hostnossl all {MD5_USER} 127.0.0.1/32 reject\n\
         host all {MD5_USER} 127.0.0.1/32 md5\n\
         host all {TRUST_USER} 127.0.0.0 255.0.0.0 trust\n\
         host {DB} {PLAIN_USER} 10.0.0.0/8 password\n"
    );
    std::fs::write(&hba_path, hba).unwrap();
    let hba_config = |c: &mut Config| {
        client_side(c, &pki, SslMode::Prefer);
        c.proxy.client_tls_ca_file = Some(ca.clone());
        c.proxy.auth_type = pgwarden::config::AuthType::Hba;
        c.proxy.auth_hba_file = Some(hba_path.display().to_string());
    };
    let proxy = proxy(hba_config).await;
    let port = proxy.addr.port();
    let tls = || format!("sslmode=verify-full sslrootcert={ca}");
    let r = try_as(port, SCRAM_USER, with_cert(&scram_crt, &scram_key))
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Ok(SCRAM_USER), "hostssl cert");
    let r = try_as(port, SCRAM_USER, tls()).await.unwrap();
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("requires a valid client certificate")),
        "{r:?}"
    );
    let r = try_as(port, MD5_USER, "sslmode=disable".into())
        .await
        .unwrap();
    assert!(r.as_ref().is_err_and(|e| e.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"pgw_md5\", database \"pgw\", no encryption")), "{r:?}");
    let r = try_as(port, MD5_USER, tls()).await.unwrap();
    assert_eq!(r.as_deref(), Ok(MD5_USER), "host md5 over TLS");
    let r = try_as(port, TRUST_USER, "sslmode=disable password=none".into())
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Ok(TRUST_USER), "trust by mask");
    let r = try_as(port, PLAIN_USER, tls()).await.unwrap();
    assert!(r.as_ref().is_err_and(|e| e.contains("no pg_hba.conf entry for host \"127.0.0.1\", user \"pgw_plain\", database \"pgw\", SSL encryption")), "{r:?}");

    // Read again on reload; a malformed file is refused and the old kept.
    std::fs::write(
        &hba_path,
        format!("host all {TRUST_USER} 127.0.0.1/32 reject\n"),
    )
    .unwrap();
    proxy.shared.reload(harness::config(hba_config)).unwrap();
    let r = try_as(port, TRUST_USER, "sslmode=disable".into())
        .await
        .unwrap();
    assert!(
        r.as_ref().is_err_and(|e| e.contains("rejects connection")),
        "{r:?}"
    );
    std::fs::write(&hba_path, "host all +admins all md5\n").unwrap();
    let mut bad = Config::default();
    hba_config(&mut bad);
    let problems = pgwarden::config::from_config(bad, std::path::Path::new(".")).unwrap_err();
    assert!(
        problems.iter().any(|p| p.key == "proxy.auth_hba_file"
            && p.what.contains("line 1")
            && p.what.contains("groups")),
        "{problems:?}"
    );
}

/// Certificates rotated under load: a reload reads the files again, new
/// connections get the new certificate, and no session (long or new) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_reload_under_load() {
    let (old_ca, new_ca) = (Pki::new("rotate-old"), Pki::new("rotate-new"));
    let live = old_ca.dir.join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (crt, key) = (live.join("pgwarden.crt"), live.join("pgwarden.key"));
    // Written whole, then renamed over: a reload never reads half a file.
    let install = |pki: &Pki| {
        let (c, k) = pki.server("pgwarden", &["localhost", "127.0.0.1"]);
        for (from, to) in [(c, &crt), (k, &key)] {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
    };
    install(&old_ca);
    let config = |c: &mut Config| {
        c.proxy.admin_users = pgwarden::config::NameList(vec![SCRAM_USER.into()]);
        c.proxy.client_tls_sslmode = SslMode::Require;
        c.proxy.client_tls_cert_file = Some(crt.display().to_string());
        c.proxy.client_tls_key_file = Some(key.display().to_string());
    };
    let proxy = proxy(config).await;
    let port = proxy.addr.port();
    let script = old_ca.dir.join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let bench = |connect_each: bool| {
        let script = script.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["-n", "-T", "4", "-c", "2", "-j", "1", "-f", &script];
            if connect_each {
                args.push("-C");
            }
            pgbench_with(port, &args, &[("PGSSLMODE", "require")])
        })
    };
    let (new_each, long) = (bench(true), bench(false));
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        install(if round % 2 == 0 { &new_ca } else { &old_ca });
        proxy.shared.reload(harness::config(config)).unwrap();
    }
    install(&new_ca);
    proxy.shared.reload(harness::config(config)).unwrap();
    for (what, run) in [("-C", new_each), ("long sessions", long)] {
        let (ok, text) = run.await.unwrap();
        assert!(
            ok && text.contains("number of failed transactions: 0 "),
            "{what}: {text}"
        );
    }
    let verify = |pki: &Pki| {
        let info = conninfo(
            port,
            DB,
            &format!("sslmode=verify-full sslrootcert={}", pki.ca.display()),
        );
        tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT 1"))
    };
    assert_eq!(
        verify(&new_ca).await.unwrap().as_deref(),
        Ok("1"),
        "the new certificate"
    );
    assert!(verify(&old_ca).await.unwrap().is_err(), "not the old one");

    // The console's SET of a file key reads the files again; a SET naming
    // a file that cannot be read is refused and the old certificate stays.
    let console = |sql: String| {
        let info = conninfo(port, "pgwarden", "sslmode=require");
        tokio::task::spawn_blocking(move || psql(&info, PASSWORD, &sql))
    };
    let bad = console("SET client_tls_cert_file = '/nonexistent/pgwarden.crt'".into())
        .await
        .unwrap();
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.contains("client_tls_cert_file")),
        "{bad:?}"
    );
    assert_eq!(verify(&new_ca).await.unwrap().as_deref(), Ok("1"), "kept");
    install(&old_ca);
    let same = format!("SET client_tls_cert_file = '{}'", crt.display());
    console(same).await.unwrap().unwrap();
    assert_eq!(
        verify(&old_ca).await.unwrap().as_deref(),
        Ok("1"),
        "read again on SET"
    );
}

/// psycopg 3, asyncpg, node-postgres and PgJDBC over TLS with
/// `sslmode=verify-full`, prepared statements included, in transaction
/// mode over a few servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_over_tls() {
    let pki = Pki::new("drivers-ca");
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::Require);
        c.proxy.default_pool_size = 3;
    })
    .await;
    let (port, ca) = (proxy.addr.port(), pki.ca.display().to_string());
    let url = format!(
        "postgresql://{MD5_USER}:{PASSWORD}@127.0.0.1:{port}/{DB}?sslmode=verify-full&sslrootcert={ca}"
    );
    match python_with_drivers() {
        Some(python) => run_driver(python.as_os_str(), &[], "python_drivers.py", &url, &[]).await,
        None => missing_dependency("Python with asyncpg and psycopg"),
    }
    let modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nodeenv/node_modules");
    match modules.join("pg").exists() {
        true => {
            run_driver(
                "node".as_ref(),
                &[],
                "node_pg.js",
                &url,
                &[("NODE_PATH", modules)],
            )
            .await
        }
        false => missing_dependency("node with node-postgres"),
    }
    let jar = std::path::Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() {
        return missing_dependency("PgJDBC (Debian's libpostgresql-jdbc-java)");
    }
    let jdbc = format!(
        "jdbc:postgresql://localhost:{port}/{DB}?user={MD5_USER}&password={PASSWORD}&ssl=true&sslmode=verify-full&sslrootcert={ca}"
    );
    let cp: [&std::ffi::OsStr; 2] = ["-cp".as_ref(), jar.as_os_str()];
    run_driver("java".as_ref(), &cp, "JdbcTls.java", &jdbc, &[]).await;
}

/// Over TLS to a hostssl-only cluster: SCRAM passthrough (only a stored
/// SCRAM secret: the server login uses keys from the client's proof, bound
/// to the server's certificate), auth_query, and SWITCHOVER (its catch-up
/// checks and promotion over TLS), then writes on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_auth_query_and_switchover() {
    let pki = Pki::new("switch-ca");
    let c = tls_cluster(&pki, 1);
    c.psql("postgres", &format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE tls_looked_up LOGIN PASSWORD '{PASSWORD}'"))
        .unwrap();
    c.psql(
        DB,
        "CREATE TABLE tls_sw (v int); GRANT ALL ON tls_sw TO PUBLIC",
    )
    .unwrap();
    let stored = c
        .psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{SCRAM_USER}'"),
        )
        .unwrap();
    let (ca, primary, replica) = (
        pki.ca.display().to_string(),
        c.primary.addr(),
        c.replicas[0].addr(),
    );
    let proxy = proxy(|cfg| {
        cfg.proxy.server_tls_sslmode = SslMode::VerifyFull;
        cfg.proxy.server_tls_ca_file = Some(ca);
        cfg.proxy.auth_type = pgwarden::config::AuthType::ScramSha256;
        cfg.proxy.auth_user = Some("postgres_lookup".into());
        cfg.users.clear();
        // Only the stored secret: no cleartext password for the server.
        cfg.users.insert(
            SCRAM_USER.into(),
            pgwarden::config::UserSettings {
                password: Some(stored.into()),
                ..Default::default()
            },
        );
        cfg.users.insert(
            "postgres_lookup".into(),
            pgwarden::config::UserSettings {
                password: Some(PASSWORD.into()),
                ..Default::default()
            },
        );
        let mut db = DatabaseSettings {
            primary,
            replicas: vec![replica.clone().into()],
            ..Default::default()
        };
        db.routing.monitor_user = Some(SCRAM_USER.into());
        db.routing.monitor_password = Some(PASSWORD.into());
        db.routing.switchover_promote = true;
        cfg.databases.insert(DB.into(), db);
        cfg.proxy.admin_users = pgwarden::config::NameList(vec![SCRAM_USER.into()]);
    })
    .await;
    c.psql("postgres", &format!("SET password_encryption = 'scram-sha-256'; CREATE ROLE postgres_lookup LOGIN SUPERUSER PASSWORD '{PASSWORD}'"))
        .unwrap();
    assert!(replicas_ready(&proxy).await);
    let app = connect(&proxy, SCRAM_USER).await.unwrap();
    app.batch_execute("INSERT INTO tls_sw VALUES (1)")
        .await
        .unwrap();
    let looked_up = connect_url(&url(&proxy, "tls_looked_up", PASSWORD, DB))
        .await
        .unwrap();
    assert_eq!(current_user(&looked_up).await, "tls_looked_up");

    let admin = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgwarden"))
        .await
        .unwrap();
    admin
        .simple_query(&format!("SWITCHOVER {DB} TO {replica}"))
        .await
        .expect("switchover over TLS");
    app.batch_execute("INSERT INTO tls_sw VALUES (2)")
        .await
        .unwrap();
    let port = app
        .query_one("WITH w AS (INSERT INTO tls_sw VALUES (3) RETURNING 1) SELECT inet_server_port() FROM w", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(
        port as u16, c.replicas[0].port,
        "writes go to the promoted node"
    );
}

/// pgwarden shows servers a client certificate (`server_tls_cert_file`):
/// a `cert` line in the server's pg_hba.conf lets it in with no password;
/// without the certificate the server's own 28000 reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_to_the_server() {
    let pki = Pki::new("to-server-ca");
    let c = tls_cluster(&pki, 0);
    let (crt, key) = pki.client("pgwarden-to-pg", harness::tls::CERT_USER);
    let edit = |with_cert: bool| {
        let (ca, primary) = (pki.ca.display().to_string(), c.primary.addr());
        let (crt, key) = (crt.display().to_string(), key.display().to_string());
        move |cfg: &mut Config| {
            cfg.proxy.auth_type = pgwarden::config::AuthType::Trust;
            cfg.proxy.server_tls_sslmode = SslMode::VerifyFull;
            cfg.proxy.server_tls_ca_file = Some(ca);
            if with_cert {
                cfg.proxy.server_tls_cert_file = Some(crt);
                cfg.proxy.server_tls_key_file = Some(key);
            }
            let db = DatabaseSettings {
                primary,
                ..Default::default()
            };
            cfg.databases.insert(DB.into(), db);
        }
    };
    let proxy = proxy(edit(true)).await;
    let client = connect_url(&url(&proxy, harness::tls::CERT_USER, "", DB))
        .await
        .unwrap();
    let row = client
        .query_one("SELECT current_user::text, ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), harness::tls::CERT_USER);
    assert!(row.get::<_, bool>(1));
    assert!(row
        .get::<_, Option<String>>(2)
        .unwrap_or_default()
        .contains(harness::tls::CERT_USER));

    let without = proxy_from(edit(false)).await;
    let err = connect_err(&url(&without, harness::tls::CERT_USER, "", DB)).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err:?}");
}

/// `client_tls_sslmode = verify-ca`: a certificate from the CA is required
/// at the handshake; TLS without one, or cleartext, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_requires_a_client_certificate() {
    let pki = Pki::new("verify-ca-ca");
    let (crt, key) = pki.client("verify-ca-client", SCRAM_USER);
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::VerifyCa);
        c.proxy.client_tls_ca_file = Some(pki.ca.display().to_string());
    })
    .await;
    let port = proxy.addr.port();
    let ca = pki.ca.display().to_string();
    let run = |extra: String| {
        let info = conninfo(port, DB, &extra);
        tokio::task::spawn_blocking(move || psql(&info, PASSWORD, "SELECT 5"))
    };
    let with = format!(
        "sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
        crt.display(),
        key.display()
    );
    assert_eq!(run(with).await.unwrap().as_deref(), Ok("5"));
    let without = run(format!("sslmode=verify-full sslrootcert={ca}"))
        .await
        .unwrap();
    assert!(without.is_err(), "{without:?}");
    let plain = run("sslmode=disable".into()).await.unwrap();
    assert!(
        plain.as_ref().is_err_and(|e| e.contains("SSL required")),
        "{plain:?}"
    );
}

/// A client that reads its large result late: the end of the result must
/// not stay in rustls's buffer (written to TLS, never flushed to the
/// socket) while pgwarden waits for the client's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_reader_gets_its_whole_result() {
    let pki = Pki::new("slow-reader-ca");
    let proxy = proxy(|c| {
        client_side(c, &pki, SslMode::Require);
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
    })
    .await;
    for round in 0..3 {
        let mut tls = tls_login(&proxy, &pki).await;
        let mut out = bytes::BytesMut::new();
        let sql = format!("SELECT repeat('y', 1000 + {round}) FROM generate_series(1, 6000)");
        pgwarden::wire::frontend::query(&mut out, &sql);
        tls.write_all(&out).await.unwrap();
        tls.flush().await.unwrap();
        // Let the socket buffers fill before reading anything.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut rows = 0;
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let mut header = [0u8; 5];
                tls.read_exact(&mut header).await.unwrap();
                let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                let mut body = vec![0u8; len - 4];
                tls.read_exact(&mut body).await.unwrap();
                match header[0] {
                    b'D' => rows += 1,
                    b'Z' => break,
                    _ => {}
                }
            }
        })
        .await;
        assert!(read.is_ok(), "round {round}: stalled after {rows} rows");
        assert_eq!(rows, 6000);
    }
}

/// SSLRequest, a TLS handshake trusting `pki`'s CA, and a trust login.
async fn tls_login(
    proxy: &pgwarden::app::Proxy,
    pki: &Pki,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = client_config(pki);
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut out = bytes::BytesMut::new();
    pgwarden::wire::frontend::startup_message(&mut out, &[("user", TRUST_USER), ("database", DB)]);
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();
    loop {
        let mut header = [0u8; 5];
        tls.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        tls.read_exact(&mut body).await.unwrap();
        if header[0] == b'Z' {
            return tls;
        }
    }
}
