//! Server pools: one per (database, user) the clients connect as.
//!
//! Owns: idle servers, the FIFO queue of waiting clients, and the counts
//! behind `pool_size`, `reserve_pool_size`, `max_db_connections` and
//! `max_user_connections`. Must not: hold its lock across an `.await`
//! (every lock here is a short std `Mutex` section), or decide anything
//! about a server's health beyond "stale, expired or failed its check".
//!
//! The books (idle servers, counts, the line) are in [`state`], plain and
//! tested without sockets; waiting in line in `waiting.rs`; opening,
//! checking and aging out servers in `opening.rs`; giving back in
//! [`guard`](ServerGuard).

pub mod accepted;
pub mod gates;
mod guard;
pub mod latency;
mod limit;
mod nodes;
mod opening;
mod registry;
mod state;
mod waiting;

pub use guard::{Handoff, Rest, ServerGuard, SlotGuard, Tidy};
pub use limit::Limit;
pub use nodes::{Clusters, NodePools};
pub use registry::{PoolKey, Pools};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::Stamp;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::server::{ServerConn, ServerError, ServerTarget};
use opening::{expired, needs_check_query, still_usable, Reuse};
use state::{Homed, State, Take};
use waiting::WaitCount;

impl Homed for Box<ServerConn> {
    fn home(&self) -> u16 {
        self.home
    }
}

/// ParameterStatus values a server reported at login.
pub type Welcome = Arc<Vec<(String, String)>>;

/// The effective settings of one pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub size: usize,
    pub min_size: usize,
    pub reserve_size: usize,
    pub reserve_timeout: Option<Duration>,
    pub max_db_connections: usize,
    pub max_user_connections: usize,
    pub query_wait_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub login_retry: Duration,
    pub lifetime: Option<Duration>,
    /// Startup parameters of its servers beyond `user` and `database`.
    pub startup: Vec<(String, String)>,
    /// Run on each new server before a client gets it.
    pub connect_query: Option<String>,
    pub idle_timeout: Option<Duration>,
    /// `None`: no check; `Some("")`: an empty query.
    pub check_query: Option<String>,
    pub check_delay: Duration,
    /// Refuse session-only features instead of pinning.
    pub refuse_session_features: bool,
    /// `RECONNECT`: servers opened before this close when next idle.
    pub retire_before: Option<Stamp>,
    /// TLS towards this pool's servers (`server_tls_*`).
    pub tls: crate::net::tls::TlsPolicy,
    /// `tcp_*` options for its server sockets.
    pub tcp: crate::net::tcp::TcpOptions,
    /// `server_round_robin`: lend the least recently used idle server.
    pub round_robin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("query_wait_timeout")]
    WaitTimeout,
    #[error("server login failed: {0}")]
    Connect(Arc<ServerError>),
}

/// Counters read by the admin console and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub waiting: AtomicUsize,
    pub checkouts: AtomicU64,
    pub servers_opened: AtomicU64,
    pub servers_closed: AtomicU64,
    pub wait_micros: AtomicU64,
    /// Clients pinned to their server by a session-only feature.
    pub pinned: AtomicUsize,
    /// Clients logged in to this pool (their login's pool).
    pub clients: AtomicUsize,
    /// Query latency on this pool's servers.
    pub latency: latency::Latency,
    /// Their traffic, for `SHOW STATS` (see `client::traffic`).
    pub xacts: AtomicU64,
    pub queries: AtomicU64,
    pub recv_bytes: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub xact_micros: AtomicU64,
    pub query_micros: AtomicU64,
}

/// An idle server as the console shows it.
#[derive(Debug, Clone, Copy)]
pub struct IdleServer {
    pub id: u64,
    pub fd: i32,
    /// Statements pgwarden has prepared on it.
    pub prepared: usize,
    pub process_id: i32,
    pub addr: std::net::SocketAddr,
    pub local: Option<std::net::SocketAddr>,
    pub opened: Stamp,
    pub used: Stamp,
    pub tls: crate::net::TlsLabel,
}

