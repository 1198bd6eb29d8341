//! The admin console: a virtual database (`pgwarden`, or `pgbouncer` for
//! PgBouncer's tools) where `admin_users` tune the proxy live and
//! `stats_users` read its state, in PgBouncer's commands and columns.
//!
//! Owns: the console's sessions. pgwarden's own handshake logs the user in
//! (same auth as any client) and greets it; from the first query on,
//! `pgwire`'s server API speaks the protocol (simple and extended query),
//! with [`handler::Console`] answering. Commands are parsed in [`command`],
//! tables built in [`show`], live changes made in [`reconfigure`], traffic acted on in [`control`].

pub mod command;
pub mod control;
pub mod handler;
pub mod peers;
pub mod reconfigure;
pub mod show;
pub mod show_pgwarden;
pub mod sockets;
pub mod stats;
pub mod switchover;
pub mod table;

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{process_error, process_message, PgWireMessageServerCodec};
use tokio_util::codec::{Framed, FramedParts};

use crate::net::Stream;
use crate::shared::Shared;

pub use crate::config::access::{Access, CONSOLE_DATABASES as DATABASES};

/// Serves a logged-in console user until it leaves. `rbuf` holds what it
/// sent after its startup packet.
pub async fn serve(
    socket: Stream,
    rbuf: BytesMut,
    shared: Arc<Shared>,
    access: Access,
    user: String,
) {
    let addr = socket
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(addr, false));
    let mut parts = FramedParts::new(socket, codec);
    parts.read_buf.put_slice(&rbuf);
    let mut framed = Framed::from_parts(parts);
    framed.set_state(PgWireConnectionState::ReadyForQuery);
    // A shutdown ends the console too (told 57P01, as pooled clients are),
    // else an open psql on the console would hold the exit for
    // `shutdown_timeout`.
    let stopping = shared.shutdown.clone();
    let console = Arc::new(handler::Console::new(shared, access, user));
    let noop = Arc::new(NoopHandler);
    loop {
        let next = tokio::select! {
            next = framed.next() => next,
            () = stopping.cancelled() => {
                let e = crate::error::ProxyError::Shutdown;
                let info = pgwire::error::ErrorInfo::new(
                    "FATAL".to_owned(),
                    e.sqlstate().to_owned(),
                    e.to_string(),
                );
                let _ = futures::SinkExt::send(
                    &mut framed,
                    pgwire::messages::PgWireBackendMessage::ErrorResponse(info.into()),
                )
                .await;
                break;
            }
        };
        let Some(Ok(message)) = next else {
            break;
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended = message.is_extended_query();
        let result = process_message(
            message,
            &mut framed,
            noop.clone(),
            console.clone(),
            console.clone(),
            noop.clone(),
            noop.clone(),
        )
        .await;
        if let Err(e) = result {
            let fatal = e.is_fatal();
            if process_error(&mut framed, e, extended).await.is_err() || fatal {
                break;
            }
        }
        if console.should_close() {
            break;
        }
    }
}

/// A pgwarden error as the console's client sees it: always `ERROR`, the
/// console session goes on.
pub fn to_pgwire(e: &crate::error::ProxyError) -> PgWireError {
    PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
        "ERROR".to_owned(),
        e.sqlstate().to_owned(),
        e.to_string(),
    )))
}
