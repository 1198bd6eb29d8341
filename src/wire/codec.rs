//! Framing: finds message boundaries in a byte stream without copying.
//!
//! Every regular message is a 1-byte tag and a 4-byte big-endian length that
//! counts itself but not the tag. The [`Scanner`] walks a buffer header by
//! header: messages the caller wants to read are returned whole, all others
//! stream through as a header followed by body bytes, so a 1 GiB `DataRow`
//! is forwarded in read-sized pieces and never buffered.
//!
//! The length is checked against the caller's cap *before* anything is
//! allocated for it.

use thiserror::Error;

/// Tag byte plus length field.
pub const HEADER_LEN: usize = 5;

/// A framing violation; the connection it came from cannot be trusted further.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum FrameError {
    #[error("invalid length {len} in message of type {tag:?}", tag = *tag as char)]
    BadLength { tag: u8, len: u32 },
    #[error("message of type {tag:?} is {len} bytes, over the limit of {max}", tag = *tag as char)]
    TooLarge { tag: u8, len: usize, max: usize },
    /// PostgreSQL's wording for a message type it does not take.
    #[error("invalid frontend message type {tag}")]
    UnknownType { tag: u8 },
    /// A message pgwarden must read whole is larger than it may buffer.
    #[error("message of type {tag:?} is {len} bytes, over max_client_buffer ({max})", tag = *tag as char)]
    OverBuffer { tag: u8, len: usize, max: usize },
}

/// A set of message tags, as a 256-bit table so that membership is one load.
#[derive(Clone, Copy, Debug)]
pub struct TagSet([u64; 4]);

impl TagSet {
    pub const EMPTY: TagSet = TagSet([0; 4]);
    pub const ALL: TagSet = TagSet([u64::MAX; 4]);

    /// Builds a set from a list of tags (usable in `const`).
    pub const fn of(tags: &[u8]) -> TagSet {
        let mut bits = [0u64; 4];
        let mut i = 0;
        while i < tags.len() {
            let t = tags[i] as usize;
            bits[t / 64] |= 1 << (t % 64);
            i += 1;
        }
        TagSet(bits)
    }

    #[inline]
    pub fn contains(&self, tag: u8) -> bool {
        let t = tag as usize;
        self.0[t / 64] & (1 << (t % 64)) != 0
    }
}

/// One step of a [`Scanner`] walk.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete message whose tag the caller asked to see whole.
    Message { tag: u8, body: &'a [u8] },
    /// The header of a message that streams through; `body_len` bytes follow.
    Header { tag: u8, body_len: usize },
    /// This many body bytes of the current streaming message.
    Body(usize),
}

/// Result of [`Scanner::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// An item and how many bytes of the input it covers.
    Item(Item<'a>, usize),
    /// Nothing more can be read until at least this many bytes are buffered
    /// (counted from the position passed in).
    NeedMore(usize),
}

/// Tracks where the next message starts across reads.
#[derive(Debug, Default, Clone)]
pub struct Scanner {
    /// Body bytes of a streaming message that have not been seen yet.
    remaining: usize,
}

impl Scanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the scanner sits on a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// The caller has taken a message's first bytes itself; the next
    /// `remaining` bytes are the rest of its body, to stream.
    pub fn stream(&mut self, remaining: usize) {
        self.remaining = remaining;
    }

    /// Passes over up to `available` bytes of the streaming message's body
    /// at once (what [`Item::Body`] would cover, without a step of its
    /// own); returns how many.
    #[inline]
    pub fn skip_body(&mut self, available: usize) -> usize {
        let n = self.remaining.min(available);
        self.remaining -= n;
        n
    }

    /// Reads the next item from `buf`.
    ///
    /// `whole` names the tags to return as complete messages; `max` caps the
    /// length of any message (body plus length field).
    ///
    /// # Errors
    /// A length below 4 or above `max`.
    #[inline]
    pub fn next<'a>(
        &mut self,
        buf: &'a [u8],
        whole: &TagSet,
        max: usize,
    ) -> Result<Step<'a>, FrameError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(Step::NeedMore(1));
            }
            let n = self.remaining.min(buf.len());
            self.remaining -= n;
            return Ok(Step::Item(Item::Body(n), n));
        }
        let Some((tag, len)) = header_at(buf, 0) else {
            return Ok(Step::NeedMore(HEADER_LEN));
        };
        let len = checked_len(tag, len, max)?;
        let total = 1 + len;
        if whole.contains(tag) {
            return match buf.get(HEADER_LEN..total) {
                Some(body) => Ok(Step::Item(Item::Message { tag, body }, total)),
                None => Ok(Step::NeedMore(total)),
            };
        }
        self.remaining = len - 4;
        Ok(Step::Item(
            Item::Header {
                tag,
                body_len: len - 4,
            },
            HEADER_LEN,
        ))
    }
}

