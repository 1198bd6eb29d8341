//! The answers a server still owes, in order, so that pgwarden can drop the
//! answers to messages it sent itself and insert its own answers to
//! messages it did not forward, each at the right place in the stream.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};

use super::ServerStatements;

/// Which server message ends the answer to one sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    ParseComplete,
    BindComplete,
    CloseComplete,
    /// ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData.
    DescribePortal,
    /// CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// ReadyForQuery.
    Sync,
    /// A simple Query or FunctionCall: everything up to ReadyForQuery.
    Query,
}

/// What to do with the answer when it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// pgwarden sent the message itself; the client must not see the answer.
    Swallow,
    /// pgwarden did not send the client's message; it answers in its turn.
    Answer,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    expect: Expect,
    action: Action,
    /// For a Parse: the statement it prepares. For a swallowed Close: the
    /// statement it closes.
    stmt: Option<u64>,
    /// A Query that changes session settings: its outcome is reported.
    changes_settings: bool,
}

/// How a settings-changing Query ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryEnd {
    /// Succeeded outside a transaction block: the change holds.
    Applied,
    /// Succeeded inside a transaction block: it may yet be rolled back.
    InTransaction,
    Failed,
}

/// What became of one server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The client gets the message.
    pub keep: bool,
    /// A settings-changing Query (or pgwarden's own settings sync) ended.
    pub ended: Option<QueryEnd>,
}

#[derive(Debug, Default)]
pub struct Outstanding {
    queue: VecDeque<Entry>,
    /// The Query at the head has had an ErrorResponse.
    head_failed: bool,
}

impl Outstanding {
    pub fn push(&mut self, expect: Expect, action: Action, stmt: Option<u64>) {
        self.queue.push_back(Entry {
            expect,
            action,
            stmt,
            changes_settings: false,
        });
    }

    /// A Query whose outcome matters for session settings: a client's
    /// `SET` (`Forward`) or pgwarden's own sync (`Swallow`, answered to
    /// no one).
    pub fn push_settings_query(&mut self, action: Action) {
        self.queue.push_back(Entry {
            expect: Expect::Query,
            action,
            stmt: None,
            changes_settings: true,
        });
    }

    /// True while every server message belongs to a Query pgwarden sent
    /// itself (so each is read whole and dropped).
    pub fn swallowing(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|e| e.expect == Expect::Query && e.action == Action::Swallow)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A server message arrived (`status` is ReadyForQuery's status byte).
    pub fn on_message(&mut self, tag: u8, status: u8, server: &mut ServerStatements) -> Seen {
        let Some(head) = self.queue.front().copied() else {
            return Seen {
                keep: true,
                ended: None,
            };
        };
        if head.expect == Expect::Query {
            let keep = head.action != Action::Swallow;
            if tag == b'E' {
                self.head_failed = true;
            }
            if tag != b'Z' {
                return Seen { keep, ended: None };
            }
            self.queue.pop_front();
            let failed = std::mem::take(&mut self.head_failed);
            let ended = head.changes_settings.then_some(if failed {
                QueryEnd::Failed
            } else if status == b'I' {
                QueryEnd::Applied
            } else {
                QueryEnd::InTransaction
            });
            return Seen { keep, ended };
        }
        Seen {
            keep: self.on_extended(head, tag, server),
            ended: None,
        }
    }

    fn on_extended(&mut self, head: Entry, tag: u8, server: &mut ServerStatements) -> bool {
        if tag == b'E' && head.expect != Expect::Sync {
            // The message failed; the server skips what follows until Sync.
            self.queue.pop_front();
            undo(&head, server);
            while let Some(e) = self.queue.front() {
                if e.expect == Expect::Sync {
                    break;
                }
                let e = *e;
                self.queue.pop_front();
                undo(&e, server);
            }
            return true;
        }
        if !completes(head.expect, tag) {
            return true;
        }
        self.queue.pop_front();
        head.action != Action::Swallow
    }

    /// Appends pgwarden's own answers that are now due (the head of the queue).
    pub fn take_answers(&mut self, out: &mut BytesMut) {
        while let Some(e) = self.queue.front() {
            if e.action != Action::Answer {
                return;
            }
            let tag = match e.expect {
                Expect::ParseComplete => b'1',
                Expect::CloseComplete => b'3',
                // Only Parse and Close are ever answered by pgwarden.
                _ => return,
            };
            out.put_u8(tag);
            out.put_u32(4);
            self.queue.pop_front();
        }
    }
}

fn completes(expect: Expect, tag: u8) -> bool {
    match expect {
        Expect::ParseComplete => tag == b'1',
        Expect::BindComplete => tag == b'2',
        Expect::CloseComplete => tag == b'3',
        Expect::DescribeStatement | Expect::DescribePortal => tag == b'T' || tag == b'n',
        Expect::Execute => matches!(tag, b'C' | b'I' | b's'),
        Expect::Sync | Expect::Query => tag == b'Z',
    }
}

/// The server did not carry out this message: keep the statement cache true.
fn undo(e: &Entry, server: &mut ServerStatements) {
    match (e.expect, e.action, e.stmt) {
        (Expect::ParseComplete, Action::Forward | Action::Swallow, Some(id)) => server.remove(id),
        (Expect::CloseComplete, Action::Swallow, Some(id)) => server.touch(id),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swallows_injected_and_answers_skipped_in_order() {
        let mut q = Outstanding::default();
        let mut s = ServerStatements::default();
        q.push(Expect::ParseComplete, Action::Answer, None);
        q.push(Expect::ParseComplete, Action::Swallow, Some(7));
        q.push(Expect::BindComplete, Action::Forward, None);
        q.push(Expect::Sync, Action::Forward, None);
        let mut out = BytesMut::new();
        q.take_answers(&mut out);
        assert_eq!(&out[..], b"1\0\0\0\x04");
        assert!(
            !q.on_message(b'1', 0, &mut s).keep,
            "injected Parse answer dropped"
        );
        assert!(q.on_message(b'2', 0, &mut s).keep);
        assert!(q.on_message(b'Z', b'I', &mut s).keep);
        assert!(q.is_empty());
    }

    #[test]
    fn error_skips_to_sync_and_undoes_statements() {
        let mut q = Outstanding::default();
        let mut s = ServerStatements::default();
        s.touch(1);
        s.touch(2);
        q.push(Expect::BindComplete, Action::Forward, None);
        q.push(Expect::ParseComplete, Action::Forward, Some(2));
        q.push(Expect::CloseComplete, Action::Swallow, Some(3));
        q.push(Expect::ParseComplete, Action::Answer, None);
        q.push(Expect::Sync, Action::Forward, None);
        assert!(q.on_message(b'E', 0, &mut s).keep);
        assert!(!s.contains(2), "the skipped Parse prepared nothing");
        assert!(s.contains(3), "the skipped Close closed nothing");
        let mut out = BytesMut::new();
        q.take_answers(&mut out);
        assert!(
            out.is_empty(),
            "no answer for a message the server would skip"
        );
        assert!(q.on_message(b'Z', b'I', &mut s).keep);
        assert!(q.is_empty());
    }

    #[test]
    fn query_errors_wait_for_ready_for_query() {
        let mut q = Outstanding::default();
        let mut s = ServerStatements::default();
        q.push(Expect::Query, Action::Forward, None);
        assert!(q.on_message(b'E', 0, &mut s).keep);
        assert!(!q.is_empty());
        assert!(q.on_message(b'Z', b'I', &mut s).keep);
        assert!(q.is_empty());
    }
}
