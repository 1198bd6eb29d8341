//! The answers a server still owes, in order, so that pgwarden can drop the
//! answers to messages it sent itself and insert its own answers to
//! messages it did not forward, each at the right place in the stream.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::ServerStatements;
use crate::state::Effect;

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

/// The command tag a client must see in place of the server's, for
/// statements pgwarden ran in place of the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retag {
    Prepare,
    Deallocate,
    DeallocateAll,
    /// The CommandComplete of a statement pgwarden put before the client's.
    Drop,
}

impl Retag {
    /// The CommandComplete the client gets (nothing for `Drop`).
    pub fn message(self) -> &'static [u8] {
        match self {
            Retag::Prepare => b"C\0\0\0\x0cPREPARE\0",
            Retag::Deallocate => b"C\0\0\0\x0fDEALLOCATE\0",
            Retag::DeallocateAll => b"C\0\0\0\x13DEALLOCATE ALL\0",
            Retag::Drop => b"",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    expect: Expect,
    action: Action,
    /// For a Parse (or a Query or Execute that runs SQL `PREPARE`): the
    /// statement it prepares. For a swallowed Close: the statement it closes.
    stmt: Option<u64>,
    /// A Query or Execute with an effect on session settings (in
    /// `effects`): reported in `done` when it leaves the queue.
    changes_settings: bool,
    /// The first CommandComplete of the answer is replaced.
    retag: Option<Retag>,
    /// The client's statement name this message created is in `names`:
    /// forgotten if the message fails.
    named: bool,
}

impl Entry {
    /// Forwarded, and nothing hangs on its answer: no statement made or
    /// closed, no effect on settings, no retag, no client name.
    fn is_plain(&self) -> bool {
        self.action == Action::Forward
            && self.stmt.is_none()
            && !self.changes_settings
            && self.retag.is_none()
            && !self.named
    }
}

/// A Query or Execute with an effect on settings that left the queue.
#[derive(Debug)]
pub struct Done {
    pub effect: Arc<Effect>,
    pub failed: bool,
    /// pgwarden's own settings sync, not the client's statement.
    pub own: bool,
}

/// What became of one server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The client gets the message.
    pub keep: bool,
    /// The message is a CommandComplete the client gets retagged.
    pub retag: Option<Retag>,
}

impl Seen {
    const KEEP: Seen = Seen {
        keep: true,
        retag: None,
    };
}

#[derive(Debug, Default)]
pub struct Outstanding {
    queue: VecDeque<Entry>,
    /// The Query at the head has had an ErrorResponse.
    head_failed: bool,
    /// ... and a CommandComplete.
    head_completed: bool,
    /// Client statement names created by `named` entries, in queue order.
    names: VecDeque<(Box<[u8]>, u64)>,
    /// Names whose creating message failed, for the tracker to drop.
    forgotten: Vec<(Box<[u8]>, u64)>,
    /// Effects of the `changes_settings` entries, in queue order.
    effects: VecDeque<Arc<Effect>>,
    /// Effects whose entry left the queue, for the tracker to follow.
    done: Vec<Done>,
}

impl Outstanding {
    pub fn push(&mut self, expect: Expect, action: Action, stmt: Option<u64>) {
        self.queue.push_back(Entry {
            expect,
            action,
            stmt,
            changes_settings: false,
            retag: None,
            named: false,
        });
    }

    /// A Query whose outcome matters for session settings: a client's
    /// statement with `effect` (`Forward`) or pgwarden's own sync
    /// (`Swallow`, answered to no one).
    pub fn push_effect_query(&mut self, action: Action, effect: Arc<Effect>) {
        self.push(Expect::Query, action, None);
        self.effect_last(effect);
    }

    /// The message pushed last has `effect` once it completes.
    pub fn effect_last(&mut self, effect: Arc<Effect>) {
        if let Some(e) = self.queue.back_mut() {
            e.changes_settings = true;
            self.effects.push_back(effect);
        }
    }

