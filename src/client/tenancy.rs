//! A session's tenant (data residency): who it is, and which cluster and
//! nodes its queries may use under the config in force.
//!
//! Owns: the session's tenant and its [`Decision`], made again when a
//! reload changes the config or the session sets its tenant, so that a
//! reload applies at the next transaction. The rules themselves are pure
//! and live in [`crate::routing::residency`]; [`super::route`] obeys the
//! masks and reports what it routed here for the audit.

use std::sync::Arc;

use crate::audit::{self, Audit, TenantCounters};
use crate::config::residency::{Policy, TenantFrom};
use crate::config::Loaded;
use crate::error::ProxyError;
use crate::pool::NodePools;
use crate::routing::nodeset::NodeSet;
use crate::routing::residency::{self, allowed_regions, choose_cluster, ClusterRegions, Refusal};
use crate::routing::select;
use crate::topology::{NodeId, Topology};

/// Where one transaction may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The cluster (index into the session's members).
    pub member: usize,
    /// The nodes it may use.
    pub mask: NodeSet,
    /// Nodes in the proxy's region, preferred among those.
    pub local: NodeSet,
    /// `preferred`: when no node in `mask` can serve, any node of the
    /// member may (counted and logged as out of region).
    pub spill: bool,
}

/// The tenant's place under one config generation.
struct Decision {
    generation: u64,
    policy: Policy,
    member: usize,
    /// Per member: its nodes in the tenant's regions (all, with no rules).
    allowed: Vec<NodeSet>,
    /// Per member: its nodes in the proxy's region (all, when it has none).
    local: Vec<NodeSet>,
    /// The tenant's regions, comma-joined, for errors and the audit.
    regions: String,
    /// Per member, per node: the tenant's counters in the node's region
    /// (empty with no rules).
    counters: Vec<Vec<Arc<TenantCounters>>>,
}

/// A session's tenant and where it may be served.
pub struct Tenancy {
    /// The database the client named: its `[residency]` applies.
    db: String,
    tenant: Option<String>,
    /// A query ran since the tenant was set: `SET` may no longer change it.
    used: bool,
    decision: Option<Decision>,
}

impl Tenancy {
    pub fn new(db: &str, tenant: Option<String>) -> Box<Self> {
        Box::new(Self {
            db: db.to_owned(),
            tenant,
            used: false,
            decision: None,
        })
    }

    /// The tenant, and whether a query has run since it was set (for an
    /// online restart).
    pub fn export(&self) -> (Option<String>, bool) {
        (self.tenant.clone(), self.used)
    }

    /// The tenant a session had on the process it was handed over from;
    /// checked against the rules at its next transaction, as any tenant.
    pub fn import(&mut self, tenant: Option<String>, used: bool) {
        self.tenant = tenant;
        self.used = used;
        self.decision = None;
    }

    /// `SET`/`RESET pgwarden.tenant`.
    ///
    /// # Errors
    /// The tenant comes from elsewhere, or was fixed by a first query.
    pub fn set(&mut self, loaded: &Loaded, tenant: Option<String>) -> Result<(), ProxyError> {
        let settings = loaded
            .database(&self.db)
            .map(|d| d.residency.clone())
            .unwrap_or_default();
        if settings.policy != Policy::Off {
            if settings.tenant_from != TenantFrom::Set {
                return Err(ProxyError::TenantFixed(match settings.tenant_from {
                    TenantFrom::User => "it is the user name",
                    TenantFrom::Database => "it is the database name",
                    _ => "it is the startup parameter pgwarden.tenant",
                }));
            }
            if self.used && !settings.tenant_changes && tenant != self.tenant {
                return Err(ProxyError::TenantFixed(
                    "it was set before the first query and tenant_changes is off",
                ));
            }
        }
        if tenant != self.tenant {
            self.tenant = tenant;
            self.used = false;
            self.decision = None;
        }
        Ok(())
    }

    /// Where the next transaction may go, deciding again after a reload.
    ///
    /// # Errors
    /// The tenant is missing or unknown, or `strict` leaves it no cluster;
    /// each refusal is counted and logged.
    pub fn plan(
        &mut self,
        loaded: &Loaded,
        members: &[Arc<NodePools>],
        audit: &Audit,
    ) -> Result<Plan, ProxyError> {
        if self
            .decision
            .as_ref()
            .is_none_or(|d| d.generation != loaded.generation)
        {
            self.decision = None;
            let decision = self.decide(loaded, members, audit);
            self.decision = Some(decision.inspect_err(|e| self.refused(audit, e))?);
        }
        let Some(d) = self.decision.as_ref() else {
            return Err(ProxyError::Internal);
        };
        let plan = |member: usize, mask: NodeSet, spill: bool| Plan {
            member,
            mask,
            local: d.local[member],
            spill,
        };
        if d.policy != Policy::Preferred || any_up(&members[d.member].topology, d.allowed[d.member])
        {
            return Ok(plan(
                d.member,
                d.allowed[d.member],
                d.policy == Policy::Preferred,
            ));
        }
        // `preferred` and none of the tenant's nodes is up: its own cluster's
        // other nodes, else the first other cluster with a node up.
        let m = (0..members.len())
            .map(|k| (d.member + k) % members.len())
            .find(|&m| any_up(&members[m].topology, NodeSet::ALL))
            .unwrap_or(d.member);
        Ok(plan(m, NodeSet::ALL, false))
    }

