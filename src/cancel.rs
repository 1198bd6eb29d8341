//! Cancel keys. Each client gets a (process id, secret key) pair made up by
//! pgwarden; a CancelRequest carrying it is forwarded, with the server's own
//! key, to the server that client is using at that moment and to no other.
//!
//! A cancel must only ever hit the requesting client's own query:
//! - it is forwarded only while the client holds a server with a request
//!   sent to it ([`SessionControl::assign`] happens after the request is
//!   written), and the check and the count of cancels in flight happen under
//!   the lock that giving the server back also takes;
//! - a server with cancels in flight goes back to the pool only once each
//!   of them has been answered by PostgreSQL (its postmaster has signalled
//!   the backend by then, and a backend that is idle when the signal lands
//!   ignores it), as PgBouncer does;
//! - a client still waiting for a server has its request dropped and
//!   answered with `57014` instead ([`SessionControl::poll_cancelled`]).
//!
//! The registry is sharded and touched only at login, logout, cancel and
//! shutdown; per transaction a session only updates its own
//! [`SessionControl`]. The same registry is how shutdown reaches idle
//! sessions: each has its own stop signal, so no session waits on a
//! proxy-wide lock between transactions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peers::{self, PeerSettings, Peering};
use crate::wire::frontend;

const SHARDS: usize = 16;
/// How long a server whose forwarded cancel is not answered yet is kept
/// from its next client; past it, it is closed rather than lent again.
pub const CANCEL_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// `cancel_wait_timeout`, in milliseconds (0: no limit): how long a
/// forwarded cancel may take (connecting to the server, sending, and the
/// server closing the connection once it has signalled the backend).
/// Process-wide, set from the config at start and on reload.
static CANCEL_WAIT_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets `cancel_wait_timeout` (zero: no limit).
pub fn configure(wait: Duration) {
    CANCEL_WAIT_MS.store(
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The server a client's cancel request must reach.
///
/// `Copy`, so that recording it on every check-out touches no shared count.
#[derive(Clone, Copy, Debug)]
pub struct CancelTarget {
    pub addr: std::net::SocketAddr,
    pub process_id: i32,
    pub secret_key: i32,
    /// For `SHOW SERVERS` and `SHOW FDS`.
    pub tls: crate::net::TlsLabel,
    pub id: u64,
    pub fd: i32,
}

impl CancelTarget {
    pub fn of(conn: &crate::server::ServerConn) -> Self {
        Self {
            addr: conn.addr,
            process_id: conn.process_id,
            secret_key: conn.secret_key,
            tls: conn.stream.io.tls_label(),
            id: conn.id,
            fd: conn.stream.io.fd(),
        }
    }
}

/// Why a session is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    /// Nothing beyond a shutdown, if one was asked for.
    Shutdown = 0,
    /// `KILL`/`KILL_CLIENT`: at once.
    Killed = 1,
    /// `server_fast_close`: at its next transaction boundary.
    ConfigChanged = 2,
}

/// What the rest of the proxy may ask of one live session.
#[derive(Default)]
pub struct SessionControl {
    inner: Mutex<ControlInner>,
    /// Set at shutdown; the session ends at its next idle point.
    stop: AtomicBool,
    /// Why it is asked to end, if not for a shutdown ([`StopReason`]).
    reason: std::sync::atomic::AtomicU8,
    /// Who it is, for `SHOW CLIENTS` (set once logged in).
    pub info: std::sync::OnceLock<ClientInfo>,
    /// Cancels forwarded to its server and not yet answered.
    in_flight: AtomicU32,
}

/// A logged-in client as the console shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// See [`crate::server::next_connection_id`].
    pub id: u64,
    /// A user of the admin console: listed, never killed or stopped.
    pub console: bool,
    /// Its socket's descriptor (`SHOW FDS`).
    pub fd: i32,
    /// Shared with every client of that name (see [`crate::intern`]).
    pub user: Arc<str>,
    pub database: Arc<str>,
    pub addr: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub connected: std::time::SystemTime,
    pub application_name: Box<str>,
    pub tls: crate::net::TlsLabel,
}

