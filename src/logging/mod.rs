//! Where log lines go, and how many: stderr always (journald collects it
//! under systemd), plus PgBouncer's `logfile` and `syslog` outputs, at the
//! level `verbose` sets, all changeable by a reload or a console `SET`.
//!
//! The subscriber is process-wide (tracing's is), so its controls are too:
//! [`init`] installs it once from `main`; [`configure`] applies a config's
//! settings, at start and on every reload (a no-op where `init` never ran,
//! as in tests that run the proxy in-process). `RUST_LOG`, when set, wins
//! over `verbose`, so that a developer's filter is never overridden.

mod file;
mod syslog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, reload, EnvFilter, Layer, Registry};

pub use syslog::{facility_code, SyslogTarget};

struct Control {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: `verbose` changes nothing.
    from_env: bool,
    /// The `verbose` level in force, to reload the filter only on change.
    verbose: std::sync::Mutex<Option<u8>>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();
static FILE_ON: AtomicBool = AtomicBool::new(false);
static SYSLOG_ON: AtomicBool = AtomicBool::new(false);
/// `log_format = "json"`: stderr and the file write JSON lines instead.
static JSON_ON: AtomicBool = AtomicBool::new(false);

fn text() -> bool {
    !JSON_ON.load(Ordering::Relaxed)
}

fn json() -> bool {
    JSON_ON.load(Ordering::Relaxed)
}

/// Installs the subscriber: stderr (colour only on a terminal without
/// `NO_COLOR`), the log file and syslog (both off until [`configure`]).
pub fn init() {
    let from_env = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let initial = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(0));
    let (filter, handle) = reload::Layer::new(initial);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Each output has a text and a JSON layer, one of them on: the format
    // can change on reload, and a layer's format cannot.
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(filter::filter_fn(|_| text()));
    let stderr_json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .with_filter(filter::filter_fn(|_| json()));
    let file_on = || FILE_ON.load(Ordering::Relaxed);
    let file = fmt::layer()
        .with_ansi(false)
        .with_writer(file::Writer)
        .with_filter(filter::filter_fn(move |_| file_on() && text()));
    let file_json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(file::Writer)
        .with_filter(filter::filter_fn(move |_| file_on() && json()));
    // syslog stamps the time and the program itself.
    let syslog = fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_writer(syslog::Writer)
        .with_filter(filter::filter_fn(|_| SYSLOG_ON.load(Ordering::Relaxed)));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(stderr_json)
        .with(file)
        .with(file_json)
        .with(syslog)
        .try_init();
    if installed.is_ok() {
        let _ = CONTROL.set(Control {
            filter: handle,
            from_env,
            verbose: std::sync::Mutex::new(None),
        });
    }
}

/// What a config says about logging (`ProxySettings::log_settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub verbose: u8,
    /// JSON lines on stderr and in the file (`log_format = "json"`).
    pub json: bool,
    /// Empty: no file.
    pub logfile: String,
    pub syslog: Option<SyslogTarget>,
}

/// Applies `verbose`, `logfile` and `syslog*`: the file is (re)opened every
/// time, which is how a rotated log file is let go of (SIGHUP or `RELOAD`,
/// as with PgBouncer).
pub fn configure(p: &LogSettings) {
    let Some(control) = CONTROL.get() else {
        return;
    };
    if !control.from_env {
        let mut verbose = control.verbose.lock().unwrap_or_else(|e| e.into_inner());
        if *verbose != Some(p.verbose) {
            *verbose = Some(p.verbose);
            let _ = control.filter.reload(filter_for(p.verbose));
        }
    }
    match file::open(&p.logfile) {
        Ok(on) => FILE_ON.store(on, Ordering::Relaxed),
        Err(e) => {
            FILE_ON.store(false, Ordering::Relaxed);
            tracing::error!(logfile = %p.logfile, error = %e, "cannot open the log file");
        }
    }
    JSON_ON.store(p.json, Ordering::Relaxed);
    SYSLOG_ON.store(p.syslog.is_some(), Ordering::Relaxed);
    syslog::set_target(p.syslog.clone());
}

/// PgBouncer's `verbose`: 0 logs at info, 1 adds debug, 2 and up trace.
fn filter_for(verbose: u8) -> EnvFilter {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Other crates stay at info: their debug lines are not pgwarden's.
    EnvFilter::new(format!("info,pgwarden={level}"))
}
