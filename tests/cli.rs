//! The `pgwarden` binary: `check` names file, key and problem; `quickstart`
//! brings up a primary, replicas and the proxy, and stops them on Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pgwarden");

/// Runs `pgwarden check --config PATH`: (success, stderr).
fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml.example");
    let out = Command::new(BIN)
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Listen addresses as PgBouncer users write them (`*`, `listen_addr` +
/// `listen_port`), a host that does not resolve caught by `check`, and a
/// port in use named by `run`.
#[test]
fn listen_addresses_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listen.toml");
    let write = |proxy: &str| {
        let text = format!("[proxy]\n{proxy}\n[databases.app]\nprimary = \"127.0.0.1:5432\"\n");
        std::fs::write(&path, text).unwrap();
        check(&path)
    };
    assert!(write("listen = \"*:6432\"").0);
    assert!(write("listen_addr = \"*\"\nlisten_port = 6500").0);
    let (ok, err) = write("listen = \"no-such-host.invalid:6432\"");
    assert!(
        !ok && err.contains("proxy.listen") && err.contains("cannot resolve"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    assert!(
        write(&format!(
            "listen_addr = \"127.0.0.1\"\nlisten_port = {port}"
        ))
        .0
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{err}"
    );
}

/// TLS files: a missing certificate, a key file with no key in it, a key
/// that is not the certificate's, a bad protocol name; each named with its
/// key and path (relative paths are read from the config's folder).
#[test]
fn check_explains_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    make("a");
    make("b");
    let path = dir.path().join("tls.toml");
    let write = |tls: &str| {
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:6432\"\n{tls}\n[databases.app]\nprimary = \"127.0.0.1:5432\"\n"
        );
        std::fs::write(&path, text).unwrap();
        check(&path)
    };
    let (ok, _) = write("client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"a.crt\"\nclient_tls_key_file = \"a.key\"");
    assert!(ok, "relative files next to the config");
    let (ok, err) = write("client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"missing.crt\"\nclient_tls_key_file = \"a.key\"");
    assert!(
        !ok && err.contains("proxy.client_tls_cert_file: cannot read")
            && err.contains("missing.crt"),
        "{err}"
    );
    let (ok, err) = write("client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"a.crt\"\nclient_tls_key_file = \"a.crt\"");
    assert!(
        !ok && err.contains("proxy.client_tls_key_file:") && err.contains("no private key"),
        "{err}"
    );
    let (ok, err) = write("client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"a.crt\"\nclient_tls_key_file = \"b.key\"");
    assert!(
        !ok && err.contains("proxy.client_tls_key_file:") && err.contains("match"),
        "{err}"
    );
    let (ok, err) = write("client_tls_sslmode = \"require\"");
    assert!(
        !ok && err.contains("needs client_tls_key_file and client_tls_cert_file"),
        "{err}"
    );
    let (ok, err) = write("server_tls_protocols = \"tlsv1.1\"");
    assert!(
        !ok && err.contains("proxy.server_tls_protocols:") && err.contains("rustls"),
        "{err}"
    );
    let (ok, err) =
        write("server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"none.pem\"");
    assert!(
        !ok && err.contains("proxy.server_tls_ca_file: cannot read"),
        "{err}"
    );
}

#[test]
fn check_names_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[proxy]\nlisten = \"127.0.0.1:6432\"\nmin_pool_size = 50\n[databases.app]\nprimary = \"localhost\"\n",
    )
    .unwrap();
    let (ok, err) = check(&path);
    assert!(!ok);
    assert!(err.contains("bad.toml: proxy.min_pool_size:"), "{err}");
    assert!(
        err.contains("bad.toml: databases.app.primary: \"localhost\" is not \"host:port\""),
        "{err}"
    );

    std::fs::write(&path, "[proxy]\npool_mode = \"sometimes\"\n").unwrap();
    let (ok, err) = check(&path);
    assert!(!ok);
    assert!(
        err.contains("bad.toml: proxy.pool_mode: \"sometimes\" is not one of: session, transaction, statement (line 2)"),
        "{err}"
    );
    // Type errors name the key, in plain words; unknown keys get the closest.
    std::fs::write(
        &path,
        "[databases.app]\nprimary = \"127.0.0.1:5432\"\npool_size = \"twenty\"\n",
    )
    .unwrap();
    let (_, err) = check(&path);
    assert!(
        err.contains("bad.toml: databases.app.pool_size: expected a whole number, got \"twenty\""),
        "{err}"
    );
    std::fs::write(&path, "[proxy]\ndefualt_pool_size = 5\n").unwrap();
    let (_, err) = check(&path);
    assert!(err.contains("did you mean \"default_pool_size\"?"), "{err}");
    let missing = Command::new(BIN)
        .args(["check", "--config", "/no/such/file.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no such file: /no/such/file.toml"), "{err}");
    assert!(!check(std::path::Path::new("/no/such/file.toml")).0);
}

