//! Prometheus metrics and the HTTP endpoints (`/metrics`, `/health`,
//! `/ready`, `/pools`) on `admin_listen`.
//!
//! Owns: the rendering of the proxy's live counters, made at each scrape
//! through the `metrics` facade into a fresh Prometheus recorder (so a pool
//! or node that is gone leaves no stale series), and the error counts by
//! SQLSTATE. Nothing is recorded on the hot path for this: the counters it
//! reads are the ones the console shows.

pub mod http;
pub mod queries;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use ::metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::app::Shared;
use crate::error::ProxyError;
use crate::topology::Writer;

/// Errors pgwarden sent to clients, by SQLSTATE.
#[derive(Debug, Default)]
pub struct ErrorCounts(Mutex<BTreeMap<String, u64>>);

impl ErrorCounts {
    pub fn count(&self, e: &ProxyError) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(e.sqlstate().to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The proxy's state in Prometheus' text format.
pub fn render(shared: &Shared) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || record(shared));
    handle.render()
}

fn record(shared: &Shared) {
    gauge!("pgwarden_clients").set(shared.clients.load(Ordering::Relaxed) as f64);
    pools(shared);
    traffic(shared);
    latency(shared);
    nodes(shared);
    for row in shared.audit.rows() {
        for (outcome, n) in [
            ("routed", row.routed),
            ("refused", row.refused),
            ("out_of_region", row.out_of_region),
        ] {
            counter!("pgwarden_tenant_queries_total", "tenant" => row.tenant.clone(), "region" => row.region.clone(), "outcome" => outcome)
                .absolute(n);
        }
    }
    for (side, counts) in [
        ("client", &crate::net::tls::CLIENT_HANDSHAKES),
        ("server", &crate::net::tls::SERVER_HANDSHAKES),
    ] {
        for (result, n) in [("ok", &counts.ok), ("failed", &counts.failed)] {
            counter!("pgwarden_tls_handshakes_total", "side" => side, "result" => result)
                .absolute(n.load(Ordering::Relaxed));
        }
    }
    for (sqlstate, n) in shared.errors.snapshot() {
        counter!("pgwarden_errors_total", "sqlstate" => sqlstate).absolute(n);
    }
}

fn pools(shared: &Shared) {
    for pool in shared.pools.all() {
        let (idle, total, waiting) = pool.counts();
        let db = pool.key.db.clone();
        let user = pool.key.user.clone();
        let node = pool.key.node.to_string();
        let labels = [("database", db), ("user", user), ("node", node)];
        gauge!("pgwarden_pool_clients", &labels)
            .set(pool.stats.clients.load(Ordering::Relaxed) as f64);
        gauge!("pgwarden_pool_waiting_clients", &labels).set(waiting as f64);
        gauge!("pgwarden_pool_max_wait_seconds", &labels).set(pool.max_wait().as_secs_f64());
        gauge!("pgwarden_pool_active_servers", &labels).set(total.saturating_sub(idle) as f64);
        gauge!("pgwarden_pool_idle_servers", &labels).set(idle as f64);
        gauge!("pgwarden_pool_pinned_clients", &labels)
            .set(pool.stats.pinned.load(Ordering::Relaxed) as f64);
        counter!("pgwarden_pool_checkouts_total", &labels)
            .absolute(pool.stats.checkouts.load(Ordering::Relaxed));
        counter!("pgwarden_pool_wait_microseconds_total", &labels)
            .absolute(pool.stats.wait_micros.load(Ordering::Relaxed));
        counter!("pgwarden_pool_servers_opened_total", &labels)
            .absolute(pool.stats.servers_opened.load(Ordering::Relaxed));
    }
}

/// Query latency per database and node, as quantile gauges (a summary).
fn latency(shared: &Shared) {
    let mut by_node = BTreeMap::new();
    for pool in shared.pools.all() {
        let node = by_node
            .entry((pool.key.db.clone(), pool.target().addr))
            .or_insert(None);
        pool.stats.latency.merge_into(node);
    }
    for ((db, node), h) in by_node {
        let p = crate::pool::latency::percentiles(&h);
        let labels = [("database", db), ("node", node)];
        for (q, v) in [
            ("0.5", p.p50),
            ("0.95", p.p95),
            ("0.99", p.p99),
            ("1", p.max),
        ] {
            let mut l = labels.to_vec();
            l.push(("quantile", q.to_owned()));
            gauge!("pgwarden_query_latency_microseconds", &l).set(v as f64);
        }
        counter!("pgwarden_query_latency_microseconds_count", &labels).absolute(p.count);
    }
}

fn traffic(shared: &Shared) {
    for (db, t) in crate::admin::stats::totals(&shared.pools) {
        let labels = [("database", db)];
        counter!("pgwarden_transactions_total", &labels).absolute(t.xacts);
        counter!("pgwarden_queries_total", &labels).absolute(t.queries);
        counter!("pgwarden_received_bytes_total", &labels).absolute(t.recv);
        counter!("pgwarden_sent_bytes_total", &labels).absolute(t.sent);
        counter!("pgwarden_transaction_microseconds_total", &labels).absolute(t.xact_us);
        counter!("pgwarden_query_microseconds_total", &labels).absolute(t.query_us);
    }
}

fn nodes(shared: &Shared) {
    for (db, topo) in shared.topologies() {
        let snap = topo.snapshot();
        for (id, node) in topo.nodes.iter().enumerate() {
            let Some(view) = snap.nodes.get(id) else {
                continue;
            };
            let labels = [
                ("database", db.clone()),
                ("node", node.addr.clone()),
                ("region", node.region.clone().unwrap_or_default()),
            ];
            let writer = snap.writer == Writer::Node(id);
            gauge!("pgwarden_node_up", &labels).set(f64::from(u8::from(view.up)));
            gauge!("pgwarden_node_writer", &labels).set(f64::from(u8::from(writer)));
            gauge!("pgwarden_node_in_rotation", &labels).set(f64::from(u8::from(view.readable)));
            gauge!("pgwarden_node_lag_bytes", &labels).set(view.lag_bytes as f64);
            gauge!("pgwarden_node_lag_seconds", &labels).set(view.lag_ms as f64 / 1000.0);
            gauge!("pgwarden_node_check_latency_seconds", &labels)
                .set(view.latency_us as f64 / 1_000_000.0);
            let s = &node.stats;
            gauge!("pgwarden_node_outstanding", &labels)
                .set(f64::from(s.outstanding.load(Ordering::Relaxed)));
            for (route, c) in [("read", &s.reads), ("write", &s.writes)] {
                let mut l = labels.to_vec();
                l.push(("route", route.to_owned()));
                counter!("pgwarden_node_transactions_total", &l)
                    .absolute(c.load(Ordering::Relaxed));
            }
            counter!("pgwarden_node_fallbacks_total", &labels)
                .absolute(s.fallbacks.load(Ordering::Relaxed));
            counter!("pgwarden_node_ryw_waits_total", &labels)
                .absolute(s.ryw_waits.load(Ordering::Relaxed));
        }
    }
}
