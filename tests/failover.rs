//! Nodes that die, get promoted or both claim to be primary. Each test
//! breaks a cluster of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use pgwarden::app::Proxy;
use pgwarden::config::Consistency;
use pgwarden::localpg::Cluster;

fn url_for(proxy: &Proxy, c: &Cluster) -> String {
    url(proxy, "postgres", &c.superuser_password, DB)
}

async fn start(c: &Cluster, edit: impl FnOnce(&mut pgwarden::config::Config)) -> Proxy {
    let proxy = Proxy::start(config_for(c, edit)).await.unwrap();
    assert!(
        replicas_ready(&proxy).await,
        "replicas never joined rotation"
    );
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_reads_after_one_check() {
    let c = fresh_cluster(2);
    let proxy = start(&c, |cfg| {
        let r = &mut cfg.databases.get_mut(DB).unwrap().routing;
        r.consistency = Consistency::Eventual;
    })
    .await;
    let url = url_for(&proxy, &c);
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let (late_failures, reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (url, stop, killed_at) = (url.clone(), stop.clone(), killed_at.clone());
        let (late_failures, reads) = (late_failures.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = connect_url(&url).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                match client.simple_query("SELECT 1").await {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let late = killed_at
                            .lock()
                            .unwrap()
                            .is_some_and(|t| t.elapsed() > Duration::from_millis(300));
                        if late {
                            late_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        // In-flight reads on the dead node may fail (08006);
                        // the client reconnects, as an application would.
                        let _ = e;
                        client = connect_url(&url).await.unwrap();
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill_node(&c.replicas[1]).unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reads.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let after = reads.load(Ordering::Relaxed);
    let snap = proxy.shared.topology(DB).unwrap().snapshot_full();
    assert!(
        !snap.nodes[2].up,
        "the killed replica is down: {:?}",
        snap.nodes[2]
    );
    assert_eq!(late_failures.load(Ordering::Relaxed), 0);
    assert!(after > before, "reads go on after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica() {
    let c = fresh_cluster(2);
    let proxy = start(&c, |_| {}).await;
    let url = url_for(&proxy, &c);
    let client = connect_url(&url).await.unwrap();
    client
        .simple_query("CREATE TABLE fo (id int)")
        .await
        .unwrap();
    c.kill_node(&c.primary).unwrap();
    let promoted_at = Instant::now();
    let replica = direct_to(&c, c.replicas[0].port, "postgres").await;
    replica.simple_query("SELECT pg_promote()").await.unwrap();
    // The same DSN; a new connection, as after a failover.
    let mut wrote = false;
    while promoted_at.elapsed() < Duration::from_secs(5) {
        if let Ok(client) = connect_url(&url).await {
            if client
                .simple_query("INSERT INTO fo VALUES (1)")
                .await
                .is_ok()
            {
                wrote = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wrote, "no write succeeded within 5 s of the promotion");
    let snap = proxy.shared.topology(DB).unwrap().snapshot_full();
    assert_eq!(snap.writer, pgwarden::topology::Writer::Node(1));
    // The old primary is never written to again: it is fenced.
    let rows = replica
        .query_one("SELECT count(*) FROM fo", &[])
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_primaries_refuse_writes() {
    let c = fresh_cluster(1);
    let proxy = start(&c, |cfg| {
        cfg.databases.get_mut(DB).unwrap().routing.failover_wait_ms = 500;
    })
    .await;
    let client = connect_url(&url_for(&proxy, &c)).await.unwrap();
    client
        .simple_query("CREATE TABLE sb (id int)")
        .await
        .unwrap();
    let replica = direct_to(&c, c.replicas[0].port, "postgres").await;
    replica.simple_query("SELECT pg_promote()").await.unwrap();
    let topo = proxy.shared.topology(DB).unwrap().clone();
    let split = eventually(Duration::from_secs(5), || {
        let topo = topo.clone();
        async move {
            matches!(
                topo.snapshot().writer,
                pgwarden::topology::Writer::SplitBrain(..)
            )
        }
    })
    .await;
    assert!(
        split,
        "split brain not detected: {:?}",
        topo.snapshot().writer
    );
    let e = client
        .simple_query("INSERT INTO sb VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25006"), "{e}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("both claim"), "{msg}");
    // Reads have no replica left and no primary to fall back to: refused
    // alike. The session goes on, and once one node steps down (here: it
    // stops), writes go to the one left.
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25006"), "{e}");
    c.kill_node(&c.replicas[0]).unwrap();
    let healed = eventually(Duration::from_secs(5), || {
        let client = &client;
        async move {
            client
                .simple_query("INSERT INTO sb VALUES (2)")
                .await
                .is_ok()
        }
    })
    .await;
    assert!(healed, "writes did not resume on the remaining primary");
}
