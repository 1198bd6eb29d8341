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

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::time::Sleep;

use self::budget::{grow_for, Budget};
use self::events::Event;
use self::timeouts::Timeouts;
use super::flow::{Flow, Inbound, Next, Outbound};
use super::handshake::Login;
use super::route::RouteState;
use super::traffic::Traffic;
use crate::cancel::StopReason;
use crate::cancel::{forward_cancel, CancelTarget};
use crate::error::ProxyError;
use crate::net::{consume, give_buffer, Stream};
use crate::pool::ServerGuard;
use crate::prepared::SessionTracker;
use crate::server::ServerConn;
use crate::shared::Shared;
use crate::topology::lag::format_lsn;
use crate::wire::backend as be;
use crate::wire::codec::FrameError;
use crate::wire::frontend as fe;

mod attach;
mod budget;
mod ending;
mod events;
mod handover;
mod parking;
mod timeouts;

/// How the session ends.
#[derive(Debug)]
enum End {
    /// Close the client's socket with nothing more to say: the client
    /// left, or its stream was cut mid-message (the server was lost while
    /// a message was half-forwarded), where any message would corrupt it.
    Close,
    /// Tell the client why, then close.
    Error(ProxyError),
    /// The client went to the new process of an online restart: nothing
    /// more is said, and its socket is not this process's any more.
    HandedOver,
    /// The client has been idle long enough to be parked (`parking`).
    Park,
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
    /// No transaction has ended yet. A shutdown gives such a session a
    /// moment after its login to send its first request and serves it: a
    /// client that logged in as the listener closed (a rolling restart,
    /// pgbench `-C`) is served, not refused (`events::FRESH_GRACE`).
    fresh: bool,
    /// Requests, bytes and times for `SHOW STATS`.
    traffic: Traffic,
    /// Read/write routing, for databases with replicas (boxed: made at
    /// login, absent otherwise).
    route: Option<Box<RouteState>>,
    login: Login,
    shared: Arc<Shared>,
    budget: Budget,
    timeouts: Timeouts,
}

