//! Borrowing a server for the client's next transaction (or its session):
//! through read/write routing when the database has replicas, from the
//! login's pool otherwise. A cancel request or a PAUSE may end the wait;
//! a refused unit is answered as PostgreSQL answers a failed one.

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::{End, Session};
use crate::cancel::SessionControl;
use crate::client::route::{Attached, Begun};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::pool::{Notice, ServerGuard};
use crate::prepared::SessionTracker;
use crate::routing::unit::{first_unit, Scan};
use crate::wire::backend as be;

impl Session {
    /// Borrows a server for the next transaction (or the session). False
    /// when none was attached: the unit must wait for more bytes
    /// (`held` set), or was refused and answered (and dropped from `cbuf`).
    pub(super) async fn attach(&mut self) -> Result<bool, End> {
        let control = self.login.registration.control.clone();
        control.begin_wait();
        let attached = self.attach_or_wait(&control).await;
        if !matches!(attached, Ok(true)) {
            control.end_wait();
        }
        attached
    }

    /// pgwarden's own answers (a cancelled wait, a refused unit) are boxed
    /// where they are awaited: rare, and held inline they would make this
    /// future, and with it every active client's task, twice the size
    /// (issue 19).
    async fn attach_or_wait(&mut self, control: &Arc<SessionControl>) -> Result<bool, End> {
        // One look at the configuration for both (each costs a load).
        let (notify, max_prepared) = {
            let loaded = self.shared.config.load();
            let proxy = &loaded.config.proxy;
            (
                proxy.query_wait_notify.enabled(),
                proxy.max_prepared_statements,
            )
        };
        if self.shared.gates.is_paused(&self.login.database) {
            // PAUSE: the transaction starts once the database is resumed.
            let open = self.shared.gates.wait_open(&self.login.database);
            let open = notify_waiting(&mut self.client, notify, open);
            if control.unless_cancelled(Box::pin(open)).await.is_none() {
                return Box::pin(self.answer_cancelled()).await;
            }
        }
        self.ensure_tracker(max_prepared);
        let guard = if self.route.is_some() {
            match self.borrow_routed(control, notify).await? {
                Ok(guard) => guard,
                Err(attached) => return Ok(attached),
            }
        } else {
            let pool = &self.login.pool;
            let client = &mut self.client;
            match pool.try_checkout() {
                Some(guard) => guard,
                // Boxed: waiting in line or opening a server is the rare path,
                // and its futures would otherwise enlarge every session's task.
                None => match control
                    .unless_cancelled(Box::pin(pool.checkout_noting(notify.map(|after| Notice {
                        after,
                        send: send_queued_notice(client),
                    }))))
                    .await
                {
                    Some(r) => {
                        r.map_err(|e| End::Error(ProxyError::from_pool(e, &pool.key.user)))?
                    }
                    None => return Box::pin(self.answer_cancelled()).await,
                },
            }
        };
        // Cancelled between the server's lending and now: the request was
        // never sent, so it is answered here.
        if control.take_cancelled() {
            drop(guard);
            return Box::pin(self.answer_cancelled()).await;
        }
        self.adopt(guard).await.map(|()| true)
    }

    /// Read/write routing: a server where the unit goes, or (`Err`) what
    /// [`attach`](Self::attach) returns instead. Its own future, so that
    /// the routing state it holds is not kept beside `adopt`'s.
    async fn borrow_routed(
        &mut self,
        control: &Arc<SessionControl>,
        notify: Option<std::time::Duration>,
    ) -> Result<Result<ServerGuard, bool>, End> {
        let (Some(state), Some(tracker)) = (self.route.as_mut(), self.tracker.as_deref()) else {
            return Err(End::Error(ProxyError::Internal));
        };
        let audit = &self.shared.audit;
        let begun = state.begin(&self.cbuf, tracker, &self.shared.config.load(), audit);
        let attached = match begun {
            Begun::Done(attached) => attached,
            // Boxed, as the primary-only wait: rare, and large.
            Begun::Waits(pending) => {
                let wait = state.finish(&self.cbuf, pending, audit, control);
                Box::pin(notify_waiting(&mut self.client, notify, wait)).await
            }
        };
        match attached {
            Attached::Server(guard) => Ok(Ok(guard)),
            Attached::Wait => {
                self.held = true;
                Ok(Err(false))
            }
            Attached::Answered(out, len) => Box::pin(self.answer_unit(&out, len)).await.map(Err),
            Attached::Refused(e, Some(len)) => Box::pin(self.answer_error(e, len)).await.map(Err),
            Attached::Refused(e, None) => Err(End::Error(e)),
        }
    }

    /// A cancel request ended the wait for a server: the request at the
    /// start of `cbuf` is dropped and answered as PostgreSQL answers a
    /// cancelled statement. A request not all received yet keeps waiting.
    async fn answer_cancelled(&mut self) -> Result<bool, End> {
        self.unless_killed()?;
        let max = self.flow.max_packet().saturating_add(1);
        match first_unit(&self.cbuf, max, &[], |_| None) {
            Scan::Unit { len: Some(len), .. } => {
                self.answer_error(ProxyError::Cancelled, len).await
            }
            _ => {
                self.held = true;
                Ok(false)
            }
        }
    }

