//! Features that tie a client to one server for longer than a transaction:
//! `LISTEN`, session-level advisory locks, temporary tables, `WITH HOLD`
//! cursors, `SET ROLE` / `SET SESSION AUTHORIZATION`.

/// Reasons a client is pinned, as bits.
pub mod reason {
    pub const LISTEN: u8 = 1;
    pub const ADVISORY_LOCK: u8 = 2;
    /// Temporary tables, held cursors, roles: until the client leaves.
    pub const UNTIL_DISCONNECT: u8 = 4;
}

/// What a statement does to a client's pins.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PinChange {
    pub pin: u8,
    pub unpin: u8,
}

impl PinChange {
    pub fn is_none(&self) -> bool {
        self.pin == 0 && self.unpin == 0
    }

    /// Applies to a pin set.
    pub fn apply(&self, pins: u8) -> u8 {
        (pins & !self.unpin) | self.pin
    }

    /// A name for the feature that pins, for the refusal message.
    pub fn feature(&self) -> &'static str {
        if self.pin & reason::LISTEN != 0 {
            "LISTEN"
        } else if self.pin & reason::ADVISORY_LOCK != 0 {
            "session-level advisory locks"
        } else {
            "temporary tables, WITH HOLD cursors and SET ROLE"
        }
    }
}

/// Classifies SQL text (a simple Query or a Parse's query).
pub fn classify(sql: &[u8]) -> PinChange {
    let mut change = PinChange::default();
    let has = |needle: &[u8]| {
        sql.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if has(b"listen") {
        let text = String::from_utf8_lossy(sql).to_ascii_lowercase();
        for stmt in text
            .split(';')
            .map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        {
            let mut words = super::parse::skip_comments(stmt).split_whitespace();
            match (words.next(), words.next()) {
                (Some("listen"), Some(_)) => change.pin |= reason::LISTEN,
                (Some("unlisten"), Some("*")) => change.unpin |= reason::LISTEN,
                _ => {}
            }
        }
    }
    if has(b"pg_advisory_lock(")
        || has(b"pg_advisory_lock_shared(")
        || has(b"pg_try_advisory_lock(")
        || has(b"pg_try_advisory_lock_shared(")
    {
        change.pin |= reason::ADVISORY_LOCK;
    }
    if has(b"pg_advisory_unlock_all") {
        change.unpin |= reason::ADVISORY_LOCK;
    }
    let temp = (has(b"create temp") || has(b"create temporary") || has(b"create local temp"))
        && !has(b"on commit drop");
    let held = has(b"with hold");
    let role = has(b"set role") || has(b"set session authorization");
    if temp || held || role {
        change.pin |= reason::UNTIL_DISCONNECT;
    }
    if has(b"discard all") {
        change.unpin = u8::MAX;
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_unpins() {
        assert_eq!(classify(b"LISTEN jobs").pin, reason::LISTEN);
        assert_eq!(classify(b"unlisten *").unpin, reason::LISTEN);
        assert_eq!(classify(b"/* w */ LISTEN jobs").pin, reason::LISTEN);
        assert_eq!(
            classify(b"UNLISTEN *\0").unpin,
            reason::LISTEN,
            "as a Query body"
        );
        assert_eq!(
            classify(b"SELECT pg_advisory_lock(1)").pin,
            reason::ADVISORY_LOCK
        );
        assert!(classify(b"SELECT pg_advisory_xact_lock(1)").is_none());
        assert_eq!(
            classify(b"SELECT pg_advisory_unlock_all()").unpin,
            reason::ADVISORY_LOCK
        );
        assert_eq!(
            classify(b"CREATE TEMP TABLE t (x int)").pin,
            reason::UNTIL_DISCONNECT
        );
        assert!(classify(b"CREATE TEMP TABLE t (x int) ON COMMIT DROP").is_none());
        assert!(classify(b"SELECT 'listen' FROM t").is_none());
        assert_eq!(
            PinChange {
                pin: 0,
                unpin: u8::MAX
            }
            .apply(7),
            0
        );
    }
}