    /// A query runs with the current tenant: with `tenant_from = "set"`,
    /// it is fixed from now on unless `tenant_changes` is on.
    pub fn mark_used(&mut self) {
        self.used = true;
    }

    /// Counts a transaction routed to `node` of `member`, and logs it when
    /// it left the tenant's regions.
    pub fn routed(&self, member: usize, node: NodeId, topology: &Topology) {
        let Some(d) = self.decision.as_ref() else {
            return;
        };
        let Some(c) = d.counters.get(member).and_then(|m| m.get(node)) else {
            return;
        };
        TenantCounters::add(&c.routed);
        if !d.allowed[member].contains(node) {
            TenantCounters::add(&c.out_of_region);
            audit::out_of_region(
                self.tenant(),
                &self.db,
                &d.regions,
                &topology.nodes[node].addr,
                topology.nodes[node].region.as_deref().unwrap_or(""),
            );
        }
    }

    /// Whether `node` of `member` may still serve this session (checked
    /// when a pinned session keeps its server across transactions).
    pub fn allows(&self, member: usize, node: NodeId) -> bool {
        self.decision.as_ref().is_none_or(|d| {
            d.policy == Policy::Preferred
                || (d.member == member && d.allowed[member].contains(node))
        })
    }

    /// The residency error for a transaction no allowed node could take.
    pub fn no_node(&self, audit: &Audit) -> ProxyError {
        let regions = self
            .decision
            .as_ref()
            .map(|d| d.regions.clone())
            .unwrap_or_default();
        let e = ProxyError::NoNodeInRegion {
            db: self.db.clone(),
            tenant: self.tenant().to_owned(),
            regions,
        };
        self.refused(audit, &e);
        e
    }

    fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }

    fn refused(&self, audit: &Audit, e: &ProxyError) {
        let regions = match e {
            ProxyError::NoNodeInRegion { regions, .. } => regions.as_str(),
            _ => "",
        };
        audit.refused(self.tenant(), &self.db, regions, &e.to_string());
    }

    fn decide(
        &self,
        loaded: &Loaded,
        members: &[Arc<NodePools>],
        audit: &Audit,
    ) -> Result<Decision, ProxyError> {
        let settings = loaded
            .database(&self.db)
            .map(|d| d.residency.clone())
            .unwrap_or_default();
        let regions = allowed_regions(&settings, &loaded.config.tenants, self.tenant.as_deref())
            .map_err(|r| match r {
                Refusal::NotSet => ProxyError::TenantNotSet,
                Refusal::Unknown(t) => ProxyError::UnknownTenant(t),
            })?;
        let nodes: Vec<Vec<Option<&str>>> = members
            .iter()
            .map(|m| node_regions(loaded, &m.topology))
            .collect();
        let clusters: Vec<ClusterRegions<'_>> = members
            .iter()
            .zip(&nodes)
            .map(|(m, nodes)| ClusterRegions {
                region: loaded
                    .database(&m.topology.db)
                    .and_then(|d| d.region.as_deref())
                    .unwrap_or(""),
                nodes: nodes.clone(),
            })
            .collect();
        let proxy_region = loaded.config.proxy.region.as_deref();
        let joined = regions.as_ref().map(|r| r.join(",")).unwrap_or_default();
        let choice = choose_cluster(&clusters, regions.as_deref(), settings.policy, proxy_region)
            .ok_or_else(|| ProxyError::NoNodeInRegion {
            db: self.db.clone(),
            tenant: self.tenant().to_owned(),
            regions: joined.clone(),
        })?;
        let masks = |regions: Option<&[String]>| -> Vec<NodeSet> {
            nodes
                .iter()
                .map(|n| regions.map_or(NodeSet::ALL, |r| residency::mask(n.iter().copied(), r)))
                .collect()
        };
        let local: Vec<NodeSet> = masks(proxy_region.map(|p| vec![p.to_owned()]).as_deref());
        let counters = match &regions {
            None => Vec::new(),
            Some(_) => nodes
                .iter()
                .map(|n| {
                    n.iter()
                        .map(|r| audit.counters(self.tenant(), r.unwrap_or("")))
                        .collect()
                })
                .collect(),
        };
        Ok(Decision {
            generation: loaded.generation,
            policy: settings.policy,
            member: choice.index,
            allowed: masks(regions.as_deref()),
            local,
            regions: joined,
            counters,
        })
    }
}

/// The region of each of the topology's nodes under the config in force,
/// so that a reload can move a node between regions.
fn node_regions<'a>(loaded: &'a Loaded, topology: &Topology) -> Vec<Option<&'a str>> {
    let db = loaded.database(&topology.db);
    topology
        .nodes
        .iter()
        .map(|n| db.and_then(|d| d.node_region(&n.addr)))
        .collect()
}

/// Whether any node of `topology` in `mask` was up at the last check.
fn any_up(topology: &Topology, mask: NodeSet) -> bool {
    select::any_up(&topology.snapshot(), mask)
}

#[cfg(test)]
pub(super) mod tests;
