//! TLS for tests: certificates made at run time (nothing secret is
//! committed), a PostgreSQL cluster that accepts only TLS, and psql runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgwarden::localpg::Cluster;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A test CA and what it signed, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// A new CA named `name`, its files in a new temporary folder.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-tls-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = params.self_signed(&ca_key).expect("CA");
        let ca = dir.join(format!("{name}.crt"));
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        Pki {
            dir,
            ca,
            ca_cert,
            ca_key,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses),
    /// written as `<file>.crt` and `<file>.key` (mode 0600); returns both.
    pub fn server(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate whose common name is `user`.
    pub fn client(&self, file: &str, user: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params)
    }

    fn issue(&self, file: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign");
        let (crt, pem_key) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write cert");
        write_private(&pem_key, &key.serialize_pem());
        (crt, pem_key)
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// The role a [`tls_cluster`] lets in by client certificate only.
pub const CERT_USER: &str = "tls_cert_user";

/// A primary (and `replicas`) that accept only TLS (`hostssl` lines; the
/// certificate is for `localhost` and 127.0.0.1, from `pki`), with
/// database `pgw` and the SCRAM user. Stopped when the test binary exits.
pub fn tls_cluster(pki: &Pki, replicas: usize) -> Cluster {
    let _ = super::cluster();
    let root = tempfile::Builder::new()
        .prefix("pgwarden-tlspg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let (crt, key) = pki.server("postgres-server", &["localhost", "127.0.0.1"]);
    let (pg_crt, pg_key) = (root.join("server.crt"), root.join("server.key"));
    std::fs::copy(&crt, &pg_crt).expect("copy cert");
    // Client certificates from the same CA log in as CERT_USER (`cert`).
    let pg_ca = root.join("ca.crt");
    std::fs::copy(&pki.ca, &pg_ca).expect("copy CA");
    write_private(&pg_key, &std::fs::read_to_string(key).expect("read key"));
    let base = pgwarden::localpg::free_port_range(1 + replicas as u16).expect("free ports");
    let mut c = Cluster::new(&root, base, replicas).expect("PostgreSQL binaries");
    c.extra_conf = format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
        pg_crt.display(),
        pg_key.display(),
        pg_ca.display()
    );
    c.hba = Some(format!(
        "local all all trust\n\
         hostssl replication all 127.0.0.1/32 trust\n\
         hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n"
    ));
    c.stop_when_gone(std::process::id(), true).expect("watcher");
    c.start().expect("start TLS cluster");
    let sql = format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE {} LOGIN SUPERUSER PASSWORD '{}';
         CREATE ROLE {CERT_USER} LOGIN;",
        super::SCRAM_USER,
        super::PASSWORD
    );
    c.psql("postgres", &sql).expect("roles");
    c.psql(
        "postgres",
        &format!("CREATE DATABASE {} OWNER {}", super::DB, super::SCRAM_USER),
    )
    .expect("database");
    c
}

/// Runs `psql` with a libpq connection string and returns its output, or
/// its error text.
pub fn psql(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
