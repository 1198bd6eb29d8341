//! PgBouncer's per-database and per-user settings: what a
//! `[databases.NAME]` or `[users.NAME]` table overrides, observed on the
//! real server and by real clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;
use pgwarden::config::duration::Secs;
use pgwarden::config::{DatabaseSettings, UserSettings};

/// A second client-facing name for the test database, edited by `edit`.
fn alias(c: &mut pgwarden::config::Config, name: &str, edit: impl FnOnce(&mut DatabaseSettings)) {
    let mut d = DatabaseSettings {
        dbname: Some(DB.into()),
        primary: cluster().primary.addr(),
        ..Default::default()
    };
    edit(&mut d);
    c.databases.insert(name.into(), d);
}

fn user(c: &mut pgwarden::config::Config, name: &str, edit: impl FnOnce(&mut UserSettings)) {
    let u = c.users.get_mut(name).expect("a test user");
    edit(u);
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    let row = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
        _ => None,
    });
    row.unwrap_or_else(|| panic!("SHOW {name}: {rows:?}"))
}

async fn opened_by(client: &tokio_postgres::Client) -> String {
    let sql = "SELECT coalesce(current_setting('pgwarden_test.opened_by', true), '')";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `timezone`, `datestyle`, `application_name` are the startup parameters
/// of every server of the database, so the defaults its clients see and
/// return to: a client's own `SET` holds for that client only, and the next
/// client on the same server sees the database's value again.
/// `connect_query` runs once on each new server before any client has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_startup_parameters_and_connect_query_shape_each_server() {
    let proxy = proxy(|c| {
        alias(c, "pgw_tokyo", |d| {
            d.timezone = Some("Asia/Tokyo".into());
            d.datestyle = Some("SQL, DMY".into());
            d.application_name = Some("from_the_database".into());
            d.connect_query =
                Some("SELECT set_config('pgwarden_test.opened_by', 'connect_query', false)".into());
            d.pool_size = Some(1);
        });
    })
    .await;
    let a = connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_tokyo"))
        .await
        .unwrap();
    assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
    assert_eq!(show(&a, "DateStyle").await, "SQL, DMY");
    assert_eq!(show(&a, "application_name").await, "from_the_database");
    assert_eq!(opened_by(&a).await, "connect_query");
    a.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    assert_eq!(show(&a, "TimeZone").await, "UTC");
    let pid = backend_pid(&a).await;

    // The same (only) server, another client: the database's defaults.
    let b = connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_tokyo"))
        .await
        .unwrap();
    assert_eq!(backend_pid(&b).await, pid, "pool_size 1: one server");
    assert_eq!(show(&b, "TimeZone").await, "Asia/Tokyo");
    assert_eq!(show(&a, "TimeZone").await, "UTC", "a keeps its own");
    let on_server = psql(&format!(
        "SELECT application_name FROM pg_stat_activity WHERE pid = {pid}"
    ));
    assert_eq!(on_server, "from_the_database");

    // The plain database is untouched by its alias's settings.
    let plain = connect(&proxy, MD5_USER).await.unwrap();
    assert_ne!(show(&plain, "TimeZone").await, "Asia/Tokyo");
    assert_eq!(opened_by(&plain).await, "");
}

/// A `connect_query` that fails closes that server: its client is told
/// why (08001, naming `connect_query`), the proxy serves every other
/// database, and no server is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_connect_query_refuses_its_database_only() {
    let proxy = proxy(|c| {
        alias(c, "pgw_badq", |d| {
            d.connect_query = Some("SELECT no_such_function_here()".into());
            d.application_name = Some("pgw_badq_server".into());
        });
    })
    .await;
    let err = match connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_badq")).await {
        Ok(client) => client.simple_query("SELECT 1").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("08001"), "{err:?}");
    let text = format!("{err:?}");
    assert!(text.contains("connect_query"), "{text}");
    let left = eventually(Duration::from_secs(5), || async {
        psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgw_badq_server'")
            == "0"
    })
    .await;
    assert!(left, "the failed server is closed");
    let fine = connect(&proxy, MD5_USER).await.unwrap();
    fine.simple_query("SELECT 1").await.unwrap();
}

