//! Guards that give back what they hold when dropped, so that a server or a
//! connection slot can never leak, whatever path a task takes (including a
//! handoff to a waiter that has just timed out).

use std::sync::Arc;
use std::time::Duration;

use super::Pool;
use crate::server::ServerConn;

/// How long giving a server back may spend on its ROLLBACK or reset query
/// before the server is closed instead.
const TIDY_TIMEOUT: Duration = Duration::from_secs(5);

/// The state a client leaves its server in. The session knows it from the
/// protocol; the guard knows what each needs before another client may
/// have the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Idle outside a transaction, owing nothing: back as it is.
    Clean,
    /// Idle inside a transaction (maybe a failed one): `ROLLBACK` first.
    NeedsRollback,
    /// Idle outside a transaction, with session state the next client must
    /// not inherit: the reset query (`server_reset_query`) first.
    NeedsReset,
    /// Mid-message, owing answers, pinned to its client, or its state not
    /// known: closed.
    Broken,
}

/// A server lent to one client. It goes back to its pool through
/// [`ServerGuard::check_in`]; dropped without one, it goes back only if
/// nothing was sent on it since it was lent ([`ServerGuard::mark_used`]),
/// and is closed otherwise, so that a path that forgets it cannot hand a
/// dirty server to another client.
pub struct ServerGuard {
    /// Boxed so that a session holding (or waiting for) a server stays
    /// small, and handing a server over moves one pointer.
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
    used: bool,
}

impl ServerGuard {
    pub(super) fn new(conn: Box<ServerConn>, pool: Arc<Pool>) -> Self {
        Self {
            conn: Some(conn),
            pool,
            used: false,
        }
    }

    /// The worker whose reactor watches the server.
    pub(super) fn home(&self) -> u16 {
        self.conn.as_ref().map_or(0, |c| c.home)
    }

    /// The server. Always present until the guard is dropped.
    pub fn conn(&mut self) -> &mut ServerConn {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("conn is only taken in drop or into_inner"),
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Something was sent on the server: from now on only
    /// [`ServerGuard::check_in`] with its [`Rest`] gives it back.
    pub fn mark_used(&mut self) {
        self.used = true;
    }

    /// Closes the server: it is broken, or in a state nobody may inherit.
    pub fn close(mut self) {
        self.used = true;
        if let Some(conn) = self.conn.take() {
            self.pool.close_server(*conn);
        }
    }

    /// Gives the server back in the state `rest` says: at once when it is
    /// [`Rest::Clean`] (or closed when [`Rest::Broken`]); otherwise the
    /// returned [`Tidy`] rolls it back and/or runs `reset_query` first, and
    /// closes it if that fails. `reset_query` is the reset the caller
    /// wants (`server_reset_query` in session mode or with
    /// `server_reset_query_always`), empty for none. Separate from
    /// [`Tidy::run`] so that the common case awaits nothing and the caller
    /// can box the rare one.
    #[must_use = "a server that needs tidying stays out of the pool until Tidy::run"]
    pub fn check_in(mut self, rest: Rest, reset_query: &str) -> Option<Tidy> {
        self.used = true;
        let reset = !reset_query.trim().is_empty();
        let rollback = match rest {
            Rest::Broken => {
                self.close();
                return None;
            }
            Rest::NeedsRollback => true,
            Rest::NeedsReset if reset => false,
            Rest::Clean | Rest::NeedsReset => {
                self.give_back();
                return None;
            }
        };
        if reset {
            // DISCARD ALL and the like drop prepared statements and
            // settings: pgwarden's record of them goes too.
            let conn = self.conn();
            conn.prepared.clear();
            conn.settings = Default::default();
        }
        Some(Tidy {
            guard: self,
            rollback,
            reset: reset.then(|| reset_query.to_owned()),
        })
    }

    /// Returns the server to its pool as it is.
    fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }

    /// Takes the server out without giving it back; the caller takes over
    /// its slot (used when a handoff could not be delivered).
    pub(super) fn into_inner(mut self) -> Box<ServerConn> {
        match self.conn.take() {
            Some(c) => c,
            None => unreachable!("conn is present until taken once"),
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            match self.used {
                false => self.pool.checkin(conn),
                true => self.pool.close_server(*conn),
            }
        }
    }
}

/// A server on its way back that must be rolled back and/or reset first.
pub struct Tidy {
    guard: ServerGuard,
    rollback: bool,
    /// Its own Query: `DISCARD ALL` cannot run in a transaction block.
    reset: Option<String>,
}

impl Tidy {
    /// Runs the statements (each bounded by a timeout), then gives the
    /// server back, or closes it if one failed.
    ///
    /// # Cancel safety
    /// Dropping the future mid-way closes the server.
    pub async fn run(mut self) {
        let statements = [self.rollback.then_some("ROLLBACK"), self.reset.as_deref()];
        for sql in statements.into_iter().flatten() {
            let done = tokio::time::timeout(TIDY_TIMEOUT, self.guard.conn().run(sql)).await;
            if !matches!(done, Ok(Ok(()))) {
                return self.guard.close();
            }
        }
        self.guard.give_back();
    }
}

/// The right to open one server connection in a pool; dropping it unused
/// gives the right to the next waiter.
pub struct SlotGuard {
    pool: Option<Arc<Pool>>,
}

impl SlotGuard {
    pub(super) fn new(pool: Arc<Pool>) -> Self {
        Self { pool: Some(pool) }
    }

    /// A slot of no pool, for tests of the books.
    #[cfg(test)]
    pub(super) fn detached() -> Self {
        Self { pool: None }
    }

    /// The slot is now held by an open server.
    pub(super) fn fill(mut self, conn: ServerConn) -> ServerGuard {
        match self.pool.take() {
            Some(pool) => ServerGuard::new(Box::new(conn), pool),
            None => unreachable!("pool is present until filled once"),
        }
    }

    /// Gives the slot up without waking anyone (used when the holder got a
    /// server by other means in the same instant).
    pub(super) fn into_pool(mut self) -> Option<Arc<Pool>> {
        self.pool.take()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.free_slot();
        }
    }
}

/// What a waiting client is given.
pub enum Handoff {
    /// An idle server.
    Server(ServerGuard),
    /// A slot to open a new server in (one was closed).
    Slot(SlotGuard),
}
