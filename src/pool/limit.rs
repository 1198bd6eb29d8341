//! A counter shared by all pools of one database or one user, for
//! `max_db_connections` and `max_user_connections`, and the list of those
//! pools, so that a pool held back by the limit can have another pool's
//! idle server closed for it (as PgBouncer evicts one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::Pool;

#[derive(Default)]
pub struct Limit {
    count: AtomicUsize,
    members: Mutex<Vec<Weak<Pool>>>,
}

impl Limit {
    pub(super) fn add_member(&self, pool: &Arc<Pool>) {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|w| w.strong_count() > 0);
        m.push(Arc::downgrade(pool));
    }

    /// The other pools sharing this limit.
    pub(super) fn others(&self, me: &Pool) -> Vec<Arc<Pool>> {
        let m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter_map(Weak::upgrade)
            .filter(|p| !std::ptr::eq(Arc::as_ptr(p), me))
            .collect()
    }

    /// True when a limit is set and fully taken.
    pub fn is_full(&self, max: usize) -> bool {
        max > 0 && self.current() >= max
    }

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
