//! `*_tls_sslmode` and `*_tls_protocols`, in PgBouncer's words.

use serde::{Deserialize, Serialize};

/// How much TLS a side asks for (libpq's and PgBouncer's `sslmode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Cleartext; a client's SSLRequest is answered `N`.
    #[default]
    Disable,
    /// TLS if the other side asks (clients) / only if cleartext is refused
    /// (servers: pgwarden tries TLS first, as PgBouncer does).
    Allow,
    /// TLS when the other side can.
    Prefer,
    /// TLS or nothing; certificates are not checked.
    Require,
    /// TLS, and the peer's certificate must chain to the CA file.
    VerifyCa,
    /// As `verify-ca`; towards servers the host name must match too.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Cleartext is refused.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }

    /// The peer's certificate is checked against the CA.
    pub fn verifies(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

/// The TLS versions a side accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Protocols {
    /// PgBouncer's syntax: `secure`, `all`, `legacy`, `normal`, `default`,
    /// or a comma-separated list of `tlsv1.2`, `tlsv1.3`. rustls implements
    /// neither TLS 1.0 nor 1.1: `all` and `legacy` mean 1.2 and 1.3, and
    /// naming 1.0 or 1.1 alone is an error.
    ///
    /// # Errors
    /// An unknown name, or a list with no version rustls implements.
    pub fn parse(text: &str) -> Result<Protocols, String> {
        let mut p = Protocols {
            tls12: false,
            tls13: false,
        };
        let mut old = false;
        for word in text.split([',', ' ', ':']).filter(|w| !w.is_empty()) {
            match word.to_ascii_lowercase().as_str() {
                "secure" | "all" | "legacy" | "normal" | "default" => {
                    p.tls12 = true;
                    p.tls13 = true;
                }
                "tlsv1.2" => p.tls12 = true,
                "tlsv1.3" => p.tls13 = true,
                "tlsv1" | "tlsv1.0" | "tlsv1.1" => old = true,
                other => return Err(format!("unknown TLS protocol {other:?}")),
            }
        }
        if !p.tls12 && !p.tls13 {
            return Err(match old {
                true => "TLS 1.0 and 1.1 are not supported (rustls); use tlsv1.2 or tlsv1.3".into(),
                false => "no TLS protocol named".into(),
            });
        }
        Ok(p)
    }

    pub(super) fn versions(self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.tls13 {
            v.push(&rustls::version::TLS13);
        }
        if self.tls12 {
            v.push(&rustls::version::TLS12);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_in_pgbouncer_syntax() {
        let both = Protocols {
            tls12: true,
            tls13: true,
        };
        assert_eq!(Protocols::parse("secure"), Ok(both));
        assert_eq!(Protocols::parse("all"), Ok(both));
        assert_eq!(Protocols::parse("tlsv1.2, tlsv1.3"), Ok(both));
        assert_eq!(
            Protocols::parse("tlsv1.3"),
            Ok(Protocols {
                tls12: false,
                tls13: true
            })
        );
        assert!(Protocols::parse("tlsv1.1").is_err());
        assert!(Protocols::parse("sslv3").is_err());
        assert!(Protocols::parse("").is_err());
    }

    #[test]
    fn modes_order_by_strength() {
        assert!(!SslMode::Prefer.requires_tls());
        assert!(SslMode::Require.requires_tls() && !SslMode::Require.verifies());
        assert!(SslMode::VerifyCa.verifies() && SslMode::VerifyFull.verifies());
    }
}
