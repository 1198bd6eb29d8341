//! One session's side of statement tracking: its statements, the answers
//! its server owes, and the edits to both streams.

use bytes::BytesMut;

use super::rewrite::{self, Ctx, Outcome};
use super::{ClientStatements, Outstanding, Registry, ServerStatements};
use crate::wire::splice::Splice;

pub struct Tracker {
    statements: ClientStatements,
    queue: Outstanding,
    max: usize,
    since: u64,
    /// Replacement for the message being rewritten.
    repl: BytesMut,
    /// Pending answers pgwarden owes the client.
    answers: BytesMut,
    /// Edits to what goes to the server / to the client.
    pub to_server: Splice,
    pub to_client: Splice,
}

impl Tracker {
    pub fn new(max: usize) -> Self {
        Self {
            statements: ClientStatements::default(),
            queue: Outstanding::default(),
            max,
            since: 0,
            repl: BytesMut::new(),
            answers: BytesMut::new(),
            to_server: Splice::default(),
            to_client: Splice::default(),
        }
    }

    /// A server was attached for a new transaction.
    pub fn attached(&mut self, server: &ServerStatements) {
        self.since = server.now();
    }

    /// True when the server owes nothing this tracker knows of.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// One whole (or, for tags it needs no body of, headed) client message
    /// at `src[start..end]`; edits `to_server` if it is rewritten.
    #[allow(clippy::too_many_arguments)]
    pub fn client_message(
        &mut self,
        registry: &Registry,
        server: &mut ServerStatements,
        tag: u8,
        body: &[u8],
        src: &[u8],
        start: usize,
        end: usize,
    ) {
        self.repl.clear();
        let mut ctx = Ctx {
            registry,
            client: &mut self.statements,
            server,
            queue: &mut self.queue,
            max: self.max,
            since: self.since,
        };
        if rewrite::message(&mut ctx, tag, body, &mut self.repl) == Outcome::Replaced {
            self.to_server.replace(src, start, end, &self.repl);
        }
    }

    /// Answers now due that nothing in flight precedes: sent to the client
    /// right after the client's messages are forwarded.
    pub fn answers_now(&mut self) -> &[u8] {
        self.answers.clear();
        self.queue.take_answers(&mut self.answers);
        &self.answers
    }

    /// A server message starts at `src[at..]` with `tag` and `len` header
    /// bytes (its body is empty when it may be dropped). Inserts answers due
    /// before it, and drops it if pgwarden sent its request.
    pub fn server_message(
        &mut self,
        server: &mut ServerStatements,
        tag: u8,
        src: &[u8],
        at: usize,
        len: usize,
        body_len: usize,
    ) {
        self.answers_due(src, at);
        let keep = self.queue.on_message(tag, server);
        if !keep && body_len == 0 {
            self.to_client.replace(src, at, at + len, &[]);
        }
    }

    /// Inserts at `src[at]` the answers that are due there.
    pub fn answers_due(&mut self, src: &[u8], at: usize) {
        self.answers.clear();
        self.queue.take_answers(&mut self.answers);
        if !self.answers.is_empty() {
            self.to_client.replace(src, at, at, &self.answers);
        }
    }
}
