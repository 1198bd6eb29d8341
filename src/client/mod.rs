//! The client half of the proxy: one task per application connection.
//!
//! Owns: the client's socket, its login ([`handshake`](mod@handshake)), its cancel key
//! ([`crate::cancel`]) and the forwarding loop ([`session`]). Must not: share a
//! server with another client, or hold a pool lock.

pub mod flow;
pub mod handshake;
pub mod members;
pub mod prefs;
pub mod resume;
pub mod route;
pub mod secure;
pub mod session;
pub mod tenancy;
pub mod traffic;
pub mod validate;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::admission::ClientSlot;
use crate::config::access::Access;
use crate::error::ProxyError;
use crate::net::{MessageStream, Stream};
use crate::shared::Shared;
use handshake::{handshake, Asked};

/// A logged-in connection, for the caller to run: a client's session, or
/// the admin console (which `client` does not know; `app` runs it).
pub enum Outcome {
    Session(Box<session::Session>),
    Console(ConsoleLogin),
}

/// A console user, logged in and greeted.
pub struct ConsoleLogin {
    pub io: Stream,
    /// What it sent after its startup packet.
    pub rbuf: BytesMut,
    pub access: Access,
    pub user: String,
    /// Its place under `max_client_conn`, held while it stays.
    pub slot: ClientSlot,
    /// Its listing in `SHOW CLIENTS`, held while it stays.
    pub registration: crate::cancel::Registration,
}

/// Logs one accepted connection in; returns what to run, or `None` when
/// the connection ended (refused, or a cancel request).
///
/// The session is returned rather than run here so that the caller can run
/// it as a task of its own: the handshake's futures are large, and an idle
/// client should not keep their space for its whole life.
pub async fn login(
    socket: Stream,
    shared: Arc<Shared>,
    ticket: &crate::admission::LoginTicket,
) -> Option<Outcome> {
    let mut stream = MessageStream::new(socket);
    let login_timeout = shared
        .config
        .load()
        .config
        .proxy
        .client_login_timeout
        .enabled();
    let result = match login_timeout {
        Some(t) => tokio::time::timeout(t, handshake(&mut stream, &shared, ticket))
            .await
            .unwrap_or(Err(ProxyError::LoginTimeout)),
        None => handshake(&mut stream, &shared, ticket).await,
    };
    match result {
        Ok(Asked::Login(login)) => {
            let MessageStream { io, rbuf } = stream;
            Some(Outcome::Session(session::Session::new(
                io, rbuf, login, shared,
            )))
        }
        Ok(Asked::Cancelled) => None,
        Ok(Asked::Console {
            access,
            user,
            slot,
            registration,
        }) => {
            let MessageStream { io, rbuf } = stream;
            Some(Outcome::Console(ConsoleLogin {
                io,
                rbuf,
                access,
                user,
                slot,
                registration,
            }))
        }
        Err(ProxyError::LoginAbandoned) => {
            // Not a refusal: psql's password prompt looks like this.
            tracing::debug!("client left during login");
            None
        }
        Err(e) => {
            shared.pooler_error(&e, "login refused");
            reject(&mut stream.io, &e).await;
            None
        }
    }
}

/// Sends an error to a client that will not be served, and closes.
pub async fn reject<S: AsyncWrite + Unpin>(socket: &mut S, e: &ProxyError) {
    let mut out = BytesMut::new();
    e.encode(&mut out);
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}