/// Starts the quickstart and reads its banner (up to "Press Ctrl-C");
/// stdout is drained afterwards, as a terminal would.
fn start_quickstart(state: &std::path::Path, base: u16) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("quickstart")
        .arg("--state-dir")
        .arg(state)
        .args([
            "--pg-port",
            &base.to_string(),
            "--listen",
            &format!("127.0.0.1:{}", base + 3),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    std::thread::spawn(move || lines.for_each(drop));
    (child, banner)
}

fn banner_value<'a>(banner: &'a [String], prefix: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {banner:#?}"))
        .trim()
}

fn stop(child: &mut std::process::Child, signal: i32) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap()
}

/// The quickstart as a newcomer meets it: app, console and metrics lines
/// that work as printed; an edited proxy.toml kept across restarts; and a
/// restart after `kill -9` (its PostgreSQL servers left running) that
/// reuses them instead of failing.
#[test]
fn quickstart_shows_everything_and_survives_restarts() {
    let state = tempfile::Builder::new()
        .prefix("pgwarden-qs-")
        .tempdir()
        .unwrap()
        .keep();
    let base = pgwarden::localpg::free_port_range(5).unwrap();
    let cluster = pgwarden::localpg::Cluster::new(&state, base, 2).unwrap();
    cluster.stop_when_gone(std::process::id(), true).unwrap();

    let (mut child, banner) = start_quickstart(&state, base);
    assert!(
        banner.iter().any(|l| l.contains("fsync=off")),
        "{banner:#?}"
    );
    assert!(
        banner.iter().any(|l| l.contains("primary and 2 replicas")),
        "{banner:#?}"
    );
    let url = banner_value(&banner, "DATABASE_URL=").to_owned();
    let console = banner_value(&banner, "console:")
        .trim_start_matches("psql \"")
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let metrics = banner_value(&banner, "metrics:")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "/* pgwarden:route=primary */ SELECT count(*) FROM pg_stat_replication",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 2, "two streaming replicas");
        let mut on_replica = false;
        for _ in 0..100 {
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap();
            if row.get::<_, bool>(0) {
                on_replica = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(on_replica, "no read reached a replica within 10 s");
        // The console line, as printed.
        let (admin, conn) = tokio_postgres::connect(&console, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        admin.simple_query("SHOW POOLS").await.unwrap();
        // The metrics URL, as printed.
        let addr = metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(
            text.starts_with("HTTP/1.") && text.contains(" 200") && text.contains("pgwarden_"),
            "{text}"
        );
    });
    assert!(stop(&mut child, libc::SIGINT).success());

    // An edit survives the next start.
    let config = state.join("proxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("default_pool_size = 20", "default_pool_size = 7"),
    )
    .unwrap();
    let (mut child, banner) = start_quickstart(&state, base);
    assert!(
        banner_value(&banner, "config:").contains("kept"),
        "{banner:#?}"
    );
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("default_pool_size = 7"));

    // kill -9: PostgreSQL stays up; the next start reuses it.
    stop(&mut child, libc::SIGKILL);
    assert!(
        state.join("primary/postmaster.pid").exists(),
        "servers left running"
    );
    let (mut child, banner) = start_quickstart(&state, base);
    let url = banner_value(&banner, "DATABASE_URL=").to_owned();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.simple_query("SELECT 1").await.unwrap();
    });
    assert!(stop(&mut child, libc::SIGINT).success());
    let stopped = !state.join("primary/postmaster.pid").exists()
        && !state.join("replica1/postmaster.pid").exists()
        && !state.join("replica2/postmaster.pid").exists();
    assert!(stopped, "PostgreSQL left running");
}

/// `pidfile`: written with the process's id while it runs, refused to a
/// second process of the same config, removed at a clean exit.
#[test]
fn pidfile_names_the_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    let pidfile = dir.path().join("pgwarden.pid");
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\npidfile = \"{}\"\n[databases.app]\nprimary = \"127.0.0.1:5432\"\n",
        pidfile.display()
    );
    std::fs::write(&path, text).unwrap();
    let mut first = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let written = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::read_to_string(&pidfile).ok()
    });
    assert_eq!(
        written.as_deref().map(str::trim),
        Some(first.id().to_string().as_str())
    );
    let second = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("pidfile") && err.contains("is running"),
        "{err}"
    );
    assert!(stop(&mut first, libc::SIGTERM).success());
    assert!(!pidfile.exists(), "removed at exit");
}

