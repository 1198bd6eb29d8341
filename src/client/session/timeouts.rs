//! The session's four timeouts: `client_idle_timeout` (no server, nothing
//! sent), `query_timeout` (a request unanswered: cancelled, the session
//! goes on), `idle_transaction_timeout` (a transaction left open: the
//! server is closed) and `transaction_timeout` (a transaction open too
//! long, busy or not: the server is closed). Each may be set per user. One
//! timer serves all four, reset to the nearest.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use super::{End, Session};
use crate::cancel::forward_cancel;
use crate::config::SessionTimeouts;
use crate::error::ProxyError;

/// The timeouts in milliseconds, 0 for off (kept compact: every idle
/// client carries a copy).
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    query_ms: u32,
    idle_transaction_ms: u32,
    transaction_ms: u32,
    client_idle_ms: u32,
    /// `park_idle_clients_after` (see `parking`).
    pub(super) park_ms: u32,
    /// `server_reset_query_always`, kept here for the same reason.
    pub(super) reset_always: bool,
}

impl Timeouts {
    pub(super) fn new(t: SessionTimeouts, reset_always: bool) -> Self {
        Self {
            query_ms: to_ms(t.query),
            idle_transaction_ms: to_ms(t.idle_transaction),
            transaction_ms: to_ms(t.transaction),
            client_idle_ms: to_ms(t.client_idle),
            park_ms: 0,
            reset_always,
        }
    }

    /// Whether the time of the oldest request is needed.
    pub(super) fn times_queries(&self) -> bool {
        self.query_ms != 0
    }

    /// Whether the time of the last activity is needed.
    pub(super) fn tracks_activity(&self) -> bool {
        self.query_ms
            | self.idle_transaction_ms
            | self.client_idle_ms
            | self.transaction_ms
            | self.park_ms
            != 0
    }
}

pub(super) fn to_ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn from_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

impl Session {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.server.is_none() {
            return earliest(self.idle_deadline(), self.park_deadline());
        }
        earliest(self.own_deadline(), self.transaction_deadline())
    }

    /// `client_idle_timeout`, while the client has no server.
    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        from_ms(self.timeouts.client_idle_ms).map(|d| self.last_activity + d)
    }

    /// When an idle client is parked, if it may be.
    fn park_deadline(&self) -> Option<Instant> {
        from_ms(self.timeouts.park_ms)
            .filter(|_| self.parkable())
            .map(|d| self.last_activity + d)
    }

    /// `query_timeout` while a request is unanswered, else
    /// `idle_transaction_timeout` while a transaction is open.
    fn own_deadline(&self) -> Option<Instant> {
        let t = &self.timeouts;
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

    /// `transaction_timeout`, from the transaction's first request.
    fn transaction_deadline(&self) -> Option<Instant> {
        let open = self.flow.pending() > 0 || self.flow.in_transaction();
        from_ms(self.timeouts.transaction_ms)
            .filter(|_| open)
            .zip(self.traffic.xact_start())
            .map(|(d, since)| since.to_instant() + d)
    }

    pub(super) async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.next_deadline().is_none_or(|d| now < d) {
            return Ok(());
        }
        if self.server.is_none() {
            if self.idle_deadline().is_some_and(|d| now >= d) {
                return Err(End::Error(ProxyError::ClientIdleTimeout));
            }
            return match self.parkable() {
                true => Err(End::Park),
                false => Ok(()),
            };
        }
        if self.transaction_deadline().is_some_and(|d| now >= d) {
            // Busy or idle, the transaction has lasted too long: closing the
            // server rolls it back.
            if let Some(guard) = self.detach() {
                guard.close();
            }
            return Err(End::Error(ProxyError::TransactionTimeout));
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
///
/// A deadline that moved later (the idle and park deadlines move with
/// every transaction) leaves a pending timer as it is: it fires early,
/// once, and [`Session::on_timer`] finds nothing due and the timer is set
/// again. Moving it on every transaction cost ~140 instructions (issue 19).
pub(super) fn arm(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
) -> Option<Pin<&mut Sleep>> {
    let deadline = tokio::time::Instant::from_std(deadline?);
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    let armed = timer.deadline();
    if armed > deadline || armed < deadline && timer.is_elapsed() {
        timer.as_mut().reset(deadline);
    }
    Some(timer.as_mut())
}
