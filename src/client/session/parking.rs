//! Parking: an idle client without a task of its own.
//!
//! A client that has sent nothing for `park_idle_clients_after` (no
//! server, nothing buffered, not TLS) gives up its tokio task and its
//! socket's registration with tokio's reactor: its socket goes into an
//! epoll set of its own worker's [`Lot`], and its session waits there as
//! it is. One task per worker and proxy watches the set, the parked
//! clients' stop signals (`KILL`, a shutdown, a takeover) and the earliest
//! `client_idle_timeout`; whichever comes first, the client gets a task
//! again and goes on through the same [`Session::run`], where the event
//! is handled as if it had never left.
//!
//! Why: an idle client's task (a 128-byte-aligned cell) and its socket's
//! `ScheduledIo` (256 bytes, also 128-aligned) were half of what it cost
//! (docs/benchmarks.md, issue 19); PgBouncer keeps an idle client in one
//! small struct. A parked client costs its session's state and a slot
//! here. Waking one costs a few system calls (leaving this set, joining
//! tokio's) and a task, once per idle period of seconds.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Wake, Waker};
use std::time::Instant;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use super::Session;
use crate::net::Stream;
use crate::shared::Shared;
use crate::worker::Rehome;

/// Parks `session` in its worker's lot. Gives it back (to go on serving,
/// never parked again) if it cannot be parked.
pub(super) fn park(mut session: Box<Session>) -> Option<Box<Session>> {
    let lot = match Lot::here(&session.shared) {
        Ok(lot) => lot,
        Err(e) => {
            tracing::warn!(error = %e, "cannot park idle clients");
            session.timeouts.park_ms = 0;
            return Some(session);
        }
    };
    let socket = match std::mem::replace(&mut session.client, Stream::Closed) {
        Stream::Tcp(s) => s.leave().map(Socket::Tcp),
        Stream::Unix(s) => s.leave().map(Socket::Unix),
        other => {
            session.client = other;
            session.timeouts.park_ms = 0;
            return Some(session);
        }
    };
    match socket {
        Ok(socket) => {
            // The timer's entry is tokio's too; a parked client has none.
            session.timer = None;
            // Most of what an idle client costs after its first query;
            // made again from its login at its next transaction.
            if session.tracker.as_ref().is_some_and(|t| t.rebuildable()) {
                session.tracker = None;
            }
            lot.admit(session, socket);
            None
        }
        Err(e) => {
            // Leaving tokio's reactor failed and took the socket with it:
            // the session sees the client gone and ends.
            tracing::warn!(error = %e, "could not park an idle client");
            Some(session)
        }
    }
}

impl Session {
    /// Idle at a point where it can be parked: no server, nothing
    /// buffered or owed, and the proxy not stopping.
    pub(super) fn parkable(&self) -> bool {
        self.server.is_none()
            && self.cbuf.is_empty()
            && !self.held
            && self.flow.pending() == 0
            && self.flow.client_at_boundary()
            && !self.shared.is_stopping()
    }
}

/// A parked client's socket, out of tokio's reactor.
enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }

    /// Back into the reactor of the runtime this runs on.
    fn rejoin(self) -> std::io::Result<Stream> {
        match self {
            Socket::Tcp(s) => tokio::net::TcpStream::arrive(s).map(Stream::Tcp),
            Socket::Unix(s) => tokio::net::UnixStream::arrive(s).map(Stream::Unix),
        }
    }
}

struct Parked {
    session: Box<Session>,
    socket: Socket,
    /// Its `client_idle_timeout`, if it has one.
    wake_at: Option<Instant>,
}

