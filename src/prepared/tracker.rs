//! One session's side of statement tracking: its statements, the answers
//! its server owes, and the edits to both streams.

use std::sync::Arc;

use bytes::BytesMut;

use super::rewrite::{self, Ctx, Outcome};
use super::{
    Action, ClientStatements, Expect, Followed, Outstanding, Registry, ServerStatements, Unnamed,
};
use crate::server::ServerConn;
use crate::sql::statements::{self, Command};
use crate::state::{ClientParams, Effect, InertMemo, ServerParams, Txn};
use crate::wire::backend as be;
use crate::wire::frontend as fe;
use crate::wire::splice::Splice;
use crate::wire::{put_cstr, put_message, take_cstr};

/// The notice for a setting change pgwarden cannot follow.
const NOT_FOLLOWED: &str = "pgwarden cannot follow this change of session settings in \
transaction pooling: it is undone before this session's next transaction";
const NOT_FOLLOWED_HINT: &str = "Use SET, RESET or set_config with constants or parameters, \
outside functions and DO blocks, or pool_mode = session.";

pub struct SessionTracker {
    statements: ClientStatements,
    /// The client's session settings, its statements that change them,
    /// and the changes its open transaction holds.
    params: ClientParams,
    followed: Followed,
    txn: Txn,
    /// The client was told once that a change could not be followed.
    warned: bool,
    /// Why the client keeps its server between transactions.
    pins: u8,
    refuse_pins: bool,
    pooled: bool,
    queue: Outstanding,
    unnamed: Unnamed,
    inert: InertMemo,
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

impl SessionTracker {
    /// `max` is `max_prepared_statements` (0: statements pass through);
    /// `pooled` is false in session mode, where only settings are followed.
    pub fn new<'a>(
        max: usize,
        startup: impl IntoIterator<Item = (&'a str, &'a str)>,
        refuse_pins: bool,
        pooled: bool,
    ) -> Self {
        Self {
            statements: ClientStatements::default(),
            params: ClientParams::from_startup(startup),
            followed: Followed::default(),
            txn: Txn::default(),
            warned: false,
            pins: 0,
            refuse_pins,
            pooled,
            queue: Outstanding::default(),
            unnamed: Unnamed::default(),
            inert: InertMemo::default(),
            max,
            since: 0,
            repl: BytesMut::new(),
            answers: BytesMut::new(),
            to_server: Splice::default(),
            to_client: Splice::default(),
        }
    }

    /// The client's named statement `name`, if it has one.
    pub fn statement(&self, name: &[u8]) -> Option<&std::sync::Arc<super::Statement>> {
        self.statements.get(name)
    }

    /// The client's session settings.
    pub fn params(&self) -> &ClientParams {
        &self.params
    }

    /// `max_prepared_statements` changed live (console `SET`, reload): the
    /// server caches keep to the new size from the next statement prepared.
    /// Turning the feature on or off (0) applies to new clients only: this
    /// client's statements are already carried one way or the other.
    pub fn set_max(&mut self, max: usize) {
        if self.max != 0 && max != 0 {
            self.max = max;
        }
    }

    /// A server was attached for a new transaction. Returns the Query that
    /// makes its session settings the client's, when they differ; its
    /// answers are dropped.
    pub fn attached(&mut self, conn: &mut ServerConn) -> Option<BytesMut> {
        self.since = conn.prepared.now();
        self.txn.reset();
        let (queries, discarded) = conn.settings.sync_to(&mut self.params);
        if queries.is_empty() {
            return None;
        }
        if discarded {
            conn.prepared.clear();
        }
        let mut out = BytesMut::new();
        for sql in queries {
            self.queue
                .push_effect_query(Action::Swallow, Arc::new(Effect::default()));
            put_message(&mut out, fe::QUERY, |b| put_cstr(b, sql.as_bytes()));
        }
        Some(out)
    }

    /// True while a session-only feature ties the client to its server.
    /// (Session mode keeps its server anyway and resets it at the end.)
    pub fn pinned(&self) -> bool {
        self.pooled && self.pins != 0
    }

    /// The session's settings and statements, for an online restart;
    /// `None` when they cannot be carried (see [`ClientStatements::export`]),
    /// or a transaction's changes are still open.
    pub fn export(
        &self,
    ) -> Option<(
        Vec<crate::handoff::Setting>,
        Vec<crate::handoff::HandedStatement>,
    )> {
        if !self.is_idle() || self.pins != 0 {
            return None;
        }
        Some((self.params.export(), self.statements.export()?))
    }

