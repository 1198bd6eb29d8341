//! `SHOW` tables: PgBouncer's columns, names and types where PgBouncer has
//! the command (as of 1.18, Debian's), pgwarden's own otherwise.
//!
//! Reads the proxy's live state; changes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::table::{Cell, Kind, Table};
use crate::app::Shared;
use crate::config::ProxySettings;
use crate::error::ProxyError;
use crate::topology::Writer;

use Kind::{Int4, Numeric, Text};

/// The console's usage, sent as a notice by `SHOW HELP`.
pub const HELP: &str = "\
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|STATE|LISTS|MEM
\tSHOW NODES|ROUTING|TENANTS|LATENCY|QUERIES
\tDRAIN NODE <addr>
\tUNDRAIN NODE <addr>
\tSWITCHOVER <db> TO <addr>
\tSET key = arg
\tSAVE CONFIG
\tRELOAD
\tPAUSE [<db>]
\tRESUME [<db>]
\tDISABLE <db>
\tENABLE <db>
\tRECONNECT [<db>]
\tWAIT_CLOSE [<db>]
\tSUSPEND
\tKILL <db>
\tSHUTDOWN";

/// The table for `SHOW what`.
///
/// # Errors
/// `what` is not a table this console has.
pub fn show(shared: &Shared, what: &str) -> Result<Table, ProxyError> {
    match what {
        "pools" => Ok(pools(shared)),
        "databases" => Ok(databases(shared)),
        "users" => Ok(users(shared)),
        "config" => Ok(config(shared)),
        "lists" => Ok(lists(shared)),
        "mem" => Ok(mem(shared)),
        "version" => Ok(version()),
        "state" => Ok(state(shared)),
        "nodes" => Ok(nodes(shared)),
        "routing" => Ok(routing(shared)),
        "tenants" => Ok(tenants(shared)),
        "stats" | "stats_totals" | "stats_averages" => {
            Ok(super::stats::table(what, &shared.pools, &shared.stats))
        }
        "latency" => Ok(latency(shared)),
        "clients" => Ok(super::sockets::clients(shared)),
        "servers" => Ok(super::sockets::servers(shared)),
        "queries" => Ok(queries(shared)),
        "sockets" | "active_sockets" | "fds" | "totals" => Err(ProxyError::AdminNotYet(format!(
            "SHOW {} is not available in this build yet",
            what.to_ascii_uppercase()
        ))),
        other => Err(ProxyError::AdminSyntax(format!(
            "unknown SHOW {:?}",
            other.to_ascii_uppercase()
        ))),
    }
}

fn version() -> Table {
    let mut t = Table::new(&[("version", Text)]);
    t.push(vec![
        format!("pgwarden {}", env!("CARGO_PKG_VERSION")).into()
    ]);
    t
}

fn state(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text)]);
    let yes_no = |b: bool| Cell::from(if b { "yes" } else { "no" });
    t.push(vec!["active".into(), yes_no(!shared.is_stopping())]);
    t.push(vec!["paused".into(), yes_no(shared.gates.paused(None))]);
    t.push(vec!["suspended".into(), yes_no(shared.gates.paused(None))]);
    t
}

/// Per (database, user), summed over the database's nodes.
fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("user", Text),
        ("cl_active", Int4),
        ("cl_waiting", Int4),
        ("cl_active_cancel_req", Int4),
        ("cl_waiting_cancel_req", Int4),
        ("sv_active", Int4),
        ("sv_active_cancel", Int4),
        ("sv_being_canceled", Int4),
        ("sv_idle", Int4),
        ("sv_used", Int4),
        ("sv_tested", Int4),
        ("sv_login", Int4),
        ("maxwait", Int4),
        ("maxwait_us", Int4),
        ("pool_mode", Text),
    ]);
    let loaded = shared.config.load();
    #[derive(Default)]
    struct Sums {
        clients: usize,
        waiting: usize,
        idle: usize,
        total: usize,
        max_wait: std::time::Duration,
    }
    let mut sums: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for pool in shared.pools.all() {
        let (idle, total, waiting) = pool.counts();
        let s = sums
            .entry((pool.key.db.clone(), pool.key.user.clone()))
            .or_default();
        s.clients += pool.stats.clients.load(Ordering::Relaxed);
        s.waiting += waiting;
        s.idle += idle;
        s.total += total;
        s.max_wait = s.max_wait.max(pool.max_wait());
    }
    for ((db, user), s) in sums {
        let mode = loaded.pool_mode(&db, &user);
        t.push(vec![
            db.into(),
            user.into(),
            s.clients.saturating_sub(s.waiting).into(),
            s.waiting.into(),
            0.into(),
            0.into(),
            s.total.saturating_sub(s.idle).into(),
            0.into(),
            0.into(),
            s.idle.into(),
            0.into(),
            0.into(),
            0.into(),
            i64::try_from(s.max_wait.as_secs())
                .unwrap_or(i64::MAX)
                .into(),
            i64::from(s.max_wait.subsec_micros()).into(),
            mode.as_str().into(),
        ]);
    }
    t
}

