//! Which statements one server connection has prepared, least recently
//! used first out, bounded by `max_prepared_statements`.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct ServerStatements {
    /// Statement id -> tick of last use. The ids are pgwarden's own, so a
    /// fast hasher is safe here; it is looked up on every Bind.
    last_use: HashMap<u64, u64, foldhash::fast::RandomState>,
    tick: u64,
}

impl ServerStatements {
    pub fn contains(&self, id: u64) -> bool {
        self.last_use.contains_key(&id)
    }

    /// Marks a statement used now (adding it if new).
    pub fn touch(&mut self, id: u64) {
        self.tick += 1;
        self.last_use.insert(id, self.tick);
    }

    /// Marks a statement used now if the server has it: one lookup where
    /// `contains` then `touch` would take two.
    pub fn touch_if_present(&mut self, id: u64) -> bool {
        match self.last_use.get_mut(&id) {
            Some(last) => {
                self.tick += 1;
                *last = self.tick;
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, id: u64) {
        self.last_use.remove(&id);
    }

    pub fn clear(&mut self) {
        self.last_use.clear();
    }

    pub fn len(&self) -> usize {
        self.last_use.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_use.is_empty()
    }

    /// A tick that later uses are above: taken when a transaction starts,
    /// so that statements it uses are not evicted under it.
    pub fn now(&self) -> u64 {
        self.tick
    }

    /// Picks the least recently used statement to close when over `max`,
    /// skipping any used since `since` (a portal of the running transaction
    /// may depend on it). Removes and returns its id.
    pub fn evict_one(&mut self, max: usize, since: u64) -> Option<u64> {
        if self.last_use.len() <= max {
            return None;
        }
        let (&id, _) = self
            .last_use
            .iter()
            .filter(|(_, &t)| t <= since)
            .min_by_key(|(_, &t)| t)?;
        self.last_use.remove(&id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_outside_the_running_transaction() {
        let mut s = ServerStatements::default();
        s.touch(1);
        s.touch(2);
        let since = s.now();
        s.touch(3);
        s.touch(1);
        assert_eq!(s.evict_one(2, since), Some(2));
        assert_eq!(s.evict_one(2, since), None, "1 and 3 are in use");
        assert!(s.contains(1) && s.contains(3));
    }
}
