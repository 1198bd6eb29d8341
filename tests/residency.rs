//! Data residency against real PostgreSQL: an "eu" cluster (primary and a
//! streaming replica, region eu-west-1) and a "us" primary (us-east-1)
//! behind one logical database. Where each query ran is read from the
//! servers themselves (`pg_stat_statements`, `inet_server_port()`), never
//! from pgwarden's own counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use harness::{connect_url, direct_to, eventually, fresh_cluster_with, sqlstate, PASSWORD};
use pgwarden::app::Proxy;
use pgwarden::config::residency::{Policy, ResidencySettings, TenantFrom, UnknownTenant};
use pgwarden::config::{self, Config, DatabaseSettings, Loaded, UserSettings};
use pgwarden::localpg::Cluster;

const EU: &str = "eu-west-1";
const US: &str = "us-east-1";
const PGSS: &str = "shared_preload_libraries = 'pg_stat_statements'";
const TABLES: &str = "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
    CREATE TABLE IF NOT EXISTS items_acme (id serial PRIMARY KEY, v int);
    CREATE TABLE IF NOT EXISTS items_globex (id serial PRIMARY KEY, v int);
    INSERT INTO items_acme (v) VALUES (0); INSERT INTO items_globex (v) VALUES (0);";

struct Regions {
    eu: Cluster,
    us: Cluster,
}

impl Regions {
    fn start() -> Regions {
        capture_logs();
        let eu = fresh_cluster_with(1, PGSS);
        let us = fresh_cluster_with(0, PGSS);
        for c in [&eu, &us] {
            c.psql("postgres", TABLES).expect("tables");
        }
        Regions { eu, us }
    }

    fn eu_ports(&self) -> Vec<i32> {
        let mut ports = vec![i32::from(self.eu.primary.port)];
        ports.extend(self.eu.replicas.iter().map(|r| i32::from(r.port)));
        ports
    }

    fn us_port(&self) -> i32 {
        i32::from(self.us.primary.port)
    }

    /// Every node, as (cluster, port).
    fn nodes(&self) -> Vec<(&Cluster, u16)> {
        let mut v = vec![(&self.eu, self.eu.primary.port)];
        v.extend(self.eu.replicas.iter().map(|r| (&self.eu, r.port)));
        v.push((&self.us, self.us.primary.port));
        v
    }
}

/// The pair the tests that stop nothing share.
fn shared() -> &'static Regions {
    static REGIONS: OnceLock<Regions> = OnceLock::new();
    REGIONS.get_or_init(Regions::start)
}

/// `app`: clusters app_eu and app_us, tenants from the user name.
fn residency_config(r: &Regions, policy: Policy, edit: impl FnOnce(&mut Config)) -> Loaded {
    let mut cfg = Config::default();
    cfg.proxy.listen = "127.0.0.1:0".into();
    cfg.proxy.region = Some(EU.into());
    cfg.proxy.default_pool_size = 6;
    let pw = r.eu.superuser_password.clone();
    let member = |c: &Cluster, region: &str| {
        let mut db = DatabaseSettings {
            dbname: Some("postgres".into()),
            primary: c.primary.addr(),
            region: Some(region.into()),
            replicas: c.replicas.iter().map(|n| n.addr().into()).collect(),
            user: Some("postgres".into()),
            password: Some(pw.clone().into()),
            ..Default::default()
        };
        db.routing.monitor_user = Some("postgres".into());
        db.routing.monitor_password = Some(pw.clone().into());
        db.routing.failover_wait_ms = 500;
        db
    };
    cfg.databases.insert("app_eu".into(), member(&r.eu, EU));
    cfg.databases.insert("app_us".into(), member(&r.us, US));
    cfg.databases
        .insert("app".into(), logical(&pw, policy, TenantFrom::User));
    cfg.tenants.insert("acme".into(), vec![EU.into()]);
    cfg.tenants.insert("globex".into(), vec![US.into()]);
    for user in ["acme", "globex", "initech"] {
        cfg.users.insert(
            user.into(),
            UserSettings {
                password: Some(PASSWORD.into()),
                ..Default::default()
            },
        );
    }
    edit(&mut cfg);
    config::from_config(cfg, std::path::Path::new(".")).expect("valid residency config")
}