    /// Takes over the settings and statements a session had on the
    /// process it was handed over from.
    pub fn import(
        &mut self,
        registry: &Registry,
        settings: &[crate::handoff::Setting],
        statements: &[crate::handoff::HandedStatement],
    ) {
        self.params.import(settings);
        self.statements.import(registry, statements);
    }

    /// True when a tracker made again from the client's startup parameters
    /// (with the `max_prepared_statements` then in force) would be this
    /// one: no statement, no statement or portal followed for its effects,
    /// no unnamed statement, settings as at startup, nothing open or owed,
    /// no pin, no warning given. A parked client then drops it and has it
    /// made again for its next transaction (about 1.6 KiB per idle client
    /// with what drivers send at startup).
    ///
    /// Not with statements passed through (`max_prepared_statements = 0`
    /// in a pooled mode): turning them on or off applies to new clients
    /// only, and a tracker made again would take the setting of the day.
    pub fn rebuildable(&self) -> bool {
        (self.max != 0 || !self.pooled)
            && self.params.as_at_startup()
            && self.statements.is_empty()
            && self.followed.is_empty()
            && self.unnamed.statement.is_none()
            && self.unnamed.portal.is_none()
            && self.txn.is_settled()
            && self.queue.is_empty()
            && self.answers.is_empty()
            && self.pins == 0
            && !self.warned
    }

    /// True when the server owes nothing this tracker knows of.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when this client message (whole, for the tags in
    /// [`rewrite::WHOLE`]) depends on whether a statement the client is
    /// still creating exists: a Parse or `PREPARE` of the same name is a
    /// duplicate only if that creation succeeds, a `DEALLOCATE` of it fails
    /// only if it fails. It must wait for the server's answer (PostgreSQL
    /// runs them in order; a pipelining client sends them at once).
    pub fn must_wait(&self, tag: u8, body: &[u8]) -> bool {
        if !self.queue.creating_any() {
            return false;
        }
        let text = match tag {
            fe::PARSE => match take_cstr(body) {
                Some((name, _)) if !name.is_empty() => return self.queue.creating(name),
                Some((_, key)) => take_cstr(key).map_or(key, |(q, _)| q),
                None => return false,
            },
            fe::QUERY => body,
            _ => return false,
        };
        match statements::read(text) {
            Some(Command::Prepare { name, .. }) | Some(Command::Deallocate(Some(name))) => {
                self.queue.creating(&name)
            }
            _ => false,
        }
    }

    /// One whole (or, for tags it needs no body of, headed) client message
    /// at `src[start..end]`; edits `to_server` if it is rewritten.
    #[allow(clippy::too_many_arguments)]
    pub fn client_message(
        &mut self,
        registry: &Registry,
        conn: &mut ServerConn,
        tag: u8,
        body: &[u8],
        src: &[u8],
        start: usize,
        end: usize,
    ) {
        if tag == fe::SYNC {
            // What rewrite::message does with it, without making a context.
            self.queue.push(Expect::Sync, Action::Forward, None);
            return;
        }
        self.rewrite(registry, conn, (src, start, end), |ctx, out| {
            rewrite::message(ctx, tag, body, out)
        });
    }

