//! Wiring: the listener, the shared state every task gets, background
//! maintenance, and shutdown.
//!
//! Owns: [`Shared`] and the accept loop. Must not: contain protocol logic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::route::RouteCtx;
use crate::client::{self, admission, cancel::CancelRegistry};
use crate::config::Loaded;
use crate::error::ProxyError;
use crate::pool::Pools;
use crate::topology::{monitor, Topology};

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
    pub stats: crate::stats::Window,
    /// `PAUSE`/`RESUME`, `DISABLE`/`ENABLE`.
    pub gates: crate::pool::gates::Gates,
    /// Errors sent to clients, by SQLSTATE (for `/metrics`).
    pub errors: crate::stats::ErrorCounts,
    /// The console's `SET`s not yet written by `SAVE CONFIG`.
    pub unsaved: crate::admin::live::Unsaved,
    /// `SHOW QUERIES` (when `query_stats` is on).
    pub queries: crate::stats::queries::QueryStats,
    /// Logged-in clients, for `max_client_conn`.
    pub clients: AtomicUsize,
    /// Logins in progress, for `max_login_clients`.
    pub logins: crate::client::admission::Logins,
    /// Client bytes buffered beyond each client's first 64 KiB.
    pub client_buffered: AtomicUsize,
    /// Clients buffering beyond their first 64 KiB: at most
    /// `max_total_client_buffer / max_client_buffer` of them.
    pub buffer_holders: AtomicUsize,
    /// One per database with replicas, residency rules or a place in a
    /// database made of clusters, made at start (a reload does not change
    /// a database's nodes).
    topologies: HashMap<String, Arc<Topology>>,
    /// Per (database, user): its pools on every node, for routed sessions.
    pub routes: Mutex<HashMap<(String, String), Arc<RouteCtx>>>,
    /// Cancelled when the proxy stops accepting and asks clients to leave.
    pub shutdown: CancellationToken,
    /// The same fact as a plain flag for the per-transaction check
    /// (`CancellationToken::is_cancelled` takes a proxy-wide lock).
    stopping: AtomicBool,
}

impl Shared {
    /// The database's nodes, for databases with replicas.
    pub fn topology(&self, db: &str) -> Option<&Arc<Topology>> {
        self.topologies.get(db)
    }

    /// Every database's topology, by name.
    pub fn topologies(&self) -> impl Iterator<Item = (&String, &Arc<Topology>)> {
        self.topologies.iter()
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
        let queries = crate::stats::queries::QueryStats::default();
        let p = &loaded.config.proxy;
        queries.configure(p.query_stats, p.query_stats_max);
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
        Arc::new(Self {
            topologies,
            routes: Mutex::default(),
            config: ArcSwap::from_pointee(loaded),
            pools: Pools::default(),
            statements: Default::default(),
            cancels: Arc::new(CancelRegistry::default()),
            audit: Default::default(),
            stats: Default::default(),
            gates: Default::default(),
            errors: Default::default(),
            unsaved: Default::default(),
            queries,
            clients: AtomicUsize::new(0),
            logins: Default::default(),
            client_buffered: AtomicUsize::new(0),
            buffer_holders: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
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
            pool.set_settings(crate::pool::PoolSettings::from_config(&new, &pool.key));
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
        self.config.store(Arc::new(new));
        Ok(())
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The HTTP endpoints' address, with `admin_listen`.
    pub admin_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl Proxy {
    /// Binds the listener and starts accepting and maintaining pools.
    ///
    /// # Errors
    /// The listen address cannot be bound.
    pub async fn start(loaded: Loaded) -> std::io::Result<Proxy> {
        let listener = bind(&loaded.config.proxy.listen, "listen").await?;
        let addr = listener.local_addr()?;
        let http = match &loaded.config.proxy.admin_listen {
            Some(a) => Some(bind(a, "admin_listen").await?),
            None => None,
        };
        let admin_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        let shared = Shared::new(loaded);
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(listener, shared.clone(), tracker.clone()));
        tokio::spawn(maintain_loop(shared.clone()));
        start_monitors(&shared);
        if let Some(http) = http {
            tokio::spawn(crate::metrics::http::serve(http, shared.clone()));
        }
        tracing::info!(%addr, "pgwarden listening");
        Ok(Proxy {
            addr,
            admin_addr,
            shared,
            tracker,
        })
    }

    /// Stops accepting, asks idle clients to leave (57P01), lets open
    /// transactions finish, and waits up to `timeout` for every client.
    /// Returns true if all left in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.begin_shutdown();
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }

    pub fn client_count(&self) -> usize {
        self.shared.clients.load(Ordering::Relaxed)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.cancelled() => return,
        };
        let socket = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let budget = shared.config.load().config.proxy.login_budget();
        let ticket = admission::enter(&shared, budget);
        let shared = shared.clone();
        let sessions = tracker.clone();
        tracker.spawn(async move {
            let ticket = match ticket {
                Ok(t) => t,
                Err(e) => {
                    shared.errors.count(&e);
                    refuse(socket, &e).await;
                    return;
                }
            };
            let session = tokio::select! {
                s = client::login(socket, shared, &ticket) => s,
                () = ticket.evicted() => None,
            };
            drop(ticket);
            if let Some(session) = session {
                sessions.spawn(session.run());
            }
        });
    }
}

/// Answers a client refused at the door with `e` once it has sent its
/// startup packet (an 'N' to SSLRequest first, so libpq reads the error).
async fn refuse(socket: TcpStream, e: &ProxyError) {
    let mut stream = crate::net::MessageStream::new(socket);
    let deadline = Duration::from_secs(5);
    let _ = tokio::time::timeout(deadline, async {
        loop {
            match crate::wire::startup::decode_startup(&stream.rbuf) {
                Ok(Some((crate::wire::startup::StartupPacket::SslRequest, used)))
                | Ok(Some((crate::wire::startup::StartupPacket::GssEncRequest, used))) => {
                    bytes::Buf::advance(&mut stream.rbuf, used);
                    if stream.write_all(b"N").await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {
                    if stream.fill().await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    client::reject(&mut stream.io, e).await;
}

/// Binds, with an error that names the key and the address (the OS's own
/// "Address already in use" or lookup failure says neither).
async fn bind(addr: &str, key: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{key} = \"{addr}\": {e}")))
}

/// One topology monitor per database with a topology, until shutdown.
fn start_monitors(shared: &Arc<Shared>) {
    let loaded = shared.config.load();
    for (name, topology) in &shared.topologies {
        let Some(db) = loaded.database(name) else {
            continue;
        };
        let Some((user, password)) = loaded.monitor_login(name) else {
            continue;
        };
        let r = &db.routing;
        let settings = monitor::MonitorSettings {
            dbname: db.dbname.clone().unwrap_or_else(|| name.clone()),
            user,
            password,
            interval: r.monitor_interval.0,
            timeout: r
                .monitor_timeout
                .enabled()
                .unwrap_or(Duration::from_secs(1)),
            rise: r.monitor_rise,
            max_lag_bytes: r.max_replica_lag_bytes,
            max_lag_ms: r.max_replica_lag_ms,
            allowed_auth: loaded.allowed_server_auth(),
            tls: loaded.tls_policy(name),
        };
        tokio::spawn(monitor::run(
            topology.clone(),
            settings,
            shared.shutdown.clone(),
        ));
    }
}

async fn maintain_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        shared.stats.tick(&shared.pools);
        for pool in shared.pools.all() {
            for slot in pool.maintain() {
                let pool = pool.clone();
                tokio::spawn(async move { pool.fill_slot(slot).await });
            }
        }
    }
}
