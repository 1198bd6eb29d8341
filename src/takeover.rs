//! Online restart without dropping clients: `pgwarden run --takeover PATH`.
//!
//! Every process started with `--takeover PATH` first tries PATH: if a
//! pgwarden listens there, it asks it for its listening sockets and its
//! clients ([`take`]); then it listens on PATH itself, for the next one
//! ([`offer`]). So the same command line serves every generation.
//!
//! The old process, once asked: sends copies of its listeners (the new
//! process accepts on them at once: no connection is refused or reset),
//! stops accepting, and begins its shutdown, in which every session hands
//! itself over between two transactions (idle ones at once, busy ones when
//! their transaction ends; see `client::session::handover`). What cannot
//! be carried (TLS, session mode) gets 57P01 as in any shutdown. It exits
//! when the last session has gone, saying so on the socket.
//!
//! Owns: the exchange on PATH and the threads that run it (blocking I/O:
//! it happens once per restart). The messages are [`crate::handoff`]'s.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::app::{Adopter, Handable, Inherited};
use crate::handoff::channel::{self, ChannelError};
use crate::handoff::{Message, VERSION};
use crate::shared::Shared;

/// A process taken over: its hand-over socket, and its listeners.
pub struct Taken {
    pub sock: UnixStream,
    pub inherited: Inherited,
}

/// Asks the pgwarden on `path`, if any, for its listening sockets.
/// `Ok(None)`: nobody listens there (a first start).
///
/// # Errors
/// Something listens on `path` but the exchange failed.
pub fn take(path: &Path) -> Result<Option<Taken>, ChannelError> {
    let mut sock = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let hello = Message::Hello {
        version: VERSION,
        pid: std::process::id(),
    };
    channel::send(&sock, &hello, &[])?;
    let (msg, mut fds) = channel::recv::<Message>(&mut sock)?;
    let Message::Listeners { admin } = msg else {
        return Err(ChannelError::Unexpected(brief(&msg)));
    };
    if fds.len() != 1 + usize::from(admin) {
        return Err(ChannelError::Unexpected(format!("{} listeners", fds.len())));
    }
    let listen = std::net::TcpListener::from(fds.remove(0));
    let admin = admin.then(|| std::net::TcpListener::from(fds.remove(0)));
    for l in std::iter::once(&listen).chain(admin.as_ref()) {
        l.set_nonblocking(true)?;
    }
    Ok(Some(Taken {
        sock,
        inherited: Inherited { listen, admin },
    }))
}

/// Receives the old process's clients into `adopter` until it says it is
/// done, then offers this process on `path` (see [`offer`]).
pub fn receive(mut sock: UnixStream, adopter: Adopter, path: PathBuf, handable: Handable) -> Offer {
    let offer = Offer::new();
    let ready = offer.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = adopter.clone();
    tokio::spawn(async move {
        while let Some((handed, fd)) = rx.recv().await {
            runner.adopt(fd, handed);
        }
    });
    let shared = adopter.shared.clone();
    std::thread::spawn(move || {
        let mut adopted = 0usize;
        loop {
            match channel::recv::<Message>(&mut sock) {
                Ok((Message::Client(handed), mut fds)) if fds.len() == 1 => {
                    adopted += 1;
                    if tx.send((handed, fds.remove(0))).is_err() {
                        break;
                    }
                }
                Ok((Message::Done { handed, refused }, _)) => {
                    tracing::info!(
                        adopted,
                        handed,
                        refused,
                        "takeover complete: the old process has exited"
                    );
                    break;
                }
                Ok(_) => tracing::warn!("unexpected message on the hand-over socket"),
                Err(e) => {
                    tracing::warn!(error = %e, adopted, "takeover ended early");
                    break;
                }
            }
        }
        // The old process no longer listens on `path`: this one does now.
        offer_on(&path, handable, shared, &ready);
    });
    offer
}

