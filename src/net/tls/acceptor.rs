//! pgwarden as the TLS server its clients talk to.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsStream};

use super::{binding, files, provider, Protocols, SslMode};

/// ALPN name of the PostgreSQL protocol (PostgreSQL 17's direct TLS).
pub const ALPN: &[u8] = b"postgresql";

/// The client side's settings, as read from the config.
#[derive(Clone, Copy, Debug)]
pub struct ClientTlsFiles<'a> {
    pub mode: SslMode,
    pub key: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub ca: Option<&'a Path>,
    pub protocols: &'a str,
}

/// What a client's TLS handshake needs, built once per config.
#[derive(Clone)]
pub struct ClientTls {
    pub mode: SslMode,
    acceptor: TlsAcceptor,
    /// `tls-server-end-point` channel-binding data (the hash of pgwarden's
    /// certificate), when its signature algorithm has one.
    pub end_point: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({})", self.mode.as_str())
    }
}

impl ClientTls {
    /// `None` when `client_tls_sslmode` is `disable`.
    ///
    /// # Errors
    /// The config key at fault and why (a missing or unreadable file, a
    /// key that does not match its certificate).
    pub fn build(f: &ClientTlsFiles<'_>) -> Result<Option<ClientTls>, (&'static str, String)> {
        if f.mode == SslMode::Disable {
            return Ok(None);
        }
        let protocols = Protocols::parse(f.protocols).map_err(|e| ("client_tls_protocols", e))?;
        let (Some(key), Some(cert)) = (f.key, f.cert) else {
            return Err((
                "client_tls_sslmode",
                format!(
                    "{} needs client_tls_key_file and client_tls_cert_file",
                    f.mode.as_str()
                ),
            ));
        };
        let chain = files::certificates(cert).map_err(|e| ("client_tls_cert_file", e))?;
        let key = files::private_key(key).map_err(|e| ("client_tls_key_file", e))?;
        let end_point = chain.first().and_then(|c| binding::end_point_hash(c));
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&protocols.versions())
            .map_err(|e| ("client_tls_protocols", e.to_string()))?;
        // verify-*: a certificate from the CA is required. Below that, one
        // is asked for (and checked) only when a CA file is set, for `cert`
        // authentication; a client without one still gets in.
        let builder = match (f.ca, f.mode.verifies()) {
            (None, true) => {
                return Err((
                    "client_tls_ca_file",
                    format!("client_tls_sslmode = {} needs a CA file", f.mode.as_str()),
                ))
            }
            (None, false) => builder.with_no_client_auth(),
            (Some(ca), verifies) => {
                let roots =
                    Arc::new(files::roots(Some(ca)).map_err(|e| ("client_tls_ca_file", e))?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = match verifies {
                    true => verifier.build(),
                    false => verifier.allow_unauthenticated().build(),
                }
                .map_err(|e| ("client_tls_ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            (
                "client_tls_key_file",
                format!("{e} (does it match the certificate?)"),
            )
        })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Some(ClientTls {
            mode: f.mode,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            end_point,
        }))
    }

    /// Runs the server side of a TLS handshake.
    ///
    /// # Errors
    /// The handshake failed (a bad certificate, garbage, a lost client).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let tls = self.acceptor.accept(tcp).await?;
        Ok(TlsStream::Server(tls))
    }
}