pub struct Pool {
    pub key: PoolKey,
    settings: ArcSwap<PoolSettings>,
    /// Servers a `RECONNECT` is waiting to see closed.
    close_needed: AtomicUsize,
    target: Mutex<ServerTarget>,
    state: Mutex<State<Box<ServerConn>>>,
    db_limit: Arc<Limit>,
    user_limit: Arc<Limit>,
    /// ParameterStatus values of the first server, sent to clients at login.
    welcome: Mutex<Option<Welcome>>,
    /// Startup settings its servers have accepted (`client::validate`).
    pub accepted_settings: accepted::Accepted,
    pub stats: PoolStats,
}

/// What a client in line is told after a while: `send` runs then (see
/// [`Pool::checkout_noting`]).
pub struct Notice<F> {
    pub after: Duration,
    pub send: F,
}

pub(super) enum Attempt {
    Idle(Box<ServerConn>),
    Open(SlotGuard),
    Wait(oneshot::Receiver<Handoff>),
}

impl Pool {
    pub fn new(
        key: PoolKey,
        settings: PoolSettings,
        target: ServerTarget,
        db_limit: Arc<Limit>,
        user_limit: Arc<Limit>,
    ) -> Arc<Self> {
        let mut state = State::new();
        state.reuse = Reuse::of(&settings);
        Arc::new(Self {
            key,
            settings: ArcSwap::from_pointee(settings),
            close_needed: AtomicUsize::new(0),
            target: Mutex::new(target),
            state: Mutex::new(state),
            db_limit,
            user_limit,
            welcome: Mutex::new(None),
            accepted_settings: Default::default(),
            stats: PoolStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<Box<ServerConn>>> {
        // A poisoned lock means a panic mid-update elsewhere; the counts are
        // still the best information there is, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> Arc<PoolSettings> {
        self.settings.load_full()
    }

    /// New settings; a pending `RECONNECT` carries over.
    pub fn set_settings(&self, mut s: PoolSettings) {
        s.retire_before = s.retire_before.or(self.settings.load().retire_before);
        self.store_settings(s);
    }

    /// Settings and their copy in the books, changed together under the
    /// lock so that two changes cannot cross.
    fn store_settings(&self, s: PoolSettings) {
        let mut st = self.lock();
        st.reuse = Reuse::of(&s);
        self.settings.store(Arc::new(s));
    }

    /// `RECONNECT`: every server open now is closed once it is idle (those
    /// idle now at once), new ones open as needed.
    pub fn reconnect(self: &Arc<Self>) {
        let mut s = (*self.settings()).clone();
        s.retire_before = Some(Stamp::now());
        let total = self.lock().total;
        self.close_needed.store(total, Ordering::Relaxed);
        self.store_settings(s);
        self.close_idle();
    }

    /// Closes every idle server (`PAUSE`, `RECONNECT`).
    pub fn close_idle(self: &Arc<Self>) {
        let idle = self.lock().take_all_idle();
        for conn in idle {
            self.close_uncounted(*conn);
        }
    }

    /// The idle servers: (backend pid, address, local address, opened,
    /// last used), for `SHOW SERVERS`.
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        let st = self.lock();
        st.idle
            .iter()
            .map(|c| IdleServer {
                id: c.id,
                fd: c.stream.io.fd(),
                prepared: c.prepared.len(),
                process_id: c.process_id,
                addr: c.addr,
                local: c.stream.io.local_addr().ok(),
                opened: c.created,
                used: c.last_used,
                tls: c.stream.io.tls_label(),
            })
            .collect()
    }

    /// A server closes: one fewer a `RECONNECT` waits for, if it was one.
    fn closing(&self, conn: &ServerConn) {
        let old = self
            .settings
            .load()
            .retire_before
            .is_some_and(|t| conn.created <= t);
        if old {
            let _ = self
                .close_needed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Servers opened before the last `RECONNECT` still open (`WAIT_CLOSE`).
    pub fn close_needed(&self) -> usize {
        self.close_needed.load(Ordering::Relaxed)
    }

    /// Servers lent out now.
    pub fn busy(&self) -> usize {
        self.lock().busy()
    }

    /// Replaces the credentials used for new servers (e.g. SCRAM keys
    /// recovered from a client's login).
    pub fn update_target(&self, f: impl FnOnce(&mut ServerTarget)) {
        let mut t = self.target.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t);
    }

    pub fn target(&self) -> ServerTarget {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn welcome(&self) -> Option<Welcome> {
        self.welcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (idle, total, waiting) for statistics.
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.idle.len(), st.total, st.waiting())
    }

    /// How long the oldest client in line has waited (`maxwait`).
    pub fn max_wait(&self) -> Duration {
        self.lock().longest_wait()
    }

    /// Lends a server, waiting in line up to `query_wait_timeout`.
    ///
    /// # Errors
    /// The wait timed out, or a new server could not be opened.
    ///
    /// # Cancel safety
    /// Cancel safe: a server or slot handed over while the future is dropped
    /// is returned to the pool by its guard.
    pub async fn checkout(self: &Arc<Self>) -> Result<ServerGuard, PoolError> {
        self.checkout_noting(None::<Notice<std::future::Ready<()>>>)
            .await
    }

    /// [`Pool::checkout`], telling a client that has waited in line
    /// `notice.after` so by running `notice.send` (`query_wait_notify`), on
    /// the line's one timer (a second timer per wait cost ~800
    /// instructions a transaction with clients in line: docs/benchmarks.md).
    ///
    /// # Errors
    /// As [`Pool::checkout`].
    pub async fn checkout_noting<F>(
        self: &Arc<Self>,
        mut notice: Option<Notice<F>>,
    ) -> Result<ServerGuard, PoolError>
    where
        F: std::future::Future<Output = ()>,
    {
        let settings = self.settings();
        let started = Instant::now();
        let clock = tokio::time::Instant::now();
        let deadline = settings.query_wait_timeout.map(|t| clock + t);
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        loop {
            let attempt = self.try_take(false);
            let handoff = match attempt {
                Attempt::Idle(conn) => Handoff::Server(ServerGuard::new(conn, self.clone())),
                Attempt::Open(slot) => Handoff::Slot(slot),
                Attempt::Wait(rx) => {
                    // Counted by a guard: a waiter's request may be
                    // cancelled, dropping this future mid-wait.
                    let _waiting = WaitCount::new(&self.stats, started);
                    self.wait(rx, &settings, (clock, deadline), &mut notice)
                        .await?
                }
            };
            match handoff {
                Handoff::Server(guard) => {
                    if let Some(guard) = self.validate(guard, &settings).await {
                        return Ok(guard);
                    }
                }
                // Boxed: opening a server (connect, TLS, login) is a
                // future of ~2 KiB, and it would make every wait in line
                // allocate and copy that much (docs/benchmarks.md).
                Handoff::Slot(slot) => return Box::pin(self.open(slot, &settings)).await,
            }
        }
    }

    /// An idle server, or a slot to open one, or a place in line.
    pub(super) fn try_take(self: &Arc<Self>, reserve: bool) -> Attempt {
        let settings = self.settings.load();
        let cap = settings.size + if reserve { settings.reserve_size } else { 0 };
        let here = crate::worker::current();
        let taken = self.lock().take(
            cap,
            || self.acquire_limits(&settings),
            (here, settings.round_robin),
        );
        match taken {
            Take::Idle(conn) => Attempt::Idle(conn),
            Take::Open => Attempt::Open(SlotGuard::new(self.clone())),
            Take::Wait(rx) => Attempt::Wait(rx),
        }
    }

    fn acquire_limits(&self, s: &PoolSettings) -> bool {
        if !self.db_limit.try_acquire(s.max_db_connections) {
            return false;
        }
        if !self.user_limit.try_acquire(s.max_user_connections) {
            self.db_limit.release();
            return false;
        }
        true
    }

    fn release_limits(&self) {
        self.db_limit.release();
        self.user_limit.release();
    }

    /// Lends an idle server at once when one is ready without a health
    /// check: the common case, with no await, no allocation and one short
    /// lock. `None` sends the caller to [`Pool::checkout`].
    pub fn try_checkout(self: &Arc<Self>) -> Option<ServerGuard> {
        let now = Stamp::now();
        loop {
            let (conn, reuse) = {
                let mut st = self.lock();
                let reuse = st.reuse;
                let i = st.next_idle(crate::worker::current(), reuse.round_robin)?;
                if needs_check_query(&reuse, &st.idle[i], now) {
                    return None;
                }
                (st.idle.remove(i), reuse)
            };
            let mut guard = ServerGuard::new(conn, self.clone());
            if still_usable(guard.conn(), &reuse, now) {
                self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
                return Some(guard);
            }
            guard.close();
        }
    }

    /// When this pool has room but a full `max_db_connections` or
    /// `max_user_connections` holds it back, closes the least recently used
    /// idle server of another pool under the same limit. Returns true if one
    /// was closed.
    fn evict_for(&self, s: &PoolSettings, reserve: bool) -> bool {
        let cap = s.size + if reserve { s.reserve_size } else { 0 };
        if self.lock().total >= cap {
            return false;
        }
        let limits = [
            (&self.db_limit, s.max_db_connections),
            (&self.user_limit, s.max_user_connections),
        ];
        for (limit, max) in limits {
            if !limit.is_full(max) {
                continue;
            }
            if limit.others(self).iter().any(|p| p.close_oldest_idle()) {
                return true;
            }
        }
        false
    }

    /// Closes this pool's least recently used idle server, if it has one.
    fn close_oldest_idle(&self) -> bool {
        let conn = {
            let mut st = self.lock();
            if st.idle.is_empty() {
                return false;
            }
            st.count_down();
            st.idle.remove(0)
        };
        tracing::debug!(pool = %self.key, pid = conn.process_id, "idle server closed for another pool");
        self.close_uncounted(*conn);
        true
    }

    /// Closes a server whose slot the caller has already counted down
    /// (nobody is handed its place).
    fn close_uncounted(&self, conn: ServerConn) {
        self.closing(&conn);
        self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        conn.close();
        self.release_limits();
    }

    /// Returns a server: to the first live waiter, or to the idle list.
    pub(crate) fn checkin(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        let now = Stamp::now();
        conn.last_used = now;
        if conn.broken || expired(&conn, &self.lock().reuse, now) {
            self.close_server(*conn);
            return;
        }
        let guard = ServerGuard::new(conn, self.clone());
        self.hand_to_waiter(Handoff::Server(guard), |st, back| {
            if let Handoff::Server(g) = back {
                st.idle.push(g.into_inner());
            }
        });
    }

    /// Closes a lent or returned server and frees its slot: to the next
    /// client in line, else counted down.
    pub(crate) fn close_server(self: &Arc<Self>, conn: ServerConn) {
        self.closing(&conn);
        self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pool = %self.key, pid = conn.process_id, "server closed");
        conn.close();
        self.free_slot();
    }

    /// A slot was freed: give it to the next waiter, or count it down.
    pub(crate) fn free_slot(self: &Arc<Self>) {
        // The slot passes on as is: total and limits stay counted.
        let slot = SlotGuard::new(self.clone());
        let mut kept = false;
        self.hand_to_waiter(Handoff::Slot(slot), |st, back| {
            if let Handoff::Slot(s) = back {
                // Taken back without recursing into its Drop.
                let _ = s.into_pool();
            }
            st.count_down();
            kept = true;
        });
        if kept {
            self.release_limits();
        }
    }

    /// Gives `handoff` to the first client still waiting; when none is,
    /// `keep` puts it away under the same lock, so that a client that
    /// starts waiting meanwhile finds it (idle, or the slot counted down).
    fn hand_to_waiter(
        self: &Arc<Self>,
        mut handoff: Handoff,
        keep: impl FnOnce(&mut State<Box<ServerConn>>, Handoff),
    ) {
        loop {
            let waiter = {
                let mut st = self.lock();
                let home = match &handoff {
                    Handoff::Server(g) => Some(g.home()),
                    Handoff::Slot(_) => None,
                };
                match st.next_waiter(home) {
                    Some(w) => w,
                    None => return keep(&mut st, handoff),
                }
            };
            match waiter.send(handoff) {
                Ok(()) => return,
                // It stopped waiting just now: the next one, or keep it.
                Err(back) => handoff = back,
            }
        }
    }

    /// Gives back a slot that was claimed but never used, without handing
    /// it on (its claimer was handed a server in the same instant).
    fn unclaim_slot(&self) {
        let mut st = self.lock();
        st.total = st.total.saturating_sub(1);
        drop(st);
        self.release_limits();
    }
}
