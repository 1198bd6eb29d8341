//! PgBouncer's logging settings on the real binary: `logfile` (reopened on
//! SIGHUP, so rotation works), `syslog` with its ident and facility,
//! `log_connections`, `log_disconnections`, `log_pooler_errors`, and
//! `verbose` changed live from the console.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use harness::*;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn file_shows(path: &std::path::Path, what: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        read(path).contains(what)
    })
    .await
}

/// Every datagram the syslog socket has received so far.
fn datagrams(socket: &UnixDatagram) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logfile_syslog_and_the_log_switches() {
    let dir = tempfile::tempdir().unwrap();
    let port = pgwarden::localpg::free_port_range(1).unwrap();
    let logfile = dir.path().join("pgwarden.log");
    let sock_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    syslog.set_nonblocking(true).unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nauth_type = \"md5\"\n\
             admin_users = \"{MD5_USER}\"\nlogfile = \"{}\"\n\
             syslog = true\nsyslog_socket = \"{}\"\nsyslog_ident = \"pgw-it\"\n\
             syslog_facility = \"local3\"\n\
             [databases.{DB}]\nprimary = \"{}\"\n\
             [users.{MD5_USER}]\npassword = \"{PASSWORD}\"\n",
            logfile.display(),
            sock_path.display(),
            cluster().primary.addr()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["run", "--config"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = |user: &str, password: &str, db: &str| {
        format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db}")
    };
    let up = eventually(Duration::from_secs(10), || async {
        connect_url(&url(MD5_USER, PASSWORD, DB)).await.is_ok()
    })
    .await;
    assert!(up, "pgwarden did not start");

    // A login, a query, a leave; a wrong password.
    let client = connect_url(&url(MD5_USER, PASSWORD, DB)).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    let err = connect_err(&url(MD5_USER, "wrong", DB)).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    assert!(
        file_shows(&logfile, "client logged in").await,
        "{}",
        read(&logfile)
    );
    assert!(file_shows(&logfile, "client closed: client close request").await);
    assert!(file_shows(&logfile, "login refused").await);
    let text = read(&logfile);
    assert!(text.contains(&format!("user={MD5_USER}")), "{text}");
    assert!(
        !text.contains("wrong"),
        "a password reached the log:\n{text}"
    );
    assert!(!text.contains("DEBUG"), "verbose 0 logs no debug lines");

    // syslog: local3 (19) at info (6) is priority 158; warnings are 156.
    let lines = datagrams(&syslog);
    let prefix = format!("<158>pgw-it[{}]: ", child.id());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&prefix) && l.contains("client logged in")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<156>pgw-it[") && l.contains("login refused")),
        "{lines:?}"
    );

    // Live from the console: verbose 1 adds debug lines; log_connections
    // off stops the login lines.
    let admin = connect_url(&url(MD5_USER, PASSWORD, "pgbouncer"))
        .await
        .unwrap();
    admin.simple_query("SET verbose = 1").await.unwrap();
    admin.simple_query("SET log_connections = 0").await.unwrap();
    admin.simple_query("RECONNECT").await.unwrap();
    let logins_before = read(&logfile).matches("client logged in").count();
    let client = connect_url(&url(MD5_USER, PASSWORD, DB)).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(file_shows(&logfile, "DEBUG").await, "{}", read(&logfile));
    assert_eq!(
        read(&logfile).matches("client logged in").count(),
        logins_before,
        "log_connections = 0"
    );

    // Rotation: the file is moved away; SIGHUP reopens the configured path.
    let rotated = dir.path().join("pgwarden.log.1");
    std::fs::rename(&logfile, &rotated).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let reopened = eventually(Duration::from_secs(10), || async { logfile.exists() }).await;
    assert!(reopened, "SIGHUP reopens the log file");
    let again = eventually(Duration::from_secs(10), || async {
        connect_url(&url(MD5_USER, PASSWORD, DB)).await.is_ok() && logfile.exists()
    })
    .await;
    assert!(again);
    // The reload went back to the file's settings: logins are logged again.
    assert!(
        file_shows(&logfile, "client logged in").await,
        "{}",
        read(&logfile)
    );

    drop((admin, client));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
}
