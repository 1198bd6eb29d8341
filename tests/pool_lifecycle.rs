//! The life of server connections: `min_pool_size` warm-up,
//! `server_lifetime` rotation, `server_idle_timeout`, health checks, and the
//! `max_db_connections` / `max_user_connections` caps, all observed on the
//! real server (`pg_stat_activity`) as well as in the pool's counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::*;
use pgwarden::config::duration::Secs;
use pgwarden::config::DatabaseSettings;
use pgwarden::pool::{Pool, PoolKey};

fn backend_alive(pid: i32) -> bool {
    psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
    )) == "1"
}

/// A second client-facing database name for the same real database.
fn alias_of_test_db(c: &mut pgwarden::config::Config, name: &str) {
    c.databases.insert(
        name.into(),
        DatabaseSettings {
            dbname: Some(DB.into()),
            primary: cluster().primary.addr(),
            ..Default::default()
        },
    );
}

fn pool_of(proxy: &pgwarden::app::Proxy, db: &str, user: &str) -> Arc<Pool> {
    let key = PoolKey::new(db, user);
    proxy.shared.pools.get(&key).expect("pool exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_opens_servers_before_they_are_needed() {
    let proxy = proxy(|c| {
        c.proxy.min_pool_size = 3;
        c.proxy.default_pool_size = 5;
    })
    .await;
    let client = connect(&proxy, MD5_USER).await.unwrap();
    let pool = pool_of(&proxy, DB, MD5_USER);
    let warmed = eventually(Duration::from_secs(10), || async {
        let (idle, total, _) = pool.counts();
        idle >= 3 && total == 3
    })
    .await;
    assert!(warmed, "counts: {:?}", pool.counts());
    // The warm servers are real, logged-in backends of this user.
    let pid = backend_pid(&client).await;
    assert!(backend_alive(pid));
    assert_eq!(pool.counts().1, 3, "a query reuses a warm server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_rotates_servers() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.server_lifetime = Secs::from_millis(500);
    })
    .await;
    let client = connect(&proxy, PLAIN_USER).await.unwrap();
    let first = backend_pid(&client).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = backend_pid(&client).await;
    assert_ne!(first, second, "an expired server is not lent again");
    let closed = eventually(Duration::from_secs(5), || async { !backend_alive(first) }).await;
    assert!(closed, "the expired server is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_idle_timeout_closes_unused_servers() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 2;
        c.proxy.server_idle_timeout = Secs::from_millis(500);
        alias_of_test_db(c, "pgw_idle");
    })
    .await;
    let client = connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_idle"))
        .await
        .unwrap();
    let pid = backend_pid(&client).await;
    let pool = pool_of(&proxy, "pgw_idle", MD5_USER);
    let emptied = eventually(Duration::from_secs(10), || async { pool.counts().1 == 0 }).await;
    assert!(emptied, "counts: {:?}", pool.counts());
    assert!(
        !backend_alive(pid),
        "the idle server was closed on PostgreSQL"
    );
    // And the client is still served, on a new server.
    assert_ne!(backend_pid(&client).await, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_idle_server_is_replaced_without_an_error() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.server_check_query = "SELECT 1".into();
        c.proxy.server_check_delay = Secs::ZERO;
    })
    .await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let pid = backend_pid(&client).await;
    psql(&format!("SELECT pg_terminate_backend({pid})"));
    let gone = eventually(Duration::from_secs(5), || async { !backend_alive(pid) }).await;
    assert!(gone);
    // The health check (or the closed-socket probe) catches the dead server
    // before it is lent; the client never sees it.
    let next = backend_pid(&client).await;
    assert_ne!(next, pid);
}

/// While `holder` has a transaction open on the only server the cap allows,
/// `other` waits; once it commits, the waiting pool has the holder's now
/// idle server closed, opens its own, and `other` is served.
async fn other_waits_for_holders_transaction(
    holder: &tokio_postgres::Client,
    other: Arc<tokio_postgres::Client>,
) {
    holder.batch_execute("BEGIN").await.unwrap();
    let waiting = tokio::spawn(finishes_within(other, Duration::from_secs(15)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !waiting.is_finished(),
        "a second server opened past the cap"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    assert!(
        waiting.await.unwrap(),
        "the waiter is served once the slot frees"
    );
}

/// Runs `SELECT 1` in the background and reports whether it finished within `wait`.
async fn finishes_within(client: Arc<tokio_postgres::Client>, wait: Duration) -> bool {
    let task = tokio::spawn(async move { client.simple_query("SELECT 1").await.is_ok() });
    matches!(tokio::time::timeout(wait, task).await, Ok(Ok(true)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_caps_servers_across_users() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 5;
        c.proxy.max_db_connections = 1;
        c.proxy.query_wait_timeout = Secs::from_secs(20);
    })
    .await;
    let holder = connect(&proxy, MD5_USER).await.unwrap();
    // Another user's pool for the same database shares the cap: its login
    // needs a server too, and gets one by closing the first pool's idle one.
    let other = Arc::new(connect(&proxy, PLAIN_USER).await.unwrap());
    other_waits_for_holders_transaction(&holder, other).await;
    let open: usize = [MD5_USER, PLAIN_USER]
        .iter()
        .map(|u| pool_of(&proxy, DB, u).counts().1)
        .sum();
    assert_eq!(open, 1, "one server for the database across both pools");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_caps_servers_across_databases() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 5;
        c.proxy.max_user_connections = 1;
        c.proxy.query_wait_timeout = Secs::from_secs(20);
        alias_of_test_db(c, "pgw_other");
    })
    .await;
    let holder = connect(&proxy, SCRAM_USER).await.unwrap();
    let other = Arc::new(
        connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgw_other"))
            .await
            .unwrap(),
    );
    other_waits_for_holders_transaction(&holder, other).await;
}
