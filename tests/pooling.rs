//! Transaction pooling against real PostgreSQL: correctness under load,
//! real drivers and tools, COPY, cancel, and servers or clients that die.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_on_ten_servers_count_exactly() {
    psql("DROP TABLE IF EXISTS counter; CREATE TABLE counter (n bigint); INSERT INTO counter VALUES (0);");
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 10;
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
    })
    .await;
    let url = url(&proxy, TRUST_USER, "", DB);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect_url(&url).await?;
            for _ in 0..20 {
                client
                    .batch_execute("BEGIN; UPDATE counter SET n = n + 1; COMMIT;")
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(psql("SELECT n FROM counter"), "20000");
    let servers = psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{TRUST_USER}' AND datname = '{DB}'"
    ));
    assert!(
        servers.parse::<u32>().unwrap() <= 10,
        "{servers} server connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_select_and_tpcb_in_simple_and_extended_mode() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 5).await;
    let port = proxy.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        let (ok, text) = pgbench(port, &["-i", "-s", "1", "-q"]);
        assert!(ok, "pgbench -i failed: {text}");
        let mut results = Vec::new();
        for mode in ["simple", "extended"] {
            for script in [&["-S"][..], &[][..]] {
                let mut args = vec!["-M", mode, "-c", "8", "-j", "2", "-T", "3", "-n"];
                args.extend_from_slice(script);
                results.push(pgbench(port, &args));
            }
        }
        results
    })
    .await
    .unwrap();
    for (ok, text) in out {
        assert!(ok, "pgbench failed: {text}");
        assert!(
            text.contains("number of failed transactions: 0 (0.000%)"),
            "{text}"
        );
        assert!(text.contains("tps = "), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_100k_rows_both_ways_with_checksum() {
    psql("DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int, payload text)");
    let proxy = proxy(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let mut data = String::new();
    for i in 0..100_000 {
        data.push_str(&format!("{i},row-{i}-{}\n", i * 7919 % 1_000_003));
    }
    std::fs::write(&input, &data).unwrap();
    let port = proxy.addr.port();
    let (inp, outp) = (input.clone(), output.clone());
    let (ok_in, ok_out) = tokio::task::spawn_blocking(move || {
        let run = |cmd: String| {
            std::process::Command::new(pg_tool("psql"))
                .args([
                    "-X",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .args(["-U", SCRAM_USER, "-d", DB, "-c", &cmd])
                .env("PGPASSWORD", PASSWORD)
                .output()
                .expect("psql runs")
        };
        let a = run(format!("\\copy copy_t from '{}' csv", inp.display()));
        let b = run(format!(
            "\\copy (select * from copy_t order by id) to '{}' csv",
            outp.display()
        ));
        (a, b)
    })
    .await
    .unwrap();
    assert!(
        ok_in.status.success(),
        "{}",
        String::from_utf8_lossy(&ok_in.stderr)
    );
    assert!(
        ok_out.status.success(),
        "{}",
        String::from_utf8_lossy(&ok_out.stderr)
    );
    assert_eq!(psql("SELECT count(*) FROM copy_t"), "100000");
    let server_sum = psql(
        "SELECT md5(string_agg(id || ',' || payload, E'\\n' ORDER BY id) || E'\\n') FROM copy_t",
    );
    let local_sum = format!("{:x}", md5_digest(data.as_bytes()));
    assert_eq!(server_sum, local_sum, "rows copied in differ");
    let copied_out = std::fs::read(&output).unwrap();
    assert_eq!(copied_out, data.as_bytes(), "rows copied out differ");
}

fn md5_digest(data: &[u8]) -> impl std::fmt::LowerHex {
    use md5::Digest;
    md5::Md5::digest(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_gives_57014_and_connection_goes_on() {
    let proxy = proxy(|_| {}).await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = Instant::now();
    let err = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(canceller.await.unwrap().is_ok());
    let rows = client.simple_query("SELECT 42").await.unwrap();
    let values: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec!["42"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_the_statement() {
    let proxy =
        proxy(|c| c.proxy.query_timeout = pgwarden::config::duration::Secs::from_millis(300)).await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = client
        .simple_query("SELECT pg_sleep(20)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    assert!(client.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_terminated_mid_query_fails_only_its_client() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 4).await;
    let victim = connect(&proxy, SCRAM_USER).await.unwrap();
    let bystander = connect(&proxy, SCRAM_USER).await.unwrap();
    let marker = "pgwarden_terminate_me";
    let query = tokio::spawn(async move {
        victim
            .simple_query(&format!("SELECT pg_sleep(30) /* {marker} */"))
            .await
    });
    let admin = direct().await;
    let found = eventually(Duration::from_secs(5), || async {
        let sql = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        );
        // Only a row says a backend was found: the answer always holds
        // its CommandComplete, and under load the victim's query may not
        // have reached PostgreSQL yet.
        let answer = admin.simple_query(&sql).await.unwrap();
        answer
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    })
    .await;
    assert!(found, "backend to terminate not found");
    let result = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .unwrap()
        .unwrap();
    let err = result.expect_err("the victim's query must fail");
    let code = sqlstate(&err);
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("08006") | None),
        "unexpected error {err:?}"
    );
    assert!(bystander.simple_query("SELECT 1").await.is_ok());
    let fresh = connect(&proxy, SCRAM_USER).await.unwrap();
    assert!(fresh.simple_query("SELECT 1").await.is_ok());
}

async fn leftovers(admin: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    let locks: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let idle_tx: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND usename = $1",
            &[&SCRAM_USER],
        )
        .await
        .unwrap()
        .get(0);
    (locks, idle_tx)
}

/// A client whose connection task the test can abort, as if the process died.
async fn killable_client(
    proxy: &pgwarden::app::Proxy,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) =
        tokio_postgres::connect(&url(proxy, SCRAM_USER, PASSWORD, DB), tokio_postgres::NoTls)
            .await
            .unwrap();
    (client, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_no_lock() {
    psql("DROP TABLE IF EXISTS killed_t; CREATE TABLE killed_t (x int)");
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let admin = direct().await;
    // Idle inside a transaction, holding a lock.
    {
        let (client, driver) = killable_client(&proxy).await;
        client
            .batch_execute("BEGIN; LOCK TABLE killed_t IN ACCESS EXCLUSIVE MODE; INSERT INTO killed_t VALUES (1);")
            .await
            .unwrap();
        assert!(leftovers(&admin, "killed_t").await.0 >= 1);
        driver.abort();
        drop(client);
    }
    // Busy inside a transaction when it vanishes.
    {
        let (client, driver) = killable_client(&proxy).await;
        client
            .batch_execute("BEGIN; LOCK TABLE killed_t;")
            .await
            .unwrap();
        let busy = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        driver.abort();
        busy.abort();
    }
    let clean = eventually(Duration::from_secs(10), || async {
        leftovers(&admin, "killed_t").await == (0, 0)
    })
    .await;
    assert!(
        clean,
        "left behind: {:?}",
        leftovers(&admin, "killed_t").await
    );
    assert_eq!(psql("SELECT count(*) FROM killed_t"), "0");
    // The pool still serves.
    let c = connect(&proxy, SCRAM_USER).await.unwrap();
    c.batch_execute("INSERT INTO killed_t VALUES (2)")
        .await
        .unwrap();
    assert_eq!(psql("SELECT count(*) FROM killed_t"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_plus_one_gets_53300() {
    let proxy = proxy(|c| c.proxy.max_client_conn = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&proxy, SCRAM_USER).await.unwrap());
    }
    let err = connect_err(&url(&proxy, SCRAM_USER, PASSWORD, DB)).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    drop(held.pop());
    let ok = eventually(Duration::from_secs(5), || async {
        connect(&proxy, SCRAM_USER).await.is_ok()
    })
    .await;
    assert!(ok, "a freed place is usable again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_fires() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.query_wait_timeout = pgwarden::config::duration::Secs::from_millis(500);
    })
    .await;
    let holder = connect(&proxy, SCRAM_USER).await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    let waiter = connect(&proxy, SCRAM_USER).await.unwrap();
    let started = Instant::now();
    let err = waiter.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.batch_execute("COMMIT").await.unwrap();
    let other = connect(&proxy, SCRAM_USER).await.unwrap();
    assert!(other.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_pool_serves_after_reserve_timeout() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.reserve_pool_size = 1;
        c.proxy.reserve_pool_timeout = pgwarden::config::duration::Secs::from_millis(200);
        c.proxy.query_wait_timeout = pgwarden::config::duration::Secs::from_secs(5);
    })
    .await;
    let holder = connect(&proxy, SCRAM_USER).await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    let waiter = connect(&proxy, SCRAM_USER).await.unwrap();
    let started = Instant::now();
    waiter.simple_query("SELECT 1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    holder.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transaction_timeout_closes_and_rolls_back() {
    psql("DROP TABLE IF EXISTS idle_t; CREATE TABLE idle_t (x int)");
    let proxy = proxy(|c| {
        c.proxy.idle_transaction_timeout = pgwarden::config::duration::Secs::from_millis(300)
    })
    .await;
    let (client, conn) = tokio_postgres::connect(
        &url(&proxy, SCRAM_USER, PASSWORD, DB),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    // The FATAL arrives unasked: the connection's task is what reads it.
    let connection = tokio::spawn(conn);
    client
        .batch_execute("BEGIN; INSERT INTO idle_t VALUES (1);")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ended = tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("the connection is closed")
        .unwrap()
        .unwrap_err();
    // PgBouncer's SQLSTATE; the words name the setting.
    assert_eq!(sqlstate(&ended).as_deref(), Some("08P01"), "{ended:?}");
    let message = ended.as_db_error().map(|d| d.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("idle_transaction_timeout")),
        "{message:?}"
    );
    assert!(client.simple_query("COMMIT").await.is_err());
    assert_eq!(psql("SELECT count(*) FROM idle_t"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_resets_server_for_next_client() {
    let proxy = proxy(|c| {
        c.proxy.pool_mode = pgwarden::config::PoolMode::Session;
        c.proxy.default_pool_size = 1;
    })
    .await;
    let a = connect(&proxy, SCRAM_USER).await.unwrap();
    a.batch_execute("SET work_mem = '7MB'; CREATE TEMP TABLE mine (x int);")
        .await
        .unwrap();
    let pid_a = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    drop(a);
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    let pid_b = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(pid_a, pid_b, "the one server is reused");
    let wm = b
        .query_one("SHOW work_mem", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    assert_ne!(wm, "7MB");
    assert!(
        b.simple_query("SELECT * FROM mine").await.is_err(),
        "temp table must be gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_shares_servers_between_clients() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 1).await;
    let a = connect(&proxy, SCRAM_USER).await.unwrap();
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    let pa = a.simple_query("SELECT pg_backend_pid()").await.unwrap();
    let pb = b.simple_query("SELECT pg_backend_pid()").await.unwrap();
    let pid = |m: &[tokio_postgres::SimpleQueryMessage]| {
        m.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
    };
    assert_eq!(pid(&pa), pid(&pb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_transaction_finish() {
    psql("DROP TABLE IF EXISTS shut_t; CREATE TABLE shut_t (x int)");
    let proxy = proxy(|_| {}).await;
    let idle = connect(&proxy, SCRAM_USER).await.unwrap();
    let busy = connect(&proxy, SCRAM_USER).await.unwrap();
    busy.batch_execute("BEGIN; INSERT INTO shut_t VALUES (1);")
        .await
        .unwrap();
    let stopping = {
        let shared = proxy.shared.clone();
        tokio::spawn(async move {
            shared.begin_shutdown();
        })
    };
    stopping.await.unwrap();
    // The idle client is told to go with 57P01.
    let closed = eventually(Duration::from_secs(5), || async { idle.is_closed() }).await;
    assert!(closed);
    // The open transaction may still commit.
    busy.batch_execute("COMMIT").await.unwrap();
    assert_eq!(psql("SELECT count(*) FROM shut_t"), "1");
    assert!(proxy.shutdown(Duration::from_secs(5)).await);
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err()
            || connect(&proxy, SCRAM_USER).await.is_err()
    );
}

/// Three event loops (`worker_model = "per_core"`, `workers = 3`) share one
/// pool of two servers: every server is lent across loops, prepared
/// statements (the driver's default) follow the clients, counts stay exact,
/// a client that vanishes mid-transaction loses only its own work, and the
/// proxy drains and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_workers_share_one_pool_exactly() {
    psql("DROP TABLE IF EXISTS counter_workers; CREATE TABLE counter_workers (n bigint); INSERT INTO counter_workers VALUES (0);");
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 2;
        c.proxy.worker_model = pgwarden::config::WorkerModel::PerCore;
        c.proxy.workers = 3;
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
    })
    .await;
    let url = url(&proxy, TRUST_USER, "", DB);
    // Begins, writes, and leaves without committing.
    let vanishing = {
        let url = url.clone();
        tokio::spawn(async move {
            let client = connect_url(&url).await?;
            client
                .batch_execute("BEGIN; UPDATE counter_workers SET n = n + 1000000;")
                .await?;
            drop(client);
            Ok::<_, tokio_postgres::Error>(())
        })
    };
    let mut tasks = Vec::new();
    for i in 0..60 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect_url(&url).await?;
            let add = client
                .prepare("UPDATE counter_workers SET n = n + $1 RETURNING $1::bigint")
                .await?;
            for _ in 0..10 {
                let row = client.query_one(&add, &[&1i64]).await?;
                assert_eq!(row.get::<_, i64>(0), 1);
                let mine: String = client
                    .query_one("SELECT $1::text", &[&format!("client {i}")])
                    .await?
                    .get(0);
                assert_eq!(mine, format!("client {i}"));
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    vanishing.await.unwrap().unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(psql("SELECT n FROM counter_workers"), "600");
    let totals: Vec<_> = proxy
        .shared
        .pools
        .all()
        .iter()
        .map(|p| p.counts().1)
        .collect();
    assert!(
        totals.iter().all(|&t| t <= 2),
        "servers per pool: {totals:?}"
    );
    // Everyone has left: the proxy stops at once.
    assert!(proxy.shutdown(Duration::from_secs(10)).await);
}
