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
    // Both replicas hold everything the primary wrote, so the one that is
    // not promoted can follow the one that is (no pg_rewind needed).
    let primary = direct_to(&c, c.primary.port, "postgres").await;
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    for r in &c.replicas {
        let r = direct_to(&c, r.port, "postgres").await;
        let caught_up = eventually(Duration::from_secs(10), || {
            let (r, lsn) = (&r, &lsn);
            async move {
                r.query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[lsn],
                )
                .await
                .is_ok_and(|row| row.get::<_, bool>(0))
            }
        })
        .await;
        assert!(caught_up, "replica never replayed {lsn}");
    }
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

    // The other replica still follows the dead primary: it lacks the new
    // primary's WAL, so its time lag grows and it leaves rotation.
    let topo = proxy.shared.topology(DB).unwrap().clone();
    let stale_out = eventually(Duration::from_secs(10), || {
        let topo = topo.clone();
        async move { !topo.snapshot_full().nodes[2].readable }
    })
    .await;
    assert!(
        stale_out,
        "a replica not following the new primary stayed in rotation"
    );

    // It is pointed at the new primary, as an operator or a failover
    // manager would; once it streams from it, reads use it again.
    let follower = direct_to(&c, c.replicas[1].port, "postgres").await;
    let conninfo: String = follower
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    let repointed = conninfo.replace(
        &format!("port={}", c.primary.port),
        &format!("port={}", c.replicas[0].port),
    );
    assert_ne!(conninfo, repointed, "{conninfo}");
    follower
        .simple_query(&format!(
            "ALTER SYSTEM SET primary_conninfo = '{}'",
            repointed.replace('\'', "''")
        ))
        .await
        .unwrap();
    follower
        .simple_query("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let reader = connect_url(&url).await.unwrap();
    reader
        .simple_query("SET pgwarden.consistency = eventual")
        .await
        .unwrap();
    let follower_port = c.replicas[1].port as i32;
    let back = eventually(Duration::from_secs(15), || {
        let reader = &reader;
        async move {
            // Served by the follower, and it has the write made on the new primary.
            let r = reader
                .query_one("SELECT inet_server_port(), (SELECT count(*) FROM fo)", &[])
                .await;
            r.is_ok_and(|row| row.get::<_, i32>(0) == follower_port && row.get::<_, i64>(1) == 1)
        }
    })
    .await;
    let snap = proxy.shared.topology(DB).unwrap().snapshot_full();
    assert!(
        back,
        "the follower never served reads again: {:?}",
        snap.nodes[2]
    );
    assert!(snap.nodes[2].readable, "{:?}", snap.nodes[2]);
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
    assert!(
        !msg.contains("127.0.0.1"),
        "node addresses are for the log: {msg}"
    );
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

/// SWITCHOVER under pgbench writes: no failed transaction, no lost row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_fails_nothing() {
    let c = fresh_cluster(1);
    c.psql(
        "postgres",
        "CREATE TABLE sw (id bigserial PRIMARY KEY, v int)",
    )
    .unwrap();
    let proxy = start(&c, |cfg| {
        cfg.proxy.admin_users = pgwarden::config::NameList(vec!["postgres".into()]);
        let r = &mut cfg.databases.get_mut(DB).unwrap().routing;
        r.switchover_promote = true;
        r.failover_wait_ms = 20_000;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("w.sql");
    std::fs::write(
        &script,
        "BEGIN;\nINSERT INTO sw (v) VALUES (1);\nSELECT count(*) FROM sw WHERE id < 10;\nEND;\n",
    )
    .unwrap();
    let (port, pw, script) = (
        proxy.addr.port(),
        c.superuser_password.clone(),
        script.clone(),
    );
    let bench = std::thread::spawn(move || {
        run_tool(
            std::process::Command::new(pg_tool("pgbench"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(["-n", "-c", "8", "-j", "2", "-T", "6", "-f"])
                .arg(&script)
                .arg(DB)
                .env("PGPASSWORD", pw),
        )
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let admin_url = url(&proxy, "postgres", &c.superuser_password, "pgwarden");
    let admin = connect_url(&admin_url).await.unwrap();
    let target = c.replicas[0].addr();
    let started = Instant::now();
    admin
        .simple_query(&format!("SWITCHOVER {DB} TO {target}"))
        .await
        .expect("switchover");
    let took = started.elapsed();

    let (ok, out) = bench.join().unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let processed: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("pgbench's count");
    // Every committed insert is on the new primary.
    let new_primary = direct_to(&c, c.replicas[0].port, "postgres").await;
    let in_recovery: bool = new_primary
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "the target was promoted");
    let rows: i64 = new_primary
        .query_one("SELECT count(*) FROM sw", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, processed,
        "rows on the new primary = committed transactions"
    );
    let topo = proxy.shared.topology(DB).unwrap();
    assert_eq!(topo.snapshot().writer, pgwarden::topology::Writer::Node(1));
    eprintln!("switchover took {took:?}; {processed} transactions, none failed");
    // Back to the old primary: it is fenced, not a replica yet.
    let e = admin
        .simple_query(&format!("SWITCHOVER {DB} TO {}", c.primary.addr()))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    let e = admin
        .simple_query(&format!("SWITCHOVER {DB} TO 127.0.0.1:1"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42704"), "{e}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Every node of a database without tenant rules is down when a client
/// logs in: it gets the connection's own error (08001), not a residency
/// refusal (RZ001 used to come out of the login when the monitor had
/// already marked the nodes down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_while_every_node_is_down_gets_the_connection_error() {
    let proxy = proxy(|cfg| {
        with_replicas(cfg);
        let db = cfg.databases.get_mut(DB).expect("pgw configured");
        // Nothing listens on these loopback ports: every node is down.
        db.primary = "127.0.0.1:1".into();
        db.replicas = vec![String::from("127.0.0.1:2").into()];
    })
    .await;
    let topology = proxy.shared.topology(DB).expect("a topology").clone();
    let down = eventually(Duration::from_secs(20), || {
        let t = topology.clone();
        async move {
            let snap = t.snapshot();
            snap.round > 0 && snap.nodes.iter().all(|n| !n.up)
        }
    })
    .await;
    assert!(down, "the monitor never saw the nodes down");
    let err = match connect(&proxy, SCRAM_USER).await {
        Ok(client) => client.simple_query("SELECT 1").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err:?}");
}