/// `import-pgbouncer` on PgBouncer's own test configuration (tests/data/
/// pgbouncer, ISC-licensed, see COPYRIGHT there): every `[pgbouncer]`
/// setting, database parameter and user parameter comes over with its
/// value, the result passes `pgwarden check`, and only what pgwarden
/// cannot express (host lists, `load_balance_hosts`) is left as a
/// `# not supported` comment, each also warned about on stderr.
#[test]
fn import_pgbouncer_keeps_every_setting_of_pgbouncers_test_ini() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pgbouncer");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{data}/userlist.txt"),
        dir.path().join("userlist.txt"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["import-pgbouncer", &format!("{data}/test.ini")])
        .args(["--userlist", &format!("{data}/userlist.txt")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let toml_text = String::from_utf8(out.stdout).unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, &toml_text).unwrap();
    let (ok, checked) = check(&path);
    assert!(ok, "{checked}\n{toml_text}");

    let left_out: Vec<&str> = toml_text
        .lines()
        .filter(|l| l.starts_with("# not supported"))
        .collect();
    assert!(
        left_out
            .iter()
            .all(|l| l.contains(": host = ") || l.contains(": load_balance_hosts = ")),
        "{left_out:#?}"
    );
    assert_eq!(warnings.lines().count(), left_out.len(), "{warnings}");

    let config: pgwarden::config::Config = toml::from_str(&toml_text).unwrap();
    let p = &config.proxy;
    assert_eq!((p.max_client_conn, p.default_pool_size), (10, 5));
    assert_eq!(p.pool_mode.as_str(), "statement");
    assert!(!p.tcp_keepalive);
    assert_eq!(p.tcp_socket_buffer, 4096);
    assert_eq!(p.listen_port, Some(6667));
    let db = |n: &str| config.databases.get(n).unwrap_or_else(|| panic!("{n}"));
    assert_eq!(
        db("p8").connect_query.as_deref(),
        Some("set enable_seqscan=off; set enable_nestloop=off")
    );
    assert_eq!(db("p0a").reserve_pool_size, Some(2), "reserve_pool");
    assert_eq!(db("p0").reserve_pool_size, Some(2));
    assert_eq!(db("p0y").max_db_connections, Some(2));
    assert_eq!(db("p9").server_lifetime.map(|s| s.0.as_secs()), Some(2));
    assert_eq!(
        db("varcache_change").client_encoding.as_deref(),
        Some("SQL_ASCII")
    );
    assert_eq!(db("pauthz").auth_dbname.as_deref(), Some("authdb"));
    assert_eq!(db("conn_limit_db").max_db_client_connections, Some(2));
    assert_eq!(
        db("p4").password.as_ref().map(|p| p.0.as_str()),
        Some("foo")
    );
    assert_eq!(db("hostlist1").primary, "127.0.0.1:6666");
    let user = |n: &str| config.users.get(n).unwrap_or_else(|| panic!("{n}"));
    assert_eq!(user("respoolsize1").reserve_pool_size, Some(2));
    assert_eq!(user("maxedout2").max_user_client_connections, Some(2));
    assert_eq!(user("maxedout").max_user_connections, Some(3));
    assert_eq!(
        user("puser1").password.as_ref().map(|p| p.0.as_str()),
        Some("foo"),
        "the userlist's passwords"
    );

    // PgBouncer's shipped example: every setting it sets is taken.
    let out = Command::new(BIN)
        .args(["import-pgbouncer", &format!("{data}/etc-pgbouncer.ini")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("not supported"), "{text}");
    let config: pgwarden::config::Config = toml::from_str(&text).unwrap();
    assert_eq!(config.proxy.listen_port, Some(6432));
    assert_eq!(config.proxy.logfile, "/var/log/pgbouncer/pgbouncer.log");
    assert!(
        config.databases.is_empty(),
        "its databases are all comments"
    );
    // It passes `check` where its auth_file exists (a PgBouncer host has
    // /etc/pgbouncer/userlist.txt; here the test's copy stands in), with
    // a note that only the console answers until a database is added.
    let text = text.replace(
        "/etc/pgbouncer/userlist.txt",
        &format!("{}/userlist.txt", dir.path().display()),
    );
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{text}");
    assert!(stderr.contains("no database is configured"), "{stderr}");
}

/// `${VAR}` and `${VAR:-default}` in string values come from the
/// environment, and `PGWARDEN_CONFIG` names the file when `--config` is
/// not given; an unset variable is a problem naming its key.
#[test]
fn config_values_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.toml");
    std::fs::write(
        &path,
        "[proxy]\nlisten = \"127.0.0.1:${PGW_TEST_PORT:-6432}\"\n\
         [databases.app]\nprimary = \"${PGW_TEST_DB_HOST}:5432\"\n\
         [users.app]\npassword = \"${PGW_TEST_SECRET}\"\n",
    )
    .unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("check").env("PGWARDEN_CONFIG", &path);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run(&[
        ("PGW_TEST_DB_HOST", "db.internal"),
        ("PGW_TEST_SECRET", "hunter2"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("env.toml: OK"), "{text}");
    let (ok, text) = run(&[("PGW_TEST_DB_HOST", "db.internal")]);
    assert!(!ok);
    assert!(
        text.contains("users.app.password") && text.contains("PGW_TEST_SECRET"),
        "{text}"
    );
}
