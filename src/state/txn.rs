//! Setting changes made inside a transaction block, held until it ends.
//!
//! PostgreSQL applies a `SET` made in a transaction block to the session
//! only when the block commits; `ROLLBACK` drops it, and `ROLLBACK TO
//! SAVEPOINT` drops what was set since that savepoint. Drivers rely on
//! this: psycopg's default mode, PgJDBC and Django all send their `SET`s
//! inside a block. [`Txn`] keeps such changes in savepoint frames and
//! hands them over once the server says the block committed.
//!
//! The end of a transaction is read from ReadyForQuery (status `I`), not
//! from the statement text: a `COMMIT` of a failed block rolls back, and a
//! `COMMIT` can fail. Only what the status cannot tell is read from the
//! text: `ROLLBACK` (which ends a block without error) and savepoints.

use super::{Arg, Change};

/// One statement's effect on settings or on the block that holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Change(Change),
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `COMMIT` / `END` (`AND CHAIN` included: the block ends either way).
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
}

/// The effect of one Query or one Execute: its events in order, and
/// whether its text held several statements (then a failure leaves
/// unknown which of them ran).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effect {
    pub events: Vec<Event>,
    pub several: bool,
}

impl Effect {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// True when it changes a setting (not only the block around them).
    pub fn changes(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Change(_)))
    }

    /// True when a `set_config` argument is a parameter of the statement.
    pub fn needs_parameters(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Change(Change::SetBound(..))))
    }

    /// The effect once bound: `values[n]` is parameter `$n+1` as sent
    /// (text, or a text parameter's binary form, which is the same bytes);
    /// `None` for NULL. A value missing or not UTF-8 is not followed.
    pub fn bound(&self, values: &[Option<&[u8]>]) -> Effect {
        let arg = |a: &Arg| match a {
            Arg::Text(t) => Some(t.clone()),
            Arg::Param(n) => values
                .get(*n)
                .copied()
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        };
        let events = self
            .events
            .iter()
            .map(|e| match e {
                Event::Change(Change::SetBound(name, value)) => match (arg(name), arg(value)) {
                    (Some(n), Some(v)) => Event::Change(Change::SetRaw(n.to_ascii_lowercase(), v)),
                    _ => Event::Change(Change::Untrackable),
                },
                other => other.clone(),
            })
            .collect();
        Effect {
            events,
            several: self.several,
        }
    }
}

#[derive(Debug)]
struct Frame {
    /// The savepoint that opened the frame; none for the block's base.
    savepoint: Option<String>,
    changes: Vec<Change>,
}

/// The open transaction's changes not yet committed.
#[derive(Debug, Default)]
pub struct Txn {
    frames: Vec<Frame>,
    /// The block failed: only a rollback (to a savepoint) gets out of it,
    /// and its `COMMIT` rolls back.
    failed: bool,
    committed: Vec<Change>,
    /// A change was made that cannot be followed.
    lost: bool,
}

impl Txn {
    /// True when no change waits for the block to end: statements that
    /// only open, end or split a block need no following then.
    pub fn is_empty(&self) -> bool {
        self.frames.iter().all(|f| f.changes.is_empty())
    }

    /// Nothing open, failed, committed and unapplied, or lost: as a new
    /// session's.
    pub fn is_settled(&self) -> bool {
        self.frames.is_empty() && !self.failed && self.committed.is_empty() && !self.lost
    }

    /// A Query or Execute finished, successfully or not.
    pub fn done(&mut self, effect: &Effect, failed: bool) {
        if failed {
            let only_changes = effect.events.iter().all(|e| matches!(e, Event::Change(_)));
            if effect.several && !only_changes {
                // Which savepoints or commits ran before the error is
                // unknown: give up on this block.
                self.lost = true;
                self.frames.clear();
                return;
            }
            if !only_changes {
                // A single block statement that failed did nothing.
                return;
            }
            // Changes before the error are in a failed block: any way out
            // of it (ROLLBACK, ROLLBACK TO a savepoint before them) drops
            // them, which the frames do on their own.
        }
        for event in &effect.events {
            self.event(event);
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::Change(change) => self.top().push(change.clone()),
            Event::Savepoint(name) => {
                // The block's base frame stays first.
                self.top();
                self.frames.push(Frame {
                    savepoint: Some(name.clone()),
                    changes: Vec::new(),
                });
            }
            Event::Release(name) => {
                // Releasing a savepoint releases those made after it;
                // one made before pgwarden looked releases them all.
                let at = self.find(name).unwrap_or(1).max(1);
                let merged: Vec<Change> = self
                    .frames
                    .drain(at.min(self.frames.len())..)
                    .flat_map(|f| f.changes)
                    .collect();
                self.top().extend(merged);
            }
            Event::RollbackTo(name) => {
                match self.find(name) {
                    Some(at) => {
                        self.frames.truncate(at + 1);
                        if let Some(f) = self.frames.last_mut() {
                            f.changes.clear();
                        }
                    }
                    // Made before the first change pgwarden holds.
                    None => self.frames.clear(),
                }
                self.failed = false;
            }
            Event::Commit => {
                if self.failed {
                    self.frames.clear();
                } else {
                    self.commit();
                }
                self.failed = false;
            }
            Event::Rollback => {
                self.frames.clear();
                self.failed = false;
            }
        }
    }

    /// Another server: no block is open on it.
    pub fn reset(&mut self) {
        self.frames.clear();
        self.failed = false;
    }

    /// The server answered with an error.
    pub fn error(&mut self) {
        self.failed = true;
    }

