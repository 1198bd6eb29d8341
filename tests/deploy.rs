//! What operators deploy with, on the real binary: `run --database-url`
//! (the sidecar with no file) routing reads to a `--replica-url`, systemd's
//! `Type=notify` messages around start, reload and stop, `log_format =
//! "json"`, and `--version` naming the commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_pgwarden");

/// The next datagram on the notify socket, within 20 s.
fn next_message(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify message within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for a clean exit and returns what the child wrote to stderr.
fn exit_and_stderr(child: &mut Child) -> String {
    let status = wait_exit(child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "pgwarden did not exit cleanly within 30 s: {status:?}"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_sidecar_with_a_replica_and_systemd_notify() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    let port = pgwarden::localpg::free_port_range(2).unwrap();
    let primary = format!(
        "postgres://{SCRAM_USER}:{PASSWORD}@{}/{DB}",
        c.primary.addr()
    );
    let replica = format!(
        "postgresql://{SCRAM_USER}:{PASSWORD}@{}/{DB}?sslmode=prefer",
        c.replicas[0].addr()
    );
    let mut child = Command::new(BIN)
        .args(["run", "--database-url", &primary, "--replica-url", &replica])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", port + 1)])
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("PGWARDEN_CONFIG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // READY=1 comes once clients can connect: connect at once, no retry.
    let ready = next_message(&notify);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains(&format!("STATUS=listening on 127.0.0.1:{port}")));
    let url = format!("postgres://{SCRAM_USER}:{PASSWORD}@127.0.0.1:{port}/{DB}");
    let client = connect_url(&url).await.expect("READY=1 means listening");
    let wrong = connect_err(&format!(
        "postgres://{SCRAM_USER}:wrong@127.0.0.1:{port}/{DB}"
    ))
    .await;
    assert_eq!(sqlstate(&wrong).as_deref(), Some("28P01"));

    // Reads reach the replica once the monitor has seen it; writes stay
    // on the primary.
    let on_replica = eventually(Duration::from_secs(20), || async {
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        row.get::<_, bool>(0)
    })
    .await;
    assert!(on_replica, "a read through --replica-url");
    let row = client
        .query_one(
            "WITH w AS (SELECT txid_current()) SELECT pg_is_in_recovery() FROM w",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "a write stays on the primary");
    let health = reqwest_like_get(port + 1, "/ready").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // `pgwarden probe`, the image's HEALTHCHECK: 0 on a 200 only.
    let probe = |path: &str| {
        Command::new(BIN)
            .args(["probe", &format!("http://127.0.0.1:{}{path}", port + 1)])
            .output()
            .unwrap()
    };
    assert!(probe("/health").status.success());
    assert!(probe("/ready").status.success());
    let missing = probe("/no-such-page");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    // SIGHUP with no file: RELOADING=1, then READY=1 again.
    signal(&child, libc::SIGHUP);
    assert!(next_message(&notify).starts_with("RELOADING=1\n"));
    assert!(next_message(&notify).starts_with("READY=1\n"));
    client.simple_query("SELECT 1").await.unwrap();

    drop(client);
    signal(&child, libc::SIGTERM);
    assert!(next_message(&notify).starts_with("STOPPING=1\n"));
    let stderr = exit_and_stderr(&mut child);
    assert!(!stderr.contains(PASSWORD), "a password reached the log");
}

/// A bare HTTP GET (the console's HTTP side speaks HTTP/1.1).
async fn reqwest_like_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn database_url_mistakes_are_named_without_the_password() {
    let out = Command::new(BIN)
        .args(["run", "--database-url", "postgres://:hunter2@h/d"])
        .env_remove("PGWARDEN_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--database-url") && err.contains("no user"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let out = Command::new(BIN)
        .args([
            "run",
            "--config",
            "x.toml",
            "--database-url",
            "postgres://a@h/d",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a file and a URL are exclusive");
    let out = Command::new(BIN)
        .args(["run", "--replica-url", "postgres://a@h/d"])
        .env_remove("PGWARDEN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success(), "--replica-url needs --database-url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = pgwarden::localpg::free_port_range(1).unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nlog_format = \"json\"\n\
             [databases.{DB}]\nprimary = \"{}\"\n\
             [users.{MD5_USER}]\npassword = \"{PASSWORD}\"\n",
            cluster().primary.addr()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("host=127.0.0.1 port={port} user={MD5_USER} password={PASSWORD} dbname={DB}");
    let up = eventually(Duration::from_secs(10), || async {
        connect_url(&url).await.is_ok()
    })
    .await;
    assert!(up, "pgwarden did not start");
    signal(&child, libc::SIGTERM);
    let stderr = exit_and_stderr(&mut child);
    // Lines after the config is read are JSON objects, one per line.
    let json: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let logged_in = json
        .iter()
        .find(|v| v["message"] == "client logged in")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(logged_in["level"], "INFO");
    assert_eq!(logged_in["user"], MD5_USER);
    assert!(logged_in["timestamp"].is_string());
    assert!(
        json.iter().any(|v| v["message"] == "shutting down"),
        "{stderr}"
    );
    let text_lines = stderr
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .count();
    assert!(text_lines <= 1, "only the line before the config: {stderr}");
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        text.starts_with(&format!("pgwarden {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(text.contains(&head), "{text} vs HEAD {head}");
    }
}
