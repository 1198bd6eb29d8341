//! One logged-in client: forwards its messages to a server it borrows from
//! the pool and the server's answers back, without decoding either beyond
//! message headers.
//!
//! A server is lent per transaction (transaction mode), per statement
//! (statement mode) or for the whole session (session mode). It goes back
//! to the pool only at a point where another client can inherit it
//! unchanged: every request answered (each Query, Sync and FunctionCall
//! expects one ReadyForQuery), no extended-protocol batch open, both
//! streams on a message boundary, and the last ReadyForQuery saying idle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use super::flow::{Flow, Next, Sent};
use super::handshake::Login;
use super::route::{starts_with_control, Attached, RouteState};
use super::traffic::{QueryText, Traffic};
use crate::cancel::{forward_cancel, CancelTarget, SessionControl};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::logline::Clean;
use crate::net::{give_buffer, take_buffer, Stream, BUF_SIZE};
use crate::pool::{Rest, ServerGuard};
use crate::prepared::{self, SessionTracker};
use crate::routing::unit::{first_unit, Scan};
use crate::shared::Shared;
use crate::wire::backend::{self as be};
use crate::wire::codec::{header_at, FrameError, Item, Step, TagSet};
use crate::wire::frontend as fe;

/// Server messages the session reads whole: only ReadyForQuery.
/// ReadyForQuery for the transaction state, ErrorResponse for FATAL.
const SERVER_WHOLE: TagSet = TagSet::of(&[be::READY_FOR_QUERY, be::ERROR_RESPONSE]);
/// Client messages the session reads whole: none, headers suffice...
const CLIENT_WHOLE: TagSet = TagSet::EMPTY;
/// ...unless it tracks prepared statements.
const TRACKING_WHOLE: TagSet = TagSet::of(prepared::rewrite::WHOLE);

enum Event {
    Client(std::io::Result<usize>),
    /// The client's socket is readable while no server is attached; nothing
    /// was read yet, so an idle client holds no read buffer.
    ClientReadable,
    Server(std::io::Result<usize>),
    Timer,
    Shutdown,
}

/// How the session ends.
#[derive(Debug)]
enum End {
    /// Close the client's socket with nothing more to say: the client
    /// left, or its stream was cut mid-message (the server was lost while
    /// a message was half-forwarded), where any message would corrupt it.
    Close,
    /// Tell the client why, then close.
    Error(ProxyError),
}

pub struct Session {
    client: Stream,
    cbuf: BytesMut,
    server: Option<ServerGuard>,
    /// Framing both ways, requests owed, batch and transaction state.
    flow: Flow,
    /// When the oldest unanswered request went out (for `query_timeout`).
    request_since: Option<Instant>,
    cancel_sent: bool,
    /// Last time either side sent something; kept only when a timeout needs it.
    last_activity: Instant,
    /// The timer for the nearest timeout, made on first need and then reset
    /// rather than rebuilt (boxed: most sessions never need one).
    timer: Option<Pin<Box<Sleep>>>,
    /// Named prepared statements (transaction and statement mode), made
    /// at the first transaction so that clients that never run one pay
    /// nothing.
    tracker: Option<Box<SessionTracker>>,
    /// This client is counted in its pool's pinned clients.
    pin_counted: bool,
    /// Client bytes wait in `cbuf` for the replica to answer the unit
    /// before them (or for the next transaction's routing).
    held: bool,
    /// A server is attached but the client's request is not written to it
    /// yet: cancels are not forwarded to it until it is.
    unassigned: bool,
    /// Requests, bytes and times for `SHOW STATS`.
    traffic: Traffic,
    /// Read/write routing, for databases with replicas (boxed: made at the
    /// first transaction, absent otherwise).
    route: Option<Box<RouteState>>,
    login: Login,
    shared: Arc<Shared>,
    /// `max_client_buffer`: past it the client is not read from, and a
    /// message needed whole is refused.
    max_buffer: usize,
    /// How many clients may buffer past their first 64 KiB at once
    /// (`max_total_client_buffer / max_client_buffer`), whether this one
    /// does, and its bytes past them.
    max_holders: usize,
    holding: bool,
    charged: usize,
    /// The body streaming through is a refused message's: dropped.
    discarding: bool,
    timeouts: Timeouts,
}

/// The session's timeouts in milliseconds, 0 for off (kept compact: every
/// idle client carries a copy).
#[derive(Clone, Copy)]
struct Timeouts {
    query_ms: u32,
    idle_transaction_ms: u32,
    client_idle_ms: u32,
    reset_always: bool,
}

impl Timeouts {
    fn query(&self) -> Option<Duration> {
        from_ms(self.query_ms)
    }

    fn idle_transaction(&self) -> Option<Duration> {
        from_ms(self.idle_transaction_ms)
    }

    fn client_idle(&self) -> Option<Duration> {
        from_ms(self.client_idle_ms)
    }

    fn tracks_activity(&self) -> bool {
        self.query_ms | self.idle_transaction_ms | self.client_idle_ms != 0
    }
}

