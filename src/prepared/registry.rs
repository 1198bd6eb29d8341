//! One id per distinct statement (query text plus parameter types), shared
//! by every client, so that identical statements from different clients
//! are prepared once per server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::frontend::PARSE;

/// A statement as servers know it.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// The server-side name, `pgw_<id>`, NUL-terminated.
    pub server_name: Box<[u8]>,
    /// The Parse body after the statement name: query, parameter types.
    pub key: Bytes,
}

impl Statement {
    /// Appends a Parse of this statement under its server-side name.
    pub fn put_parse(&self, out: &mut BytesMut) {
        out.put_u8(PARSE);
        out.put_u32((4 + self.server_name.len() + self.key.len()) as u32);
        out.put_slice(&self.server_name);
        out.put_slice(&self.key);
    }

    /// The server-side name without its NUL, for a Close.
    pub fn name(&self) -> &[u8] {
        &self.server_name[..self.server_name.len() - 1]
    }
}

/// Statements by content. Entries are weak: a statement no client holds any
/// more is forgotten (servers that still have it prepared age it out).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<Bytes, Weak<Statement>>,
    next_id: u64,
    /// Size after the last sweep of dead entries.
    swept_at: usize,
}

impl Registry {
    /// The statement for this Parse body remainder (query and types).
    pub fn intern(&self, key: &[u8]) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stmt) = inner.by_key.get(key).and_then(Weak::upgrade) {
            return stmt;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let stmt = Arc::new(Statement {
            id,
            server_name: format!("pgw_{id}\0").into_bytes().into_boxed_slice(),
            key: Bytes::copy_from_slice(key),
        });
        inner.by_key.insert(stmt.key.clone(), Arc::downgrade(&stmt));
        if inner.by_key.len() > 2 * inner.swept_at.max(512) {
            inner.by_key.retain(|_, w| w.strong_count() > 0);
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
    fn forgotten_when_no_client_holds_it() {
        let r = Registry::default();
        let id = r.intern(b"SELECT 3\0\0\0").id;
        assert_ne!(r.intern(b"SELECT 3\0\0\0").id, id);
    }
}
