//! Opening and logging in to a server connection.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::ServerConn;
use crate::auth::backend::{login, AuthMethods, BackendAuthError, BackendSecret};
use crate::net::tls::{self, ServerTlsError, TlsTarget};
use crate::net::{MessageStream, NetError};
use crate::wire::backend::{self as be, ErrorFields};
use crate::wire::frontend;

/// Where and as whom to log in.
#[derive(Clone, Debug)]
pub struct ServerTarget {
    pub addr: String,
    pub dbname: String,
    pub user: String,
    pub secret: Option<BackendSecret>,
    /// How servers may authenticate pgwarden (`server_require_auth`).
    pub allowed_auth: AuthMethods,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] ServerTlsError),
    #[error("server_connect_timeout reached")]
    Timeout,
    #[error(transparent)]
    Auth(#[from] BackendAuthError),
    #[error("server error {} {}", .0.code, .0.message)]
    Refused(ErrorFields),
    #[error("server did not end idle")]
    NotIdle,
    #[error(transparent)]
    Net(NetError),
}

impl ServerError {
    /// The server's own ErrorResponse, when it refused us with one.
    pub fn server_error(&self) -> Option<&ErrorFields> {
        match self {
            ServerError::Refused(e) | ServerError::Auth(BackendAuthError::Server(e)) => Some(e),
            _ => None,
        }
    }
}

/// Opens a connection and logs in, all within `timeout`.
///
/// # Errors
/// A refused or timed-out connection, or a failed login.
pub async fn connect(
    target: &ServerTarget,
    tls: &TlsTarget,
    timeout: Duration,
    tcp: &crate::net::tcp::TcpOptions,
) -> Result<ServerConn, ServerError> {
    match tokio::time::timeout(timeout, connect_inner(target, tls, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout),
    }
}

async fn connect_inner(
    target: &ServerTarget,
    tls: &TlsTarget,
    tcp: &crate::net::tcp::TcpOptions,
) -> Result<ServerConn, ServerError> {
    let socket = TcpStream::connect(&target.addr)
        .await
        .map_err(|source| ServerError::Connect {
            addr: target.addr.clone(),
            source,
        })?;
    // Small request/response messages: never wait for Nagle.
    let _ = socket.set_nodelay(true);
    tcp.apply(&socket);
    let addr = socket.peer_addr().map_err(|source| ServerError::Connect {
        addr: target.addr.clone(),
        source,
    })?;
    let socket = tls::negotiate(socket, tls).await?;
    let mut stream = MessageStream::new(socket);
    let mut out = BytesMut::new();
    frontend::startup_message(
        &mut out,
        &[("user", &target.user), ("database", &target.dbname)],
    );
    stream.write_all(&out).await?;
    let end_point = stream
        .io
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| tls::binding::end_point_hash(cert));
    login(
        &mut stream,
        &target.user,
        target.secret.as_ref(),
        target.allowed_auth,
        end_point.as_deref(),
    )
    .await?;

    let mut params = Vec::new();
    let mut key = (0, 0);
    loop {
        let (tag, body) = stream.read_message(super::MAX_CONTROL_MESSAGE).await?;
        match tag {
            be::PARAMETER_STATUS => params.extend(be::parse_parameter_status(&body)),
            be::BACKEND_KEY_DATA => key = be::parse_backend_key_data(&body).unwrap_or(key),
            be::ERROR_RESPONSE => {
                return Err(ServerError::Refused(
                    be::parse_error_fields(&body).unwrap_or_default(),
                ))
            }
            be::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    let now = Instant::now();
    Ok(ServerConn {
        stream,
        addr,
        params,
        process_id: key.0,
        secret_key: key.1,
        created: now,
        last_used: now,
        prepared: Default::default(),
        settings: Default::default(),
        broken: false,
        home: crate::worker::current(),
    })
}
