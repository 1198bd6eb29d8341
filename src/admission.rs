//! Who may connect. Logged-in clients count against `max_client_conn`;
//! logins in progress count against `max_login_clients`, apart, so that
//! sockets that never finish logging in cannot lock real clients out.
//!
//! When the login budget is full, a new connection takes the place of the
//! oldest *silent* one (connected, no startup packet yet: the cheap attack,
//! and never a real client for long), which is closed; if every login in
//! progress has spoken, the newcomer is refused with 53300. A login that
//! speaks and then stalls is bounded by `client_login_timeout`.

use std::collections::{HashMap, VecDeque};
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
    /// Clients per database (as clients name it) and per login user, for
    /// `max_db_client_connections` and `max_user_client_connections`;
    /// always counted, so that a limit set by a reload holds at once.
    per_db: Counts,
    per_user: Counts,
}

/// A count per name; entries stay (one per configured database or user
/// that logged in, a bounded set).
#[derive(Default)]
struct Counts(Mutex<HashMap<Box<str>, Arc<AtomicUsize>>>);

impl Counts {
    fn of(&self, name: &str) -> Arc<AtomicUsize> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(name) {
            return c.clone();
        }
        let c = Arc::new(AtomicUsize::new(0));
        map.insert(name.into(), c.clone());
        c
    }
}

/// A place counted against `max_client_conn` (and, for a pooled client,
/// against its database's and user's limits) while a logged-in client lives.
pub struct ClientSlot {
    admission: Arc<Admission>,
    /// Its database's and its user's counts (none for a console client).
    named: Option<Box<[Arc<AtomicUsize>; 2]>>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.admission.clients.fetch_sub(1, Ordering::Relaxed);
        for count in self.named.iter().flat_map(|n| n.iter()) {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The limits a pooled client's login is admitted under (0: none).
pub struct ClientLimits<'a> {
    pub max_client_conn: usize,
    pub database: (&'a str, usize),
    pub user: (&'a str, usize),
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
        let slot = ClientSlot {
            admission: self.clone(),
            named: None,
        };
        if n >= max {
            return Err(ProxyError::TooManyClients);
        }
        Ok(slot)
    }

    /// Takes a place for a pooled client that has just authenticated.
    ///
    /// # Errors
    /// 53300 when `max_client_conn`, its database's or its user's limit is
    /// reached (each named in the message, as PgBouncer does).
    pub fn admit_pooled(
        self: &Arc<Self>,
        limits: &ClientLimits<'_>,
    ) -> Result<ClientSlot, ProxyError> {
        let mut slot = self.admit(limits.max_client_conn)?;
        let (db, user) = (
            self.per_db.of(limits.database.0),
            self.per_user.of(limits.user.0),
        );
        let on_db = db.fetch_add(1, Ordering::Relaxed);
        let as_user = user.fetch_add(1, Ordering::Relaxed);
        slot.named = Some(Box::new([db, user]));
        if limits.database.1 > 0 && on_db >= limits.database.1 {
            return Err(ProxyError::TooManyDbClients);
        }
        if limits.user.1 > 0 && as_user >= limits.user.1 {
            return Err(ProxyError::TooManyUserClients);
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

    #[test]
    fn database_and_user_limits_count_apart_and_free_on_drop() {
        let a = Arc::new(Admission::default());
        let limits = |db, user| ClientLimits {
            max_client_conn: 100,
            database: (db, 2),
            user: (user, 3),
        };
        let one = a.admit_pooled(&limits("app", "u1")).unwrap();
        let two = a.admit_pooled(&limits("app", "u2")).unwrap();
        assert_eq!(
            a.admit_pooled(&limits("app", "u3")).err(),
            Some(ProxyError::TooManyDbClients)
        );
        let three = a.admit_pooled(&limits("other", "u1")).unwrap();
        let four = a.admit_pooled(&limits("third", "u1")).unwrap();
        assert_eq!(
            a.admit_pooled(&limits("fourth", "u1")).err(),
            Some(ProxyError::TooManyUserClients)
        );
        drop(one);
        let again = a.admit_pooled(&limits("app", "u9")).unwrap();
        drop((two, three, four, again));
        assert_eq!(a.clients(), 0);
        assert_eq!(a.per_db.of("app").load(Ordering::Relaxed), 0);
        assert_eq!(a.per_user.of("u1").load(Ordering::Relaxed), 0);
    }
}