#[derive(Default)]
struct ControlInner {
    /// The server it is using now, if any (for cancel requests).
    target: Option<CancelTarget>,
    /// Wakes the session when it waits idle, so that `stop` reaches it,
    /// or waits for a server, so that a cancel does.
    /// A plain slot rather than a `Notify`: the waiting side then needs no
    /// future of its own, which keeps every idle client's task small.
    waker: Option<Waker>,
    /// Since when the client has a request that no server has yet.
    waiting_since: Option<Instant>,
    /// A cancel request arrived while it waited.
    cancelled: bool,
}

impl ControlInner {
    /// Keeps the session's waker, for a stop or a cancel to wake it.
    fn park(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

impl SessionControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client has a request for which it has no server yet (it may
    /// wait in line, behind `PAUSE`, or for a failover).
    pub fn begin_wait(&self) {
        let mut inner = self.lock();
        if inner.waiting_since.is_none() {
            inner.waiting_since = Some(Instant::now());
            inner.cancelled = false;
        }
    }

    /// It stopped waiting without a server (its request was answered by
    /// pgwarden, or refused).
    pub fn end_wait(&self) {
        let mut inner = self.lock();
        inner.waiting_since = None;
        inner.cancelled = false;
    }

    /// Ready once a cancel request arrived while the client waited, or a
    /// `KILL` reached it: a wait for a server (`PAUSE`, the pool's line,
    /// a failover) must not outlive a kill, which also pauses the
    /// database. The caller tells the two apart with [`Self::killed`].
    pub fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.cancelled || self.killed() {
            return Poll::Ready(());
        }
        inner.park(cx);
        Poll::Pending
    }

    /// True once `KILL`/`KILL_CLIENT` asked this session to end.
    pub fn killed(&self) -> bool {
        self.stop.load(Ordering::Acquire) && self.stop_reason() == StopReason::Killed
    }

    /// Runs `fut` unless a cancel request for this client (or a kill)
    /// arrives first.
    pub async fn unless_cancelled<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.poll_cancelled(cx).map(|()| None)
        })
        .await
    }

    /// Whether a cancel arrived while it waited (it then stops waiting).
    pub fn take_cancelled(&self) -> bool {
        let mut inner = self.lock();
        let cancelled = std::mem::take(&mut inner.cancelled);
        if cancelled {
            inner.waiting_since = None;
        }
        cancelled
    }

    /// Its request was written to the server `target`: cancels go there
    /// from now on. True if one arrived since [`Self::take_cancelled`] was
    /// last asked; the caller forwards it ([`forward_cancel`]).
    pub fn assign(&self, target: CancelTarget) -> bool {
        let mut inner = self.lock();
        inner.target = Some(target);
        inner.waiting_since = None;
        std::mem::take(&mut inner.cancelled)
    }

    /// Its server is being given back: no cancel is forwarded from now on.
    /// True while cancels already forwarded to it are unanswered (the
    /// server must not be lent to anyone else until they are).
    pub fn unassign(&self) -> bool {
        let mut inner = self.lock();
        inner.target = None;
        inner.waiting_since = None;
        inner.cancelled = false;
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Waits (up to [`CANCEL_ANSWER_TIMEOUT`]) until every forwarded cancel
    /// was answered; false if one was not.
    pub async fn cancels_answered(&self) -> bool {
        let deadline = Instant::now() + CANCEL_ANSWER_TIMEOUT;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// The server it is using now, if any.
    pub fn target(&self) -> Option<CancelTarget> {
        self.lock().target
    }

    /// Since when it waits for a server, if it does.
    pub fn waiting_since(&self) -> Option<Instant> {
        self.lock().waiting_since
    }

    /// Ready once the session has been asked to stop.
    pub fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.lock().park(cx);
        // Checked again after the waker is in place, so a stop between the
        // two cannot be missed.
        if self.stop.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// True once the session has been asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// A parked session (no task of its own): `waker` is woken when it is
    /// asked to stop (the caller checks [`Self::stop_requested`] after).
    pub fn watch_stop(&self, waker: &Waker) {
        let mut inner = self.lock();
        match &inner.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.waker = Some(waker.clone()),
        }
    }

    /// Asks the session to end at once, even mid-transaction, telling its
    /// client "admin forced disconnect" (`KILL`, `KILL_CLIENT`).
    pub fn request_kill(&self) {
        self.reason
            .store(StopReason::Killed as u8, Ordering::Release);
        self.request_stop();
    }

    /// `server_fast_close`: a session-mode session whose server was opened
    /// before a `RECONNECT` (or a reload that changed how servers are
    /// opened) ends between two transactions, its server closed with it.
    pub fn request_fast_close(&self) {
        let _ = self.reason.compare_exchange(
            StopReason::Shutdown as u8,
            StopReason::ConfigChanged as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Why the session is asked to end, if it is for more than a shutdown.
    pub fn stop_reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            1 => StopReason::Killed,
            2 => StopReason::ConfigChanged,
            _ => StopReason::Shutdown,
        }
    }

    /// Asks the session to end at its next idle point (shutdown).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

type CancelSlot = Arc<SessionControl>;

/// A whole cancel key, process id and secret: with peering on, process
/// ids alone repeat (only 15 of their bits are random).
type Key = u64;

fn key(process_id: i32, secret_key: i32) -> Key {
    (u64::from(process_id as u32) << 32) | u64::from(secret_key as u32)
}

pub struct CancelRegistry {
    shards: Vec<Mutex<HashMap<Key, CancelSlot>>>,
    /// `peer_id` and `[peers]` ([`crate::peers`]), replaced on reload.
    peering: arc_swap::ArcSwap<Peering>,
    /// Cancels for a peer id not in `[peers]`, dropped.
    pub unknown_peer: AtomicU64,
    /// Cancels whose time-to-live ran out (a loop of peers), dropped.
    pub ttl_exhausted: AtomicU64,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            peering: Default::default(),
            unknown_peer: AtomicU64::new(0),
            ttl_exhausted: AtomicU64::new(0),
        }
    }
}

