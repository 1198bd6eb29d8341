//! The session's three timeouts: `client_idle_timeout` (no server, nothing
//! sent), `query_timeout` (a request unanswered: cancelled, the session
//! goes on) and `idle_transaction_timeout` (a transaction left open: the
//! server is closed). One timer serves all three, reset to the nearest.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use super::{End, Session};
use crate::cancel::forward_cancel;
use crate::config::ProxySettings;
use crate::error::ProxyError;

/// The timeouts in milliseconds, 0 for off (kept compact: every idle
/// client carries a copy).
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    query_ms: u32,
    idle_transaction_ms: u32,
    client_idle_ms: u32,
    /// `server_reset_query_always`, kept here for the same reason.
    pub(super) reset_always: bool,
}

impl Timeouts {
    pub(super) fn new(p: &ProxySettings) -> Self {
        Self {
            query_ms: to_ms(p.query_timeout.enabled()),
            idle_transaction_ms: to_ms(p.idle_transaction_timeout.enabled()),
            client_idle_ms: to_ms(p.client_idle_timeout.enabled()),
            reset_always: p.server_reset_query_always,
        }
    }

    /// Whether the time of the oldest request is needed.
    pub(super) fn times_queries(&self) -> bool {
        self.query_ms != 0
    }

    /// Whether the time of the last activity is needed.
    pub(super) fn tracks_activity(&self) -> bool {
        self.query_ms | self.idle_transaction_ms | self.client_idle_ms != 0
    }
}

fn to_ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

fn from_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

impl Session {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let t = &self.timeouts;
        if self.server.is_none() {
            return from_ms(t.client_idle_ms).map(|d| self.last_activity + d);
        }
        if self.flow.pending() > 0 {
            if self.cancel_sent {
                return None;
            }
            return from_ms(t.query_ms)
                .zip(self.request_since)
                .map(|(d, since)| since + d);
        }
        if self.flow.in_transaction() {
            return from_ms(t.idle_transaction_ms).map(|d| self.last_activity + d);
        }
        None
    }

    pub(super) async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.next_deadline().is_none_or(|d| now < d) {
            return Ok(());
        }
        if self.server.is_none() {
            return Err(End::Error(ProxyError::ClientIdleTimeout));
        }
        if self.flow.pending() > 0 {
            // query_timeout: let the server cancel the statement; its own
            // 57014 error then reaches the client and the session goes on.
            self.cancel_sent = true;
            let control = self.login.registration.control.clone();
            tokio::spawn(async move { forward_cancel(&control).await });
            return Ok(());
        }
        // Idle in a transaction for too long: the server is closed, which
        // rolls the transaction back.
        if let Some(guard) = self.detach() {
            guard.close();
        }
        Err(End::Error(ProxyError::IdleTransactionTimeout))
    }
}

/// Sets the timer to the nearest deadline; `None` when nothing is due.
pub(super) fn arm(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
) -> Option<Pin<&mut Sleep>> {
    let deadline = tokio::time::Instant::from_std(deadline?);
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    Some(timer.as_mut())
}
