//! Wiring: the listeners, the accept loop that hands each login to the
//! client half or the console, background maintenance, and shutdown.
//!
//! Owns: [`Proxy`] and the tasks it starts. Must not: contain protocol
//! logic. It is the top of the module graph: nothing imports it.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::client;
use crate::config::{Loaded, ProxySettings, WorkerModel};
use crate::error::ProxyError;
use crate::net::Stream;
use crate::shared::Shared;
use crate::topology::monitor;
use crate::worker::Workers;

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The Unix-domain socket's path, with `unix_socket_dir`.
    pub unix_path: Option<std::path::PathBuf>,
    /// The HTTP endpoints' address, with `admin_listen`.
    pub admin_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    tracker: TaskTracker,
    /// Held so the workers run as long as the proxy.
    _workers: Arc<Workers>,
    /// Copies of the listeners, with `--takeover`.
    handable: Option<Handable>,
}

/// The listening sockets of a process taken over (`--takeover`).
pub struct Inherited {
    pub listen: std::net::TcpListener,
    pub admin: Option<std::net::TcpListener>,
}

/// The listening sockets as descriptors, to hand to a new process.
pub struct Handable {
    pub listen: OwnedFd,
    pub admin: Option<OwnedFd>,
}

/// Runs the sessions of clients handed over by the process this one took
/// over from.
#[derive(Clone)]
pub struct Adopter {
    pub shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl Adopter {
    /// Starts the session of a handed-over client on its socket.
    pub fn adopt(&self, fd: OwnedFd, handed: Box<crate::handoff::HandedClient>) {
        let stream = match adopt_stream(fd) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a handed-over client's socket is unusable");
                return;
            }
        };
        let shared = self.shared.clone();
        self.tracker.spawn(async move {
            match client::resume::resume(stream, shared.clone(), handed).await {
                Ok(session) => session.run().await,
                Err((mut stream, e)) => {
                    shared.pooler_error(&e, "handed-over client refused");
                    client::reject(&mut stream, &e).await;
                }
            }
        });
    }
}

/// A descriptor from the hand-over socket as a client stream (TCP or
/// Unix-domain, whichever it is).
fn adopt_stream(fd: OwnedFd) -> std::io::Result<Stream> {
    let socket = socket2::Socket::from(fd);
    socket.set_nonblocking(true)?;
    let unix = socket.local_addr()?.family() == libc::AF_UNIX as libc::sa_family_t;
    let fd = OwnedFd::from(socket);
    Ok(match unix {
        true => Stream::Unix(tokio::net::UnixStream::from_std(fd.into())?),
        false => {
            let tcp = TcpStream::from_std(fd.into())?;
            let _ = tcp.set_nodelay(true);
            Stream::Tcp(tcp)
        }
    })
}

impl Proxy {
    /// Binds the listener and starts accepting and maintaining pools.
    ///
    /// # Errors
    /// The listen address cannot be bound.
    pub async fn start(loaded: Loaded) -> std::io::Result<Proxy> {
        Self::start_with(loaded, None, false).await
    }

    /// As [`Proxy::start`], on the listening sockets of the process this
    /// one takes over from (`--takeover`) when there are some; keeping
    /// copies of its own to hand to the next one when `handable`.
    ///
    /// # Errors
    /// The listen address cannot be bound, or an inherited socket used.
    pub async fn start_with(
        loaded: Loaded,
        inherited: Option<Inherited>,
        handable: bool,
    ) -> std::io::Result<Proxy> {
        let (listener, http) = match inherited {
            Some(i) => (
                TcpListener::from_std(i.listen)?,
                i.admin.map(TcpListener::from_std).transpose()?,
            ),
            None => (
                match loaded.config.proxy.so_reuseport {
                    true => bind_reuseport(&loaded.config.proxy.listen).await?,
                    false => bind(&loaded.config.proxy.listen, "listen").await?,
                },
                match &loaded.config.proxy.admin_listen {
                    Some(a) => Some(bind(a, "admin_listen").await?),
                    None => None,
                },
            ),
        };
        let addr = listener.local_addr()?;
        if loaded.config.proxy.tcp_defer_accept > 0 {
            crate::net::tcp::defer_accept(&listener, loaded.config.proxy.tcp_defer_accept);
        }
        let unix = bind_unix(&loaded.config.proxy, addr.port())?;
        let unix_path = unix.as_ref().map(|u| u.path().to_owned());
        // Only kept for a takeover: a copy keeps the socket listening
        // after the accept loop has closed its own, which under
        // `so_reuseport` would strand the connections the kernel still
        // queues on it.
        let handable = match handable {
            true => Some(Handable {
                listen: listener.as_fd().try_clone_to_owned()?,
                admin: http
                    .as_ref()
                    .map(|h| h.as_fd().try_clone_to_owned())
                    .transpose()?,
            }),
            false => None,
        };
        let admin_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        let workers = Arc::new(start_workers(&loaded.config.proxy)?);
        let shared = Shared::new(loaded);
        let tracker = shared.tasks.clone();
        tracker.spawn(accept_loop(
            Listener::Tcp(listener),
            shared.clone(),
            tracker.clone(),
            workers.clone(),
        ));
        if let Some(unix) = unix {
            tracing::info!(path = %unix.path().display(), "pgwarden listening");
            tracker.spawn(accept_loop(
                Listener::Unix(unix),
                shared.clone(),
                tracker.clone(),
                workers.clone(),
            ));
        }
        tokio::spawn(maintain_loop(shared.clone()));
        start_monitors(&shared);
        if let Some(http) = http {
            tokio::spawn(crate::metrics::http::serve(http, shared.clone()));
        }
        tracing::info!(%addr, "pgwarden listening");
        Ok(Proxy {
            addr,
            unix_path,
            admin_addr,
            shared,
            tracker,
            _workers: workers,
            handable,
        })
    }

