//! A socket with a read buffer, for the phases where messages are read whole
//! (startup, authentication, server login, resets). The hot path in
//! `client::session` reads the same buffer through the same
//! [`Scanner`](crate::wire::codec::Scanner), so there is one framing path.

pub mod dns;
pub mod probe;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod unix;

pub use stream::{Stream, TlsLabel};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::codec::{decode_whole, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection closed by peer")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Size of a fresh read buffer.
pub const BUF_SIZE: usize = 8 * 1024;
/// Buffers larger than this (grown for a big message) are not kept for reuse.
const SPARE_MAX_CAPACITY: usize = 64 * 1024;
/// Spare buffers kept per worker thread: enough for the sessions that start
/// a transaction in one burst, few enough not to count against idle memory.
const SPARE_MAX_COUNT: usize = 32;

thread_local! {
    /// Read buffers given back by sessions that went idle, so that lending
    /// one to the next transaction costs no allocation.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty read buffer, reused when one is spare on this thread.
pub fn take_buffer() -> BytesMut {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUF_SIZE))
}

/// Gives an emptied read buffer back for reuse (or frees it).
pub fn give_buffer(mut buf: BytesMut) {
    buf.clear();
    // Reclaims space consumed by `advance` without allocating.
    buf.reserve(BUF_SIZE);
    if buf.capacity() > SPARE_MAX_CAPACITY {
        return;
    }
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_MAX_COUNT {
            spare.push(buf);
        }
    });
}

/// Drops the first `n` bytes of `buf`. All of them (the common case: a
/// message forwarded whole) empties the buffer in place, so that its space
/// is read into again from the start without `reserve` moving anything.
#[inline]
pub fn consume(buf: &mut BytesMut, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else {
        buf.advance(n);
    }
}

/// A stream plus the bytes read from it but not yet consumed.
pub struct MessageStream<S> {
    pub io: S,
    pub rbuf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MessageStream<S> {
    pub fn new(io: S) -> Self {
        Self::with_buffer(io, BytesMut::with_capacity(BUF_SIZE))
    }

    pub fn with_buffer(io: S, rbuf: BytesMut) -> Self {
        Self { io, rbuf }
    }

    /// Reads one whole message of at most `max` bytes.
    ///
    /// # Errors
    /// EOF, an I/O error, or a framing violation.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read so far stay in `rbuf`.
    pub async fn read_message(&mut self, max: usize) -> Result<(u8, Bytes), NetError> {
        loop {
            if let Some((tag, _, used)) = decode_whole(&self.rbuf, max)? {
                let mut msg = self.rbuf.split_to(used);
                msg.advance(5);
                return Ok((tag, msg.freeze()));
            }
            if self.io.read_buf(&mut self.rbuf).await? == 0 {
                return Err(NetError::Eof);
            }
        }
    }

    /// Reads more bytes into the buffer.
    ///
    /// # Errors
    /// EOF or an I/O error.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn fill(&mut self) -> Result<usize, NetError> {
        match self.io.read_buf(&mut self.rbuf).await? {
            0 => Err(NetError::Eof),
            n => Ok(n),
        }
    }

    /// Writes all of `buf` and flushes (TLS may hold the end of a write).
    ///
    /// # Errors
    /// An I/O error.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), NetError> {
        self.io.write_all(buf).await?;
        self.io.flush().await?;
        Ok(())
    }
}
