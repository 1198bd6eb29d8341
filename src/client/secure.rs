//! The start of a client connection, before its StartupMessage: TLS by
//! PostgreSQL 17's direct negotiation (a ClientHello first, ALPN
//! `postgresql`) or after an SSLRequest; GSSENCRequest is answered `N`.
//!
//! Owns: the order and the limits of these requests (each at most once, as
//! in PostgreSQL), and the rule that no cleartext byte sent before the
//! handshake is ever read as part of the encrypted session.

use crate::error::ProxyError;
use crate::net::tls::{acceptor::ALPN, ClientTls, CLIENT_HANDSHAKES};
use crate::net::{MessageStream, Stream};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Which negotiation requests a connection has made, and what its TLS
/// session binds SCRAM to.
#[derive(Debug, Default)]
pub struct Negotiation {
    ssl: bool,
    gss: bool,
    /// `tls-server-end-point` data of the certificate this connection was
    /// given (not of a newer one a reload brought meanwhile).
    pub end_point: Option<Vec<u8>>,
}

impl Negotiation {
    /// Runs a direct TLS handshake if the client opened with a ClientHello.
    ///
    /// # Errors
    /// A failed handshake, or a direct handshake without ALPN `postgresql`
    /// (PostgreSQL refuses those too: ALPN is what tells a PostgreSQL client
    /// from a confused HTTPS one).
    pub async fn direct(
        &mut self,
        stream: &mut MessageStream<Stream>,
        tls: Option<&ClientTls>,
    ) -> Result<(), ProxyError> {
        let (Some(tls), Some(tcp)) = (tls, stream.io.tcp()) else {
            return Ok(());
        };
        let mut first = [0u8; 1];
        let seen = tcp
            .peek(&mut first)
            .await
            .map_err(|e| ProxyError::login_lost(e.into()))?;
        if seen == 0 || first[0] != TLS_HANDSHAKE {
            return Ok(());
        }
        self.ssl = true;
        self.upgrade(stream, tls).await?;
        if stream.io.alpn() != Some(ALPN) {
            return Err(ProxyError::TlsHandshake(
                "direct TLS connection without ALPN \"postgresql\"".into(),
            ));
        }
        Ok(())
    }

    /// Answers an SSLRequest: `S` and the handshake when TLS is on, else `N`.
    ///
    /// # Errors
    /// A second SSLRequest (or one after direct TLS), cleartext bytes sent
    /// behind the request, or a failed handshake.
    pub async fn ssl_request(
        &mut self,
        stream: &mut MessageStream<Stream>,
        tls: Option<&ClientTls>,
    ) -> Result<(), ProxyError> {
        if std::mem::replace(&mut self.ssl, true) || stream.io.is_tls() {
            return Err(ProxyError::Protocol("SSL negotiation already done".into()));
        }
        // PostgreSQL never offers TLS on a Unix-domain socket.
        let Some(tls) = tls.filter(|_| !stream.io.is_unix()) else {
            return stream.write_all(b"N").await.map_err(ProxyError::login_lost);
        };
        stream
            .write_all(b"S")
            .await
            .map_err(ProxyError::login_lost)?;
        // Bytes behind the request arrived in cleartext, before the
        // handshake: a man in the middle may have put them there
        // (CVE-2021-23214). PostgreSQL's answer and text.
        if !stream.rbuf.is_empty() {
            return Err(ProxyError::Protocol(
                "received unencrypted data after SSL request".into(),
            ));
        }
        self.upgrade(stream, tls).await
    }

    /// Answers a GSSENCRequest: `N` (no GSSAPI encryption).
    ///
    /// # Errors
    /// A second one, or a lost client.
    pub async fn gss_request(
        &mut self,
        stream: &mut MessageStream<Stream>,
    ) -> Result<(), ProxyError> {
        if std::mem::replace(&mut self.gss, true) || stream.io.is_tls() {
            return Err(ProxyError::Protocol(
                "GSSAPI negotiation already done".into(),
            ));
        }
        stream.write_all(b"N").await.map_err(ProxyError::login_lost)
    }

    async fn upgrade(
        &mut self,
        stream: &mut MessageStream<Stream>,
        tls: &ClientTls,
    ) -> Result<(), ProxyError> {
        let result = stream.io.accept_tls(tls).await;
        CLIENT_HANDSHAKES.count(&result);
        result.map_err(|e| {
            // rustls' words, or the OS's when the socket failed: the log's.
            tracing::debug!(error = %e, "client TLS handshake failed");
            ProxyError::TlsHandshake("see pgwarden's log".into())
        })?;
        self.end_point = tls.end_point.clone();
        Ok(())
    }
}
