//! Read/write splitting against a real primary and two streaming replicas:
//! where statements run, the write corpus, read-your-writes while replicas
//! lag, and the lag limit taking a replica out of rotation and back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use pgwarden::config::Consistency;

const WRITES: &str = include_str!("data/routing/writes.sql");

/// The tests share one cluster and pause its replicas' replay or count on
/// them being in step: one at a time.
static REPLICAS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Replica `i`'s port.
fn replica_port(i: usize) -> u16 {
    cluster().replicas[i].port
}

/// Runs `sql` and returns whether it ran on a replica.
async fn on_replica(client: &tokio_postgres::Client, sql: &str) -> bool {
    let rows = client.simple_query(sql).await.expect("query");
    rows.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
        _ => false,
    })
}

/// Pauses WAL replay on both replicas until dropped.
struct ReplayPaused(Vec<tokio_postgres::Client>);

impl ReplayPaused {
    async fn new(which: &[usize]) -> Self {
        let mut v = Vec::new();
        for &i in which {
            let c = direct_to(cluster(), replica_port(i), DB).await;
            c.simple_query("SELECT pg_wal_replay_pause()")
                .await
                .unwrap();
            v.push(c);
        }
        ReplayPaused(v)
    }

    async fn resume(self) {
        for c in &self.0 {
            c.simple_query("SELECT pg_wal_replay_resume()")
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let _one_at_a_time = REPLICAS.lock().await;
    let proxy = proxy(|c| {
        with_replicas(c);
        c.databases.get_mut(DB).unwrap().routing.consistency = Consistency::Eventual;
    })
    .await;
    assert!(
        replicas_ready(&proxy).await,
        "replicas never joined rotation"
    );
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let mut replica_reads = 0;
    for _ in 0..50 {
        if on_replica(&client, "SELECT pg_is_in_recovery()").await {
            replica_reads += 1;
        }
    }
    assert_eq!(replica_reads, 50, "auto-commit SELECTs go to replicas");
    // Writes, hinted reads and explicit transactions go to the primary.
    client
        .simple_query("CREATE TABLE IF NOT EXISTS rw_t (id int)")
        .await
        .unwrap();
    assert!(
        !on_replica(
            &client,
            "/* pgwarden:route=primary */ SELECT pg_is_in_recovery()"
        )
        .await
    );
    assert!(!on_replica(&client, "SELECT pg_is_in_recovery() FROM rw_t FOR UPDATE").await);
    let tx = "BEGIN; SELECT pg_is_in_recovery(); COMMIT";
    assert!(!on_replica(&client, tx).await);
    let ro = "BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT";
    assert!(
        on_replica(&client, ro).await,
        "read-only blocks go to replicas"
    );
    // Session-level control.
    client
        .simple_query("SET pgwarden.route = primary")
        .await
        .unwrap();
    assert!(!on_replica(&client, "SELECT pg_is_in_recovery()").await);
    client
        .simple_query("SET pgwarden.route = auto")
        .await
        .unwrap();
    assert!(on_replica(&client, "SELECT pg_is_in_recovery()").await);
    // Extended protocol: prepared statements classify by their text.
    let stmt = client.prepare("SELECT pg_is_in_recovery()").await.unwrap();
    let mut on = 0;
    for _ in 0..20 {
        let row = client.query_one(&stmt, &[]).await.unwrap();
        if row.get::<_, bool>(0) {
            on += 1;
        }
    }
    assert_eq!(on, 20, "prepared reads go to replicas");
    let topo = proxy.shared.topology(DB).unwrap();
    let reads: u64 = topo.nodes[1..]
        .iter()
        .map(|n| n.stats.reads.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(reads >= 70, "{reads}");
    assert!(
        topo.nodes[0]
            .stats
            .writes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_writes_never_reach_a_replica() {
    let _one_at_a_time = REPLICAS.lock().await;
    psql(
        "CREATE TABLE IF NOT EXISTS rt (id serial primary key, v text, n int default 0);
         CREATE TABLE IF NOT EXISTS rt_log (msg text);
         CREATE SEQUENCE IF NOT EXISTS rt_seq;
         CREATE OR REPLACE FUNCTION rt_write(t text) RETURNS int LANGUAGE sql
           AS $$ INSERT INTO rt_log VALUES (t) RETURNING 1 $$;
         CREATE OR REPLACE PROCEDURE rt_proc() LANGUAGE sql AS $$ INSERT INTO rt_log VALUES ('p') $$;
         CREATE MATERIALIZED VIEW IF NOT EXISTS rt_mv AS SELECT 1 AS x;
         INSERT INTO rt (v) VALUES ('seed');",
    );
    let proxy = proxy(|c| {
        with_replicas(c);
        let r = &mut c.databases.get_mut(DB).unwrap().routing;
        r.consistency = Consistency::Eventual;
        // No lag limit: replicas stay in rotation whatever the writes do.
        r.max_replica_lag_bytes = 0;
        r.max_replica_lag_ms = 0;
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    let mut cases = Vec::new();
    let mut n = 0;
    for line in WRITES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (sql, via_function) = match line.strip_prefix("fn ") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if sql.to_ascii_lowercase().starts_with("set") {
            // SET ROLE pins the session; it is covered by the unit tests.
            continue;
        }
        let sql = sql.replace("\\n", "\n");
        let mut variants = vec![sql.clone(), format!("-- select 1;\n{sql}")];
        if !via_function {
            variants.push(format!("/* pgwarden:route=replica */ {sql}"));
        }
        for v in variants {
            n += 1;
            cases.push(v.replace("{n}", &format!("{}_{n}", std::process::id())));
        }
    }
    assert!(cases.len() >= 200, "{} cases", cases.len());
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let mut on_replica_errors = Vec::new();
    for sql in &cases {
        if let Err(e) = client.simple_query(sql).await {
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default();
            if sqlstate(&e).as_deref() == Some("25006") || msg.contains("recovery") {
                on_replica_errors.push(format!("{sql}: {msg}"));
            }
        }
    }
    assert!(on_replica_errors.is_empty(), "{on_replica_errors:#?}");
    // And the same connection still reads from replicas.
    assert!(on_replica(&client, "SELECT pg_is_in_recovery()").await);
}

/// Inserts `n` rows and reads each back at once; returns how many reads
/// missed their row and how many ran on a replica.
async fn insert_then_select(
    client: &tokio_postgres::Client,
    table: &str,
    ids: std::ops::Range<i32>,
) -> (usize, usize) {
    let (mut missed, mut replica) = (0, 0);
    for i in ids {
        client
            .simple_query(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
        let rows = client
            .simple_query(&format!(
                "SELECT pg_is_in_recovery(), count(*) FROM {table} WHERE id = {i}"
            ))
            .await
            .unwrap();
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                if r.get(0) == Some("t") {
                    replica += 1;
                }
                if r.get(1) != Some("1") {
                    missed += 1;
                }
            }
        }
    }
    (missed, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_while_replicas_lag() {
    let _one_at_a_time = REPLICAS.lock().await;
    psql("DROP TABLE IF EXISTS ryw_t; CREATE TABLE ryw_t (id int)");
    let proxy = proxy(|c| {
        with_replicas(c);
        let r = &mut c.databases.get_mut(DB).unwrap().routing;
        r.max_replica_lag_bytes = 0;
        r.max_replica_lag_ms = 0;
        r.ryw_wait_ms = 5;
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    let client = connect(&proxy, SCRAM_USER).await.unwrap();

    // Replicas in step: read-your-writes reads still use them.
    let (missed, replica) = insert_then_select(&client, "ryw_t", 0..200).await;
    assert_eq!(missed, 0);
    assert!(replica > 100, "only {replica} of 200 reads on replicas");

    // Replicas frozen: every read still sees its write (from the primary).
    let paused = ReplayPaused::new(&[0, 1]).await;
    let (missed, _) = insert_then_select(&client, "ryw_t", 1000..2000).await;
    let waits: u64 = proxy.shared.topology(DB).unwrap().nodes[1..]
        .iter()
        .map(|n| n.stats.ryw_waits.load(std::sync::atomic::Ordering::Relaxed))
        .sum();

    // Eventual consistency: the same pattern reads stale rows from replicas.
    client
        .simple_query("SET pgwarden.consistency = eventual")
        .await
        .unwrap();
    let (stale, replica) = insert_then_select(&client, "ryw_t", 5000..5050).await;
    paused.resume().await;
    assert_eq!(missed, 0, "read-your-writes missed {missed} of 1000");
    assert!(waits > 0, "reads waited for replicas");
    assert!(
        replica > 0 && stale > 0,
        "eventual: {replica} on replicas, {stale} stale"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_from_the_monitor_adds_no_round_trip() {
    let _one_at_a_time = REPLICAS.lock().await;
    psql("DROP TABLE IF EXISTS rywm_t; CREATE TABLE rywm_t (id int)");
    let proxy = proxy(|c| {
        with_replicas(c);
        let r = &mut c.databases.get_mut(DB).unwrap().routing;
        r.ryw_commit_lsn = pgwarden::config::CommitLsn::Monitor;
        r.ryw_wait_ms = 5;
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    let topo = proxy.shared.topology(DB).unwrap().clone();
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let paused = ReplayPaused::new(&[0, 1]).await;
    let (missed, replica) = insert_then_select(&client, "rywm_t", 0..300).await;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let primary_reads = load(&topo.nodes[0].stats.ryw_primary_reads);
    // A check of the primary may land between a write and its read: the
    // position is known then, the paused replicas cannot catch up, and the
    // read falls back to the primary that way.
    let fallbacks: u64 = topo.nodes.iter().map(|n| load(&n.stats.fallbacks)).sum();
    paused.resume().await;
    assert_eq!(missed, 0, "read-your-writes missed {missed} of 300");
    assert_eq!(replica, 0, "reads right after a write stay on the primary");
    assert!(primary_reads > 0, "no read was sent to the primary unasked");
    assert!(
        primary_reads + fallbacks >= 300,
        "{primary_reads} unasked + {fallbacks} after waiting"
    );
    // One check of the primary later, the write's position is known and
    // replicas that replayed it serve the client's reads again.
    let back = eventually(Duration::from_secs(5), || {
        let client = &client;
        let sql = "SELECT pg_is_in_recovery() AND count(*) = 300 FROM rywm_t";
        async move { on_replica(client, sql).await }
    })
    .await;
    assert!(back, "reads never returned to a replica after the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_rotation_and_returns() {
    let _one_at_a_time = REPLICAS.lock().await;
    psql("CREATE TABLE IF NOT EXISTS lag_t (pad text)");
    let interval = Duration::from_millis(250);
    let proxy = proxy(|c| {
        with_replicas(c);
        let r = &mut c.databases.get_mut(DB).unwrap().routing;
        r.max_replica_lag_bytes = 256 * 1024;
        r.max_replica_lag_ms = 0;
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    let topo = proxy.shared.topology(DB).unwrap().clone();
    let paused = ReplayPaused::new(&[0]).await;
    // Write well past the limit.
    psql("INSERT INTO lag_t SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
    let primary_lsn = {
        let d = direct().await;
        let r = d
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap();
        pgwarden::topology::lag::parse_lsn(r.get(0)).unwrap()
    };
    // Once a check has seen the primary past the limit, the replica is out
    // within two more checks.
    let seen_at = std::time::Instant::now();
    let left = eventually(Duration::from_secs(5), || {
        let topo = topo.clone();
        async move { !topo.snapshot().nodes[1].readable }
    })
    .await;
    let took = seen_at.elapsed();
    let snap = topo.snapshot_full();
    paused.resume().await;
    assert!(
        left,
        "the paused replica stayed in rotation: {:?}",
        snap.nodes[1]
    );
    assert!(
        took <= interval * 3 + Duration::from_millis(200),
        "took {took:?}"
    );
    assert!(
        snap.nodes[1].lag_bytes > 256 * 1024,
        "{:?} vs {primary_lsn}",
        snap.nodes[1]
    );
    assert!(snap.nodes[2].readable, "the other replica stays");
    // Caught up again: back in rotation.
    assert!(replicas_ready(&proxy).await, "the replica never returned");
}

/// SQL-level prepared statements route by what they run, with replay
/// running: an `EXECUTE` of an INSERT never reaches a replica, an `EXECUTE`
/// of a SELECT sees the session's own writes, and reads do go to replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_execute_routes_like_its_statement_with_replay_running() {
    let _one_at_a_time = REPLICAS.lock().await;
    psql("DROP TABLE IF EXISTS spx_t; CREATE TABLE spx_t (id int PRIMARY KEY)");
    let proxy = proxy(with_replicas).await;
    assert!(
        replicas_ready(&proxy).await,
        "replicas never joined rotation"
    );
    let writer = connect(&proxy, SCRAM_USER).await.unwrap();
    writer
        .batch_execute(
            "PREPARE ins (int) AS INSERT INTO spx_t VALUES ($1);\n\
             PREPARE cnt (int) AS SELECT pg_is_in_recovery(), count(*) FROM spx_t WHERE id = $1",
        )
        .await
        .unwrap_err(); // several statements in one query: refused, as documented
    writer
        .simple_query("PREPARE ins (int) AS INSERT INTO spx_t VALUES ($1)")
        .await
        .unwrap();
    writer
        .simple_query(
            "PREPARE cnt (int) AS SELECT pg_is_in_recovery(), count(*) FROM spx_t WHERE id = $1",
        )
        .await
        .unwrap();
    let mut missed = 0;
    for i in 0..200 {
        // On a replica this would fail with 25006.
        writer
            .simple_query(&format!("EXECUTE ins({i})"))
            .await
            .unwrap();
        for m in writer
            .simple_query(&format!("EXECUTE cnt({i})"))
            .await
            .unwrap()
        {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                if r.get(1) != Some("1") {
                    missed += 1;
                }
            }
        }
    }
    assert_eq!(missed, 0, "reads of the session's own writes missed them");
    let reader = connect(&proxy, SCRAM_USER).await.unwrap();
    reader
        .simple_query("PREPARE rec AS SELECT pg_is_in_recovery()")
        .await
        .unwrap();
    let mut replica_reads = 0;
    for _ in 0..50 {
        if on_replica(&reader, "EXECUTE rec").await {
            replica_reads += 1;
        }
    }
    assert!(replica_reads > 0, "no EXECUTE of a read reached a replica");
}
