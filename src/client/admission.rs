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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::error::ProxyError;

/// A place counted against `max_client_conn` while a logged-in client lives.
pub struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a place for a client that has just authenticated.
///
/// # Errors
/// `TooManyClients` (53300) when `max_client_conn` clients are logged in.
pub fn admit(shared: &Arc<Shared>) -> Result<ClientSlot, ProxyError> {
    let max = shared.config.load().config.proxy.max_client_conn;
    let n = shared.clients.fetch_add(1, Ordering::Relaxed);
    let slot = ClientSlot(shared.clone());
    if n >= max {
        return Err(ProxyError::TooManyClients);
    }
    Ok(slot)
}

/// The logins in progress, oldest first.
#[derive(Default)]
pub struct Logins {
    waiting: Mutex<VecDeque<Arc<Ticket>>>,
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
    logins: Arc<Shared>,
}

impl Logins {
    /// Logins in progress now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Ticket>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Enters a new connection into the login budget of `max` (evicting the
/// oldest silent login if it is full).
///
/// # Errors
/// `TooManyLogins` (53300) when the budget is full of logins that spoke.
pub fn enter(shared: &Arc<Shared>, max: usize) -> Result<LoginTicket, ProxyError> {
    let ticket = Arc::new(Ticket {
        evicted: CancellationToken::new(),
        spoke: AtomicBool::new(false),
    });
    let mut waiting = shared.logins.lock();
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
        logins: shared.clone(),
    })
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
        let mut waiting = self.logins.logins.lock();
        if let Some(i) = waiting.iter().position(|t| Arc::ptr_eq(t, &self.ticket)) {
            waiting.remove(i);
        }
    }
}
