//! One shared copy of values that many clients carry alike (the set of
//! startup parameters a driver sends, user and database names), so that
//! ten thousand idle clients hold ten thousand pointers rather than ten
//! thousand copies.
//!
//! Values no client holds any more are swept once the set has doubled
//! since the last sweep: a stream of distinct values (an attacker's, or
//! a parameter that differs per client) cannot grow it without bound, and
//! the sweep's cost is spread over the insertions that made it due.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Below this many entries the set is never swept.
const MIN_SWEEP: usize = 64;

pub struct Interner<T: ?Sized> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T: ?Sized> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + Eq + Hash> Default for Interner<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                set: HashSet::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }
}

impl<T> Interner<T>
where
    T: ?Sized + Eq + Hash,
    for<'a> Arc<T>: From<&'a T>,
{
    /// The shared copy of `value`, made if there is none.
    pub fn get(&self, value: &T) -> Arc<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = inner.set.get(value) {
            return found.clone();
        }
        if inner.set.len() >= inner.sweep_at {
            inner.set.retain(|v| Arc::strong_count(v) > 1);
            inner.sweep_at = (inner.set.len() * 2).max(MIN_SWEEP);
        }
        let made = Arc::from(value);
        inner.set.insert(Arc::clone(&made));
        made
    }

    /// Distinct values held (some perhaps by no client since the last sweep).
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let names: Interner<str> = Interner::default();
        let a = names.get("app");
        let b = names.get(&String::from("app"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &names.get("other")));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn values_nobody_holds_are_swept_so_distinct_ones_cannot_grow_it() {
        let names: Interner<str> = Interner::default();
        let kept = names.get("kept");
        for i in 0..10_000 {
            drop(names.get(&format!("client-{i}")));
        }
        assert!(names.len() <= 2 * MIN_SWEEP, "{} entries", names.len());
        assert!(Arc::ptr_eq(&kept, &names.get("kept")), "a held value stays");
    }

    #[test]
    fn slices_of_pairs_intern_too() {
        type Params = [(Box<str>, Box<str>)];
        let sets: Interner<Params> = Interner::default();
        let one: Vec<(Box<str>, Box<str>)> = vec![("DateStyle".into(), "ISO".into())];
        let a = sets.get(&one);
        let b = sets.get(&one.clone());
        assert!(Arc::ptr_eq(&a, &b));
    }
}
