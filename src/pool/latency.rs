//! Query latency of one pool's servers (so of one node, for one user), as
//! an HDR histogram of microseconds: `SHOW LATENCY` and `/metrics` read its
//! percentiles.
//!
//! Recording takes an uncontended lock: sessions try each shard and only
//! wait when all are busy. The histograms are made at the first record, so
//! a pool that never serves costs nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Latencies above this (in µs, one hour) count as this.
const HIGHEST_US: u64 = 3_600_000_000;
const SHARDS: usize = 2;

#[derive(Debug, Default)]
pub struct Latency {
    shards: [Mutex<Option<Histogram<u32>>>; SHARDS],
    /// Every recorded latency added up (a histogram's `_sum`).
    sum_us: AtomicU64,
}

/// Percentiles of one or more pools, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Records one query (a request to its answer) of `us` microseconds.
    pub fn record(&self, us: u64) {
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        for shard in &self.shards {
            if let Ok(mut h) = shard.try_lock() {
                add(&mut h, us);
                return;
            }
        }
        let mut h = self.shards[0].lock().unwrap_or_else(|p| p.into_inner());
        add(&mut h, us);
    }

    /// Every recorded latency added up, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Adds this pool's latencies to `into`.
    pub fn merge_into(&self, into: &mut Option<Histogram<u32>>) {
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|p| p.into_inner());
            let Some(h) = h.as_ref() else {
                continue;
            };
            match into {
                Some(acc) => {
                    let _ = acc.add(h);
                }
                None => *into = Some(h.clone()),
            }
        }
    }
}

fn add(h: &mut Option<Histogram<u32>>, us: u64) {
    if h.is_none() {
        *h = Histogram::new_with_bounds(1, HIGHEST_US, 2).ok();
    }
    if let Some(h) = h.as_mut() {
        h.saturating_record(us.clamp(1, HIGHEST_US));
    }
}

/// The percentiles of a merged histogram.
pub fn percentiles(h: &Option<Histogram<u32>>) -> Percentiles {
    let Some(h) = h.as_ref().filter(|h| !h.is_empty()) else {
        return Percentiles::default();
    };
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_values() {
        let l = Latency::default();
        for us in 1..=1000 {
            l.record(us);
        }
        let mut h = None;
        l.merge_into(&mut h);
        let p = percentiles(&h);
        assert_eq!(p.count, 1000);
        assert!((495..=505).contains(&p.p50), "{p:?}");
        assert!((985..=1000).contains(&p.p99), "{p:?}");
        assert!(p.max >= 999);
        assert_eq!(percentiles(&None), Percentiles::default());
    }
}