fn to_ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

fn from_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

impl Session {
    pub fn new(client: Stream, cbuf: BytesMut, mut login: Login, shared: Arc<Shared>) -> Box<Self> {
        let cfg = shared.config.load();
        let p = &cfg.config.proxy;
        let timeouts = Timeouts {
            query_ms: to_ms(p.query_timeout.enabled()),
            idle_transaction_ms: to_ms(p.idle_transaction_timeout.enabled()),
            client_idle_ms: to_ms(p.client_idle_timeout.enabled()),
            reset_always: p.server_reset_query_always,
        };
        let max_packet = p.max_packet_size;
        let max_buffer = p.max_client_buffer;
        let max_holders = (p.max_total_client_buffer / p.max_client_buffer.max(1)).max(1);
        drop(cfg);
        login
            .pool
            .stats
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(Self {
            client,
            cbuf,
            server: None,
            flow: Flow::new(max_packet),
            request_since: None,
            cancel_sent: false,
            last_activity: Instant::now(),
            timer: None,
            tracker: None,
            pin_counted: false,
            held: false,
            unassigned: false,
            route: login.route.take(),
            traffic: Traffic::default(),
            login,
            shared,
            max_buffer,
            max_holders,
            holding: false,
            charged: 0,
            discarding: false,
            timeouts,
        })
    }

    /// Serves the client until it leaves or an error ends the session.
    ///
    /// Boxed so that the task's future holds one pointer to the session
    /// rather than (as an owned `self` would be) two copies of it.
    pub async fn run(mut self: Box<Self>) {
        let end = self.serve().await;
        // Boxed: the ending is rare, and its futures would otherwise
        // enlarge every session's task for its whole life.
        Box::pin(self.finish(end)).await;
    }

    /// Tells the client why it is being let go, then leaves the server clean.
    async fn finish(&mut self, end: End) {
        if let End::Error(e) = end {
            self.shared.errors.count(&e);
            let error = e.to_string();
            tracing::debug!(pool = %self.login.pool.key, kind = e.kind(), "session ended: {}", Clean(&error));
            let mut out = BytesMut::new();
            e.encode(&mut out);
            let _ = self.client.send(&out).await;
        }
        self.cleanup().await;
    }

    async fn serve(&mut self) -> End {
        if self.shared.is_stopping() {
            return End::Error(ProxyError::Shutdown);
        }
        self.shed_idle_buffer();
        if !self.cbuf.is_empty() {
            if let Err(end) = self.on_client_data().await {
                return end;
            }
        }
        loop {
            let event = self.next_event().await;
            let step = match event {
                Event::Client(Ok(0)) | Event::Client(Err(_)) => return End::Close,
                Event::Client(Ok(_)) => self.on_client_data().await,
                Event::ClientReadable => match self.read_idle_client().await {
                    Some(Ok(0)) | Some(Err(_)) => return End::Close,
                    Some(Ok(_)) => self.on_client_data().await,
                    None => Ok(()),
                },
                Event::Server(Ok(0)) | Event::Server(Err(_)) => self.on_server_lost(),
                Event::Server(Ok(_)) => match self.on_server_data().await {
                    Ok(()) if self.held && self.flow.pending() == 0 => {
                        self.held = false;
                        self.on_client_data().await
                    }
                    other => other,
                },
                Event::Timer => self.on_timer().await,
                Event::Shutdown => Err(End::Error(ProxyError::Shutdown)),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Waits for the next thing to act on. One `poll_fn` over the sockets,
    /// the stop signal and the timer, rather than a `select!` of futures:
    /// it stores nothing, which keeps every session's task small.
    async fn next_event(&mut self) -> Event {
        let may_read = self.charge_buffer();
        let mut deadline = self.next_deadline();
        if !may_read {
            // Read again once others have drained: look every few ms.
            let retry = Instant::now() + BUFFER_RETRY;
            deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
        }
        let mut timer = arm(&mut self.timer, deadline);
        if let Some(guard) = self.server.as_mut() {
            reserve(&mut self.cbuf);
            reserve(&mut guard.conn().stream.rbuf);
        }
        // Past max_client_buffer the client waits (TCP pushes back) until
        // what is buffered has gone to the server.
        let read_client = may_read && self.cbuf.len() < self.max_buffer;
        let (server, client, cbuf) = (&mut self.server, &mut self.client, &mut self.cbuf);
        let control = &self.login.registration.control;
        std::future::poll_fn(|cx| {
            match server.as_mut() {
                Some(guard) => {
                    let stream = &mut guard.conn().stream;
                    if let Poll::Ready(r) =
                        poll_read_buf(Pin::new(&mut stream.io), cx, &mut stream.rbuf)
                    {
                        return Poll::Ready(Event::Server(r));
                    }
                    if read_client {
                        if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut *client), cx, cbuf) {
                            return Poll::Ready(Event::Client(r));
                        }
                    }
                }
                None => {
                    // The socket's own reader slot: no buffer held while idle.
                    if let Poll::Ready(r) = client.poll_read_ready(cx) {
                        return Poll::Ready(match r {
                            Ok(()) => Event::ClientReadable,
                            Err(e) => Event::Client(Err(e)),
                        });
                    }
                    if control.poll_stop(cx).is_ready() {
                        return Poll::Ready(Event::Shutdown);
                    }
                }
            }
            match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Event::Timer),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Keeps the buffering across all clients bounded: past its first
    /// [`SHARED_FROM`] bytes a client needs one of `max_holders` places
    /// (each allows up to `max_client_buffer`), and is not read until it has
    /// one. A holder is never held back, so holders always finish their
    /// message and give their place up: no one waits on a waiter.
    fn charge_buffer(&mut self) -> bool {
        let over = self.cbuf.len() >= SHARED_FROM;
        let holders = &self.shared.buffer_holders;
        if over && !self.holding {
            let taken = holders.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_holders).then_some(n + 1)
            });
            if taken.is_err() {
                return false;
            }
            self.holding = true;
        } else if !over && self.holding {
            holders.fetch_sub(1, Ordering::AcqRel);
            self.holding = false;
        }
        // For SHOW MEM-like accounting and tests: bytes past the first ones.
        let want = self.cbuf.len().saturating_sub(SHARED_FROM);
        let total = &self.shared.client_buffered;
        if want > self.charged {
            total.fetch_add(want - self.charged, Ordering::Relaxed);
        } else if want < self.charged {
            total.fetch_sub(self.charged - want, Ordering::Relaxed);
        }
        self.charged = want;
        true
    }

