//! `pgwarden probe URL`: a health check that needs nothing but the binary,
//! for images with no shell or curl (distroless) and for Docker's
//! `HEALTHCHECK`. One HTTP/1.1 GET to the console's HTTP side
//! (`admin_listen`); healthy when the answer is `200`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("expected http://host:port/path")]
    BadUrl,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("answered {0}")]
    Status(String),
}

/// GETs `url` (plain `http://` only) within `timeout`; `Ok` on a 200.
///
/// # Errors
/// A URL that is not `http://host:port/path`, a connection or read that
/// fails or times out, or any status but 200 (its status line).
pub fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let rest = url.strip_prefix("http://").ok_or(ProbeError::BadUrl)?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|_| ProbeError::BadUrl)?
        .next()
        .ok_or(ProbeError::BadUrl)?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    // The status line is all that is read: a few hundred bytes at most.
    let mut head = [0u8; 256];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let text = String::from_utf8_lossy(&head[..len]);
    let status = text.lines().next().unwrap_or_default();
    match status.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(ProbeError::Status(status.trim().to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::TcpListener;

    fn answer_once(reply: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply.as_bytes());
        });
        format!("http://127.0.0.1:{port}/health")
    }

    #[test]
    fn healthy_only_on_200() {
        let t = Duration::from_secs(5);
        assert!(probe(&answer_once("HTTP/1.1 200 OK\r\n\r\nok"), t).is_ok());
        let err = probe(&answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n"), t);
        assert!(matches!(err, Err(ProbeError::Status(s)) if s.contains("503")));
        // A peer that closes without answering: unhealthy, however the
        // close reaches us (an empty read or a reset).
        assert!(probe(&answer_once(""), t).is_err());
        assert!(matches!(probe("https://x/", t), Err(ProbeError::BadUrl)));
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let url = format!("http://127.0.0.1:{port}/health");
        assert!(matches!(probe(&url, t), Err(ProbeError::Io(_))));
    }
}
