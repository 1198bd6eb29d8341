//! PEM files: certificate chains, private keys, CA bundles.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in a PEM file, leaf first.
///
/// # Errors
/// Unreadable, not PEM, or no certificate in it; said with the path.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), describe(e)))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {}", path.display(), describe(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// Unreadable, or no key in it; said with the path (never the key).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("{}: no private key in it", path.display())
        }
        e => format!("cannot read {}: {}", path.display(), describe(e)),
    })
}

/// Trust anchors: the CA file's certificates, or the system's store when
/// no file is named (as libpq's `sslrootcert=system`).
///
/// # Errors
/// As [`certificates`], or a certificate rustls cannot use as an anchor.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates(path)? {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no CA file set and no system certificates found".into());
            }
        }
    }
    Ok(store)
}

fn describe(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}