    /// Reads what an idle client sent; `None` if the readiness was spurious.
    ///
    /// Reads through `poll_read` rather than `try_read` so that a short read
    /// clears the socket's readiness: the next poll of the client while the
    /// server works is then free instead of a `recv` that finds nothing.
    async fn read_idle_client(&mut self) -> Option<std::io::Result<usize>> {
        reserve(&mut self.cbuf);
        let (client, buf) = (&mut self.client, &mut self.cbuf);
        let r = std::future::poll_fn(|cx| match poll_read_buf(Pin::new(&mut *client), cx, buf) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if r.is_none() {
            self.shed_idle_buffer();
        }
        r
    }

    /// Gives the client's read buffer back while it has no server, so that
    /// thousands of idle clients cost only their task.
    fn shed_idle_buffer(&mut self) {
        if self.cbuf.is_empty() && self.flow.client_at_boundary() && self.cbuf.capacity() > 0 {
            give_buffer(std::mem::take(&mut self.cbuf));
        }
    }

    /// Notes activity, for the timeouts that measure idleness.
    fn touch(&mut self) {
        if self.timeouts.tracks_activity() {
            self.last_activity = Instant::now();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let t = &self.timeouts;
        if self.server.is_none() {
            return t.client_idle().map(|d| self.last_activity + d);
        }
        if self.flow.pending() > 0 {
            if self.cancel_sent {
                return None;
            }
            return t
                .query()
                .zip(self.request_since)
                .map(|(d, since)| since + d);
        }
        if self.flow.in_transaction() {
            return t.idle_transaction().map(|d| self.last_activity + d);
        }
        None
    }

    async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.next_deadline().is_none_or(|d| now < d) {
            return Ok(());
        }
        if self.server.is_none() {
            return Err(End::Error(ProxyError::ClientIdleTimeout));
        }
        if self.flow.pending() > 0 {
            // query_timeout: let the server cancel the statement; its own
            // 57014 error then reaches the client and the session goes on.
            self.cancel_sent = true;
            let control = self.login.registration.control.clone();
            tokio::spawn(async move { forward_cancel(&control).await });
            return Ok(());
        }
        // Idle in a transaction for too long: the server is closed, which
        // rolls the transaction back.
        if let Some(guard) = self.detach() {
            guard.close();
        }
        Err(End::Error(ProxyError::IdleTransactionTimeout))
    }

    /// Forwards what the client sent, borrowing a server first if needed.
    async fn on_client_data(&mut self) -> Result<(), End> {
        self.touch();
        self.check_pinned_region()?;
        if self.server.is_none() {
            // Garbage never costs a server.
            self.flow
                .check_client_header(&self.cbuf)
                .map_err(protocol_error)?;
        }
        // Rewriting statements needs to know the server's statements, so
        // the server comes first (unless the client is only saying goodbye).
        while self.server.is_none() && self.cbuf.first().is_some_and(|&t| t != fe::TERMINATE) {
            if !self.attach().await? {
                // Not all of the unit has arrived, or it was refused and
                // answered: nothing to forward yet.
                if self.cbuf.is_empty() || self.held {
                    return Ok(());
                }
            }
        }
        self.held = false;
        let (forward, terminate) = self.scan_client().map_err(protocol_error)?;
        if forward > 0 {
            if let Some(guard) = self.server.as_mut() {
                guard.mark_used();
                let bytes = match self.tracker.as_mut() {
                    Some(t) => t.to_server.finish(&self.cbuf, forward),
                    None => &self.cbuf[..forward],
                };
                self.traffic.received(bytes.len());
                if guard.conn().stream.io.send(bytes).await.is_err() {
                    self.cbuf.advance(forward);
                    return self.on_server_lost();
                }
                if std::mem::take(&mut self.unassigned) {
                    let control = &self.login.registration.control;
                    if control.assign(CancelTarget::of(guard.conn())) {
                        // Cancelled between taking the server and sending
                        // the request: the request is there now.
                        let control = control.clone();
                        tokio::spawn(async move { forward_cancel(&control).await });
                    }
                }
            }
            self.cbuf.advance(forward);
        }
        if let Some(t) = self.tracker.as_mut() {
            let answers = t.answers_now();
            if !answers.is_empty() && self.client.send(answers).await.is_err() {
                return Err(End::Close);
            }
        }
        if terminate {
            return Err(End::Close);
        }
        Ok(())
    }

    /// Walks the client's buffered bytes; returns how many to forward and
    /// whether a Terminate ends them.
    fn scan_client(&mut self) -> Result<(usize, bool), FrameError> {
        let whole = match self.tracker {
            Some(_) => &TRACKING_WHOLE,
            None => &CLIENT_WHOLE,
        };
        let on_replica = self.route.as_ref().is_some_and(|r| r.on_replica);
        let mut pos = 0;
        loop {
            if on_replica && self.flow.pending() > 0 && self.flow.client_at_boundary() {
                // A replica gets one unit at a time: the next may be a
                // write, or end the read-only transaction, and then belongs
                // on the primary.
                self.held = pos < self.cbuf.len();
                return Ok((pos, false));
            }
            if self.flow.pending() > 0
                && !self.flow.mid_batch()
                && self.route.is_some()
                && self.flow.client_at_boundary()
                && starts_with_control(&self.cbuf[pos..])
            {
                self.held = true;
                return Ok((pos, false));
            }
            if self.flow.client_at_boundary() {
                match self.large_message(pos, whole)? {
                    Large::No => {}
                    Large::NeedMore(n) => {
                        grow_for(&mut self.cbuf, pos + n);
                        return Ok((pos, false));
                    }
                    Large::Head { tag, used } => {
                        self.note_sent(tag);
                        pos += used;
                        continue;
                    }
                }
            }
            let (tag, body, used) = match self.flow.next_client(&self.cbuf[pos..], whole)? {
                Step::Item(Item::Header { tag, .. }, used) => (tag, &[][..], used),
                Step::Item(Item::Message { tag, body }, used) => (tag, body, used),
                Step::Item(Item::Body(_), used) => {
                    if self.discarding {
                        if let Some(t) = self.tracker.as_mut() {
                            t.to_server.replace(&self.cbuf, pos, pos + used, &[]);
                        }
                        self.discarding = !self.flow.client_at_boundary();
                    }
                    pos += used;
                    continue;
                }
                Step::NeedMore(n) => {
                    grow_for(&mut self.cbuf, pos + n);
                    return Ok((pos, false));
                }
            };
            if tag == fe::TERMINATE {
                return Ok((pos, true));
            }
            if !fe::is_session_message(tag) {
                // Also a StartupMessage sent again (its first byte is 0).
                return Err(FrameError::UnknownType { tag });
            }
            if let (Some(t), Some(g)) = (self.tracker.as_mut(), self.server.as_mut()) {
                if !self.flow.mid_batch() && t.must_wait(tag, body) {
                    // Resumed when the server has answered what is in flight
                    // (all of it ends in a Sync or Query: it will answer).
                    // Within one batch the server's skip-to-Sync already
                    // orders a Parse after a failed one.
                    self.held = true;
                    return Ok((pos, false));
                }
                t.client_message(
                    &self.shared.statements,
                    g.conn(),
                    tag,
                    body,
                    &self.cbuf,
                    pos,
                    pos + used,
                );
            }
            if self.shared.queries.enabled() {
                if let Some(sql) = query_text(tag, body, self.tracker.as_deref()) {
                    self.traffic.query(&self.shared.queries, sql);
                }
            }
            self.note_sent(tag);
            pos += used;
        }
    }

    /// Bookkeeping for a client message on its way: requests the server
    /// will answer with ReadyForQuery, and extended batches left open.
    fn note_sent(&mut self, tag: u8) {
        if let Sent::Request { first } = self.flow.sent(tag) {
            if let Some(r) = self.route.as_mut() {
                r.requested();
            }
            self.traffic.request(first);
            if first && self.timeouts.query_ms != 0 {
                self.request_since = Some(self.last_activity);
                self.cancel_sent = false;
            }
        }
    }

    /// A message at `cbuf[pos..]` too large to buffer: a Bind over
    /// [`STREAM_BIND_AT`] streams once its statement name has arrived (only
    /// that is rewritten); any other message pgwarden must read whole is,
    /// past `max_client_buffer`, answered with 54000 by the server in its
    /// place (so that the transaction fails as PostgreSQL's would) while its
    /// bytes are read and dropped: the session goes on.
    fn large_message(&mut self, pos: usize, whole: &TagSet) -> Result<Large, FrameError> {
        let Some((tag, len)) = header_at(&self.cbuf, pos) else {
            return Ok(Large::No);
        };
        let len = len as usize;
        let body_len = len.saturating_sub(4);
        if !whole.contains(tag) || len > self.flow.max_packet() {
            return Ok(Large::No);
        }
        let over = body_len > self.max_buffer;
        if tag != fe::BIND && !over || tag == fe::BIND && body_len <= STREAM_BIND_AT {
            return Ok(Large::No);
        }
        let (Some(t), Some(g)) = (self.tracker.as_mut(), self.server.as_mut()) else {
            return Err(FrameError::OverBuffer {
                tag,
                len,
                max: self.max_buffer,
            });
        };
        if tag != fe::BIND {
            let why = FrameError::OverBuffer {
                tag,
                len,
                max: self.max_buffer,
            };
            let registry = &self.shared.statements;
            t.refuse(
                registry,
                g.conn(),
                tag,
                &why.to_string(),
                &self.cbuf,
                pos,
                pos + 5,
            );
            self.flow.stream_client(body_len);
            self.discarding = true;
            return Ok(Large::Head { tag, used: 5 });
        }
        let body = &self.cbuf[pos + 5..];
        let Some(prefix_len) = bind_prefix_len(&body[..body.len().min(body_len)]) else {
            if body.len() >= MAX_BIND_PREFIX {
                return Err(FrameError::BadLength {
                    tag,
                    len: len as u32,
                });
            }
            return Ok(Large::NeedMore(5 + MAX_BIND_PREFIX.min(body_len)));
        };
        let end = pos + 5 + prefix_len;
        t.bind_head(
            &self.shared.statements,
            g.conn(),
            &body[..prefix_len],
            body_len,
            &self.cbuf,
            pos,
            end,
        );
        self.flow.stream_client(body_len - prefix_len);
        Ok(Large::Head {
            tag,
            used: 5 + prefix_len,
        })
    }

    /// Borrows a server for the next transaction (or the session). False
    /// when none was attached: the unit must wait for more bytes
    /// (`held` set), or was refused and answered (and dropped from `cbuf`).
    async fn attach(&mut self) -> Result<bool, End> {
        let control = self.login.registration.control.clone();
        control.begin_wait();
        let attached = self.attach_or_wait(&control).await;
        if !matches!(attached, Ok(true)) {
            control.end_wait();
        }
        attached
    }

    async fn attach_or_wait(&mut self, control: &Arc<SessionControl>) -> Result<bool, End> {
        if self.shared.gates.is_paused(&self.login.database) {
            // PAUSE: the transaction starts once the database is resumed.
            let open = self.shared.gates.wait_open(&self.login.database);
            if control.unless_cancelled(Box::pin(open)).await.is_none() {
                return self.answer_cancelled().await;
            }
        }
        self.ensure_tracker();
        if let Some(state) = self.route.as_mut() {
            let Some(tracker) = self.tracker.as_deref() else {
                return Err(End::Error(ProxyError::Internal));
            };
            let loaded = self.shared.config.load_full();
            let attached = state.attach(&self.cbuf, tracker, &loaded, &self.shared.audit, control);
            return match Box::pin(attached).await {
                Attached::Server(guard) if control.take_cancelled() => {
                    drop(guard);
                    self.answer_cancelled().await
                }
                Attached::Server(guard) => self.adopt(guard).await.map(|()| true),
                Attached::Wait => {
                    self.held = true;
                    Ok(false)
                }
                Attached::Answered(out, len) => self.answer_unit(&out, len).await,
                Attached::Refused(e, Some(len)) => self.answer_error(e, len).await,
                Attached::Refused(e, None) => Err(End::Error(e)),
            };
        }
        let pool = &self.login.pool;
        let guard = match pool.try_checkout() {
            Some(guard) => guard,
            // Boxed: waiting in line or opening a server is the rare path,
            // and its futures would otherwise enlarge every session's task.
            None => match control.unless_cancelled(Box::pin(pool.checkout())).await {
                Some(r) => r.map_err(|e| End::Error(ProxyError::from_pool(e, &pool.key.user)))?,
                None => return self.answer_cancelled().await,
            },
        };
        if control.take_cancelled() {
            drop(guard);
            return self.answer_cancelled().await;
        }
        self.adopt(guard).await.map(|()| true)
    }

    /// A cancel request ended the wait for a server: the request at the
    /// start of `cbuf` is dropped and answered as PostgreSQL answers a
    /// cancelled statement. A request not all received yet keeps waiting.
    async fn answer_cancelled(&mut self) -> Result<bool, End> {
        match first_unit(&self.cbuf, usize::MAX, &[], |_| None) {
            Scan::Unit { len: Some(len), .. } => {
                self.answer_error(ProxyError::Cancelled, len).await
            }
            _ => {
                self.held = true;
                Ok(false)
            }
        }
    }

    /// Skips the unit of `len` bytes and answers it with `e` as PostgreSQL
    /// answers a failed one; the session goes on.
    async fn answer_error(&mut self, e: ProxyError, len: usize) -> Result<bool, End> {
        self.shared.errors.count(&e);
        let mut out = BytesMut::new();
        e.encode(&mut out);
        be::ready_for_query(&mut out, be::TX_IDLE);
        self.answer_unit(&out, len).await
    }

    /// Drops the unit of `len` bytes pgwarden answered itself, sending `out`.
    async fn answer_unit(&mut self, out: &[u8], len: usize) -> Result<bool, End> {
        self.cbuf.advance(len.min(self.cbuf.len()));
        if self.client.send(out).await.is_err() {
            return Err(End::Close);
        }
        Ok(false)
    }

    /// The tracker follows settings in every mode, and statements when
    /// pooled, with the `max_prepared_statements` in force now.
    fn ensure_tracker(&mut self) {
        let max = self
            .shared
            .config
            .load()
            .config
            .proxy
            .max_prepared_statements;
        let login = &self.login;
        self.tracker
            .get_or_insert_with(|| {
                let pooled = login.mode != PoolMode::Session;
                let refuse = login.pool.settings().refuse_session_features;
                Box::new(SessionTracker::new(max, &login.params, refuse, pooled))
            })
            .set_max(max);
    }

    /// Makes a borrowed server this session's: cancel target, settings.
    async fn adopt(&mut self, mut guard: ServerGuard) -> Result<(), End> {
        self.unassigned = true;
        if let Some(tracker) = self.tracker.as_mut() {
            if let Some(sync) = tracker.attached(guard.conn()) {
                // The client's settings go first; their answers are dropped.
                guard.mark_used();
                if guard.conn().stream.io.send(&sync).await.is_err() {
                    self.server = Some(guard);
                    return self.on_server_lost();
                }
            }
        }
        self.flow.attached();
        self.server = Some(guard);
        Ok(())
    }

    /// Takes the server from the session (to give back or close it).
    fn detach(&mut self) -> Option<ServerGuard> {
        if let Some(r) = self.route.as_mut() {
            r.detached();
        }
        self.server.take()
    }

    /// Forwards what the server sent and gives the server back when safe.
    async fn on_server_data(&mut self) -> Result<(), End> {
        self.touch();
        let Some(guard) = self.server.as_mut() else {
            return Ok(());
        };
        let conn = guard.conn();
        let rbuf = &mut conn.stream.rbuf;
        let mut tracker = self.tracker.as_deref_mut();
        // All requests answered in this read: Some(whether no transaction is open).
        let mut answered = None;
        let mut pos = 0;
        loop {
            // pgwarden's own queries are answered in small messages, read
            // whole so that they can be dropped.
            let whole = match tracker.as_ref() {
                Some(t) if t.reads_whole() => &TagSet::ALL,
                _ => &SERVER_WHOLE,
            };
            let (tag, body, used, complete) = match self.flow.next_server(&rbuf[pos..], whole) {
                Ok(Step::Item(Item::Message { tag, body }, used)) => (tag, body, used, true),
                Ok(Step::Item(Item::Header { tag, body_len }, used)) => {
                    (tag, &[][..], used, body_len == 0)
                }
                Ok(Step::Item(Item::Body(_), used)) => {
                    pos += used;
                    continue;
                }
                Ok(Step::NeedMore(n)) => {
                    if let Some(t) = tracker.as_mut().filter(|_| self.flow.server_at_boundary()) {
                        t.answers_due(rbuf, pos);
                    }
                    grow_for(rbuf, pos + n);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "server sent a malformed message");
                    if let Some(guard) = self.detach() {
                        guard.close();
                    }
                    return Err(End::Error(ProxyError::ServerLost));
                }
            };
            let status = match tag {
                be::READY_FOR_QUERY => body.first().copied().unwrap_or(be::TX_IDLE),
                be::ERROR_RESPONSE if complete => {
                    // A FATAL one: the server is going away, whoever holds it.
                    conn.broken |= be::ends_session(body);
                    0
                }
                _ => 0,
            };
            let keep = match tracker.as_mut() {
                Some(t) => t.server_message(
                    (&mut conn.prepared, &mut conn.settings),
                    tag,
                    status,
                    rbuf,
                    pos,
                    used,
                    complete,
                ),
                None => true,
            };
            if tag == be::READY_FOR_QUERY && complete && keep {
                if let Some(idle) = self.flow.ready(status) {
                    self.request_since = None;
                    answered = Some(idle);
                }
            }
            pos += used;
        }
        if pos > 0 {
            let bytes = match tracker {
                Some(t) => t.to_client.finish(rbuf, pos),
                None => &rbuf[..pos],
            };
            self.traffic.sent(bytes.len());
            if self.client.send(bytes).await.is_err() {
                rbuf.advance(pos);
                return Err(End::Close);
            }
            rbuf.advance(pos);
        }
        if let Some(idle) = answered {
            let latency = self.server.as_ref().map(|g| &g.pool().stats.latency);
            let latency = latency.unwrap_or(&self.login.pool.stats.latency);
            let queries = &self.shared.queries;
            self.traffic
                .answered(idle, &self.login.pool.stats, latency, queries);
        }
        self.after_server_data().await
    }