    /// The start of a Bind too large to buffer, at `src[start..end]`:
    /// header and `prefix` (portal and statement names) of a body of
    /// `body_len` bytes whose rest streams through unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn bind_head(
        &mut self,
        registry: &Registry,
        conn: &mut ServerConn,
        prefix: &[u8],
        body_len: usize,
        src: &[u8],
        start: usize,
        end: usize,
    ) {
        self.rewrite(registry, conn, (src, start, end), |ctx, out| {
            rewrite::bind_head(ctx, &src[start..end], prefix, body_len, out)
        });
    }

    /// A message too large to buffer, whose header is at `src[start..end]`:
    /// the server raises 54000 with `message` in its place.
    #[allow(clippy::too_many_arguments)]
    pub fn refuse(
        &mut self,
        registry: &Registry,
        conn: &mut ServerConn,
        tag: u8,
        message: &str,
        src: &[u8],
        start: usize,
        end: usize,
    ) {
        self.rewrite(registry, conn, (src, start, end), |ctx, out| {
            rewrite::refuse_oversized(ctx, tag, message, out)
        });
    }

    /// Runs `f` over this client's rewriting state; what it writes replaces
    /// `src[start..end]` on the way to the server.
    fn rewrite(
        &mut self,
        registry: &Registry,
        conn: &mut ServerConn,
        (src, start, end): (&[u8], usize, usize),
        f: impl FnOnce(&mut Ctx<'_>, &mut BytesMut) -> Outcome,
    ) {
        self.repl.clear();
        let watching = !self.txn.is_empty() || self.queue.has_effects();
        let mut ctx = Ctx {
            registry,
            client: &mut self.statements,
            server: &mut conn.prepared,
            queue: &mut self.queue,
            max: self.max,
            since: self.since,
            settings: &mut conn.settings,
            followed: &mut self.followed,
            watching,
            pins: &mut self.pins,
            refuse_pins: self.refuse_pins,
            pooled: self.pooled,
            unnamed: &mut self.unnamed,
            inert: &mut self.inert,
        };
        if f(&mut ctx, &mut self.repl) == Outcome::Replaced {
            self.to_server.replace(src, start, end, &self.repl);
        }
    }

    /// Answers now due that nothing in flight precedes: sent to the client
    /// right after the client's messages are forwarded.
    pub fn answers_now(&mut self) -> &[u8] {
        self.collect_answers();
        &self.answers
    }

    /// Moves the answers now due from the queue into `answers`.
    #[inline]
    fn collect_answers(&mut self) -> bool {
        self.answers.clear();
        if !self.queue.answer_due() {
            return false;
        }
        self.queue.take_answers(&mut self.answers);
        !self.answers.is_empty()
    }

    /// A server message starts at `src[at..]` with `tag`; `complete` when
    /// `src[at..at + len]` is all of it. Inserts answers due before it,
    /// drops it if pgwarden sent its request, and follows settings changes.
    /// Returns whether the client gets it.
    #[allow(clippy::too_many_arguments)]
    pub fn server_message(
        &mut self,
        server: (&mut ServerStatements, &mut ServerParams),
        tag: u8,
        status: u8,
        src: &[u8],
        at: usize,
        len: usize,
        complete: bool,
    ) -> bool {
        if tag != be::READY_FOR_QUERY && tag != be::ERROR_RESPONSE && self.queue.pass_plain(tag) {
            // Nothing is due before it (the head is not pgwarden's to
            // answer), nothing to drop or retag, no settings change ends.
            return true;
        }
        self.answers_due(src, at);
        let (prepared, settings) = server;
        let seen = self.queue.on_message(tag, prepared);
        if !seen.keep && complete {
            self.to_client.replace(src, at, at + len, &[]);
        } else if let Some(retag) = seen.retag.filter(|_| complete) {
            self.to_client.replace(src, at, at + len, retag.message());
        }
        if let Some(names) = self.queue.take_forgotten() {
            // The server refused what made these names: PostgreSQL would
            // not have them (unless the client has made them again since).
            for (name, id) in names {
                if self.statements.get(&name).is_some_and(|s| s.id == id) {
                    self.statements.remove(&name);
                }
            }
        }
        self.follow(settings, tag, status, complete);
        if seen.keep && tag == be::READY_FOR_QUERY && complete && self.txn.take_lost() {
            // Once per session: the change holds until this transaction
            // ends, and the client's next transaction starts without it.
            if !std::mem::replace(&mut self.warned, true) {
                self.answers.clear();
                be::notice_response(&mut self.answers, NOT_FOLLOWED, Some(NOT_FOLLOWED_HINT));
                self.to_client.replace(src, at, at, &self.answers);
            }
        }
        seen.keep || !complete
    }

    /// Follows the settings a server message tells of: statements that
    /// completed or failed, errors, and the end of a transaction.
    fn follow(&mut self, settings: &mut ServerParams, tag: u8, status: u8, complete: bool) {
        if let Some(done) = self.queue.take_done() {
            for d in done {
                match d.own {
                    // pgwarden's own sync failed: start clean next time.
                    true if d.failed => settings.mark_dirty(),
                    true => {}
                    false => self.txn.done(&d.effect, d.failed),
                }
            }
        }
        match tag {
            be::ERROR_RESPONSE => self.txn.error(),
            be::READY_FOR_QUERY if complete => {
                self.txn.ready(status);
                if status == be::TX_IDLE {
                    self.followed.transaction_ended();
                }
                let mut lost = false;
                if let Some(changes) = self.txn.take_committed() {
                    for change in changes {
                        lost |= !change.is_followed();
                        self.params.apply(&change);
                        settings.apply(&change);
                    }
                }
                if lost {
                    self.txn.mark_lost();
                }
            }
            _ => {}
        }
        if self.txn.peek_lost() {
            // Which changes hold on the server is unknown: wipe it.
            settings.mark_dirty();
        }
    }

    /// True while server messages must be read whole, to be dropped or
    /// retagged.
    pub fn reads_whole(&self) -> bool {
        self.queue.reads_whole()
    }

    /// Inserts at `src[at]` the answers that are due there.
    #[inline]
    pub fn answers_due(&mut self, src: &[u8], at: usize) {
        if self.collect_answers() {
            self.to_client.replace(src, at, at, &self.answers);
        }
    }
}