fn databases(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("host", Text),
        ("port", Int4),
        ("database", Text),
        ("force_user", Text),
        ("pool_size", Int4),
        ("min_pool_size", Int4),
        ("reserve_pool", Int4),
        ("pool_mode", Text),
        ("max_connections", Int4),
        ("current_connections", Int4),
        ("paused", Int4),
        ("disabled", Int4),
    ]);
    let loaded = shared.config.load();
    let pools = shared.pools.all();
    let p = &loaded.config.proxy;
    let mut names: Vec<&String> = loaded.config.databases.keys().collect();
    names.sort();
    for name in names {
        let Some(d) = loaded.database(name) else {
            continue;
        };
        let (host, port) = d
            .primary
            .rsplit_once(':')
            .map_or(("", 0), |(h, p)| (h, p.parse::<i32>().unwrap_or(0)));
        let current: usize = pools
            .iter()
            .filter(|pool| &pool.key.db == name)
            .map(|pool| pool.counts().1)
            .sum();
        t.push(vec![
            name.as_str().into(),
            host.into(),
            port.into(),
            d.dbname.clone().unwrap_or_else(|| name.clone()).into(),
            d.user.clone().into(),
            d.pool_size.unwrap_or(p.default_pool_size).into(),
            d.min_pool_size.unwrap_or(p.min_pool_size).into(),
            d.reserve_pool_size.unwrap_or(p.reserve_pool_size).into(),
            d.pool_mode.map(|m| m.as_str().to_owned()).into(),
            d.max_db_connections.unwrap_or(p.max_db_connections).into(),
            current.into(),
            i32::from(shared.gates.paused(Some(name))).into(),
            i32::from(shared.gates.is_disabled(name)).into(),
        ]);
    }
    t
}

fn users(shared: &Shared) -> Table {
    let mut t = Table::new(&[("name", Text), ("pool_mode", Text)]);
    let loaded = shared.config.load();
    let mut names: Vec<&String> = loaded.config.users.keys().collect();
    names.sort();
    for name in names {
        let mode = loaded.config.users.get(name).and_then(|u| u.pool_mode);
        t.push(vec![
            name.as_str().into(),
            mode.map(|m| m.as_str().to_owned()).into(),
        ]);
    }
    t
}

/// `[proxy]` settings, with whether `SET` can change them.
fn config(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("key", Text),
        ("value", Text),
        ("default", Text),
        ("changeable", Text),
    ]);
    let loaded = shared.config.load();
    let current = flatten(&loaded.config.proxy);
    let defaults = flatten(&ProxySettings::default());
    for (key, value) in current {
        let default = defaults.get(&key).cloned().unwrap_or_default();
        let changeable = super::live::changeable(&key);
        t.push(vec![
            key.clone().into(),
            value.into(),
            default.into(),
            (if changeable { "yes" } else { "no" }).into(),
        ]);
    }
    t
}

