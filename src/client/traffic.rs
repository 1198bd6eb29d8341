//! A session's traffic for `SHOW STATS`: requests, bytes each way, and the
//! time spent in queries and transactions, added to its pool's counters
//! when each transaction ends (a few atomic adds per transaction, none per
//! message).

use std::num::NonZeroU64;
use std::sync::atomic::Ordering;

use crate::clock::Stamp;
use crate::pool::latency::Latency;
use crate::pool::PoolStats;
use crate::prepared::SessionTracker;
use crate::stats::queries::QueryStats;
use crate::wire::frontend as fe;
use crate::wire::take_cstr;

#[derive(Debug, Default)]
pub struct Traffic {
    queries: u32,
    recv: u64,
    sent: u64,
    /// The current transaction's first request.
    xact_start: Option<Stamp>,
    /// The oldest request the server has not answered yet.
    query_start: Option<Stamp>,
    query_us: u64,
    /// The current request's query fingerprint (`query_stats`). Non-zero
    /// (a query hashing to 0 is not counted), so that every client's
    /// `Session` is 16 bytes smaller: it then fits a smaller size class of
    /// the allocator, 64 bytes less per client (docs/benchmarks.md).
    fingerprint: Option<NonZeroU64>,
    /// The last unnamed statement parsed: its Bind runs it.
    parsed: Option<NonZeroU64>,
}

/// What a client message says about the query it runs (`query_stats`).
#[derive(Debug, Clone, Copy)]
pub enum QueryText<'a> {
    /// A Query, or a Bind of a named statement: runs this SQL.
    Runs(&'a [u8]),
    /// A Parse of the unnamed statement: its Bind will run it.
    Parses(&'a [u8]),
    /// A Bind of the unnamed statement.
    RunsParsed,
}

impl<'a> QueryText<'a> {
    /// What the client message `tag` with `body` runs or prepares; a Bind
    /// of a named statement is looked up in `tracker`.
    pub fn of(tag: u8, body: &'a [u8], tracker: Option<&'a SessionTracker>) -> Option<Self> {
        match tag {
            fe::QUERY => take_cstr(body).map(|(sql, _)| QueryText::Runs(sql)),
            fe::PARSE => {
                let (name, rest) = take_cstr(body)?;
                let (sql, _) = take_cstr(rest)?;
                // A named statement counts when a Bind runs it.
                name.is_empty().then_some(QueryText::Parses(sql))
            }
            fe::BIND => {
                let (_, rest) = take_cstr(body)?;
                let (name, _) = take_cstr(rest)?;
                if name.is_empty() {
                    return Some(QueryText::RunsParsed);
                }
                tracker?.statement(name).map(|s| QueryText::Runs(s.query()))
            }
            _ => None,
        }
    }
}

impl Traffic {
    /// `n` requests (Query, Sync, FunctionCall) go out; `first` when none
    /// was outstanding before them.
    pub fn request(&mut self, n: u32, first: bool) {
        self.queries += n;
        if first {
            let now = Stamp::now();
            self.query_start = Some(now);
            self.xact_start.get_or_insert(now);
        }
    }

    /// When the open transaction (or lone request) began.
    pub fn xact_start(&self) -> Option<Stamp> {
        self.xact_start
    }

    pub fn received(&mut self, bytes: usize) {
        self.recv += bytes as u64;
    }

    pub fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }

    /// What the current request runs (its first query counts), for
    /// `SHOW QUERIES`; a prepare alone is not a call.
    pub fn query(&mut self, queries: &QueryStats, text: QueryText<'_>) {
        let runs = match text {
            QueryText::Parses(sql) => {
                self.parsed = NonZeroU64::new(queries.note(sql));
                return;
            }
            QueryText::Runs(sql) if !sql.is_empty() => NonZeroU64::new(queries.note(sql)),
            QueryText::Runs(_) => None,
            QueryText::RunsParsed => self.parsed,
        };
        if self.fingerprint.is_none() {
            self.fingerprint = runs;
        }
    }

    /// Every request is answered; `idle` when no transaction is open, which
    /// ends the transaction and flushes into `stats`. The requests' time
    /// goes to `latency` (the server's pool) and to its query's fingerprint.
    pub fn answered(
        &mut self,
        idle: bool,
        stats: &PoolStats,
        latency: &Latency,
        queries: &QueryStats,
    ) {
        let now = Stamp::now();
        if let Some(start) = self.query_start.take() {
            let us = now.micros_since(start);
            self.query_us += us;
            latency.record(us);
            if let Some(fp) = self.fingerprint.take() {
                queries.record(fp.get(), us);
            }
        }
        if !idle {
            return;
        }
        if let Some(start) = self.xact_start.take() {
            stats.xacts.fetch_add(1, Ordering::Relaxed);
            stats
                .xact_micros
                .fetch_add(now.micros_since(start), Ordering::Relaxed);
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
        let (xact_start, fingerprint, parsed) = (self.xact_start, self.fingerprint, self.parsed);
        *self = Traffic {
            xact_start,
            fingerprint,
            parsed,
            ..Traffic::default()
        };
    }
}
