//! Test harness: one real PostgreSQL primary with two streaming replicas
//! per test binary, started on free loopback ports in a temporary folder,
//! and pgwarden instances started in-process on `127.0.0.1:0`.
//!
//! The cluster is stopped and its folder removed by a watcher process once
//! the test binary exits, however it exits (pass, fail, panic or kill).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod tls;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgwarden::app::Proxy;
use pgwarden::config::{self, Config, DatabaseSettings, Loaded, UserSettings};
use pgwarden::localpg::Cluster;

pub const DB: &str = "pgw";
pub const SCRAM_USER: &str = "pgw_scram";
pub const MD5_USER: &str = "pgw_md5";
pub const PLAIN_USER: &str = "pgw_plain";
pub const TRUST_USER: &str = "pgw_trust";
pub const PASSWORD: &str = "s3cret-pw";

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The binary's shared cluster, started on first use. A failed start is
/// remembered, so the other tests fail fast instead of retrying.
pub fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        std::panic::catch_unwind(start_cluster).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match started {
        Ok(c) => c,
        Err(e) => panic!("test cluster failed to start: {e}"),
    }
}

fn start_cluster() -> Cluster {
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let root = tempfile::Builder::new()
            .prefix("pgwarden-test-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let base = pgwarden::localpg::free_port_range(3).expect("free ports");
        let cluster = Cluster::new(&root, base, 2).expect("PostgreSQL binaries");
        cluster
            .stop_when_gone(std::process::id(), true)
            .expect("watcher");
        cluster.start().expect("start cluster");
        let sql = format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE {SCRAM_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}';
             CREATE ROLE {PLAIN_USER} LOGIN PASSWORD '{PASSWORD}';
             CREATE ROLE {TRUST_USER} LOGIN SUPERUSER;
             SET password_encryption = 'md5';
             CREATE ROLE {MD5_USER} LOGIN PASSWORD '{PASSWORD}';"
        );
        cluster.psql("postgres", &sql).expect("setup roles");
        cluster
            .psql(
                "postgres",
                &format!("CREATE DATABASE {DB} OWNER {SCRAM_USER}"),
            )
            .expect("create database");
        cluster
            .psql(DB, "GRANT ALL ON SCHEMA public TO PUBLIC")
            .expect("grant schema");
        cluster
    }
}

/// Runs SQL on the primary directly (not through the proxy).
pub fn psql(sql: &str) -> String {
    cluster().psql(DB, sql).expect("psql")
}

/// A config with database `pgw` on the primary and every test user known
/// by password; `edit` adjusts it per test.
pub fn config(edit: impl FnOnce(&mut Config)) -> Loaded {
    let c = cluster();
    let mut cfg = Config::default();
    cfg.proxy.listen = "127.0.0.1:0".into();
    cfg.proxy.max_client_conn = 5000;
    cfg.proxy.default_pool_size = 10;
    cfg.proxy.auth_type = config::AuthType::Md5;
    // The test cluster asks for a cleartext password for PLAIN_USER.
    cfg.proxy.server_require_auth.0.push("password".into());
    cfg.databases.insert(
        DB.into(),
        DatabaseSettings {
            primary: c.primary.addr(),
            ..Default::default()
        },
    );
    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        cfg.users.insert(
            user.into(),
            UserSettings {
                password: Some(PASSWORD.into()),
                ..Default::default()
            },
        );
    }
    edit(&mut cfg);
    config::from_config(cfg, std::path::Path::new(".")).expect("valid test config")
}

/// Puts the cluster's replicas behind database `pgw` (read/write splitting
/// on), watched by the monitor as the SCRAM superuser.
pub fn with_replicas(cfg: &mut Config) {
    let c = cluster();
    let db = cfg.databases.get_mut(DB).expect("pgw configured");
    db.replicas = c.replicas.iter().map(|r| r.addr().into()).collect();
    db.routing.monitor_user = Some(SCRAM_USER.into());
    db.routing.monitor_password = Some(PASSWORD.into());
}

/// Starts pgwarden in this test's runtime.
pub async fn proxy(edit: impl FnOnce(&mut Config)) -> Proxy {
    let loaded = config(edit);
    Proxy::start(loaded).await.expect("proxy starts")
}

pub fn url(proxy: &Proxy, user: &str, password: &str, db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password='{password}' dbname={db} connect_timeout=10",
        proxy.addr.port()
    )
}

/// Connects through the proxy with tokio-postgres; the connection task is spawned.
pub async fn connect(
    proxy: &Proxy,
    user: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_url(&url(proxy, user, PASSWORD, DB)).await
}

/// `current_user` of a session, through whatever it is connected to.
pub async fn current_user(client: &tokio_postgres::Client) -> String {
    let row = client.query_one("SELECT current_user::text", &[]).await;
    row.expect("SELECT current_user").get(0)
}