    /// Copies of the listening sockets, for the process that takes over
    /// from this one.
    ///
    /// # Errors
    /// The proxy was started without them, or they cannot be copied.
    pub fn handable(&self) -> std::io::Result<Handable> {
        let h = self.handable.as_ref().ok_or_else(|| {
            std::io::Error::other("started without keeping its listeners for a takeover")
        })?;
        Ok(Handable {
            listen: h.listen.try_clone()?,
            admin: h.admin.as_ref().map(OwnedFd::try_clone).transpose()?,
        })
    }

    /// What runs the sessions of clients handed over to this process.
    pub fn adopter(&self) -> Adopter {
        Adopter {
            shared: self.shared.clone(),
            tracker: self.tracker.clone(),
        }
    }

    /// Stops accepting, asks idle clients to leave (57P01), lets open
    /// transactions finish, and waits up to `timeout` for every client.
    /// Returns true if all left in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.shared.begin_shutdown();
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }

    /// After `SHUTDOWN WAIT_FOR_CLIENTS`: resolves once every client has
    /// left by itself (the listeners are closed already).
    pub async fn drained(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub fn client_count(&self) -> usize {
        self.shared.admission.clients()
    }
}

/// Under `worker_model = "per_core"`, `workers` event loops, the caller's
/// runtime being the first.
fn start_workers(proxy: &ProxySettings) -> std::io::Result<Workers> {
    if proxy.worker_model != WorkerModel::PerCore {
        return Ok(Workers::none());
    }
    Workers::start(proxy.worker_count().saturating_sub(1))
}

/// Where clients come in: the TCP listener, and the Unix-domain socket
/// when `unix_socket_dir` is set.
enum Listener {
    Tcp(TcpListener),
    /// Owns the socket file: removed when the loop ends.
    Unix(crate::net::unix::UnixSocket),
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    workers: Arc<Workers>,
) {
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            _ = shared.shutdown.cancelled() => break,
            _ = shared.draining.cancelled() => break,
        };
        match accepted {
            Ok(socket) => admit(socket, &shared, &tracker, &workers),
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Connections the kernel has completed but nobody accepted yet would be
    // reset when the listener closes: take them in first. Under
    // `so_reuseport`, only those queued here are; with the sysctl
    // net.ipv4.tcp_migrate_req = 1 the kernel hands any that arrive
    // between this and the close to the new process.
    while let Some(Ok(socket)) = accept(&listener).now_or_never() {
        admit(socket, &shared, &tracker, &workers);
    }
}

/// Starts the login and session of one accepted client on a worker.
fn admit(socket: Accepted, shared: &Arc<Shared>, tracker: &TaskTracker, workers: &Workers) {
    let (budget, tcp) = {
        let loaded = shared.config.load();
        let p = &loaded.config.proxy;
        (p.login_budget(), p.tcp_options())
    };
    let ticket = shared.admission.enter(budget);
    let (shared, sessions) = (shared.clone(), tracker.clone());
    match socket {
        Accepted::Tcp(s) => {
            let _ = s.set_nodelay(true);
            tcp.apply(&s);
            workers.spawn_client(tracker, s, move |s| {
                serve_client(Stream::Tcp(s), shared, ticket, sessions)
            });
        }
        Accepted::Unix(s) => workers.spawn_client(tracker, s, move |s| {
            serve_client(Stream::Unix(s), shared, ticket, sessions)
        }),
    }
}

