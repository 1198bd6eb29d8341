//! The client's bytes on their way to the server: framed once (with the
//! size caps), handed to the statement rewriter, noted as requests, and
//! stopped where the rest must wait. The answer is a [`ClientStep`]: how
//! many bytes the session sends now and why the rest waits.

use super::Flow;
use crate::client::traffic::{QueryText, Traffic};
use crate::prepared::{self, Registry, SessionTracker};
use crate::routing::control::starts_with_control;
use crate::server::ServerConn;
use crate::stats::queries::QueryStats;
use crate::wire::codec::{header_at, FrameError, Item, Step, TagSet, HEADER_LEN};
use crate::wire::frontend as fe;

/// Client messages read whole: none, headers suffice...
const CLIENT_WHOLE: TagSet = TagSet::EMPTY;
/// ...unless the session tracks prepared statements.
const TRACKING_WHOLE: TagSet = TagSet::of(prepared::rewrite::WHOLE);

/// Binds with bodies larger than this stream through: only their portal and
/// statement names are read (and rewritten).
const STREAM_BIND_AT: usize = 64 * 1024;

/// The most a Bind's portal and statement names may take.
const MAX_BIND_PREFIX: usize = 8 * 1024;

/// What the session lends the scan of its client's bytes.
pub struct Outbound<'a> {
    /// The client's statement rewriter (made at its first transaction).
    pub tracker: Option<&'a mut SessionTracker>,
    /// The attached server, whose statements the rewriter reads and edits.
    pub server: Option<&'a mut ServerConn>,
    pub registry: &'a Registry,
    /// The server is a replica: it gets one unit at a time, since the next
    /// may be a write or end the read-only transaction.
    pub one_unit: bool,
    /// Read/write routing is on: a pipelined `SET pgwarden.*` waits for
    /// the work before it, then is answered by pgwarden.
    pub routed: bool,
    /// `SHOW QUERIES` is on: each message's SQL is counted here.
    pub queries: Option<(&'a QueryStats, &'a mut Traffic)>,
}

/// What to do with the client's buffered bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStep {
    /// Bytes at the start of the buffer to send now (the rewriter's
    /// edits of them are applied on the way).
    pub forward: usize,
    /// The bytes after them wait: for the server's answers, or for the
    /// next transaction's routing.
    pub hold: bool,
    /// A Terminate follows the forwarded bytes: the client is leaving.
    pub terminate: bool,
    /// Requests (Query, Sync, FunctionCall) among the forwarded bytes...
    pub requests: u32,
    /// ...and whether the first of them started a busy period.
    pub started: bool,
    /// The buffer needs room for this many bytes to hold the message at
    /// its end whole.
    pub grow_to: Option<usize>,
}

/// What [`Flow::large_message`] found.
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

impl Flow {
    /// Walks the client's buffered bytes.
    ///
    /// # Errors
    /// A malformed or oversized message, a message type a logged-in client
    /// may not send (a second StartupMessage too): the session ends.
    pub fn on_client(
        &mut self,
        buf: &[u8],
        mut io: Outbound<'_>,
    ) -> Result<ClientStep, FrameError> {
        let whole = match io.tracker {
            Some(_) => &TRACKING_WHOLE,
            None => &CLIENT_WHOLE,
        };
        let mut step = ClientStep::default();
        let mut pos = 0;
        loop {
            step.forward = pos;
            let boundary = self.client.at_boundary();
            if boundary && self.pending > 0 {
                if io.one_unit {
                    step.hold = pos < buf.len();
                    return Ok(step);
                }
                if io.routed
                    && !self.open_batch
                    && starts_with_control(&buf[pos..], self.max_packet)
                {
                    step.hold = true;
                    return Ok(step);
                }
            }
            if boundary {
                match self.large_message(buf, pos, whole, &mut io)? {
                    Large::No => {}
                    Large::NeedMore(n) => {
                        step.grow_to = Some(pos + n);
                        return Ok(step);
                    }
                    Large::Head { tag, used } => {
                        self.count(tag, &mut step);
                        pos += used;
                        continue;
                    }
                }
            }
            let (tag, body, used) = match self.client.next(&buf[pos..], whole, self.max_packet)? {
                Step::Item(Item::Header { tag, .. }, used) => (tag, &[][..], used),
                Step::Item(Item::Message { tag, body }, used) => (tag, body, used),
                Step::Item(Item::Body(_), used) => {
                    if self.discarding {
                        if let Some(t) = io.tracker.as_deref_mut() {
                            t.to_server.replace(buf, pos, pos + used, &[]);
                        }
                        self.discarding = !self.client.at_boundary();
                    }
                    pos += used;
                    continue;
                }
                Step::NeedMore(n) => {
                    step.grow_to = Some(pos + n);
                    return Ok(step);
                }
            };
            if tag == fe::TERMINATE {
                step.terminate = true;
                return Ok(step);
            }
            if !fe::is_session_message(tag) {
                return Err(FrameError::UnknownType { tag });
            }
            if let (Some(t), Some(conn)) = (io.tracker.as_deref_mut(), io.server.as_deref_mut()) {
                if !self.open_batch && t.must_wait(tag, body) {
                    // Resumed when the server has answered what is in flight
                    // (all of it ends in a Sync or Query: it will answer).
                    // Within one batch the server's skip-to-Sync already
                    // orders a Parse after a failed one.
                    step.hold = true;
                    return Ok(step);
                }
                t.client_message(io.registry, conn, tag, body, buf, pos, pos + used);
            }
            if let Some((stats, traffic)) = io.queries.as_mut() {
                if let Some(sql) = QueryText::of(tag, body, io.tracker.as_deref()) {
                    traffic.query(stats, sql);
                }
            }
            self.count(tag, &mut step);
            pos += used;
        }
    }