/// A database served by app_eu and app_us.
fn logical(password: &str, policy: Policy, tenant_from: TenantFrom) -> DatabaseSettings {
    DatabaseSettings {
        clusters: vec!["app_eu".into(), "app_us".into()],
        user: Some("postgres".into()),
        password: Some(password.into()),
        residency: ResidencySettings {
            policy,
            tenant_from,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn start(loaded: Loaded) -> Proxy {
    let proxy = Proxy::start(loaded).await.expect("proxy starts");
    for db in ["app_eu", "app_us"] {
        let topo = proxy.shared.topology(db).expect("member topology").clone();
        let ready = eventually(Duration::from_secs(30), || {
            let topo = topo.clone();
            async move {
                let snap = topo.snapshot();
                snap.round > 0 && snap.nodes[0].up && snap.nodes.iter().skip(1).all(|n| n.readable)
            }
        })
        .await;
        assert!(ready, "{db}'s nodes never came into rotation");
    }
    proxy
}

fn url(proxy: &Proxy, user: &str, db: &str) -> String {
    harness::url(proxy, user, PASSWORD, db)
}

async fn login(proxy: &Proxy, user: &str, db: &str) -> tokio_postgres::Client {
    connect_url(&url(proxy, user, db)).await.expect("login")
}

/// The port of the server that ran the query, as the server reports it.
async fn server_port(c: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    let row = c.query_one("SELECT inet_server_port()", &[]).await?;
    Ok(row.get(0))
}

/// Executions of statements naming `table` on the node at `port`.
async fn calls(c: &Cluster, port: u16, table: &str) -> i64 {
    let direct = direct_to(c, port, "postgres").await;
    let row = direct
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE $1",
            &[&format!("%{table}%")],
        )
        .await
        .expect("pg_stat_statements");
    row.get(0)
}

async fn reset_statements(r: &Regions) {
    for (c, port) in r.nodes() {
        let direct = direct_to(c, port, "postgres").await;
        direct
            .simple_query("SELECT pg_stat_statements_reset()")
            .await
            .expect("reset");
    }
}

/// One tenant's share of mixed work: reads, writes, both extended and
/// simple protocol, and transactions; returns statements naming `table`.
async fn mixed_work(c: tokio_postgres::Client, table: &'static str, statements: usize) -> usize {
    let read = format!("SELECT v FROM {table} WHERE id = $1");
    let count = format!("SELECT count(*) FROM {table}");
    let insert = format!("INSERT INTO {table} (v) VALUES ($1)");
    let update = format!("UPDATE {table} SET v = v + 1 WHERE id = 1");
    let mut done = 0;
    let mut i: i32 = 0;
    while done < statements {
        i += 1;
        match i % 5 {
            0 => {
                c.simple_query(&count).await.expect("count");
                done += 1;
            }
            1 => {
                c.query(&read, &[&(i % 50)]).await.expect("read");
                done += 1;
            }
            2 => {
                c.execute(&insert, &[&i]).await.expect("insert");
                done += 1;
            }
            3 if statements - done >= 2 => {
                c.batch_execute("BEGIN").await.expect("begin");
                c.execute(&insert, &[&i]).await.expect("insert in tx");
                c.query(&read, &[&1]).await.expect("read in tx");
                c.batch_execute("COMMIT").await.expect("commit");
                done += 2;
            }
            _ => {
                c.simple_query(&update).await.expect("update");
                done += 1;
            }
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eu_tenant_queries_all_land_on_eu_nodes() {
    let r = shared();
    let proxy = start(residency_config(r, Policy::Strict, |_| {})).await;
    reset_statements(r).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = login(&proxy, "acme", "app").await;
        tasks.push(tokio::spawn(mixed_work(c, "items_acme", 2500)));
    }
    let globex = login(&proxy, "globex", "app").await;
    tasks.push(tokio::spawn(mixed_work(globex, "items_globex", 500)));
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.expect("worker"));
    }
    assert_eq!(sent[..4].iter().sum::<usize>(), 10_000);

    let eu_primary = calls(&r.eu, r.eu.primary.port, "items_acme").await;
    let eu_replica = calls(&r.eu, r.eu.replicas[0].port, "items_acme").await;
    let us = calls(&r.us, r.us.primary.port, "items_acme").await;
    assert_eq!(us, 0, "an EU tenant's statement ran on the US node");
    assert_eq!(
        eu_primary + eu_replica,
        10_000,
        "every EU statement ran on an EU node"
    );
    assert!(eu_replica > 0, "reads spread to the EU replica");
    let globex_us = calls(&r.us, r.us.primary.port, "items_globex").await;
    let globex_eu = calls(&r.eu, r.eu.primary.port, "items_globex").await
        + calls(&r.eu, r.eu.replicas[0].port, "items_globex").await;
    assert_eq!((globex_us, globex_eu), (500, 0));
    let rows = proxy.shared.audit.rows();
    let routed = |tenant: &str, region: &str| {
        rows.iter()
            .find(|row| row.tenant == tenant && row.region == region)
            .map_or(0, |row| row.routed)
    };
    assert!(
        routed("acme", EU) > 0 && routed("acme", US) == 0,
        "{rows:?}"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_from_each_identity_source() {
    let r = shared();
    let pw = r.eu.superuser_password.clone();
    let proxy = start(residency_config(r, Policy::Strict, |cfg| {
        cfg.databases.insert(
            "acme".into(),
            logical(&pw, Policy::Strict, TenantFrom::Database),
        );
        cfg.databases.insert(
            "app_startup".into(),
            logical(&pw, Policy::Strict, TenantFrom::Startup),
        );
        cfg.databases.insert(
            "app_set".into(),
            logical(&pw, Policy::Strict, TenantFrom::Set),
        );
        let mut default = logical(&pw, Policy::Strict, TenantFrom::User);
        default.residency.unknown_tenant = UnknownTenant::DefaultRegion;
        default.residency.default_region = Some(US.into());
        cfg.databases.insert("app_default".into(), default);
    }))
    .await;
    let eu = r.eu_ports();

    // The user name.
    let acme = login(&proxy, "acme", "app").await;
    assert!(eu.contains(&server_port(&acme).await.unwrap()));
    let globex = login(&proxy, "globex", "app").await;
    assert_eq!(server_port(&globex).await.unwrap(), r.us_port());
    let unknown = harness::connect_err(&url(&proxy, "initech", "app")).await;
    assert_eq!(sqlstate(&unknown).as_deref(), Some("RZ002"), "{unknown}");

    // The database name: user globex, tenant acme.
    let by_db = login(&proxy, "globex", "acme").await;
    assert!(eu.contains(&server_port(&by_db).await.unwrap()));

    // The startup parameter.
    let with_option = format!(
        "{} options='-c pgwarden.tenant=globex'",
        url(&proxy, "acme", "app_startup")
    );
    let by_param = connect_url(&with_option).await.expect("login");
    assert_eq!(server_port(&by_param).await.unwrap(), r.us_port());
    let missing = harness::connect_err(&url(&proxy, "acme", "app_startup")).await;
    assert_eq!(sqlstate(&missing).as_deref(), Some("RZ003"), "{missing}");

    // SET before the first query, then fixed.
    let by_set = login(&proxy, "acme", "app_set").await;
    let early = by_set.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&early).as_deref(), Some("RZ003"), "{early}");
    by_set
        .simple_query("SET pgwarden.tenant = 'globex'")
        .await
        .unwrap();
    assert_eq!(server_port(&by_set).await.unwrap(), r.us_port());
    let change = by_set
        .simple_query("SET pgwarden.tenant = 'acme'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&change).as_deref(), Some("RZ004"), "{change}");
    assert_eq!(server_port(&by_set).await.unwrap(), r.us_port());
    // Only `set` databases take SET.
    let refused = acme
        .simple_query("SET pgwarden.tenant = 'globex'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&refused).as_deref(), Some("RZ004"), "{refused}");
    assert!(eu.contains(&server_port(&acme).await.unwrap()));

    // An unknown tenant served in the default region.
    let defaulted = login(&proxy, "initech", "app_default").await;
    assert_eq!(server_port(&defaulted).await.unwrap(), r.us_port());
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_a_tenant_at_its_next_transaction() {
    let r = shared();
    let proxy = start(residency_config(r, Policy::Strict, |_| {})).await;
    let eu = r.eu_ports();
    let moving = login(&proxy, "acme", "app").await;
    assert!(eu.contains(&server_port(&moving).await.unwrap()));
    // A session pinned to its EU server by an advisory lock.
    let pinned = login(&proxy, "acme", "app").await;
    pinned
        .simple_query("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();

    let moved = residency_config(r, Policy::Strict, |cfg| {
        cfg.tenants.insert("acme".into(), vec![US.into()]);
    });
    proxy.shared.reload(moved).expect("reload applies");

    assert_eq!(server_port(&moving).await.unwrap(), r.us_port());
    let cut = server_port(&pinned).await.unwrap_err();
    assert_eq!(sqlstate(&cut).as_deref(), Some("RZ001"), "{cut}");
    let fresh = login(&proxy, "acme", "app").await;
    assert_eq!(server_port(&fresh).await.unwrap(), r.us_port());
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eu_down_strict_refuses_preferred_spills_us_unaffected() {
    let r = Regions::start();
    let pw = r.eu.superuser_password.clone();
    let proxy = start(residency_config(&r, Policy::Strict, |cfg| {
        cfg.databases.insert(
            "app_pref".into(),
            logical(&pw, Policy::Preferred, TenantFrom::User),
        );
    }))
    .await;
    let strict = login(&proxy, "acme", "app").await;
    let preferred = login(&proxy, "acme", "app_pref").await;
    let us_tenant = login(&proxy, "globex", "app").await;
    assert!(r.eu_ports().contains(&server_port(&strict).await.unwrap()));
    assert!(r
        .eu_ports()
        .contains(&server_port(&preferred).await.unwrap()));
    reset_statements(&r).await;

    r.eu.kill_node(&r.eu.replicas[0]).expect("stop EU replica");
    r.eu.kill_node(&r.eu.primary).expect("stop EU primary");
    let topo = proxy.shared.topology("app_eu").unwrap().clone();
    let down = eventually(Duration::from_secs(20), || {
        let topo = topo.clone();
        async move { topo.snapshot().nodes.iter().all(|n| !n.up) }
    })
    .await;
    assert!(down, "the monitor never saw the EU nodes down");

    for _ in 0..20 {
        let e = strict
            .simple_query("SELECT count(*) FROM items_acme")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("RZ001"), "{e}");
        let e = strict
            .query("SELECT v FROM items_acme WHERE id = $1", &[&1])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("RZ001"), "{e}");
    }
    let e = strict
        .execute("INSERT INTO items_acme (v) VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("RZ001"), "{e}");
    let late = harness::connect_err(&url(&proxy, "acme", "app")).await;
    assert_eq!(sqlstate(&late).as_deref(), Some("RZ001"), "{late}");
    assert_eq!(
        calls(&r.us, r.us.primary.port, "items_acme").await,
        0,
        "a strict EU tenant's query reached the US node"
    );

    for i in 0..20 {
        us_tenant
            .execute("INSERT INTO items_globex (v) VALUES ($1)", &[&i])
            .await
            .expect("US tenant unaffected");
    }
    assert_eq!(calls(&r.us, r.us.primary.port, "items_globex").await, 20);

    // `preferred`: served out of region, counted and logged.
    assert_eq!(server_port(&preferred).await.unwrap(), r.us_port());
    let rows = proxy.shared.audit.rows();
    let row = |region: &str| {
        rows.iter()
            .find(|x| x.tenant == "acme" && x.region == region)
    };
    assert!(row(US).is_some_and(|x| x.out_of_region >= 1), "{rows:?}");
    assert!(row(EU).is_some_and(|x| x.refused >= 41), "{rows:?}");

    let log = logged();
    let line = |event: &str| {
        log.lines()
            .find(|l| l.contains("pgwarden::audit") && l.contains(event) && l.contains("acme"))
            .map(str::to_owned)
    };
    let refusal = line("\"refused\"").expect("an audit line for the refusal");
    assert!(
        refusal.contains(EU) && !refusal.contains("items_acme"),
        "{refusal}"
    );
    let spill = line("\"out_of_region\"").expect("an audit line for the spill");
    assert!(spill.contains(US) && spill.contains(EU), "{spill}");
    proxy.shutdown(Duration::from_secs(5)).await;
}

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends this binary's logs (warnings, and the audit trail) to [`LOG`].
fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,pgwarden::audit=info",
        ))
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

fn logged() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}
