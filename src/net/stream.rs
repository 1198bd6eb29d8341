//! A connection's socket, in cleartext or in TLS: one type for both halves
//! of a session (clients and servers), so that the hot path does not care.
//!
//! What the session needs beyond `AsyncRead`/`AsyncWrite` works for both:
//! readiness without a buffer (idle clients hold none), a non-blocking
//! probe (a pooled server that spoke while idle), and [`Stream::send`],
//! which flushes: rustls may keep the end of a write in its own buffer
//! when the socket is full, where plain `write_all` would leave it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsStream;

use super::tls::ClientTls;

pub enum Stream {
    Tcp(TcpStream),
    /// A client on the Unix-domain socket (`unix_socket_dir`): never TLS,
    /// as PostgreSQL answers `N` to an SSLRequest there.
    Unix(UnixStream),
    /// Boxed: a TLS connection is large, and most sessions are not TLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// What is left after a TLS upgrade failed: reads see EOF, writes fail.
    Closed,
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Unix(_) | Stream::Closed => None,
        }
    }

    /// A client on the Unix-domain socket (`local` in hba terms).
    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// Runs the server side of a TLS handshake on a cleartext stream (after
    /// an SSLRequest, or a direct ClientHello).
    ///
    /// # Errors
    /// The handshake failed; the stream is then [`Stream::Closed`].
    pub async fn accept_tls(&mut self, tls: &ClientTls) -> io::Result<()> {
        match std::mem::replace(self, Stream::Closed) {
            Stream::Tcp(tcp) => {
                *self = Stream::Tls(Box::new(tls.accept(tcp).await?));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("TLS already negotiated"))
            }
        }
    }

    /// A socket that can be parked (see `client::session::parking`): TLS
    /// state lives in the stream and is not parked.
    pub fn can_park(&self) -> bool {
        matches!(self, Stream::Tcp(_) | Stream::Unix(_))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().ok_or_else(closed)?.peer_addr()
    }

    /// The socket's descriptor, for `SHOW FDS` (-1 once closed).
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().0.as_raw_fd(),
            Stream::Closed => -1,
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().ok_or_else(closed)?.local_addr()
    }

    /// Writes all of `buf` and flushes it to the socket.
    ///
    /// # Errors
    /// An I/O error.
    pub async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await?;
        if self.is_tls() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ready when a read would not wait: bytes (or EOF) on the socket, or
    /// plaintext TLS has decrypted already and not handed out.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => {
                if has_plaintext(s) {
                    return Poll::Ready(Ok(()));
                }
                s.get_ref().0.poll_read_ready(cx)
            }
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    /// Reads what is there now, without waiting (`WouldBlock` if nothing).
    ///
    /// # Errors
    /// An I/O error, or `WouldBlock`.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Closed => Ok(0),
            Stream::Tls(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut read = ReadBuf::new(buf);
                match Pin::new(self).poll_read(&mut cx, &mut read) {
                    Poll::Ready(Ok(())) => Ok(read.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Writes what the socket takes now, without waiting.
    pub fn try_send(&mut self, buf: &[u8]) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.try_write(buf);
            }
            Stream::Unix(s) => {
                let _ = s.try_write(buf);
            }
            Stream::Closed => {}
            Stream::Tls(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut this = Pin::new(self);
                let _ = this.as_mut().poll_write(&mut cx, buf);
                let _ = this.poll_flush(&mut cx);
            }
        }
    }

    /// The protocol and cipher, for `SHOW CLIENTS`/`SHOW SERVERS`.
    pub fn tls_label(&self) -> TlsLabel {
        let Stream::Tls(s) = self else {
            return TlsLabel::default();
        };
        let state = s.get_ref().1;
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let suite = state
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("");
        TlsLabel::of(version, suite)
    }

    /// The protocol ALPN settled on, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(s) => s.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }

    /// The DER certificates the peer presented (a client's, when asked).
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) | Stream::Closed => None,
            Stream::Tls(s) => s.get_ref().1.peer_certificates(),
        }
    }
}

/// True if rustls holds decrypted bytes not read yet (a read that filled
/// the caller's buffer leaves the rest there, and the socket then has no
/// news to wake a readiness wait).
fn has_plaintext(s: &mut TlsStream<TcpStream>) -> bool {
    let state = match s {
        TlsStream::Server(s) => s.get_mut().1.process_new_packets(),
        TlsStream::Client(s) => s.get_mut().1.process_new_packets(),
    };
    // An error is news too: the next read reports it.
    state.map_or(true, |st| {
        st.plaintext_bytes_to_read() > 0 || st.peer_has_closed()
    })
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// `TLSv1.3/TLS_AES_256_GCM_SHA384` as PgBouncer's `tls` column shows it
/// (empty in cleartext). One pointer to a (version, suite) pair made once
/// per pair, rather than the pair itself: every client keeps one, and 24
/// bytes less puts its `SessionControl` in a smaller size class of the
/// allocator (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsLabel(Option<&'static (&'static str, &'static str)>);

impl TlsLabel {
    fn of(version: &'static str, suite: &'static str) -> Self {
        // A handful of pairs exist (the protocol versions times the
        // cipher suites rustls offers): each is leaked once.
        static PAIRS: std::sync::Mutex<Vec<&'static (&'static str, &'static str)>> =
            std::sync::Mutex::new(Vec::new());
        let mut pairs = PAIRS.lock().unwrap_or_else(|p| p.into_inner());
        let pair = match pairs.iter().find(|p| ***p == (version, suite)) {
            Some(p) => *p,
            None => {
                let p: &'static (&'static str, &'static str) =
                    Box::leak(Box::new((version, suite)));
                pairs.push(p);
                p
            }
        };
        TlsLabel(Some(pair))
    }
}

impl std::fmt::Display for TlsLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((version, suite)) = self.0 else {
            return Ok(());
        };
        // rustls says TLS13_AES_..., OpenSSL (and so PgBouncer) TLS_AES_...
        match suite.strip_prefix("TLS13_") {
            Some(rest) => write!(f, "{version}/TLS_{rest}"),
            None => write!(f, "{version}/{suite}"),
        }
    }
}

fn closed() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}
