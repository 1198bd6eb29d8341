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

/// Compares two secrets in time independent of where they differ (the
/// `subtle` crate's comparison), so that timing cannot guess one byte by
/// byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}
