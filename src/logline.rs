//! Log lines that clients cannot forge or flood: client-supplied text is
//! escaped and capped ([`Clean`]), and lines a client can cause at will are
//! throttled, with what was left out counted ([`Throttle`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest client-supplied text written to one log line.
const MAX_CHARS: usize = 256;

/// Displays client-supplied text with control characters escaped (a
/// newline cannot start a forged line) and at most [`MAX_CHARS`] of it.
pub struct Clean<'a>(pub &'a str);

/// A client's address as log lines show it: `unix` for the socket.
pub fn peer(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "unix".to_owned(), |a| a.to_string())
}

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_CHARS {
                return f.write_str("...");
            }
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// Lets at most `per_second` events a second through; the rest are
/// counted, and the next event let through reports how many were left out.
pub struct Throttle {
    per_second: u64,
    /// The current second (since the epoch) and the events seen in it,
    /// packed so that one atomic holds both: second << 20 | count.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(per_second: u64) -> Self {
        Self {
            per_second,
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(left out since the last one let through)` when this event may
    /// be logged, `None` when it is to be left out.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.admit_at(now)
    }

    fn admit_at(&self, second: u64) -> Option<u64> {
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (s, n) = (current >> 20, current & 0xf_ffff);
            let next = if s == second {
                (second << 20) | (n + 1).min(0xf_ffff)
            } else {
                (second << 20) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return if next & 0xf_ffff <= self.per_second {
                        Some(self.suppressed.swap(0, Ordering::Relaxed))
                    } else {
                        self.suppressed.fetch_add(1, Ordering::Relaxed);
                        None
                    };
                }
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        let forged = "bob\n2026-01-01T00:00:00Z INFO admin logged in\r\x1b[2J";
        let shown = Clean(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\x1b'));
        assert!(shown.starts_with("bob\\n2026"), "{shown}");
        assert!(Clean(&"x".repeat(10_000)).to_string().len() < 300);
    }

    #[test]
    fn throttle_counts_what_it_leaves_out() {
        let t = Throttle::new(3);
        let seen: Vec<_> = (0..10).map(|_| t.admit_at(100)).collect();
        assert_eq!(seen[..3], [Some(0), Some(0), Some(0)]);
        assert!(seen[3..].iter().all(Option::is_none));
        assert_eq!(
            t.admit_at(101),
            Some(7),
            "the next second reports 7 left out"
        );
    }
}
