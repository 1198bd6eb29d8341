//! A pool's books, without sockets: its idle servers, how many servers
//! are open or opening, and the clients in line. Every decision about them
//! is a plain method under the pool's short lock, generic over the kind of
//! connection so that tests drive it with numbers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::opening::Reuse;
use super::Handoff;
use crate::server::ServerError;

/// One pool's books.
pub(super) struct State<C> {
    /// Reused last in, first out (PgBouncer's default), so that a quiet
    /// period lets the surplus age out through `server_idle_timeout`.
    pub idle: Vec<C>,
    /// Servers open or being opened, idle or lent out.
    pub total: usize,
    /// Clients in line, oldest first.
    waiters: VecDeque<Waiter>,
    /// The last failed login, which fails new logins fast for `login_retry`.
    pub login_failure: Option<(Instant, Arc<ServerError>)>,
    /// The settings a check-out and a check-in read (see [`Reuse`]).
    pub reuse: Reuse,
}

/// A client in line.
struct Waiter {
    /// When it joined the line (for `maxwait`).
    since: Instant,
    /// Its worker (see [`Homed`]).
    worker: u16,
    tx: oneshot::Sender<Handoff>,
}

/// A server watched by one worker's reactor (`worker.rs`): lent within
/// that worker, a transaction never crosses threads.
pub(super) trait Homed {
    fn home(&self) -> u16;
}

/// How far down the line a returned server may look for a client of its
/// own worker, and for how long the client at the front may be passed
/// over: the line stays first come, first served within a few milliseconds.
const LOOKAHEAD: usize = 8;
const MAX_PASS_OVER: Duration = Duration::from_millis(5);

/// What a client asking for a server gets at once.
pub(super) enum Take<C> {
    Idle(C),
    /// Room for one more server: the caller opens it (already counted).
    Open,
    /// A place in line; the handoff arrives here.
    Wait(oneshot::Receiver<Handoff>),
}

impl<C: Homed> State<C> {
    pub fn new() -> Self {
        Self {
            idle: Vec::new(),
            total: 0,
            waiters: VecDeque::new(),
            login_failure: None,
            reuse: Reuse::default(),
        }
    }

    /// The idle server to lend a client of worker `here`: the most
    /// recently returned one of that worker, else the most recently
    /// returned (PgBouncer's LIFO: few servers do most of the work). With
    /// `round_robin` (`server_round_robin`), the least recently returned
    /// instead, so that load spreads over every server (for a balancer of
    /// several hosts behind one address).
    pub fn next_idle(&self, here: u16, round_robin: bool) -> Option<usize> {
        let last = self.idle.len().checked_sub(1)?;
        let mut same_worker = self.idle.iter().map(|c| c.home() == here);
        Some(if round_robin {
            same_worker.position(|x| x).unwrap_or(0)
        } else {
            same_worker.rposition(|x| x).unwrap_or(last)
        })
    }

