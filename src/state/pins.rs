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

/// The phrases [`classify`] looks for, found in one case-insensitive pass
/// (a `windows()` scan per phrase cost ~19,000 instructions per `UPDATE`:
/// docs/benchmarks.md, issue 19). Indexes are the `P_*` bits below.
const PHRASES: [&str; 14] = [
    "listen",
    "pg_advisory_lock(",
    "pg_advisory_lock_shared(",
    "pg_try_advisory_lock(",
    "pg_try_advisory_lock_shared(",
    "pg_advisory_unlock_all",
    "create temp",
    "create temporary",
    "create local temp",
    "on commit drop",
    "with hold",
    "set role",
    "set session authorization",
    "discard all",
];
const P_LISTEN: u32 = 1;
const P_ADVISORY: u32 = 0b11110;
const P_UNLOCK_ALL: u32 = 1 << 5;
const P_TEMP: u32 = 0b111 << 6;
const P_ON_COMMIT_DROP: u32 = 1 << 9;
const P_HOLD_OR_ROLE: u32 = 0b111 << 10;
const P_DISCARD_ALL: u32 = 1 << 13;

static FINDER: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(PHRASES)
            .ok()
    });

/// One letter pair from each of [`PHRASES`] (a test checks it): most
/// texts that reach here (an `UPDATE ... SET`) have none, and skip the
/// finder (~1,500 instructions per TPC-B `UPDATE`).
static PHRASE_PAIRS: super::pairs::Pairs = super::pairs::Pairs::new(&[
    *b"is", *b"dv", *b"mp", *b"mm", *b"ld", *b"ol", *b"ss", *b"sc",
]);

/// Which of [`PHRASES`] occur in `sql`, as bits (all of them if the finder
/// could not be built: pinned is the safe side).
fn phrases_in(sql: &[u8]) -> u32 {
    if !PHRASE_PAIRS.any_in(sql) {
        return 0;
    }
    let Some(finder) = FINDER.as_ref() else {
        return u32::MAX;
    };
    finder
        .find_overlapping_iter(sql)
        .fold(0, |bits, m| bits | 1 << m.pattern().as_u32())
}

/// Classifies SQL text (a simple Query or a Parse's query).
pub fn classify(sql: &[u8]) -> PinChange {
    let mut change = PinChange::default();
    let found = phrases_in(sql);
    if found == 0 {
        return change;
    }
    if found & P_LISTEN != 0 {
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
    if found & P_ADVISORY != 0 {
        change.pin |= reason::ADVISORY_LOCK;
    }
    if found & P_UNLOCK_ALL != 0 {
        change.unpin |= reason::ADVISORY_LOCK;
    }
    let temp = found & P_TEMP != 0 && found & P_ON_COMMIT_DROP == 0;
    if temp || found & P_HOLD_OR_ROLE != 0 {
        change.pin |= reason::UNTIL_DISCONNECT;
    }
    if found & P_DISCARD_ALL != 0 {
        change.unpin = u8::MAX;
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass finder answers as a scan per phrase did.
    #[test]
    fn one_pass_finds_what_a_scan_per_phrase_finds() {
        let scan = |sql: &[u8]| -> u32 {
            let mut bits = 0;
            for (i, p) in PHRASES.iter().enumerate() {
                if sql
                    .windows(p.len())
                    .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
                {
                    bits |= 1 << i;
                }
            }
            bits
        };
        let fillers = [
            "",
            "UPDATE t SET x = 1; ",
            "select ",
            " ",
            "CrEaTe TeMpOrArY ",
        ];
        for (i, a) in PHRASES.iter().enumerate() {
            for b in PHRASES.iter().skip(i) {
                for f in fillers {
                    let upper = a.to_ascii_uppercase();
                    let sql = format!("{f}{upper}{f}{b}x{a}");
                    assert_eq!(phrases_in(sql.as_bytes()), scan(sql.as_bytes()), "{sql}");
                }
            }
        }
        assert_eq!(phrases_in(b"UPDATE pgbench_accounts SET abalance = 1"), 0);
    }

    #[test]
    fn every_phrase_holds_a_pair_in_any_case() {
        for p in PHRASES {
            assert!(PHRASE_PAIRS.any_in(p.as_bytes()), "{p}");
            assert!(
                PHRASE_PAIRS.any_in(p.to_ascii_uppercase().as_bytes()),
                "{p}"
            );
        }
        for sql in [
            &b"UPDATE pgbench_accounts SET abalance = abalance + -4 WHERE aid = 7;"[..],
            b"UPDATE pgbench_tellers SET tbalance = tbalance + -4 WHERE tid = 7;",
            b"UPDATE pgbench_branches SET bbalance = bbalance + -4 WHERE bid = 7;",
        ] {
            assert!(
                !PHRASE_PAIRS.any_in(sql),
                "TPC-B's statements skip the finder"
            );
        }
    }

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