/// A client's key; dropping it unregisters the client.
pub struct Registration {
    pub process_id: i32,
    pub secret_key: i32,
    pub control: CancelSlot,
    registry: Arc<CancelRegistry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let key = key(self.process_id, self.secret_key);
        let mut shard = self.registry.shard(key);
        shard.remove(&key);
        // A table sized for a crowd that has left would hold its memory
        // for good; halving it at a quarter full keeps the rehashes rare.
        if shard.capacity() > SHRINK_ABOVE && shard.len() < shard.capacity() / 4 {
            let keep = shard.len() * 2;
            shard.shrink_to(keep);
        }
    }
}

/// A shard's table never shrinks below room for this many keys.
const SHRINK_ABOVE: usize = 64;

impl CancelRegistry {
    fn shard(&self, key: Key) -> std::sync::MutexGuard<'_, HashMap<Key, CancelSlot>> {
        // Both halves hold random bits whatever the peering.
        let mixed = (key ^ (key >> 32)) as usize;
        self.shards[mixed % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `peer_id` and `[peers]` (at start; `[peers]` on reload too).
    pub fn set_peering(&self, settings: &PeerSettings) {
        let next = Peering::from_settings(settings, &self.peering.load());
        self.peering.store(Arc::new(next));
    }

    /// The peering in force (`SHOW PEERS`, `SHOW PEER_POOLS`).
    pub fn peering(&self) -> Arc<Peering> {
        self.peering.load_full()
    }

    /// Issues a fresh, unique key for a new client, carrying this
    /// instance's peer id when peering is on.
    pub fn register(self: &Arc<Self>) -> Registration {
        let me = self.peering.load().me;
        let mut rng = rand::thread_rng();
        loop {
            let (pid, secret_key) = peers::stamp(rng.gen_range(1..i32::MAX), rng.gen(), me);
            let key = key(pid, secret_key);
            let mut shard = self.shard(key);
            if shard.contains_key(&key) {
                continue;
            }
            let control: CancelSlot = Arc::default();
            shard.insert(key, control.clone());
            return Registration {
                process_id: pid,
                secret_key,
                control,
                registry: self.clone(),
            };
        }
    }

    /// Registers a client handed over by the process this one took over
    /// from, under the key that process gave it; `None` if the key is
    /// taken already.
    pub fn register_key(
        self: &Arc<Self>,
        process_id: i32,
        secret_key: i32,
    ) -> Option<Registration> {
        let key = key(process_id, secret_key);
        let mut shard = self.shard(key);
        if shard.contains_key(&key) {
            return None;
        }
        let control: CancelSlot = Arc::default();
        shard.insert(key, control.clone());
        Some(Registration {
            process_id,
            secret_key,
            control,
            registry: self.clone(),
        })
    }

    /// Carries out a client's cancel request: see [`forward_cancel`]. A
    /// key another peer issued is forwarded to that peer. An unknown key
    /// is ignored, as PostgreSQL does.
    pub async fn cancel(&self, process_id: i32, mut secret_key: i32) {
        let peering = self.peering.load_full();
        if peering.me != 0 {
            let owner = peers::owner(process_id);
            if owner != peering.me {
                return self
                    .forward_to_peer(&peering, owner, process_id, secret_key)
                    .await;
            }
            // Stored keys carry a full time-to-live; this one may have
            // come through peers that spent some.
            secret_key |= peers::TTL_MASK;
        }
        let control = {
            let key = key(process_id, secret_key);
            self.shard(key).get(&key).cloned()
        };
        match control {
            Some(control) => forward_cancel(&control).await,
            None => tracing::debug!("cancel request for an unknown key ignored"),
        }
    }

    /// Sends a cancel on to the peer that issued its key, with one
    /// forward fewer left; dropped (and counted) for an unknown peer or a
    /// spent time-to-live.
    async fn forward_to_peer(&self, peering: &Peering, owner: u16, pid: i32, secret: i32) {
        if peers::ttl(secret) == 0 {
            self.ttl_exhausted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer_id = owner,
                "cancel request dropped: forwarded too many times"
            );
            return;
        }
        let Some(peer) = peering.peers.get(&owner) else {
            self.unknown_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                peer_id = owner,
                "cancel request for an unknown peer dropped"
            );
            return;
        };
        tracing::debug!(peer_id = owner, "forwarding a cancel request to its peer");
        peer.in_flight.fetch_add(1, Ordering::Relaxed);
        let sent = send_cancel_to(peer.addr.as_str(), pid, secret - 1).await;
        peer.in_flight.fetch_sub(1, Ordering::Relaxed);
        match sent {
            true => peer.forwarded.fetch_add(1, Ordering::Relaxed),
            false => peer.failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Every logged-in session, with its process id (for the console).
    pub fn sessions(&self) -> Vec<(i32, CancelSlot)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(
                shard
                    .iter()
                    .map(|(key, c)| ((*key >> 32) as u32 as i32, c.clone())),
            );
        }
        all.sort_by_key(|(pid, _)| *pid);
        all
    }

    /// Tells every logged-in session to end at its next idle point.
    pub fn stop_all(&self) {
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for control in shard.values() {
                // A busy session sees the flag at its next idle point.
                control.request_stop();
            }
        }
    }

    /// Sends a CancelRequest for `target` to its server, without
    /// counting it: for servers that are being closed anyway.
    pub async fn cancel_target(&self, target: &CancelTarget) {
        send_cancel(target).await;
    }
}

