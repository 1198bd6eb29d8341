//! Cancel requests reach only the query of the client that sent them:
//! racing cancels on a server that passes between clients, a cancel for a
//! client still waiting for a server, and one while a server is being
//! handed to it (PgBouncer's `test_cancel_race` and `test_cancel_wait`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use tokio_postgres::{CancelToken, Client, NoTls};

/// A proxy whose pool has one server, shared by every client.
async fn one_server() -> pgwarden::app::Proxy {
    proxy(|c| c.proxy.default_pool_size = 1).await
}

fn cancel_soon(token: CancelToken, after: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = token.cancel_query(NoTls).await;
    })
}

fn is_cancel(e: &tokio_postgres::Error) -> bool {
    sqlstate(e).as_deref() == Some("57014")
}

/// Runs short queries that must never be cancelled; returns how many were.
async fn bystander(client: Client, rounds: usize) -> usize {
    let mut hit = 0;
    for _ in 0..rounds {
        match client.simple_query("SELECT pg_sleep(0.01)").await {
            Ok(_) => {}
            Err(e) if is_cancel(&e) => hit += 1,
            Err(e) => panic!("bystander query failed: {e}"),
        }
    }
    hit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cancels_never_hit_another_client() {
    let proxy = one_server().await;
    let canceller = connect(&proxy, SCRAM_USER).await.unwrap();
    let others: Vec<Client> = {
        let mut v = vec![];
        for _ in 0..3 {
            v.push(connect(&proxy, SCRAM_USER).await.unwrap());
        }
        v
    };
    let bystanders: Vec<_> = others
        .into_iter()
        .map(|c| tokio::spawn(bystander(c, 60)))
        .collect();
    // 100 cancels in bursts of five, each racing its own short query: many
    // land after the query ended, while the server is already lent out
    // again, or go out while the client still waits in line.
    let mut own_cancelled = 0;
    for burst in 0..20u64 {
        let token = canceller.cancel_token();
        let cancels: Vec<_> = (0..5)
            .map(|k| cancel_soon(token.clone(), Duration::from_millis((burst + k * 3) % 12)))
            .collect();
        match canceller.simple_query("SELECT pg_sleep(0.005)").await {
            Ok(_) => {}
            Err(e) if is_cancel(&e) => own_cancelled += 1,
            Err(e) => panic!("{e}"),
        }
        for c in cancels {
            c.await.unwrap();
        }
    }
    let mut hit = 0;
    for b in bystanders {
        hit += b.await.unwrap();
    }
    assert_eq!(hit, 0, "{hit} queries of other clients were cancelled");
    assert!(own_cancelled > 0, "no cancel reached its own query");
    // The shared server still serves.
    canceller.simple_query("SELECT 1").await.unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_waiting_client_takes_it_out_of_line() {
    let proxy = one_server().await;
    let holder = connect(&proxy, SCRAM_USER).await.unwrap();
    let waiter = connect(&proxy, SCRAM_USER).await.unwrap();
    // The only server is held by an open transaction.
    holder.simple_query("BEGIN; SELECT 1").await.unwrap();
    let started = Instant::now();
    let token = waiter.cancel_token();
    let cancel = cancel_soon(token, Duration::from_millis(200));
    let e = tokio::time::timeout(
        Duration::from_secs(5),
        waiter.simple_query("SELECT 'never ran'"),
    )
    .await
    .expect("the cancel was lost: the request still waits")
    .expect_err("the waiting request was cancelled");
    cancel.await.unwrap();
    assert!(is_cancel(&e), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        e.as_db_error().map(|d| d.message()),
        Some("canceling statement due to user request")
    );
    // Nothing of it ran, and both clients go on.
    holder.simple_query("COMMIT").await.unwrap();
    let rows = waiter.simple_query("SELECT 42").await.unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("42"))
    );
    let pools = proxy.shared.pools.all();
    let waiting: u64 = pools
        .iter()
        .map(|p| p.stats.waiting.load(std::sync::atomic::Ordering::Relaxed) as u64)
        .sum();
    assert_eq!(waiting, 0, "a cancelled waiter is still counted as waiting");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// The cancel lands around the moment the only server passes from one
/// client to the waiting one: before (waiting), during the handover, or
/// after (running). Each time the long query ends at once with 57014.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_a_server_is_handed_over_is_never_lost() {
    let proxy = one_server().await;
    let mut holder = connect(&proxy, SCRAM_USER).await.unwrap();
    let waiter = connect(&proxy, SCRAM_USER).await.unwrap();
    for offset_ms in [90u64, 95, 98, 100, 101, 102, 103, 105, 110, 120, 150] {
        let hold = tokio::spawn(async move {
            holder.simple_query("SELECT pg_sleep(0.1)").await.unwrap();
            holder
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cancel = cancel_soon(waiter.cancel_token(), Duration::from_millis(offset_ms));
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            waiter.simple_query("SELECT pg_sleep(5)"),
        )
        .await
        .expect("the query ended");
        cancel.await.unwrap();
        let took = started.elapsed();
        match r {
            Err(e) if is_cancel(&e) => {}
            other => panic!("cancel at {offset_ms} ms was lost: {other:?} after {took:?}"),
        }
        assert!(
            took < Duration::from_secs(2),
            "cancel at {offset_ms} ms took {took:?}"
        );
        holder = hold.await.unwrap();
        // Both go on with the same server.
        waiter.simple_query("SELECT 1").await.unwrap();
        holder.simple_query("SELECT 1").await.unwrap();
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}