    /// True while a message with an effect on settings is unanswered.
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// Effects whose message was answered (or skipped), in order.
    pub fn take_done(&mut self) -> Option<std::vec::Drain<'_, Done>> {
        (!self.done.is_empty()).then(|| self.done.drain(..))
    }

    /// True while server messages must be read whole: they answer a
    /// message pgwarden sent itself (and are dropped), or a CommandComplete
    /// due is retagged.
    pub fn reads_whole(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|e| e.action == Action::Swallow || e.retag.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The message pushed last created the client's statement `name`
    /// (statement `id`): if it fails, the name is [forgotten](Self::take_forgotten).
    pub fn name_last(&mut self, name: &[u8], id: u64) {
        if let Some(e) = self.queue.back_mut() {
            e.named = true;
            self.names.push_back((name.into(), id));
        }
    }

    /// The answer to the message pushed last gets `retag` as its first
    /// CommandComplete.
    pub fn retag_last(&mut self, retag: Retag) {
        if let Some(e) = self.queue.back_mut() {
            e.retag = Some(retag);
        }
    }

    /// True while the server has not yet answered the message that
    /// created the client's statement `name`.
    pub fn creating(&self, name: &[u8]) -> bool {
        self.names.iter().any(|(n, _)| &n[..] == name)
    }

    /// True while any client statement's creation is unanswered.
    pub fn creating_any(&self) -> bool {
        !self.names.is_empty()
    }

    /// Client statement names (and ids) whose creating message failed.
    pub fn take_forgotten(&mut self) -> Option<std::vec::Drain<'_, (Box<[u8]>, u64)>> {
        (!self.forgotten.is_empty()).then(|| self.forgotten.drain(..))
    }

    /// The common server message, kept cheap: neither an error nor a
    /// ReadyForQuery (the caller checks), answering a plain entry or none.
    /// Returns false, having done nothing, when [`on_message`](Self::on_message)
    /// must see it.
    #[inline]
    pub fn pass_plain(&mut self, tag: u8) -> bool {
        let Some(head) = self.queue.front() else {
            return true;
        };
        if !head.is_plain() {
            return false;
        }
        // A plain Query's progress (`head_completed`) matters only for the
        // statement it makes, which a plain entry has none of; it ends at a
        // ReadyForQuery, which does not come here.
        if completes(head.expect, tag) {
            self.queue.pop_front();
        }
        true
    }

    /// A server message arrived.
    pub fn on_message(&mut self, tag: u8, server: &mut ServerStatements) -> Seen {
        let Some(head) = self.queue.front_mut() else {
            return Seen::KEEP;
        };
        // Only the first CommandComplete is retagged.
        let retag = match tag {
            b'C' => head.retag.take(),
            _ => None,
        };
        let head = *head;
        if head.expect == Expect::Query {
            let keep = head.action != Action::Swallow;
            match tag {
                b'E' => self.head_failed = true,
                b'C' => self.head_completed = true,
                _ => {}
            }
            if tag != b'Z' {
                return Seen { keep, retag };
            }
            self.queue.pop_front();
            let failed = std::mem::take(&mut self.head_failed);
            if failed && !std::mem::take(&mut self.head_completed) {
                // Failed before its first statement completed: a `PREPARE`
                // leading the query made nothing.
                undo(&head, server);
            }
            self.head_completed = false;
            self.finish(&head, failed);
            return Seen { keep, retag };
        }
        Seen {
            keep: self.on_extended(head, tag, server),
            retag,
        }
    }

    fn on_extended(&mut self, head: Entry, tag: u8, server: &mut ServerStatements) -> bool {
        if tag == b'E' && head.expect != Expect::Sync {
            // The message failed; the server skips what follows until Sync.
            self.queue.pop_front();
            undo(&head, server);
            self.finish(&head, true);
            while let Some(e) = self.queue.front() {
                if e.expect == Expect::Sync {
                    break;
                }
                let e = *e;
                self.queue.pop_front();
                undo(&e, server);
                self.finish(&e, true);
            }
            return true;
        }
        if !completes(head.expect, tag) {
            return true;
        }
        self.queue.pop_front();
        self.finish(&head, false);
        head.action != Action::Swallow
    }

    /// An entry left the queue: a client statement it created is kept, or
    /// forgotten when the message failed.
    fn finish(&mut self, e: &Entry, failed: bool) {
        if e.changes_settings {
            if let Some(effect) = self.effects.pop_front() {
                self.done.push(Done {
                    effect,
                    failed,
                    own: e.action == Action::Swallow,
                });
            }
        }
        if !e.named {
            return;
        }
        if let Some(name) = self.names.pop_front() {
            if failed {
                self.forgotten.push(name);
            }
        }
    }

    /// True when the head of the queue is pgwarden's to answer (checked
    /// before every server message, so kept to one comparison).
    #[inline]
    pub fn answer_due(&self) -> bool {
        self.queue
            .front()
            .is_some_and(|e| e.action == Action::Answer)
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
            if let Some(e) = self.queue.pop_front() {
                self.finish(&e, false);
            }
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
        // SQL `PREPARE` run as a Query or an Execute.
        (Expect::Query | Expect::Execute, _, Some(id)) => server.remove(id),
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
            !q.on_message(b'1', &mut s).keep,
            "injected Parse answer dropped"
        );
        assert!(q.on_message(b'2', &mut s).keep);
        assert!(q.on_message(b'Z', &mut s).keep);
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
        assert!(q.on_message(b'E', &mut s).keep);
        assert!(!s.contains(2), "the skipped Parse prepared nothing");
        assert!(s.contains(3), "the skipped Close closed nothing");
        let mut out = BytesMut::new();
        q.take_answers(&mut out);
        assert!(
            out.is_empty(),
            "no answer for a message the server would skip"
        );
        assert!(q.on_message(b'Z', &mut s).keep);
        assert!(q.is_empty());
    }

    /// One step of a client and server exchange, for the property below.
    #[derive(Clone, Debug)]
    enum Op {
        /// Push an entry: which answer, which action, a statement or not,
        /// then 0 (plain), 1 (effect), 2 (retag) or 3 (named).
        Push(u8, u8, bool, u8),
        /// The server sends a message with this tag.
        Server(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let tags = prop::sample::select(b"123tTnDCIsZENS".to_vec());
        prop_oneof![
            (0u8..8, 0u8..3, any::<bool>(), 0u8..8).prop_map(|(e, a, s, f)| Op::Push(e, a, s, f)),
            tags.prop_map(Op::Server),
        ]
    }

    fn push(q: &mut Outstanding, e: u8, a: u8, stmt: bool, flag: u8) {
        let expects = [
            Expect::ParseComplete,
            Expect::BindComplete,
            Expect::CloseComplete,
            Expect::DescribeStatement,
            Expect::DescribePortal,
            Expect::Execute,
            Expect::Sync,
            Expect::Query,
        ];
        let action = [Action::Forward, Action::Swallow, Action::Answer][a as usize];
        q.push(expects[e as usize], action, stmt.then_some(u64::from(e)));
        match flag {
            1 => q.effect_last(Arc::new(Effect::default())),
            2 => q.retag_last(Retag::Drop),
            3 => q.name_last(b"s", u64::from(e)),
            _ => {}
        }
    }

    proptest::proptest! {
        /// The tracker's cheap path ([`Outstanding::pass_plain`] before
        /// `on_message`) keeps, answers, drops and reports exactly what
        /// `on_message` alone does.
        #[test]
        fn the_plain_path_changes_nothing(ops in proptest::collection::vec(op(), 0..60)) {
            let (mut full, mut fast) = (Outstanding::default(), Outstanding::default());
            let (mut s_full, mut s_fast) = (ServerStatements::default(), ServerStatements::default());
            for id in 0..8 {
                s_full.touch(id);
                s_fast.touch(id);
            }
            for op in ops {
                match op {
                    Op::Push(e, a, stmt, flag) => {
                        push(&mut full, e, a, stmt, flag);
                        push(&mut fast, e, a, stmt, flag);
                    }
                    Op::Server(tag) => {
                        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                        full.take_answers(&mut a);
                        let seen_full = full.on_message(tag, &mut s_full);
                        let seen_fast = if tag != b'Z' && tag != b'E' && fast.pass_plain(tag) {
                            Seen::KEEP
                        } else {
                            fast.take_answers(&mut b);
                            fast.on_message(tag, &mut s_fast)
                        };
                        proptest::prop_assert_eq!(a, b);
                        proptest::prop_assert_eq!(seen_full, seen_fast);
                    }
                }
                proptest::prop_assert_eq!(full.queue.len(), fast.queue.len());
                proptest::prop_assert_eq!(full.answer_due(), fast.answer_due());
                proptest::prop_assert_eq!(full.reads_whole(), fast.reads_whole());
                proptest::prop_assert_eq!(full.has_effects(), fast.has_effects());
                proptest::prop_assert_eq!(full.creating_any(), fast.creating_any());
                let done = |q: &mut Outstanding| {
                    q.take_done().map(|d| d.map(|d| (d.failed, d.own)).collect::<Vec<_>>())
                };
                proptest::prop_assert_eq!(done(&mut full), done(&mut fast));
                let forgotten = |q: &mut Outstanding| q.take_forgotten().map(|f| f.count());
                proptest::prop_assert_eq!(forgotten(&mut full), forgotten(&mut fast));
                for id in 0..8 {
                    proptest::prop_assert_eq!(s_full.contains(id), s_fast.contains(id));
                }
            }
        }
    }

    #[test]
    fn query_errors_wait_for_ready_for_query() {
        let mut q = Outstanding::default();
        let mut s = ServerStatements::default();
        q.push(Expect::Query, Action::Forward, None);
        assert!(q.on_message(b'E', &mut s).keep);
        assert!(!q.is_empty());
        assert!(q.on_message(b'Z', &mut s).keep);
        assert!(q.is_empty());
    }
}
