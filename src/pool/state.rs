//! A pool's books, without sockets: its idle servers, how many servers
//! are open or opening, and the clients in line. Every decision about them
//! is a plain method under the pool's short lock, generic over the kind of
//! connection so that tests drive it with numbers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Handoff;
use crate::server::ServerError;

/// One pool's books.
pub(super) struct State<C> {
    /// Reused last in, first out (PgBouncer's default), so that a quiet
    /// period lets the surplus age out through `server_idle_timeout`.
    pub idle: Vec<C>,
    /// Servers open or being opened, idle or lent out.
    pub total: usize,
    /// Clients in line, with when they joined it (for `maxwait`).
    waiters: VecDeque<(Instant, oneshot::Sender<Handoff>)>,
    /// The last failed login, which fails new logins fast for `login_retry`.
    pub login_failure: Option<(Instant, Arc<ServerError>)>,
}

/// What a client asking for a server gets at once.
pub(super) enum Take<C> {
    Idle(C),
    /// Room for one more server: the caller opens it (already counted).
    Open,
    /// A place in line; the handoff arrives here.
    Wait(oneshot::Receiver<Handoff>),
}

impl<C> State<C> {
    pub fn new() -> Self {
        Self {
            idle: Vec::new(),
            total: 0,
            waiters: VecDeque::new(),
            login_failure: None,
        }
    }

    /// An idle server, else room under `cap` (and under the shared limits,
    /// which `limits` takes a unit of), else a place in line.
    pub fn take(&mut self, cap: usize, limits: impl FnOnce() -> bool) -> Take<C> {
        if let Some(conn) = self.idle.pop() {
            return Take::Idle(conn);
        }
        if self.claim(cap, limits) {
            return Take::Open;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back((Instant::now(), tx));
        Take::Wait(rx)
    }

    /// Counts one more server if there is room under `cap` and `limits`
    /// grants a unit.
    pub fn claim(&mut self, cap: usize, limits: impl FnOnce() -> bool) -> bool {
        if self.total < cap && limits() {
            self.total += 1;
            return true;
        }
        false
    }

    /// The first client in line that is still waiting (those who gave up
    /// are dropped from the line).
    pub fn next_waiter(&mut self) -> Option<oneshot::Sender<Handoff>> {
        while let Some((_, w)) = self.waiters.pop_front() {
            if !w.is_closed() {
                return Some(w);
            }
        }
        None
    }

    /// Clients still waiting.
    pub fn waiting(&self) -> usize {
        self.waiters.iter().filter(|(_, w)| !w.is_closed()).count()
    }

    /// How long the oldest client still in line has waited.
    pub fn longest_wait(&self) -> Duration {
        self.waiters
            .iter()
            .find(|(_, w)| !w.is_closed())
            .map_or(Duration::ZERO, |(since, _)| since.elapsed())
    }

    /// Servers lent out now.
    pub fn busy(&self) -> usize {
        self.total.saturating_sub(self.idle.len())
    }

    /// Takes every idle server out, counting them down.
    pub fn take_all_idle(&mut self) -> Vec<C> {
        let idle = std::mem::take(&mut self.idle);
        self.total -= idle.len().min(self.total);
        idle
    }

    /// The last failed login, if it is more recent than `retry`.
    pub fn failing(&self, retry: Duration) -> Option<&Arc<ServerError>> {
        self.login_failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() < retry)
            .map(|(_, e)| e)
    }

    /// One server fewer (closed, or a slot given up).
    pub fn count_down(&mut self) {
        self.total = self.total.saturating_sub(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn idle(t: &Take<u32>) -> Option<u32> {
        match t {
            Take::Idle(c) => Some(*c),
            _ => None,
        }
    }

    #[test]
    fn idle_first_then_room_then_a_place_in_line() {
        let mut st = State::<u32>::new();
        assert!(matches!(st.take(2, || true), Take::Open));
        assert!(matches!(st.take(2, || true), Take::Open));
        assert_eq!(st.total, 2);
        let Take::Wait(mut rx) = st.take(2, || true) else {
            panic!("a full pool puts the client in line");
        };
        assert_eq!(st.waiting(), 1);
        // A server comes back: the client in line gets it, not the idle list.
        let w = st.next_waiter().unwrap();
        assert!(w
            .send(Handoff::Slot(super::super::SlotGuard::detached()))
            .is_ok());
        assert!(rx.try_recv().is_ok());
        st.idle.push(7);
        st.idle.push(9);
        assert_eq!(idle(&st.take(2, || true)), Some(9), "last in, first out");
        assert_eq!(st.busy(), 1);
    }

    #[test]
    fn shared_limits_hold_back_a_pool_with_room() {
        let mut st = State::<u32>::new();
        assert!(matches!(st.take(5, || false), Take::Wait(_)));
        assert_eq!(st.total, 0, "nothing counted when the limit refused");
        assert!(!st.claim(5, || false));
        assert!(st.claim(5, || true));
        assert_eq!(st.total, 1);
    }

    #[test]
    fn clients_who_gave_up_leave_the_line() {
        let mut st = State::<u32>::new();
        let Take::Wait(gone) = st.take(0, || true) else {
            panic!("no room");
        };
        let Take::Wait(_stays) = st.take(0, || true) else {
            panic!("no room");
        };
        drop(gone);
        assert_eq!(st.waiting(), 1);
        assert!(st.next_waiter().is_some());
        assert!(st.next_waiter().is_none());
        assert_eq!(st.longest_wait(), Duration::ZERO);
    }

    #[test]
    fn closing_idle_servers_counts_them_down() {
        let mut st = State::<u32>::new();
        for _ in 0..3 {
            assert!(st.claim(3, || true));
        }
        st.idle.extend([1, 2]);
        assert_eq!(st.take_all_idle(), [1, 2]);
        assert_eq!((st.total, st.busy()), (1, 1));
        st.count_down();
        st.count_down();
        assert_eq!(st.total, 0);
    }
}