/// `server_lifetime` per database: its servers are replaced, while the
/// global lifetime keeps the other database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_per_database() {
    let proxy = proxy(|c| {
        c.proxy.server_lifetime = Secs::from_secs(3600);
        alias(c, "pgw_short", |d| {
            d.server_lifetime = Some(Secs::from_millis(300))
        });
    })
    .await;
    let short = connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_short"))
        .await
        .unwrap();
    let long = connect(&proxy, MD5_USER).await.unwrap();
    let (s1, l1) = (backend_pid(&short).await, backend_pid(&long).await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s2, l2) = (backend_pid(&short).await, backend_pid(&long).await);
    assert_ne!(s1, s2, "pgw_short's server outlived its lifetime");
    assert_eq!(l1, l2, "the global lifetime keeps pgw's server");
}

/// `max_db_client_connections` (per database, over the global value) and
/// `max_user_client_connections` (per user) refuse the next login with
/// 53300 naming the setting, and a leaving client frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limits_per_database_and_per_user() {
    let proxy = proxy(|c| {
        c.proxy.max_db_client_connections = 100;
        alias(c, "pgw_two", |d| d.max_db_client_connections = Some(2));
        user(c, SCRAM_USER, |u| u.max_user_client_connections = Some(1));
    })
    .await;
    let two = url(&proxy, MD5_USER, PASSWORD, "pgw_two");
    let first = connect_url(&two).await.unwrap();
    let _second = connect_url(&two).await.unwrap();
    let err = connect_err(&two).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    assert!(format!("{err:?}").contains("max_db_client_connections"));
    // The database's own limit, not the user's: the same user elsewhere.
    let _elsewhere = connect(&proxy, MD5_USER).await.unwrap();
    drop(first);
    let back = eventually(Duration::from_secs(5), || async {
        connect_url(&two).await.is_ok()
    })
    .await;
    assert!(back, "a leaving client frees its place");

    let only = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = connect_err(&url(&proxy, SCRAM_USER, PASSWORD, "pgw_two")).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"));
    assert!(format!("{err:?}").contains("max_user_client_connections"));
    only.simple_query("SELECT 1").await.unwrap();
}

/// `[users.NAME] pool_size` caps that user's pools below the database's:
/// its second concurrent transaction waits (and times out), while another
/// user's pool on the same database keeps the database's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_per_user() {
    let proxy = proxy(|c| {
        c.proxy.query_wait_timeout = Secs::from_millis(500);
        c.databases.get_mut(DB).unwrap().pool_size = Some(5);
        user(c, SCRAM_USER, |u| u.pool_size = Some(1));
    })
    .await;
    let holder = connect(&proxy, SCRAM_USER).await.unwrap();
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let second = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = second.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    let others: Vec<_> = clients_of(&proxy, MD5_USER, 3).await;
    for c in &others {
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    holder.batch_execute("COMMIT").await.unwrap();
    let next = connect(&proxy, SCRAM_USER).await.unwrap();
    next.simple_query("SELECT 1").await.unwrap();
}

async fn clients_of(
    proxy: &pgwarden::app::Proxy,
    user: &str,
    n: usize,
) -> Vec<tokio_postgres::Client> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(connect(proxy, user).await.unwrap());
    }
    v
}

/// `[users.NAME] query_timeout` over `[proxy]`'s, and `transaction_timeout`
/// (PgBouncer 1.25): a transaction open longer than it, busy or idle, ends
/// its client with 08P01 and rolls back on the server; others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_transaction_timeouts_per_user() {
    psql("CREATE TABLE IF NOT EXISTS overrides_txn (v int)");
    psql("TRUNCATE overrides_txn");
    psql("GRANT ALL ON overrides_txn TO PUBLIC");
    let proxy = proxy(|c| {
        user(c, SCRAM_USER, |u| {
            u.query_timeout = Some(Secs::from_millis(400))
        });
        user(c, PLAIN_USER, |u| {
            u.transaction_timeout = Some(Secs::from_millis(800));
        });
    })
    .await;
    let quick = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = quick.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    quick.simple_query("SELECT 1").await.unwrap();
    let patient = connect(&proxy, MD5_USER).await.unwrap();
    patient.simple_query("SELECT pg_sleep(0.6)").await.unwrap();

    // Busy: each statement is short, the transaction is not.
    let busy = connect(&proxy, PLAIN_USER).await.unwrap();
    busy.batch_execute("BEGIN; INSERT INTO overrides_txn VALUES (1)")
        .await
        .unwrap();
    let mut ended = None;
    for _ in 0..20 {
        if let Err(e) = busy.simple_query("SELECT pg_sleep(0.1)").await {
            ended = Some(e);
            break;
        }
    }
    let err = ended.expect("the transaction outlived transaction_timeout");
    assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err:?}");
    assert!(format!("{err:?}").contains("transaction_timeout"));
    assert_eq!(
        psql("SELECT count(*) FROM overrides_txn"),
        "0",
        "rolled back"
    );

    // Autocommit statements each start and end a transaction: never hit.
    let steady = connect(&proxy, PLAIN_USER).await.unwrap();
    for _ in 0..10 {
        steady.simple_query("SELECT pg_sleep(0.1)").await.unwrap();
    }
    patient.simple_query("SELECT 1").await.unwrap();
}

