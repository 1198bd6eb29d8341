//! All pools, found by (database, user). Looked up once per client login,
//! never per transaction.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use super::{Limit, Pool, PoolSettings};
use crate::config::Loaded;
use crate::server::ServerTarget;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolKey {
    /// The database name as clients use it (the `[databases.NAME]` key).
    pub db: String,
    pub user: String,
    /// Which of the database's nodes: 0 is the configured primary, then
    /// the replicas in order.
    pub node: usize,
}

impl PoolKey {
    pub fn new(db: &str, user: &str) -> Self {
        Self {
            db: db.to_owned(),
            user: user.to_owned(),
            node: 0,
        }
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node {
            0 => write!(f, "{}@{}", self.user, self.db),
            n => write!(f, "{}@{}#{n}", self.user, self.db),
        }
    }
}

impl PoolSettings {
    /// The effective settings of the pool for `key` under `loaded`.
    pub fn from_config(loaded: &Loaded, key: &PoolKey) -> Self {
        let p = &loaded.config.proxy;
        Self {
            size: loaded.pool_size(&key.db, &key.user),
            min_size: loaded.min_pool_size(&key.db),
            reserve_size: loaded.reserve_pool_size(&key.db, &key.user),
            reserve_timeout: p.reserve_pool_timeout.enabled(),
            max_db_connections: loaded.max_db_connections(&key.db),
            max_user_connections: loaded.max_user_connections(&key.user),
            query_wait_timeout: p.query_wait_timeout.enabled(),
            connect_timeout: p
                .server_connect_timeout
                .enabled()
                .unwrap_or(std::time::Duration::from_secs(15)),
            login_retry: p.server_login_retry.0,
            lifetime: loaded.server_lifetime(&key.db),
            startup: loaded
                .server_startup(&key.db)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            connect_query: loaded.connect_query(&key.db).map(str::to_owned),
            idle_timeout: p.server_idle_timeout.enabled(),
            // PgBouncer 1.25: "<empty>" sends an empty query (the cheapest
            // round trip), "" turns the check off.
            check_query: match p.server_check_query.trim() {
                "" => None,
                "<empty>" => Some(String::new()),
                q => Some(q.to_owned()),
            },
            check_delay: p.server_check_delay.0,
            refuse_session_features: loaded
                .config
                .databases
                .get(&key.db)
                .is_some_and(|d| d.session_features == crate::config::SessionFeatures::Refuse),
            retire_before: None,
            tls: loaded.tls_policy(&key.db),
            tcp: p.tcp_options(),
            round_robin: p.server_round_robin,
        }
    }
}

#[derive(Default)]
pub struct Pools {
    map: RwLock<HashMap<PoolKey, Arc<Pool>>>,
    db_limits: Mutex<HashMap<String, Arc<Limit>>>,
    user_limits: Mutex<HashMap<String, Arc<Limit>>>,
    /// Per (database, user): its pools on every node, for routed sessions.
    pub(super) node_pools: Mutex<HashMap<(String, String), Arc<super::NodePools>>>,
}

impl Pools {
    pub fn get(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The pool for `key`, created from `loaded` on first use.
    pub fn get_or_create(&self, key: &PoolKey, loaded: &Loaded, target: ServerTarget) -> Arc<Pool> {
        if let Some(pool) = self.get(key) {
            return pool;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = map.get(key) {
            return pool.clone();
        }
        // max_db_connections holds per node: each is its own server.
        let db_limit = shared_limit(&self.db_limits, &format!("{}#{}", key.db, key.node));
        let user_limit = shared_limit(&self.user_limits, &key.user);
        let pool = Pool::new(
            key.clone(),
            PoolSettings::from_config(loaded, key),
            target,
            db_limit.clone(),
            user_limit.clone(),
        );
        db_limit.add_member(&pool);
        user_limit.add_member(&pool);
        map.insert(key.clone(), pool.clone());
        pool
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

fn shared_limit(limits: &Mutex<HashMap<String, Arc<Limit>>>, name: &str) -> Arc<Limit> {
    limits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}
