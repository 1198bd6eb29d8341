//! Where a lending ends: the server goes back to the pool in the state the
//! flow says (the pool's guard runs the rollback or reset a [`Rest`]
//! needs), after any cancel sent to it has landed; or the session ends,
//! telling the client why.

use bytes::BytesMut;

use super::{End, Session};
use crate::cancel::CancelTarget;
use crate::config::PoolMode;
use crate::logline::Clean;
use crate::pool::{Rest, ServerGuard};

impl Session {
    /// Tells the client why it is being let go, then leaves the server clean.
    pub(super) async fn finish(&mut self, end: End) {
        let cause = match &end {
            End::Error(e) => {
                self.shared.pooler_error(e, "pooler error");
                e.to_string()
            }
            // `Park` never ends a session (`Session::run` parks it).
            End::Close | End::Park => "client close request".to_owned(),
            End::HandedOver => {
                self.cleanup().await;
                return;
            }
        };
        if let End::Error(e) = end {
            let mut out = BytesMut::new();
            e.encode(&mut out);
            let _ = self.client.send(&out).await;
        }
        self.log_disconnection(&cause);
        self.cleanup().await;
    }

    /// `log_disconnections`: who left, after how long, and why.
    fn log_disconnection(&self, cause: &str) {
        if !self.shared.config.load().config.proxy.log_disconnections {
            return;
        }
        let Some(info) = self.login.registration.control.info.get() else {
            return;
        };
        let age = info.connected.elapsed().unwrap_or_default();
        tracing::info!(
            user = %Clean(&info.user),
            database = %Clean(&info.database),
            addr = %crate::logline::peer(info.addr),
            age_s = age.as_secs_f64(),
            "client closed: {}",
            Clean(cause)
        );
    }

    /// Gives the server back to the pool at the end of a transaction, in
    /// the state the flow says.
    pub(super) async fn release(&mut self, mut rest: Rest) {
        let Some(mut guard) = self.detach() else {
            return;
        };
        let cancels = self.login.registration.control.unassign();
        if let Some(r) = self.route.as_mut().filter(|r| r.fetch_lsn) {
            if !Box::pin(r.record_write(&mut guard)).await {
                rest = Rest::Broken;
            }
        }
        let reset = self.timeouts.reset_always;
        self.give_back(guard, rest, reset, cancels).await;
    }

    /// Checks the server in as `rest` (with `server_reset_query` when
    /// `reset`), once every cancel forwarded to it has been answered: one
    /// landing later would hit the next client's query.
    async fn give_back(&self, guard: ServerGuard, rest: Rest, reset: bool, cancels: bool) {
        let wants_query = reset && matches!(rest, Rest::NeedsReset | Rest::NeedsRollback);
        let config = wants_query.then(|| self.shared.config.load_full());
        let reset_query = config
            .as_ref()
            .map_or("", |c| c.config.proxy.server_reset_query.as_str());
        if !cancels || rest == Rest::Broken {
            if let Some(tidy) = guard.check_in(rest, reset_query) {
                // Boxed: rare, and it would enlarge every session's future.
                Box::pin(tidy.run()).await;
            }
            return;
        }
        let control = self.login.registration.control.clone();
        let reset_query = reset_query.to_owned();
        tokio::spawn(async move {
            if !control.cancels_answered().await {
                return guard.close();
            }
            if let Some(tidy) = guard.check_in(rest, &reset_query) {
                tidy.run().await;
            }
        });
    }

    /// The server's socket failed or closed: it is closed for good, and the
    /// client told (unless a message to it was half-sent).
    pub(super) fn on_server_lost(&mut self) -> Result<(), End> {
        if let Some(mut guard) = self.detach() {
            guard.conn().broken = true;
            guard.close();
        }
        tracing::info!(pool = %self.login.pool.key, "server connection lost mid-session");
        if self.flow.server_at_boundary() {
            Err(End::Error(crate::error::ProxyError::ServerLost))
        } else {
            // Mid-message: anything more would corrupt the client's stream.
            Err(End::Close)
        }
    }

    /// After the client is gone: leave the server clean for the next client,
    /// or close it. A transaction left open is rolled back; a server still
    /// busy with a request is closed (PostgreSQL then aborts it).
    async fn cleanup(&mut self) {
        self.count_pinned(false);
        let Some(mut guard) = self.detach() else {
            return;
        };
        let cancels = self.login.registration.control.unassign();
        let pinned = self.pinned();
        let at_rest = self.tracker_idle() && guard.conn().stream.rbuf.is_empty();
        // A session mode server, or any with reset_always, is reset.
        let reset = self.login.mode == PoolMode::Session || self.timeouts.reset_always;
        let rest = self.flow.left(at_rest, pinned, reset);
        if rest == Rest::Broken && !pinned && self.flow.pending() > 0 {
            // A busy backend does not notice its socket closing until the
            // statement ends (pg_sleep, a long scan), holding its locks
            // until then; cancel it so it aborts now.
            let target = CancelTarget::of(guard.conn());
            let registry = self.shared.cancels.clone();
            tokio::spawn(async move { registry.cancel_target(&target).await });
        }
        self.give_back(guard, rest, reset, cancels).await;
    }

    /// The rewriting layer owes the client nothing.
    pub(super) fn tracker_idle(&self) -> bool {
        self.tracker.as_ref().is_none_or(|t| t.is_idle())
    }

    /// True when the server owes nothing and no message is half-sent either way.
    pub(super) fn at_rest(&mut self) -> bool {
        let server_drained = match self.server.as_mut() {
            Some(g) => g.conn().stream.rbuf.is_empty(),
            None => true,
        };
        self.streams_quiet() && server_drained
    }

    /// Nothing owed by the server and no message half-sent in either direction.
    pub(super) fn streams_quiet(&self) -> bool {
        self.flow.quiet() && self.tracker_idle()
    }
}
