//! Read-your-writes and bounded staleness with replication *running*: a
//! replica slowed by `recovery_min_apply_delay`, so that it is always a
//! little behind, and real drivers in their default modes. Sessions commit
//! both synchronously and with `synchronous_commit = off` (where the WAL
//! written trails the commit record: read-your-writes once checked reads
//! against that position and missed nine reads in ten).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use pgwarden::app::Proxy;
use pgwarden::config::{CommitLsn, Consistency};
use pgwarden::localpg::Cluster;

/// Write-then-read pairs per driver and protocol.
const PAIRS: usize = 1000;

/// What one client saw.
#[derive(Debug)]
#[allow(dead_code)] // `label` is read through Debug.
struct Run {
    label: String,
    missed: usize,
    replica: usize,
    reads: usize,
    /// Its session commits synchronously (its reads can use the replica
    /// as soon as it replays; asynchronous commits reach it later).
    sync: bool,
}

/// A URL rather than key=value pairs: asyncpg takes only URLs.
fn dsn(proxy: &Proxy, c: &Cluster) -> String {
    format!(
        "postgresql://postgres:{}@127.0.0.1:{}/{DB}",
        c.superuser_password,
        proxy.addr.port()
    )
}

/// A one-replica cluster and a proxy in front with `edit`'s routing.
async fn setup(edit: impl FnOnce(&mut pgwarden::config::RoutingSettings)) -> (Cluster, Proxy) {
    let c = fresh_cluster_with(1, "");
    let proxy = Proxy::start(config_for(&c, |cfg| {
        edit(&mut cfg.databases.get_mut(DB).unwrap().routing)
    }))
    .await
    .unwrap();
    (c, proxy)
}

async fn replica_in_rotation(proxy: &Proxy) -> bool {
    let topo = proxy.shared.topology(DB).unwrap().clone();
    eventually(Duration::from_secs(20), || {
        let topo = topo.clone();
        async move {
            let snap = topo.snapshot();
            snap.round > 0 && snap.nodes[1].readable
        }
    })
    .await
}

/// Waits until the replica has replayed the creation of `table` (made
/// directly on the primary, not through the session that reads it).
async fn replica_has(c: &Cluster, table: &str) {
    let replica = direct_to(c, c.replicas[0].port, "postgres").await;
    let sql = format!("SELECT to_regclass('{table}') IS NOT NULL");
    let seen = eventually(Duration::from_secs(10), || {
        let (replica, sql) = (&replica, &sql);
        async move {
            replica
                .query_one(sql.as_str(), &[])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    })
    .await;
    assert!(seen, "the replica never showed {table}");
}

fn count_row(row: &tokio_postgres::Row, run: &mut Run) {
    run.reads += 1;
    if row.get::<_, bool>(0) {
        run.replica += 1;
    }
    if row.get::<_, i64>(1) != 1 {
        run.missed += 1;
    }
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Simple,
    Extended,
    /// A read, the write and then the read of the write, the first two
    /// sent together.
    Pipelined,
}

/// Pairs through tokio-postgres.
async fn tokio_pairs(dsn: String, table: String, protocol: Protocol, sync: bool) -> Run {
    let client = connect_url(&dsn).await.unwrap();
    let on = if sync { "on" } else { "off" };
    client
        .simple_query(&format!("SET synchronous_commit = {on}"))
        .await
        .unwrap();
    let mut run = Run {
        label: format!("tokio-postgres {protocol:?} sync={on}"),
        missed: 0,
        replica: 0,
        reads: 0,
        sync,
    };
    let read = format!("SELECT pg_is_in_recovery(), count(*) FROM {table} WHERE id = $1");
    let insert = format!("INSERT INTO {table} VALUES ($1)");
    for i in 0..PAIRS as i32 {
        match protocol {
            Protocol::Simple => {
                client
                    .simple_query(&format!("INSERT INTO {table} VALUES ({i})"))
                    .await
                    .unwrap();
                let sql =
                    format!("SELECT pg_is_in_recovery(), count(*) = 1 FROM {table} WHERE id = {i}");
                for m in client.simple_query(&sql).await.unwrap() {
                    if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                        run.reads += 1;
                        run.replica += usize::from(r.get(0) == Some("t"));
                        run.missed += usize::from(r.get(1) != Some("t"));
                    }
                }
                continue;
            }
            Protocol::Extended => {
                client.execute(&insert, &[&i]).await.unwrap();
            }
            Protocol::Pipelined => {
                let none = -1i32;
                let p1: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&none];
                let p2: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&i];
                let (a, b) = tokio::join!(client.query(&read, &p1), client.execute(&insert, &p2));
                a.unwrap();
                b.unwrap();
            }
        }
        let row = client.query_one(&read, &[&i]).await.unwrap();
        count_row(&row, &mut run);
    }
    run
}