    async fn after_server_data(&mut self) -> Result<(), End> {
        if !self.at_rest() {
            return Ok(());
        }
        let pinned = self.tracker.as_ref().is_some_and(|t| t.pinned());
        self.count_pinned(pinned);
        match self
            .flow
            .next(self.login.mode, pinned, self.timeouts.reset_always)
        {
            Next::Keep => Ok(()),
            Next::RefuseTransaction => {
                if let Some(guard) = self.detach() {
                    guard.close();
                }
                Err(End::Error(ProxyError::TransactionInStatementMode))
            }
            Next::Release(rest) => {
                self.release(rest).await;
                self.shed_idle_buffer();
                if self.shared.is_stopping() {
                    return Err(End::Error(ProxyError::Shutdown));
                }
                Ok(())
            }
        }
    }

    /// A pinned session starting a transaction on a node a reload took
    /// from its tenant ends (its session state cannot move) rather than
    /// being served there.
    fn check_pinned_region(&mut self) -> Result<(), End> {
        if !self.pin_counted || self.flow.in_transaction() || !self.streams_quiet() {
            return Ok(());
        }
        let Some(r) = self.route.as_mut() else {
            return Ok(());
        };
        let loaded = self.shared.config.load();
        if r.still_allowed(&loaded, &self.shared.audit) {
            return Ok(());
        }
        let e = r.lost_region(&self.shared.audit);
        if let Some(guard) = self.detach() {
            guard.close();
        }
        Err(End::Error(e))
    }

