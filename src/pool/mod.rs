//! Server pools: one per (database, user) the clients connect as.
//!
//! Owns: idle servers, the FIFO queue of waiting clients, and the counts
//! behind `pool_size`, `reserve_pool_size`, `max_db_connections` and
//! `max_user_connections`. Must not: hold its lock across an `.await`
//! (every lock here is a short std `Mutex` section), or decide anything
//! about a server's health beyond "stale, expired or failed its check".
//!
//! Idle servers are reused last-in first-out, like PgBouncer's default, so a
//! quiet period lets the surplus age out through `server_idle_timeout`.

pub mod accepted;
pub mod gates;
mod guard;
pub mod latency;
mod limit;
mod nodes;
mod registry;

pub use guard::{Handoff, Rest, ServerGuard, SlotGuard, Tidy};
pub use limit::Limit;
pub use nodes::{Clusters, NodePools};
pub use registry::{PoolKey, Pools};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::server::{self, ServerConn, ServerError, ServerTarget};

/// How often a waiter looks again when a shared limit (which another pool
/// may free) is what holds it back.
const LIMIT_POLL: Duration = Duration::from_millis(50);

/// ParameterStatus values a server reported at login.
pub type Welcome = Arc<Vec<(String, String)>>;

/// Idle servers older than this are probed for a close before being lent.
const STALE_PROBE_AFTER: Duration = Duration::from_millis(100);

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
    pub idle_timeout: Option<Duration>,
    pub check_query: String,
    pub check_delay: Duration,
    /// Refuse session-only features instead of pinning.
    pub refuse_session_features: bool,
    /// `RECONNECT`: servers opened before this close when next idle.
    pub retire_before: Option<Instant>,
    /// TLS towards this pool's servers (`server_tls_*`).
    pub tls: crate::net::tls::TlsPolicy,
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

struct State {
    // Boxed: servers move between this list and sessions' guards on every
    // transaction, and a pointer is cheaper to move than the connection.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Servers open or being opened, idle or lent out.
    total: usize,
    /// Clients in line, with when they joined it (for `maxwait`).
    waiters: VecDeque<(Instant, oneshot::Sender<Handoff>)>,
    /// The last failed login, which fails new logins fast for `login_retry`.
    login_failure: Option<(Instant, Arc<ServerError>)>,
}

/// An idle server as the console shows it.
#[derive(Debug, Clone, Copy)]
pub struct IdleServer {
    pub process_id: i32,
    pub addr: std::net::SocketAddr,
    pub local: Option<std::net::SocketAddr>,
    pub opened: Instant,
    pub used: Instant,
    pub tls: crate::net::TlsLabel,
}

pub struct Pool {
    pub key: PoolKey,
    settings: ArcSwap<PoolSettings>,
    /// Servers a `RECONNECT` is waiting to see closed.
    close_needed: AtomicUsize,
    target: Mutex<ServerTarget>,
    state: Mutex<State>,
    db_limit: Arc<Limit>,
    user_limit: Arc<Limit>,
    /// ParameterStatus values of the first server, sent to clients at login.
    welcome: Mutex<Option<Welcome>>,
    /// Startup settings its servers have accepted (`client::validate`).
    pub accepted_settings: accepted::Accepted,
    pub stats: PoolStats,
}

