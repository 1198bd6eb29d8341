//! Who may connect. Logged-in clients count against `max_client_conn`;
//! logins in progress count against `max_login_clients`, apart, so that
//! sockets that never finish logging in cannot lock real clients out.
//!
//! When the login budget is full, a new connection takes the place of the
//! oldest *silent* one (connected, no startup packet yet: the cheap attack,
//! and never a real client for long), which is closed; if every login in
//! progress has spoken, the newcomer is refused with 53300. A login that
//! speaks and then stalls is bounded by `client_login_timeout`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;

/// The logged-in clients and the logins in progress.
#[derive(Default)]
pub struct Admission {
    clients: AtomicUsize,
    /// Oldest first.
    logins: Mutex<VecDeque<Arc<Ticket>>>,
}

/// A place counted against `max_client_conn` while a logged-in client lives.
pub struct ClientSlot(Arc<Admission>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Ticket {
    /// Cancelled when a newcomer takes this login's place.
    evicted: CancellationToken,
    /// The startup packet (or an SSLRequest) has arrived.
    spoke: AtomicBool,
}

/// One login in progress; leaving the budget when dropped.
pub struct LoginTicket {
    ticket: Arc<Ticket>,
    admission: Arc<Admission>,
}

impl Admission {
    /// Connections open now, logged in or not yet.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Logins in progress now.
    pub fn logins(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Ticket>>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a client that has just authenticated.
    ///
    /// # Errors
    /// `TooManyClients` (53300) when `max` clients are logged in.
    pub fn admit(self: &Arc<Self>, max: usize) -> Result<ClientSlot, ProxyError> {
        let n = self.clients.fetch_add(1, Ordering::Relaxed);
        let slot = ClientSlot(self.clone());
        if n >= max {
            return Err(ProxyError::TooManyClients);
        }
        Ok(slot)
    }

    /// Enters a new connection into the login budget of `max` (evicting
    /// the oldest silent login if it is full).
    ///
    /// # Errors
    /// `TooManyLogins` (53300) when the budget is full of logins that spoke.
    pub fn enter(self: &Arc<Self>, max: usize) -> Result<LoginTicket, ProxyError> {
        let ticket = Arc::new(Ticket {
            evicted: CancellationToken::new(),
            spoke: AtomicBool::new(false),
        });
        let mut waiting = self.lock();
        if waiting.len() >= max {
            let silent = waiting
                .iter()
                .position(|t| !t.spoke.load(Ordering::Relaxed))
                .ok_or(ProxyError::TooManyLogins)?;
            if let Some(oldest) = waiting.remove(silent) {
                oldest.evicted.cancel();
            }
        }
        waiting.push_back(ticket.clone());
        drop(waiting);
        Ok(LoginTicket {
            ticket,
            admission: self.clone(),
        })
    }
}

impl LoginTicket {
    /// The client sent its first packet: it is no longer silent.
    pub fn spoke(&self) {
        self.ticket.spoke.store(true, Ordering::Relaxed);
    }

    /// Resolves when a newcomer took this login's place.
    pub async fn evicted(&self) {
        self.ticket.evicted.cancelled().await;
    }
}

impl Drop for LoginTicket {
    fn drop(&mut self) {
        let mut waiting = self.admission.lock();
        if let Some(i) = waiting.iter().position(|t| Arc::ptr_eq(t, &self.ticket)) {
            waiting.remove(i);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_full_budget_evicts_the_oldest_silent_login_and_refuses_when_all_spoke() {
        let a = Arc::new(Admission::default());
        let first = a.enter(2).unwrap();
        let second = a.enter(2).unwrap();
        second.spoke();
        let third = a.enter(2).unwrap();
        assert!(first.ticket.evicted.is_cancelled());
        assert_eq!(a.logins(), 2);
        third.spoke();
        assert_eq!(a.enter(2).err(), Some(ProxyError::TooManyLogins));
        drop((first, second, third));
        assert_eq!(a.logins(), 0);
    }

    #[test]
    fn client_slots_count_until_dropped() {
        let a = Arc::new(Admission::default());
        let one = a.admit(1).unwrap();
        assert_eq!(a.admit(1).err(), Some(ProxyError::TooManyClients));
        assert_eq!(a.clients(), 1);
        drop(one);
        assert_eq!(a.clients(), 0);
    }
}