    /// An idle server (see [`State::next_idle`]), else room under `cap` (and
    /// under the shared limits, which `limits` takes a unit of), else a
    /// place in line.
    pub fn take(
        &mut self,
        cap: usize,
        limits: impl FnOnce() -> bool,
        (here, round_robin): (u16, bool),
    ) -> Take<C> {
        if let Some(i) = self.next_idle(here, round_robin) {
            return Take::Idle(self.idle.remove(i));
        }
        if self.claim(cap, limits) {
            return Take::Open;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back(Waiter {
            since: Instant::now(),
            worker: here,
            tx,
        });
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
    /// are dropped from the line); with `home`, a client of that worker a
    /// little further down, unless the first has waited `MAX_PASS_OVER`.
    pub fn next_waiter(&mut self, home: Option<u16>) -> Option<oneshot::Sender<Handoff>> {
        while self.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            self.waiters.pop_front();
        }
        let front = self.waiters.front()?;
        if let Some(home) = home.filter(|&h| front.worker != h) {
            if front.since.elapsed() < MAX_PASS_OVER {
                let near = self
                    .waiters
                    .iter()
                    .take(LOOKAHEAD)
                    .position(|w| w.worker == home && !w.tx.is_closed());
                if let Some(w) = near.and_then(|i| self.waiters.remove(i)) {
                    return Some(w.tx);
                }
            }
        }
        self.waiters.pop_front().map(|w| w.tx)
    }

    /// Clients still waiting.
    pub fn waiting(&self) -> usize {
        self.waiters.iter().filter(|w| !w.tx.is_closed()).count()
    }

    /// How long the oldest client still in line has waited.
    pub fn longest_wait(&self) -> Duration {
        self.waiters
            .iter()
            .find(|w| !w.tx.is_closed())
            .map_or(Duration::ZERO, |w| w.since.elapsed())
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

    impl Homed for u32 {
        fn home(&self) -> u16 {
            (*self % 2) as u16
        }
    }

    fn idle(t: &Take<u32>) -> Option<u32> {
        match t {
            Take::Idle(c) => Some(*c),
            _ => None,
        }
    }

    #[test]
    fn idle_first_then_room_then_a_place_in_line() {
        let mut st = State::<u32>::new();
        assert!(matches!(st.take(2, || true, (0, false)), Take::Open));
        assert!(matches!(st.take(2, || true, (0, false)), Take::Open));
        assert_eq!(st.total, 2);
        let Take::Wait(mut rx) = st.take(2, || true, (0, false)) else {
            panic!("a full pool puts the client in line");
        };
        assert_eq!(st.waiting(), 1);
        // A server comes back: the client in line gets it, not the idle list.
        let w = st.next_waiter(None).unwrap();
        assert!(w
            .send(Handoff::Slot(super::super::SlotGuard::detached()))
            .is_ok());
        assert!(rx.try_recv().is_ok());
        st.idle.push(7);
        st.idle.push(9);
        assert_eq!(
            idle(&st.take(2, || true, (0, false))),
            Some(9),
            "last in, first out"
        );
        assert_eq!(st.busy(), 1);
    }

    #[test]
    fn a_server_of_the_callers_worker_comes_first() {
        let mut st: State<u32> = State::new();
        st.idle.extend([7, 8, 9]);
        // A number's parity is its worker.
        assert_eq!(idle(&st.take(3, || true, (0, false))), Some(8));
        assert_eq!(
            idle(&st.take(3, || true, (2, false))),
            Some(9),
            "else the newest"
        );
        assert_eq!(st.idle, [7]);
        // server_round_robin: the least recently returned instead.
        st.idle.extend([8, 9]);
        assert_eq!(idle(&st.take(3, || true, (1, true))), Some(7));
        assert_eq!(st.idle, [8, 9]);
    }

    #[test]
    fn a_returned_server_goes_to_a_client_of_its_worker_unless_the_first_waited_long() {
        use tokio::sync::oneshot::error::TryRecvError::{Closed, Empty};
        let mut st = State::<u32>::new();
        let mut line = [0u16, 1, 1].map(|worker| match st.take(0, || true, (worker, false)) {
            Take::Wait(rx) => rx,
            _ => panic!("expected a place in line"),
        });
        // A server of worker 1 passes over the client of worker 0 (whose
        // receiver stays open) for the next one of worker 1.
        drop(st.next_waiter(Some(1)));
        assert!(matches!(line[0].try_recv(), Err(Empty)));
        assert!(matches!(line[1].try_recv(), Err(Closed)));
        // Once the first has waited MAX_PASS_OVER, it comes first whatever
        // the server's worker.
        st.waiters[0].since -= MAX_PASS_OVER;
        drop(st.next_waiter(Some(1)));
        assert!(matches!(line[0].try_recv(), Err(Closed)));
        assert!(matches!(line[2].try_recv(), Err(Empty)));
        assert_eq!(st.waiting(), 1);
    }

    #[test]
    fn shared_limits_hold_back_a_pool_with_room() {
        let mut st = State::<u32>::new();
        assert!(matches!(st.take(5, || false, (0, false)), Take::Wait(_)));
        assert_eq!(st.total, 0, "nothing counted when the limit refused");
        assert!(!st.claim(5, || false));
        assert!(st.claim(5, || true));
        assert_eq!(st.total, 1);
    }

    #[test]
    fn clients_who_gave_up_leave_the_line() {
        let mut st = State::<u32>::new();
        let Take::Wait(gone) = st.take(0, || true, (0, false)) else {
            panic!("no room");
        };
        let Take::Wait(_stays) = st.take(0, || true, (0, false)) else {
            panic!("no room");
        };
        drop(gone);
        assert_eq!(st.waiting(), 1);
        assert!(st.next_waiter(None).is_some());
        assert!(st.next_waiter(None).is_none());
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
