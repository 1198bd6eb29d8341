//! Data residency: which nodes a tenant's queries may reach.
//!
//! Owns: the tenant → regions lookup, the per-node masks the replica choice
//! and the writer check obey, and the choice among a logical database's
//! regional clusters. Must not: do I/O; the session applies the answers
//! and counts and logs what they refused.
//!
use super::nodeset::NodeSet;
use crate::config::residency::{Policy, ResidencySettings, TenantMap, UnknownTenant};

/// Why a session may not run queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `tenant_from = "set"` and no `SET pgwarden.tenant` yet.
    NotSet,
    /// Not in the tenant map and `unknown_tenant = "reject"`.
    Unknown(String),
}

/// The regions a session's tenant may be served from; `None` when the
/// database has no tenant rules (`policy = "off"`).
///
/// # Errors
/// The tenant is missing or unknown, as [`Refusal`] says.
pub fn allowed_regions(
    settings: &ResidencySettings,
    tenants: &TenantMap,
    tenant: Option<&str>,
) -> Result<Option<Vec<String>>, Refusal> {
    if settings.policy == Policy::Off {
        return Ok(None);
    }
    let Some(tenant) = tenant.filter(|t| !t.is_empty()) else {
        return Err(Refusal::NotSet);
    };
    if let Some(regions) = tenants.get(tenant) {
        return Ok(Some(regions.clone()));
    }
    match (settings.unknown_tenant, &settings.default_region) {
        (UnknownTenant::DefaultRegion, Some(region)) => Ok(Some(vec![region.clone()])),
        _ => Err(Refusal::Unknown(tenant.to_owned())),
    }
}

/// The nodes (by id) whose region is in `regions`. A node without a region
/// is in none.
pub fn mask<'a>(
    node_regions: impl IntoIterator<Item = Option<&'a str>>,
    regions: &[String],
) -> NodeSet {
    node_regions
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r.is_some_and(|r| regions.iter().any(|a| a == r)))
        .map(|(id, _)| id)
        .collect()
}

/// One regional cluster of a logical database, as configured.
#[derive(Debug, Clone)]
pub struct ClusterRegions<'a> {
    /// The cluster's own region (its primary's).
    pub region: &'a str,
    /// Every node's region, by node id.
    pub nodes: Vec<Option<&'a str>>,
}

/// The cluster a tenant is served by, and whether it is outside the
/// tenant's regions (only ever true under `preferred`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterChoice {
    pub index: usize,
    pub out_of_region: bool,
}

/// Chooses among a logical database's clusters: the first whose primary is
/// in the tenant's regions, else the first with any node there; under
/// `preferred` the first cluster when none is; with no tenant rules, the
/// one in the proxy's region, else the first. `None`: none may serve.
pub fn choose_cluster(
    clusters: &[ClusterRegions<'_>],
    allowed: Option<&[String]>,
    policy: Policy,
    local: Option<&str>,
) -> Option<ClusterChoice> {
    let inside = |index| ClusterChoice {
        index,
        out_of_region: false,
    };
    let Some(allowed) = allowed else {
        let home = clusters.iter().position(|c| Some(c.region) == local);
        return (!clusters.is_empty()).then(|| inside(home.unwrap_or(0)));
    };
    let has = |r: &str| allowed.iter().any(|a| a == r);
    if let Some(i) = clusters.iter().position(|c| has(c.region)) {
        return Some(inside(i));
    }
    if let Some(i) = clusters
        .iter()
        .position(|c| c.nodes.iter().flatten().any(|r| has(r)))
    {
        return Some(inside(i));
    }
    (policy == Policy::Preferred && !clusters.is_empty()).then_some(ClusterChoice {
        index: 0,
        out_of_region: true,
    })
}

#[cfg(test)]
pub(crate) mod tests;
