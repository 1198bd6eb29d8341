//! A local PostgreSQL primary with streaming replicas, started from the
//! distribution's binaries. Used by `pgwarden quickstart` and by the test
//! harness, so the two run the same, tested code.
//!
//! PostgreSQL refuses to run as root; when we are root, every server
//! command runs as the `postgres` OS user through `runuser`, in directories
//! that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) were not found.\n\
         Install them with:  sudo apt-get install -y postgresql\n\
         or point PGWARDEN_PG_BINDIR at the folder that holds them (see `pg_config --bindir`)."
    )]
    NotFound,
    #[error(
        "running as root needs the `postgres` OS user (apt-get install postgresql creates it)"
    )]
    NoPostgresUser,
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Finds the folder with `initdb`, `pg_ctl`, `pg_basebackup`, `psql`, `pgbench`.
///
/// # Errors
/// `NotFound`, with install instructions.
pub fn find_bindir() -> Result<PathBuf, LocalPgError> {
    let has_tools = |d: &Path| {
        ["initdb", "pg_ctl", "pg_basebackup"]
            .iter()
            .all(|t| d.join(t).exists())
    };
    if let Some(d) = std::env::var_os("PGWARDEN_PG_BINDIR").map(PathBuf::from) {
        if has_tools(&d) {
            return Ok(d);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&d) {
            return Ok(d);
        }
    }
    // Debian keeps server binaries per major version, newest first.
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|d| has_tools(d))
        .ok_or(LocalPgError::NotFound)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One PostgreSQL instance.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub port: u16,
    pub data: PathBuf,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A primary and its streaming replicas under one folder.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub root: PathBuf,
    pub bindir: PathBuf,
    pub primary: Node,
    pub replicas: Vec<Node>,
    /// Password of the `postgres` superuser over TCP.
    pub superuser_password: String,
    as_postgres: bool,
    /// More `postgresql.conf` lines for a new cluster (e.g. a
    /// `shared_preload_libraries` a test needs); replicas inherit them.
    pub extra_conf: String,
    /// A `pg_hba.conf` to use instead of the default one (e.g. `hostssl`
    /// lines only); replicas inherit it.
    pub hba: Option<String>,
}

pub const SUPERUSER_PASSWORD: &str = "postgres";

impl Cluster {
    /// Describes a cluster under `root` with the primary on `base_port`
    /// and replica `i` on `base_port + 1 + i`. Nothing is started.
    ///
    /// # Errors
    /// PostgreSQL's binaries are missing.
    pub fn new(root: &Path, base_port: u16, replicas: usize) -> Result<Cluster, LocalPgError> {
        let bindir = find_bindir()?;
        let as_postgres = is_root();
        let node = |name: String, port: u16| Node {
            data: root.join(&name),
            name,
            port,
        };
        Ok(Cluster {
            root: root.to_owned(),
            bindir,
            primary: node("primary".into(), base_port),
            replicas: (0..replicas)
                .map(|i| node(format!("replica{}", i + 1), base_port + 1 + i as u16))
                .collect(),
            superuser_password: SUPERUSER_PASSWORD.into(),
            as_postgres,
            extra_conf: String::new(),
            hba: None,
        })
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bindir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, mut cmd: Command) -> Result<Output, LocalPgError> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(LocalPgError::Command {
                command: format!("{cmd:?}"),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out)
    }

