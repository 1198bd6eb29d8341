//! Where a login's transactions may go: the per-node pools of its database
//! (or of each of its regional clusters), its tenant, and the node whose
//! server parameters greet it.
//!
//! Owns: the choice of a login's pools ([`choose`]), made once at login.
//! Must not:
//! route a transaction (that is [`super::route`]).

use std::sync::Arc;

use super::tenancy::{Plan, Tenancy};
use crate::auth::backend::BackendSecret;
use crate::config::residency::{Policy, TenantFrom};
use crate::config::{DatabaseSettings, Loaded};
use crate::error::ProxyError;
use crate::pool::{Clusters, NodePools, Pool, PoolKey};
use crate::routing::nodeset::NodeSet;
use crate::server::ServerTarget;
use crate::shared::Shared;
use crate::topology::Writer;

/// Who pgwarden logs in to the servers as, with which secret.
pub struct ServerLogin {
    pub user: String,
    pub secret: Option<BackendSecret>,
}

impl ServerLogin {
    /// A database with its own `user` logs every client in as that user,
    /// so that they share one pool, as in PgBouncer; otherwise the client's
    /// own user and the secret its authentication gave.
    pub fn of(
        db: &DatabaseSettings,
        loaded: &Loaded,
        user: &str,
        own: Option<BackendSecret>,
    ) -> Self {
        let Some(forced) = &db.user else {
            return Self {
                user: user.to_owned(),
                secret: own,
            };
        };
        let configured = db.password.clone().map(|p| BackendSecret::Password(p.0));
        let stored = || {
            loaded
                .users
                .get(forced)
                .and_then(BackendSecret::from_stored)
        };
        Self {
            user: forced.clone(),
            secret: configured.or_else(stored),
        }
    }
}

/// A login's pools, chosen once.
pub struct Chosen {
    /// The pool on the configured primary (of the tenant's cluster).
    pub pool: Arc<Pool>,
    /// Each cluster's pools on every node, and the tenant, when the
    /// database is routed.
    pub routed: Option<(Clusters, Box<Tenancy>)>,
    /// The pool whose server parameters greet the client.
    pub welcome: Arc<Pool>,
}

/// Chooses the pools of a client of `database` (configured as `db`) who
/// logged in as `user`; refuses a tenant that cannot be served.
pub fn choose(
    shared: &Shared,
    loaded: &Loaded,
    (database, db): (&str, &DatabaseSettings),
    user: &str,
    tracked: &[(String, String)],
    server: &ServerLogin,
) -> Result<Chosen, ProxyError> {
    let target_of = |name: &str, settings: &DatabaseSettings| {
        let key = PoolKey::new(name, &server.user);
        let target = ServerTarget {
            addr: settings.primary.clone(),
            dbname: settings.dbname.clone().unwrap_or_else(|| name.to_owned()),
            user: server.user.clone(),
            secret: server.secret.clone(),
            allowed_auth: loaded.allowed_server_auth(),
        };
        (key, target)
    };
    let clusters: Option<Clusters> = if db.clusters.is_empty() {
        let (key, target) = target_of(database, db);
        node_pools(shared, loaded, &key, &target).map(|r| Arc::from([r]))
    } else {
        let members: Option<Vec<_>> = db
            .clusters
            .iter()
            .map(|c| {
                let (key, target) = target_of(c, loaded.database(c)?);
                node_pools(shared, loaded, &key, &target)
            })
            .collect();
        Some(Arc::from(members.ok_or(ProxyError::Internal)?))
    };
    let Some(clusters) = clusters else {
        let (key, target) = target_of(database, db);
        let pool = shared.pools.get_or_create(&key, loaded, target);
        refresh_secret(server, [&pool]);
        return Ok(Chosen {
            welcome: pool.clone(),
            pool,
            routed: None,
        });
    };
    let (tenancy, plan) = tenant_of(loaded, shared, &clusters, database, user, tracked)?;
    let member = plan.map_or(0, |p| p.member);
    let pool = clusters.get(member).and_then(|m| m.pools.first()).cloned();
    let pool = pool.ok_or(ProxyError::Internal)?;
    refresh_secret(server, clusters.iter().flat_map(|m| m.pools.iter()));
    let welcome = match welcome_pool(&clusters, plan) {
        Some(p) => p,
        // No node is known to be up and no tenant rule restricts the
        // session: the primary's pool tries, and its own error (08001, a
        // server's refusal) is the client's, not a residency one.
        None if db.residency.policy == Policy::Off => pool.clone(),
        None => return Err(tenancy.no_node(&shared.audit)),
    };
    Ok(Chosen {
        pool,
        routed: Some((clusters, tenancy)),
        welcome,
    })
}

/// Keeps the freshest credentials: a newer login may carry SCRAM keys for
/// a password changed since the pool was made.
fn refresh_secret<'a>(server: &ServerLogin, pools: impl IntoIterator<Item = &'a Arc<Pool>>) {
    let Some(secret) = &server.secret else {
        return;
    };
    for p in pools {
        let secret = secret.clone();
        p.update_target(|t| t.secret = Some(secret));
    }
}

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
