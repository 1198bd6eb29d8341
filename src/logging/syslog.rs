//! PgBouncer's `syslog`: each line as one datagram to the local syslog
//! socket (`/dev/log`, or `syslog_socket`), in the BSD format
//! `<PRI>ident[pid]: message` that journald and rsyslog both read. A
//! datagram per line needs no connection state: if the socket is missing
//! or its queue is full, lines are dropped, never blocking the proxy.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::RwLock;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Where and as what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub socket: String,
    pub ident: String,
    /// The facility's code (`daemon` is 3).
    pub facility: u8,
}

/// syslog's facility codes by name, as PgBouncer accepts them.
pub fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp",
    ];
    let name = name.to_ascii_lowercase();
    if let Some(n) = name.strip_prefix("local") {
        return n.parse::<u8>().ok().filter(|n| *n < 8).map(|n| 16 + n);
    }
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u8::try_from(i).ok())
}

struct Sender {
    target: SyslogTarget,
    socket: UnixDatagram,
}

static SENDER: RwLock<Option<Sender>> = RwLock::new(None);

pub(super) fn set_target(target: Option<SyslogTarget>) {
    let mut sender = SENDER.write().unwrap_or_else(|e| e.into_inner());
    if sender.as_ref().map(|s| &s.target) == target.as_ref() {
        return;
    }
    *sender = target.and_then(|target| {
        let socket = UnixDatagram::unbound().ok()?;
        // A syslog daemon that falls behind fills its socket's queue: the
        // line is dropped rather than the proxy blocked.
        socket.set_nonblocking(true).ok()?;
        Some(Sender { target, socket })
    });
}

/// syslog's severity for a tracing level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

pub(super) struct Writer;

impl<'a> MakeWriter<'a> for Writer {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line(severity(meta.level()))
    }
}

/// One line's severity.
pub(super) struct Line(u8);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sender = SENDER.read().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sender.as_ref() {
            let text = String::from_utf8_lossy(buf);
            let packet = format!(
                "<{}>{}[{}]: {}",
                u16::from(s.target.facility) * 8 + u16::from(self.0),
                s.target.ident,
                std::process::id(),
                text.trim_end()
            );
            let _ = s.socket.send_to(packet.as_bytes(), &s.target.socket);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn facilities_as_syslog_numbers_them() {
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("LOCAL0"), Some(16));
        assert_eq!(facility_code("local7"), Some(23));
        assert_eq!(facility_code("local8"), None);
        assert_eq!(facility_code("nope"), None);
    }

    #[test]
    fn a_line_is_one_datagram_with_priority_and_ident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        set_target(Some(SyslogTarget {
            socket: path.display().to_string(),
            ident: "pgw-test".into(),
            facility: 16,
        }));
        // A warning (severity 4) at local0 (16): priority 16 * 8 + 4.
        Line(4).write_all(b"pooler error: x\n").unwrap();
        set_target(None);
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let want = format!("<132>pgw-test[{}]: pooler error: x", std::process::id());
        assert_eq!(got, want);
    }
}
