//! Startup settings a pool's servers have accepted, so that a login
//! carrying only those needs no check on a server (`client::validate`).

use std::collections::HashSet;
use std::sync::Mutex;

/// Remembered pairs per pool; forgotten all at once beyond this.
const REMEMBERED: usize = 4096;

/// `name=value` settings a server of the pool has accepted.
#[derive(Default)]
pub struct Accepted(Mutex<HashSet<String>>);

impl Accepted {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, name: &str, value: &str) -> bool {
        self.lock().contains(&key(name, value))
    }

    pub fn add(&self, settings: &[(&str, &str)]) {
        let mut set = self.lock();
        if set.len() + settings.len() > REMEMBERED {
            set.clear();
        }
        set.extend(settings.iter().map(|(k, v)| key(k, v)));
    }
}

/// Names are case-insensitive to PostgreSQL; values are not.
fn key(name: &str, value: &str) -> String {
    format!("{}={value}", name.to_ascii_lowercase())
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
}