/// `auth_user`, `auth_query` and `auth_dbname` per database: a client of
/// `pgw_lookup` unknown to the config is looked up by the database's own
/// `auth_user`, with its own query, in the database `auth_dbname` names
/// (the query only answers there); a database without one refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_query_per_database_in_auth_dbname() {
    let c = cluster();
    let proxy = proxy(|cfg| {
        cfg.users.remove(MD5_USER);
        cfg.users.insert(
            "postgres".into(),
            UserSettings {
                password: Some(c.superuser_password.clone().into()),
                ..Default::default()
            },
        );
        cfg.databases.insert(
            "authdb".into(),
            DatabaseSettings {
                dbname: Some("postgres".into()),
                primary: c.primary.addr(),
                ..Default::default()
            },
        );
        alias(cfg, "pgw_lookup", |d| {
            d.auth_user = Some("postgres".into());
            d.auth_dbname = Some("authdb".into());
            d.auth_query = Some(format!(
                "SELECT $1::text, '{PASSWORD}'::text WHERE current_database() = 'postgres'"
            ));
        });
    })
    .await;
    let looked_up = connect_url(&url(&proxy, MD5_USER, PASSWORD, "pgw_lookup"))
        .await
        .unwrap();
    assert_eq!(current_user(&looked_up).await, MD5_USER);
    let err = connect_err(&url(&proxy, MD5_USER, "wrong", "pgw_lookup")).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"));
    let err = connect_err(&url(&proxy, MD5_USER, PASSWORD, DB)).await;
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("28P01"),
        "no auth_user on pgw"
    );
}

/// `[databases."*"]`: any database name without a table of its own is
/// served from the template, on the server database of that name (a pool
/// of its own, listed in `SHOW DATABASES`); a name the server does not have
/// gets the server's own 3D000; the console's names still reach the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_star_database_serves_any_other_name() {
    let proxy = proxy(|c| {
        c.proxy.admin_users.0.push(SCRAM_USER.into());
        c.databases.insert(
            "*".into(),
            DatabaseSettings {
                primary: cluster().primary.addr(),
                pool_size: Some(3),
                ..Default::default()
            },
        );
    })
    .await;
    let other = connect_url(&url(&proxy, MD5_USER, PASSWORD, "postgres"))
        .await
        .unwrap();
    let row = other
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    let pool = proxy
        .shared
        .pools
        .get(&pgwarden::pool::PoolKey::new("postgres", MD5_USER))
        .expect("a pool of its own");
    assert_eq!(pool.settings().size, 3, "the template's pool_size");
    let err = match connect_url(&url(&proxy, MD5_USER, PASSWORD, "no_such_db_here")).await {
        Ok(c) => c.simple_query("SELECT 1").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err:?}");
    // The configured database is its own; the console is the console.
    let own = connect(&proxy, MD5_USER).await.unwrap();
    own.simple_query("SELECT 1").await.unwrap();
    let console = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgbouncer"))
        .await
        .unwrap();
    let rows = console.simple_query("SHOW DATABASES").await.unwrap();
    let names: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(names.iter().any(|n| n == "postgres"), "{names:?}");
    assert!(names.iter().any(|n| n == DB), "{names:?}");
}

