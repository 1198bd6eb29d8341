//! pgwarden as a TLS client of PostgreSQL: the SSLRequest exchange, then a
//! rustls handshake that checks as much as `server_tls_sslmode` asks.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{files, provider, Protocols, SslMode};
use crate::net::Stream;
use crate::wire::startup::SSL_REQUEST_CODE;

/// The server side's settings, as read from the config.
#[derive(Clone, Copy, Debug)]
pub struct ServerTlsFiles<'a> {
    pub key: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub ca: Option<&'a Path>,
    pub protocols: &'a str,
    /// Some database (or the default) verifies server certificates.
    pub verifies: bool,
}

/// rustls configs for each strength of check, built once per config.
#[derive(Clone)]
pub struct ServerTls {
    unchecked: Arc<ClientConfig>,
    /// Chains to the CA, any name (`verify-ca`).
    chained: Option<Arc<ClientConfig>>,
    /// Chains to the CA and names the host (`verify-full`).
    named: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTls(verifying: {})", self.named.is_some())
    }
}

/// How to secure one server connection.
#[derive(Clone)]
pub struct TlsTarget {
    pub mode: SslMode,
    config: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({} {:?})", self.mode.as_str(), self.name)
    }
}

impl TlsTarget {
    /// Cleartext, no SSLRequest.
    pub fn disabled() -> TlsTarget {
        TlsTarget {
            mode: SslMode::Disable,
            config: None,
            name: placeholder_name(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("the server does not accept TLS, and server_tls_sslmode is {0}")]
    NotOffered(&'static str),
    #[error("TLS with the server failed: {0}")]
    Handshake(std::io::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One database's choice: its `server_tls_sslmode` and name to check,
/// with the configs of the config it came from.
#[derive(Clone, Debug)]
pub struct TlsPolicy {
    pub mode: SslMode,
    /// `server_tls_server_name`: checked instead of the node address's host.
    pub server_name: Option<String>,
    pub tls: ServerTls,
}

impl TlsPolicy {
    /// How to secure a connection to the node at `addr` (`host:port`).
    pub fn target(&self, addr: &str) -> TlsTarget {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        self.tls
            .target(self.mode, self.server_name.as_deref().unwrap_or(host))
    }
}

impl ServerTls {
    /// # Errors
    /// The config key at fault and why.
    pub fn build(f: &ServerTlsFiles<'_>) -> Result<ServerTls, (&'static str, String)> {
        let protocols = Protocols::parse(f.protocols).map_err(|e| ("server_tls_protocols", e))?;
        let client_auth = match (f.cert, f.key) {
            (Some(cert), Some(key)) => Some((
                files::certificates(cert).map_err(|e| ("server_tls_cert_file", e))?,
                files::private_key(key).map_err(|e| ("server_tls_key_file", e))?,
            )),
            (None, None) => None,
            _ => {
                return Err((
                    "server_tls_cert_file",
                    "server_tls_cert_file and server_tls_key_file go together".into(),
                ))
            }
        };
        let make = |verifier: Arc<dyn ServerCertVerifier>| -> Result<Arc<ClientConfig>, (&'static str, String)> {
            let builder = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&protocols.versions())
                .map_err(|e| ("server_tls_protocols", e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier);
            let config = match &client_auth {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| ("server_tls_key_file", format!("{e} (does it match the certificate?)")))?,
                None => builder.with_no_client_auth(),
            };
            Ok(Arc::new(config))
        };
        let unchecked = make(Arc::new(Lenient { chain: None }))?;
        let (chained, named) = if f.verifies || f.ca.is_some() {
            let roots = Arc::new(files::roots(f.ca).map_err(|e| ("server_tls_ca_file", e))?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| ("server_tls_ca_file", e.to_string()))?;
            (
                Some(make(Arc::new(Lenient {
                    chain: Some(webpki.clone()),
                }))?),
                Some(make(webpki)?),
            )
        } else {
            (None, None)
        };
        Ok(ServerTls {
            unchecked,
            chained,
            named,
        })
    }

    /// The target for one node: `host` is the node address's host, or
    /// `server_tls_server_name` when set.
    pub fn target(&self, mode: SslMode, host: &str) -> TlsTarget {
        let config = match mode {
            SslMode::Disable => None,
            SslMode::Allow | SslMode::Prefer | SslMode::Require => Some(self.unchecked.clone()),
            SslMode::VerifyCa => self.chained.clone(),
            SslMode::VerifyFull => self.named.clone(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // A host rustls cannot name gets a placeholder: no SNI sent, and
        // verify-full then fails, as it should.
        let name = ServerName::try_from(host.to_owned()).unwrap_or_else(|_| placeholder_name());
        TlsTarget { mode, config, name }
    }
}

fn placeholder_name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
}

/// Asks the server for TLS (SSLRequest) and runs the handshake, as far as
/// `target.mode` wants.
///
/// # Errors
/// The server refused TLS where it is required, the handshake failed (a
/// certificate that does not check), or the socket did.
pub async fn negotiate(mut tcp: TcpStream, target: &TlsTarget) -> Result<Stream, ServerTlsError> {
    let Some(config) = target.config.clone() else {
        return Ok(Stream::Tcp(tcp));
    };
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8u32.to_be_bytes());
    request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    tcp.write_all(&request).await?;
    // One byte, and no more: anything the server sent after it would be
    // bytes injected before the handshake (CVE-2021-23222).
    let answer = tcp.read_u8().await?;
    if answer != b'S' {
        if target.mode.requires_tls() {
            return Err(ServerTlsError::NotOffered(target.mode.as_str()));
        }
        return Ok(Stream::Tcp(tcp));
    }
    let tls = TlsConnector::from(config)
        .connect(target.name.clone(), tcp)
        .await;
    super::SERVER_HANDSHAKES.count(&tls);
    let tls = tls.map_err(ServerTlsError::Handshake)?;
    Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls))))
}

/// `require` (no chain check) and `verify-ca` (the chain must lead to the
/// CA; any name), as libpq's modes of those names. Handshake signatures
/// are checked either way, so the session is sound; `require` just does
/// not know who holds the key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
