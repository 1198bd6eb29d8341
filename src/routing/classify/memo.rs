//! The classes of the last few texts this thread classified, found again
//! by [shape](crate::sql::shape): an application sends the same few
//! statements with different numbers inlined, and lexing each of them
//! again cost about 21 instructions a byte, most of what routing a
//! transaction cost. Comparing a text with one remembered, eight bytes at
//! a time, costs about a fifth of that.
//!
//! Why a remembered class holds for any text of its shape: such texts
//! lex to the same tokens apart from quoted names (see `sql::shape`), and
//! no text with a `"` is remembered. What is remembered is the class
//! without the configured read-only functions, which only ever turn
//! [`Intent::Uncertain`] into [`Intent::Read`]; an uncertain text is
//! classified again with them, as a named statement's is.
//!
//! One memo per thread: a worker's sessions share it with no lock, and
//! clients of one application share their statements.

use std::cell::RefCell;

use super::{classify, Classified, Intent};
use crate::sql::shape::same_shape;

/// Texts remembered per thread. A miss compares the text with each of
/// them, a few instructions per 8 bytes, before it is lexed.
const ENTRIES: usize = 4;

/// Longer texts are not remembered: the memo's memory stays bounded
/// (`ENTRIES` × this, per worker).
const MAX_TEXT: usize = 1024;

struct Remembered {
    text: Vec<u8>,
    class: Classified,
}

struct Memo {
    entries: Vec<Remembered>,
    /// The entry the next new text replaces, once all are in use.
    next: usize,
    /// The entry found last, looked at first: a worker's clients mostly
    /// send one statement after another of the same shape.
    last: usize,
}

thread_local! {
    static MEMO: RefCell<Memo> = const {
        RefCell::new(Memo {
            entries: Vec::new(),
            next: 0,
            last: 0,
        })
    };
}

/// [`classify`], reusing the class of a text of the same shape classified
/// on this thread before.
pub fn classify_remembered(sql: &[u8], read_only_functions: &[String]) -> Classified {
    let known = MEMO
        .try_with(|memo| memo.borrow_mut().find(sql))
        .ok()
        .flatten();
    let class = known.unwrap_or_else(|| {
        let class = classify(sql, &[]);
        if sql.len() <= MAX_TEXT && memchr::memchr(b'"', sql).is_none() {
            // Only fails while the thread is being torn down.
            let _ = MEMO.try_with(|memo| memo.borrow_mut().remember(sql, class));
        }
        class
    });
    match class.intent {
        Intent::Uncertain if !read_only_functions.is_empty() => classify(sql, read_only_functions),
        _ => class,
    }
}

impl Memo {
    fn find(&mut self, sql: &[u8]) -> Option<Classified> {
        if let Some(e) = self.entries.get(self.last) {
            if same_shape(&e.text, sql) {
                return Some(e.class);
            }
        }
        let at = self
            .entries
            .iter()
            .enumerate()
            .position(|(i, e)| i != self.last && same_shape(&e.text, sql))?;
        self.last = at;
        self.entries.get(at).map(|e| e.class)
    }

    fn remember(&mut self, sql: &[u8], class: Classified) {
        if self.entries.len() < ENTRIES {
            self.last = self.entries.len();
            self.entries.push(Remembered {
                text: sql.to_vec(),
                class,
            });
            return;
        }
        if let Some(e) = self.entries.get_mut(self.next) {
            e.text.clear();
            e.text.extend_from_slice(sql);
            e.class = class;
        }
        self.last = self.next;
        self.next = (self.next + 1) % ENTRIES;
    }
}

#[cfg(test)]
mod tests;
