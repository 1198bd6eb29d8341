//! WAL positions and how far behind a replica is, in bytes and in time.
//!
//! Time lag is measured against the primary's own history as the monitor
//! saw it, never by comparing two servers' clocks: a replica that has
//! replayed up to LSN `x` holds every commit made before the last moment
//! the primary was seen at or below `x`. That moment ([`LsnHistory::fresh_at`])
//! is what a staleness bound is checked against: it only ever understates
//! how fresh a replica is, so a bound it proves holds. An idle primary
//! (whose LSN does not move) keeps a caught-up replica fresh as of the
//! primary's latest check.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Size of a WAL page (`XLOG_BLCKSZ`) and of its short header.
const WAL_PAGE: u64 = 8192;
const SHORT_PAGE_HEADER: u64 = 24;

/// Parses PostgreSQL's `X/Y` LSN text.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some(hi << 32 | lo)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The SQL giving the end of everything the primary has inserted into its
/// WAL, commit records included. Not `pg_current_wal_lsn()`: that is the
/// *written* position, which trails a commit made with
/// `synchronous_commit = off` until the WAL writer catches up, so a replica
/// can have replayed it and still lack the commit.
/// Answered as text, whichever protocol asks.
pub const PRIMARY_LSN_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// A position read with [`PRIMARY_LSN_SQL`], as a replica's replay
/// position will show it once it holds everything before it.
///
/// When the last record ended exactly at a page boundary, the insert
/// position points past the next page's header, which a replica's replay
/// position (the end of the last record) never shows until more WAL comes.
/// No record can end right after a short page header, so stepping back
/// over it is exact. (The long header at a segment start is left alone:
/// its offset can be a real record end on other pages, and a position a
/// replica reaches later only sends a read to the primary.)
pub fn insert_lsn_as_replayed(lsn: u64) -> u64 {
    match lsn % WAL_PAGE {
        SHORT_PAGE_HEADER => lsn - SHORT_PAGE_HEADER,
        _ => lsn,
    }
}

/// One WAL position of the primary and when the monitor saw it there.
#[derive(Debug, Clone, Copy)]
struct Sample {
    lsn: u64,
    /// The first check that saw the primary at `lsn` (answer received).
    first: Instant,
    /// The last check that saw it there (query sent): every commit made
    /// before this moment is at or below `lsn`.
    last: Instant,
}

/// The primary's WAL positions over time, as the monitor saw them.
pub struct LsnHistory {
    samples: VecDeque<Sample>,
    cap: usize,
}

impl LsnHistory {
    pub fn new(cap: usize) -> Self {
        Self {
            samples: VecDeque::new(),
            cap: cap.max(2),
        }
    }

    /// Records the primary's position `lsn`, read by a check sent at
    /// `asked` and answered at `answered`.
    pub fn record(&mut self, asked: Instant, answered: Instant, lsn: u64) {
        if let Some(back) = self.samples.back_mut() {
            if back.lsn >= lsn {
                // Still there (or a stale answer): the primary was at most
                // this far when the check was sent.
                back.last = back.last.max(asked);
                return;
            }
        }
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            lsn,
            first: answered,
            last: asked,
        });
    }

    pub fn latest(&self) -> Option<u64> {
        self.samples.back().map(|s| s.lsn)
    }

    /// The latest moment as of which a node that replayed up to `replayed`
    /// is known to hold every commit: when the primary was last seen at or
    /// below it. `None` when no such moment is remembered.
    pub fn fresh_at(&self, replayed: u64) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|s| s.lsn <= replayed)
            .map(|s| s.last)
    }

    /// How stale a node that replayed up to `replayed` may be at `now`:
    /// time since [`Self::fresh_at`], or since the oldest remembered
    /// position when it is further behind than the history goes.
    pub fn lag(&self, replayed: u64, now: Instant) -> Duration {
        let since = self
            .fresh_at(replayed)
            .or_else(|| self.samples.front().map(|s| s.first));
        since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn insert_position_past_a_page_header() {
        assert_eq!(insert_lsn_as_replayed(0x300_2018), 0x300_2000);
        assert_eq!(insert_lsn_as_replayed(0x300_2019), 0x300_2019);
        assert_eq!(insert_lsn_as_replayed(0x300_0028), 0x300_0028);
    }

    #[test]
    fn freshness_from_history() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = LsnHistory::new(100);
        h.record(t0, t0 + ms(1), 100);
        h.record(t0 + ms(250), t0 + ms(251), 200);
        h.record(t0 + ms(500), t0 + ms(501), 300);
        let now = t0 + ms(1000);
        // Caught up: fresh as of the primary's last check.
        assert_eq!(h.fresh_at(300), Some(t0 + ms(500)));
        assert_eq!(h.lag(300, now), ms(500));
        // Between two positions: only the older one's moment is proven.
        assert_eq!(h.lag(250, now), ms(750));
        assert_eq!(h.lag(100, now), ms(1000));
        // Behind everything remembered: as old as the history at least.
        assert_eq!(h.fresh_at(50), None);
        assert_eq!(h.lag(50, now), ms(999));
        // An idle primary, checked again: a caught-up node stays fresh.
        h.record(t0 + ms(990), t0 + ms(991), 300);
        assert_eq!(h.lag(300, now), ms(10));
        assert_eq!(h.lag(250, now), ms(750));
    }
}
