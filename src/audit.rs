//! The residency audit trail: counters per (tenant, region) of queries
//! routed, refused and sent out of region, and one structured log line
//! (target `pgwarden::audit`) for every refusal and out-of-region routing.
//!
//! Owns: the counters registry. Sessions look their counters up when they
//! (re)decide their tenant's nodes, not per query, so the hot path pays one
//! atomic add. Log lines name the tenant, database, regions and reason,
//! never a query or its parameters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Log target of every audit line, for filtering (`RUST_LOG=pgwarden::audit=info`).
pub const TARGET: &str = "pgwarden::audit";

/// One tenant's queries in one region.
#[derive(Debug, Default)]
pub struct TenantCounters {
    /// Transactions (or statements) sent to a node in this region.
    pub routed: AtomicU64,
    /// Sent here although the region is not the tenant's (`preferred`).
    pub out_of_region: AtomicU64,
    /// Refused; the region is the tenant's allowed regions, comma-joined.
    pub refused: AtomicU64,
}

impl TenantCounters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of one (tenant, region)'s counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    pub tenant: String,
    pub region: String,
    pub routed: u64,
    pub out_of_region: u64,
    pub refused: u64,
}

/// Every (tenant, region) seen since start.
#[derive(Debug, Default)]
pub struct Audit {
    counters: Mutex<BTreeMap<(String, String), Arc<TenantCounters>>>,
}

impl Audit {
    /// The counters of `tenant` in `region`, made on first use.
    pub fn counters(&self, tenant: &str, region: &str) -> Arc<TenantCounters> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&(tenant.to_owned(), region.to_owned())) {
            return c.clone();
        }
        let c = Arc::new(TenantCounters::default());
        map.insert((tenant.to_owned(), region.to_owned()), c.clone());
        c
    }

    /// All counters, ordered by tenant then region.
    pub fn rows(&self) -> Vec<TenantRow> {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|((tenant, region), c)| TenantRow {
                tenant: tenant.clone(),
                region: region.clone(),
                routed: c.routed.load(Ordering::Relaxed),
                out_of_region: c.out_of_region.load(Ordering::Relaxed),
                refused: c.refused.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Counts and logs a refused query.
    pub fn refused(&self, tenant: &str, db: &str, regions: &str, reason: &str) {
        TenantCounters::add(&self.counters(tenant, regions).refused);
        tracing::warn!(
            target: TARGET,
            event = "refused",
            tenant,
            db,
            regions,
            reason,
            "residency: query refused"
        );
    }
}

/// Logs a query sent outside its tenant's regions (its counters are the
/// caller's, already at hand).
pub fn out_of_region(tenant: &str, db: &str, regions: &str, node: &str, node_region: &str) {
    tracing::warn!(
        target: TARGET,
        event = "out_of_region",
        tenant,
        db,
        regions,
        node,
        node_region,
        reason = "no node in the tenant's regions is available (policy preferred)",
        "residency: query sent out of region"
    );
}