impl Session {
    pub fn new(client: Stream, cbuf: BytesMut, mut login: Login, shared: Arc<Shared>) -> Box<Self> {
        let cfg = shared.config.load();
        let p = &cfg.config.proxy;
        // The login user's own timeouts (not the forced user servers see).
        let info = login.registration.control.info.get();
        let user = info.map_or(&*login.pool.key.user, |i| &*i.user);
        let mut timeouts = Timeouts::new(cfg.session_timeouts(user), p.server_reset_query_always);
        if client.can_park() {
            timeouts.park_ms = timeouts::to_ms(p.park_idle_clients_after.enabled());
        }
        let flow = Flow::new(p.max_packet_size, p.max_client_buffer);
        let budget = Budget::new(p.max_client_buffer, p.max_total_client_buffer);
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
            flow,
            request_since: None,
            cancel_sent: false,
            last_activity: Instant::now(),
            timer: None,
            tracker: None,
            pin_counted: false,
            held: false,
            unassigned: false,
            fresh: true,
            route: login.route.take(),
            traffic: Traffic::default(),
            login,
            shared,
            budget,
            timeouts,
        })
    }

    /// Serves the client until it leaves or an error ends the session.
    ///
    /// Boxed so that the task's future holds one pointer to the session
    /// rather than (as an owned `self` would be) two copies of it.
    pub async fn run(mut self: Box<Self>) {
        let end = loop {
            match self.serve().await {
                End::Park => match parking::park(self) {
                    // Its task ends here; the lot starts another on its next
                    // request.
                    None => return,
                    Some(back) => self = back,
                },
                end => break end,
            }
        };
        // Boxed: the ending is rare, and its futures would otherwise
        // enlarge every session's task for its whole life.
        Box::pin(self.finish(end)).await;
    }

    async fn serve(&mut self) -> End {
        // Even during a shutdown: see `fresh`.
        self.shed_idle_buffer();
        if !self.cbuf.is_empty() {
            if let Err(end) = Box::pin(self.on_client_data()).await {
                return end;
            }
        }
        loop {
            let event = self.next_event().await;
            // The work runs inline, not boxed per event: a box cost an
            // allocation, a free and a copy of a few hundred bytes on every
            // event. It makes an active client's task larger (768 bytes
            // rather than 384), but an idle client is parked with no task
            // at all (`parking`), so only the clients at work pay for it.
            let step = match event {
                Event::Client(Ok(0)) | Event::Client(Err(_)) => return End::Close,
                Event::Client(Ok(_)) => self.on_client_data().await,
                Event::ClientReadable => match self.read_idle_client().await {
                    Some(Ok(0)) | Some(Err(_)) => return End::Close,
                    Some(Ok(_)) => self.on_client_data().await,
                    None => Ok(()),
                },
                Event::Server(Ok(0)) | Event::Server(Err(_)) => self.on_server_lost(),
                Event::Server(Ok(_)) => self.on_server_event().await,
                Event::Timer => self.on_timer().await,
                Event::Recheck => Ok(()),
                Event::Shutdown if self.hand_over() => Err(End::HandedOver),
                Event::Shutdown => Err(End::Error(
                    match self.login.registration.control.stop_reason() {
                        StopReason::Killed => ProxyError::AdminKilled,
                        StopReason::ConfigChanged if self.server.is_some() => {
                            ProxyError::ServerFastClose
                        }
                        _ => ProxyError::Shutdown,
                    },
                )),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// The server sent something: forward it, then the client's bytes that
    /// waited for it.
    async fn on_server_event(&mut self) -> Result<(), End> {
        self.on_server_data().await?;
        if self.held && self.flow.pending() == 0 {
            self.held = false;
            // Boxed: rare, and inline it would be a second copy of a client
            // event's future inside every server event's.
            return Box::pin(self.on_client_data()).await;
        }
        Ok(())
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
        let queries = &self.shared.queries;
        let step = self.flow.on_client(
            &self.cbuf,
            Outbound {
                tracker: self.tracker.as_deref_mut(),
                server: self.server.as_mut().map(ServerGuard::conn),
                registry: &self.shared.statements,
                one_unit: self.route.as_ref().is_some_and(|r| r.on_replica),
                routed: self.route.is_some(),
                queries: queries.enabled().then_some((queries, &mut self.traffic)),
            },
        );
        let step = step.map_err(protocol_error)?;
        grow_for(&mut self.cbuf, step.grow_to);
        self.held = step.hold;
        self.requested(step.requests, step.started);
        let forward = step.forward;
        if forward > 0 {
            if let Some(guard) = self.server.as_mut() {
                guard.mark_used();
                let bytes = match self.tracker.as_mut() {
                    Some(t) => t.to_server.finish(&self.cbuf, forward),
                    None => &self.cbuf[..forward],
                };
                self.traffic.received(bytes.len());
                if guard.conn().stream.io.send(bytes).await.is_err() {
                    consume(&mut self.cbuf, forward);
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
            consume(&mut self.cbuf, forward);
        }
        if let Some(t) = self.tracker.as_mut() {
            let answers = t.answers_now();
            if !answers.is_empty() && self.client.send(answers).await.is_err() {
                return Err(End::Close);
            }
        }
        if step.terminate {
            return Err(End::Close);
        }
        Ok(())
    }

    /// Requests went out: for routing (a pipelined unit on the primary may
    /// write), `SHOW STATS` and `query_timeout`.
    fn requested(&mut self, requests: u32, started: bool) {
        if requests == 0 {
            return;
        }
        if let Some(r) = self.route.as_mut() {
            r.requested(requests);
        }
        self.traffic.request(requests, started);
        if started && self.timeouts.times_queries() {
            self.request_since = Some(self.last_activity);
            self.cancel_sent = false;
        }
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
        let ServerConn {
            stream,
            prepared,
            settings,
            broken,
            ..
        } = guard.conn();
        let rbuf = &mut stream.rbuf;
        let inbound = Inbound {
            tracker: self.tracker.as_deref_mut(),
            prepared,
            settings,
        };
        let step = match self.flow.on_server(rbuf, inbound) {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(error = %e, "server sent a malformed message");
                if let Some(guard) = self.detach() {
                    guard.close();
                }
                return Err(End::Error(ProxyError::ServerLost));
            }
        };
        *broken |= step.fatal;
        grow_for(rbuf, step.grow_to);
        // A write ends: its position goes to the client before the
        // ReadyForQuery that ends it (sent after the position is asked).
        let report = step.answered == Some(true)
            && step.forward == rbuf.len()
            && self.route.as_ref().is_some_and(|r| r.reports_commit_lsn());
        let pos = step.forward;
        let mut held_ready = false;
        if pos > 0 {
            let mut bytes = match self.tracker.as_mut() {
                Some(t) => t.to_client.finish(rbuf, pos),
                None => &rbuf[..pos],
            };
            self.traffic.sent(bytes.len());
            if report && bytes.ends_with(&READY_IDLE) {
                bytes = &bytes[..bytes.len() - READY_IDLE.len()];
                held_ready = true;
            }
            if self.client.send(bytes).await.is_err() {
                consume(rbuf, pos);
                return Err(End::Close);
            }
            consume(rbuf, pos);
        }
        if held_ready {
            Box::pin(self.report_commit_lsn()).await?;
        }
        if let Some(idle) = step.answered {
            self.request_since = None;
            let latency = self.server.as_ref().map(|g| &g.pool().stats.latency);
            let latency = latency.unwrap_or(&self.login.pool.stats.latency);
            let queries = &self.shared.queries;
            self.traffic
                .answered(idle, &self.login.pool.stats, latency, queries);
        }
        self.after_server_data().await
    }

    /// Asks the position of the write that just ended and sends it as
    /// `pgwarden.commit_lsn`, then the ReadyForQuery held back for it.
    async fn report_commit_lsn(&mut self) -> Result<(), End> {
        let mut out = BytesMut::new();
        if let (Some(r), Some(guard)) = (self.route.as_mut(), self.server.as_mut()) {
            if r.record_write(guard).await {
                be::parameter_status(&mut out, COMMIT_LSN, &format_lsn(r.commit_lsn()));
            } else {
                // Not answered: the server's state is unknown.
                guard.conn().broken = true;
            }
        }
        out.extend_from_slice(&READY_IDLE);
        if self.client.send(&out).await.is_err() {
            return Err(End::Close);
        }
        Ok(())
    }

    /// Once the server owes nothing: keep it, or give it back.
    async fn after_server_data(&mut self) -> Result<(), End> {
        if !self.at_rest() {
            return Ok(());
        }
        let pinned = self.pinned();
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
                self.fresh = false;
                if self.shared.is_stopping() {
                    if self.hand_over() {
                        return Err(End::HandedOver);
                    }
                    return Err(End::Error(ProxyError::Shutdown));
                }
                Ok(())
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.budget.release(&self.shared);
        self.traffic.flush(&self.login.pool.stats);
        let clients = &self.login.pool.stats.clients;
        clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The ParameterStatus giving a read-your-writes session the position of
/// its last write, to carry to another instance as `pgwarden.min_lsn`.
const COMMIT_LSN: &str = "pgwarden.commit_lsn";

/// ReadyForQuery, transaction idle.
const READY_IDLE: [u8; 6] = [b'Z', 0, 0, 0, 5, be::TX_IDLE];

fn protocol_error(e: FrameError) -> End {
    match e {
        FrameError::OverBuffer { .. } => End::Error(ProxyError::MessageTooLarge(e.to_string())),
        e => End::Error(ProxyError::Protocol(e.to_string())),
    }
}
#[cfg(test)]
mod size_tests {
    /// What an idle (parked) client keeps is mostly its `Session` and its
    /// `SessionControl` (in an `Arc`, 16 bytes more); each is held to the
    /// size class of jemalloc it fits now (448 and 320 bytes): one byte
    /// more costs 64 bytes per client (docs/benchmarks.md, issue 19).
    #[test]
    fn a_parked_client_fits_its_size_classes() {
        use std::mem::size_of;
        assert!(
            size_of::<super::Session>() <= 448,
            "{}",
            size_of::<super::Session>()
        );
        let control = size_of::<crate::cancel::SessionControl>() + 16;
        assert!(control <= 320, "{control}");
    }
}
