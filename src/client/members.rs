//! Where a login's transactions may go: the per-node pools of its database
//! (or of each of its regional clusters), its tenant, and the node whose
//! server parameters greet it.
//!
//! Owns: the shared [`NodePools`] per (database, server user). Must not:
//! route a transaction (that is [`super::route`]).

use std::sync::Arc;

use super::tenancy::{Plan, Tenancy};
use crate::config::residency::{Policy, TenantFrom};
use crate::config::Loaded;
use crate::error::ProxyError;
use crate::pool::{Clusters, NodePools, Pool, PoolKey};
use crate::routing::nodeset::NodeSet;
use crate::server::ServerTarget;
use crate::shared::Shared;
use crate::topology::Writer;

/// The session's tenant from its configured source; where the tenant's
/// first transaction would go, when the tenant is known at login (an
/// unknown tenant is refused here).
pub fn tenant_of(
    loaded: &Loaded,
    shared: &Shared,
    members: &Clusters,
    database: &str,
    user: &str,
    tracked: &[(String, String)],
) -> Result<(Box<Tenancy>, Option<Plan>), ProxyError> {
    let settings = loaded
        .database(database)
        .map(|d| d.residency.clone())
        .unwrap_or_default();
    // As its own parameter, or from `options=-c pgwarden.tenant=...`
    // (the handshake expands `options` into parameters of their own).
    let param = || {
        tracked
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case("pgwarden.tenant"))
            .map(|(_, v)| v.clone())
    };
    let tenant = match settings.tenant_from {
        TenantFrom::User => Some(user.to_owned()),
        TenantFrom::Database => Some(database.to_owned()),
        TenantFrom::Startup | TenantFrom::Set => param(),
    };
    let later = tenant.is_none() && settings.tenant_from == TenantFrom::Set;
    let mut tenancy = Tenancy::new(database, tenant);
    if later && settings.policy != Policy::Off {
        return Ok((tenancy, None));
    }
    let plan = tenancy.plan(loaded, members, &shared.audit)?;
    Ok((tenancy, Some(plan)))
}

/// Where the welcome's server parameters come from: the writer of the
/// tenant's cluster, else a node the tenant may use (a cached welcome
/// first: it needs no server). `None`: no node the tenant may use is up.
pub fn welcome_pool(members: &Clusters, plan: Option<Plan>) -> Option<Arc<Pool>> {
    let plan = plan.unwrap_or(Plan {
        member: 0,
        mask: NodeSet::ALL,
        local: NodeSet::ALL,
        spill: false,
    });
    let ctx = members.get(plan.member)?;
    let snap = ctx.topology.snapshot();
    let writer = match snap.writer {
        Writer::Node(w) => Some(w),
        _ => None,
    };
    let allowed = |id: usize| plan.spill || plan.mask.contains(id);
    let candidates: Vec<usize> = writer
        .into_iter()
        .chain((0..ctx.pools.len()).filter(|&id| snap.nodes.get(id).is_some_and(|v| v.up)))
        .filter(|&id| allowed(id))
        .collect();
    let cached = candidates
        .iter()
        .find(|&&id| ctx.pools[id].welcome().is_some());
    cached
        .or(candidates.first())
        .map(|&id| ctx.pools[id].clone())
}

/// The pools on every node for `key`, shared by its sessions; `None` for a
/// database without a topology.
pub fn node_pools(
    shared: &Shared,
    loaded: &Loaded,
    key: &PoolKey,
    target: &ServerTarget,
) -> Option<Arc<NodePools>> {
    let topology = shared.topology(&key.db)?;
    shared.pools.node_pools(topology, loaded, key, target)
}
