//! A counter shared by all pools of one database or one user, for
//! `max_db_connections` and `max_user_connections`.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Limit {
    count: AtomicUsize,
}

impl Limit {
    /// Takes one unit if fewer than `max` are taken; `max == 0` means no limit.
    pub fn try_acquire(&self, max: usize) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}
