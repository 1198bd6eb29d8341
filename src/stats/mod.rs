//! The proxy's counters that outlive one pool: errors sent by SQLSTATE,
//! per-database totals and the last stats period, and per-query stats.
//!
//! Owns: the numbers only. Must not: render them; the console
//! (`admin`), `/metrics` and the status page (`metrics`) read them here,
//! so this module sits below all of them and the client half can count
//! into it without reaching up.

pub mod queries;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::ProxyError;

pub use window::{totals, Totals, Window, STATS_PERIOD};

/// Errors pgwarden sent to clients, by SQLSTATE.
#[derive(Debug, Default)]
pub struct ErrorCounts(Mutex<BTreeMap<String, u64>>);

impl ErrorCounts {
    pub fn count(&self, e: &ProxyError) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(e.sqlstate().to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