    /// Keeps the pool's count of pinned clients.
    fn count_pinned(&mut self, pinned: bool) {
        if pinned != self.pin_counted {
            self.pin_counted = pinned;
            let n = &self.login.pool.stats.pinned;
            if pinned {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                n.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// True when the server owes nothing and no message is half-sent either way.
    fn at_rest(&mut self) -> bool {
        let server_drained = match self.server.as_mut() {
            Some(g) => g.conn().stream.rbuf.is_empty(),
            None => true,
        };
        self.streams_quiet() && server_drained
    }

    /// Nothing owed by the server and no message half-sent in either direction.
    fn streams_quiet(&self) -> bool {
        self.flow.quiet() && self.tracker.as_ref().is_none_or(|t| t.is_idle())
    }

    /// Gives the server back to the pool at the end of a transaction, in
    /// the state the flow says.
    async fn release(&mut self, mut rest: Rest) {
        let Some(mut guard) = self.detach() else {
            return;
        };
        let cancels = self.login.registration.control.unassign();
        if let Some(r) = self.route.as_mut().filter(|r| r.fetch_lsn) {
            if !Box::pin(r.record_write(&mut guard)).await {
                rest = Rest::Broken;
            }
        }
        let reset = self.timeouts.reset_always;
        self.give_back(guard, rest, reset, cancels).await;
    }

    /// Checks the server in as `rest` (with `server_reset_query` when
    /// `reset`), once every cancel forwarded to it has been answered: one
    /// landing later would hit the next client's query.
    async fn give_back(&self, guard: ServerGuard, rest: Rest, reset: bool, cancels: bool) {
        let wants_query = reset && matches!(rest, Rest::NeedsReset | Rest::NeedsRollback);
        let config = wants_query.then(|| self.shared.config.load_full());
        let reset_query = config
            .as_ref()
            .map_or("", |c| c.config.proxy.server_reset_query.as_str());
        if !cancels || rest == Rest::Broken {
            if let Some(tidy) = guard.check_in(rest, reset_query) {
                // Boxed: rare, and it would enlarge every session's future.
                Box::pin(tidy.run()).await;
            }
            return;
        }
        let control = self.login.registration.control.clone();
        let reset_query = reset_query.to_owned();
        tokio::spawn(async move {
            if !control.cancels_answered().await {
                return guard.close();
            }
            if let Some(tidy) = guard.check_in(rest, &reset_query) {
                tidy.run().await;
            }
        });
    }

    fn on_server_lost(&mut self) -> Result<(), End> {
        if let Some(mut guard) = self.detach() {
            guard.conn().broken = true;
            guard.close();
        }
        tracing::info!(pool = %self.login.pool.key, "server connection lost mid-session");
        if self.flow.server_at_boundary() {
            Err(End::Error(ProxyError::ServerLost))
        } else {
            // Mid-message: anything more would corrupt the client's stream.
            Err(End::Close)
        }
    }

    /// After the client is gone: leave the server clean for the next client,
    /// or close it. A transaction left open is rolled back; a server still
    /// busy with a request is closed (PostgreSQL then aborts it).
    async fn cleanup(&mut self) {
        self.count_pinned(false);
        let Some(mut guard) = self.detach() else {
            return;
        };
        let cancels = self.login.registration.control.unassign();
        let pinned = self.tracker.as_ref().is_some_and(|t| t.pinned());
        let at_rest = self.at_rest_without(&mut guard);
        // A session mode server, or any with reset_always, is reset.
        let reset = self.login.mode == PoolMode::Session || self.timeouts.reset_always;
        let rest = self.flow.left(at_rest, pinned, reset);
        if rest == Rest::Broken && !pinned && self.flow.pending() > 0 {
            // A busy backend does not notice its socket closing until the
            // statement ends (pg_sleep, a long scan), holding its locks
            // until then; cancel it so it aborts now.
            let target = CancelTarget::of(guard.conn());
            let registry = self.shared.cancels.clone();
            tokio::spawn(async move { registry.cancel_target(&target).await });
        }
        self.give_back(guard, rest, reset, cancels).await;
    }

    /// The server's buffered answers and the rewriting layer owe nothing
    /// (the flow's own state is asked apart).
    fn at_rest_without(&self, guard: &mut ServerGuard) -> bool {
        self.tracker.as_ref().is_none_or(|t| t.is_idle()) && guard.conn().stream.rbuf.is_empty()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let total = &self.shared.client_buffered;
        total.fetch_sub(self.charged, Ordering::Relaxed);
        if self.holding {
            self.shared.buffer_holders.fetch_sub(1, Ordering::AcqRel);
        }
        self.traffic.flush(&self.login.pool.stats);
        let clients = &self.login.pool.stats.clients;
        clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The SQL a client message runs or prepares, for `SHOW QUERIES`.
fn query_text<'a>(
    tag: u8,
    body: &'a [u8],
    tracker: Option<&'a SessionTracker>,
) -> Option<QueryText<'a>> {
    let cstr = |b: &'a [u8]| {
        b.iter()
            .position(|&c| c == 0)
            .map(|end| (&b[..end], &b[end + 1..]))
    };
    match tag {
        fe::QUERY => cstr(body).map(|(sql, _)| QueryText::Runs(sql)),
        fe::PARSE => {
            let (name, rest) = cstr(body)?;
            let (sql, _) = cstr(rest)?;
            // A named statement counts when a Bind runs it.
            name.is_empty().then_some(QueryText::Parses(sql))
        }
        fe::BIND => {
            let (_, rest) = cstr(body)?;
            let (name, _) = cstr(rest)?;
            if name.is_empty() {
                return Some(QueryText::RunsParsed);
            }
            tracker?.statement(name).map(|s| QueryText::Runs(s.query()))
        }
        _ => None,
    }
}

/// Each client's first bytes buffered are its own; beyond them it needs a
/// place under `max_total_client_buffer`.
const SHARED_FROM: usize = 64 * 1024;

/// How often a client held back by `max_total_client_buffer` looks again.
const BUFFER_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Binds with bodies larger than this stream through: only their portal and
/// statement names are read (and rewritten).
const STREAM_BIND_AT: usize = 64 * 1024;

/// The most a Bind's portal and statement names may take.
const MAX_BIND_PREFIX: usize = 8 * 1024;

/// What [`Session::large_message`] found.
enum Large {
    No,
    NeedMore(usize),
    /// The first `used` bytes of a message of type `tag` were handled; the
    /// rest of it streams (or is dropped).
    Head {
        tag: u8,
        used: usize,
    },
}

/// The length of a Bind body's portal and statement names, with their NULs.
fn bind_prefix_len(body: &[u8]) -> Option<usize> {
    let portal = body.iter().position(|&b| b == 0)?;
    let name = body[portal + 1..].iter().position(|&b| b == 0)?;
    Some(portal + 1 + name + 1)
}

fn protocol_error(e: FrameError) -> End {
    match e {
        FrameError::OverBuffer { .. } => End::Error(ProxyError::MessageTooLarge(e.to_string())),
        e => End::Error(ProxyError::Protocol(e.to_string())),
    }
}

/// Sets the timer to the nearest deadline; `None` when nothing is due.
fn arm(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Option<Instant>) -> Option<Pin<&mut Sleep>> {
    let deadline = tokio::time::Instant::from_std(deadline?);
    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    Some(timer.as_mut())
}

/// Keeps room to read into without growing on every read.
#[inline]
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        *buf = take_buffer();
    } else if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUF_SIZE);
    }
}

/// Makes room towards a whole message of `total` bytes: at most doubling
/// at a time, so that an announced length is never allocated before the
/// bytes arrive.
fn grow_for(buf: &mut BytesMut, total: usize) {
    if total > buf.capacity() {
        let step = buf.capacity().max(BUF_SIZE);
        buf.reserve((total - buf.len()).min(step));
    }
}
