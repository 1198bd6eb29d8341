//! pgwarden's own connections to a node, through tokio-postgres: the
//! topology monitor's checks, `auth_query` lookups and SWITCHOVER's steps.
//!
//! They log in as the pool's connections do, so they obey the same
//! `server_require_auth`: tokio-postgres has no such setting, so the socket
//! is wrapped in [`AuthWatch`], which reads the server's authentication
//! requests as they pass and fails the read when the server asks for a
//! method that is not allowed (or lets pgwarden in without one). Without
//! it, a node that an attacker impersonates could collect the monitor's
//! cleartext password that the pool's connections would refuse to send.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{Client, NoTls};

use crate::auth::backend::AuthMethods;
use crate::net::tls::{self, TlsTarget};

/// Who logs in where, and how the server may authenticate it.
#[derive(Clone, Copy, Debug)]
pub struct ControlLogin<'a> {
    pub addr: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub dbname: &'a str,
    /// Shown in `pg_stat_activity`, e.g. `pgwarden monitor`.
    pub application_name: &'a str,
    pub timeout: Duration,
    pub allowed_auth: AuthMethods,
    /// TLS as `server_tls_*` says for this node.
    pub tls: &'a TlsTarget,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("bad address {0}")]
    Address(String),
    #[error("cannot reach {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("{addr}: {why}")]
    Tls { addr: String, why: String },
    #[error("{addr}: timed out")]
    Timeout { addr: String },
    /// The login failed; `why` holds tokio-postgres's whole error chain
    /// (its top level alone says only "error communicating with the server").
    #[error("{addr}: {why}")]
    Postgres { addr: String, why: String },
}

/// Connects and logs in; the connection's driver runs on its own task
/// until the client is dropped.
///
/// # Errors
/// A bad address, an unreachable node, a refused login (including an
/// authentication method `allowed_auth` does not allow), or the timeout.
pub async fn connect(login: &ControlLogin<'_>) -> Result<Client, ControlError> {
    let addr = login.addr;
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| ControlError::Address(addr.to_owned()))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(login.user)
        .dbname(login.dbname)
        .application_name(login.application_name);
    if let Some(pw) = login.password {
        cfg.password(pw);
    }
    let attempt = async {
        let socket =
            crate::net::dns::connect(addr)
                .await
                .map_err(|source| ControlError::Connect {
                    addr: addr.to_owned(),
                    source,
                })?;
        let _ = socket.set_nodelay(true);
        let socket = tls::negotiate(socket, login.tls)
            .await
            .map_err(|e| ControlError::Tls {
                addr: addr.to_owned(),
                why: e.to_string(),
            })?;
        let watched = AuthWatch::new(socket, login.allowed_auth);
        cfg.connect_raw(watched, NoTls)
            .await
            .map_err(|e| ControlError::Postgres {
                addr: addr.to_owned(),
                why: chain(&e),
            })
    };
    let (client, conn) = tokio::time::timeout(login.timeout, attempt)
        .await
        .map_err(|_| ControlError::Timeout {
            addr: addr.to_owned(),
        })??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        why.push_str(": ");
        why.push_str(&c.to_string());
        cause = c.source();
    }
    why
}

/// Reads the server's messages until AuthenticationOk and refuses any
/// authentication request `allowed` does not allow; after that it only
/// passes bytes through.
pub struct AuthWatch<S> {
    inner: S,
    allowed: AuthMethods,
    /// Server bytes not yet seen as whole messages, until authenticated.
    pending: Vec<u8>,
    asked: bool,
    done: bool,
}

/// Messages before AuthenticationOk are a few short SASL messages.
const MAX_AUTH_BYTES: usize = 64 * 1024;

impl<S> AuthWatch<S> {
    pub fn new(inner: S, allowed: AuthMethods) -> Self {
        AuthWatch {
            inner,
            allowed,
            pending: Vec::new(),
            asked: false,
            done: false,
        }
    }

