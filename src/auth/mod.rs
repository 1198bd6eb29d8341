//! Authentication in both directions.
//!
//! Owns: verifying clients ([`frontend`]), logging in to servers
//! ([`backend`]), the password schemes ([`md5`], [`scram`]) and where
//! secrets come from ([`userlist`], [`query`]). Must not: log secrets or
//! passwords, or tell a client whether a user name exists.

pub mod backend;
pub mod frontend;
pub mod hba;
pub mod md5;
pub mod query;
pub mod scram;
pub mod secret;
pub mod userlist;

use serde::{Deserialize, Serialize};

/// How clients prove who they are (`auth_type`); the config file names
/// it, and [`frontend`] acts on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AuthType {
    /// No password asked; any user is let in (PgBouncer's `any` is the same here).
    #[serde(rename = "trust", alias = "any")]
    Trust,
    /// Cleartext password.
    #[serde(rename = "plain")]
    Plain,
    /// md5, or SCRAM when the stored secret is a SCRAM secret (as PgBouncer).
    #[default]
    #[serde(rename = "md5")]
    Md5,
    /// SCRAM-SHA-256, or md5 when only an md5 secret is known (as PgBouncer).
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// The TLS client certificate's common name is the user name (needs
    /// `client_tls_ca_file`).
    #[serde(rename = "cert")]
    Cert,
    /// Per connection, from the first matching line of `auth_hba_file`.
    #[serde(rename = "hba")]
    Hba,
}

/// Compares two secrets in time independent of where they differ (the
/// `subtle` crate's comparison), so that timing cannot guess one byte by
/// byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