/// Cancels what the session of `control` runs: forwarded to its server if
/// it has sent a request to one (counted until answered), or its wait for
/// a server ended with `57014`; nothing when it is idle (PostgreSQL too
/// ignores a cancel that finds no query running).
pub async fn forward_cancel(control: &SessionControl) {
    let target = {
        let mut inner = control.lock();
        if inner.waiting_since.is_some() {
            inner.cancelled = true;
            if let Some(w) = inner.waker.take() {
                w.wake();
            }
            return;
        }
        match inner.target {
            Some(t) => {
                control.in_flight.fetch_add(1, Ordering::AcqRel);
                t
            }
            None => {
                tracing::debug!("cancel request for an idle client ignored");
                return;
            }
        }
    };
    send_cancel(&target).await;
    control.in_flight.fetch_sub(1, Ordering::AcqRel);
}

/// Sends a CancelRequest to the server `target` names.
async fn send_cancel(target: &CancelTarget) {
    send_cancel_to(target.addr, target.process_id, target.secret_key).await;
}

/// Sends a CancelRequest and waits (bounded) for the other side to close
/// the connection, which PostgreSQL does once it has signalled the
/// backend (and a peer once it has done the same); true if it did.
async fn send_cancel_to(
    addr: impl tokio::net::ToSocketAddrs + std::fmt::Debug,
    process_id: i32,
    secret_key: i32,
) -> bool {
    let mut buf = BytesMut::new();
    frontend::cancel_request(&mut buf, process_id, secret_key);
    let exchange = async {
        let mut sock = tokio::net::TcpStream::connect(&addr).await?;
        sock.write_all(&buf).await?;
        let mut sink = [0u8; 64];
        while sock.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let limit = match CANCEL_WAIT_MS.load(Ordering::Relaxed) {
        0 => Duration::MAX,
        ms => Duration::from_millis(ms),
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(?addr, error = %e, "could not send a cancel request");
            false
        }
        Err(_) => {
            tracing::warn!(?addr, "cancel request not done within cancel_wait_timeout");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(r: &CancelRegistry) -> usize {
        r.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).capacity())
            .sum()
    }

    /// A server that takes a cancel and never closes: given up on after
    /// `cancel_wait_timeout`.
    #[tokio::test]
    async fn a_cancel_is_given_up_after_cancel_wait_timeout() {
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let held = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        configure(Duration::from_millis(200));
        let target = CancelTarget {
            addr,
            process_id: 1,
            secret_key: 2,
            tls: crate::net::TlsLabel::default(),
            id: 0,
            fd: -1,
        };
        let started = Instant::now();
        send_cancel(&target).await;
        configure(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(held);
    }

    #[test]
    fn the_tables_shrink_once_a_crowd_has_left() {
        let registry = Arc::new(CancelRegistry::default());
        let crowd: Vec<Registration> = (0..20_000).map(|_| registry.register()).collect();
        let grown = capacity(&registry);
        assert!(grown >= 20_000);
        let stays = registry.register();
        drop(crowd);
        let left = capacity(&registry);
        assert!(left <= SHARDS * SHRINK_ABOVE * 2, "{grown} -> {left}");
        assert_eq!(registry.sessions().len(), 1, "the one left is still found");
        assert_eq!(registry.sessions()[0].0, stays.process_id);
    }
    /// A wait for a server ends on a kill that came before it or during
    /// it, as on a cancel; a shutdown does not end it (the session ends
    /// at its next idle point instead).
    #[tokio::test]
    async fn a_kill_ends_a_wait_for_a_server() {
        let never = std::future::pending::<()>;
        let control = SessionControl::default();
        control.request_stop();
        let shutdown =
            tokio::time::timeout(Duration::from_millis(50), control.unless_cancelled(never()));
        assert!(shutdown.await.is_err(), "a shutdown ended a wait");
        assert!(!control.killed());

        let before = SessionControl::default();
        before.request_kill();
        assert!(before.killed());
        assert_eq!(before.unless_cancelled(never()).await, None);

        let during = Arc::new(SessionControl::default());
        let killer = Arc::clone(&during);
        let kill = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            killer.request_kill();
        });
        let waited =
            tokio::time::timeout(Duration::from_secs(5), during.unless_cancelled(never())).await;
        assert_eq!(waited, Ok(None), "a kill during the wait did not end it");
        assert!(during.killed());
        let _ = kill.await;
    }
}