/// Settings as `key -> text`, secrets masked.
fn flatten(settings: &ProxySettings) -> BTreeMap<String, String> {
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(settings) else {
        return BTreeMap::new();
    };
    table
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                _ if k.contains("password") || k.contains("secret") => "********".to_owned(),
                toml::Value::String(s) => s,
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

fn lists(shared: &Shared) -> Table {
    let mut t = Table::new(&[("list", Text), ("items", Int4)]);
    let loaded = shared.config.load();
    let pools = shared.pools.all();
    let (idle, total) = pools.iter().fold((0, 0), |(i, n), p| {
        let (idle, total, _) = p.counts();
        (i + idle, n + total)
    });
    let rows: [(&str, usize); 12] = [
        ("databases", loaded.config.databases.len()),
        ("users", loaded.config.users.len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", shared.clients.load(Ordering::Relaxed)),
        ("login_clients", 0),
        ("free_servers", idle),
        ("used_servers", total - idle.min(total)),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (name, n) in rows {
        t.push(vec![name.into(), n.into()]);
    }
    t
}

/// Memory of the per-connection structures (sizes of their fixed parts;
/// buffers come and go with traffic).
fn mem(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("size", Int4),
        ("used", Int4),
        ("free", Int4),
        ("memtotal", Int4),
    ]);
    let clients = shared.clients.load(Ordering::Relaxed);
    let servers: usize = shared.pools.all().iter().map(|p| p.counts().1).sum();
    let rows = [
        (
            "client_cache",
            std::mem::size_of::<crate::client::session::Session>(),
            clients,
        ),
        (
            "server_cache",
            std::mem::size_of::<crate::server::ServerConn>(),
            servers,
        ),
    ];
    for (name, size, used) in rows {
        t.push(vec![
            name.into(),
            size.into(),
            used.into(),
            0.into(),
            (size * used).into(),
        ]);
    }
    t
}

/// pgwarden's own: every node of every database with a topology.
fn nodes(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("node", Text),
        ("role", Text),
        ("region", Text),
        ("state", Text),
        ("lag_bytes", Numeric),
        ("lag_ms", Numeric),
        ("replay_lsn", Text),
        ("latency_us", Numeric),
        ("outstanding", Int4),
        ("reads", Numeric),
        ("writes", Numeric),
        ("fallbacks", Numeric),
        ("ryw_waits", Numeric),
        ("check_failures", Numeric),
    ]);
    let mut dbs: Vec<_> = shared.topologies().collect();
    dbs.sort_by(|a, b| a.0.cmp(b.0));
    for (db, topo) in dbs {
        let snap = topo.snapshot();
        for (id, node) in topo.nodes.iter().enumerate() {
            let view = snap
                .nodes
                .get(id)
                .copied()
                .unwrap_or(crate::topology::NodeView::UNKNOWN);
            let drained = node.drained.load(Ordering::Relaxed);
            let state = match (view.up, view.readable, snap.writer == Writer::Node(id)) {
                (false, _, _) => "down",
                (true, _, false) if drained => "drained",
                (true, _, true) => "writer",
                (true, true, false) => "in_rotation",
                (true, false, false) => "out_of_rotation",
            };
            let s = &node.stats;
            let load = |c: &std::sync::atomic::AtomicU64| Cell::from(c.load(Ordering::Relaxed));
            t.push(vec![
                db.as_str().into(),
                node.addr.as_str().into(),
                view.role.as_str().into(),
                node.region.clone().into(),
                state.into(),
                view.lag_bytes.into(),
                view.lag_ms.into(),
                crate::topology::lag::format_lsn(node.lsn(&view)).into(),
                view.latency_us.into(),
                s.outstanding.load(Ordering::Relaxed).into(),
                load(&s.reads),
                load(&s.writes),
                load(&s.fallbacks),
                load(&s.ryw_waits),
                load(&s.check_failures),
            ]);
        }
    }
    t
}