    fn prepare_root(&self) -> Result<(), LocalPgError> {
        std::fs::create_dir_all(&self.root)?;
        if self.as_postgres {
            let ok = Command::new("id")
                .args(["-u", "postgres"])
                .output()?
                .status
                .success();
            if !ok {
                return Err(LocalPgError::NoPostgresUser);
            }
            self.run({
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&self.root);
                c
            })?;
            // Parents may be root-only (e.g. a 0700 temp dir); postgres must traverse them.
            let mut dir = self.root.clone();
            while let Some(parent) = dir.parent() {
                if parent == Path::new("/") || parent.as_os_str().is_empty() {
                    break;
                }
                let _ = Command::new("chmod").arg("o+x").arg(parent).status();
                dir = parent.to_owned();
            }
        }
        Ok(())
    }

    /// True if the primary's data directory exists already.
    pub fn exists(&self) -> bool {
        self.primary.data.join("PG_VERSION").exists()
    }

    /// Creates the primary (if missing), starts it, then creates (if
    /// missing) and starts each replica.
    ///
    /// # Errors
    /// Any PostgreSQL command failing; its output is in the error.
    pub fn start(&self) -> Result<(), LocalPgError> {
        self.prepare_root()?;
        if !self.exists() {
            self.init_primary()?;
        }
        self.start_node(&self.primary)?;
        for replica in &self.replicas {
            if !replica.data.join("PG_VERSION").exists() {
                self.clone_replica(replica)?;
            }
            self.start_node(replica)?;
        }
        Ok(())
    }

    fn init_primary(&self) -> Result<(), LocalPgError> {
        let pwfile = self.root.join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.superuser_password))?;
        self.prepare_root()?;
        let mut c = self.command("initdb");
        c.arg("-D").arg(&self.primary.data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ]);
        c.arg(format!("--pwfile={}", pwfile.display()));
        self.run(c)?;
        let _ = std::fs::remove_file(&pwfile);
        let conf = format!(
            "\n# added by pgwarden\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 10\nhot_standby = on\nmax_connections = 400\n\
             fsync = off\nfull_page_writes = off\nlogging_collector = off\n{}\n",
            self.root.display(),
            self.extra_conf
        );
        append(&self.primary.data.join("postgresql.conf"), &conf)?;
        let default_hba = "local all all trust\n\
                   host replication all 127.0.0.1/32 trust\n\
                   host all pgw_trust 127.0.0.1/32 trust\n\
                   host all pgw_md5 127.0.0.1/32 md5\n\
                   host all pgw_plain 127.0.0.1/32 password\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        let hba = self.hba.as_deref().unwrap_or(default_hba);
        std::fs::write(self.primary.data.join("pg_hba.conf"), hba)?;
        self.prepare_root()
    }

    fn clone_replica(&self, replica: &Node) -> Result<(), LocalPgError> {
        let mut c = self.command("pg_basebackup");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.primary.port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-D")
        .arg(&replica.data)
        .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        self.run(c)?;
        Ok(())
    }

    /// True if a server runs in the node's data directory (`pg_ctl
    /// status`): e.g. one left by a quickstart that was killed.
    pub fn is_running(&self, node: &Node) -> bool {
        if !node.data.join("postmaster.pid").exists() {
            return false;
        }
        let mut c = self.command("pg_ctl");
        c.arg("-D").arg(&node.data).arg("status");
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().is_ok_and(|s| s.success())
    }

    fn start_node(&self, node: &Node) -> Result<(), LocalPgError> {
        // A server left running (its starter was killed) is used as it is:
        // starting another would fail with "another server might be running".
        if self.is_running(node) {
            return Ok(());
        }
        let log = self.root.join(format!("{}.log", node.name));
        let mut c = self.command("pg_ctl");
        c.arg("-D").arg(&node.data).arg("-l").arg(&log).args([
            "-o",
            &format!("-p {}", node.port),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        self.run(c)?;
        Ok(())
    }

    /// Stops one node at once (`pg_ctl -m immediate`), as a crash would.
    ///
    /// # Errors
    /// pg_ctl failing.
    pub fn kill_node(&self, node: &Node) -> Result<(), LocalPgError> {
        let mut c = self.command("pg_ctl");
        c.arg("-D")
            .arg(&node.data)
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(c).map(|_| ())
    }

    /// Starts one stopped node again.
    ///
    /// # Errors
    /// pg_ctl failing.
    pub fn restart_node(&self, node: &Node) -> Result<(), LocalPgError> {
        self.start_node(node)
    }

    /// Stops every node, replicas first; errors are ignored so that a
    /// half-started cluster still stops.
    pub fn stop(&self) {
        for node in self
            .replicas
            .iter()
            .rev()
            .chain(std::iter::once(&self.primary))
        {
            let mut c = self.command("pg_ctl");
            c.arg("-D")
                .arg(&node.data)
                .args(["-m", "fast", "-w", "stop"]);
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Runs SQL on the primary as `postgres` through its Unix socket.
    ///
    /// # Errors
    /// psql failing; its output is in the error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LocalPgError> {
        let mut c = self.command("psql");
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.root)
            .args([
                "-p",
                &self.primary.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        let out = self.run(c)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts a watcher that stops the cluster (and removes its folder when
    /// `remove` is set) once process `pid` has exited, however it exits.
    ///
    /// # Errors
    /// The watcher could not be started.
    pub fn stop_when_gone(&self, pid: u32, remove: bool) -> Result<(), LocalPgError> {
        let mut stops = String::new();
        for node in self
            .replicas
            .iter()
            .rev()
            .chain(std::iter::once(&self.primary))
        {
            let ctl = self.bindir.join("pg_ctl");
            let cmd = format!(
                "{} -D '{}' -m immediate -w stop",
                ctl.display(),
                node.data.display()
            );
            if self.as_postgres {
                stops.push_str(&format!("runuser -u postgres -- {cmd} >/dev/null 2>&1; "));
            } else {
                stops.push_str(&format!("{cmd} >/dev/null 2>&1; "));
            }
        }
        if remove {
            stops.push_str(&format!("rm -rf '{}'", self.root.display()));
        }
        let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stops}");
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

/// A TCP port below 32768 that nothing listens on now, with `span`
/// consecutive free ports from it (below the ephemeral range, so an
/// outgoing connection cannot take it before a server binds it).
pub fn free_port_range(span: u16) -> Option<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base: u16 = rng.gen_range(20_000..32_000 - span);
        let free = (0..span).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return Some(base);
        }
    }
    None
}
