//! Texts of one shape: equal but for their numbers, such as an
//! application's statement run with different values inlined
//! (`... WHERE aid = 7` and `... WHERE aid = 90210`).
//!
//! A *number* here is a run of digits that does not continue a name, a
//! `$tag$` or a `$1` (the byte before it is not a [name
//! byte](super::lexer::is_ident)), wherever it stands: in a numeric
//! literal, but also inside a string, a comment or a quoted name. Every
//! digit is the same to the [lexer](super::lexer): changing a number's
//! digits or their count moves no token boundary, and changes no token's
//! text except a numeric literal's (which nobody reads), a string's (the
//! same), a comment's (where digits are not part of any hint) and a quoted
//! name's. So texts of one shape yield the same tokens apart from quoted
//! names; a reader that ignores quoted names, or is given no text with a
//! `"`, decides them alike, and can reuse a decision by shape.

use super::lexer::is_ident;

/// True when `a` and `b` are equal but for the digits of their numbers
/// (see the module's doc). Compares eight bytes at a time, so that a hit
/// costs a fraction of lexing the text.
pub fn same_shape(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        let n = common_prefix(a, b);
        if n == a.len() && n == b.len() {
            return true;
        }
        // They differ at `n`: both must be inside a number there.
        let digits_before = a[..n]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let start = n - digits_before;
        // `start` is 0 at the start of the texts, or right after a number,
        // where neither rest starts with a digit (so `both_numbers` fails).
        let number_may_start = start == 0 || !is_ident(a[start - 1]);
        let (ra, rb) = (digits(&a[n..]), digits(&b[n..]));
        let both_numbers = match digits_before {
            0 => ra > 0 && rb > 0,
            _ => ra > 0 || rb > 0,
        };
        if !number_may_start || !both_numbers {
            return false;
        }
        a = &a[n + ra..];
        b = &b[n + rb..];
    }
}

/// How many bytes at the start of `s` are digits.
fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut same = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return same + (diff.trailing_zeros() / 8) as usize;
        }
        same += 8;
    }
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Eight bytes as one word, the first byte lowest.
fn word(chunk: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

#[cfg(test)]
pub(crate) mod tests;