/// Pairs through psql, one script of INSERT/SELECT lines.
async fn psql_pairs(c: &Cluster, dsn: String, table: String) -> Run {
    let mut script = String::from("SET synchronous_commit = off;\n");
    for i in 0..PAIRS {
        script.push_str(&format!(
            "INSERT INTO {table} VALUES ({i});\n\
             SELECT pg_is_in_recovery()::int || ' ' || count(*) FROM {table} WHERE id = {i};\n"
        ));
    }
    let path = c.root.join(format!("{table}.sql"));
    std::fs::write(&path, script).unwrap();
    let out = tokio::process::Command::new(c.bindir.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&path)
        .arg(&dsn)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut run = Run {
        label: "psql simple sync=off".into(),
        missed: 0,
        replica: 0,
        reads: 0,
        sync: false,
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((rec, n)) = line.split_once(' ') else {
            continue;
        };
        run.reads += 1;
        run.replica += usize::from(rec == "1");
        run.missed += usize::from(n != "1");
    }
    assert_eq!(run.reads, PAIRS, "psql printed {} answers", run.reads);
    run
}

/// Runs a Python driver script that prints `word N word N ...`; gives the
/// number at each word index (`usize::MAX` where there is none).
async fn run_counting(script: &str, args: &[&str]) -> impl Fn(usize) -> usize {
    let python = python_with_drivers().expect("checked before");
    let out = tokio::process::Command::new(python)
        .arg(driver_script(script))
        .args(args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {}: {text}{}",
        args[1..].join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    move |k| {
        text.split_whitespace()
            .nth(k)
            .and_then(|w| w.parse().ok())
            .unwrap_or(usize::MAX)
    }
}

/// Pairs through a Python driver (`tests/drivers/consistency.py`).
async fn python_pairs(
    dsn: String,
    driver: &str,
    mode: &str,
    table: String,
    n: usize,
    sync: bool,
) -> Run {
    let on = if sync { "on" } else { "off" };
    let args = [dsn.as_str(), driver, mode, &table, &n.to_string(), on];
    let num = run_counting("consistency.py", &args).await;
    Run {
        label: format!("{driver} {mode} sync={on}"),
        missed: num(1),
        replica: num(3),
        reads: num(5),
        sync,
    }
}

/// Every driver and protocol at once, each on its own table.
async fn all_drivers(c: &Cluster, proxy: &Proxy, tag: &str, pairs_python: bool) -> Vec<Run> {
    let dsn = dsn(proxy, c);
    let admin = direct_to(c, c.primary.port, "postgres").await;
    let table = |name: &str| format!("{tag}_{name}");
    for name in ["ts", "te", "tp", "psql", "pe", "ps", "pp", "sc", "ap"] {
        admin
            .simple_query(&format!(
                "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int)",
                t = table(name)
            ))
            .await
            .unwrap();
    }
    replica_has(c, &table("ap")).await;
    let mut tasks = vec![
        tokio::spawn(tokio_pairs(
            dsn.clone(),
            table("ts"),
            Protocol::Simple,
            false,
        )),
        tokio::spawn(tokio_pairs(
            dsn.clone(),
            table("te"),
            Protocol::Extended,
            true,
        )),
        tokio::spawn(tokio_pairs(
            dsn.clone(),
            table("tp"),
            Protocol::Pipelined,
            false,
        )),
    ];
    let psql = psql_pairs(c, dsn.clone(), table("psql"));
    if pairs_python {
        for (driver, mode, t, n, sync) in [
            ("psycopg", "extended", "pe", PAIRS, false),
            ("psycopg", "simple", "ps", PAIRS, false),
            ("psycopg", "pipeline", "pp", PAIRS, false),
            ("psycopg", "scenarios", "sc", PAIRS / 10, false),
            ("asyncpg", "extended", "ap", PAIRS, true),
        ] {
            tasks.push(tokio::spawn(python_pairs(
                dsn.clone(),
                driver,
                mode,
                table(t),
                n,
                sync,
            )));
        }
    }
    let mut runs = vec![psql.await];
    for t in tasks {
        runs.push(t.await.unwrap());
    }
    runs
}

fn assert_no_misses(runs: &[Run], phase: &str) {
    for r in runs {
        eprintln!("{phase}: {r:?}");
    }
    let bad: Vec<&Run> = runs
        .iter()
        .filter(|r| r.missed > 0 || r.reads == 0)
        .collect();
    assert!(
        bad.is_empty(),
        "{phase}: reads missed their write: {bad:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_with_replay_running() {
    let python = python_with_drivers().is_some();
    if !python {
        missing_dependency("Python with asyncpg and psycopg");
    }
    let (c, proxy) = setup(|_| {}).await;
    let replica = c.replicas[0].port;
    assert!(replica_in_rotation(&proxy).await);

    // Slightly behind: reads wait for the replica, and use it.
    set_node_setting(&c, replica, "recovery_min_apply_delay", "20ms").await;
    let runs = all_drivers(&c, &proxy, "d20", python).await;
    assert_no_misses(&runs, "apply delay 20ms");
    let (reads, on_replica) = runs
        .iter()
        .filter(|r| r.sync)
        .fold((0, 0), |(a, b), r| (a + r.reads, b + r.replica));
    assert!(
        on_replica * 2 > reads,
        "reads of synchronous commits should use the caught-up replica: {on_replica} of {reads}"
    );

    // Further behind than read-your-writes waits: the primary serves them.
    set_node_setting(&c, replica, "recovery_min_apply_delay", "200ms").await;
    let runs = all_drivers(&c, &proxy, "d200", python).await;
    assert_no_misses(&runs, "apply delay 200ms");
    proxy.shutdown(Duration::from_secs(5)).await;

    // The monitor's position instead of a query per write.
    let monitor = Proxy::start(config_for(&c, |cfg| {
        cfg.databases.get_mut(DB).unwrap().routing.ryw_commit_lsn = CommitLsn::Monitor;
    }))
    .await
    .unwrap();
    assert!(replica_in_rotation(&monitor).await);
    set_node_setting(&c, replica, "recovery_min_apply_delay", "20ms").await;
    let dsn = dsn(&monitor, &c);
    let admin = direct_to(&c, c.primary.port, "postgres").await;
    let mut runs = vec![];
    for (table, protocol, sync) in [
        ("mon_s", Protocol::Simple, false),
        ("mon_p", Protocol::Pipelined, true),
    ] {
        admin
            .simple_query(&format!("CREATE TABLE {table} (id int)"))
            .await
            .unwrap();
        replica_has(&c, table).await;
        runs.push(tokio_pairs(dsn.clone(), table.into(), protocol, sync).await);
    }
    if python {
        admin
            .simple_query("CREATE TABLE mon_sc (id int)")
            .await
            .unwrap();
        runs.push(python_pairs(dsn, "psycopg", "scenarios", "mon_sc".into(), 50, false).await);
    }
    assert_no_misses(&runs, "ryw_commit_lsn = monitor");
    monitor.shutdown(Duration::from_secs(5)).await;
}

/// `consistency = "bounded"`: one row committed on the primary every
/// 150 ms; each read asks for a row old enough that any replica within the
/// session's bound must have it, and must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_staleness_holds_for_every_read() {
    let (c, proxy) = setup(|r| {
        r.consistency = Consistency::Bounded;
        // Only the staleness bound decides; rotation limits stay out of it.
        r.max_replica_lag_ms = 0;
        r.max_replica_lag_bytes = 0;
    })
    .await;
    let replica = c.replicas[0].port;
    assert!(replica_in_rotation(&proxy).await);
    let writer = direct_to(&c, c.primary.port, "postgres").await;
    writer
        .simple_query("CREATE TABLE b (id int)")
        .await
        .unwrap();
    let reader = connect_url(&dsn(&proxy, &c)).await.unwrap();
    let mut next_id = 0;
    let mut report = vec![];
    for (delay_ms, bound_ms) in [
        (50, 100),
        (50, 1000),
        (400, 100),
        (400, 1000),
        (2000, 100),
        (2000, 1000),
    ] {
        set_node_setting(
            &c,
            replica,
            "recovery_min_apply_delay",
            &format!("{delay_ms}ms"),
        )
        .await;
        reader
            .simple_query(&format!("SET pgwarden.max_staleness_ms = {bound_ms}"))
            .await
            .unwrap();
        // Rows are read 150 ms after their commit, or (for a 1 s bound)
        // the row committed 7 steps (1.05 s) earlier.
        let back = if bound_ms < 150 { 0 } else { 7 };
        let mut committed: Vec<(i32, Instant)> = vec![];
        let (mut reads, mut on_replica, mut missed) = (0, 0, 0);
        for step in 0..30 {
            writer
                .simple_query(&format!("INSERT INTO b VALUES ({next_id})"))
                .await
                .unwrap();
            committed.push((next_id, Instant::now()));
            next_id += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
            if step < back {
                continue;
            }
            let (id, at) = committed[committed.len() - 1 - back];
            assert!(at.elapsed() > Duration::from_millis(bound_ms));
            let row = reader
                .query_one(
                    "SELECT pg_is_in_recovery(), count(*) FROM b WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            reads += 1;
            on_replica += usize::from(row.get::<_, bool>(0));
            missed += usize::from(row.get::<_, i64>(1) != 1);
        }
        report.push((delay_ms, bound_ms, reads, on_replica, missed));
    }
    proxy.shutdown(Duration::from_secs(5)).await;
    eprintln!("(apply delay ms, bound ms, reads, on replica, missed): {report:?}");
    for &(delay, bound, _, on_replica, missed) in &report {
        assert_eq!(
            missed, 0,
            "a read older than its bound was missing: {report:?}"
        );
        if delay > bound {
            assert_eq!(
                on_replica, 0,
                "a replica {delay} ms behind served a {bound} ms bound: {report:?}"
            );
        }
    }
    let used = report
        .iter()
        .filter(|r| r.0 < r.1)
        .map(|r| r.3)
        .sum::<usize>();
    assert!(
        used > 0,
        "replicas within the bound were never used: {report:?}"
    );
}

/// Runs `tests/drivers/cross_instance.py`: `n` pairs written through
/// `a`, read through `b`. Gives (missed, on replica, reads, positions
/// reported).
async fn cross_instance_pairs(
    c: &Cluster,
    a: &Proxy,
    b: &Proxy,
    table: &str,
    n: usize,
    carry: bool,
) -> [usize; 4] {
    let mode = if carry { "carry" } else { "none" };
    let (dsn_a, dsn_b, n) = (dsn(a, c), dsn(b, c), n.to_string());
    let args = [dsn_a.as_str(), &dsn_b, table, &n, mode];
    let num = run_counting("cross_instance.py", &args).await;
    [num(1), num(3), num(5), num(7)]
}

/// Write through one instance, read through another: the position the
/// first reports (`pgwarden.commit_lsn`) carried to the second
/// (`pgwarden.min_lsn`, as a startup parameter on a new connection or a
/// `SET`) makes every read see its write while the replica trails by
/// 50 ms; without it, reads miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_across_instances() {
    if python_with_drivers().is_none() {
        return missing_dependency("Python with asyncpg and psycopg");
    }
    let c = fresh_cluster_with(1, "");
    let start = || Proxy::start(config_for(&c, |_| {}));
    let (a, b) = (start().await.unwrap(), start().await.unwrap());
    assert!(replica_in_rotation(&a).await && replica_in_rotation(&b).await);
    set_node_setting(&c, c.replicas[0].port, "recovery_min_apply_delay", "50ms").await;
    let admin = direct_to(&c, c.primary.port, "postgres").await;
    for table in ["xi_carry", "xi_none"] {
        admin
            .simple_query(&format!("CREATE TABLE {table} (id int)"))
            .await
            .unwrap();
        replica_has(&c, table).await;
    }

    let [missed, replica, reads, reported] =
        cross_instance_pairs(&c, &a, &b, "xi_carry", 500, true).await;
    println!("carried: missed {missed}, on the replica {replica} of {reads}, {reported} positions");
    assert_eq!(reads, 500);
    assert_eq!(missed, 0, "reads through B missed writes made through A");
    assert_eq!(reported, 500, "every write reports a new position");
    assert!(
        replica > 0,
        "no read used the replica: the test proves nothing"
    );

    let [missed, _, reads, _] = cross_instance_pairs(&c, &a, &b, "xi_none", 100, false).await;
    println!("not carried: missed {missed} of {reads}");
    assert!(missed > 0, "without the position, some reads should miss");

    // A malformed position is refused at login, as PostgreSQL refuses a
    // bad value, and by SET.
    let url = format!("{}?options=-c%20pgwarden.min_lsn%3Dnowhere", dsn(&b, &c));
    let e = connect_err(&url).await;
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"), "{e}");
    let client = connect_url(&dsn(&b, &c)).await.unwrap();
    let e = client
        .simple_query("SET pgwarden.min_lsn = 'nowhere'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"), "{e}");
    client.simple_query("SELECT 1").await.unwrap();
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}
