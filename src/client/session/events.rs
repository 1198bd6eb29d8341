//! Waiting for the next thing a session acts on: bytes from either
//! socket, the stop signal, or the nearest timeout. An idle client (no
//! server) is watched for readiness only, so it holds no read buffer.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use tokio_util::io::poll_read_buf;

use super::budget::{reserve, BUFFER_RETRY};
use super::timeouts::arm;
use super::Session;
use crate::cancel::StopReason;

/// How long a shutdown waits for a session that has just logged in to
/// send its first request.
const FRESH_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) enum Event {
    Client(std::io::Result<usize>),
    /// The client's socket is readable while no server is attached; nothing
    /// was read yet, so an idle client holds no read buffer.
    ClientReadable,
    Server(std::io::Result<usize>),
    Timer,
    Shutdown,
    /// The stop came while a fresh session waited: wait again, spared.
    Recheck,
}

impl Session {
    /// Waits for the next thing to act on. One `poll_fn` over the sockets,
    /// the stop signal and the timer, rather than a `select!` of futures:
    /// it stores nothing, which keeps every session's task small.
    pub(super) async fn next_event(&mut self) -> Event {
        let may_read = self.budget.may_read(self.cbuf.len(), &self.shared);
        let mut deadline = self.next_deadline();
        if !may_read {
            // Read again once others have drained: look every few ms.
            let retry = Instant::now() + BUFFER_RETRY;
            deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
        }
        // A shutdown spares a fresh session (see `Session::fresh`) for a
        // moment after its login, long enough for a client that logs in to
        // send its first request; one that stays silent is then told 57P01
        // like any idle client. KILL spares nobody.
        let spare_until = (self.fresh && self.shared.is_stopping())
            .then(|| self.last_activity + FRESH_GRACE)
            .filter(|&t| t > Instant::now());
        if let Some(t) = spare_until {
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        }
        let spare = spare_until.is_some();
        // A stop that comes while this waits: a fresh session is still
        // spared, after one more turn to arm the grace's timer.
        let grace_ends = self.fresh.then(|| self.last_activity + FRESH_GRACE);
        let mut timer = arm(&mut self.timer, deadline);
        if let Some(guard) = self.server.as_mut() {
            reserve(&mut self.cbuf);
            reserve(&mut guard.conn().stream.rbuf);
        }
        // Past max_client_buffer the client waits (TCP pushes back) until
        // what is buffered has gone to the server.
        let read_client = may_read && self.cbuf.len() < self.flow.max_buffer();
        let (server, client, cbuf) = (&mut self.server, &mut self.client, &mut self.cbuf);
        let control = &self.login.registration.control;
        // Between two transactions of a session-mode client: where
        // `server_fast_close` may end it.
        let at_rest = self.login.mode == crate::config::PoolMode::Session
            && self.flow.pending() == 0
            && !self.flow.in_transaction();
        std::future::poll_fn(|cx| {
            match server.as_mut() {
                Some(guard) => {
                    // `KILL`/`KILL_CLIENT` end a session mid-transaction too
                    // (its waker, kept from its idle waits, brings it here).
                    match control.stop_reason() {
                        StopReason::Killed => return Poll::Ready(Event::Shutdown),
                        StopReason::ConfigChanged if at_rest => {
                            return Poll::Ready(Event::Shutdown)
                        }
                        _ => {}
                    }
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
                    // A kill first: a client that keeps sending would
                    // otherwise have its next request read and put behind
                    // the pause the kill left on its database.
                    if control.killed() {
                        return Poll::Ready(Event::Shutdown);
                    }
                    // The socket's own reader slot: no buffer held while idle.
                    if let Poll::Ready(r) = client.poll_read_ready(cx) {
                        return Poll::Ready(match r {
                            Ok(()) => Event::ClientReadable,
                            Err(e) => Event::Client(Err(e)),
                        });
                    }
                    if control.poll_stop(cx).is_ready() {
                        let shutdown = control.stop_reason() == StopReason::Shutdown;
                        let in_grace = grace_ends.is_some_and(|t| Instant::now() < t);
                        match (shutdown && in_grace, spare) {
                            (false, _) => return Poll::Ready(Event::Shutdown),
                            (true, false) => return Poll::Ready(Event::Recheck),
                            (true, true) => {}
                        }
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

    /// Reads what an idle client sent; `None` if the readiness was spurious.
    ///
    /// Reads through `poll_read` rather than `try_read` so that a short read
    /// clears the socket's readiness: the next poll of the client while the
    /// server works is then free instead of a `recv` that finds nothing.
    pub(super) async fn read_idle_client(&mut self) -> Option<std::io::Result<usize>> {
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
}