/// Woken by a parked session's control when the session is asked to stop.
#[derive(Default)]
struct Signal {
    notify: Notify,
    stops: AtomicBool,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.stops.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// One worker's parked clients of one proxy.
struct Lot {
    epoll: Epoll,
    inner: Mutex<Inner>,
    signal: Arc<Signal>,
    stop_waker: Waker,
    tasks: TaskTracker,
    shared: Weak<Shared>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Option<Parked>>,
    free: Vec<usize>,
    count: usize,
    /// The watching task is running.
    watched: bool,
    next_wake: Option<Instant>,
}

thread_local! {
    /// This thread's lots, one per proxy (tests run several in a process).
    static LOTS: RefCell<Vec<Arc<Lot>>> = const { RefCell::new(Vec::new()) };
}

impl Lot {
    /// The lot of this thread for `shared`'s proxy, made on first need.
    fn here(shared: &Arc<Shared>) -> std::io::Result<Arc<Lot>> {
        LOTS.with(|lots| {
            let mut lots = lots.borrow_mut();
            lots.retain(|l| l.shared.strong_count() > 0);
            if let Some(lot) = lots
                .iter()
                .find(|l| std::ptr::eq(l.shared.as_ptr(), &**shared))
            {
                return Ok(lot.clone());
            }
            let signal = Arc::new(Signal::default());
            let lot = Arc::new(Lot {
                epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                inner: Mutex::default(),
                stop_waker: Waker::from(signal.clone()),
                signal,
                tasks: shared.tasks.clone(),
                shared: Arc::downgrade(shared),
            });
            lots.push(lot.clone());
            Ok(lot)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, session: Box<Session>, socket: Socket) {
        let wake_at = session.idle_deadline();
        let control = session.login.registration.control.clone();
        // Before the session can be woken: on a work-stealing runtime it
        // could otherwise run again and park its own waker first, which
        // this would then overwrite.
        control.watch_stop(&self.stop_waker);
        let shared = session.shared.clone();
        let mut inner = self.lock();
        let slot = match inner.free.pop() {
            Some(slot) => slot,
            None => {
                inner.slots.push(None);
                inner.slots.len() - 1
            }
        };
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        if let Err(e) = self
            .epoll
            .add(socket.fd(), EpollEvent::new(flags, slot as u64))
        {
            inner.free.push(slot);
            drop(inner);
            tracing::warn!(error = %e, "could not park an idle client");
            let mut session = session;
            // Not again: it would fail the same way at once.
            session.timeouts.park_ms = 0;
            self.resume(
                Parked {
                    session,
                    socket,
                    wake_at,
                },
                false,
            );
            return;
        }
        inner.slots[slot] = Some(Parked {
            session,
            socket,
            wake_at,
        });
        inner.count += 1;
        shared.parked.fetch_add(1, Ordering::Relaxed);
        let earlier = wake_at.is_some_and(|t| inner.next_wake.is_none_or(|n| t < n));
        if earlier {
            inner.next_wake = wake_at;
        }
        let start = !std::mem::replace(&mut inner.watched, true);
        drop(inner);
        if control.stop_requested() {
            // Asked to stop while it was being parked: the lot looks now
            // that it is there to be found.
            self.stop_waker.wake_by_ref();
        }
        if start {
            self.tasks.spawn(watch(self.clone()));
        } else if earlier {
            // The watcher sleeps until a later time: wake it to look again.
            self.signal.notify.notify_one();
        }
    }

    /// Gives a parked client its task back; `spoke` when its socket woke
    /// it.
    fn resume(&self, parked: Parked, spoke: bool) {
        let Parked {
            mut session,
            socket,
            ..
        } = parked;
        if spoke {
            // Its bytes are activity, to be read once tokio's reactor has
            // seen the socket again: until then the parking deadline, were
            // it left in the past, would park it again at once.
            session.last_activity = Instant::now();
        }
        session.client = socket.rejoin().unwrap_or_else(|e| {
            // Seen as the client gone: the session ends.
            tracing::warn!(error = %e, "could not wake a parked client");
            Stream::Closed
        });
        self.tasks.spawn(session.run());
    }

    /// Takes the clients `pick` chooses out of the lot (then resumed, with
    /// the lock released): a walk of every slot, for the rare wakes (stops,
    /// idle timeouts).
    fn take(&self, mut pick: impl FnMut(&Parked) -> bool) -> Vec<Parked> {
        let mut inner = self.lock();
        let chosen: Vec<usize> = (0..inner.slots.len())
            .filter(|&slot| inner.slots[slot].as_ref().is_some_and(&mut pick))
            .collect();
        let taken = self.take_slots(&mut inner, &chosen);
        inner.next_wake = inner.slots.iter().flatten().filter_map(|p| p.wake_at).min();
        taken
    }

    /// Takes these slots' clients out of the lot and of its epoll set. The
    /// next wake may then be later than `next_wake` says: the watcher finds
    /// nothing due then, and looks again.
    fn take_slots(&self, inner: &mut Inner, slots: &[usize]) -> Vec<Parked> {
        let mut taken = Vec::with_capacity(slots.len());
        for &slot in slots {
            if let Some(p) = inner.slots.get_mut(slot).and_then(Option::take) {
                let _ = self.epoll.delete(p.socket.fd());
                inner.free.push(slot);
                taken.push(p);
            }
        }
        inner.count -= taken.len();
        taken
    }

    fn resume_all(&self, taken: Vec<Parked>, spoke: bool) {
        if let Some(shared) = self.shared.upgrade() {
            shared.parked.fetch_sub(taken.len(), Ordering::Relaxed);
        }
        for p in taken {
            self.resume(p, spoke);
        }
    }

    /// The clients whose sockets are ready (data, or the client left):
    /// taken by their slots, without a walk of the lot.
    fn ready(&self) -> Vec<Parked> {
        let mut taken = Vec::new();
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "parked clients: epoll_wait failed");
                    break;
                }
            };
            let slots: Vec<usize> = events[..n].iter().map(|e| e.data() as usize).collect();
            // Out of the set as they are taken: the next wait does not
            // see them again.
            taken.extend(self.take_slots(&mut self.lock(), &slots));
            if n < events.len() {
                break;
            }
        }
        taken
    }

    /// Stops watching once empty; false if clients are still parked.
    fn retire_if_empty(&self) -> bool {
        let mut inner = self.lock();
        if inner.count > 0 {
            return false;
        }
        inner.watched = false;
        // The slots a crowd needed go with it (they cannot shrink while
        // one is taken: a slot's place is its socket's epoll token).
        inner.slots = Vec::new();
        inner.free = Vec::new();
        true
    }
}

