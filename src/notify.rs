//! systemd's readiness protocol (`Type=notify`), without libsystemd: a
//! few `KEY=value` lines in one datagram to the Unix socket that
//! `NOTIFY_SOCKET` names (a path, or `@name` for an abstract socket).
//! Outside systemd the variable is unset and every call does nothing.
//!
//! pgwarden says `READY=1` once it listens (so `systemctl start` returns
//! only when clients can connect, and units ordered after it start then),
//! `RELOADING=1` then `READY=1` around a SIGHUP reload, and `STOPPING=1`
//! when a shutdown begins. A failed send is logged and otherwise ignored:
//! readiness is a courtesy to the service manager, never a reason to stop.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// What pgwarden tells the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    Reloading,
    Stopping,
}

impl State {
    fn line(self) -> &'static str {
        match self {
            State::Ready => "READY=1",
            State::Reloading => "RELOADING=1",
            State::Stopping => "STOPPING=1",
        }
    }
}

/// Sends `state` and a `STATUS=` line, if `NOTIFY_SOCKET` is set.
pub fn notify(state: State, status: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("{}\nSTATUS={}\n", state.line(), status.replace('\n', " "));
    if let Err(e) = send(&target.to_string_lossy(), message.as_bytes()) {
        tracing::warn!(socket = ?target, error = %e, "cannot notify the service manager");
    }
}

fn send(target: &str, message: &[u8]) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    // A full queue must never stall the proxy (see logging's syslog).
    socket.set_nonblocking(true)?;
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message, &addr)?;
        }
        None => {
            socket.send_to(message, target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgwarden-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), b"STOPPING=1\n").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");

        assert!(send(dir.path().join("none").to_str().unwrap(), b"x").is_err());
    }
}