/// pgwarden's own: query latency percentiles (µs) per pool and per node
/// (all users of a node together).
fn latency(shared: &Shared) -> Table {
    use crate::pool::latency::percentiles;
    let mut t = Table::new(&[
        ("scope", Text),
        ("database", Text),
        ("user", Text),
        ("node", Text),
        ("count", Numeric),
        ("p50_us", Numeric),
        ("p95_us", Numeric),
        ("p99_us", Numeric),
        ("max_us", Numeric),
    ]);
    fn row(
        t: &mut Table,
        scope: &str,
        db: &str,
        user: Option<&str>,
        node: &str,
        h: &Option<hdrhistogram::Histogram<u32>>,
    ) {
        let p = percentiles(h);
        t.push(vec![
            scope.into(),
            db.into(),
            user.map(str::to_owned).into(),
            node.into(),
            p.count.into(),
            p.p50.into(),
            p.p95.into(),
            p.p99.into(),
            p.max.into(),
        ]);
    }
    let mut by_node = BTreeMap::new();
    for pool in shared.pools.all() {
        let addr = pool.target().addr;
        let mut h = None;
        pool.stats.latency.merge_into(&mut h);
        row(
            &mut t,
            "pool",
            &pool.key.db,
            Some(&pool.key.user),
            &addr,
            &h,
        );
        let node = by_node.entry((pool.key.db.clone(), addr)).or_insert(None);
        pool.stats.latency.merge_into(node);
    }
    for ((db, addr), h) in &by_node {
        row(&mut t, "node", db, None, addr, h);
    }
    t
}

/// pgwarden's own: query fingerprints, most total time first (empty
/// unless `query_stats` is on).
fn queries(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("fingerprint", Text),
        ("query", Text),
        ("calls", Numeric),
        ("total_us", Numeric),
        ("mean_us", Numeric),
        ("p50_us", Numeric),
        ("p95_us", Numeric),
        ("p99_us", Numeric),
    ]);
    for r in shared.queries.rows() {
        t.push(vec![
            format!("{:016x}", r.fingerprint).into(),
            r.query.into(),
            r.calls.into(),
            r.total_us.into(),
            (r.total_us / r.calls.max(1)).into(),
            r.p50.into(),
            r.p95.into(),
            r.p99.into(),
        ]);
    }
    t
}

/// pgwarden's own: routing decisions per database.
fn routing(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("writer", Text),
        ("reads", Numeric),
        ("writes", Numeric),
        ("replica_reads", Numeric),
        ("fallbacks", Numeric),
        ("ryw_waits", Numeric),
        ("ryw_primary_reads", Numeric),
        ("state_changes", Numeric),
    ]);
    let mut dbs: Vec<_> = shared.topologies().collect();
    dbs.sort_by(|a, b| a.0.cmp(b.0));
    for (db, topo) in dbs {
        let snap = topo.snapshot();
        let writer = match snap.writer {
            Writer::Node(w) => topo.nodes.get(w).map_or("?".to_owned(), |n| n.addr.clone()),
            Writer::None => "none".to_owned(),
            Writer::SplitBrain(..) => "split-brain".to_owned(),
        };
        let sum = |f: fn(&crate::topology::NodeStats) -> &std::sync::atomic::AtomicU64| {
            topo.nodes
                .iter()
                .map(|n| f(&n.stats).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let replica_reads: u64 = topo
            .nodes
            .iter()
            .enumerate()
            .filter(|(id, _)| snap.writer != Writer::Node(*id))
            .map(|(_, n)| n.stats.reads.load(Ordering::Relaxed))
            .sum();
        t.push(vec![
            db.as_str().into(),
            writer.into(),
            sum(|s| &s.reads).into(),
            sum(|s| &s.writes).into(),
            replica_reads.into(),
            sum(|s| &s.fallbacks).into(),
            sum(|s| &s.ryw_waits).into(),
            sum(|s| &s.ryw_primary_reads).into(),
            sum(|s| &s.state_changes).into(),
        ]);
    }
    t
}

/// pgwarden's own: residency counters per tenant and region.
fn tenants(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("tenant", Text),
        ("region", Text),
        ("allowed_regions", Text),
        ("routed", Numeric),
        ("out_of_region", Numeric),
        ("refused", Numeric),
    ]);
    let loaded = shared.config.load();
    for row in shared.audit.rows() {
        let allowed = loaded.config.tenants.get(&row.tenant).map(|r| r.join(","));
        t.push(vec![
            row.tenant.into(),
            row.region.into(),
            allowed.into(),
            row.routed.into(),
            row.out_of_region.into(),
            row.refused.into(),
        ]);
    }
    t
}
