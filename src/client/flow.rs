//! The session's protocol state, without I/O: the framing of both
//! directions (one [`Scanner`] each, the `max_packet_size` cap applied in
//! one place), the requests the server still owes a ReadyForQuery for, an
//! extended batch left open, the transaction status, and from those the
//! decisions the I/O loop in `session.rs` carries out: whether the server
//! can go back to the pool now and in which [`Rest`], and in which state a
//! leaving client leaves it.
//!
//! [`Flow::on_client`] (`outbound.rs`) and [`Flow::on_server`]
//! (`inbound.rs`) walk each direction's buffered bytes and answer with a
//! step: how much to forward, what must wait.
//!
//! Owns: those facts. Must not: touch a socket, a pool or a clock; tests
//! feed it byte fixtures.

use crate::config::PoolMode;
use crate::pool::Rest;
use crate::wire::backend as be;
use crate::wire::codec::{checked_len, header_at, FrameError, Scanner};
use crate::wire::frontend as fe;

/// One session's protocol state.
#[derive(Debug)]
pub struct Flow {
    client: Scanner,
    server: Scanner,
    max_packet: usize,
    /// `max_client_buffer`: a message pgwarden must read whole and larger
    /// than this is refused (its bytes dropped as they arrive).
    max_buffer: usize,
    /// The client body streaming through is a refused message's: dropped.
    discarding: bool,
    /// Requests (Query, Sync, FunctionCall) sent and not yet answered by
    /// their ReadyForQuery.
    pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    open_batch: bool,
    /// The last ReadyForQuery's status (`I`, `T` or `E`).
    tx_status: u8,
}

/// What a client message on its way to the server means for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A request the server will answer with ReadyForQuery; `first` when
    /// nothing else was in flight (the start of a busy period).
    Request {
        first: bool,
    },
    /// Part of an extended batch (Parse, Bind, Describe, Execute, Close,
    /// Flush).
    InBatch,
    Other,
}

/// What to do once the server has answered everything in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep the server: a transaction is open, session mode, or the client
    /// is pinned to it.
    Keep,
    /// Give it back in this state.
    Release(Rest),
    /// Statement mode and a transaction was opened: refused, server closed.
    RefuseTransaction,
}

impl Flow {
    /// `max_packet` caps every message both ways; `max_buffer` the
    /// messages pgwarden reads whole.
    pub fn new(max_packet: usize, max_buffer: usize) -> Self {
        Self {
            client: Scanner::new(),
            server: Scanner::new(),
            max_packet,
            max_buffer,
            discarding: false,
            pending: 0,
            open_batch: false,
            tx_status: be::TX_IDLE,
        }
    }

    /// Checks the header of the first client message before a server is
    /// borrowed for it, so that garbage never costs a server.
    ///
    /// # Errors
    /// A message type a logged-in client may not send (a second
    /// StartupMessage too), or a length over the cap.
    pub fn check_client_header(&self, buf: &[u8]) -> Result<(), FrameError> {
        let Some(&tag) = buf.first() else {
            return Ok(());
        };
        if !fe::is_session_message(tag) {
            return Err(FrameError::UnknownType { tag });
        }
        match header_at(buf, 0) {
            Some((tag, len)) => checked_len(tag, len, self.max_packet).map(|_| ()),
            None => Ok(()),
        }
    }

    /// `max_client_buffer`: past it the client is not read from.
    pub fn max_buffer(&self) -> usize {
        self.max_buffer
    }

    /// `max_packet_size`, for the few checks made before scanning.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// The client's bytes are at a message boundary (none half-read).
    pub fn client_at_boundary(&self) -> bool {
        self.client.at_boundary()
    }

    /// The server's bytes are at a message boundary.
    pub fn server_at_boundary(&self) -> bool {
        self.server.at_boundary()
    }

    /// A client message with `tag` is on its way to the server.
    pub fn sent(&mut self, tag: u8) -> Sent {
        match tag {
            fe::QUERY | fe::SYNC | fe::FUNCTION_CALL => {
                let first = self.pending == 0;
                self.pending += 1;
                self.open_batch = false;
                Sent::Request { first }
            }
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE | fe::FLUSH => {
                self.open_batch = true;
                Sent::InBatch
            }
            _ => Sent::Other,
        }
    }

    /// A complete ReadyForQuery with `status` reached the client. Returns
    /// `Some(idle)` when it answered the last request in flight (`idle`:
    /// no transaction is open).
    pub fn ready(&mut self, status: u8) -> Option<bool> {
        self.pending = self.pending.saturating_sub(1);
        self.tx_status = status;
        (self.pending == 0).then_some(status == be::TX_IDLE)
    }

    /// A new server is attached: its stream starts at a message boundary,
    /// outside any transaction.
    pub fn attached(&mut self) {
        self.server = Scanner::new();
        self.tx_status = be::TX_IDLE;
    }

    /// Requests still owed a ReadyForQuery.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// An extended batch is open (messages since the last Sync).
    pub fn mid_batch(&self) -> bool {
        self.open_batch
    }

    /// A transaction (maybe a failed one) is open on the server.
    pub fn in_transaction(&self) -> bool {
        self.tx_status != be::TX_IDLE
    }

    /// Nothing is owed by the server and no message is half-sent in either
    /// direction (the session's rewriting layer may owe more; it is asked
    /// apart).
    pub fn quiet(&self) -> bool {
        self.pending == 0
            && !self.open_batch
            && self.client.at_boundary()
            && self.server.at_boundary()
    }

    /// Once the server is at rest: keep it, give it back, or refuse the
    /// transaction statement mode does not allow. `reset` is
    /// `server_reset_query_always`.
    pub fn next(&self, mode: PoolMode, pinned: bool, reset: bool) -> Next {
        if pinned {
            // LISTEN, a session advisory lock, a temp table...: the client
            // keeps this server until that state is gone.
            return Next::Keep;
        }
        match mode {
            PoolMode::Session => Next::Keep,
            PoolMode::Statement if self.in_transaction() => Next::RefuseTransaction,
            PoolMode::Transaction | PoolMode::Statement if self.in_transaction() => Next::Keep,
            PoolMode::Transaction | PoolMode::Statement => Next::Release(match reset {
                true => Rest::NeedsReset,
                false => Rest::Clean,
            }),
        }
    }

    /// The state a leaving client leaves its server in. `at_rest`: the
    /// server's buffered bytes and the rewriting layer owe nothing either;
    /// `reset`: a reset is wanted (session mode, or
    /// `server_reset_query_always`).
    pub fn left(&self, at_rest: bool, pinned: bool, reset: bool) -> Rest {
        if pinned || !at_rest || !self.quiet() {
            // Its session state, or an answer half-read: nobody may inherit it.
            return Rest::Broken;
        }
        match (self.in_transaction(), reset) {
            (true, _) => Rest::NeedsRollback,
            (false, true) => Rest::NeedsReset,
            (false, false) => Rest::Clean,
        }
    }
}

mod inbound;
mod outbound;
#[cfg(test)]
mod tests;

pub use inbound::{Inbound, ServerStep};
pub use outbound::{ClientStep, Outbound};
