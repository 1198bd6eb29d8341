//! Prepared statements in transaction mode, protocol-level and SQL-level.
//!
//! A client's named statement lives on whichever server ran its Parse; in
//! transaction mode its next Bind may land on another server. pgwarden
//! therefore keeps each client's statements itself ([`ClientStatements`]),
//! names them on servers by content (`pgw_<id>`, one id per distinct query
//! text and parameter types, shared by all clients: [`Registry`]), records
//! per server which are prepared there ([`ServerStatements`], an LRU bounded
//! by `max_prepared_statements`), and rewrites the client's extended-protocol
//! messages on the way through ([`rewrite`]): a Parse the server already
//! has is answered by pgwarden, a Bind or Describe of a statement the
//! server lacks gets a Parse sent before it, a Close is answered by
//! pgwarden. SQL `PREPARE`/`EXECUTE`/`DEALLOCATE` name the same statements
//! and are carried the same way ([`commands`]).
//!
//! Answering and injecting change the server's response stream, so the
//! session keeps the queue of responses the server owes ([`Outstanding`])
//! and knows which server message to drop and where to insert its own.

mod commands;
mod ctx;
mod followed;
mod inject;
mod outstanding;
mod registry;
pub mod rewrite;
mod tracker;

pub use crate::server::statements::ServerStatements;
pub use followed::Followed;
pub use inject::Unnamed;
pub use outstanding::{Action, Done, Expect, Outstanding, Retag, Seen};
pub use registry::{Registry, Statement};
pub use tracker::SessionTracker;

use std::collections::HashMap;
use std::sync::Arc;

/// Maps by a client's statement names, looked up on every Bind. foldhash
/// is seeded at random per map, so a client cannot pick colliding names
/// without knowing the seed, at a fraction of SipHash's cost.
type ByName<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// A client's named statements, by the client's name.
#[derive(Default)]
pub struct ClientStatements {
    by_name: ByName<Arc<Statement>>,
    /// Statements whose text is SQL `EXECUTE <target>`, with their target:
    /// PostgreSQL looks the target up each time one runs.
    targets: ByName<Box<[u8]>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    pub fn insert(&mut self, name: &[u8], stmt: Arc<Statement>) {
        self.by_name.insert(name.into(), stmt);
    }

    /// Inserts a statement that runs SQL `EXECUTE target`.
    pub fn insert_running(&mut self, name: &[u8], stmt: Arc<Statement>, target: &[u8]) {
        self.targets.insert(name.into(), target.into());
        self.insert(name, stmt);
    }

    /// The statement an `EXECUTE` statement runs, by the client's name.
    pub fn target(&self, name: &[u8]) -> Option<&[u8]> {
        self.targets.get(name).map(|t| &t[..])
    }

    pub fn remove(&mut self, name: &[u8]) {
        self.by_name.remove(name);
        if !self.targets.is_empty() {
            self.targets.remove(name);
        }
    }

    /// Every statement, for an online restart; `None` when one cannot be
    /// carried: a statement that runs SQL `EXECUTE` names another by its
    /// server-side name, which is this process's own.
    pub fn export(&self) -> Option<Vec<crate::handoff::HandedStatement>> {
        if !self.targets.is_empty() {
            return None;
        }
        self.by_name
            .iter()
            .map(|(name, stmt)| {
                stmt.depends
                    .is_none()
                    .then(|| crate::handoff::HandedStatement {
                        name: name.to_vec(),
                        key: stmt.key.to_vec(),
                        sql: stmt.sql,
                    })
            })
            .collect()
    }

    /// The statements a session had on the process it was handed over from.
    pub fn import(&mut self, registry: &Registry, handed: &[crate::handoff::HandedStatement]) {
        for h in handed {
            let stmt = match h.sql {
                true => registry.intern_sql(&h.key, crate::sql::statements::prepared_body(&h.key)),
                false => registry.intern(&h.key),
            };
            self.insert(&h.name, stmt);
        }
    }

    pub fn clear(&mut self) {
        self.by_name.clear();
        self.targets.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.targets.is_empty()
    }
}
