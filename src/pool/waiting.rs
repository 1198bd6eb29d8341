//! Waiting in a pool's line: for a server handed back, a slot freed, the
//! reserve after `reserve_pool_timeout`, or a shared limit
//! (`max_db_connections`, `max_user_connections`) that another pool frees.
//! Its deadlines are on tokio's clock, so tests can pause it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as Clock;

use tokio::sync::oneshot;

use super::{Handoff, Notice, Pool, PoolError, PoolSettings, PoolStats, SlotGuard};

/// How often a waiter looks again when a shared limit (which another pool
/// may free) is what holds it back.
const LIMIT_POLL: Duration = Duration::from_millis(50);

impl Pool {
    /// Waits in line for a handoff, opening a reserve server after
    /// `reserve_pool_timeout` and re-checking shared limits while waiting.
    /// `notice` is sent once, when the client has waited its `after`.
    pub(super) async fn wait<F>(
        self: &Arc<Self>,
        mut rx: oneshot::Receiver<Handoff>,
        settings: &PoolSettings,
        (started, deadline): (Clock, Option<Clock>),
        notice: &mut Option<Notice<F>>,
    ) -> Result<Handoff, PoolError>
    where
        F: std::future::Future<Output = ()>,
    {
        let limited = settings.max_db_connections > 0 || settings.max_user_connections > 0;
        let reserve_at = (settings.reserve_size > 0)
            .then_some(settings.reserve_timeout)
            .flatten()
            .map(|t| started + t);
        let notify_at = notice.as_ref().map(|n| started + n.after);
        loop {
            let now = Clock::now();
            let mut wake = deadline;
            let later = |at: Clock, w: Option<Clock>| Some(w.map_or(at, |w| w.min(at)));
            if let Some(r) = reserve_at.filter(|r| *r > now) {
                wake = later(r, wake);
            }
            if let Some(n) = notify_at.filter(|_| notice.is_some()) {
                wake = later(n, wake);
            }
            if limited {
                wake = later(now + LIMIT_POLL, wake);
            }
            let received = match wake {
                Some(at) => tokio::time::timeout_at(at, &mut rx).await.ok(),
                None => Some((&mut rx).await),
            };
            match received {
                Some(Ok(handoff)) => return Ok(handoff),
                // The pool went away; nothing can be handed over.
                Some(Err(_)) => return Err(PoolError::WaitTimeout),
                None => {}
            }
            let now = Clock::now();
            if notify_at.is_some_and(|n| now >= n) {
                if let Some(n) = notice.take() {
                    // A handoff meanwhile waits in `rx`.
                    n.send.await;
                }
            }
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
                            pool.unclaim_slot();
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
        let cap = settings.size + if reserve { settings.reserve_size } else { 0 };
        let claimed = self.lock().claim(cap, || self.acquire_limits(&settings));
        claimed.then(|| SlotGuard::new(self.clone()))
    }
}

/// One client waiting in a pool's line, for its counters: counted while
/// it exists, its wait added when it ends (however the wait ends).
pub(super) struct WaitCount<'a> {
    stats: &'a PoolStats,
    started: Instant,
}

impl<'a> WaitCount<'a> {
    pub(super) fn new(stats: &'a PoolStats, started: Instant) -> Self {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Limit, PoolKey, PoolSettings};
    use super::*;
    use crate::auth::backend::AuthMethods;
    use crate::server::ServerTarget;

    fn pool(size: usize, reserve: usize) -> Arc<Pool> {
        let settings = PoolSettings {
            size,
            min_size: 0,
            reserve_size: reserve,
            reserve_timeout: Some(Duration::from_secs(2)),
            max_db_connections: 0,
            max_user_connections: 0,
            query_wait_timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(1),
            login_retry: Duration::ZERO,
            lifetime: None,
            startup: Vec::new(),
            connect_query: None,
            idle_timeout: None,
            check_query: None,
            check_delay: Duration::ZERO,
            refuse_session_features: false,
            retire_before: None,
            tls: crate::net::tls::TlsPolicy {
                mode: crate::net::tls::SslMode::Disable,
                server_name: None,
                tls: crate::net::tls::ServerTls::build(&crate::net::tls::ServerTlsFiles {
                    key: None,
                    cert: None,
                    ca: None,
                    protocols: "secure",
                    verifies: false,
                })
                .unwrap(),
            },
            tcp: Default::default(),
            round_robin: false,
        };
        let target = ServerTarget {
            // Nothing listens here: a test that opened a server would fail.
            addr: "127.0.0.1:1".into(),
            dbname: "db".into(),
            user: "u".into(),
            secret: None,
            allowed_auth: AuthMethods::from_names(&[] as &[String]),
        };
        Pool::new(
            PoolKey::new("db", "u"),
            settings,
            target,
            Arc::new(Limit::default()),
            Arc::new(Limit::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_pool_refuses_its_line_at_query_wait_timeout() {
        let pool = pool(0, 0);
        let started = Clock::now();
        let r = pool.checkout().await;
        assert!(matches!(r, Err(PoolError::WaitTimeout)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(pool.counts(), (0, 0, 0), "the line is empty again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_in_line_is_told_once_at_its_notice_time() {
        let pool = pool(0, 0);
        let started = Clock::now();
        let told = std::cell::Cell::new(None);
        let notice = Notice {
            after: Duration::from_secs(2),
            send: async { told.set(Some(started.elapsed())) },
        };
        let r = pool.checkout_noting(Some(notice)).await;
        assert!(matches!(r, Err(PoolError::WaitTimeout)));
        assert_eq!(told.get(), Some(Duration::from_secs(2)), "told at its time");
        assert_eq!(started.elapsed(), Duration::from_secs(5), "then waited on");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_opens_after_reserve_pool_timeout() {
        let pool = pool(0, 1);
        let started = Clock::now();
        let mut rx = {
            let r = pool.try_take(false);
            match r {
                super::super::Attempt::Wait(rx) => rx,
                _ => panic!("a pool of size 0 has no room"),
            }
        };
        let deadline = Some(started + Duration::from_secs(5));
        let handoff = pool
            .wait(
                std::mem::replace(&mut rx, oneshot::channel().1),
                &pool.settings(),
                (started, deadline),
                &mut None::<Notice<std::future::Ready<()>>>,
            )
            .await
            .unwrap();
        assert!(
            matches!(handoff, Handoff::Slot(_)),
            "a reserve slot, not a timeout"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(pool.counts().1, 1, "the reserve slot is counted");
        drop(handoff);
        assert_eq!(pool.counts().1, 0, "an unused slot is given back");
    }
}
