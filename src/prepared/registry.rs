//! One id per distinct statement (query text plus parameter types), shared
//! by every client, so that identical statements from different clients
//! are prepared once per server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::frontend::PARSE;

/// The table is swept of statements no client holds only past this size.
const SWEEP_FLOOR: usize = 4096;

/// A statement as servers know it.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// The server-side name, `pgw_<id>`, NUL-terminated.
    pub server_name: Box<[u8]>,
    /// The Parse body after the statement name: query, parameter types.
    pub key: Bytes,
    /// Running it changes session settings (a `SET`, `set_config`...).
    pub changes_settings: bool,
    /// Whether a replica may run it (functions judged by built-ins only).
    pub class: crate::routing::Classified,
    /// Made by SQL `PREPARE`: `key` is the text after its name, and
    /// servers get it by `PREPARE pgw_<id> <key>`, not by a Parse.
    pub sql: bool,
    /// The statement a SQL `EXECUTE` in it runs: prepared first.
    pub depends: Option<Arc<Statement>>,
}

impl Statement {
    /// Appends a Parse of this statement under its server-side name.
    pub fn put_parse(&self, out: &mut BytesMut) {
        out.put_u8(PARSE);
        out.put_u32((4 + self.server_name.len() + self.key.len()) as u32);
        out.put_slice(&self.server_name);
        out.put_slice(&self.key);
    }

    /// The query text.
    pub fn query(&self) -> &[u8] {
        let end = self
            .key
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.key.len());
        &self.key[..end]
    }

    /// The server-side name without its NUL, for a Close.
    pub fn name(&self) -> &[u8] {
        &self.server_name[..self.server_name.len() - 1]
    }

    /// The SQL that prepares a statement made by SQL `PREPARE` on a server.
    /// (A newline ends a trailing `--` comment of the client's text.)
    pub fn sql_prepare(&self) -> Vec<u8> {
        [b"PREPARE ", self.name(), b" ", &self.key[..], b"\n"].concat()
    }
}

/// Statements by content. A statement stays known while clients hold it,
/// and after, until the table has grown well past its last sweep: a client
/// that closes and re-prepares (as many drivers do) keeps its server-side
/// name, and other clients share it. Forgotten ones age out of servers
/// through their LRU.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<Bytes, Arc<Statement>>,
    /// Statements made by SQL `PREPARE`, by their text after the name.
    by_sql: HashMap<Bytes, Arc<Statement>>,
    next_id: u64,
    /// Size after the last sweep of dead entries.
    swept_at: usize,
}

impl Registry {
    /// The statement for this Parse body remainder (query and types).
    pub fn intern(&self, key: &[u8]) -> Arc<Statement> {
        self.intern_running(key, None)
    }

    /// The statement for this Parse body remainder, whose text runs
    /// `depends` (SQL `EXECUTE pgw_<id>`: the key names it, so one key
    /// always has the same dependency).
    pub fn intern_running(&self, key: &[u8], depends: Option<Arc<Statement>>) -> Arc<Statement> {
        let query = &key[..key.iter().position(|&b| b == 0).unwrap_or(key.len())];
        self.intern_in(false, key, query, depends)
    }

    /// The statement of SQL `PREPARE name <tail>`, whose statement proper
    /// (after `AS`) is `body`.
    pub fn intern_sql(&self, tail: &[u8], body: &[u8]) -> Arc<Statement> {
        self.intern_in(true, tail, body, None)
    }

    fn intern_in(
        &self,
        sql: bool,
        key: &[u8],
        query: &[u8],
        depends: Option<Arc<Statement>>,
    ) -> Arc<Statement> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let table = if sql {
            &mut inner.by_sql
        } else {
            &mut inner.by_key
        };
        if let Some(stmt) = table.get(key) {
            return stmt.clone();
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let stmt = Arc::new(Statement {
            id,
            server_name: format!("pgw_{id}\0").into_bytes().into_boxed_slice(),
            key: Bytes::copy_from_slice(key),
            changes_settings: crate::state::classify(query) != crate::state::Change::None
                || depends.as_ref().is_some_and(|d| d.changes_settings),
            class: match &depends {
                Some(d) => d.class,
                None => crate::routing::classify(query, &[]),
            },
            sql,
            depends,
        });
        table.insert(stmt.key.clone(), stmt.clone());
        let size = inner.by_key.len() + inner.by_sql.len();
        if size > 2 * inner.swept_at.max(SWEEP_FLOOR) {
            inner.by_key.retain(|_, s| Arc::strong_count(s) > 1);
            inner.by_sql.retain(|_, s| Arc::strong_count(s) > 1);
            inner.swept_at = inner.by_key.len() + inner.by_sql.len();
        }
        stmt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_statement_other_text_other_id() {
        let r = Registry::default();
        let a = r.intern(b"SELECT 1\0\0\0");
        let b = r.intern(b"SELECT 1\0\0\0");
        let c = r.intern(b"SELECT 2\0\0\0");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id, c.id);
        assert_eq!(a.name(), format!("pgw_{}", a.id).as_bytes());
    }

    #[test]
    fn sql_prepare_text_never_shares_a_protocol_statement() {
        let r = Registry::default();
        let p = r.intern(b"SELECT 1");
        let s = r.intern_sql(b"SELECT 1", b"SELECT 1");
        assert_ne!(p.id, s.id);
        assert!(s.sql && !p.sql);
        assert_eq!(
            s.sql_prepare(),
            format!("PREPARE pgw_{} SELECT 1\n", s.id).into_bytes()
        );
    }

    #[test]
    fn kept_after_its_clients_close_it() {
        let r = Registry::default();
        let id = r.intern(b"SELECT 3\0\0\0").id;
        assert_eq!(r.intern(b"SELECT 3\0\0\0").id, id);
    }
}