    /// Skips the unit of `len` bytes and answers it with `e` as PostgreSQL
    /// answers a failed one; the session goes on.
    async fn answer_error(&mut self, e: ProxyError, len: usize) -> Result<bool, End> {
        // Routing's waits end as `Cancelled` and come straight here.
        self.unless_killed()?;
        self.shared.pooler_error(&e, "pooler error");
        let mut out = BytesMut::new();
        e.encode(&mut out);
        be::ready_for_query(&mut out, be::TX_IDLE);
        self.answer_unit(&out, len).await
    }

    /// A wait for a server that a `KILL` ended ends the session the way
    /// the kill ends everyone else's, not with a cancel's 57014.
    fn unless_killed(&self) -> Result<(), End> {
        if self.login.registration.control.killed() {
            return Err(End::Error(ProxyError::AdminKilled));
        }
        Ok(())
    }

    /// Drops the unit of `len` bytes pgwarden answered itself, sending `out`.
    async fn answer_unit(&mut self, out: &[u8], len: usize) -> Result<bool, End> {
        self.cbuf.advance(len.min(self.cbuf.len()));
        if self.client.send(out).await.is_err() {
            return Err(End::Close);
        }
        Ok(false)
    }

    /// The tracker follows settings in every mode, and statements when
    /// pooled, with the `max_prepared_statements` in force now.
    pub(super) fn ensure_tracker(&mut self, max: usize) {
        let login = &self.login;
        self.tracker
            .get_or_insert_with(|| {
                let pooled = login.mode != PoolMode::Session;
                let refuse = login.pool.settings().refuse_session_features;
                Box::new(SessionTracker::new(max, login.startup(), refuse, pooled))
            })
            .set_max(max);
    }

    /// Makes a borrowed server this session's: cancel target, settings.
    async fn adopt(&mut self, mut guard: ServerGuard) -> Result<(), End> {
        self.unassigned = true;
        if let Some(tracker) = self.tracker.as_mut() {
            if let Some(sync) = tracker.attached(guard.conn()) {
                // The client's settings go first; their answers are dropped.
                guard.mark_used();
                if guard.conn().stream.io.send(&sync).await.is_err() {
                    self.server = Some(guard);
                    return self.on_server_lost();
                }
            }
        }
        self.flow.attached();
        self.server = Some(guard);
        Ok(())
    }

    /// A pinned session starting a transaction on a node a reload took
    /// from its tenant ends (its session state cannot move) rather than
    /// being served there.
    pub(super) fn check_pinned_region(&mut self) -> Result<(), End> {
        if !self.pin_counted || self.flow.in_transaction() || !self.streams_quiet() {
            return Ok(());
        }
        let Some(r) = self.route.as_mut() else {
            return Ok(());
        };
        let loaded = self.shared.config.load();
        if r.still_allowed(&loaded, &self.shared.audit) {
            return Ok(());
        }
        let e = r.lost_region(&self.shared.audit);
        if let Some(guard) = self.detach() {
            guard.close();
        }
        Err(End::Error(e))
    }

    /// The client holds session state (LISTEN, a temp table, ...) on its server.
    pub(super) fn pinned(&self) -> bool {
        self.tracker.as_ref().is_some_and(|t| t.pinned())
    }

    /// Keeps the pool's count of pinned clients.
    pub(super) fn count_pinned(&mut self, pinned: bool) {
        if pinned != self.pin_counted {
            self.pin_counted = pinned;
            let n = &self.login.pool.stats.pinned;
            if pinned {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                n.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Runs `wait` (for a server, or for `RESUME`), telling the client with a
/// NOTICE, once it has waited `after`, that it is queued (PgBouncer's
/// `query_wait_notify` and words). The client is waiting for an answer and
/// nothing else is being written to it, so a whole notice may go in.
async fn notify_waiting<F: std::future::Future>(
    client: &mut crate::net::Stream,
    after: Option<std::time::Duration>,
    wait: F,
) -> F::Output {
    let mut wait = std::pin::pin!(wait);
    if let Some(after) = after {
        tokio::select! {
            // The wait first: a unit that gets its server at once (the
            // usual case) never registers the notice's timer, which an
            // unbiased select polled first half the time.
            biased;
            out = &mut wait => return out,
            () = tokio::time::sleep(after) => send_queued_notice(client).await,
        }
    }
    wait.await
}

/// PgBouncer's notice to a client queued for a server (`query_wait_notify`).
async fn send_queued_notice(client: &mut crate::net::Stream) {
    let mut out = BytesMut::new();
    be::notice_response(
        &mut out,
        "No server connection available in postgres backend, client being queued",
        None,
    );
    let _ = client.send(&out).await;
}
