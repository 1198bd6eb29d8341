//! Edits to a buffer on its way through, copied only when an edit is made:
//! an unedited buffer is sent as it is.

use bytes::BytesMut;

#[derive(Default)]
pub struct Splice {
    out: BytesMut,
    /// Bytes of the source already accounted for in `out`.
    copied: usize,
    edited: bool,
}

impl Splice {
    /// Replaces `src[start..end]` with `with` (an empty range inserts, an
    /// empty `with` removes). Edits must come in order.
    pub fn replace(&mut self, src: &[u8], start: usize, end: usize, with: &[u8]) {
        if !self.edited {
            self.out.clear();
            self.copied = 0;
            self.edited = true;
        }
        self.out.extend_from_slice(&src[self.copied..start]);
        self.out.extend_from_slice(with);
        self.copied = end;
    }

    /// The bytes to send for `src[..upto]`; ends this round of edits.
    pub fn finish<'a>(&'a mut self, src: &'a [u8], upto: usize) -> &'a [u8] {
        if !self.edited {
            return &src[..upto];
        }
        self.edited = false;
        self.out.extend_from_slice(&src[self.copied..upto]);
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unedited_is_the_source_and_edits_apply_in_order() {
        let mut s = Splice::default();
        assert_eq!(s.finish(b"abcdef", 4), b"abcd");
        s.replace(b"abcdef", 1, 2, b"XY");
        s.replace(b"abcdef", 3, 3, b"+");
        s.replace(b"abcdef", 4, 5, b"");
        assert_eq!(s.finish(b"abcdef", 6), b"aXYc+df");
        assert_eq!(s.finish(b"abcdef", 2), b"ab", "a new round starts clean");
    }
}
