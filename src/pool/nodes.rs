//! One (database, user)'s pools on every node of the database, made once
//! and shared by all of that pair's routed sessions.

use std::sync::Arc;

use super::{Pool, PoolKey, Pools};
use crate::config::{Loaded, RoutingSettings};
use crate::server::ServerTarget;
use crate::topology::Topology;

/// One (database, user)'s pools on every node of one topology.
pub struct NodePools {
    pub topology: Arc<Topology>,
    /// Indexed by node.
    pub pools: Vec<Arc<Pool>>,
    pub settings: RoutingSettings,
}

/// The node pools of every cluster a session's database is served by: one
/// for a plain database, one per region set for a database made of
/// `clusters`.
pub type Clusters = Arc<[Arc<NodePools>]>;

impl Pools {
    /// The pools on every node of `topology` for `key`, shared by its
    /// sessions; `None` when `loaded` no longer has the database.
    pub fn node_pools(
        &self,
        topology: &Arc<Topology>,
        loaded: &Loaded,
        key: &PoolKey,
        target: &ServerTarget,
    ) -> Option<Arc<NodePools>> {
        let mut made = self.node_pools.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key.db.clone(), key.user.clone());
        if let Some(r) = made.get(&id) {
            return Some(r.clone());
        }
        let settings = loaded.database(&key.db)?.routing.clone();
        let pools = topology
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let node_key = PoolKey {
                    node: i,
                    ..key.clone()
                };
                let node_target = ServerTarget {
                    addr: node.addr.clone(),
                    ..target.clone()
                };
                self.get_or_create(&node_key, loaded, node_target)
            })
            .collect();
        let nodes = Arc::new(NodePools {
            topology: topology.clone(),
            pools,
            settings,
        });
        made.insert(id, nodes.clone());
        Some(nodes)
    }
}
