//! The server's bytes on their way to the client: framed once, passed
//! through the statement rewriter (which drops the answers to pgwarden's
//! own requests), and read for the two facts the session needs: each
//! ReadyForQuery (requests answered, transaction status) and a FATAL
//! error (the server is going away).

use super::Flow;
use crate::prepared::SessionTracker;
use crate::server::statements::ServerStatements;
use crate::state::ServerParams;
use crate::wire::backend as be;
use crate::wire::codec::{FrameError, Item, Step, TagSet};

/// Server messages read whole: ReadyForQuery for the transaction state,
/// ErrorResponse for FATAL.
const SERVER_WHOLE: TagSet = TagSet::of(&[be::READY_FOR_QUERY, be::ERROR_RESPONSE]);

/// What the session lends the scan of its server's bytes.
pub struct Inbound<'a> {
    /// The client's statement rewriter, if it has one.
    pub tracker: Option<&'a mut SessionTracker>,
    /// The server's statements and settings, which its answers confirm.
    pub prepared: &'a mut ServerStatements,
    pub settings: &'a mut ServerParams,
}

/// What to do with the server's buffered bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStep {
    /// Bytes at the start of the buffer to send to the client (the
    /// rewriter's edits of them applied on the way).
    pub forward: usize,
    /// Every request in flight is answered: `Some(idle)`, where `idle`
    /// says no transaction is open.
    pub answered: Option<bool>,
    /// The server sent FATAL or PANIC: it must not be lent again.
    pub fatal: bool,
    /// The buffer needs room for this many bytes to hold the message at
    /// its end whole.
    pub grow_to: Option<usize>,
}

impl Flow {
    /// Walks the server's buffered bytes.
    ///
    /// # Errors
    /// A malformed or oversized message: the server is closed.
    pub fn on_server(&mut self, buf: &[u8], mut io: Inbound<'_>) -> Result<ServerStep, FrameError> {
        let mut step = ServerStep::default();
        let mut pos = 0;
        loop {
            // pgwarden's own queries are answered in small messages, read
            // whole so that they can be dropped.
            let whole = match io.tracker.as_deref() {
                Some(t) if t.reads_whole() => &TagSet::ALL,
                _ => &SERVER_WHOLE,
            };
            let (tag, body, used, complete) =
                match self.server.next(&buf[pos..], whole, self.max_packet)? {
                    Step::Item(Item::Message { tag, body }, used) => (tag, body, used, true),
                    Step::Item(Item::Header { tag, body_len }, used) => {
                        (tag, &[][..], used, body_len == 0)
                    }
                    Step::Item(Item::Body(_), used) => {
                        pos += used;
                        continue;
                    }
                    Step::NeedMore(n) => {
                        let boundary = self.server.at_boundary();
                        if let Some(t) = io.tracker.as_deref_mut().filter(|_| boundary) {
                            t.answers_due(buf, pos);
                        }
                        step.forward = pos;
                        step.grow_to = Some(pos + n);
                        return Ok(step);
                    }
                };
            let status = match tag {
                be::READY_FOR_QUERY => body.first().copied().unwrap_or(be::TX_IDLE),
                be::ERROR_RESPONSE if complete => {
                    step.fatal |= be::ends_session(body);
                    0
                }
                _ => 0,
            };
            let keep = match io.tracker.as_deref_mut() {
                Some(t) => t.server_message(
                    (&mut *io.prepared, &mut *io.settings),
                    tag,
                    status,
                    buf,
                    pos,
                    used,
                    complete,
                ),
                None => true,
            };
            if tag == be::READY_FOR_QUERY && complete && keep {
                if let Some(idle) = self.ready(status) {
                    step.answered = Some(idle);
                }
            }
            pos += used;
            // The body of a message that streams through, as far as it is
            // here: nothing above reads it (a DataRow is passed over in
            // one step, not two).
            pos += self.server.skip_body(buf.len() - pos);
        }
    }
}
