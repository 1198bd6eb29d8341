//! Per-database totals summed from the pools' counters, and averages over
//! the last complete period (`stats_period`, 60 s by default as in PgBouncer),
//! for `SHOW STATS`, `/metrics` and the status page.
//!
//! Owns: the snapshot of the previous period, taken by the maintenance
//! loop. Averages are 0 until one period has passed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::pool::latency::{percentiles, Percentiles};
use crate::pool::Pools;

/// PgBouncer's default `stats_period` (and pgwarden's).
pub const STATS_PERIOD: Duration = Duration::from_secs(60);

/// One database's counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub xacts: u64,
    pub queries: u64,
    pub recv: u64,
    pub sent: u64,
    pub xact_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
}

impl Totals {
    fn since(&self, old: &Totals) -> Totals {
        Totals {
            xacts: self.xacts.saturating_sub(old.xacts),
            queries: self.queries.saturating_sub(old.queries),
            recv: self.recv.saturating_sub(old.recv),
            sent: self.sent.saturating_sub(old.sent),
            xact_us: self.xact_us.saturating_sub(old.xact_us),
            query_us: self.query_us.saturating_sub(old.query_us),
            wait_us: self.wait_us.saturating_sub(old.wait_us),
        }
    }

    /// Per second for counts and bytes; per transaction and per query for
    /// their times; wait time per second, as PgBouncer reports them.
    fn averages(&self, secs: u64) -> Totals {
        let secs = secs.max(1);
        Totals {
            xacts: self.xacts / secs,
            queries: self.queries / secs,
            recv: self.recv / secs,
            sent: self.sent / secs,
            xact_us: self.xact_us.checked_div(self.xacts).unwrap_or(0),
            query_us: self.query_us.checked_div(self.queries).unwrap_or(0),
            wait_us: self.wait_us / secs,
        }
    }
}

/// Every database's totals now.
pub fn totals(pools: &Pools) -> BTreeMap<String, Totals> {
    let mut by_db: BTreeMap<String, Totals> = BTreeMap::new();
    for pool in pools.all() {
        let s = &pool.stats;
        let t = by_db.entry(pool.key.db.clone()).or_default();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        t.xacts += load(&s.xacts);
        t.queries += load(&s.queries);
        t.recv += load(&s.recv_bytes);
        t.sent += load(&s.sent_bytes);
        t.xact_us += load(&s.xact_micros);
        t.query_us += load(&s.query_micros);
        t.wait_us += load(&s.wait_micros);
    }
    by_db
}

/// The last two period snapshots.
#[derive(Debug, Default)]
pub struct Window {
    inner: Mutex<WindowState>,
}

#[derive(Debug, Default)]
struct WindowState {
    last: Option<(Instant, BTreeMap<String, Totals>)>,
    averages: BTreeMap<String, Totals>,
    /// Each database's latencies at the last snapshot, and the percentiles
    /// of those recorded in the last period (the status page's).
    last_latency: BTreeMap<String, Histogram<u32>>,
    latency: BTreeMap<String, Percentiles>,
}

impl Window {
    /// Takes a snapshot once `period` has passed since the last one; with
    /// `log`, writes each database's averages to the log (`log_stats`).
    pub fn tick(&self, pools: &Pools, period: Duration, log: bool) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if st
            .last
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at) < period)
        {
            return;
        }
        let current = totals(pools);
        if let Some((at, old)) = &st.last {
            let secs = now.duration_since(*at).as_secs();
            st.averages = current
                .iter()
                .map(|(db, t)| {
                    let delta = t.since(&old.get(db).copied().unwrap_or_default());
                    (db.clone(), delta.averages(secs))
                })
                .collect();
            if log {
                for (db, a) in &st.averages {
                    // PgBouncer's `log_stats` line, per database.
                    tracing::info!(
                        db = %db,
                        xacts_per_s = a.xacts,
                        queries_per_s = a.queries,
                        in_bytes_per_s = a.recv,
                        out_bytes_per_s = a.sent,
                        xact_us = a.xact_us,
                        query_us = a.query_us,
                        wait_us_per_s = a.wait_us,
                        "stats"
                    );
                }
            }
        }
        st.last = Some((now, current));
        let mut merged: BTreeMap<String, Option<Histogram<u32>>> = BTreeMap::new();
        for pool in pools.all() {
            pool.stats
                .latency
                .merge_into(merged.entry(pool.key.db.clone()).or_default());
        }
        let merged: BTreeMap<String, Histogram<u32>> = merged
            .into_iter()
            .filter_map(|(db, h)| Some((db, h?)))
            .collect();
        st.latency = merged
            .iter()
            .map(|(db, h)| {
                let mut period = h.clone();
                if let Some(old) = st.last_latency.get(db) {
                    // Fails only if a pool went away meanwhile: then the
                    // whole history stands in for the period.
                    if period.subtract(old).is_err() {
                        period = h.clone();
                    }
                }
                (db.clone(), percentiles(&Some(period)))
            })
            .collect();
        st.last_latency = merged;
    }

    /// The database's per-second averages over the last complete period.
    pub fn averages(&self, db: &str) -> Totals {
        let st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.averages.get(db).copied().unwrap_or_default()
    }

    /// Per-second averages and latency percentiles of the last complete
    /// period (zero until one has passed).
    pub fn last_period(&self, db: &str) -> (Totals, Percentiles) {
        let st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (
            st.averages.get(db).copied().unwrap_or_default(),
            st.latency.get(db).copied().unwrap_or_default(),
        )
    }
}
