//! Guards that give back what they hold when dropped, so that a server or a
//! connection slot can never leak, whatever path a task takes (including a
//! handoff to a waiter that has just timed out).

use std::sync::Arc;

use super::Pool;
use crate::server::ServerConn;

/// A server lent to one client. Dropping it returns the server to its pool
/// if it was marked reusable (and is not [broken](ServerConn::broken)), and
/// closes it otherwise.
pub struct ServerGuard {
    /// Boxed so that a session holding (or waiting for) a server stays
    /// small, and handing a server over moves one pointer.
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
    reusable: bool,
}

impl ServerGuard {
    pub(super) fn new(conn: Box<ServerConn>, pool: Arc<Pool>) -> Self {
        Self {
            conn: Some(conn),
            pool,
            reusable: true,
        }
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

    /// Marks whether the server is in a clean, idle state that another
    /// client may inherit. Set it to `false` as soon as the server is used.
    pub fn set_reusable(&mut self, reusable: bool) {
        self.reusable = reusable;
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
            if self.reusable {
                self.pool.checkin(conn);
            } else {
                self.pool.discard(*conn);
            }
        }
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
            pool.release_slot();
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
