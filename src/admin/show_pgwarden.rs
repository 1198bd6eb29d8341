//! pgwarden's own console tables: nodes, routing, tenants, latency and
//! query fingerprints. Reads the proxy's live state; changes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::table::{Cell, Kind, Table};
use crate::shared::Shared;
use crate::topology::Writer;

use Kind::{Int4, Numeric, Text};

/// pgwarden's own: every node of every database with a topology.
pub fn nodes(shared: &Shared) -> Table {
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
                // Before the monitor's first round nothing is known yet.
                (false, _, _) if snap.round == 0 => "unchecked",
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
pub fn latency(shared: &Shared) -> Table {
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
pub fn queries(shared: &Shared) -> Table {
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
pub fn routing(shared: &Shared) -> Table {
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
pub fn tenants(shared: &Shared) -> Table {
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
