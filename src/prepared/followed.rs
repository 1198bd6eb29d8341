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

    /// A Bind of `portal` from `statement`; `rest` is the Bind after the
    /// two names (none when it streams through unread).
    pub fn bound(&mut self, portal: &[u8], statement: &[u8], rest: Option<&[u8]>) {
        match self.statements.get(statement) {
            Some(effect) if effect.needs_parameters() => {
                let values = rest.and_then(parameters).unwrap_or_default();
                let bound = Arc::new(effect.bound(&values));
                self.portals.insert(portal.into(), bound);
            }
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

    /// No statement or portal is followed for its effects.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty() && self.portals.is_empty()
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

/// A Bind's parameter values (after the portal and statement names):
/// each one's bytes, `None` for NULL.
fn parameters(rest: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let (formats, rest) = take_u16(rest)?;
    let mut rest = rest.get(2 * usize::from(formats)..)?;
    let (count, after) = take_u16(rest)?;
    rest = after;
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        match usize::try_from(len) {
            Ok(len) => {
                values.push(Some(rest.get(..len)?));
                rest = &rest[len..];
            }
            Err(_) => values.push(None),
        }
    }
    Some(values)
}

fn take_u16(b: &[u8]) -> Option<(u16, &[u8])> {
    let v = u16::from_be_bytes(b.get(..2)?.try_into().ok()?);
    Some((v, &b[2..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::effect;

    #[test]
    fn portals_carry_their_statements_effect() {
        let mut f = Followed::default();
        f.parsed(b"s1", effect(b"SET TimeZone = 'UTC'"));
        f.parsed(b"", effect(b"SELECT 1"));
        f.bound(b"", b"s1", None);
        f.bound(b"p", b"", None);
        assert!(f.portal(b"").is_some_and(|e| e.changes()));
        assert!(f.portal(b"p").is_none());
        f.transaction_ended();
        assert!(f.portal(b"").is_none());
        f.closed_statement(b"s1");
        f.bound(b"", b"s1", None);
        assert!(f.portal(b"").is_none());
    }

    #[test]
    fn bound_parameters_reach_the_portal() {
        let mut f = Followed::default();
        f.parsed(b"t", effect(b"SELECT set_config('app.tenant', $2, false)"));
        // One format (text), two parameters: "x" and "acme"; one result format.
        let rest = b"\0\x01\0\0\0\x02\0\0\0\x01x\0\0\0\x04acme\0\0";
        f.bound(b"", b"t", Some(rest));
        let e = f.portal(b"").unwrap();
        assert_eq!(
            e.events,
            [crate::state::Event::Change(crate::state::Change::SetRaw(
                "app.tenant".into(),
                "acme".into()
            ))]
        );
        // Cut short or streamed: not followed.
        f.bound(b"", b"t", Some(&rest[..9]));
        let cut = f.portal(b"").unwrap();
        assert!(cut
            .events
            .iter()
            .all(|e| !matches!(e, crate::state::Event::Change(c) if c.is_followed())));
    }
}
