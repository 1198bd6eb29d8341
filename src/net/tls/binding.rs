//! What pgwarden reads from certificates: `tls-server-end-point` channel
//! binding data (RFC 5929) and a client certificate's common name.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The certificate's hash with its signature's hash function (SHA-256 for
/// MD5 and SHA-1), as PostgreSQL computes it; `None` for signatures
/// without one (Ed25519, RSA-PSS), where PostgreSQL offers no binding
/// either.
pub fn end_point_hash(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let oid = parsed.signature_algorithm.algorithm.to_id_string();
    let der = cert.as_ref();
    Some(match oid.as_str() {
        // md5/sha1/sha256 with RSA; ecdsa with sha1/sha256; dsa with sha1/sha256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => Sha256::digest(der).to_vec(),
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Sha384::digest(der).to_vec(),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Sha512::digest(der).to_vec(),
        _ => return None,
    })
}

/// The subject's common name (the user name for `cert` authentication).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
