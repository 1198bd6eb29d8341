//! Letter-pair filters: a text with none of a set of letter pairs (in any
//! case) holds none of the words that each contain one of them, and
//! finding that out costs two table lookups per byte, a fraction of a
//! multi-pattern automaton's pass over the same text (docs/benchmarks.md,
//! issue 19). The callers keep the automaton for texts the filter lets by.

/// Each byte's letter, 1 to 26 in either case; 0 for any other byte.
static LETTER: [u8; 256] = letters();

const fn letters() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 26 {
        t[b'a' as usize + c] = c as u8 + 1;
        t[b'A' as usize + c] = c as u8 + 1;
        c += 1;
    }
    t
}

/// A set of letter pairs: one row of bits per first letter, a bit per
/// second letter. Row 0 and bit 0 (not a letter) stay clear. The whole
/// set is 128 bytes, two cache lines: a bitmap over every byte pair was
/// 8 KiB.
pub struct Pairs {
    rows: [u32; 32],
}

impl Pairs {
    /// `pairs` in lower case, letters only (checked when built).
    pub const fn new(pairs: &[[u8; 2]]) -> Self {
        let mut rows = [0u32; 32];
        let mut i = 0;
        while i < pairs.len() {
            let (a, b) = (LETTER[pairs[i][0] as usize], LETTER[pairs[i][1] as usize]);
            assert!(a != 0 && b != 0, "a letter pair holds letters only");
            rows[a as usize] |= 1 << b;
            i += 1;
        }
        Self { rows }
    }

    /// Bit 0 set if `a` then `b` is one of the pairs, in any case.
    #[inline(always)]
    fn hit(&self, a: u8, b: u8) -> u32 {
        self.rows[usize::from(LETTER[usize::from(a)])] >> LETTER[usize::from(b)]
    }

    /// True if `text` has one of the pairs.
    pub fn any_in(&self, text: &[u8]) -> bool {
        self.first_in(text).is_some()
    }

    /// Where the first of the pairs in `text` starts. Eight pairs are
    /// tested before each branch, independently of each other (no carried
    /// state).
    pub fn first_in(&self, text: &[u8]) -> Option<usize> {
        let mut at = 0;
        while let Some((block, _)) = text[at..].split_first_chunk::<9>() {
            let mut hits = 0;
            for j in 0..8 {
                hits |= self.hit(block[j], block[j + 1]);
            }
            if hits & 1 != 0 {
                break;
            }
            at += 8;
        }
        let found = text[at..]
            .windows(2)
            .position(|w| self.hit(w[0], w[1]) & 1 != 0);
        found.map(|i| at + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_found_at_every_offset_and_in_any_case() {
        let pairs = [*b"et", *b"dv"];
        let set = Pairs::new(&pairs);
        for len in 2..40 {
            for at in 0..len - 1 {
                for pair in pairs {
                    let mut text = vec![b'z'; len];
                    text[at] = pair[0];
                    text[at + 1] = pair[1].to_ascii_uppercase();
                    assert_eq!(set.first_in(&text), Some(at), "{len} {at} {pair:?}");
                }
                assert!(!set.any_in(&vec![b'z'; len]));
            }
        }
        assert!(!set.any_in(b"") && !set.any_in(b"e"));
    }

    proptest::proptest! {
        /// Any bytes: the first pair found is the first a plain search
        /// finds (bytes that are not letters never match).
        #[test]
        fn agrees_with_a_plain_search(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let pairs = [*b"et", *b"dv", *b"xa"];
            let set = Pairs::new(&pairs);
            let plain = text.windows(2).position(|w| {
                pairs.iter().any(|p| w[0].to_ascii_lowercase() == p[0] && w[1].to_ascii_lowercase() == p[1])
            });
            proptest::prop_assert_eq!(set.first_in(&text), plain);
        }

        #[test]
        fn finds_a_pair_among_any_bytes(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            upper in proptest::prelude::any::<bool>(),
        ) {
            let mut text = head.clone();
            text.extend_from_slice(if upper { b"XA" } else { b"xa" });
            let set = Pairs::new(&[*b"xa"]);
            proptest::prop_assert!(set.first_in(&text).is_some_and(|at| at <= head.len()));
        }
    }
}
