//! What every task may reach: the running config, the pools, the
//! topologies, the counters and the console's unsaved changes, passed down
//! explicitly (no globals).
//!
//! Owns: [`Shared`] and applying a new config to it. Everything it holds is
//! defined in a module below it, so the client half, the console and the
//! HTTP endpoints all read it without importing each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::cancel::CancelRegistry;
use crate::config::Loaded;
use crate::error::ProxyError;
use crate::intern::Interner;
use crate::pool::Pools;
use crate::state::StartupSet;
use crate::stats::queries::QueryStats;
use crate::stats::{ErrorCounts, Window};
use crate::topology::Topology;

/// What every task may reach. No globals: this is passed down explicitly.
pub struct Shared {
    pub config: ArcSwap<Loaded>,
    pub pools: Pools,
    /// Prepared statements by content, shared by all clients.
    pub statements: crate::prepared::Registry,
    pub cancels: Arc<CancelRegistry>,
    /// Residency counters per tenant and region.
    pub audit: crate::audit::Audit,
    /// The previous stats period, for `SHOW STATS` averages.
    pub stats: Window,
    /// `PAUSE`/`RESUME`, `DISABLE`/`ENABLE`.
    pub gates: crate::pool::gates::Gates,
    /// Errors sent to clients, by SQLSTATE (for `/metrics`).
    pub errors: ErrorCounts,
    /// The console's `SET`s not yet written by `SAVE CONFIG`.
    pub unsaved: crate::config::Overrides,
    /// One copy of each user and database name clients log in with.
    pub names: Interner<str>,
    /// One copy of each set of startup parameters clients send (without
    /// `application_name`, which differs per client).
    pub startup_sets: Interner<StartupSet>,
    /// `SHOW QUERIES` (when `query_stats` is on).
    pub queries: QueryStats,
    /// Clients connected (for `max_client_conn`) and logins in progress
    /// (for `max_login_clients`).
    pub admission: Arc<Admission>,
    /// Client bytes buffered beyond each client's first 64 KiB.
    pub client_buffered: AtomicUsize,
    /// Clients buffering beyond their first 64 KiB: at most
    /// `max_total_client_buffer / max_client_buffer` of them.
    pub buffer_holders: AtomicUsize,
    /// One per database with replicas, residency rules or a place in a
    /// database made of clusters, made at start (a reload does not change
    /// a database's nodes).
    topologies: HashMap<String, Arc<Topology>>,
    /// Cancelled when the proxy stops accepting and asks clients to leave.
    pub shutdown: CancellationToken,
    /// Cancelled when the proxy stops accepting but serves its clients
    /// until they leave (`SHUTDOWN WAIT_FOR_CLIENTS`).
    pub draining: CancellationToken,
    /// Where sessions go during an online restart (`--takeover`).
    pub outbox: crate::handoff::Outbox,
    /// Every session's task, and every parked session's watcher: a
    /// shutdown waits for all of them.
    pub tasks: tokio_util::task::TaskTracker,
    /// Idle clients parked without a task (`park_idle_clients_after`).
    pub parked: AtomicUsize,
    /// The same fact as a plain flag for the per-transaction check
    /// (`CancellationToken::is_cancelled` takes a proxy-wide lock).
    stopping: AtomicBool,
}

impl Shared {
    /// An error pgwarden itself sends a client: counted for `/metrics`,
    /// and logged (`log_pooler_errors`) as `what: message`. A client can
    /// cause these at will, so the lines are escaped and throttled.
    pub fn pooler_error(&self, e: &ProxyError, what: &str) {
        self.errors.count(e);
        if !self.config.load().config.proxy.log_pooler_errors {
            return;
        }
        static LINES: crate::logline::Throttle = crate::logline::Throttle::new(20);
        if let Some(suppressed) = LINES.admit() {
            let error = e.to_string();
            tracing::warn!(
                sqlstate = e.sqlstate(),
                kind = e.kind(),
                suppressed,
                "{what}: {}",
                crate::logline::Clean(&error)
            );
        }
    }

    /// The database's nodes, for databases with replicas.
    pub fn topology(&self, db: &str) -> Option<&Arc<Topology>> {
        self.topologies.get(db)
    }

    /// Every database's topology, by name.
    pub fn topologies(&self) -> impl Iterator<Item = (&String, &Arc<Topology>)> {
        self.topologies.iter()
    }

    /// `server_fast_close`: after a `RECONNECT` (or a reload that changes
    /// how servers are opened) of `db` (every database for `None`), each
    /// session-mode client holding a server ends at its next transaction
    /// boundary instead of keeping the old server until it leaves.
    pub fn fast_close(&self, db: Option<&str>) {
        if !self.config.load().config.proxy.server_fast_close {
            return;
        }
        for (_, control) in self.cancels.sessions() {
            if control
                .info
                .get()
                .is_some_and(|i| !i.console && db.is_none_or(|d| d == &*i.database))
            {
                control.request_fast_close();
            }
        }
    }

