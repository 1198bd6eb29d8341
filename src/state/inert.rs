//! The last text [`may_matter`] ruled out, per client: a driver sends the
//! same statement, or the same one with other literals, transaction after
//! transaction (pgbench, node-postgres, PgJDBC before its prepare
//! threshold, any ORM). A text equal to it needs one comparison; one that
//! differs needs only the stretch that changed scanned, rather than all of
//! it (~700 instructions of a `-S -M extended` transaction's ~11,800 were
//! the scan, docs/benchmarks.md, issue 19).
//!
//! Why the stretch is enough: a trigger word in the new text that lies
//! wholly in the prefix both texts share, or wholly in their common
//! suffix, would be in the remembered text too, which held none. Any other
//! overlaps the changed stretch, so it lies within that stretch widened on
//! each side by the longest trigger word less one byte.

use super::{may_matter, TRIGGER_WORDS};

/// How far a trigger word can reach out of the changed stretch.
const MARGIN: usize = longest(&TRIGGER_WORDS) - 1;

const fn longest(words: &[&str]) -> usize {
    let (mut i, mut max) = (0, 0);
    while i < words.len() {
        if words[i].len() > max {
            max = words[i].len();
        }
        i += 1;
    }
    max
}

#[derive(Debug, Default)]
pub struct InertMemo {
    last: Vec<u8>,
}

impl InertMemo {
    /// Longer texts are scanned whole each time rather than kept per client.
    const MAX: usize = 512;

    /// [`may_matter`], scanning only what differs from the last text it
    /// ruled out.
    pub fn may_matter(&mut self, sql: &[u8]) -> bool {
        let matters = match self.last.is_empty() {
            true => may_matter(sql),
            false => {
                let pre = common_prefix(&self.last, sql);
                if pre == sql.len() && pre == self.last.len() {
                    return false;
                }
                let suf = common_suffix(&self.last[pre..], &sql[pre..]);
                let from = pre.saturating_sub(MARGIN);
                let to = (sql.len() - suf).saturating_add(MARGIN).min(sql.len());
                may_matter(&sql[from..to])
            }
        };
        if !matters && sql.len() <= Self::MAX {
            self.last.clear();
            self.last.extend_from_slice(sql);
        }
        matters
    }
}

/// How many bytes `a` and `b` share from their start, compared eight at
/// a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + 8 <= n {
        let (x, y) = (word(&a[at..]), word(&b[at..]));
        if x != y {
            return at + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many bytes `a` and `b` share at their end, compared eight at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut same = 0;
    while same + 8 <= n {
        let (x, y) = (word(&a[n - same - 8..]), word(&b[n - same - 8..]));
        if x != y {
            return same + ((x ^ y).leading_zeros() / 8) as usize;
        }
        same += 8;
    }
    let (a, b) = (&a[..n - same], &b[..n - same]);
    same + a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// The eight bytes at the start of `s` (at least eight long), first byte
/// lowest: the first differing byte is then the lowest differing one.
fn word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[..8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_answers_as_the_scan_does() {
        let mut memo = InertMemo::default();
        let select = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0\0\0";
        for _ in 0..2 {
            assert!(!memo.may_matter(select));
            assert!(memo.may_matter(b"SET search_path = a"));
            assert!(!memo.may_matter(select));
        }
        assert!(!memo.may_matter(b""));
        assert!(
            memo.may_matter(b"set x = 1"),
            "an empty memo matches nothing"
        );
    }

    #[test]
    fn prefixes_and_suffixes_are_counted_at_every_length() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            for at in 0..n {
                let mut b = a.clone();
                b[at] = b'#';
                assert_eq!(common_prefix(&a, &b), at, "{n} {at}");
                assert_eq!(common_suffix(&a, &b), n - at - 1, "{n} {at}");
            }
            assert_eq!(common_prefix(&a, &a), n);
            assert_eq!(common_suffix(&a, &a), n);
            let longer = [&a[..], b"xyz"].concat();
            assert_eq!(common_prefix(&a, &longer), n);
            let longer = [b"xyz", &a[..]].concat();
            assert_eq!(common_suffix(&a, &longer), n);
        }
    }

    /// Every trigger word made by an edit of an inert text, wherever the
    /// edit falls in it: by one byte changed, or by a gap closed. Each
    /// margin one byte shorter fails this.
    #[test]
    fn a_word_an_edit_makes_is_found() {
        for word in TRIGGER_WORDS {
            let w = word.as_bytes();
            for (before, after) in [(0, 0), (1, 3), (7, 9), (16, 23)] {
                let pad = |n: usize| vec![b'.'; n];
                let whole = [pad(before), w.to_vec(), pad(after)].concat();
                let at = before;
                for i in 0..w.len() {
                    // One byte of the word changed from something else.
                    let mut inert = whole.clone();
                    inert[at + i] = b'.';
                    let mut memo = InertMemo::default();
                    assert!(!memo.may_matter(&inert), "{word}");
                    assert!(
                        memo.may_matter(&whole),
                        "{word}: byte {i}, {before}/{after}"
                    );
                    // A gap in the word closed.
                    let gapped = [&whole[..at + i], b"..", &whole[at + i..]].concat();
                    if !may_matter(&gapped) {
                        let mut memo = InertMemo::default();
                        assert!(!memo.may_matter(&gapped));
                        assert!(memo.may_matter(&whole), "{word}: gap at {i}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any sequence of edited texts: the memo says what a whole scan says.
        #[test]
        fn the_memo_is_the_whole_scan(
            start in "[a-z .;=]{0,40}",
            edits in proptest::collection::vec(
                (0usize..50, 0usize..4, "(se|et|t|S|E|al|lo|ca|te|dea|DEAL|oc|pre|pa|re|ex|ec|ute|ho|ld|mp|[a-z]|.| ){0,4}"),
                1..12,
            ),
        ) {
            let mut memo = InertMemo::default();
            let mut text = start.into_bytes();
            for (at, cut, put) in edits {
                let at = at.min(text.len());
                let end = (at + cut).min(text.len());
                text.splice(at..end, put.bytes());
                proptest::prop_assert_eq!(memo.may_matter(&text), may_matter(&text));
            }
        }
    }
}
