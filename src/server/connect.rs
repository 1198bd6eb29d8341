//! Opening and logging in to a server connection.

use std::time::Duration;

use bytes::BytesMut;

use super::ServerConn;
use crate::auth::backend::{login, AuthMethods, BackendAuthError, BackendSecret};
use crate::clock::Stamp;
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
    #[error("connect_query failed: {0}")]
    ConnectQuery(Box<ServerError>),
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

/// How to open a connection, beyond where and as whom.
pub struct ConnectOptions<'a> {
    pub tls: &'a TlsTarget,
    /// For the whole of it: connecting, logging in, `connect_query`.
    pub timeout: Duration,
    pub tcp: &'a crate::net::tcp::TcpOptions,
    /// Startup parameters beyond `user` and `database`.
    pub startup: &'a [(String, String)],
    /// Run once logged in, before the connection is handed out.
    pub connect_query: Option<&'a str>,
}

/// Opens a connection and logs in, all within `timeout`.
///
/// # Errors
/// A refused or timed-out connection, a failed login, or a failed
/// `connect_query`.
pub async fn connect(
    target: &ServerTarget,
    options: &ConnectOptions<'_>,
) -> Result<ServerConn, ServerError> {
    let opened = async {
        let mut conn = connect_inner(target, options).await?;
        if let Some(sql) = options.connect_query {
            conn.run_collecting_params(sql)
                .await
                .map_err(|e| ServerError::ConnectQuery(Box::new(e)))?;
        }
        Ok(conn)
    };
    match tokio::time::timeout(options.timeout, opened).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout),
    }
}

async fn connect_inner(
    target: &ServerTarget,
    options: &ConnectOptions<'_>,
) -> Result<ServerConn, ServerError> {
    let (tls, tcp) = (options.tls, options.tcp);
    let socket = crate::net::dns::connect(&target.addr)
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
    let mut params: Vec<(&str, &str)> = vec![("user", &target.user), ("database", &target.dbname)];
    params.extend(
        options
            .startup
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    frontend::startup_message(&mut out, &params);
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
    let now = Stamp::now();
    Ok(ServerConn {
        id: crate::server::next_connection_id(),
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