    /// Stops accepting; connected clients are served until they leave.
    pub fn stop_accepting(&self) {
        self.draining.cancel();
    }

    /// Stops accepting and asks every idle session to end (57P01); busy
    /// ones end when their transaction does.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.cancel();
        // After the flag, so a session that logs in meanwhile sees one or the other.
        self.cancels.stop_all();
    }

    pub fn new(loaded: Loaded) -> Arc<Self> {
        let queries = QueryStats::default();
        let p = &loaded.config.proxy;
        queries.configure(p.query_stats, p.query_stats_max);
        crate::net::dns::configure(p.dns_max_ttl.0, p.dns_nxdomain_ttl.0);
        crate::cancel::configure(p.cancel_wait_timeout.0);
        let topologies = loaded
            .config
            .databases
            .iter()
            .filter(|(name, _)| crate::config::monitored(&loaded.config, name))
            .map(|(name, d)| {
                let mut nodes = vec![(d.primary.clone(), 1, d.region.clone())];
                nodes.extend(d.replicas.iter().map(|r| {
                    let region = d.node_region(&r.addr).map(str::to_owned);
                    (r.addr.clone(), r.weight, region)
                }));
                (name.clone(), Topology::new(name, nodes))
            })
            .collect();
        let cancels = Arc::new(CancelRegistry::default());
        cancels.set_peering(&loaded.config.peer_settings());
        Arc::new(Self {
            topologies,
            config: ArcSwap::from_pointee(loaded),
            pools: Pools::default(),
            statements: Default::default(),
            cancels,
            audit: Default::default(),
            stats: Default::default(),
            gates: Default::default(),
            errors: Default::default(),
            unsaved: Default::default(),
            names: Interner::default(),
            startup_sets: Interner::default(),
            queries,
            admission: Arc::default(),
            client_buffered: AtomicUsize::new(0),
            buffer_holders: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            outbox: Default::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            parked: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// Applies the config file read again (SIGHUP, `RELOAD`): as
    /// [`Shared::apply`], and the console's unsaved `SET`s are gone.
    ///
    /// # Errors
    /// As [`Shared::apply`].
    pub fn reload(&self, new: Loaded) -> Result<(), ProxyError> {
        self.apply(new)?;
        self.unsaved.clear();
        Ok(())
    }

    /// Applies a new config: pool settings at once, tenants, regions and
    /// residency policies from each session's next transaction.
    ///
    /// # Errors
    /// 55P02 when it changes a key read at start only (`listen`,
    /// `admin_listen`, `workers`): nothing would listen where `SHOW CONFIG`
    /// says. F0000 when it asks for residency or regional clusters on a
    /// database that has no topology (one is made at start only): applying
    /// it would promise a guarantee the running proxy cannot keep.
    pub fn apply(&self, new: Loaded) -> Result<(), ProxyError> {
        let restart = self
            .config
            .load()
            .config
            .proxy
            .restart_only_changes(&new.config.proxy);
        if !restart.is_empty() {
            return Err(ProxyError::AdminRestartOnly(restart.join(", ")));
        }
        let needs_restart: Vec<&str> = new
            .config
            .databases
            .keys()
            .filter(|db| crate::config::monitored(&new.config, db) && self.topology(db).is_none())
            .map(String::as_str)
            .collect();
        if !needs_restart.is_empty() {
            return Err(ProxyError::ConfigRefused(format!(
                "databases {needs_restart:?} would need a topology monitor (residency, clusters \
                 or replicas), which only a restart starts"
            )));
        }
        for pool in self.pools.all() {
            let next = crate::pool::PoolSettings::from_config(&new, &pool.key);
            let was = pool.settings();
            // Servers opened another way than the new settings say are
            // replaced as they fall idle, as PgBouncer does on such a RELOAD.
            let reopen = was.startup != next.startup || was.connect_query != next.connect_query;
            pool.set_settings(next);
            if reopen {
                pool.reconnect();
                self.fast_close(Some(&pool.key.db));
            }
        }
        let current = self.config.load();
        for (name, db) in &new.config.databases {
            let changed = current.database(name).is_some_and(|was| {
                was.primary != db.primary
                    || was
                        .replicas
                        .iter()
                        .map(|r| &r.addr)
                        .ne(db.replicas.iter().map(|r| &r.addr))
                    || was.routing != db.routing
            });
            if changed {
                // Monitors and per-node pools are built at start.
                tracing::warn!(db = %name, "node addresses and [routing] changes take effect at restart");
            }
        }
        drop(current);
        let p = &new.config.proxy;
        self.queries.configure(p.query_stats, p.query_stats_max);
        crate::logging::configure(&p.log_settings());
        crate::net::dns::configure(p.dns_max_ttl.0, p.dns_nxdomain_ttl.0);
        crate::cancel::configure(p.cancel_wait_timeout.0);
        // `peer_id` is restart-only: keys already issued carry it.
        let mut peering = new.config.peer_settings();
        peering.me = self.cancels.peering().me;
        self.cancels.set_peering(&peering);
        self.config.store(Arc::new(new));
        Ok(())
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}