/// This process's side for the next one: whether a takeover began, and
/// the thread's word that it has sent everything.
#[derive(Clone)]
pub struct Offer {
    started: Arc<AtomicBool>,
    finished: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Offer {
    fn new() -> Offer {
        Offer {
            started: Arc::default(),
            finished: Arc::default(),
        }
    }

    /// Whether a new process has taken over.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// After the shutdown has ended every session: closes the outbox and
    /// waits (up to `limit`) until every client and the final word have
    /// been sent.
    pub fn finish(&self, shared: &Shared, limit: Duration) {
        if !self.started() {
            return;
        }
        shared.outbox.close();
        let (lock, cv) = &*self.finished;
        let done = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(done, limit, |d| !*d);
    }

    fn set_finished(&self) {
        let (lock, cv) = &*self.finished;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

/// Listens on `path` for the process that will take over from this one.
///
/// # Errors
/// `path` cannot be bound (another pgwarden listens there).
pub fn offer(path: &Path, handable: Handable, shared: Arc<Shared>) -> std::io::Result<Offer> {
    let listener = bind(path)?;
    let offer = Offer::new();
    let o = offer.clone();
    let path = path.to_owned();
    std::thread::spawn(move || serve(listener, &path, handable, &shared, &o));
    Ok(offer)
}

fn offer_on(path: &Path, handable: Handable, shared: Arc<Shared>, offer: &Offer) {
    match bind(path) {
        Ok(listener) => serve(listener, path, handable, &shared, offer),
        Err(e) => tracing::error!(path = %path.display(), error = %e,
            "cannot listen for the next takeover"),
    }
}

/// Binds `path`, replacing a socket file nobody listens on.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)?;
    // Only this user may take the process's clients.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Reads the new process's Hello (within a few seconds): its process id.
fn greeted(sock: &mut UnixStream) -> Result<u32, ChannelError> {
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (hello, fds) = channel::recv::<Message>(sock)?;
    sock.set_read_timeout(None)?;
    match hello {
        Message::Hello { version, pid } if version == VERSION && fds.is_empty() => Ok(pid),
        other => Err(ChannelError::Unexpected(brief(&other))),
    }
}

/// A message's kind, for an error (a client's state is not logged).
fn brief(msg: &Message) -> String {
    match msg {
        Message::Hello { version, .. } => format!("Hello of version {version}"),
        Message::Listeners { .. } => "Listeners".into(),
        Message::Client(_) => "Client".into(),
        Message::Done { .. } => "Done".into(),
    }
}

/// The old process's side: waits for the new process, hands it the
/// listeners, begins the shutdown, and sends each session that hands
/// itself over.
fn serve(listener: UnixListener, path: &Path, handable: Handable, shared: &Shared, offer: &Offer) {
    let sock = loop {
        match listener.accept() {
            Ok((mut s, _)) => match greeted(&mut s) {
                Ok(pid) => {
                    tracing::info!(pid, "a new process asks to take over");
                    break s;
                }
                Err(e) => tracing::warn!(error = %e, "takeover request refused"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "takeover socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // The new process listens on the path once this one is done.
    drop(listener);
    let _ = std::fs::remove_file(path);
    let fds: Vec<i32> = std::iter::once(&handable.listen)
        .chain(handable.admin.as_ref())
        .map(OwnedFd::as_raw_fd)
        .collect();
    let listeners = Message::Listeners {
        admin: handable.admin.is_some(),
    };
    if let Err(e) = channel::send(&sock, &listeners, &fds) {
        tracing::error!(error = %e, "takeover failed: the listeners could not be sent");
        return;
    }
    tracing::info!("a new process takes over: handing over clients");
    let outbox = shared.outbox.open();
    offer.started.store(true, Ordering::Release);
    shared.begin_shutdown();
    let (mut handed, mut refused) = (0, 0);
    for (client, fd) in outbox {
        match channel::send(&sock, &Message::Client(client), &[fd.as_raw_fd()]) {
            Ok(()) => handed += 1,
            Err(e) => {
                refused += 1;
                tracing::warn!(error = %e, "a client could not be handed over");
            }
        }
    }
    let _ = channel::send(&sock, &Message::Done { handed, refused }, &[]);
    tracing::info!(handed, refused, "takeover: every client handed over");
    offer.set_finished();
}