    /// ReadyForQuery with `status`: at `I` the block (or the implicit
    /// transaction of a Query or a Sync) ended, committed unless it failed.
    pub fn ready(&mut self, status: u8) {
        match status {
            b'I' => {
                if self.failed {
                    self.frames.clear();
                } else {
                    self.commit();
                }
                self.failed = false;
            }
            b'E' => self.failed = true,
            _ => self.failed = false,
        }
    }

    fn commit(&mut self) {
        for frame in self.frames.drain(..) {
            self.committed.extend(frame.changes);
        }
    }

    /// Changes committed since the last call, in order.
    pub fn take_committed(&mut self) -> Option<std::vec::Drain<'_, Change>> {
        (!self.committed.is_empty()).then(|| self.committed.drain(..))
    }

    /// A committed change could not be followed.
    pub fn mark_lost(&mut self) {
        self.lost = true;
    }

    /// True while a lost change is unreported.
    pub fn peek_lost(&self) -> bool {
        self.lost
    }

    /// True once after a change was lost for want of following it.
    pub fn take_lost(&mut self) -> bool {
        std::mem::take(&mut self.lost)
    }

    fn top(&mut self) -> &mut Vec<Change> {
        if self.frames.is_empty() {
            self.frames.push(Frame {
                savepoint: None,
                changes: Vec::new(),
            });
        }
        let last = self.frames.len() - 1;
        &mut self.frames[last].changes
    }

    /// The frame of the latest savepoint called `name`.
    fn find(&self, name: &str) -> Option<usize> {
        self.frames
            .iter()
            .rposition(|f| f.savepoint.as_deref() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str) -> Event {
        Event::Change(Change::Set(name.into(), "1".into()))
    }

    fn one(events: Vec<Event>) -> Effect {
        Effect {
            events,
            several: false,
        }
    }

    fn names(t: &mut Txn) -> Vec<String> {
        t.take_committed()
            .map(|d| {
                d.map(|c| match c {
                    Change::Set(n, _) => n,
                    other => format!("{other:?}"),
                })
                .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn commit_applies_rollback_drops() {
        let mut t = Txn::default();
        t.ready(b'T');
        t.done(&one(vec![set("a")]), false);
        t.ready(b'T');
        assert!(names(&mut t).is_empty(), "held until the block ends");
        t.ready(b'I');
        assert_eq!(names(&mut t), ["a"]);

        t.done(&one(vec![set("b")]), false);
        t.ready(b'T');
        t.done(&one(vec![Event::Rollback]), false);
        t.ready(b'I');
        assert!(names(&mut t).is_empty());
    }

    #[test]
    fn commit_of_a_failed_block_rolls_back() {
        let mut t = Txn::default();
        t.done(&one(vec![set("a")]), false);
        t.ready(b'T');
        t.error();
        t.ready(b'E');
        t.ready(b'I');
        assert!(names(&mut t).is_empty());
    }

    #[test]
    fn savepoints() {
        let mut t = Txn::default();
        // SET a; SAVEPOINT s; SET b; ROLLBACK TO s; SET c; COMMIT
        for e in [
            set("a"),
            Event::Savepoint("s".into()),
            set("b"),
            Event::RollbackTo("s".into()),
            set("c"),
        ] {
            t.done(&one(vec![e]), false);
        }
        t.ready(b'I');
        assert_eq!(names(&mut t), ["a", "c"]);

        // A savepoint from before the first change: rolling back to it
        // drops them all; releasing keeps them.
        t.done(&one(vec![set("a")]), false);
        t.done(&one(vec![Event::RollbackTo("old".into())]), false);
        t.done(&one(vec![set("b")]), false);
        t.done(&one(vec![Event::Savepoint("s".into())]), false);
        t.done(&one(vec![set("c")]), false);
        t.done(&one(vec![Event::Release("s".into())]), false);
        t.done(&one(vec![Event::Release("old".into())]), false);
        t.ready(b'I');
        assert_eq!(names(&mut t), ["b", "c"]);
    }

    #[test]
    fn error_then_rollback_to_savepoint_keeps_what_came_before() {
        let mut t = Txn::default();
        t.done(&one(vec![set("a")]), false);
        t.done(&one(vec![Event::Savepoint("s".into())]), false);
        t.done(&one(vec![set("b")]), true);
        t.error();
        t.ready(b'E');
        t.done(&one(vec![Event::RollbackTo("s".into())]), false);
        t.ready(b'T');
        t.ready(b'I');
        assert_eq!(names(&mut t), ["a"]);
    }

    #[test]
    fn a_failed_multi_statement_query_with_block_statements_is_lost() {
        let mut t = Txn::default();
        let e = Effect {
            events: vec![Event::Commit, set("a")],
            several: true,
        };
        t.done(&e, true);
        assert!(t.take_lost());
        assert!(!t.take_lost(), "reported once");
    }

    #[test]
    fn parameters_are_put_in_when_bound() {
        let e = crate::state::effect(b"SELECT set_config('App.Tenant', $1, false)");
        assert!(e.needs_parameters());
        let b = e.bound(&[Some(b"acme")]);
        assert_eq!(
            b.events,
            [Event::Change(Change::SetRaw(
                "app.tenant".into(),
                "acme".into()
            ))]
        );
        assert_eq!(
            e.bound(&[None]).events,
            [Event::Change(Change::Untrackable)]
        );
        assert_eq!(e.bound(&[]).events, [Event::Change(Change::Untrackable)]);
    }

    #[test]
    fn several_blocks_in_one_query() {
        let mut t = Txn::default();
        // BEGIN; SET a; COMMIT; BEGIN; SET b; ROLLBACK; SET c
        let e = Effect {
            events: vec![set("a"), Event::Commit, set("b"), Event::Rollback, set("c")],
            several: true,
        };
        t.done(&e, false);
        t.ready(b'I');
        assert_eq!(names(&mut t), ["a", "c"]);
    }
}
