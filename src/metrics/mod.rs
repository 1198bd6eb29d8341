//! Prometheus metrics and the HTTP endpoints (`/metrics`, `/health`,
//! `/ready`, `/pools`, and the status page at `/`) on `admin_listen`.
//!
//! Owns: the rendering of the proxy's live counters at each scrape (so a
//! pool or node that is gone leaves no stale series), in Prometheus'
//! conventions: base units (seconds, bytes), `_total` counters, latency as
//! a histogram; and the error counts by SQLSTATE. Nothing is recorded on
//! the hot path for this: the counters it reads are the ones the console
//! shows. `docs/metrics.md` lists every series.

pub mod http;
pub mod status;
pub mod text;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::shared::Shared;
use crate::topology::Writer;
use text::{Exposition, Kind};

/// Upper bounds of the latency histogram's buckets, in seconds: 0.1 ms
/// (a cached read over loopback) to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The proxy's state in Prometheus' text format.
pub fn render(shared: &Shared) -> String {
    let mut e = Exposition::default();
    e.single(
        "pgwarden_clients",
        Kind::Gauge,
        "Client connections open, logged in or not.",
        shared.admission.clients() as f64,
    );
    e.single(
        "pgwarden_clients_parked",
        Kind::Gauge,
        "Idle clients parked without a task of their own (park_idle_clients_after).",
        shared.parked.load(Ordering::Relaxed) as f64,
    );
    pools(&mut e, shared);
    traffic(&mut e, shared);
    latency(&mut e, shared);
    nodes(&mut e, shared);
    tenants(&mut e, shared);
    peer_cancels(&mut e, shared);
    let mut f = e.family(
        "pgwarden_tls_handshakes_total",
        Kind::Counter,
        "TLS handshakes by side (client: with clients, server: with PostgreSQL) and result.",
    );
    for (side, counts) in [
        ("client", &crate::net::tls::CLIENT_HANDSHAKES),
        ("server", &crate::net::tls::SERVER_HANDSHAKES),
    ] {
        for (result, n) in [("ok", &counts.ok), ("failed", &counts.failed)] {
            f.sample(
                &[("side", side), ("result", result)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
    }
    let mut f = e.family(
        "pgwarden_errors_total",
        Kind::Counter,
        "Errors pgwarden itself sent to clients, by SQLSTATE (docs/operations.md lists them).",
    );
    for (sqlstate, n) in shared.errors.snapshot() {
        f.sample(&[("sqlstate", &sqlstate)], n as f64);
    }
    e.finish()
}

/// One family over rows of labels and values.
fn each<T>(
    e: &mut Exposition,
    (name, kind, help): (&'static str, Kind, &str),
    rows: &[(Vec<(&str, &str)>, T)],
    value: impl Fn(&T) -> f64,
) {
    let mut f = e.family(name, kind, help);
    for (labels, row) in rows {
        f.sample(labels, value(row));
    }
}

fn pools(e: &mut Exposition, shared: &Shared) {
    let pools = shared.pools.all();
    let keys: Vec<_> = pools
        .iter()
        .map(|p| (p.key.db.clone(), p.key.user.clone(), p.target().addr))
        .collect();
    let rows: Vec<_> = pools
        .iter()
        .zip(&keys)
        .map(|(pool, (db, user, node))| {
            let labels = vec![
                ("database", db.as_str()),
                ("user", user.as_str()),
                ("node", node.as_str()),
            ];
            (labels, (pool.counts(), pool.max_wait(), &pool.stats))
        })
        .collect();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    each(
        e,
        (
            "pgwarden_pool_clients",
            Kind::Gauge,
            "Clients logged in to the pool (database, user, node).",
        ),
        &rows,
        |r| r.2.clients.load(Ordering::Relaxed) as f64,
    );
    each(
        e,
        (
            "pgwarden_pool_waiting_clients",
            Kind::Gauge,
            "Clients waiting for a server of the pool.",
        ),
        &rows,
        |r| r.0 .2 as f64,
    );
    each(
        e,
        (
            "pgwarden_pool_max_wait_seconds",
            Kind::Gauge,
            "How long the longest-waiting client of the pool has waited.",
        ),
        &rows,
        |r| r.1.as_secs_f64(),
    );
    each(
        e,
        (
            "pgwarden_pool_active_servers",
            Kind::Gauge,
            "Server connections of the pool lent to a client.",
        ),
        &rows,
        |r| r.0 .1.saturating_sub(r.0 .0) as f64,
    );
    each(
        e,
        (
            "pgwarden_pool_idle_servers",
            Kind::Gauge,
            "Server connections of the pool open and idle.",
        ),
        &rows,
        |r| r.0 .0 as f64,
    );
    each(e, ("pgwarden_pool_pinned_clients", Kind::Gauge, "Clients holding a server between transactions (LISTEN, advisory locks, temporary tables)."), &rows, |r| r.2.pinned.load(Ordering::Relaxed) as f64);
    each(
        e,
        (
            "pgwarden_pool_checkouts_total",
            Kind::Counter,
            "Servers lent to clients by the pool.",
        ),
        &rows,
        |r| load(&r.2.checkouts),
    );
    each(
        e,
        (
            "pgwarden_pool_wait_seconds_total",
            Kind::Counter,
            "Time clients spent waiting for a server of the pool.",
        ),
        &rows,
        |r| load(&r.2.wait_micros) / 1e6,
    );
    each(
        e,
        (
            "pgwarden_pool_servers_opened_total",
            Kind::Counter,
            "Server connections the pool opened.",
        ),
        &rows,
        |r| load(&r.2.servers_opened),
    );
}

/// Query latency per database and node, as a histogram in seconds.
fn latency(e: &mut Exposition, shared: &Shared) {
    let mut by_node = BTreeMap::new();
    for pool in shared.pools.all() {
        let node = by_node
            .entry((pool.key.db.clone(), pool.target().addr))
            .or_insert((None, 0u64));
        pool.stats.latency.merge_into(&mut node.0);
        node.1 += pool.stats.latency.sum_us();
    }
    let mut f = e.family(
        "pgwarden_query_duration_seconds",
        Kind::Histogram,
        "Time from a client's request to the server's answer, by database and node.",
    );
    for ((db, node), (h, sum_us)) in by_node {
        let Some(h) = h else {
            continue;
        };
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .map(|&le| (le, h.count_between(0, (le * 1e6) as u64)))
            .collect();
        let labels = [("database", db.as_str()), ("node", node.as_str())];
        f.histogram(&labels, &buckets, sum_us as f64 / 1e6, h.len());
    }
}

fn traffic(e: &mut Exposition, shared: &Shared) {
    let totals = crate::stats::totals(&shared.pools);
    let rows: Vec<_> = totals
        .iter()
        .map(|(db, t)| (vec![("database", db.as_str())], t))
        .collect();
    each(
        e,
        (
            "pgwarden_transactions_total",
            Kind::Counter,
            "Transactions clients ran, by database.",
        ),
        &rows,
        |t| t.xacts as f64,
    );
    each(
        e,
        (
            "pgwarden_queries_total",
            Kind::Counter,
            "Queries clients ran, by database.",
        ),
        &rows,
        |t| t.queries as f64,
    );
    each(
        e,
        (
            "pgwarden_received_bytes_total",
            Kind::Counter,
            "Bytes received from clients, by database.",
        ),
        &rows,
        |t| t.recv as f64,
    );
    each(
        e,
        (
            "pgwarden_sent_bytes_total",
            Kind::Counter,
            "Bytes sent to clients, by database.",
        ),
        &rows,
        |t| t.sent as f64,
    );
    each(
        e,
        (
            "pgwarden_transaction_seconds_total",
            Kind::Counter,
            "Time spent in transactions, by database.",
        ),
        &rows,
        |t| t.xact_us as f64 / 1e6,
    );
    each(
        e,
        (
            "pgwarden_query_seconds_total",
            Kind::Counter,
            "Time spent in queries, by database.",
        ),
        &rows,
        |t| t.query_us as f64 / 1e6,
    );
}

fn nodes(e: &mut Exposition, shared: &Shared) {
    struct Row<'a> {
        up: bool,
        writer: bool,
        readable: bool,
        lag_bytes: u64,
        lag_ms: u64,
        latency_us: u64,
        stats: &'a crate::topology::NodeStats,
    }
    let mut owned = Vec::new();
    let mut split = Vec::new();
    for (db, topo) in shared.topologies() {
        let snap = topo.snapshot();
        split.push((db.clone(), matches!(snap.writer, Writer::SplitBrain(..))));
        for (id, node) in topo.nodes.iter().enumerate() {
            let Some(view) = snap.nodes.get(id) else {
                continue;
            };
            let labels = [
                db.clone(),
                node.addr.clone(),
                node.region.clone().unwrap_or_default(),
            ];
            let row = Row {
                up: view.up,
                writer: snap.writer == Writer::Node(id),
                readable: view.readable,
                lag_bytes: view.lag_bytes,
                lag_ms: view.lag_ms,
                latency_us: view.latency_us,
                stats: &node.stats,
            };
            owned.push((labels, row));
        }
    }
    let rows: Vec<_> = owned
        .iter()
        .map(|([db, node, region], row)| {
            (
                vec![
                    ("database", db.as_str()),
                    ("node", node.as_str()),
                    ("region", region.as_str()),
                ],
                row,
            )
        })
        .collect();
    let flag = |b: bool| f64::from(u8::from(b));
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    each(
        e,
        (
            "pgwarden_node_up",
            Kind::Gauge,
            "1 when the node answered the monitor's last check.",
        ),
        &rows,
        |r| flag(r.up),
    );
    each(
        e,
        (
            "pgwarden_node_writer",
            Kind::Gauge,
            "1 for the node pgwarden sends writes to.",
        ),
        &rows,
        |r| flag(r.writer),
    );
    each(
        e,
        (
            "pgwarden_node_in_rotation",
            Kind::Gauge,
            "1 when the node takes reads (up, and within the lag limits).",
        ),
        &rows,
        |r| flag(r.readable),
    );
    each(
        e,
        (
            "pgwarden_node_lag_bytes",
            Kind::Gauge,
            "WAL the replica has yet to replay, in bytes (0 for the primary).",
        ),
        &rows,
        |r| r.lag_bytes as f64,
    );
    each(
        e,
        (
            "pgwarden_node_lag_seconds",
            Kind::Gauge,
            "How far the replica's replay is behind the primary, in seconds.",
        ),
        &rows,
        |r| r.lag_ms as f64 / 1e3,
    );
    each(
        e,
        (
            "pgwarden_node_check_latency_seconds",
            Kind::Gauge,
            "Round trip of the monitor's last check of the node.",
        ),
        &rows,
        |r| r.latency_us as f64 / 1e6,
    );
    each(
        e,
        (
            "pgwarden_node_outstanding",
            Kind::Gauge,
            "Transactions running on the node now.",
        ),
        &rows,
        |r| f64::from(r.stats.outstanding.load(Ordering::Relaxed)),
    );
    let mut f = e.family(
        "pgwarden_node_transactions_total",
        Kind::Counter,
        "Transactions routed to the node, by route (read or write).",
    );
    for (labels, r) in &rows {
        for (route, c) in [("read", &r.stats.reads), ("write", &r.stats.writes)] {
            let mut l = labels.clone();
            l.push(("route", route));
            f.sample(&l, load(c));
        }
    }
    each(
        e,
        (
            "pgwarden_node_fallbacks_total",
            Kind::Counter,
            "Reads meant for a replica that the node (the primary) served instead.",
        ),
        &rows,
        |r| load(&r.stats.fallbacks),
    );
    each(
        e,
        (
            "pgwarden_node_ryw_waits_total",
            Kind::Counter,
            "Reads that waited for the replica to replay a client's own write.",
        ),
        &rows,
        |r| load(&r.stats.ryw_waits),
    );
    let mut f = e.family(
        "pgwarden_database_split_brain",
        Kind::Gauge,
        "1 while two nodes of the database both claim to be the primary (writes are refused).",
    );
    for (db, is_split) in &split {
        f.sample(&[("database", db)], flag(*is_split));
    }
}

fn tenants(e: &mut Exposition, shared: &Shared) {
    let rows = shared.audit.rows();
    let mut f = e.family(
        "pgwarden_tenant_queries_total",
        Kind::Counter,
        "Tenants' queries by outcome: routed, refused (no allowed node up), out_of_region (sent outside the tenant's regions under the preferred policy).",
    );
    for row in &rows {
        for (outcome, n) in [
            ("routed", row.routed),
            ("refused", row.refused),
            ("out_of_region", row.out_of_region),
        ] {
            f.sample(
                &[
                    ("tenant", &row.tenant),
                    ("region", &row.region),
                    ("outcome", outcome),
                ],
                n as f64,
            );
        }
    }
}

/// Cancels forwarded to peers, and those dropped (an unknown peer id, a
/// spent time-to-live): a load balancer with a peer missing from
/// `[peers]` shows here.
fn peer_cancels(e: &mut Exposition, shared: &Shared) {
    let mut f = e.family(
        "pgwarden_peer_cancels_total",
        Kind::Counter,
        "Cancel requests for another instance's clients, by peer and result (forwarded, failed).",
    );
    for peer in shared.cancels.peering().peers.values() {
        let id = peer.id.to_string();
        for (result, n) in [("forwarded", &peer.forwarded), ("failed", &peer.failed)] {
            f.sample(
                &[("peer_id", &id), ("result", result)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
    }
    let mut f = e.family(
        "pgwarden_cancels_dropped_total",
        Kind::Counter,
        "Cancel requests dropped by peering: reason unknown_peer (an id not in [peers]) or ttl_exhausted (forwarded three times).",
    );
    for (reason, n) in [
        ("unknown_peer", &shared.cancels.unknown_peer),
        ("ttl_exhausted", &shared.cancels.ttl_exhausted),
    ] {
        f.sample(&[("reason", reason)], n.load(Ordering::Relaxed) as f64);
    }
}
