//! Startup settings a pool's servers have accepted, so that a login
//! carrying only those needs no check on a server (`client::validate`).
//!
//! Kept as 64-bit keyed hashes of `name=value` rather than strings: the
//! set is one table with no allocation per pair. Strings allocated one by
//! one during a crowd of logins outlived the crowd, one per heap page,
//! and kept the allocator from returning those pages when it left.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

/// Remembered pairs per pool; forgotten all at once beyond this.
const REMEMBERED: usize = 4096;

/// `name=value` settings a server of the pool has accepted.
#[derive(Default)]
pub struct Accepted {
    /// Keyed per process, so that no client can aim a value at another's
    /// hash and skip its check.
    keys: RandomState,
    seen: Mutex<HashSet<u64>>,
}

impl Accepted {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, name: &str, value: &str) -> bool {
        self.lock().contains(&self.key(name, value))
    }

    pub fn add(&self, settings: &[(&str, &str)]) {
        let keys: Vec<u64> = settings.iter().map(|(k, v)| self.key(k, v)).collect();
        let mut set = self.lock();
        if set.len() + keys.len() > REMEMBERED {
            set.clear();
        }
        set.extend(keys);
    }

    /// Names are case-insensitive to PostgreSQL; values are not.
    fn key(&self, name: &str, value: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        for b in name.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        // The name's length ends it: ("ab", "c") is not ("a", "bc").
        h.write_usize(name.len());
        h.write(value.as_bytes());
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_case_insensitive_values_not() {
        let a = Accepted::default();
        a.add(&[("DateStyle", "ISO")]);
        assert!(a.contains("datestyle", "ISO"));
        assert!(!a.contains("datestyle", "iso"));
    }

    #[test]
    fn where_the_name_ends_matters() {
        let a = Accepted::default();
        a.add(&[("ab", "c")]);
        assert!(a.contains("ab", "c"));
        assert!(!a.contains("a", "bc"));
    }

    #[test]
    fn forgets_everything_past_its_bound() {
        let a = Accepted::default();
        let values: Vec<String> = (0..REMEMBERED).map(|i| i.to_string()).collect();
        let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("x", v.as_str())).collect();
        a.add(&pairs);
        assert!(a.contains("x", "0"));
        a.add(&[("y", "1")]);
        assert!(
            !a.contains("x", "0"),
            "cleared before growing past the bound"
        );
        assert!(a.contains("y", "1"));
    }
}
