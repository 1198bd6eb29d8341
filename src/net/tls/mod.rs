//! TLS on both sides, with rustls (ring): towards clients pgwarden is the
//! TLS server ([`acceptor`]), towards PostgreSQL the TLS client
//! ([`connector`]). PgBouncer's settings and meanings: `*_tls_sslmode`,
//! `*_tls_{key,cert,ca}_file`, `*_tls_protocols`.
//!
//! Owns: reading PEM files, building rustls configs, the SSLRequest
//! exchange towards servers, channel-binding data. Must not: know about
//! config files (callers pass paths and modes), sessions or pools.
//!
//! The configs are built when a config is loaded, so a missing or bad file
//! is a config problem like any other (a reload keeps the old one), and a
//! reload's new certificates serve new connections while open ones keep
//! theirs.

pub mod acceptor;
pub mod binding;
pub mod connector;
mod files;
mod mode;

pub use acceptor::ClientTls;
pub use acceptor::ClientTlsFiles;
pub use connector::{negotiate, ServerTls, ServerTlsError, ServerTlsFiles, TlsPolicy, TlsTarget};
pub use mode::{Protocols, SslMode};

/// The crypto behind every config: ring, so the binary has no OpenSSL.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS handshakes by side and outcome, for `/metrics` (counters are the
/// one kind of global the code allows).
#[derive(Debug, Default)]
pub struct Handshakes {
    pub ok: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

impl Handshakes {
    const fn new() -> Self {
        Handshakes {
            ok: std::sync::atomic::AtomicU64::new(0),
            failed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn count<T, E>(&self, r: &Result<T, E>) {
        let c = match r {
            Ok(_) => &self.ok,
            Err(_) => &self.failed,
        };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// With clients (pgwarden the TLS server).
pub static CLIENT_HANDSHAKES: Handshakes = Handshakes::new();
/// With servers (pgwarden the TLS client).
pub static SERVER_HANDSHAKES: Handshakes = Handshakes::new();