/// The lot's epoll set, for tokio's reactor.
struct EpollFd(Arc<Lot>);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.epoll.0.as_raw_fd()
    }
}

/// Watches a lot until it is empty.
async fn watch(lot: Arc<Lot>) {
    // SAFETY: the descriptor is the lot's epoll set, which `EpollFd`'s
    // `Arc<Lot>` keeps open (and the same) for as long as the `AsyncFd`.
    let registered =
        unsafe { AsyncFd::register_with_interest(EpollFd(lot.clone()), Interest::READABLE) };
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            let (_, e) = e.into_parts();
            tracing::warn!(error = %e, "cannot watch parked clients; waking them");
            let all = lot.take(|_| true);
            lot.resume_all(all, false);
            lot.retire_if_empty();
            return;
        }
    };
    loop {
        let wake_at = lot.lock().next_wake;
        let due = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let (woken, spoke) = tokio::select! {
            ready = fd.readable() => match ready {
                Ok(mut guard) => {
                    let ready = lot.ready();
                    guard.clear_ready();
                    (ready, true)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "parked clients: reactor failed; waking them");
                    (lot.take(|_| true), false)
                }
            },
            () = lot.signal.notify.notified() => {
                let stopped = match lot.signal.stops.swap(false, Ordering::AcqRel) {
                    true => lot.take(|p| p.session.login.registration.control.stop_requested()),
                    // Only an earlier idle timeout: look again.
                    false => Vec::new(),
                };
                (stopped, false)
            }
            () = due => {
                let now = Instant::now();
                (lot.take(|p| p.wake_at.is_some_and(|t| t <= now)), false)
            }
        };
        lot.resume_all(woken, spoke);
        if lot.retire_if_empty() {
            return;
        }
    }
}
