//! One node's standing, as a plain state machine the monitor drives:
//! up/down with a rise count and back-off, and the lag hysteresis that
//! takes a replica out of rotation and lets it back in.

use std::time::Duration;

/// Longest wait between checks of a failing node.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not checked yet.
    Unknown,
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub state: State,
    /// Good checks in a row since the node went down.
    good: u32,
    /// Failed checks in a row.
    bad: u32,
    /// Over the lag limit (and not yet back under half of it for `rise` checks).
    pub lagging: bool,
    calm: u32,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: State::Unknown,
            good: 0,
            bad: 0,
            lagging: false,
            calm: 0,
        }
    }
}

impl Health {
    /// Takes one check's outcome; returns true if up/down changed. A first
    /// check decides at once; a node that went down needs `rise` good ones.
    pub fn observe(&mut self, ok: bool, rise: u32) -> bool {
        let before = self.state;
        if ok {
            self.bad = 0;
            self.good += 1;
            if self.state == State::Unknown || self.good >= rise.max(1) {
                self.state = State::Up;
            }
        } else {
            self.good = 0;
            self.bad = self.bad.saturating_add(1);
            self.state = State::Down;
        }
        before != self.state
    }

    /// Takes one lag reading against the limits (0 = no limit); returns
    /// true if the node left or rejoined rotation.
    pub fn observe_lag(&mut self, over: bool, under_half: bool, rise: u32) -> bool {
        let before = self.lagging;
        if over {
            self.lagging = true;
            self.calm = 0;
        } else if self.lagging {
            self.calm = if under_half { self.calm + 1 } else { 0 };
            if self.calm >= rise.max(1) {
                self.lagging = false;
            }
        }
        before != self.lagging
    }

    /// False until the first check.
    pub fn is_known(&self) -> bool {
        self.state != State::Unknown
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// How long to wait before the next check: the interval, doubled per
    /// failure in a row (to 2 s), so a dead node is not hammered.
    pub fn next_delay(&self, interval: Duration) -> Duration {
        if self.bad == 0 {
            return interval;
        }
        let factor = 1u32 << self.bad.min(4);
        (interval * factor).min(MAX_BACKOFF.max(interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_after_consecutive_good_checks() {
        let mut h = Health::default();
        assert!(h.observe(true, 2));
        assert!(h.is_up());
        assert!(h.observe(false, 2));
        assert!(!h.observe(true, 2));
        assert!(!h.is_up());
        assert!(h.observe(true, 2));
        assert!(h.is_up());
    }

    #[test]
    fn backs_off() {
        let mut h = Health::default();
        let i = Duration::from_millis(250);
        assert_eq!(h.next_delay(i), i);
        h.observe(false, 2);
        assert_eq!(h.next_delay(i), Duration::from_millis(500));
        for _ in 0..10 {
            h.observe(false, 2);
        }
        assert_eq!(h.next_delay(i), Duration::from_secs(2));
    }

    #[test]
    fn lag_hysteresis() {
        let mut h = Health::default();
        assert!(h.observe_lag(true, false, 2));
        assert!(
            !h.observe_lag(false, false, 2),
            "below the limit but not half"
        );
        assert!(!h.observe_lag(false, true, 2));
        assert!(h.observe_lag(false, true, 2));
        assert!(!h.lagging);
    }
}
