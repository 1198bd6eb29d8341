//! Host names of servers, resolved as PgBouncer resolves them: looked up
//! when a connection is opened, kept for `dns_max_ttl` (the record's own
//! TTL is ignored, as PgBouncer ignores it), a failed lookup kept for
//! `dns_nxdomain_ttl`, and every address of a name tried in order until one
//! answers. A zero TTL looks the name up on every connect.
//!
//! One cache for the process (PgBouncer's is too), so that `SHOW
//! DNS_HOSTS` lists what every pool and monitor resolved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

struct Entry {
    looked_up: Instant,
    /// The addresses, or why the lookup failed.
    result: Result<Arc<[SocketAddr]>, String>,
}

struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
    max_ttl_ms: AtomicU64,
    nxdomain_ttl_ms: AtomicU64,
}

static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache {
    entries: Mutex::new(HashMap::new()),
    max_ttl_ms: AtomicU64::new(15_000),
    nxdomain_ttl_ms: AtomicU64::new(15_000),
});

/// A cached name as `SHOW DNS_HOSTS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// `host:port` as configured.
    pub hostname: String,
    /// Seconds until it is looked up again.
    pub ttl: u64,
    /// Its addresses, comma-separated (empty after a failed lookup).
    pub addrs: String,
}

/// `dns_max_ttl` and `dns_nxdomain_ttl`, from the config at start and on
/// every reload.
pub fn configure(max_ttl: Duration, nxdomain_ttl: Duration) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    CACHE.max_ttl_ms.store(ms(max_ttl), Ordering::Relaxed);
    CACHE
        .nxdomain_ttl_ms
        .store(ms(nxdomain_ttl), Ordering::Relaxed);
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    CACHE.entries.lock().unwrap_or_else(|p| p.into_inner())
}

fn ttl_of(entry: &Entry) -> Duration {
    let ttl = match entry.result {
        Ok(_) => &CACHE.max_ttl_ms,
        Err(_) => &CACHE.nxdomain_ttl_ms,
    };
    Duration::from_millis(ttl.load(Ordering::Relaxed))
}

/// The addresses of `addr` (`host:port`): an IP address as it is, a name
/// from the cache or a fresh lookup.
///
/// # Errors
/// The lookup failed (now, or within `dns_nxdomain_ttl`).
pub async fn resolve(addr: &str) -> std::io::Result<Arc<[SocketAddr]>> {
    if let Ok(ip) = addr.parse::<SocketAddr>() {
        return Ok(Arc::from([ip]));
    }
    let cached = lock()
        .get(addr)
        .and_then(|e| (e.looked_up.elapsed() < ttl_of(e)).then(|| e.result.clone()));
    let result = match cached {
        Some(r) => r,
        None => {
            let looked_up = match tokio::net::lookup_host(addr).await {
                Ok(addrs) => {
                    let addrs: Arc<[SocketAddr]> = addrs.collect();
                    if addrs.is_empty() {
                        Err(format!("{addr}: no address"))
                    } else {
                        Ok(addrs)
                    }
                }
                Err(e) => Err(format!("{addr}: {e}")),
            };
            let entry = Entry {
                looked_up: Instant::now(),
                result: looked_up.clone(),
            };
            lock().insert(addr.to_owned(), entry);
            looked_up
        }
    };
    result.map_err(|why| std::io::Error::new(std::io::ErrorKind::NotFound, why))
}

/// Connects to the first of `addr`'s addresses that answers, in order.
///
/// # Errors
/// The lookup failed, or no address answered (the last one's error).
pub async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in resolve(addr).await?.iter() {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}

/// Every cached name, for `SHOW DNS_HOSTS`.
pub fn hosts() -> Vec<HostRow> {
    let map = lock();
    let mut rows: Vec<HostRow> = map
        .iter()
        .map(|(name, e)| HostRow {
            hostname: name.clone(),
            ttl: ttl_of(e).saturating_sub(e.looked_up.elapsed()).as_secs(),
            addrs: match &e.result {
                Ok(a) => a
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                Err(_) => String::new(),
            },
        })
        .collect();
    rows.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    rows
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_cached_and_each_address_is_tried_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let name = format!("localhost:{port}");
        let addrs = resolve(&name).await.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        // localhost may resolve to ::1 first, where nothing listens: the
        // next address is tried.
        assert!(connect(&name).await.is_ok());
        let row = hosts().into_iter().find(|r| r.hostname == name).unwrap();
        assert!(row.addrs.contains(&format!("127.0.0.1:{port}")), "{row:?}");
        assert!(row.ttl <= 15);
        // IP addresses are not looked up, so not listed.
        resolve(&format!("127.0.0.1:{port}")).await.unwrap();
        assert!(hosts().iter().all(|r| !r.hostname.starts_with("127.")));
        let missing = resolve("no-such-host.invalid:5432").await;
        assert!(missing.is_err());
        let row = hosts()
            .into_iter()
            .find(|r| r.hostname.starts_with("no-such-host"))
            .unwrap();
        assert_eq!(row.addrs, "");
    }
}
