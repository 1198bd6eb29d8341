//! A session's traffic for `SHOW STATS`: requests, bytes each way, and the
//! time spent in queries and transactions, added to its pool's counters
//! when each transaction ends (a few atomic adds per transaction, none per
//! message).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::pool::latency::Latency;
use crate::pool::PoolStats;

#[derive(Debug, Default)]
pub struct Traffic {
    queries: u32,
    recv: u64,
    sent: u64,
    /// The current transaction's first request.
    xact_start: Option<Instant>,
    /// The oldest request the server has not answered yet.
    query_start: Option<Instant>,
    query_us: u64,
}

impl Traffic {
    /// A request (Query, Sync, FunctionCall) goes out; `first` when none
    /// was outstanding.
    pub fn request(&mut self, first: bool) {
        self.queries += 1;
        if first {
            let now = Instant::now();
            self.query_start = Some(now);
            self.xact_start.get_or_insert(now);
        }
    }

    pub fn received(&mut self, bytes: usize) {
        self.recv += bytes as u64;
    }

    pub fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }

    /// Every request is answered; `idle` when no transaction is open, which
    /// ends the transaction and flushes into `stats`. The requests' time
    /// goes to `latency` (the server's pool).
    pub fn answered(&mut self, idle: bool, stats: &PoolStats, latency: &Latency) {
        let now = Instant::now();
        if let Some(start) = self.query_start.take() {
            let us = micros(now - start);
            self.query_us += us;
            latency.record(us);
        }
        if !idle {
            return;
        }
        if let Some(start) = self.xact_start.take() {
            stats.xacts.fetch_add(1, Ordering::Relaxed);
            stats
                .xact_micros
                .fetch_add(micros(now - start), Ordering::Relaxed);
        }
        self.flush(stats);
    }

    /// Adds what was counted so far to `stats` (also when the session ends).
    pub fn flush(&mut self, stats: &PoolStats) {
        let add = |c: &std::sync::atomic::AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&stats.queries, u64::from(self.queries));
        add(&stats.recv_bytes, self.recv);
        add(&stats.sent_bytes, self.sent);
        add(&stats.query_micros, self.query_us);
        let xact_start = self.xact_start;
        *self = Traffic {
            xact_start,
            ..Traffic::default()
        };
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