enum Accepted {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(u) => u.listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Logs one accepted client in (or refuses it), then runs its session or
/// console as a task of its own.
async fn serve_client(
    socket: Stream,
    shared: Arc<Shared>,
    ticket: Result<crate::admission::LoginTicket, ProxyError>,
    sessions: TaskTracker,
) {
    let ticket = match ticket {
        Ok(t) => t,
        Err(e) => {
            shared.pooler_error(&e, "connection refused");
            refuse(socket, &e).await;
            return;
        }
    };
    let session = tokio::select! {
        s = client::login(socket, shared.clone(), &ticket) => s,
        () = ticket.evicted() => None,
    };
    drop(ticket);
    match session {
        Some(client::Outcome::Session(session)) => {
            sessions.spawn(session.run());
        }
        Some(client::Outcome::Console(c)) => {
            let client::ConsoleLogin {
                io,
                rbuf,
                access,
                user,
                slot,
                registration,
            } = c;
            sessions.spawn(async move {
                crate::admin::serve(io, rbuf, shared, access, user).await;
                drop((slot, registration));
            });
        }
        None => {}
    }
}

/// Answers a client refused at the door with `e` once it has sent its
/// startup packet (an 'N' to SSLRequest first, so libpq reads the error).
async fn refuse(socket: Stream, e: &ProxyError) {
    let mut stream = crate::net::MessageStream::new(socket);
    let deadline = Duration::from_secs(5);
    let _ = tokio::time::timeout(deadline, async {
        loop {
            match crate::wire::startup::decode_startup(&stream.rbuf) {
                Ok(Some((crate::wire::startup::StartupPacket::SslRequest, used)))
                | Ok(Some((crate::wire::startup::StartupPacket::GssEncRequest, used))) => {
                    bytes::Buf::advance(&mut stream.rbuf, used);
                    if stream.write_all(b"N").await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {
                    if stream.fill().await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    client::reject(&mut stream.io, e).await;
}

/// The Unix-domain socket of `unix_socket_dir` for TCP port `port`.
fn bind_unix(
    proxy: &ProxySettings,
    port: u16,
) -> std::io::Result<Option<crate::net::unix::UnixSocket>> {
    use crate::net::unix;
    if proxy.unix_socket_dir.is_empty() {
        return Ok(None);
    }
    let path = unix::socket_path(&proxy.unix_socket_dir, port);
    // The config check has refused a bad mode already.
    let mode = unix::parse_mode(&proxy.unix_socket_mode).unwrap_or(0o777);
    unix::bind(&path, mode, &proxy.unix_socket_group)
        .map(Some)
        .map_err(|e| std::io::Error::new(e.kind(), format!("unix_socket_dir: {e}")))
}

/// Binds, with an error that names the key and the address (the OS's own
/// "Address already in use" or lookup failure says neither).
async fn bind(addr: &str, key: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{key} = \"{addr}\": {e}")))
}

/// Binds the client listener with `SO_REUSEPORT` (`so_reuseport`): the
/// kernel then spreads new connections over every pgwarden listening on
/// the port, which is how a new process takes over from a draining one.
async fn bind_reuseport(addr: &str) -> std::io::Result<TcpListener> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("listen = \"{addr}\" (so_reuseport): {e}"))
    };
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await.map_err(named)? {
        let socket = match a {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(named)?;
        socket.set_reuseaddr(true).map_err(named)?;
        socket.set_reuseport(true).map_err(named)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(named(e)),
        }
    }
    Err(last.unwrap_or_else(|| named(std::io::ErrorKind::NotFound.into())))
}

/// What `TcpListener::bind` uses too.
const LISTEN_BACKLOG: u32 = 1024;

/// One topology monitor per database with a topology, until shutdown.
fn start_monitors(shared: &Arc<Shared>) {
    let loaded = shared.config.load();
    for (name, topology) in shared.topologies() {
        let Some(db) = loaded.database(name) else {
            continue;
        };
        let Some((user, password)) = loaded.monitor_login(name) else {
            continue;
        };
        let r = &db.routing;
        let settings = monitor::MonitorSettings {
            dbname: db.dbname.clone().unwrap_or_else(|| name.clone()),
            user,
            password,
            interval: r.monitor_interval.0,
            timeout: r
                .monitor_timeout
                .enabled()
                .unwrap_or(Duration::from_secs(1)),
            rise: r.monitor_rise,
            max_lag_bytes: r.max_replica_lag_bytes,
            max_lag_ms: r.max_replica_lag_ms,
            allowed_auth: loaded.allowed_server_auth(),
            tls: loaded.tls_policy(name),
        };
        tokio::spawn(monitor::run(
            topology.clone(),
            settings,
            shared.shutdown.clone(),
        ));
    }
}

async fn maintain_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trim = crate::trim::Trim::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        let (period, log_stats) = {
            let loaded = shared.config.load();
            let p = &loaded.config.proxy;
            (
                p.stats_period
                    .enabled()
                    .unwrap_or(crate::stats::STATS_PERIOD),
                p.log_stats,
            )
        };
        shared.stats.tick(&shared.pools, period, log_stats);
        if trim.tick(shared.admission.clients()) {
            tracing::debug!("clients left: free memory given back to the system");
        }
        for pool in shared.pools.all() {
            for slot in pool.maintain() {
                let pool = pool.clone();
                tokio::spawn(async move { pool.fill_slot(slot).await });
            }
        }
    }
}
