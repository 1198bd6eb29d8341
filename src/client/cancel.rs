//! Cancel keys. Each client gets a (process id, secret key) pair made up by
//! pgwarden; a CancelRequest carrying it is forwarded, with the server's own
//! key, to the server that client is using at that moment and to no other.
//!
//! The registry is sharded and touched only at login, logout, cancel and
//! shutdown; per transaction a session only updates its own
//! [`SessionControl`]. The same registry is how shutdown reaches idle
//! sessions: each has its own stop signal, so no session waits on a
//! proxy-wide lock between transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use crate::wire::frontend;

const SHARDS: usize = 16;

/// The server a client's cancel request must reach.
///
/// `Copy`, so that recording it on every check-out touches no shared count.
#[derive(Clone, Copy, Debug)]
pub struct CancelTarget {
    pub addr: std::net::SocketAddr,
    pub process_id: i32,
    pub secret_key: i32,
}

impl CancelTarget {
    pub fn of(conn: &crate::server::ServerConn) -> Self {
        Self {
            addr: conn.addr,
            process_id: conn.process_id,
            secret_key: conn.secret_key,
        }
    }
}

/// What the rest of the proxy may ask of one live session.
#[derive(Default)]
pub struct SessionControl {
    inner: Mutex<ControlInner>,
    /// Set at shutdown; the session ends at its next idle point.
    stop: AtomicBool,
    /// Who it is, for `SHOW CLIENTS` (set once logged in).
    pub info: std::sync::OnceLock<ClientInfo>,
}

/// A logged-in client as the console shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub user: String,
    pub database: String,
    pub addr: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub connected: std::time::SystemTime,
    pub application_name: String,
}

#[derive(Default)]
struct ControlInner {
    /// The server it is using now, if any (for cancel requests).
    target: Option<CancelTarget>,
    /// Wakes the session when it waits idle, so that `stop` reaches it.
    /// A plain slot rather than a `Notify`: the waiting side then needs no
    /// future of its own, which keeps every idle client's task small.
    waker: Option<Waker>,
}

impl SessionControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_target(&self, target: Option<CancelTarget>) {
        self.lock().target = target;
    }

    /// The server it is using now, if any.
    pub fn target(&self) -> Option<CancelTarget> {
        self.lock().target
    }

    /// Ready once the session has been asked to stop.
    pub fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut inner = self.lock();
            match &inner.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
        }
        // Checked again after the waker is in place, so a stop between the
        // two cannot be missed.
        if self.stop.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Asks the session to end at its next idle point (`KILL`, shutdown).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

type CancelSlot = Arc<SessionControl>;

pub struct CancelRegistry {
    shards: Vec<Mutex<HashMap<i32, (i32, CancelSlot)>>>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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
        self.registry
            .shard(self.process_id)
            .remove(&self.process_id);
    }
}

impl CancelRegistry {
    fn shard(&self, pid: i32) -> std::sync::MutexGuard<'_, HashMap<i32, (i32, CancelSlot)>> {
        self.shards[pid.unsigned_abs() as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a fresh, unique key for a new client.
    pub fn register(self: &Arc<Self>) -> Registration {
        let mut rng = rand::thread_rng();
        loop {
            let pid: i32 = rng.gen_range(1..i32::MAX);
            let mut shard = self.shard(pid);
            if shard.contains_key(&pid) {
                continue;
            }
            let secret_key: i32 = rng.gen();
            let control: CancelSlot = Arc::default();
            shard.insert(pid, (secret_key, control.clone()));
            return Registration {
                process_id: pid,
                secret_key,
                control,
                registry: self.clone(),
            };
        }
    }

    /// Forwards a cancel request if the key is known and its client is
    /// using a server; otherwise does nothing, as PostgreSQL does.
    pub async fn cancel(&self, process_id: i32, secret_key: i32) {
        let target = {
            let shard = self.shard(process_id);
            match shard.get(&process_id) {
                Some((key, control)) if *key == secret_key => control.target(),
                _ => None,
            }
        };
        let Some(target) = target else {
            tracing::debug!("cancel request for unknown key or idle client ignored");
            return;
        };
        self.cancel_target(&target).await;
    }

    /// Every logged-in session, with its key (for the console).
    pub fn sessions(&self) -> Vec<(i32, CancelSlot)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(shard.iter().map(|(pid, (_, c))| (*pid, c.clone())));
        }
        all.sort_by_key(|(pid, _)| *pid);
        all
    }

    /// Tells every logged-in session to end at its next idle point.
    pub fn stop_all(&self) {
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (_, control) in shard.values() {
                // A busy session sees the flag at its next idle point.
                control.request_stop();
            }
        }
    }

    /// Sends a CancelRequest for `target` to its server.
    pub async fn cancel_target(&self, target: &CancelTarget) {
        let mut buf = BytesMut::new();
        frontend::cancel_request(&mut buf, target.process_id, target.secret_key);
        match tokio::net::TcpStream::connect(target.addr).await {
            Ok(mut sock) => {
                let _ = sock.write_all(&buf).await;
                let _ = sock.shutdown().await;
            }
            Err(e) => tracing::warn!(error = %e, "could not send cancel request to server"),
        }
    }
}
