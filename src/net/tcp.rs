//! TCP socket options, PgBouncer's `tcp_*` settings, on both halves of a
//! session: keepalive (so that a peer that vanished without a FIN, behind
//! a NAT or a dead host, is found and its slot freed), `TCP_USER_TIMEOUT`
//! (unacknowledged data gives up after this, not after the kernel's ~15
//! minutes of retries), buffer sizes, and `TCP_DEFER_ACCEPT` on the
//! listener (a connection is accepted once it has sent its first bytes).

use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// The options every client and server socket gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub keepalive: bool,
    /// Idle time before the first probe, between probes, probes before the
    /// connection is dropped: `None` keeps the system's value.
    pub keepidle: Option<Duration>,
    pub keepintvl: Option<Duration>,
    pub keepcnt: Option<u32>,
    pub user_timeout: Option<Duration>,
    /// Both the send and the receive buffer, in bytes.
    pub socket_buffer: Option<usize>,
}

impl TcpOptions {
    /// Sets the options on a connected socket. Failures are logged, not
    /// fatal: a socket without keepalive still carries its session.
    pub fn apply(&self, socket: &tokio::net::TcpStream) {
        if let Err(e) = self.try_apply(&SockRef::from(socket)) {
            tracing::debug!(error = %e, "a TCP option was not set");
        }
    }

    fn try_apply(&self, s: &SockRef<'_>) -> std::io::Result<()> {
        s.set_keepalive(self.keepalive)?;
        if self.keepalive {
            let mut k = TcpKeepalive::new();
            if let Some(t) = self.keepidle {
                k = k.with_time(t);
            }
            if let Some(t) = self.keepintvl {
                k = k.with_interval(t);
            }
            if let Some(n) = self.keepcnt {
                k = k.with_retries(n);
            }
            s.set_tcp_keepalive(&k)?;
        }
        if let Some(t) = self.user_timeout {
            s.set_tcp_user_timeout(Some(t))?;
        }
        if let Some(n) = self.socket_buffer {
            s.set_recv_buffer_size(n)?;
            s.set_send_buffer_size(n)?;
        }
        Ok(())
    }
}

/// `TCP_DEFER_ACCEPT` on a listener: the kernel hands over a connection
/// once data arrives (or after `secs`), so that port scanners and
/// half-open connections never wake the accept loop. 0 turns it off.
pub fn defer_accept(listener: &tokio::net::TcpListener, secs: u32) {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid descriptor, a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "tcp_defer_accept was not set");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = tokio::join!(a, l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn the_options_reach_the_socket() {
        let (a, _b) = pair().await;
        let o = TcpOptions {
            keepalive: true,
            keepidle: Some(Duration::from_secs(42)),
            keepintvl: Some(Duration::from_secs(7)),
            keepcnt: Some(3),
            user_timeout: Some(Duration::from_millis(1500)),
            socket_buffer: Some(64 * 1024),
        };
        o.apply(&a);
        let s = SockRef::from(&a);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.keepalive_time().unwrap(), Duration::from_secs(42));
        assert_eq!(s.keepalive_interval().unwrap(), Duration::from_secs(7));
        assert_eq!(s.keepalive_retries().unwrap(), 3);
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        // Linux doubles the value it is given, for its bookkeeping.
        assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
    }

    #[tokio::test]
    async fn keepalive_off_is_off() {
        let (a, _b) = pair().await;
        TcpOptions::default().apply(&a);
        assert!(!SockRef::from(&a).keepalive().unwrap());
    }

    #[tokio::test]
    async fn defer_accept_reaches_the_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        defer_accept(&l, 45);
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor and pointers to live locals.
        let rc = unsafe {
            libc::getsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        // The kernel rounds to its retransmission steps.
        assert!(value >= 45, "{value}");
    }
}
