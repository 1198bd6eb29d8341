//! One PostgreSQL server connection: opening it, logging in, and the few
//! statements pgwarden runs on it itself (reset, health check, rollback).
//!
//! Owns: the socket to one server and what the server told us at login.
//! Must not: know about clients or pools.

mod connect;
pub mod control;
pub mod statements;

pub use connect::{connect, ConnectOptions, ServerError, ServerTarget};

use crate::clock::Stamp;

use bytes::BytesMut;

use crate::net::{MessageStream, NetError, Stream};
use crate::wire::backend::{self as be, ErrorFields};
use crate::wire::frontend;

/// Cap on messages read whole from a server outside the hot path.
const MAX_CONTROL_MESSAGE: usize = 1 << 20;

/// PgBouncer's `id` of a connection, client or server, in `SHOW CLIENTS`
/// and `SHOW SERVERS` (and `KILL_CLIENT`): one sequence for both, from 1.
pub fn next_connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A logged-in server connection.
pub struct ServerConn {
    /// PgBouncer's connection `id` ([`next_connection_id`]).
    pub id: u64,
    pub stream: MessageStream<Stream>,
    /// Address it is connected to, for cancel requests.
    pub addr: std::net::SocketAddr,
    /// ParameterStatus values reported at login.
    pub params: Vec<(String, String)>,
    /// The server's BackendKeyData, for cancel requests.
    pub process_id: i32,
    pub secret_key: i32,
    pub created: Stamp,
    pub last_used: Stamp,
    /// Named statements pgwarden has prepared here for its clients.
    pub prepared: statements::ServerStatements,
    /// Session settings pgwarden has made here for its clients.
    pub settings: crate::state::ServerParams,
    /// The server sent FATAL or PANIC, or its socket failed: it is closing,
    /// and no path may give it to another client.
    pub broken: bool,
    /// The worker whose reactor watches this socket: lending it to a client
    /// of the same worker keeps the transaction on one thread.
    pub home: u16,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerConn({} pid {})", self.addr, self.process_id)
    }
}

impl ServerConn {
    /// Runs one simple-protocol statement to completion and checks that the
    /// server ends idle (`I`). Results are discarded.
    ///
    /// # Errors
    /// The server's ErrorResponse, a lost connection, or a non-idle end state.
    pub async fn run(&mut self, sql: &str) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        frontend::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        self.finish_until_idle().await
    }

    /// Runs one simple-protocol statement as [`ServerConn::run`] does,
    /// keeping the ParameterStatus values it reports (a `SET` in
    /// `connect_query` changes what clients are greeted with, as in
    /// PgBouncer).
    ///
    /// # Errors
    /// As [`ServerConn::run`].
    pub async fn run_collecting_params(&mut self, sql: &str) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        frontend::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        let mut failure: Option<ErrorFields> = None;
        loop {
            let (tag, body) = self.stream.read_message(MAX_CONTROL_MESSAGE).await?;
            match tag {
                be::PARAMETER_STATUS => {
                    if let Some((name, value)) = be::parse_parameter_status(&body) {
                        match self.params.iter_mut().find(|(n, _)| *n == name) {
                            Some(slot) => slot.1 = value,
                            None => self.params.push((name, value)),
                        }
                    }
                }
                be::ERROR_RESPONSE => failure = self.note_error(&body),
                be::READY_FOR_QUERY => return idle_end(failure, &body),
                _ => {}
            }
        }
    }

    /// Runs one simple-protocol statement and returns the first column of
    /// its first row as text (`None` for no row or NULL).
    ///
    /// # Errors
    /// As [`ServerConn::run`].
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, ServerError> {
        let mut out = BytesMut::new();
        frontend::query(&mut out, sql);
        self.stream.write_all(&out).await?;
        let mut value = None;
        let mut failure: Option<ErrorFields> = None;
        loop {
            let (tag, body) = self.stream.read_message(MAX_CONTROL_MESSAGE).await?;
            match tag {
                be::DATA_ROW if value.is_none() => value = Some(be::first_column(&body)),
                be::ERROR_RESPONSE => failure = self.note_error(&body),
                be::READY_FOR_QUERY => return idle_end(failure, &body).map(|()| value.flatten()),
                _ => {}
            }
        }
    }

    /// Reads and discards server output up to ReadyForQuery, failing on an
    /// error or if the server does not end idle.
    ///
    /// # Errors
    /// As [`ServerConn::run`].
    pub async fn finish_until_idle(&mut self) -> Result<(), ServerError> {
        let mut failure: Option<ErrorFields> = None;
        loop {
            let (tag, body) = self.stream.read_message(MAX_CONTROL_MESSAGE).await?;
            match tag {
                be::ERROR_RESPONSE => failure = self.note_error(&body),
                be::READY_FOR_QUERY => return idle_end(failure, &body),
                _ => {}
            }
        }
    }

    /// Reads an ErrorResponse the server sent; a FATAL or PANIC one means
    /// the server is closing.
    pub fn note_error(&mut self, body: &[u8]) -> Option<ErrorFields> {
        self.broken |= be::ends_session(body);
        be::parse_error_fields(body)
    }

    /// True if the server has sent something or closed while idle: an idle
    /// server speaks only to say it is going away (e.g. after
    /// `pg_terminate_backend`), so either way it must not be used.
    pub fn is_stale(&mut self) -> bool {
        if !self.stream.rbuf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        match self.stream.io.try_read(&mut probe) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }

    /// Closes politely without waiting: a Terminate if the socket takes it now.
    pub fn close(self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let mut io = self.stream.io;
        io.try_send(&out);
    }
}

/// The end of a statement pgwarden ran itself: its error if it failed, else
/// whether the server is idle again (ReadyForQuery's status `body`).
fn idle_end(failure: Option<ErrorFields>, body: &[u8]) -> Result<(), ServerError> {
    if let Some(e) = failure {
        return Err(ServerError::Refused(e));
    }
    match body.first() {
        Some(&be::TX_IDLE) => Ok(()),
        _ => Err(ServerError::NotIdle),
    }
}

impl From<NetError> for ServerError {
    fn from(e: NetError) -> Self {
        ServerError::Net(e)
    }
}
