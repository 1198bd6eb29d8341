//! Which of a client's prepared statements and portals change settings or
//! end a block: a `SET` sent through the extended protocol takes effect
//! when its portal is executed, maybe many times, maybe never.

use std::collections::HashMap;
use std::sync::Arc;

use crate::state::Effect;

/// Effects by client name (`""` is the unnamed statement or portal). Only
/// statements with an effect are kept: the common client has none, and
/// then every lookup is on an empty map.
#[derive(Debug, Default)]
pub struct Followed {
    statements: HashMap<Box<[u8]>, Arc<Effect>>,
    portals: HashMap<Box<[u8]>, Arc<Effect>>,
}

impl Followed {
    /// A Parse of `name` with `effect`.
    pub fn parsed(&mut self, name: &[u8], effect: Effect) {
        match effect.is_empty() {
            true => self.closed_statement(name),
            false => {
                self.statements.insert(name.into(), Arc::new(effect));
            }
        }
    }

    /// A Bind of `portal` from `statement`.
    pub fn bound(&mut self, portal: &[u8], statement: &[u8]) {
        match self.statements.get(statement) {
            Some(effect) => {
                self.portals.insert(portal.into(), effect.clone());
            }
            None => self.closed_portal(portal),
        }
    }

    /// What executing `portal` does, if anything.
    pub fn portal(&self, portal: &[u8]) -> Option<&Arc<Effect>> {
        match self.portals.is_empty() {
            true => None,
            false => self.portals.get(portal),
        }
    }

    pub fn closed_statement(&mut self, name: &[u8]) {
        if !self.statements.is_empty() {
            self.statements.remove(name);
        }
    }

    pub fn closed_portal(&mut self, name: &[u8]) {
        if !self.portals.is_empty() {
            self.portals.remove(name);
        }
    }

    /// `DISCARD ALL` / `DEALLOCATE ALL`: no statement is left.
    pub fn clear_statements(&mut self) {
        self.statements.clear();
    }

    /// A transaction ended: its portals are gone.
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::effect;

    #[test]
    fn portals_carry_their_statements_effect() {
        let mut f = Followed::default();
        f.parsed(b"s1", effect(b"SET TimeZone = 'UTC'"));
        f.parsed(b"", effect(b"SELECT 1"));
        f.bound(b"", b"s1");
        f.bound(b"p", b"");
        assert!(f.portal(b"").is_some_and(|e| e.changes()));
        assert!(f.portal(b"p").is_none());
        f.transaction_ended();
        assert!(f.portal(b"").is_none());
        f.closed_statement(b"s1");
        f.bound(b"", b"s1");
        assert!(f.portal(b"").is_none());
    }
}
