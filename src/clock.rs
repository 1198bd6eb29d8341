//! Monotonic time stamps as nanoseconds in one `u64`.
//!
//! The hot path stamps and compares times a few times per transaction: a
//! request's start and answer, a server's last use at check-in and
//! check-out. `std::time::Instant` is 16 bytes and each subtraction
//! normalises seconds and nanoseconds (about 37 instructions, six per `-S`
//! transaction by callgrind); a [`Stamp`] is 8 bytes, so is an `Option` of
//! one, and it subtracts in one instruction. It reads the same clock as
//! `Instant` (`CLOCK_MONOTONIC`), so the two agree.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    pub fn now() -> Stamp {
        // CLOCK_MONOTONIC cannot fail on Linux (only a bad clock id or
        // pointer could); a failure would read as the clock's start.
        let nanos = clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            (t.tv_sec() as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.tv_nsec() as u64)
        });
        Stamp(NonZeroU64::MIN.saturating_add(nanos))
    }

    /// Nanoseconds from `earlier` to this stamp; 0 if `earlier` is later.
    pub fn nanos_since(self, earlier: Stamp) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }

    pub fn micros_since(self, earlier: Stamp) -> u64 {
        self.nanos_since(earlier) / 1_000
    }

    /// The time from `earlier` to this stamp; zero if `earlier` is later.
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// Whether at least `d` has passed from `earlier` to this stamp.
    pub fn at_least(self, earlier: Stamp, d: Duration) -> bool {
        u128::from(self.nanos_since(earlier)) >= d.as_nanos()
    }

    /// This moment as an `Instant`, for deadlines handed to timers (once
    /// per event while `transaction_timeout` is set): measured from one
    /// pair of readings of the shared clock taken once per process, so it
    /// costs an addition and no clock read.
    pub fn to_instant(self) -> Instant {
        static BASE: OnceLock<(Instant, Stamp)> = OnceLock::new();
        let &(instant, stamp) = BASE.get_or_init(|| (Instant::now(), Stamp::now()));
        match self >= stamp {
            true => instant + self.since(stamp),
            false => instant.checked_sub(stamp.since(self)).unwrap_or(instant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_clock_instant_reads() {
        let (i0, s0) = (Instant::now(), Stamp::now());
        std::thread::sleep(Duration::from_millis(20));
        let (s1, i1) = (Stamp::now(), Instant::now());
        let stamped = s1.since(s0);
        assert!(stamped >= Duration::from_millis(20), "{stamped:?}");
        assert!(stamped <= i1 - i0, "{stamped:?} vs {:?}", i1 - i0);
        assert_eq!(s0.since(s1), Duration::ZERO);
        assert!(s1.at_least(s0, Duration::from_millis(20)));
        assert!(!s1.at_least(s0, Duration::from_secs(60)));
        assert_eq!(s1.micros_since(s0), s1.nanos_since(s0) / 1000);
        // Before and after the process's base pair is read, to within the
        // moments between two clock readings.
        for (i, s) in [(i0, s0), (Instant::now(), Stamp::now())] {
            let back = s.to_instant();
            let off = back.max(i) - back.min(i);
            assert!(off < Duration::from_millis(5), "{off:?}");
        }
        let later = Stamp::now();
        std::thread::sleep(Duration::from_millis(10));
        assert!(later.to_instant() + Duration::from_millis(10) <= Instant::now());
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
