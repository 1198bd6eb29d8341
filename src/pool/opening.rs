//! Opening, checking and aging out a pool's servers: a new server into a
//! claimed slot (failing fast for `server_login_retry` after a failed
//! login), the checks before an idle one is lent (`server_lifetime`,
//! closed by the server, `server_check_query`), and the maintenance that
//! closes idle ones and warms up to `min_pool_size`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Stamp;

use super::{Pool, PoolError, PoolSettings, ServerGuard, SlotGuard};
use crate::server::{self, ServerConn, ServerError};

/// Idle servers older than this are probed for a close before being lent.
const STALE_PROBE_AFTER: Duration = Duration::from_millis(100);

impl Pool {
    /// Checks an idle server before lending it: closed by the server,
    /// past `server_lifetime`, or failing `server_check_query`.
    pub(super) async fn validate(
        &self,
        mut guard: ServerGuard,
        s: &PoolSettings,
    ) -> Option<ServerGuard> {
        let conn = guard.conn();
        let now = Stamp::now();
        let reuse = Reuse::of(s);
        if !still_usable(conn, &reuse, now) {
            guard.close();
            return None;
        }
        if let Some(query) = s
            .check_query
            .as_deref()
            .filter(|_| needs_check_query(&reuse, conn, now))
        {
            if let Err(e) = conn.run(query).await {
                tracing::info!(pool = %self.key, error = %e, "server failed server_check_query");
                guard.close();
                return None;
            }
            conn.last_used = Stamp::now();
        }
        Some(guard)
    }

    pub(super) async fn open(
        self: &Arc<Self>,
        slot: SlotGuard,
        s: &PoolSettings,
    ) -> Result<ServerGuard, PoolError> {
        if let Some(err) = self.recent_login_failure(s.login_retry) {
            return Err(PoolError::Connect(err));
        }
        let target = self.target();
        let tls = s.tls.target(&target.addr);
        let options = server::ConnectOptions {
            tls: &tls,
            timeout: s.connect_timeout,
            tcp: &s.tcp,
            startup: &s.startup,
            connect_query: s.connect_query.as_deref(),
        };
        match server::connect(&target, &options).await {
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
        self.lock().failing(retry).cloned()
    }

    /// Closes idle servers past `server_idle_timeout` (down to
    /// `min_pool_size`) or `server_lifetime`, and returns how many servers
    /// to open to reach `min_pool_size`.
    pub fn maintain(self: &Arc<Self>) -> Vec<SlotGuard> {
        let s = self.settings.load_full();
        let reuse = Reuse::of(&s);
        let mut retired = Vec::new();
        let mut slots = Vec::new();
        {
            let mut st = self.lock();
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut total = st.total;
            let now = Stamp::now();
            // Oldest-used first, so the surplus that ages out is the idle tail.
            for conn in std::mem::take(&mut st.idle) {
                let too_old = expired(&conn, &reuse, now);
                let too_idle = s
                    .idle_timeout
                    .is_some_and(|t| now.at_least(conn.last_used, t))
                    && total > s.min_size;
                if too_old || too_idle {
                    total -= 1;
                    retired.push(conn);
                } else {
                    keep.push(conn);
                }
            }
            st.idle = keep;
            let failing = st.failing(s.login_retry).is_some();
            let mut open_now = st.total - retired.len();
            while !failing && open_now < s.min_size && self.acquire_limits(&s) {
                open_now += 1;
                slots.push(());
            }
            st.total = open_now;
        }
        for conn in retired {
            self.close_uncounted(*conn);
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

/// What deciding whether a server may be lent again needs from the
/// settings. The pool keeps a copy in its books, set with the settings, so
/// that a check-out reads it under the lock it holds anyway and a check-in
/// under a short one, rather than each loading the settings (~80
/// instructions a load, issue 19).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reuse {
    pub lifetime: Option<Duration>,
    pub retire_before: Option<Stamp>,
    /// `server_check_delay`, when a `server_check_query` is set.
    pub check_after: Option<Duration>,
    pub round_robin: bool,
}

impl Reuse {
    pub fn of(s: &PoolSettings) -> Self {
        Self {
            lifetime: s.lifetime,
            retire_before: s.retire_before,
            check_after: s.check_query.as_ref().map(|_| s.check_delay),
            round_robin: s.round_robin,
        }
    }
}

// These take the caller's `now`: a check-out reads the clock once, not once
// per test (issue 19 counted seven clock reads per transaction).

/// Not past `server_lifetime` and, if idle for a while, not closed by the
/// server meanwhile.
pub(super) fn still_usable(conn: &mut ServerConn, s: &Reuse, now: Stamp) -> bool {
    if !now.at_least(conn.last_used, STALE_PROBE_AFTER) {
        // Reused within moments: its check-in just now tested its lifetime
        // (which may overrun by as much, as PgBouncer's does by its
        // janitor's second), and it cannot have been closed unnoticed for
        // long, so no probe's syscall on the busy path. A `RECONNECT` since
        // still counts.
        return s.retire_before.is_none_or(|t| conn.created > t);
    }
    !(expired(conn, s, now) || conn.is_stale())
}

pub(super) fn needs_check_query(s: &Reuse, conn: &ServerConn, now: Stamp) -> bool {
    s.check_after
        .is_some_and(|delay| now.at_least(conn.last_used, delay))
}

/// Past `server_lifetime`, or opened before a `RECONNECT`.
pub(super) fn expired(conn: &ServerConn, s: &Reuse, now: Stamp) -> bool {
    s.lifetime.is_some_and(|l| now.at_least(conn.created, l))
        || s.retire_before.is_some_and(|t| conn.created <= t)
}
