//! `SHOW` tables: PgBouncer's columns, names and types (as of 1.18,
//! Debian's); pgwarden's own are in [`super::show_pgwarden`].
//!
//! Reads the proxy's live state; changes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::table::{Cell, Kind, Table};
use crate::config::ProxySettings;
use crate::error::ProxyError;
use crate::shared::Shared;

use Kind::{Int4, Text};

/// The console's usage, sent as a notice by `SHOW HELP`.
pub const HELP: &str = "\
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|STATE|LISTS|MEM
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|DNS_HOSTS|DNS_ZONES|PEERS|PEER_POOLS
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
\tKILL [<db>]
\tKILL_CLIENT <id>
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
        "nodes" => Ok(super::show_pgwarden::nodes(shared)),
        "routing" => Ok(super::show_pgwarden::routing(shared)),
        "tenants" => Ok(super::show_pgwarden::tenants(shared)),
        "stats" | "stats_totals" | "stats_averages" => {
            Ok(super::stats::table(what, &shared.pools, &shared.stats))
        }
        "latency" => Ok(super::show_pgwarden::latency(shared)),
        "clients" => Ok(super::sockets::clients(shared)),
        "servers" => Ok(super::sockets::servers(shared)),
        "queries" => Ok(super::show_pgwarden::queries(shared)),
        "totals" => Ok(super::stats::totals_table(&shared.pools, &shared.stats)),
        "sockets" => Ok(super::sockets::sockets(shared, false)),
        "active_sockets" => Ok(super::sockets::sockets(shared, true)),
        "fds" => Ok(super::sockets::fds(shared)),
        "dns_hosts" => Ok(super::sockets::dns_hosts()),
        "dns_zones" => Ok(super::sockets::dns_zones()),
        "peers" => Ok(super::peers::peers(shared)),
        "peer_pools" => Ok(super::peers::peer_pools(shared)),
        other => Err(ProxyError::AdminSyntax(format!(
            "invalid command 'SHOW {}', use SHOW HELP;",
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
/// The role of node `id` of database `db`, for the per-node rows.
fn role(shared: &Shared, db: &str, id: usize) -> &'static str {
    match shared.topology(db).map(|t| t.snapshot().writer) {
        Some(crate::topology::Writer::Node(w)) if w == id => "primary",
        Some(crate::topology::Writer::Node(_)) => "replica",
        Some(_) => "unknown",
        None => "primary",
    }
}

/// `host:port` split for PgBouncer's columns.
pub(super) fn host_port(addr: &str) -> (String, i32) {
    addr.rsplit_once(':')
        .map_or((addr.to_owned(), 0), |(h, p)| {
            (h.to_owned(), p.parse().unwrap_or(0))
        })
}

/// One row per pool, so per node: pool sizes apply to each node, and
/// `sv_idle` matches what that PostgreSQL shows. PgBouncer's columns come
/// first and in its order; `host`, `port` and `role` name the node.
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
        ("host", Text),
        ("port", Int4),
        ("role", Text),
    ]);
    let loaded = shared.config.load();
    let mut pools = shared.pools.all();
    pools.sort_by(|a, b| {
        (&a.key.db, &a.key.user, a.key.node).cmp(&(&b.key.db, &b.key.user, b.key.node))
    });
    for pool in pools {
        let (idle, total, waiting) = pool.counts();
        let clients = pool.stats.clients.load(Ordering::Relaxed);
        let max_wait = pool.max_wait();
        let (db, user) = (&pool.key.db, &pool.key.user);
        let (host, port) = host_port(&pool.target().addr);
        t.push(vec![
            db.as_str().into(),
            user.as_str().into(),
            clients.saturating_sub(waiting).into(),
            waiting.into(),
            0.into(),
            0.into(),
            total.saturating_sub(idle).into(),
            0.into(),
            0.into(),
            idle.into(),
            0.into(),
            0.into(),
            0.into(),
            i64::try_from(max_wait.as_secs()).unwrap_or(i64::MAX).into(),
            i64::from(max_wait.subsec_micros()).into(),
            loaded.pool_mode(db, user).as_str().into(),
            host.into(),
            port.into(),
            role(shared, db, pool.key.node).into(),
        ]);
    }
    t
}

/// One row per node of each database: `pool_size` applies to each, and
/// `current_connections` is that node's (what its `pg_stat_activity`
/// shows). PgBouncer's columns first; `role` names the node's.
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
        ("role", Text),
    ]);
    let loaded = shared.config.load();
    let pools = shared.pools.all();
    let p = &loaded.config.proxy;
    // Configured databases, and those the `*` template serves (each has a
    // pool), as PgBouncer lists its auto-databases.
    let mut names: Vec<&String> = loaded.config.databases.keys().collect();
    names.extend(
        pools
            .iter()
            .map(|p| &p.key.db)
            .filter(|db| !loaded.configured(db)),
    );
    names.sort();
    names.dedup();
    for name in names {
        let Some(d) = loaded.database(name) else {
            continue;
        };
        let nodes =
            std::iter::once(d.primary.clone()).chain(d.replicas.iter().map(|r| r.addr.clone()));
        for (id, addr) in nodes.enumerate() {
            let (host, port) = host_port(&addr);
            let current: usize = pools
                .iter()
                .filter(|pool| &pool.key.db == name && pool.key.node == id)
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
                role(shared, name, id).into(),
            ]);
        }
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
        let changeable = super::reconfigure::changeable(&key);
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
                _ if k.contains("password") || k.contains("secret") || k.contains("token") => {
                    "********".to_owned()
                }
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
        ("used_clients", shared.admission.clients()),
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
    let clients = shared.admission.clients();
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
