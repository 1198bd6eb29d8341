//! Letter-pair filters: a text with none of a set of letter pairs (in any
//! case) holds none of the words that each contain one of them, and
//! finding that out costs a table lookup per byte, a fraction of a
//! multi-pattern automaton's pass over the same text (docs/benchmarks.md,
//! issue 19). The callers keep the automaton for texts the filter lets by.

/// A set of letter pairs as a bitmap over every (byte, byte) pair, indexed
/// by the pair read as a little-endian `u16` (first byte low).
pub struct Pairs {
    bits: [u64; 1024],
}

impl Pairs {
    /// `pairs` in lower case.
    pub const fn new(pairs: &[[u8; 2]]) -> Self {
        let mut bits = [0u64; 1024];
        let mut i = 0;
        while i < pairs.len() {
            let key = (pairs[i][1] as usize) << 8 | pairs[i][0] as usize;
            bits[key >> 6] |= 1 << (key & 63);
            i += 1;
        }
        Self { bits }
    }

    /// Bit 0 set if `w` is one of the pairs, in any case (`| 0x20`
    /// lowercases a letter; other bytes may only add false alarms).
    #[inline(always)]
    fn hit(&self, w: [u8; 2]) -> u64 {
        let key = usize::from(u16::from_le_bytes(w) | 0x2020);
        self.bits[key >> 6] >> (key & 63)
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
                hits |= self.hit([block[j], block[j + 1]]);
            }
            if hits & 1 != 0 {
                break;
            }
            at += 8;
        }
        let found = text[at..]
            .windows(2)
            .position(|w| self.hit([w[0], w[1]]) & 1 != 0);
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
}