pub async fn connect_url(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    // Bounded so that a login the proxy never answers fails its test
    // instead of hanging the whole suite.
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .expect("the login is answered within 30 s")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A direct connection to the primary as the superuser.
pub async fn direct() -> tokio_postgres::Client {
    let c = cluster();
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname={DB}",
        c.primary.port, c.superuser_password
    );
    connect_url(&url).await.expect("direct connection")
}

/// A direct connection to any node (by port) as the superuser.
pub async fn direct_to(c: &Cluster, port: u16, db: &str) -> tokio_postgres::Client {
    let url = format!(
        "host=127.0.0.1 port={port} user=postgres password={} dbname={db} connect_timeout=5",
        c.superuser_password
    );
    connect_url(&url).await.expect("direct connection")
}

/// A cluster of its own (primary + `replicas`), for tests that break it:
/// stopped and removed when the test binary exits.
pub fn fresh_cluster(replicas: usize) -> Cluster {
    let _ = cluster();
    fresh_cluster_with(replicas, "")
}

/// [`fresh_cluster`] with more `postgresql.conf` lines.
pub fn fresh_cluster_with(replicas: usize, conf: &str) -> Cluster {
    let root = tempfile::Builder::new()
        .prefix("pgwarden-failover-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let base = pgwarden::localpg::free_port_range(1 + replicas as u16).expect("free ports");
    let mut c = Cluster::new(&root, base, replicas).expect("PostgreSQL binaries");
    c.extra_conf = conf.to_owned();
    c.stop_when_gone(std::process::id(), true).expect("watcher");
    c.start().expect("start cluster");
    c
}

/// A proxy config for database `pgw` = `postgres` on `c`, as the superuser.
pub fn config_for(c: &Cluster, edit: impl FnOnce(&mut Config)) -> Loaded {
    let mut cfg = Config::default();
    cfg.proxy.listen = "127.0.0.1:0".into();
    cfg.proxy.max_client_conn = 2000;
    cfg.proxy.default_pool_size = 10;
    let mut db = DatabaseSettings {
        dbname: Some("postgres".into()),
        primary: c.primary.addr(),
        replicas: c.replicas.iter().map(|r| r.addr().into()).collect(),
        ..Default::default()
    };
    db.routing.monitor_user = Some("postgres".into());
    db.routing.monitor_password = Some(c.superuser_password.clone().into());
    cfg.databases.insert(DB.into(), db);
    cfg.users.insert(
        "postgres".into(),
        UserSettings {
            password: Some(c.superuser_password.clone().into()),
            ..Default::default()
        },
    );
    edit(&mut cfg);
    config::from_config(cfg, std::path::Path::new(".")).expect("valid test config")
}

/// Waits until the proxy's monitor has every replica of `pgw` in rotation.
pub async fn replicas_ready(proxy: &Proxy) -> bool {
    let topo = proxy.shared.topology(DB).expect("pgw has replicas").clone();
    eventually(Duration::from_secs(20), || {
        let topo = topo.clone();
        async move {
            let snap = topo.snapshot();
            snap.round > 0 && snap.nodes.iter().skip(1).all(|n| n.readable)
        }
    })
    .await
}

/// The SQLSTATE of an error, if the server (or proxy) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        // Each try is bounded too: a check that never answers (a query
        // stuck behind a pause) is a "no", not a test that hangs.
        if tokio::time::timeout(left, f()).await == Ok(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Path of a PostgreSQL client tool (pgbench, psql).
pub fn pg_tool(name: &str) -> std::path::PathBuf {
    cluster().bindir.join(name)
}

/// Connects and returns the error; panics if the login succeeds.
pub async fn connect_err(url: &str) -> tokio_postgres::Error {
    match connect_url(url).await {
        Ok(_) => panic!("login was expected to fail"),
        Err(e) => e,
    }
}

/// Runs a command to its end; (success, stdout and stderr together).
pub fn run_tool(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs pgbench against the proxy as the SCRAM user; (success, output).
pub fn pgbench(proxy_port: u16, args: &[&str]) -> (bool, String) {
    pgbench_with(proxy_port, args, &[])
}

/// [`pgbench`] with libpq environment variables (e.g. `PGSSLMODE`).
pub fn pgbench_with(proxy_port: u16, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    run_tool(
        std::process::Command::new(pg_tool("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &proxy_port.to_string(),
                "-U",
                SCRAM_USER,
            ])
            .args(args)
            .arg(DB)
            .env("PGPASSWORD", PASSWORD)
            .envs(env.iter().copied()),
    )
}

/// The PostgreSQL backend serving this client's current transaction.
pub async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Opens a socket to the proxy and sends a StartupMessage.
pub async fn send_startup(
    proxy: &pgwarden::app::Proxy,
    params: &[(&str, &str)],
) -> tokio::net::TcpStream {
    let mut sock = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut out = bytes::BytesMut::new();
    pgwarden::wire::frontend::startup_message(&mut out, params);
    tokio::io::AsyncWriteExt::write_all(&mut sock, &out)
        .await
        .unwrap();
    sock
}

/// Logs in as the trust user over a raw socket, up to ReadyForQuery.
pub async fn raw_login(proxy: &pgwarden::app::Proxy) -> tokio::net::TcpStream {
    let mut sock = send_startup(proxy, &[("user", TRUST_USER), ("database", DB)]).await;
    read_until_ready(&mut sock).await;
    sock
}

/// Reads backend messages, as (tag, body), up to and including the one
/// for which `last` says so. Nothing after it is read.
pub async fn read_messages(
    sock: &mut tokio::net::TcpStream,
    mut last: impl FnMut(u8, &[u8]) -> bool,
) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(sock, &mut header)
            .await
            .expect("a message, not a closed socket");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        tokio::io::AsyncReadExt::read_exact(sock, &mut body)
            .await
            .expect("the whole message");
        let done = last(header[0], &body);
        out.push((header[0], body));
        if done {
            return out;
        }
    }
}

/// Every message up to ReadyForQuery, as (tag, body).
pub async fn read_until_ready(sock: &mut tokio::net::TcpStream) -> Vec<(u8, Vec<u8>)> {
    read_messages(sock, |tag, _| tag == b'Z').await
}

/// A dependency a test needs is missing: with `CI=true` the test fails
/// (CI must not pass by skipping), elsewhere it says it is skipped.
pub fn missing_dependency(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1" | "yes"));
    assert!(
        !ci,
        "{what} is missing and CI=true (scripts/deps.sh installs it)"
    );
    skipped(&format!("{what} is missing (scripts/deps.sh installs it)"));
}

/// The Python interpreter that has asyncpg and psycopg: the venv
/// `scripts/deps.sh` makes under `target/pyenv`, or the system's.
pub fn python_with_drivers() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let candidates = [venv, "python3".into()];
    candidates.into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import asyncpg, psycopg"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A test's file under `tests/drivers/`.
pub fn driver_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(name)
}

