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
        err.contains("bad.toml: line 2:") && err.contains("sometimes"),
        "{err}"
    );

    assert!(!check(std::path::Path::new("/no/such/file.toml")).0);
}

#[test]
fn quickstart_serves_and_stops_everything_on_ctrl_c() {
    let state = tempfile::Builder::new()
        .prefix("pgwarden-qs-")
        .tempdir()
        .unwrap()
        .keep();
    let base = pgwarden::localpg::free_port_range(4).unwrap();
    let mut child = Command::new(BIN)
        .arg("quickstart")
        .arg("--state-dir")
        .arg(&state)
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
    // Whatever happens below, stop the cluster once this test process exits.
    let cluster = pgwarden::localpg::Cluster::new(&state, base, 2).unwrap();
    cluster.stop_when_gone(std::process::id(), true).unwrap();

    let stdout = child.stdout.take().unwrap();
    let mut url = None;
    let started = Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("DATABASE_URL=") {
            url = Some(u.to_owned());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    let url = url.expect("quickstart printed DATABASE_URL");
    // Keep reading, as a terminal would, until the child exits.
    std::thread::spawn(move || lines.for_each(drop));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // Reads go to the replicas once they are in rotation; this one
        // must ask the primary, hence the hint.
        let row = client
            .query_one(
                "/* pgwarden:route=primary */ SELECT count(*) FROM pg_stat_replication",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 2, "two streaming replicas");
        // And plain reads reach a replica within seconds.
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
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success());
    let stopped = !state.join("primary/postmaster.pid").exists()
        && !state.join("replica1/postmaster.pid").exists()
        && !state.join("replica2/postmaster.pid").exists();
    assert!(stopped, "PostgreSQL left running");
}