enum Attempt {
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
        Arc::new(Self {
            key,
            settings: ArcSwap::from_pointee(settings),
            close_needed: AtomicUsize::new(0),
            target: Mutex::new(target),
            state: Mutex::new(State {
                idle: Vec::new(),
                total: 0,
                waiters: VecDeque::new(),
                login_failure: None,
            }),
            db_limit,
            user_limit,
            welcome: Mutex::new(None),
            accepted_settings: Default::default(),
            stats: PoolStats::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
        self.settings.store(Arc::new(s));
    }

    /// `RECONNECT`: every server open now is closed once it is idle (those
    /// idle now at once), new ones open as needed.
    pub fn reconnect(self: &Arc<Self>) {
        let mut s = (*self.settings()).clone();
        s.retire_before = Some(Instant::now());
        let total = self.lock().total;
        self.close_needed.store(total, Ordering::Relaxed);
        self.settings.store(Arc::new(s));
        self.close_idle();
    }

    /// Closes every idle server (`PAUSE`, `RECONNECT`).
    pub fn close_idle(self: &Arc<Self>) {
        let idle = {
            let mut st = self.lock();
            let idle = std::mem::take(&mut st.idle);
            st.total -= idle.len().min(st.total);
            idle
        };
        for conn in idle {
            self.retire(*conn);
        }
    }

    /// The idle servers: (backend pid, address, local address, opened,
    /// last used), for `SHOW SERVERS`.
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        let st = self.lock();
        st.idle
            .iter()
            .map(|c| IdleServer {
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
        let st = self.lock();
        st.total.saturating_sub(st.idle.len())
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
        (
            st.idle.len(),
            st.total,
            st.waiters.iter().filter(|(_, w)| !w.is_closed()).count(),
        )
    }

    /// How long the oldest client in line has waited (`maxwait`).
    pub fn max_wait(&self) -> Duration {
        let st = self.lock();
        st.waiters
            .iter()
            .find(|(_, w)| !w.is_closed())
            .map_or(Duration::ZERO, |(since, _)| since.elapsed())
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
        let settings = self.settings();
        let started = Instant::now();
        let deadline = settings.query_wait_timeout.map(|t| started + t);
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
                    self.wait(rx, &settings, started, deadline).await?
                }
            };
            match handoff {
                Handoff::Server(guard) => {
                    if let Some(guard) = self.validate(guard, &settings).await {
                        return Ok(guard);
                    }
                }
                Handoff::Slot(slot) => return self.open(slot, &settings).await,
            }
        }
    }

    /// An idle server, or a slot to open one, or a place in line.
    fn try_take(self: &Arc<Self>, reserve: bool) -> Attempt {
        let settings = self.settings.load();
        let mut st = self.lock();
        if let Some(conn) = st.idle.pop() {
            return Attempt::Idle(conn);
        }
        let cap = settings.size + if reserve { settings.reserve_size } else { 0 };
        if st.total < cap && self.acquire_limits(&settings) {
            st.total += 1;
            return Attempt::Open(SlotGuard::new(self.clone()));
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back((Instant::now(), tx));
        Attempt::Wait(rx)
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

    /// Waits in line for a handoff, opening a reserve server after
    /// `reserve_pool_timeout` and re-checking shared limits while waiting.
    async fn wait(
        self: &Arc<Self>,
        mut rx: oneshot::Receiver<Handoff>,
        settings: &PoolSettings,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<Handoff, PoolError> {
        let limited = settings.max_db_connections > 0 || settings.max_user_connections > 0;
        let reserve_at = (settings.reserve_size > 0)
            .then_some(settings.reserve_timeout)
            .flatten()
            .map(|t| started + t);
        loop {
            let now = Instant::now();
            let mut wake = deadline;
            if let Some(r) = reserve_at.filter(|r| *r > now) {
                wake = Some(wake.map_or(r, |w| w.min(r)));
            }
            if limited {
                let poll = now + LIMIT_POLL;
                wake = Some(wake.map_or(poll, |w| w.min(poll)));
            }
            let received = match wake {
                Some(at) => tokio::time::timeout_at(at.into(), &mut rx).await.ok(),
                None => Some((&mut rx).await),
            };
            match received {
                Some(Ok(handoff)) => return Ok(handoff),
                // The pool went away; nothing can be handed over.
                Some(Err(_)) => return Err(PoolError::WaitTimeout),
                None => {}
            }
            let now = Instant::now();
            let use_reserve = reserve_at.is_some_and(|r| now >= r);
            if use_reserve || limited {
                let mut slot = self.try_open_extra(use_reserve);
                if slot.is_none() && limited && self.evict_for(settings, use_reserve) {
                    slot = self.try_open_extra(use_reserve);
                }
                if let Some(slot) = slot {
                    rx.close();
                    if let Ok(handoff) = rx.try_recv() {
                        // Handed a server in the same instant: keep it and
                        // give the slot back quietly.
                        if let Some(pool) = slot.into_pool() {
                            pool.undo_slot();
                        }
                        return Ok(handoff);
                    }
                    return Ok(Handoff::Slot(slot));
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                rx.close();
                return match rx.try_recv() {
                    Ok(handoff) => Ok(handoff),
                    Err(_) => Err(PoolError::WaitTimeout),
                };
            }
        }
    }

    /// A slot beyond the normal wait, for a waiter that may use the reserve
    /// or that waits on a shared limit.
    fn try_open_extra(self: &Arc<Self>, reserve: bool) -> Option<SlotGuard> {
        let settings = self.settings.load();
        let mut st = self.lock();
        let cap = settings.size + if reserve { settings.reserve_size } else { 0 };
        if st.total < cap && self.acquire_limits(&settings) {
            st.total += 1;
            return Some(SlotGuard::new(self.clone()));
        }
        None
    }

    /// Lends an idle server at once when one is ready without a health
    /// check: the common case, with no await, no allocation and one short
    /// lock. `None` sends the caller to [`Pool::checkout`].
    pub fn try_checkout(self: &Arc<Self>) -> Option<ServerGuard> {
        let s = self.settings.load();
        loop {
            let conn = {
                let mut st = self.lock();
                if needs_check_query(&s, st.idle.last()?) {
                    return None;
                }
                st.idle.pop()?
            };
            let mut guard = ServerGuard::new(conn, self.clone());
            if still_usable(guard.conn(), &s) {
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
            st.total = st.total.saturating_sub(1);
            st.idle.remove(0)
        };
        tracing::debug!(pool = %self.key, pid = conn.process_id, "idle server closed for another pool");
        self.retire(*conn);
        true
    }

    /// Closes a server whose slot is already counted down.
    fn retire(&self, conn: ServerConn) {
        self.closing(&conn);
        self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        conn.close();
        self.release_limits();
    }

    /// Checks an idle server before lending it: closed by the server,
    /// past `server_lifetime`, or failing `server_check_query`.
    async fn validate(&self, mut guard: ServerGuard, s: &PoolSettings) -> Option<ServerGuard> {
        let conn = guard.conn();
        if !still_usable(conn, s) {
            guard.close();
            return None;
        }
        if needs_check_query(s, conn) {
            if let Err(e) = conn.run(&s.check_query).await {
                tracing::info!(pool = %self.key, error = %e, "server failed server_check_query");
                guard.close();
                return None;
            }
            conn.last_used = Instant::now();
        }
        Some(guard)
    }

    async fn open(
        self: &Arc<Self>,
        slot: SlotGuard,
        s: &PoolSettings,
    ) -> Result<ServerGuard, PoolError> {
        if let Some(err) = self.recent_login_failure(s.login_retry) {
            return Err(PoolError::Connect(err));
        }
        let target = self.target();
        let tls = s.tls.target(&target.addr);
        match server::connect(&target, &tls, s.connect_timeout).await {
            Ok(conn) => {
                self.stats.servers_opened.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pool = %self.key, pid = conn.process_id, "server opened");
                {
                    let mut w = self.welcome.lock().unwrap_or_else(|p| p.into_inner());
                    if w.is_none() {
                        *w = Some(Arc::new(conn.params.clone()));
                    }
                }
                self.lock().login_failure = None;
                Ok(slot.fill(conn))
            }
            Err(e) => {
                tracing::warn!(pool = %self.key, error = %e, "server login failed");
                let e = Arc::new(e);
                self.lock().login_failure = Some((Instant::now(), e.clone()));
                Err(PoolError::Connect(e))
            }
        }
    }

    fn recent_login_failure(&self, retry: Duration) -> Option<Arc<ServerError>> {
        let st = self.lock();
        st.login_failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() < retry)
            .map(|(_, e)| e.clone())
    }

    /// Returns a server: to the first live waiter, or to the idle list.
    pub(crate) fn checkin(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        conn.last_used = Instant::now();
        let settings = self.settings.load();
        if conn.broken || expired(&conn, &settings) {
            self.discard(*conn);
            return;
        }
        let guard = ServerGuard::new(conn, self.clone());
        self.hand_to_waiter(Handoff::Server(guard), |st, back| {
            if let Handoff::Server(g) = back {
                st.idle.push(g.into_inner());
            }
        });
    }

    /// Closes a server and passes its slot on to a waiter, if any.
    pub(crate) fn discard(self: &Arc<Self>, conn: ServerConn) {
        self.closing(&conn);
        self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pool = %self.key, pid = conn.process_id, "server closed");
        conn.close();
        self.release_slot();
    }

    /// A slot was freed: give it to the next waiter, or count it down.
    pub(crate) fn release_slot(self: &Arc<Self>) {
        // The slot passes on as is: total and limits stay counted.
        let slot = SlotGuard::new(self.clone());
        let mut kept = false;
        self.hand_to_waiter(Handoff::Slot(slot), |st, back| {
            if let Handoff::Slot(s) = back {
                // Taken back without recursing into its Drop.
                let _ = s.into_pool();
            }
            st.total = st.total.saturating_sub(1);
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
        keep: impl FnOnce(&mut State, Handoff),
    ) {
        loop {
            let waiter = {
                let mut st = self.lock();
                match pop_live(&mut st.waiters) {
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

    /// Counts down a slot that was taken but never used, without handing it on.
    fn undo_slot(&self) {
        let mut st = self.lock();
        st.total = st.total.saturating_sub(1);
        drop(st);
        self.release_limits();
    }

    /// Closes idle servers past `server_idle_timeout` (down to
    /// `min_pool_size`) or `server_lifetime`, and returns how many servers
    /// to open to reach `min_pool_size`.
    pub fn maintain(self: &Arc<Self>) -> Vec<SlotGuard> {
        let s = self.settings.load_full();
        let mut retired = Vec::new();
        let mut slots = Vec::new();
        {
            let mut st = self.lock();
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut total = st.total;
            // Oldest-used first, so the surplus that ages out is the idle tail.
            for conn in std::mem::take(&mut st.idle) {
                let too_old = expired(&conn, &s);
                let too_idle = s
                    .idle_timeout
                    .is_some_and(|t| conn.last_used.elapsed() >= t)
                    && total > s.min_size;
                if too_old || too_idle {
                    total -= 1;
                    retired.push(conn);
                } else {
                    keep.push(conn);
                }
            }
            st.idle = keep;
            let failing = st
                .login_failure
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < s.login_retry);
            let mut open_now = st.total - retired.len();
            while !failing && open_now < s.min_size && self.acquire_limits(&s) {
                open_now += 1;
                slots.push(());
            }
            st.total = open_now;
        }
        for conn in retired {
            self.retire(*conn);
        }
        slots
            .into_iter()
            .map(|()| SlotGuard::new(self.clone()))
            .collect()
    }

    /// Opens a server into an already-counted slot and puts it in the pool
    /// (for `min_pool_size` warm-up).
    pub async fn fill_slot(self: &Arc<Self>, slot: SlotGuard) {
        let s = self.settings();
        if let Ok(guard) = self.open(slot, &s).await {
            drop(guard);
        }
    }
}

/// Not past `server_lifetime` and, if idle for a while, not closed by the
/// server meanwhile.
fn still_usable(conn: &mut ServerConn, s: &PoolSettings) -> bool {
    let expired = expired(conn, s);
    // A server reused within moments cannot have been closed unnoticed for
    // long; skip the probe's syscall on the busy path.
    let probe = conn.last_used.elapsed() >= STALE_PROBE_AFTER;
    !(expired || (probe && conn.is_stale()))
}

fn needs_check_query(s: &PoolSettings, conn: &ServerConn) -> bool {
    !s.check_query.is_empty() && conn.last_used.elapsed() >= s.check_delay
}

fn pop_live(
    waiters: &mut VecDeque<(Instant, oneshot::Sender<Handoff>)>,
) -> Option<oneshot::Sender<Handoff>> {
    while let Some((_, w)) = waiters.pop_front() {
        if !w.is_closed() {
            return Some(w);
        }
    }
    None
}

/// Past `server_lifetime`, or opened before a `RECONNECT`.
fn expired(conn: &ServerConn, s: &PoolSettings) -> bool {
    s.lifetime.is_some_and(|l| conn.created.elapsed() >= l)
        || s.retire_before.is_some_and(|t| conn.created <= t)
}

/// One client waiting in a pool's line, for its counters: counted while
/// it exists, its wait added when it ends (however the wait ends).
struct WaitCount<'a> {
    stats: &'a PoolStats,
    started: Instant,
}

impl<'a> WaitCount<'a> {
    fn new(stats: &'a PoolStats, started: Instant) -> Self {
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        Self { stats, started }
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        let waited = self.started.elapsed().as_micros() as u64;
        self.stats.wait_micros.fetch_add(waited, Ordering::Relaxed);
    }
}