/// Sets a `postgresql.conf` setting on one node and reloads it.
pub async fn set_node_setting(c: &Cluster, port: u16, name: &str, value: &str) {
    let node = direct_to(c, port, "postgres").await;
    node.simple_query(&format!("ALTER SYSTEM SET {name} = '{value}'"))
        .await
        .unwrap();
    node.simple_query("SELECT pg_reload_conf()").await.unwrap();
}

/// GET `path` from the proxy's HTTP side: (status, body).
pub async fn http_get(proxy: &Proxy, path: &str) -> (u16, String) {
    http_get_with(proxy, path, "").await
}

/// [`http_get`] with extra header lines (each ending in CRLF).
pub async fn http_get_with(proxy: &Proxy, path: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.admin_addr.expect("admin_listen set");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs `program [before...] tests/drivers/<script> <url>` and expects it
/// to print OK.
pub async fn run_driver(
    program: &std::ffi::OsStr,
    before: &[&std::ffi::OsStr],
    script: &str,
    url: &str,
    env: &[(&str, std::path::PathBuf)],
) {
    let out = tokio::process::Command::new(program)
        .args(before)
        .arg(driver_script(script))
        .arg(url)
        .envs(env.iter().cloned())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("OK"),
        "{script}: {text}"
    );
}

/// Records a skipped check: on stderr, and in `target/test-skips.txt`,
/// which `scripts/test.sh` sums up in one line at the end (cargo hides a
/// passing test's stderr, so a skip would otherwise look like a pass).
pub fn skipped(why: &str) {
    eprintln!("SKIPPED: {why}");
    let list = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-skips.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
    {
        let _ = std::io::Write::write_all(&mut f, format!("{why}\n").as_bytes());
    }
}

/// Sends `sig` to a child process the test started.
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Waits up to `limit` for a child to exit; `None` if it is still running.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts the pgwarden binary with `run --config CONFIG` and `extra`
/// arguments, its stderr in `DIR/NAME.log`; returns once it has said
/// READY=1 on its own notify socket (kept for what it says next).
pub fn start_binary(
    config: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    extra: &[&std::ffi::OsStr],
) -> (std::process::Child, std::os::unix::net::UnixDatagram) {
    let sock = dir.join(format!("{name}.notify"));
    let notify = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .env("NOTIFY_SOCKET", &sock)
        .env("RUST_LOG", "pgwarden=info")
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert!(buf[..n].starts_with(b"READY=1"), "{:?}", &buf[..n]);
    (child, notify)
}

/// Kills the processes (by id) the test did not see exit, as when an
/// assertion fails.
pub struct Reaper(pub Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: signalling our own children; gone ones are ignored.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Starts pgbench in the background through pgwarden on `port` as the md5
/// user running `script` with `args`; [`bench_output`] collects it.
pub fn spawn_pgbench(port: u16, script: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(pg_tool("pgbench"))
        .args(args)
        .arg("-f")
        .arg(script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            MD5_USER,
            DB,
        ])
        .env("PGPASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a [`spawn_pgbench`] run: whether it succeeded with no
/// aborted client, and what it printed.
pub fn bench_output(bench: std::process::Child) -> (bool, String) {
    let out = bench.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("aborted"), text)
}
