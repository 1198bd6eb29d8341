//! The `pgwarden` command: `run`, `check` and `quickstart`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use pgwarden::app::Proxy;
use pgwarden::config::{self, Loaded};
use pgwarden::localpg::Cluster;
use pgwarden::notify::{notify, State};

/// `pgwarden --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PGWARDEN_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "pgwarden",
    version = VERSION,
    about = "PostgreSQL connection proxy and pooler"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    ///
    /// Signals: SIGHUP reads the config file again (as the console's
    /// RELOAD); SIGTERM stops accepting, lets open transactions finish for
    /// up to shutdown_timeout, then closes; SIGINT (Ctrl-C) closes at once.
    /// Logs go to stderr; RUST_LOG sets their level (e.g. RUST_LOG=debug,
    /// or RUST_LOG=pgwarden=debug), NO_COLOR turns colours off.
    Run {
        /// The config file (start from proxy.toml.example); string values
        /// may use ${VAR} and ${VAR:-default} from the environment.
        /// Default: proxy.toml.
        #[arg(short, long, env = "PGWARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Run without a file, in front of the one database this URL
        /// names (postgres://user:password@host:port/db): clients log in
        /// with the URL's user and password.
        #[arg(long, env = "PGWARDEN_DATABASE_URL", conflicts_with = "config")]
        database_url: Option<String>,
        /// A streaming replica of --database-url's database that reads go
        /// to (repeatable; the same user and database).
        #[arg(long, requires = "database_url")]
        replica_url: Vec<String>,
        /// With --database-url: where clients connect.
        #[arg(long, default_value = "127.0.0.1:6432", requires = "database_url")]
        listen: String,
        /// With --database-url: the console's HTTP side (/health, /ready,
        /// /metrics); none by default.
        #[arg(long, requires = "database_url")]
        admin_listen: Option<String>,
        /// Online restart: take over the listening sockets and clients of
        /// the pgwarden listening on this Unix socket path, if one does,
        /// then listen on it for the next. Start every generation with
        /// the same path.
        #[arg(long)]
        takeover: Option<PathBuf>,
    },
    /// Validate a config file and exit (non-zero on any problem): reads
    /// every file it names (TLS certificates, auth_file, auth_hba_file).
    Check {
        /// The config file to check.
        #[arg(short, long, default_value = "proxy.toml", env = "PGWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Translate a pgbouncer.ini (its %include files, and optionally its
    /// userlist, whose passwords go into [users]) into proxy.toml on
    /// stdout. Each setting pgwarden cannot express becomes a
    /// "# not supported: key = value (why)" comment and a warning on stderr.
    ImportPgbouncer {
        /// The pgbouncer.ini to translate.
        ini: PathBuf,
        /// A userlist.txt to inline as [users.NAME] passwords.
        #[arg(long)]
        userlist: Option<PathBuf>,
    },
    /// Exit 0 when the console's HTTP side answers 200 at URL (a health
    /// check for images without curl: Docker's HEALTHCHECK, exec probes).
    Probe {
        /// e.g. http://127.0.0.1:6433/health or .../ready
        #[arg(default_value = "http://127.0.0.1:6433/health")]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Start a local primary with streaming replicas and the proxy in front.
    Quickstart {
        /// Where the PostgreSQL data lives; reused on the next run.
        #[arg(long, default_value = "/tmp/pgwarden-quickstart")]
        state_dir: PathBuf,
        /// Port of the primary; replicas use the following ports.
        #[arg(long, default_value_t = 15432)]
        pg_port: u16,
        /// Streaming replicas to start next to the primary.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Where the proxy listens; the console's HTTP side (/metrics)
        /// takes the next port.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
    },
}

/// jemalloc keeps objects of one size together, so the pages of objects a
/// crowd of clients freed (parked clients' tasks, the clients that left)
/// empty out whole and go back to the system; the C library's allocator
/// leaves them between live objects (docs/benchmarks.md, issue 19).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `malloc_conf`, read before `main` (a C string: `&u8` is a
/// thin pointer to its first byte). A background thread returns pages
/// emptied for a second, so that the memory of clients that left goes
/// back even while the proxy is quiet; without it jemalloc purges only as
/// it allocates.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Logs on stderr (stdout is for what a command prints, like the
    // quickstart's DATABASE_URL), plus `logfile`/`syslog` once configured.
    pgwarden::logging::init();
    match cli.command {
        Cmd::Check { config } => check(&config),
        Cmd::Probe { url, timeout } => {
            match pgwarden::net::probe::probe(&url, Duration::from_secs(timeout)) {
                Ok(()) => Ok(()),
                Err(e) => {
                    eprintln!("{url}: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::ImportPgbouncer { ini, userlist } => {
            let imported = pgwarden::import::pgbouncer_ini(&ini, userlist.as_deref())?;
            for w in &imported.warnings {
                eprintln!("pgwarden import-pgbouncer: {w}");
            }
            print!("{}", imported.toml);
            Ok(())
        }
        Cmd::Run {
            config,
            database_url,
            replica_url,
            listen,
            admin_listen,
            takeover,
        } => {
            let loaded = match database_url {
                Some(url) => {
                    let options = config::UrlOptions {
                        listen,
                        admin_listen,
                    };
                    config::from_database_url(&url, &replica_url, &options).map_err(|problems| {
                        let lines: Vec<String> = problems
                            .iter()
                            .map(|p| format!("{}: {}", p.key, p.what))
                            .collect();
                        anyhow::anyhow!("{}", lines.join("\n"))
                    })?
                }
                None => {
                    let path = config.unwrap_or_else(|| PathBuf::from("proxy.toml"));
                    config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            pgwarden::logging::configure(&loaded.config.proxy.log_settings());
            runtime(&loaded)?.block_on(serve(loaded, None, takeover))
        }
        Cmd::Quickstart {
            state_dir,
            pg_port,
            replicas,
            listen,
        } => quickstart(&state_dir, pg_port, replicas, &listen),
    }
}

fn check(path: &Path) -> Result<()> {
    match config::load(path) {
        Ok(loaded) => {
            println!(
                "{}: OK ({} databases, {} users)",
                path.display(),
                loaded.config.databases.len(),
                loaded.users.len()
            );
            if loaded.config.databases.is_empty() {
                eprintln!(
                    "note: no database is configured: clients can reach only the console \
                     until a [databases.NAME] table is added (a reload takes it)"
                );
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn runtime(loaded: &Loaded) -> Result<tokio::runtime::Runtime> {
    raise_fd_limit();
    let proxy = &loaded.config.proxy;
    let workers = proxy.worker_count();
    // Per core, this thread is the first worker (`app` starts the others);
    // one worker is a plain event loop on this thread, as PgBouncer runs:
    // it parks and wakes less than a one-thread work-stealing pool.
    let single = workers == 1 || proxy.worker_model == pgwarden::config::WorkerModel::PerCore;
    let mut b = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if !single {
        b.worker_threads(workers);
    }
    b.enable_all().build().context("starting the runtime")
}

/// Lets `max_client_conn` in the tens of thousands work without tuning ulimit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Called once the listener is bound (quickstart prints the URL).
type OnReady = Box<dyn FnOnce(&Proxy) + Send>;

/// Runs the proxy until SIGTERM (drain up to `shutdown_timeout`) or SIGINT
/// (no wait); SIGHUP reloads the config file.
async fn serve(loaded: Loaded, on_ready: Option<OnReady>, takeover: Option<PathBuf>) -> Result<()> {
    let shutdown_timeout = loaded.config.proxy.shutdown_timeout.0;
    if takeover.is_some() && !loaded.config.proxy.unix_socket_dir.is_empty() {
        anyhow::bail!("--takeover does not carry the unix_socket_dir socket yet: set unix_socket_dir = \"\" or restart without --takeover");
    }
    let taken = match &takeover {
        Some(path) => pgwarden::takeover::take(path)
            .with_context(|| format!("taking over from {}", path.display()))?,
        None => None,
    };
    // Before binding: a second pgwarden of the same config stops here. A
    // takeover's old process holds the file until it exits.
    let _pidfile = match loaded.config.proxy.pidfile.as_str() {
        "" => None,
        _ if taken.is_some() => None,
        path => Some(pgwarden::pidfile::PidFile::create(Path::new(path))?),
    };
    let (inherited, taken_sock) = match taken {
        Some(t) => (Some(t.inherited), Some(t.sock)),
        None => (None, None),
    };
    let proxy = Proxy::start_with(loaded, inherited, takeover.is_some())
        .await
        .context("binding the listen address")?;
    let offer = match (takeover, taken_sock) {
        (Some(path), Some(sock)) => Some(pgwarden::takeover::receive(
            sock,
            proxy.adopter(),
            path,
            proxy.handable()?,
        )),
        (Some(path), None) => Some(
            pgwarden::takeover::offer(&path, proxy.handable()?, proxy.shared.clone())
                .with_context(|| format!("listening for a takeover on {}", path.display()))?,
        ),
        _ => None,
    };
    if let Some(f) = on_ready {
        f(&proxy);
    }
    notify(State::Ready, &format!("listening on {}", proxy.addr));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let wait = loop {
        tokio::select! {
            _ = term.recv() => break shutdown_timeout,
            _ = int.recv() => break Duration::ZERO,
            _ = hup.recv() => {
                notify(State::Reloading, "reloading the configuration");
                reload(&proxy);
                notify(State::Ready, &format!("listening on {}", proxy.addr));
            }
            // SHUTDOWN from the admin console.
            _ = proxy.shared.shutdown.cancelled() => break shutdown_timeout,
            // SHUTDOWN WAIT_FOR_CLIENTS: no longer listening; exit once the
            // last client has left (a signal still ends it sooner).
            () = proxy.drained(), if proxy.shared.draining.is_cancelled() => {
                tracing::info!("the last client has left after SHUTDOWN WAIT_FOR_CLIENTS");
                return Ok(());
            }
            _ = proxy.shared.draining.cancelled(), if !proxy.shared.draining.is_cancelled() => {
                tracing::info!(clients = proxy.client_count(), "waiting for every client to leave");
                notify(State::Stopping, "SHUTDOWN WAIT_FOR_CLIENTS: waiting for clients to leave");
            }
        }
    };
    tracing::info!(clients = proxy.client_count(), "shutting down");
    notify(
        State::Stopping,
        &format!("draining {} clients", proxy.client_count()),
    );
    if !proxy.shutdown(wait).await {
        tracing::info!(clients = proxy.client_count(), "closing remaining clients");
    }
    if let Some(offer) = offer {
        let shared = proxy.shared.clone();
        tokio::task::spawn_blocking(move || offer.finish(&shared, Duration::from_secs(10))).await?;
    }
    Ok(())
}

fn reload(proxy: &Proxy) {
    let current = proxy.shared.config.load_full();
    let Some(path) = current.path.clone() else {
        return;
    };
    let applied = config::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|new| proxy.shared.reload(new).map_err(|e| e.to_string()));
    match applied {
        Ok(()) => tracing::info!(file = %path.display(), "configuration reloaded"),
        Err(e) => tracing::error!("reload refused, keeping the running configuration:\n{e}"),
    }
}

fn quickstart(state_dir: &Path, pg_port: u16, replicas: usize, listen: &str) -> Result<()> {
    let cluster = Cluster::new(state_dir, pg_port, replicas)?;
    let fresh = !cluster.exists();
    let left_running = !fresh && cluster.is_running(&cluster.primary);
    eprintln!(
        "{} PostgreSQL primary + {} in {} ...",
        match (fresh, left_running) {
            (true, _) => "Creating",
            (false, true) => "Reusing the still running",
            (false, false) => "Starting",
        },
        plural(replicas, "replica", "replicas"),
        state_dir.display()
    );
    if let Err(e) = cluster.start() {
        cluster.stop();
        return Err(e.into());
    }
    let setup = "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN \
                 CREATE ROLE app LOGIN PASSWORD 'app'; END IF; END $$;";
    let result = cluster.psql("postgres", setup).and_then(|_| {
        let exists = cluster.psql(
            "postgres",
            "SELECT 1 FROM pg_database WHERE datname = 'app'",
        )?;
        if exists.is_empty() {
            cluster.psql("postgres", "CREATE DATABASE app OWNER app")?;
        }
        Ok(())
    });
    if let Err(e) = result {
        cluster.stop();
        return Err(e.into());
    }
    let (config_path, edited) = match quickstart_config(state_dir, &cluster, listen) {
        Ok(c) => c,
        Err(e) => {
            cluster.stop();
            return Err(e);
        }
    };
    let loaded = match config::load(&config_path) {
        Ok(l) => l,
        Err(e) => {
            cluster.stop();
            return Err(anyhow::anyhow!("{e}"));
        }
    };
    let rt = runtime(&loaded)?;
    let admin_user = loaded.config.proxy.admin_users.0.first().cloned();
    let announce = Box::new(move |proxy: &Proxy| {
        let banner =
            quickstart_banner(proxy, &config_path, edited, admin_user.as_deref(), replicas);
        // One write, errors ignored: whoever reads our stdout may stop
        // reading (a closed pipe must not bring the proxy down).
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut out, banner.as_bytes());
        let _ = std::io::Write::flush(&mut out);
    });
    let result = rt.block_on(serve(loaded, Some(announce), None));
    drop(rt);
    eprintln!("Stopping PostgreSQL ...");
    cluster.stop();
    result
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The quickstart's `proxy.toml`: written from the cluster, unless the
/// user edited the one written last time (then kept, and said so). The
/// text last written sits next to it, to tell an edit from a stale file.
fn quickstart_config(state_dir: &Path, cluster: &Cluster, listen: &str) -> Result<(PathBuf, bool)> {
    let replica_list: Vec<String> = cluster
        .replicas
        .iter()
        .map(|r| format!("\"{}\"", r.addr()))
        .collect();
    // The console and HTTP side on loopback, one port above `listen`.
    let (host, port) = listen
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .context("--listen must be HOST:PORT")?;
    let admin_host = if host == "0.0.0.0" || host == "*" {
        "127.0.0.1"
    } else {
        host
    };
    let toml = format!(
        "# Written by `pgwarden quickstart`. Edit freely: an edited file is kept.\n\
         [proxy]\nlisten = \"{listen}\"\nauth_type = \"scram-sha-256\"\npool_mode = \"transaction\"\n\
         max_client_conn = 10000\ndefault_pool_size = 20\n\
         admin_users = [\"admin\"]\nadmin_listen = \"{admin_host}:{}\"\n\n\
         [users.app]\npassword = \"app\"\n\n[users.admin]\npassword = \"admin\"\n\n\
         [databases.app]\nprimary = \"{}\"\nreplicas = [{}]\n\n\
         [databases.app.routing]\nmonitor_user = \"postgres\"\nmonitor_password = \"{}\"\n",
        port.saturating_add(1),
        cluster.primary.addr(),
        replica_list.join(", "),
        cluster.superuser_password
    );
    let config_path = state_dir.join("proxy.toml");
    let last_written = state_dir.join(".proxy.toml.written");
    let current = std::fs::read_to_string(&config_path).ok();
    let previous = std::fs::read_to_string(&last_written).ok();
    let edited = current.is_some() && current != previous;
    if !edited {
        std::fs::write(&config_path, &toml)?;
        std::fs::write(&last_written, &toml)?;
    }
    Ok((config_path, edited))
}

fn quickstart_banner(
    proxy: &Proxy,
    config_path: &Path,
    edited: bool,
    admin_user: Option<&str>,
    replicas: usize,
) -> String {
    let (host, port) = (proxy.addr.ip(), proxy.addr.port());
    let mut banner = format!(
        "\npgwarden is running in front of a local primary and {}.\n\
         \x20 psql:         psql \"postgres://app:app@{host}:{port}/app\"\n\
         \x20 DATABASE_URL=postgres://app:app@{host}:{port}/app\n",
        plural(replicas, "replica", "replicas")
    );
    match (admin_user, edited) {
        (Some("admin"), false) => banner.push_str(&format!(
            "\x20 console:      psql \"postgres://admin:admin@{host}:{port}/pgwarden\"   (SHOW HELP)\n"
        )),
        (Some(user), _) => banner.push_str(&format!(
            "\x20 console:      psql -h {host} -p {port} -U {user} pgwarden\n"
        )),
        (None, _) => {}
    }
    if let Some(admin) = proxy.admin_addr {
        banner.push_str(&format!(
            "\x20 metrics:      http://{admin}/metrics   health: http://{admin}/health\n"
        ));
    }
    banner.push_str(&format!(
        "\x20 config:       {}{}\n\
         For trying pgwarden out only: this PostgreSQL runs with fsync=off and throw-away passwords.\n\
         Press Ctrl-C to stop the proxy and PostgreSQL.\n",
        config_path.display(),
        if edited { " (edited by you: kept)" } else { "" }
    ));
    banner
}