    fn count(&mut self, tag: u8, step: &mut ClientStep) {
        if let super::Sent::Request { first } = self.sent(tag) {
            step.requests += 1;
            step.started |= first;
        }
    }

    /// A message at `buf[pos..]` too large to buffer: a Bind over
    /// [`STREAM_BIND_AT`] streams once its statement name has arrived (only
    /// that is rewritten); any other message pgwarden must read whole is,
    /// past `max_client_buffer`, answered with 54000 by the server in its
    /// place (so that the transaction fails as PostgreSQL's would) while its
    /// bytes are read and dropped: the session goes on.
    fn large_message(
        &mut self,
        buf: &[u8],
        pos: usize,
        whole: &TagSet,
        io: &mut Outbound<'_>,
    ) -> Result<Large, FrameError> {
        let Some((tag, len)) = header_at(buf, pos) else {
            return Ok(Large::No);
        };
        let len = len as usize;
        let body_len = len.saturating_sub(4);
        if !whole.contains(tag) || len > self.max_packet {
            return Ok(Large::No);
        }
        let over = body_len > self.max_buffer;
        if tag != fe::BIND && !over || tag == fe::BIND && body_len <= STREAM_BIND_AT {
            return Ok(Large::No);
        }
        let too_large = FrameError::OverBuffer {
            tag,
            len,
            max: self.max_buffer,
        };
        let (Some(t), Some(conn)) = (io.tracker.as_deref_mut(), io.server.as_deref_mut()) else {
            return Err(too_large);
        };
        let head = pos + HEADER_LEN;
        if tag != fe::BIND {
            let why = too_large.to_string();
            t.refuse(io.registry, conn, tag, &why, buf, pos, head);
            self.client.stream(body_len);
            self.discarding = true;
            return Ok(Large::Head {
                tag,
                used: HEADER_LEN,
            });
        }
        let body = &buf[head..];
        let Some(prefix_len) = bind_prefix_len(&body[..body.len().min(body_len)]) else {
            if body.len() >= MAX_BIND_PREFIX {
                return Err(FrameError::BadLength {
                    tag,
                    len: len as u32,
                });
            }
            return Ok(Large::NeedMore(HEADER_LEN + MAX_BIND_PREFIX.min(body_len)));
        };
        let end = head + prefix_len;
        t.bind_head(
            io.registry,
            conn,
            &body[..prefix_len],
            body_len,
            buf,
            pos,
            end,
        );
        self.client.stream(body_len - prefix_len);
        Ok(Large::Head {
            tag,
            used: HEADER_LEN + prefix_len,
        })
    }
}

/// The length of a Bind body's portal and statement names, with their NULs.
fn bind_prefix_len(body: &[u8]) -> Option<usize> {
    let portal = body.iter().position(|&b| b == 0)?;
    let name = body[portal + 1..].iter().position(|&b| b == 0)?;
    Some(portal + 1 + name + 1)
}
