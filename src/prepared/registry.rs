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
    next_id: u64,
    /// Size after the last sweep of dead entries.
    swept_at: usize,
}

impl Registry {
    /// The statement for this Parse body remainder (query and types).
    pub fn intern(&self, key: &[u8]) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stmt) = inner.by_key.get(key) {
            return stmt.clone();
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let stmt = Arc::new(Statement {
            id,
            server_name: format!("pgw_{id}\0").into_bytes().into_boxed_slice(),
            key: Bytes::copy_from_slice(key),
            changes_settings: crate::state::classify(key) != crate::state::Change::None,
            class: crate::routing::classify(
                &key[..key.iter().position(|&b| b == 0).unwrap_or(key.len())],
                &[],
            ),
        });
        inner.by_key.insert(stmt.key.clone(), stmt.clone());
        if inner.by_key.len() > 2 * inner.swept_at.max(SWEEP_FLOOR) {
            inner.by_key.retain(|_, s| Arc::strong_count(s) > 1);
            inner.swept_at = inner.by_key.len();
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
    fn kept_after_its_clients_close_it() {
        let r = Registry::default();
        let id = r.intern(b"SELECT 3\0\0\0").id;
        assert_eq!(r.intern(b"SELECT 3\0\0\0").id, id);
    }
}