    /// Looks at bytes the server sent.
    fn see(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > MAX_AUTH_BYTES {
            return Err("the server sent too much before authenticating pgwarden");
        }
        let mut at = 0;
        while let Some(header) = self.pending.get(at..at + 5) {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len < 4 {
                return Err("the server sent a malformed message");
            }
            let Some(body) = self.pending.get(at + 5..at + 1 + len) else {
                break;
            };
            if header[0] == b'R' {
                let code = body
                    .get(..4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                if self.request(code)? {
                    self.done = true;
                    self.pending = Vec::new();
                    return Ok(());
                }
            }
            at += 1 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// Checks one authentication request; true once authenticated.
    fn request(&mut self, code: Option<u32>) -> Result<bool, &'static str> {
        let need = |m: AuthMethods, what| match self.allowed.allows(m) {
            true => Ok(()),
            false => Err(what),
        };
        match code {
            Some(0) => {
                if !self.asked {
                    need(
                        AuthMethods::NONE,
                        "the server let pgwarden in without a password, which server_require_auth does not allow",
                    )?;
                }
                return Ok(true);
            }
            Some(3) => need(
                AuthMethods::PASSWORD,
                "the server asked for a cleartext password, which server_require_auth does not allow",
            )?,
            Some(5) => need(
                AuthMethods::MD5,
                "the server asked for an md5 password, which server_require_auth does not allow",
            )?,
            Some(10) => need(
                AuthMethods::SCRAM,
                "the server asked for SCRAM, which server_require_auth does not allow",
            )?,
            // SASL continue and final belong to an exchange already allowed.
            Some(11 | 12) if self.asked => {}
            _ => return Err("the server asked for an authentication pgwarden does not support"),
        }
        self.asked = true;
        Ok(false)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthWatch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if !this.done => {
                let fresh = &buf.filled()[before..];
                match this.see(fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(why) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, why)))
                    }
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&((8 + extra.len()) as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(extra);
        m
    }

    fn watch(allowed: AuthMethods, bytes: &[u8], chunk: usize) -> Result<bool, &'static str> {
        let mut w = AuthWatch::new((), allowed);
        for piece in bytes.chunks(chunk) {
            w.see(piece)?;
            if w.done {
                return Ok(true);
            }
        }
        Ok(w.done)
    }

    #[test]
    fn refuses_what_is_not_allowed_in_any_split() {
        let md5_then_ok = [auth(5, b"salt"), auth(0, b"")].concat();
        let scram = [
            auth(10, b"SCRAM-SHA-256\0\0"),
            auth(11, b"r=x"),
            auth(12, b"v=y"),
            auth(0, b""),
        ]
        .concat();
        for chunk in [1, 3, 7, 1000] {
            assert!(watch(AuthMethods::SCRAM, &md5_then_ok, chunk).is_err());
            assert_eq!(watch(AuthMethods::MD5, &md5_then_ok, chunk), Ok(true));
            assert_eq!(watch(AuthMethods::SCRAM, &scram, chunk), Ok(true));
            assert!(watch(AuthMethods::MD5, &scram, chunk).is_err());
            assert!(watch(AuthMethods::SCRAM, &auth(0, b""), chunk).is_err());
            assert_eq!(watch(AuthMethods::NONE, &auth(0, b""), chunk), Ok(true));
            assert!(watch(AuthMethods::SCRAM, &auth(3, b""), chunk).is_err());
            // A SASL continuation with no SASL request before it.
            assert!(watch(AuthMethods::SCRAM, &auth(11, b"r=x"), chunk).is_err());
        }
    }

    #[test]
    fn an_error_before_authentication_passes() {
        let mut e = vec![b'E'];
        e.extend_from_slice(&10u32.to_be_bytes());
        e.extend_from_slice(b"SFATAL");
        assert_eq!(watch(AuthMethods::SCRAM, &e, 2), Ok(false));
    }
}