/// The tag and length field of the message header at `buf[pos..]`, once
/// all five bytes are there.
#[inline]
pub fn header_at(buf: &[u8], pos: usize) -> Option<(u8, u32)> {
    let h = buf.get(pos..pos.checked_add(HEADER_LEN)?)?;
    Some((h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]])))
}

/// A message's length field as a length, refused below 4 or above `max`.
///
/// # Errors
/// `BadLength` or `TooLarge`.
#[inline]
pub fn checked_len(tag: u8, len: u32, max: usize) -> Result<usize, FrameError> {
    if len < 4 {
        return Err(FrameError::BadLength { tag, len });
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { tag, len, max });
    }
    Ok(len)
}

/// A whole message: tag, body, and bytes used including the header.
pub type Whole<'a> = (u8, &'a [u8], usize);

/// The whole message at `buf[pos..]` once all of it has arrived: tag,
/// body, and where it ends. The framing of readers that look ahead
/// without consuming (routing reads a whole unit before any of it is
/// sent; the handshake reads small messages whole); what is forwarded is
/// framed by a [`Scanner`]. Both refuse a length below 4 or above `max`
/// through [`checked_len`].
///
/// # Errors
/// A length below 4 or above `max`.
#[inline]
pub fn whole_at(buf: &[u8], pos: usize, max: usize) -> Result<Option<Whole<'_>>, FrameError> {
    let Some((tag, len)) = header_at(buf, pos) else {
        return Ok(None);
    };
    let len = checked_len(tag, len, max)?;
    let found = pos
        .checked_add(1 + len)
        .and_then(|end| Some((buf.get(pos + HEADER_LEN..end)?, end)));
    Ok(found.map(|(body, end)| (tag, body, end)))
}

/// Reads one complete message from the front of `buf`, for the handshake
/// phases where every message is small and read whole.
///
/// # Errors
/// A length below 4 or above `max`.
pub fn decode_whole(buf: &[u8], max: usize) -> Result<Option<Whole<'_>>, FrameError> {
    whole_at(buf, 0, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn whole_message_needs_all_bytes() {
        let z = msg(b'Z', b"I");
        let whole = TagSet::of(b"Z");
        let mut s = Scanner::new();
        assert_eq!(s.next(&z[..3], &whole, 100), Ok(Step::NeedMore(5)));
        assert_eq!(s.next(&z[..5], &whole, 100), Ok(Step::NeedMore(6)));
        assert_eq!(
            s.next(&z, &whole, 100),
            Ok(Step::Item(
                Item::Message {
                    tag: b'Z',
                    body: b"I"
                },
                6
            ))
        );
    }

    #[test]
    fn streaming_message_passes_in_pieces() {
        let d = msg(b'D', &[7u8; 10]);
        let mut s = Scanner::new();
        let step = s.next(&d, &TagSet::EMPTY, 100);
        assert_eq!(
            step,
            Ok(Step::Item(
                Item::Header {
                    tag: b'D',
                    body_len: 10
                },
                5
            ))
        );
        assert!(!s.at_boundary());
        assert_eq!(
            s.next(&d[5..9], &TagSet::EMPTY, 100),
            Ok(Step::Item(Item::Body(4), 4))
        );
        assert_eq!(
            s.next(&d[9..], &TagSet::EMPTY, 100),
            Ok(Step::Item(Item::Body(6), 6))
        );
        assert!(s.at_boundary());
    }

    #[test]
    fn a_body_is_skipped_as_far_as_it_is_here() {
        let d = msg(b'D', &[7u8; 10]);
        let mut s = Scanner::new();
        assert!(matches!(
            s.next(&d, &TagSet::EMPTY, 100),
            Ok(Step::Item(Item::Header { .. }, 5))
        ));
        assert_eq!(s.skip_body(3), 3);
        assert_eq!(
            s.next(&d[8..10], &TagSet::EMPTY, 100),
            Ok(Step::Item(Item::Body(2), 2))
        );
        assert_eq!(s.skip_body(100), 5, "no further than the body");
        assert!(s.at_boundary());
        assert_eq!(s.skip_body(100), 0, "nothing at a boundary");
    }

    #[test]
    fn length_checked_before_body_arrives() {
        let mut s = Scanner::new();
        let huge = [b'Q', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            s.next(&huge, &TagSet::of(b"Q"), 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let short = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            s.next(&short, &TagSet::EMPTY, 1 << 20),
            Err(FrameError::BadLength { len: 3, .. })
        ));
    }

    #[test]
    fn decode_whole_reads_one() {
        let mut v = msg(b'p', b"secret\0");
        v.extend(msg(b'X', b""));
        let (tag, body, used) = decode_whole(&v, 100).ok().flatten().unwrap_or((0, b"", 0));
        assert_eq!((tag, body, used), (b'p', &b"secret\0"[..], 12));
    }
}
