//! The admin console against a running proxy: PgBouncer's `SHOW` tables
//! with their columns and types, through psql and tokio-postgres (simple
//! and extended protocol), access rules, live `SET` and `RELOAD`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use pgwarden::app::Proxy;
use pgwarden::config::NameList;
use tokio_postgres::SimpleQueryMessage;

fn admins(cfg: &mut pgwarden::config::Config) {
    cfg.proxy.admin_users = NameList(vec![SCRAM_USER.into()]);
    cfg.proxy.stats_users = NameList(vec![MD5_USER.into()]);
}

/// A proxy with the console users and pgw's replicas in rotation.
async fn admin_proxy_with_replicas() -> Proxy {
    let proxy = proxy(|cfg| {
        admins(cfg);
        with_replicas(cfg);
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    proxy
}

/// A proxy with replicas (ready) and the HTTP side on `admin_listen`.
async fn http_proxy_with_replicas() -> Proxy {
    let proxy = proxy(|cfg| {
        admins(cfg);
        with_replicas(cfg);
        cfg.proxy.admin_listen = Some("127.0.0.1:0".into());
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    proxy
}

async fn console(proxy: &Proxy, user: &str, db: &str) -> tokio_postgres::Client {
    connect_url(&url(proxy, user, PASSWORD, db))
        .await
        .expect("console login")
}

/// Column names and rows (as text) of a simple-protocol query.
async fn table(c: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await.expect(sql) {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
            }
            _ => {}
        }
    }
    (columns, rows)
}

/// `sv_active + sv_idle` of database `pgw`'s SHOW POOLS rows on node `port`.
fn servers_on(cols: &[String], pools: &[Vec<Option<String>>], port: &str) -> i64 {
    pools
        .iter()
        .filter(|r| r[0].as_deref() == Some(DB) && column(cols, r, "port") == port)
        .map(|r| {
            column(cols, r, "sv_active").parse::<i64>().unwrap()
                + column(cols, r, "sv_idle").parse::<i64>().unwrap()
        })
        .sum()
}

fn column<'a>(cols: &[String], row: &'a [Option<String>], name: &str) -> &'a str {
    let i = cols.iter().position(|c| c == name).expect(name);
    row[i].as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_tables_with_their_columns() {
    let proxy = admin_proxy_with_replicas().await;
    // Five clients of pgw: one inside a transaction, four idle.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(&proxy, SCRAM_USER).await.unwrap());
    }
    clients[0].batch_execute("BEGIN; SELECT 1").await.unwrap();
    for c in &clients[1..] {
        c.simple_query("SELECT 1").await.unwrap();
    }
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;

    let (cols, rows) = table(&admin, "SHOW POOLS").await;
    assert_eq!(
        cols,
        [
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "host",
            "port",
            "role"
        ]
    );
    // One row per node: the primary's and each replica's (reads went there).
    let c = cluster();
    let ours: Vec<_> = rows
        .iter()
        .filter(|r| r[0].as_deref() == Some(DB) && r[1].as_deref() == Some(SCRAM_USER))
        .collect();
    let ports: std::collections::BTreeSet<&str> =
        ours.iter().map(|r| column(&cols, r, "port")).collect();
    assert!(
        ports.contains(c.primary.port.to_string().as_str()),
        "{ours:?}"
    );
    assert_eq!(ports.len(), ours.len(), "one row per node: {ours:?}");
    let (dcols, drows) = table(&admin, "SHOW DATABASES").await;
    let nodes: Vec<_> = drows
        .iter()
        .filter(|r| r[0].as_deref() == Some(DB))
        .collect();
    assert_eq!(nodes.len(), 1 + c.replicas.len(), "{drows:?}");
    for node in &nodes {
        let port = column(&dcols, node, "port");
        let role = column(&dcols, node, "role");
        assert_eq!(
            role == "primary",
            port == c.primary.port.to_string(),
            "{node:?}"
        );
        // current_connections is the node's: the servers of its pools.
        let servers = servers_on(&cols, &rows, port);
        assert_eq!(
            column(&dcols, node, "current_connections"),
            servers.to_string(),
            "{node:?}"
        );
    }
    let sum = |name: &str| -> u32 {
        ours.iter()
            .map(|r| column(&cols, r, name).parse::<u32>().unwrap())
            .sum()
    };
    assert_eq!(sum("cl_active"), 5);
    assert_eq!(sum("cl_waiting"), 0);
    assert_eq!(sum("sv_active"), 1, "the open transaction's server");
    let pool = ours[0];
    assert_eq!(column(&cols, pool, "pool_mode"), "transaction");

    let expect = [
        ("SHOW DATABASES", "name,host,port,database,force_user,pool_size,min_pool_size,reserve_pool,pool_mode,max_connections,current_connections,paused,disabled,role"),
        ("SHOW USERS", "name,pool_mode"),
        ("SHOW CONFIG", "key,value,default,changeable"),
        ("SHOW LISTS", "list,items"),
        ("SHOW MEM", "name,size,used,free,memtotal"),
        ("SHOW VERSION", "version"),
        ("SHOW STATE", "key,value"),
        ("SHOW NODES", "database,node,role,region,state,lag_bytes,lag_ms,replay_lsn,latency_us,outstanding,reads,writes,fallbacks,ryw_waits,check_failures"),
        ("SHOW ROUTING", "database,writer,reads,writes,replica_reads,fallbacks,ryw_waits,ryw_primary_reads,state_changes"),
        ("SHOW TENANTS", "tenant,region,allowed_regions,routed,out_of_region,refused"),
        ("SHOW LATENCY", "scope,database,user,node,count,p50_us,p95_us,p99_us,max_us"),
    ];
    for (sql, columns) in expect {
        let (cols, rows) = table(&admin, sql).await;
        assert_eq!(cols.join(","), columns, "{sql}");
        if sql != "SHOW TENANTS" {
            assert!(!rows.is_empty(), "{sql} has rows");
        }
    }
    // SHOW CLIENTS: the five clients; SHOW SERVERS: the open transaction's
    // server, linked to its client, and idle ones.
    let (cols, rows) = table(&admin, "SHOW CLIENTS").await;
    assert_eq!(cols.len(), 21);
    let ours: Vec<_> = rows
        .iter()
        .filter(|r| r[2].as_deref() == Some(DB))
        .collect();
    assert_eq!(ours.len(), 5, "{rows:?}");
    assert!(ours.iter().all(|r| column(&cols, r, "type") == "C"
        && column(&cols, r, "addr") == "127.0.0.1"
        && column(&cols, r, "connect_time").ends_with(" UTC")));
    let linked: Vec<_> = ours
        .iter()
        .filter(|r| !column(&cols, r, "link").is_empty())
        .collect();
    assert_eq!(linked.len(), 1, "only the open transaction holds a server");
    let (cols, rows) = table(&admin, "SHOW SERVERS").await;
    let active: Vec<_> = rows
        .iter()
        .filter(|r| column(&cols, r, "state") == "active")
        .collect();
    assert_eq!(active.len(), 1, "{rows:?}");
    assert_eq!(
        column(&cols, active[0], "link"),
        column(&cols, linked[0], "ptr")
    );
    assert!(
        rows.iter().any(|r| column(&cols, r, "state") == "idle"),
        "{rows:?}"
    );

    let (cols, rows) = table(&admin, "SHOW NODES").await;
    assert_eq!(rows.len(), 3);
    assert_eq!(column(&cols, &rows[0], "state"), "writer");
    assert!(rows[1..]
        .iter()
        .all(|r| column(&cols, r, "state") == "in_rotation"));
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let listen = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("listen"))
        .unwrap();
    assert_eq!(column(&cols, listen, "changeable"), "no");

    // Traffic: 4 auto-commit SELECTs, one open transaction of 2 statements
    // (its COMMIT comes later), all through pgw.
    let (cols, rows) = table(&admin, "SHOW STATS").await;
    assert_eq!(
        cols.join(","),
        "database,total_xact_count,total_query_count,total_received,total_sent,total_xact_time,\
         total_query_time,total_wait_time,avg_xact_count,avg_query_count,avg_recv,avg_sent,\
         avg_xact_time,avg_query_time,avg_wait_time,total_requests"
    );
    let stats = rows
        .iter()
        .find(|r| r[0].as_deref() == Some(DB))
        .expect("pgw stats");
    let n = |name: &str| column(&cols, stats, name).parse::<u64>().unwrap();
    assert!(n("total_xact_count") >= 4, "{stats:?}");
    assert!(n("total_query_count") >= 4, "{stats:?}");
    assert!(n("total_received") > 0 && n("total_sent") > 0, "{stats:?}");
    assert!(
        n("total_query_time") > 0 && n("total_xact_time") > 0,
        "{stats:?}"
    );
    for (sql, columns) in [
        ("SHOW STATS_TOTALS", "database,xact_count,query_count,bytes_received,bytes_sent,xact_time,query_time,wait_time"),
        ("SHOW STATS_AVERAGES", "database,xact_count,query_count,bytes_received,bytes_sent,xact_time,query_time,wait_time"),
    ] {
        assert_eq!(table(&admin, sql).await.0.join(","), columns, "{sql}");
    }
    let (cols, rows) = table(&admin, "SHOW LATENCY").await;
    let nodes: Vec<_> = rows
        .iter()
        .filter(|r| r[0].as_deref() == Some("node") && r[1].as_deref() == Some(DB))
        .collect();
    let count: u64 = nodes
        .iter()
        .map(|r| column(&cols, r, "count").parse::<u64>().unwrap())
        .sum();
    assert!(count >= 4, "{nodes:?}");
    assert!(
        nodes.iter().any(|r| column(&cols, r, "p50_us") != "0"),
        "{nodes:?}"
    );
    let rows = admin.query("SHOW STATS_TOTALS", &[]).await.unwrap();
    assert!(!rows.is_empty(), "numeric columns in binary format decode");

    // The extended protocol, typed as PgBouncer types them.
    let rows = admin.query("SHOW POOLS", &[]).await.unwrap();
    let pool = rows
        .iter()
        .find(|r| r.get::<_, &str>("database") == DB && r.get::<_, &str>("user") == SCRAM_USER)
        .unwrap();
    assert_eq!(pool.get::<_, i32>("cl_active"), 5);
    let version: String = admin.query_one("SHOW VERSION", &[]).await.unwrap().get(0);
    assert!(version.starts_with("pgwarden "), "{version}");

    // Mistakes get PostgreSQL's codes and the session goes on.
    // As PgBouncer answers (pgcli and others detect a pooler console by
    // it): 08P01, "invalid command".
    for sql in ["SELEKT 1", "SELECT 1", "SHOW NOTHING"] {
        let e = admin.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{sql}: {e}");
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(msg.starts_with("invalid command '"), "{sql}: {msg}");
        assert!(msg.ends_with("use SHOW HELP;"), "{sql}: {msg}");
    }
    let e = admin
        .simple_query("SET no_such_thing = 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42704"), "{e}");
    let e = admin
        .simple_query("SET default_pool_size = lots")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"), "{e}");
    let e = admin
        .simple_query("SET listen = '127.0.0.1:1'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55P02"), "{e}");
    assert_eq!(table(&admin, "SHOW VERSION").await.1.len(), 1);
    clients[0].batch_execute("COMMIT").await.unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules() {
    let proxy = proxy(|cfg| {
        admins(cfg);
        // Another role whose name differs only in case.
        let twin = cfg.users[SCRAM_USER].clone();
        cfg.users.insert(SCRAM_USER.to_uppercase(), twin);
    })
    .await;
    // stats_users: SHOW only.
    let stats = console(&proxy, MD5_USER, "pgwarden").await;
    assert_eq!(table(&stats, "SHOW POOLS").await.0.len(), 19);
    for sql in ["SET default_pool_size = 5", "PAUSE", "RELOAD", "SHUTDOWN"] {
        let e = stats.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // Anyone else: refused at login, as pg_hba would; role names are
    // case-sensitive, as in PgBouncer.
    for user in [PLAIN_USER.to_owned(), SCRAM_USER.to_uppercase()] {
        let e = connect_err(&url(&proxy, &user, PASSWORD, "pgwarden")).await;
        assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{user}: {e}");
    }
    // A wrong password is a wrong password.
    let e = connect_err(&url(&proxy, SCRAM_USER, "wrong", "pgwarden")).await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_the_console() {
    let proxy = proxy(admins).await;
    let (ok, text) = run_tool(
        std::process::Command::new(pg_tool("psql"))
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
            .arg(proxy.addr.port().to_string())
            .args([
                "-U",
                SCRAM_USER,
                "-d",
                "pgbouncer",
                "-c",
                "SHOW HELP",
                "-c",
                "SHOW VERSION",
            ])
            .env("PGPASSWORD", PASSWORD),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("SHOW HELP|CONFIG") && text.contains("pgwarden "),
        "{text}"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_applies_at_once_and_reload_keeps_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let c = cluster();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_users = \"{SCRAM_USER}\"\n# tuned live\ndefault_pool_size = 10\n\
         [databases.{DB}]\nprimary = \"{}\"\n\
         [users.{SCRAM_USER}]\npassword = \"{PASSWORD}\"\n",
        c.primary.addr()
    );
    std::fs::write(&file, &text).unwrap();
    let loaded = pgwarden::config::load(&file).unwrap();
    let proxy = Proxy::start(loaded).await.unwrap();
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;

    admin
        .simple_query("SET default_pool_size = 2")
        .await
        .unwrap();
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let size = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("default_pool_size"))
        .unwrap();
    assert_eq!(column(&cols, size, "value"), "2");
    // Six sleepers through a pool now capped at 2 servers.
    let mut sleepers = Vec::new();
    for _ in 0..6 {
        let client = connect(&proxy, SCRAM_USER).await.unwrap();
        sleepers.push(tokio::spawn(async move {
            client
                .simple_query("SELECT pg_sleep(0.3)")
                .await
                .map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (cols, rows) = table(&admin, "SHOW POOLS").await;
    let pool = rows.iter().find(|r| r[0].as_deref() == Some(DB)).unwrap();
    let servers: i32 = column(&cols, pool, "sv_active").parse::<i32>().unwrap()
        + column(&cols, pool, "sv_idle").parse::<i32>().unwrap();
    assert!(servers <= 2, "{servers} servers with default_pool_size = 2");
    assert!(column(&cols, pool, "cl_waiting").parse::<i32>().unwrap() >= 1);
    assert!(
        column(&cols, pool, "maxwait_us").parse::<i32>().unwrap() > 0,
        "the waiting clients' wait shows: {pool:?}"
    );
    for s in sleepers {
        s.await.unwrap().unwrap();
    }

    // A broken file is refused whole; the running config stays.
    std::fs::write(&file, "[proxy]\ndefault_pool_size = \"many\"\n").unwrap();
    let e = admin.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("F0000"), "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("line 2") && message.contains("\"many\""),
        "{message}"
    );
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let size = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("default_pool_size"))
        .unwrap();
    assert_eq!(column(&cols, size, "value"), "2");
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    // A file that moves the listener is refused as PostgreSQL refuses a
    // restart-only setting: SHOW CONFIG never names an address nothing
    // listens on.
    for moved in [
        text.replace("127.0.0.1:0", "127.0.0.1:1"),
        text.replace("[proxy]\n", "[proxy]\nadmin_listen = \"127.0.0.1:0\"\n"),
    ] {
        std::fs::write(&file, &moved).unwrap();
        let e = admin.simple_query("RELOAD").await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("55P02"), "{e}");
    }
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let listen = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("listen"))
        .unwrap();
    assert_eq!(column(&cols, listen, "value"), "127.0.0.1:0");

    // A good file applies, SET values give way to it.
    std::fs::write(&file, &text).unwrap();
    admin.simple_query("RELOAD").await.unwrap();
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let size = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("default_pool_size"))
        .unwrap();
    assert_eq!(column(&cols, size, "value"), "10");

    // SAVE CONFIG writes the SETs into the file, comments kept; a restart
    // from it has them.
    admin
        .simple_query("SET default_pool_size = 7")
        .await
        .unwrap();
    admin
        .simple_query(&format!("SET databases.{DB}.pool_size = 3"))
        .await
        .unwrap();
    let (cols, rows) = table(&admin, "SHOW DATABASES").await;
    let db = rows.iter().find(|r| r[0].as_deref() == Some(DB)).unwrap();
    assert_eq!(column(&cols, db, "pool_size"), "3");
    let e = admin
        .simple_query(&format!("SET databases.{DB}.primary = '127.0.0.1:1'"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55P02"), "{e}");
    admin.simple_query("SAVE CONFIG").await.unwrap();
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("# tuned live\ndefault_pool_size = 7"),
        "{saved}"
    );
    assert!(saved.contains("pool_size = 3"), "{saved}");
    proxy.shutdown(Duration::from_secs(5)).await;
    let restarted = Proxy::start(pgwarden::config::load(&file).unwrap())
        .await
        .unwrap();
    let admin = console(&restarted, SCRAM_USER, "pgwarden").await;
    let (cols, rows) = table(&admin, "SHOW CONFIG").await;
    let size = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("default_pool_size"))
        .unwrap();
    assert_eq!(column(&cols, size, "value"), "7");
    restarted.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_under_pgbench_loses_nothing() {
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tx.sql");
    std::fs::write(
        &script,
        "BEGIN;\nSELECT 1;\nSELECT pg_sleep(0.001);\nEND;\n",
    )
    .unwrap();
    let port = proxy.addr.port();
    let script_arg = script.display().to_string();
    let bench = std::thread::spawn(move || {
        pgbench(
            port,
            &["-n", "-c", "8", "-j", "2", "-T", "4", "-f", &script_arg],
        )
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;

    admin.simple_query(&format!("PAUSE {DB}")).await.unwrap();
    let xacts = |rows: Vec<Vec<Option<String>>>, cols: Vec<String>| -> u64 {
        let row = rows.iter().find(|r| r[0].as_deref() == Some(DB)).unwrap();
        column(&cols, row, "xact_count").parse().unwrap()
    };
    let (cols, rows) = table(&admin, "SHOW STATS_TOTALS").await;
    let paused_at = xacts(rows, cols);
    let (cols, rows) = table(&admin, "SHOW DATABASES").await;
    let db = rows.iter().find(|r| r[0].as_deref() == Some(DB)).unwrap();
    assert_eq!(column(&cols, db, "paused"), "1");
    let (cols, rows) = table(&admin, "SHOW POOLS").await;
    let pool = rows.iter().find(|r| r[0].as_deref() == Some(DB)).unwrap();
    assert_eq!(
        column(&cols, pool, "sv_active"),
        "0",
        "PAUSE returned with servers busy"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cols, rows) = table(&admin, "SHOW STATS_TOTALS").await;
    assert_eq!(
        xacts(rows, cols),
        paused_at,
        "transactions ran while paused"
    );
    // The clients PAUSE holds are waiting, with their wait time.
    let (cols, rows) = table(&admin, "SHOW CLIENTS").await;
    let held: Vec<_> = rows
        .iter()
        .filter(|r| r[2].as_deref() == Some(DB))
        .filter(|r| column(&cols, r, "state") == "waiting")
        .collect();
    assert!(!held.is_empty(), "no client shows as waiting: {rows:?}");
    for r in &held {
        let waited_us = column(&cols, r, "wait").parse::<i64>().unwrap() * 1_000_000
            + column(&cols, r, "wait_us").parse::<i64>().unwrap();
        assert!(waited_us >= 400_000, "a held client's wait: {r:?}");
    }

    admin.simple_query("RESUME").await.unwrap();
    let (ok, out) = bench.join().unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let (cols, rows) = table(&admin, "SHOW STATS_TOTALS").await;
    assert!(xacts(rows, cols) > paused_at, "work went on after RESUME");
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_reconnect_and_shutdown() {
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let before = backend_pid(&client).await;

    admin.simple_query(&format!("DISABLE {DB}")).await.unwrap();
    let e = connect(&proxy, SCRAM_USER).await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("57P03"), "{e}");
    client
        .simple_query("SELECT 1")
        .await
        .expect("connected clients stay");
    admin.simple_query(&format!("ENABLE {DB}")).await.unwrap();
    connect(&proxy, SCRAM_USER).await.expect("enabled again");

    // RECONNECT while a transaction holds a server: WAIT_CLOSE returns
    // once that server has come back and been closed.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(backend_pid(&client).await, before);
    admin
        .simple_query(&format!("RECONNECT {DB}"))
        .await
        .unwrap();
    let waiter = {
        let url = url(&proxy, SCRAM_USER, PASSWORD, "pgwarden");
        tokio::spawn(async move {
            let admin = connect_url(&url).await.unwrap();
            admin.simple_query("WAIT_CLOSE").await.map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "WAIT_CLOSE returned with an old server open"
    );
    client.batch_execute("COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("WAIT_CLOSE returns once the server is closed")
        .unwrap()
        .unwrap();
    assert_ne!(
        backend_pid(&client).await,
        before,
        "a fresh server after RECONNECT"
    );
    admin.simple_query("SUSPEND").await.unwrap();
    let (cols, rows) = table(&admin, "SHOW STATE").await;
    let suspended = rows
        .iter()
        .find(|r| r[0].as_deref() == Some("suspended"))
        .unwrap();
    assert_eq!(column(&cols, suspended, "value"), "yes");
    admin.simple_query("RESUME").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // PgBouncer's answer to a database it does not have, for every
    // command that names one.
    for command in [
        "PAUSE nosuchdb",
        "RESUME nosuchdb",
        "KILL nosuchdb",
        "ENABLE nosuchdb",
        "DISABLE nosuchdb",
        "RECONNECT nosuchdb",
    ] {
        let e = admin.simple_query(command).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{command}: {e}");
        let text = e.as_db_error().map(|d| d.message().to_owned());
        assert_eq!(
            text.as_deref(),
            Some("no such database: nosuchdb"),
            "{command}"
        );
    }

    let _ = admin.simple_query("SHUTDOWN").await;
    assert!(proxy.shared.is_stopping());
    assert!(proxy.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bearer_token_guards_everything_but_health() {
    let proxy = proxy(|cfg| {
        cfg.proxy.admin_listen = Some("127.0.0.1:0".into());
        cfg.proxy.admin_http_token = Some("t0ken-s3cret".into());
    })
    .await;
    for path in ["/metrics", "/pools", "/ready"] {
        assert_eq!(http_get(&proxy, path).await.0, 401, "{path}");
        let wrong = "Authorization: Bearer t0ken-s3creT\r\n";
        assert_eq!(http_get_with(&proxy, path, wrong).await.0, 401, "{path}");
        let right = "authorization: bearer t0ken-s3cret\r\n";
        assert_eq!(http_get_with(&proxy, path, right).await.0, 200, "{path}");
    }
    assert_eq!(http_get(&proxy, "/health").await.0, 200);
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metrics_health_ready_pools() {
    let proxy = http_proxy_with_replicas().await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    for _ in 0..10 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    let _ = connect_err(&url(&proxy, SCRAM_USER, "wrong", DB)).await;

    let (status, text) = http_get(&proxy, "/metrics").await;
    assert_eq!(status, 200);
    // Prometheus text: `# HELP`/`# TYPE` lines, and `name{labels} value`.
    let mut names = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect(line);
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty(),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        names.insert(name.to_owned());
    }
    for expected in [
        "pgwarden_clients",
        "pgwarden_clients_parked",
        "pgwarden_pool_clients",
        "pgwarden_pool_waiting_clients",
        "pgwarden_pool_active_servers",
        "pgwarden_pool_wait_seconds_total",
        "pgwarden_transactions_total",
        "pgwarden_queries_total",
        "pgwarden_received_bytes_total",
        "pgwarden_node_up",
        "pgwarden_node_lag_bytes",
        "pgwarden_node_transactions_total",
        "pgwarden_errors_total",
        "pgwarden_query_duration_seconds_bucket",
        "pgwarden_query_duration_seconds_sum",
        "pgwarden_query_duration_seconds_count",
        "pgwarden_database_split_brain",
    ] {
        assert!(names.contains(expected), "{expected} missing from:\n{text}");
    }
    // By the book: every family has HELP and TYPE, counters end in _total,
    // no unit but seconds and bytes; then Prometheus' own linter agrees.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split(' ').skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        assert!(!name.contains("micro") && !name.contains("milli"), "{line}");
    }
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pgwarden_query_duration_seconds_bucket"))
        .collect();
    assert!(
        buckets.iter().any(|l| l.contains("le=\"0.0001\"")),
        "{buckets:?}"
    );
    assert!(
        buckets.iter().any(|l| l.contains("le=\"10\"")),
        "{buckets:?}"
    );
    assert!(
        buckets.iter().any(|l| l.contains("le=\"+Inf\"")),
        "{buckets:?}"
    );
    promtool_check_metrics(&text);
    // The shipped alert rules and dashboard name only series that exist.
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for file in ["pgwarden-alerts.yml", "grafana-dashboard.json"] {
        let shipped = std::fs::read_to_string(monitoring_dir().join(file)).unwrap();
        for name in series_names(&shipped) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
                .unwrap_or(&name);
            assert!(
                families.contains(family),
                "{file} uses {name}, which /metrics lacks"
            );
        }
    }
    assert!(
        text.contains("pgwarden_errors_total{sqlstate=\"28P01\"} 1"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD));

    assert_eq!(http_get(&proxy, "/health").await, (200, "ok\n".into()));
    let (status, ready) = http_get(&proxy, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["databases"][DB]["ready"], true, "{ready}");
    let (status, pools) = http_get(&proxy, "/pools").await;
    assert_eq!(status, 200);
    let pools: serde_json::Value = serde_json::from_str(&pools).unwrap();
    assert!(
        pools["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["database"] == DB && p["clients"] == 1),
        "{pools}"
    );
    assert!(!pools.to_string().contains(PASSWORD));
    assert_eq!(http_get(&proxy, "/nope").await.0, 404);
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_without_a_primary() {
    // A monitored database whose primary does not answer.
    let proxy = proxy(|cfg| {
        cfg.proxy.admin_listen = Some("127.0.0.1:0".into());
        let db = cfg.databases.get_mut(DB).unwrap();
        db.primary = "127.0.0.1:1".into();
        db.replicas = vec!["127.0.0.1:2".to_owned().into()];
        db.routing.monitor_user = Some(SCRAM_USER.into());
        db.routing.monitor_password = Some(PASSWORD.into());
    })
    .await;
    let not_ready = eventually(Duration::from_secs(10), || async {
        http_get(&proxy, "/ready").await.0 == 503
    })
    .await;
    assert!(not_ready, "{:?}", http_get(&proxy, "/ready").await);
    assert_eq!(http_get(&proxy, "/health").await.0, 200);
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Debian's `prometheus-pgbouncer-exporter`, pointed at the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_pgbouncer_exporter_reads_the_console() {
    let exporter = std::path::Path::new("/usr/bin/prometheus-pgbouncer-exporter");
    if !exporter.exists() {
        missing_dependency("prometheus-pgbouncer-exporter");
        return;
    }
    let proxy = proxy(admins).await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let port = pgwarden::localpg::free_port_range(1).expect("a free port");
    let mut child = std::process::Command::new(exporter)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--pgbouncer-host", "127.0.0.1", "--pgbouncer-port"])
        .arg(proxy.addr.port().to_string())
        .args(["--pgbouncer-user", MD5_USER])
        .env("PGPASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let scrape = || async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    let mut text = None;
    for _ in 0..100 {
        if let Some(t) = scrape().await {
            text = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let text = text.unwrap_or_else(|| panic!("the exporter never answered:\n{log}"));
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}\n{log}"
    );
    for series in [
        format!("pgbouncer_active_clients{{database=\"{DB}\",user=\"{SCRAM_USER}\"}} 1.0"),
        format!("pgbouncer_requests_total{{database=\"{DB}\"}}"),
        "pgbouncer_used_clients".to_owned(),
        format!("pgbouncer_pool_size{{database=\"{DB}\"}} 10.0"),
    ] {
        assert!(text.contains(&series), "{series} missing:\n{text}\n{log}");
    }
    assert!(!log.contains("Traceback"), "{log}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_node_takes_it_out_of_rotation() {
    let proxy = admin_proxy_with_replicas().await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let c = cluster();
    let (r1, r2) = (c.replicas[0].port, c.replicas[1].port);
    let ports = |n: usize| {
        let client = &client;
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..n {
                let row = client
                    .query_one("SELECT inet_server_port()", &[])
                    .await
                    .unwrap();
                seen.insert(row.get::<_, i32>(0) as u16);
            }
            seen
        }
    };
    assert!(
        ports(40).await.contains(&r1),
        "reads reach replica 1 before"
    );

    admin
        .simple_query(&format!("DRAIN NODE 127.0.0.1:{r1}"))
        .await
        .unwrap();
    let seen = ports(40).await;
    assert!(!seen.contains(&r1) && seen.contains(&r2), "{seen:?}");
    let (cols, rows) = table(&admin, "SHOW NODES").await;
    let node = rows
        .iter()
        .find(|r| r[1].as_deref() == Some(format!("127.0.0.1:{r1}").as_str()))
        .unwrap();
    assert_eq!(column(&cols, node, "state"), "drained");

    let e = admin
        .simple_query(&format!("DRAIN NODE {}", c.primary.addr()))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
    let e = admin
        .simple_query("DRAIN NODE 127.0.0.1:1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42704"), "{e}");

    admin
        .simple_query(&format!("UNDRAIN NODE 127.0.0.1:{r1}"))
        .await
        .unwrap();
    assert!(
        ports(40).await.contains(&r1),
        "back in rotation after UNDRAIN"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `KILL` without a database: the clients of every database end, the
/// console's own connections stay, and `RESUME` serves new clients again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_without_a_database_ends_every_client_but_the_consoles() {
    let other = "pgw_other";
    let proxy = proxy(|c| {
        admins(c);
        let mut second = c.databases[DB].clone();
        second.dbname = Some(DB.into());
        c.databases.insert(other.into(), second);
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let watcher = console(&proxy, MD5_USER, "pgbouncer").await;
    let first = connect(&proxy, SCRAM_USER).await.unwrap();
    let second = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, other))
        .await
        .unwrap();
    for c in [&first, &second] {
        c.simple_query("SELECT 1").await.unwrap();
    }
    admin.simple_query("KILL").await.unwrap();
    for (name, c) in [("first", &first), ("second", &second)] {
        let gone = eventually(Duration::from_secs(3), || async {
            c.simple_query("SELECT 1").await.is_err()
        })
        .await;
        assert!(gone, "the {name} database's client was not ended");
    }
    assert!(admin.simple_query("SHOW POOLS").await.is_ok());
    assert!(watcher.simple_query("SHOW CLIENTS").await.is_ok());
    admin.simple_query("RESUME").await.unwrap();
    let late = connect(&proxy, SCRAM_USER).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), late.simple_query("SELECT 1"))
        .await
        .expect("served after RESUME")
        .unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Clients that keep sending `SELECT 1` through a `KILL` all end: none
/// has its next query read and left behind the pause the kill puts on
/// the database (the race that once left one client waiting for `RESUME`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_clients_that_keep_sending() {
    const CLIENTS: usize = 30;
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let mut loops = Vec::new();
    for _ in 0..CLIENTS {
        let c = connect(&proxy, SCRAM_USER).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        loops.push(tokio::spawn(async move {
            // Bounded: a client the kill never reaches stops by itself
            // and is counted below.
            let until = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < until {
                let step = tokio::time::timeout(Duration::from_secs(2), c.simple_query("SELECT 1"));
                match step.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ok(e.as_db_error().map(|d| d.code().code().to_owned())),
                    Err(_) => return Err("a query hung after the kill"),
                }
            }
            Err("outlived the kill")
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(5), admin.simple_query("KILL"))
        .await
        .expect("KILL answers")
        .unwrap();
    let mut survivors = Vec::new();
    for l in loops {
        match l.await.unwrap() {
            // 08P01 "admin forced disconnect", or the socket found closed.
            Ok(None) => {}
            Ok(Some(code)) if code == "08P01" => {}
            Ok(Some(code)) => survivors.push(format!("ended with {code}")),
            Err(why) => survivors.push(why.to_owned()),
        }
    }
    assert!(
        survivors.is_empty(),
        "{} of {CLIENTS}: {survivors:?}",
        survivors.len()
    );
    admin.simple_query("RESUME").await.unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_databases_clients_until_resume() {
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let idle = connect(&proxy, SCRAM_USER).await.unwrap();
    idle.simple_query("SELECT 1").await.unwrap();
    let busy = connect(&proxy, SCRAM_USER).await.unwrap();
    let sleeping = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(5)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::time::timeout(
        Duration::from_secs(5),
        admin.simple_query(&format!("KILL {DB}")),
    )
    .await
    .expect("KILL answers")
    .unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(3), sleeping)
        .await
        .expect("the running query ends at once")
        .unwrap()
        .unwrap_err();
    // Ended as PgBouncer ends it: "admin forced disconnect" (08P01); the
    // statement was cancelled on the server as well.
    assert_eq!(
        sqlstate(&cancelled).as_deref(),
        Some("08P01"),
        "{cancelled}"
    );
    assert!(format!("{cancelled:?}").contains("admin forced disconnect"));
    let gone = eventually(Duration::from_secs(3), || async {
        idle.simple_query("SELECT 1").await.is_err()
    })
    .await;
    assert!(gone, "the idle client was not ended");

    // New clients log in but wait for RESUME.
    let late = tokio::time::timeout(Duration::from_secs(5), connect(&proxy, SCRAM_USER))
        .await
        .expect("a login to a killed database is answered")
        .unwrap();
    let waiting = tokio::spawn(async move { late.simple_query("SELECT 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a killed database serves nothing before RESUME"
    );
    admin.simple_query(&format!("RESUME {DB}")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("served after RESUME")
        .unwrap()
        .unwrap();
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// psql against the console: every `SHOW` that `SHOW HELP` lists works,
/// every command of the console is listed, and `SHOW QUERIES` with
/// `query_stats` off says why it is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_help_lists_every_command_and_each_listed_show_works() {
    let proxy = proxy(admins).await;
    let psql = |commands: &[&str]| {
        let mut cmd = std::process::Command::new(pg_tool("psql"));
        cmd.args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
            .arg(proxy.addr.port().to_string())
            .args(["-U", SCRAM_USER, "-d", "pgbouncer", "-v", "ON_ERROR_STOP=1"])
            .env("PGPASSWORD", PASSWORD);
        for c in commands {
            cmd.args(["-c", c]);
        }
        run_tool(&mut cmd)
    };
    let (ok, help) = psql(&["SHOW HELP"]);
    assert!(ok, "{help}");
    let lines: Vec<&str> = help
        .lines()
        .map(|l| l.trim().trim_start_matches("DETAIL:").trim())
        .collect();
    let mut shows = Vec::new();
    for line in &lines {
        if let Some(names) = line.strip_prefix("SHOW ") {
            shows.extend(names.split('|').map(str::to_owned));
        }
    }
    for expected in [
        "STATS",
        "STATS_TOTALS",
        "STATS_AVERAGES",
        "NODES",
        "QUERIES",
        "MEM",
    ] {
        assert!(
            shows.iter().any(|s| s == expected),
            "{expected} not in:\n{help}"
        );
    }
    for command in [
        "DRAIN NODE",
        "UNDRAIN NODE",
        "SWITCHOVER",
        "SET",
        "SAVE CONFIG",
        "RELOAD",
        "PAUSE",
        "RESUME",
        "DISABLE",
        "ENABLE",
        "RECONNECT",
        "WAIT_CLOSE",
        "SUSPEND",
        "KILL",
        "SHUTDOWN",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(command)),
            "{command} not in:\n{help}"
        );
    }
    let listed: Vec<String> = shows
        .iter()
        .filter(|s| *s != "HELP")
        .map(|s| format!("SHOW {s}"))
        .collect();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    let (ok, text) = psql(&listed);
    assert!(ok, "a listed SHOW failed: {text}");
    assert!(
        text.contains("NOTICE:  query_stats is off"),
        "SHOW QUERIES with query_stats off: {text}"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_queries_groups_by_fingerprint_when_enabled() {
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(
        table(&admin, "SHOW QUERIES").await.1.is_empty(),
        "off by default"
    );

    admin.simple_query("SET query_stats = true").await.unwrap();
    for i in 0..20 {
        client
            .simple_query(&format!("SELECT {i} AS n, 'tag{i}'"))
            .await
            .unwrap();
    }
    let stmt = client.prepare("SELECT $1::int + 1").await.unwrap();
    for i in 0..7 {
        client.query(&stmt, &[&i]).await.unwrap();
    }
    let (cols, rows) = table(&admin, "SHOW QUERIES").await;
    assert_eq!(
        cols.join(","),
        "fingerprint,query,calls,total_us,mean_us,p50_us,p95_us,p99_us"
    );
    let simple = rows
        .iter()
        .find(|r| column(&cols, r, "query") == "select ? as n, ?")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(column(&cols, simple, "calls"), "20");
    assert!(column(&cols, simple, "p99_us").parse::<u64>().unwrap() > 0);
    let prepared = rows
        .iter()
        .find(|r| column(&cols, r, "query") == "select ?::int + ?")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(column(&cols, prepared, "calls"), "7");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Every SHOW, through both protocols, while pgbench runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_under_pgbench_load() {
    let proxy = proxy(|cfg| {
        admins(cfg);
        with_replicas(cfg);
        cfg.proxy.query_stats = true;
    })
    .await;
    assert!(replicas_ready(&proxy).await);
    let port = proxy.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("read.sql");
    std::fs::write(&script, "\\set x random(1, 1000)\nSELECT :x::int + 1;\n").unwrap();
    let script = script.display().to_string();
    let bench = std::thread::spawn(move || {
        pgbench(
            port,
            &[
                "-n", "-c", "8", "-j", "2", "-T", "3", "-M", "extended", "-f", &script,
            ],
        )
    });
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shows = [
        "POOLS",
        "STATS",
        "STATS_TOTALS",
        "STATS_AVERAGES",
        "DATABASES",
        "SERVERS",
        "CLIENTS",
        "USERS",
        "CONFIG",
        "LISTS",
        "MEM",
        "VERSION",
        "STATE",
        "NODES",
        "ROUTING",
        "TENANTS",
        "LATENCY",
        "QUERIES",
    ];
    for round in 0..3 {
        for what in shows {
            let sql = format!("SHOW {what}");
            let simple = table(&admin, &sql).await;
            assert!(!simple.0.is_empty(), "{sql}: no columns");
            let typed = admin
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if what != "TENANTS" && round > 0 {
                assert!(
                    !typed.is_empty() || what == "QUERIES",
                    "{sql}: no rows under load"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ok, out) = bench.join().unwrap();
    assert!(ok, "{out}");
    let (cols, rows) = table(&admin, "SHOW CLIENTS").await;
    assert!(rows.iter().all(|r| column(&cols, r, "type") == "C"));
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `SET max_prepared_statements` applies to clients already connected: a
/// server's statement cache keeps to the new size from the next statement
/// (PgBouncer's `test_evict_statement_cache`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_max_prepared_statements_applies_to_connected_clients() {
    let proxy = proxy(|c| {
        admins(c);
        c.proxy.default_pool_size = 1;
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let count = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> i64 {
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .unwrap()
    };
    for i in 0..5 {
        let s = client.prepare(&format!("SELECT {i}")).await.unwrap();
        client.query(&s, &[]).await.unwrap();
    }
    let on_server = || async {
        let sql = "SELECT count(*) FROM pg_prepared_statements";
        count(client.simple_query(sql).await.unwrap())
    };
    let before = on_server().await;
    assert!(before >= 5, "{before} statements on the server");
    admin
        .simple_query("SET max_prepared_statements = 2")
        .await
        .unwrap();
    let s = client.prepare("SELECT 'after'").await.unwrap();
    client.query(&s, &[]).await.unwrap();
    let after = on_server().await;
    assert!(
        after <= 2,
        "{after} statements on the server after SET max_prepared_statements = 2"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// psql's password prompt (connect, see the password request, close, ask
/// the user, reconnect) is not a refusal: nothing is counted (nor logged
/// as a protocol violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_prompt_is_not_an_error() {
    use tokio::io::AsyncReadExt;
    let proxy = proxy(|cfg| cfg.proxy.admin_listen = Some("127.0.0.1:0".into())).await;
    for _ in 0..3 {
        let mut sock = send_startup(&proxy, &[("user", SCRAM_USER), ("database", DB)]).await;
        let mut first = [0u8; 1];
        sock.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], b'R', "a password request");
        drop(sock);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, metrics) = http_get(&proxy, "/metrics").await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("pgwarden_errors_total")),
        "{metrics}"
    );
    // A login still works afterwards.
    connect(&proxy, SCRAM_USER).await.unwrap();
}

/// `promtool check metrics` (Debian's `prometheus` package) on `text`: no
/// problem reported.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return missing_dependency("promtool (Debian's prometheus package)");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

fn monitoring_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring")
}

/// The `pgwarden_*` series names in a text.
fn series_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("pgwarden_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The shipped alert rules pass `promtool check rules` and their unit
/// tests (`promtool test rules`); every dashboard query parses as PromQL
/// (checked as recording rules).
#[test]
fn alert_rules_and_dashboard_queries_are_valid() {
    let dir = monitoring_dir();
    let promtool = |args: &[&str]| {
        std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
    };
    let Ok(out) = promtool(&["check", "rules", "pgwarden-alerts.yml"]) else {
        return missing_dependency("promtool (Debian's prometheus package)");
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = promtool(&["test", "rules", "pgwarden-alerts.test.yml"]).unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:query{n}\n        expr: {}\n",
                serde_json::to_string(expr).unwrap()
            ));
        }
    }
    assert!(n >= 10, "{n} queries");
    let file = std::env::temp_dir().join(format!("pgwarden-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, rules).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The status page at `/`, loaded in headless Chromium (Debian's
/// `chromium`) against a proxy with a primary and two replicas: one HTML
/// page without script that reloads itself, whose nodes table says what
/// `SHOW NODES` says. A screenshot is left in `target/status-page.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_matches_show_nodes() {
    let proxy = http_proxy_with_replicas().await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    for _ in 0..20 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    let url = format!("http://{}/", proxy.admin_addr.unwrap());
    let profile = tempfile_dir("chromium-profile");
    let chromium = |extra: &[&str]| {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
    };
    let Ok(dom) = chromium(&["--dump-dom"]) else {
        return missing_dependency("chromium (Debian's chromium package)");
    };
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let admin = console(&proxy, SCRAM_USER, "pgwarden").await;
    let (cols, nodes) = table(&admin, "SHOW NODES").await;
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    let out = chromium(&[
        "--window-size=1400,1100",
        &format!("--screenshot={}", shot.display()),
    ])
    .unwrap();
    assert!(out.status.success() && shot.exists(), "no screenshot");

    assert!(dom.contains("http-equiv=\"refresh\""), "reloads itself");
    assert!(!dom.contains("<script"), "no script");
    let page = rows_of(&dom, "nodes");
    let ours: Vec<_> = nodes
        .iter()
        .filter(|r| r[0].as_deref() == Some(DB))
        .collect();
    assert_eq!(
        page.iter().filter(|r| r["database"] == DB).count(),
        ours.len(),
        "{page:?}"
    );
    for node in ours {
        let addr = column(&cols, node, "node");
        let shown = page
            .iter()
            .find(|r| r["node"] == addr)
            .unwrap_or_else(|| panic!("{addr} not on the page: {page:?}"));
        for name in ["database", "role", "region", "state"] {
            assert_eq!(shown[name], column(&cols, node, name), "{addr} {name}");
        }
    }
    let pools = rows_of(&dom, "pools");
    let ports: std::collections::BTreeSet<_> = pools
        .iter()
        .filter(|r| r["database"] == DB)
        .map(|r| r["port"].clone())
        .collect();
    assert!(
        ports.contains(&cluster().primary.port.to_string()),
        "{pools:?}"
    );
    assert!(dom.contains("id=\"minute\"") && dom.contains("id=\"tenants\""));
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A fresh directory under the system's temporary one.
fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgwarden-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The rows of the page's table `id`, as column name to cell text.
fn rows_of(dom: &str, id: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let start = dom.find(&format!("<table id=\"{id}\">")).expect(id);
    let body = &dom[start..];
    let body = &body[..body.find("</table>").expect("end of table")];
    let mut rows = Vec::new();
    for tr in body.split("<tr>").skip(2) {
        let mut row = std::collections::BTreeMap::new();
        for td in tr.split("<td class=\"").skip(1) {
            let (class, rest) = td.split_once("\">").unwrap_or(("", ""));
            let name = class.split(' ').next().unwrap_or("").to_owned();
            let text = rest.split("</td>").next().unwrap_or("");
            row.insert(name, text.replace("&amp;", "&"));
        }
        rows.push(row);
    }
    rows
}

/// On a cluster of its own (so no other test's connections count): after
/// reads and writes through the proxy, each node's row in SHOW DATABASES
/// (`current_connections`) and its SHOW POOLS rows (`sv_active + sv_idle`)
/// count exactly the pgwarden server connections that node's
/// `pg_stat_activity` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_rows_match_each_nodes_pg_stat_activity() {
    let c = fresh_cluster(1);
    let proxy = Proxy::start(config_for(&c, |cfg| {
        cfg.proxy.admin_users = NameList(vec!["postgres".into()]);
    }))
    .await
    .unwrap();
    assert!(replicas_ready(&proxy).await);
    let user_url = url(&proxy, "postgres", &c.superuser_password, DB);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect_url(&user_url).await.unwrap());
    }
    // Concurrent reads (to the replica) and writes (to the primary), so
    // that each node opens a few servers.
    clients[0]
        .batch_execute("CREATE TABLE IF NOT EXISTS per_node (v int)")
        .await
        .unwrap();
    let work = clients.iter().enumerate().map(|(i, client)| async move {
        for _ in 0..20 {
            match i % 2 {
                0 => client.simple_query("SELECT pg_sleep(0.01)").await.map(drop),
                _ => {
                    client
                        .batch_execute("INSERT INTO per_node VALUES (1)")
                        .await
                }
            }
            .unwrap();
        }
    });
    futures::future::join_all(work).await;
    let admin = connect_url(&url(&proxy, "postgres", &c.superuser_password, "pgwarden"))
        .await
        .unwrap();
    let nodes: Vec<(u16, &str)> = std::iter::once((c.primary.port, "primary"))
        .chain(c.replicas.iter().map(|r| (r.port, "replica")))
        .collect();
    let matched = eventually(Duration::from_secs(5), || {
        let (admin, c, nodes) = (&admin, &c, &nodes);
        async move {
            let (pcols, pools) = table(admin, "SHOW POOLS").await;
            let (dcols, dbs) = table(admin, "SHOW DATABASES").await;
            let mut all = true;
            for (port, role) in nodes {
                let port_s = port.to_string();
                let node = direct_to(c, *port, "postgres").await;
                let seen: i64 = node
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' \
                         AND usename = 'postgres' AND backend_type = 'client backend' \
                         AND application_name NOT LIKE 'pgwarden %' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                let row = dbs
                    .iter()
                    .find(|r| r[0].as_deref() == Some(DB) && column(&dcols, r, "port") == port_s)
                    .expect("a SHOW DATABASES row per node");
                assert_eq!(column(&dcols, row, "role"), *role);
                let servers = servers_on(&pcols, &pools, &port_s);
                let current: i64 = column(&dcols, row, "current_connections").parse().unwrap();
                all &= seen > 0 && seen == servers && seen == current;
            }
            all
        }
    })
    .await;
    assert!(matched, "per-node counts never matched pg_stat_activity");
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `stats_period`: `SHOW STATS`' averages cover the configured period, so
/// with one second they show the traffic of the last second soon after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_period_sets_the_averages_window() {
    let proxy = proxy(|c| {
        admins(c);
        c.proxy.stats_period = pgwarden::config::duration::Secs::from_secs(1);
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let averaged = eventually(Duration::from_secs(6), || async {
        for _ in 0..20 {
            client.simple_query("SELECT 1").await.unwrap();
        }
        let (cols, rows) = table(&admin, "SHOW STATS").await;
        rows.iter().any(|r| {
            column(&cols, r, "database") == DB
                && column(&cols, r, "avg_xact_count")
                    .parse::<u64>()
                    .unwrap_or(0)
                    > 0
        })
    })
    .await;
    assert!(averaged, "averages within a few one-second periods");
    // SHOW TOTALS: the same, summed over databases, as name/value rows.
    let (cols, rows) = table(&admin, "SHOW TOTALS").await;
    assert_eq!(cols, ["name", "value"]);
    let value = |name: &str| -> u64 {
        let row = rows
            .iter()
            .find(|r| r[0].as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} in SHOW TOTALS"));
        column(&cols, row, "value").parse().unwrap()
    };
    assert!(value("total_xact_count") >= 20);
    assert!(value("total_server_assignment_count") >= 20);
    assert!(value("total_client_bytes") > 0 && value("total_server_bytes") > 0);
    assert!(value("avg_xact_count") > 0);
    assert_eq!(rows.len(), 22, "PgBouncer 1.25's rows");
    proxy.shutdown(Duration::from_secs(5)).await;
}

const SOCKET_COLUMNS: &str = "type,user,database,replication,state,addr,port,local_addr,\
local_port,connect_time,request_time,wait,wait_us,close_needed,ptr,link,remote_pid,tls,\
application_name,prepared_statements,id";

/// PgBouncer 1.25's socket tables: `SHOW CLIENTS`/`SERVERS` with
/// `replication`, `prepared_statements` and `id`, and the `idle` state;
/// `SHOW SOCKETS`, `ACTIVE_SOCKETS`, `FDS`, `DNS_HOSTS`, `DNS_ZONES`; and
/// `KILL_CLIENT id`, which ends that client only ("admin forced
/// disconnect", 08P01). The database's primary is given by host name
/// (`localhost`), resolved when a server is opened and listed in
/// `SHOW DNS_HOSTS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_1_25_socket_tables_and_kill_client() {
    let port = cluster().primary.port;
    let proxy = proxy(|c| {
        admins(c);
        c.databases.get_mut(DB).unwrap().primary = format!("localhost:{port}");
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let idle = connect(&proxy, SCRAM_USER).await.unwrap();
    idle.simple_query("SELECT 1").await.unwrap();
    let busy = connect(&proxy, MD5_USER).await.unwrap();
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();

    let (cols, rows) = table(&admin, "SHOW CLIENTS").await;
    assert_eq!(cols.join(","), SOCKET_COLUMNS);
    let state_of = |user: &str| {
        let r = rows
            .iter()
            .find(|r| column(&cols, r, "user") == user)
            .unwrap();
        (
            column(&cols, r, "state"),
            column(&cols, r, "id").parse::<u64>().unwrap(),
        )
    };
    let (idle_state, idle_id) = state_of(SCRAM_USER);
    let (busy_state, busy_id) = state_of(MD5_USER);
    assert_eq!((idle_state, busy_state), ("idle", "active"));
    assert_ne!(idle_id, busy_id);
    assert!(rows
        .iter()
        .all(|r| column(&cols, r, "replication") == "none"));
    let (cols, rows) = table(&admin, "SHOW SERVERS").await;
    assert_eq!(cols.join(","), SOCKET_COLUMNS);
    assert!(rows.iter().any(|r| column(&cols, r, "state") == "active"));

    let (cols, rows) = table(&admin, "SHOW SOCKETS").await;
    assert_eq!(cols.len(), 28, "{cols:?}");
    let states: Vec<&str> = rows.iter().map(|r| column(&cols, r, "state")).collect();
    for s in ["cl_active", "sv_active", "sv_idle"] {
        assert!(states.contains(&s), "{s} in {states:?}");
    }
    let (_, active) = table(&admin, "SHOW ACTIVE_SOCKETS").await;
    assert_eq!(
        active.len(),
        2,
        "the linked client and its server: {active:?}"
    );
    let (cols, rows) = table(&admin, "SHOW FDS").await;
    assert_eq!(
        cols.join(","),
        "fd,task,user,database,addr,port,cancel,link"
    );
    assert!(rows
        .iter()
        .all(|r| column(&cols, r, "fd").parse::<i32>().unwrap() > 2));
    let (cols, rows) = table(&admin, "SHOW DNS_HOSTS").await;
    assert_eq!(cols.join(","), "hostname,ttl,addrs");
    let host = format!("localhost:{port}");
    let row = rows.iter().find(|r| column(&cols, r, "hostname") == host);
    assert!(
        row.is_some_and(|r| column(&cols, r, "addrs").contains(&format!("127.0.0.1:{port}"))),
        "{rows:?}"
    );
    let (cols, rows) = table(&admin, "SHOW DNS_ZONES").await;
    assert_eq!(
        (cols.join(","), rows.len()),
        ("zonename,serial,count".into(), 0)
    );

    // KILL_CLIENT: that client only.
    admin
        .simple_query(&format!("KILL_CLIENT {busy_id}"))
        .await
        .unwrap();
    let err = eventually(Duration::from_secs(3), || async {
        busy.simple_query("SELECT 1").await.is_err()
    })
    .await;
    assert!(err, "the killed client still runs queries");
    idle.simple_query("SELECT 1").await.unwrap();
    let err = admin
        .simple_query("KILL_CLIENT 987654321")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("08P01"));
    assert!(
        err.to_string().contains("client not found")
            || format!("{err:?}").contains("client not found")
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `KILL_CLIENT` tells its client why, as PgBouncer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_says_admin_forced_disconnect() {
    let proxy = proxy(|c| {
        admins(c);
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let mut sock = raw_login(&proxy).await;
    let (cols, rows) = table(&admin, "SHOW CLIENTS").await;
    // The console itself is listed too, as PgBouncer lists it.
    let console_row = rows
        .iter()
        .find(|r| column(&cols, r, "database") == "pgbouncer");
    assert!(console_row.is_some(), "{rows:?}");
    let err = admin
        .simple_query(&format!(
            "KILL_CLIENT {}",
            column(&cols, console_row.unwrap(), "id")
        ))
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("08P01"),
        "consoles are not killed"
    );
    let row = rows
        .iter()
        .find(|r| column(&cols, r, "user") == TRUST_USER)
        .unwrap();
    let id = column(&cols, row, "id");
    admin
        .simple_query(&format!("KILL_CLIENT {id}"))
        .await
        .unwrap();
    let messages = read_messages(&mut sock, |tag, _| tag == b'E').await;
    let (tag, body) = messages.last().unwrap();
    let text = String::from_utf8_lossy(body).into_owned();
    assert_eq!(*tag, b'E');
    assert!(
        text.contains("08P01") && text.contains("admin forced disconnect"),
        "{text}"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `SHUTDOWN WAIT_FOR_CLIENTS`: the listener closes at once, while every
/// connected client goes on being served (new transactions included) until
/// it leaves; then the proxy is done. `WAIT_FOR_SERVERS` is `SHUTDOWN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wait_for_clients_serves_the_connected_until_they_leave() {
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let client = connect(&proxy, MD5_USER).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let _ = admin.simple_query("SHUTDOWN WAIT_FOR_CLIENTS").await;
    let refused = eventually(Duration::from_secs(3), || async {
        tokio::net::TcpStream::connect(proxy.addr).await.is_err()
    })
    .await;
    assert!(refused, "the listener still accepts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .expect("a connected client is still served");
    assert!(!proxy.shared.is_stopping());
    drop((client, admin));
    tokio::time::timeout(Duration::from_secs(5), proxy.drained())
        .await
        .expect("done once the last client left");
}

/// `SET` of every key PgBouncer 1.25 changes at run time and pgwarden has:
/// each applies (its `SHOW CONFIG` value changes) without a restart; a key
/// pgwarden does not take is refused by name (42704).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_takes_every_pgbouncer_runtime_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("p.log").display().to_string();
    let proxy = proxy(admins).await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    let keys: &[(&str, &str)] = &[
        ("admin_users", "'pgw_scram, someone'"),
        ("application_name_add_host", "1"),
        (
            "auth_query",
            "'SELECT usename, passwd FROM pg_shadow WHERE usename = $1 '",
        ),
        ("cancel_wait_timeout", "3"),
        ("client_idle_timeout", "600"),
        ("client_login_timeout", "30"),
        ("default_pool_size", "7"),
        ("dns_max_ttl", "30"),
        ("dns_nxdomain_ttl", "30"),
        ("idle_transaction_timeout", "900"),
        ("ignore_startup_parameters", "'extra_float_digits'"),
        ("log_connections", "0"),
        ("log_disconnections", "off"),
        ("log_pooler_errors", "0"),
        ("log_stats", "0"),
        ("logfile", &format!("'{log}'")),
        ("max_client_conn", "4000"),
        ("max_db_client_connections", "300"),
        ("max_db_connections", "50"),
        ("max_packet_size", "1048576"),
        ("max_prepared_statements", "50"),
        ("max_user_client_connections", "300"),
        ("max_user_connections", "50"),
        ("min_pool_size", "1"),
        ("pool_mode", "session"),
        ("query_timeout", "60"),
        ("query_wait_notify", "2"),
        ("query_wait_timeout", "60"),
        ("reserve_pool_size", "2"),
        ("reserve_pool_timeout", "2"),
        ("server_check_delay", "10"),
        ("server_check_query", "'SELECT 2'"),
        ("server_connect_timeout", "5"),
        ("server_fast_close", "1"),
        ("server_idle_timeout", "60"),
        ("server_lifetime", "600"),
        ("server_login_retry", "5"),
        ("server_reset_query", "'DISCARD ALL;'"),
        ("server_reset_query_always", "1"),
        ("server_round_robin", "1"),
        ("stats_period", "30"),
        ("stats_users", "'pgw_md5, other'"),
        ("syslog", "1"),
        ("syslog_facility", "local1"),
        ("syslog_ident", "pgw2"),
        ("tcp_keepalive", "0"),
        ("tcp_keepcnt", "3"),
        ("tcp_keepidle", "60"),
        ("tcp_keepintvl", "10"),
        ("tcp_socket_buffer", "65536"),
        ("tcp_user_timeout", "1000"),
        ("transaction_timeout", "3600"),
        ("verbose", "1"),
    ];
    let value_of = |rows: &[Vec<Option<String>>], key: &str| {
        rows.iter()
            .find(|r| r[0].as_deref() == Some(key))
            .and_then(|r| r[1].clone())
            .unwrap_or_else(|| panic!("{key} not in SHOW CONFIG"))
    };
    let (_, before) = table(&admin, "SHOW CONFIG").await;
    for (key, value) in keys {
        admin
            .simple_query(&format!("SET {key} = {value}"))
            .await
            .unwrap_or_else(|e| panic!("SET {key} = {value}: {e:?}"));
    }
    let (_, after) = table(&admin, "SHOW CONFIG").await;
    for (key, value) in keys {
        assert_ne!(
            value_of(&before, key),
            value_of(&after, key),
            "SET {key} = {value} did not change SHOW CONFIG"
        );
    }
    // Issued cancel keys carry the peer id: a restart changes it.
    let err = admin.simple_query("SET peer_id = 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("55P02"));
    for key in [
        "disable_pqexec",
        "scram_iterations",
        "client_tls_ciphers",
        "sbuf_loopcnt",
    ] {
        let err = admin
            .simple_query(&format!("SET {key} = 1"))
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42704"), "{key}");
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A shutdown ends idle console sessions too (57P01), so an open `psql` on
/// the console does not hold the exit for `shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_an_idle_console() {
    let proxy = proxy(|c| {
        admins(c);
        c.proxy.shutdown_timeout = pgwarden::config::duration::Secs::from_secs(20);
    })
    .await;
    let admin = console(&proxy, SCRAM_USER, "pgbouncer").await;
    admin.simple_query("SHOW VERSION").await.unwrap();
    let started = std::time::Instant::now();
    assert!(proxy.shutdown(Duration::from_secs(20)).await, "all left");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(admin.simple_query("SHOW VERSION").await.is_err());
}
