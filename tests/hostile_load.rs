//! Hostile clients beside real work, bounded: pgbench runs while others
//! hold half-open sockets, guess passwords and send protocol garbage; and a
//! primary restart under write load loses no acknowledged write. (The tps
//! each run keeps is printed for the record; targets live in benchmarks.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// pgbench's reported tps.
fn tps(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `pgbench -S` for `secs` through the proxy; its tps, asserting it
/// failed nothing.
async fn select_bench(port: u16, secs: u32) -> f64 {
    let secs = secs.to_string();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        pgbench(port, &["-S", "-c", "4", "-j", "2", "-T", &secs, "-n"])
    })
    .await
    .unwrap();
    assert!(ok, "pgbench failed: {text}");
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    tps(&text)
}

/// Logs in as the md5 user over a raw socket, up to ReadyForQuery.
async fn md5_login(proxy: &pgwarden::app::Proxy) -> TcpStream {
    use pgwarden::auth::md5;
    let mut sock = send_startup(proxy, &[("user", MD5_USER), ("database", DB)]).await;
    let request = read_messages(&mut sock, |tag, _| tag == b'R').await;
    let body = &request[request.len() - 1].1;
    assert_eq!(body.get(..4), Some(&[0, 0, 0, 5][..]), "an md5 request");
    let salt = [body[4], body[5], body[6], body[7]];
    let answer = md5::response(&md5::secret(PASSWORD, MD5_USER), salt);
    let mut out = bytes::BytesMut::new();
    pgwarden::wire::frontend::password_message(&mut out, answer.as_bytes());
    sock.write_all(&out).await.unwrap();
    read_until_ready(&mut sock).await;
    sock
}

/// A client that sends `bytes` after logging in and reads until closed.
async fn garbage_client(proxy: &pgwarden::app::Proxy, bytes: &'static [u8]) {
    let mut sock = md5_login(proxy).await;
    let _ = sock.write_all(bytes).await;
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_beside_pgbench_fail_nothing() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 4;
        c.proxy.max_client_conn = 400;
        c.proxy.max_login_clients = 50;
        c.proxy.auth_type = pgwarden::config::AuthType::Md5;
    })
    .await;
    let port = proxy.addr.port();
    let (ok, text) = tokio::task::spawn_blocking(move || pgbench(port, &["-i", "-s", "1", "-q"]))
        .await
        .unwrap();
    assert!(ok, "pgbench -i failed: {text}");
    let baseline = select_bench(port, 4).await;

    // 200 half-open sockets held through the run.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let with_silent = select_bench(port, 4).await;
    drop(silent);

    // 2,000 wrong passwords, 10 at a time, during the run.
    let guesses = {
        let url = url(&proxy, SCRAM_USER, "wrong", DB);
        tokio::spawn(async move {
            let started = Instant::now();
            for _ in 0..200 {
                let tries: Vec<_> = (0..10)
                    .map(|_| {
                        let url = url.clone();
                        tokio::spawn(async move { connect_url(&url).await.is_err() })
                    })
                    .collect();
                for t in tries {
                    assert!(t.await.unwrap(), "a wrong password was accepted");
                }
            }
            started.elapsed()
        })
    };
    let with_guesses = select_bench(port, 4).await;
    let guessing = guesses.await.unwrap();

    // Protocol garbage from 100 clients during the run.
    let proxy = Arc::new(proxy);
    let garbage = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for i in 0..100usize {
                let bytes: &'static [u8] = match i % 3 {
                    0 => b"z\0\0\0\x04",
                    1 => b"Q\0\0\0\x02",
                    _ => b"Q\0\0\0\x0dSELECT 1\0\0\0\0\x08\0\x03\0\0",
                };
                garbage_client(&proxy, bytes).await;
            }
        })
    };
    let with_garbage = select_bench(port, 4).await;
    garbage.await.unwrap();
    eprintln!(
        "pgbench -S tps: baseline {baseline:.0}, with 200 half-open sockets {with_silent:.0} \
         ({:.2}x), with 2,000 wrong passwords {with_guesses:.0} ({:.2}x, guessing took \
         {guessing:?}), with 100 garbage clients {with_garbage:.0} ({:.2}x)",
        with_silent / baseline,
        with_guesses / baseline,
        with_garbage / baseline,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restart_under_write_load_loses_no_acknowledged_write() {
    let c = fresh_cluster(0);
    let proxy = pgwarden::app::Proxy::start(config_for(&c, |cfg| {
        cfg.proxy.default_pool_size = 4;
    }))
    .await
    .unwrap();
    let url = url(&proxy, "postgres", &c.superuser_password, DB);
    let setup = connect_url(&url).await.unwrap();
    setup
        .batch_execute("CREATE TABLE acked (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut next = w * 1_000_000;
                let mut client = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if client.is_none() {
                        client = connect_url(&url).await.ok();
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    let Some(cl) = client.as_ref() else { continue };
                    next += 1;
                    match cl.execute("INSERT INTO acked VALUES ($1)", &[&next]).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(next);
                        }
                        Err(_) => client = None,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acked.lock().unwrap().len();
    c.kill_node(&c.primary).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.restart_node(&c.primary).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before, "writes resumed after the restart");
    let direct = direct_to(&c, c.primary.port, "postgres").await;
    let stored: HashSet<i64> = direct
        .query("SELECT id FROM acked", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
    eprintln!(
        "{} writes acknowledged ({} before the kill), all {} in the table",
        acked.len(),
        before,
        stored.len()
    );
    c.stop();
}
