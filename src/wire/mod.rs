//! The PostgreSQL v3 wire protocol, without I/O.
//!
//! Owns: framing ([`codec`]), startup packets ([`startup`]), building and
//! reading the few messages pgwarden itself speaks ([`backend`], [`frontend`]).
//! Must not: touch sockets or tokio, or decode messages the hot path only forwards.
//!
//! Protocol reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>

pub mod backend;
pub mod codec;
pub mod frontend;
pub mod splice;
pub mod startup;

use bytes::{BufMut, BytesMut};

/// Appends one tagged message to `buf`; `body` writes the payload and the
/// length field is patched afterwards, so no intermediate buffer is needed.
pub(crate) fn put_message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let len_at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - len_at) as u32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes a NUL-terminated C string.
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Reads a NUL-terminated string from the front of `body`, returning it and the rest.
/// An empty string (the unnamed statement or portal, the most common
/// name) is seen at once; `memchr` reads longer ones many bytes at a time
/// (query texts are scanned this way), but costs more on an empty one.
pub(crate) fn take_cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some((0, rest)) = body.split_first() {
        return Some((&[], rest));
    }
    let nul = memchr::memchr(0, body)?;
    Some((&body[..nul], &body[nul + 1..]))
}

/// Reads a big-endian i32 from the front of `body`.
pub(crate) fn take_i32(body: &[u8]) -> Option<(i32, &[u8])> {
    let bytes: [u8; 4] = body.get(..4)?.try_into().ok()?;
    Some((i32::from_be_bytes(bytes), &body[4..]))
}
