//! WAL positions and how far behind a replica is, in bytes and in time.
//!
//! Time lag is measured against the primary's own history as the monitor
//! saw it: a replica that has replayed up to LSN `x` is as old as the moment
//! the primary was first seen past `x`. So an idle primary (whose LSN does
//! not move) gives lag 0 once the replica has caught up, where
//! `now() - pg_last_xact_replay_timestamp()` would keep growing; and no
//! clock of any server is compared with another's. Precision is one
//! monitor interval.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

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

/// When the primary was first seen at each WAL position.
pub struct LsnHistory {
    samples: VecDeque<(Instant, u64)>,
    cap: usize,
}

impl LsnHistory {
    pub fn new(cap: usize) -> Self {
        Self {
            samples: VecDeque::new(),
            cap: cap.max(2),
        }
    }

    /// Records the primary's position as seen at `at`.
    pub fn record(&mut self, at: Instant, lsn: u64) {
        if self.samples.back().is_some_and(|&(_, l)| l >= lsn) {
            return;
        }
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    pub fn latest(&self) -> Option<u64> {
        self.samples.back().map(|&(_, l)| l)
    }

    /// How long ago the primary first had WAL that `replayed` lacks.
    pub fn lag(&self, replayed: u64, now: Instant) -> Duration {
        self.samples
            .iter()
            .find(|&&(_, l)| l > replayed)
            .map_or(Duration::ZERO, |&(t, _)| now.saturating_duration_since(t))
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
    fn time_lag_from_history() {
        let t0 = Instant::now();
        let mut h = LsnHistory::new(100);
        h.record(t0, 100);
        h.record(t0 + Duration::from_millis(250), 200);
        h.record(t0 + Duration::from_millis(500), 300);
        let now = t0 + Duration::from_millis(1000);
        assert_eq!(h.lag(300, now), Duration::ZERO);
        assert_eq!(h.lag(250, now), Duration::from_millis(500));
        assert_eq!(h.lag(100, now), Duration::from_millis(750));
        // An idle primary: caught up means no lag, however long ago.
        assert_eq!(h.lag(300, now + Duration::from_secs(60)), Duration::ZERO);
    }
}