/// `server_round_robin`: each transaction gets the least recently used
/// idle server, so one client's transactions visit every server; PgBouncer's
/// default (last in, first out) keeps giving it the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_round_robin_spreads_transactions_over_servers() {
    for round_robin in [false, true] {
        let proxy = proxy(|c| {
            c.proxy.server_round_robin = round_robin;
            c.proxy.min_pool_size = 3;
            c.databases.get_mut(DB).unwrap().pool_size = Some(3);
        })
        .await;
        let client = connect(&proxy, MD5_USER).await.unwrap();
        let pool = proxy
            .shared
            .pools
            .get(&pgwarden::pool::PoolKey::new(DB, MD5_USER))
            .unwrap();
        let warm = eventually(Duration::from_secs(10), || async { pool.counts().0 == 3 }).await;
        assert!(warm, "three idle servers: {:?}", pool.counts());
        let mut pids = std::collections::BTreeSet::new();
        for _ in 0..6 {
            pids.insert(backend_pid(&client).await);
        }
        let want = if round_robin { 3 } else { 1 };
        assert_eq!(
            pids.len(),
            want,
            "server_round_robin = {round_robin}: {pids:?}"
        );
    }
}

/// `query_wait_notify`: a client queued for a server that long is told so
/// with a NOTICE (PgBouncer's words), and then served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_client_is_told_after_query_wait_notify() {
    let proxy = proxy(|c| {
        c.proxy.query_wait_notify = Secs::from_millis(300);
        c.databases.get_mut(DB).unwrap().pool_size = Some(1);
    })
    .await;
    let holder = connect(&proxy, MD5_USER).await.unwrap();
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let port = proxy.addr.port();
    let waiter = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(pg_tool("psql"));
        cmd.args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-U", MD5_USER, "-d", DB, "-c", "SELECT 41 + 1"])
            .env("PGPASSWORD", PASSWORD);
        run_tool(&mut cmd)
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let (ok, out) = waiter.await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("client being queued"), "{out}");
}

/// `server_fast_close` (session mode): after `RECONNECT`, a client holding
/// a server between transactions is ended at once ("database configuration
/// changed", 08P01) with its server; one in a transaction finishes it
/// first. Off, clients keep their servers until they leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fast_close_ends_session_clients_between_transactions() {
    for fast_close in [false, true] {
        let proxy = proxy(|c| {
            c.proxy.server_fast_close = fast_close;
            c.proxy.pool_mode = pgwarden::config::PoolMode::Session;
            c.proxy.admin_users.0.push(SCRAM_USER.into());
        })
        .await;
        let resting = connect(&proxy, MD5_USER).await.unwrap();
        let pid = backend_pid(&resting).await;
        let busy = connect(&proxy, MD5_USER).await.unwrap();
        busy.batch_execute("BEGIN; SELECT 1").await.unwrap();
        let admin = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgbouncer"))
            .await
            .unwrap();
        admin.simple_query("RECONNECT").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = resting.simple_query("SELECT pg_backend_pid()").await;
        let in_txn = busy.batch_execute("SELECT 2; COMMIT").await;
        if fast_close {
            assert!(after.is_err(), "the resting client was not ended");
            assert!(in_txn.is_ok(), "a transaction is let finish: {in_txn:?}");
            let gone = eventually(Duration::from_secs(5), || async {
                busy.simple_query("SELECT 1").await.is_err()
            })
            .await;
            assert!(gone, "ended after its transaction");
            let closed = eventually(Duration::from_secs(5), || async {
                psql(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
                )) == "0"
            })
            .await;
            assert!(closed, "its server was closed");
        } else {
            assert!(after.is_ok() && in_txn.is_ok());
            assert_eq!(backend_pid(&resting).await, pid, "keeps its server");
        }
    }
}

/// `server_check_query` as PgBouncer 1.25 reads it: `<empty>` (the
/// default) checks a server with an empty query, which passes, so the same
/// server is lent again; a failing check query replaces the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_query_empty_passes_and_a_failing_one_replaces() {
    for (check, same) in [("<empty>", true), ("SELECT 1/0", false)] {
        let proxy = proxy(|c| {
            c.proxy.server_check_query = check.into();
            c.proxy.server_check_delay = Secs::ZERO;
            c.databases.get_mut(DB).unwrap().pool_size = Some(1);
        })
        .await;
        let client = connect(&proxy, MD5_USER).await.unwrap();
        let first = backend_pid(&client).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = backend_pid(&client).await;
        assert_eq!(first == second, same, "{check}: {first} then {second}");
    }
}
