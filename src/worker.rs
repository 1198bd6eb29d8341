//! Worker threads for `worker_model = "per_core"`: one single-threaded
//! runtime per core, as PgBouncer runs one event loop.
//!
//! Why: on tokio's work-stealing runtime a transaction's wake-ups often
//! cross threads (the client's task on one worker, the server's readiness
//! seen on the other), and each crossing parks or wakes a thread. On a
//! machine whose cores PostgreSQL shares, that cost is paid on every
//! transaction (docs/benchmarks.md, issue 19). Here each client lives on one
//! worker for its whole life, and the servers it opens are registered with
//! that worker's reactor; the pool lends a client a server of its own
//! worker first ([`current`]), so most transactions never leave one thread.
//!
//! The main thread's runtime is worker 0 and also runs everything else
//! (signals, the console, monitors, maintenance); [`Workers`] starts the
//! others and hands them logins round-robin.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

thread_local! {
    static CURRENT: Cell<u16> = const { Cell::new(0) };
}

/// The worker this thread runs (0 on the main runtime and on every thread of
/// a work-stealing runtime).
pub fn current() -> u16 {
    CURRENT.with(Cell::get)
}

/// The other workers' runtimes, running until this is dropped.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// No extra workers: everything runs on the caller's runtime.
    pub fn none() -> Self {
        Self {
            handles: Vec::new(),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            threads: Vec::new(),
        }
    }

    /// Starts `count` more workers (numbered 1..=count), each a thread
    /// driving its own current-thread runtime.
    ///
    /// # Errors
    /// A thread or runtime could not be started.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Self::none();
        for n in 1..=count {
            let id = u16::try_from(n).unwrap_or(u16::MAX);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.handles.push(rt.handle().clone());
            let stop = workers.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("pgwarden-worker-{n}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(id));
                    rt.block_on(stop.cancelled());
                    // Sessions still here end with the process.
                    rt.shutdown_background();
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// How many workers serve clients, the main runtime included.
    pub fn count(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs a new client's task on the next worker in turn: `serve` gets
    /// the socket registered with that worker's reactor. Round-robin keeps
    /// the workers' client counts within one of each other.
    pub fn spawn_client<S, F, Fut>(&self, tracker: &TaskTracker, socket: S, serve: F)
    where
        S: Rehome,
        F: FnOnce(S) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.count();
        let Some(handle) = turn.checked_sub(1).and_then(|i| self.handles.get(i)) else {
            tracker.spawn(serve(socket));
            return;
        };
        // Re-registered on the worker: readiness must reach the thread that
        // polls this client, not the acceptor's.
        let std = match socket.leave() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a client to a worker");
                return;
            }
        };
        tracker.spawn_on(
            async move {
                match S::arrive(std) {
                    Ok(socket) => serve(socket).await,
                    Err(e) => tracing::warn!(error = %e, "could not register a client"),
                }
            },
            handle,
        );
    }
}

/// A socket that can leave one reactor and register with another.
pub trait Rehome: Sized + Send + 'static {
    type Std: Send + 'static;
    fn leave(self) -> std::io::Result<Self::Std>;
    fn arrive(std: Self::Std) -> std::io::Result<Self>;
}

impl Rehome for tokio::net::TcpStream {
    type Std = std::net::TcpStream;
    fn leave(self) -> std::io::Result<Self::Std> {
        self.into_std()
    }
    fn arrive(std: Self::Std) -> std::io::Result<Self> {
        Self::from_std(std)
    }
}

impl Rehome for tokio::net::UnixStream {
    type Std = std::os::unix::net::UnixStream;
    fn leave(self) -> std::io::Result<Self::Std> {
        self.into_std()
    }
    fn arrive(std: Self::Std) -> std::io::Result<Self> {
        Self::from_std(std)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
