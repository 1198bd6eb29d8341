//! Giving memory back once a crowd of clients has left. The C library's
//! allocator keeps what it freed in its arenas for reuse, so without this
//! a proxy that once held 100,000 idle clients would keep their memory
//! for good. When the clients connected fall to half of their peak since
//! the last trim (and by at least [`MIN_DROP`]), `malloc_trim` returns the
//! free pages to the system: a walk of the heap, rare by construction.

/// Fewer clients leaving than this is not worth a walk of the heap.
const MIN_DROP: usize = 1_000;

/// When to give memory back, from the number of clients now.
#[derive(Debug, Default)]
pub struct Trim {
    peak: usize,
}

impl Trim {
    /// Called periodically with the clients connected now; true when the
    /// memory was given back.
    pub fn tick(&mut self, clients: usize) -> bool {
        self.peak = self.peak.max(clients);
        if !self.due(clients) {
            return false;
        }
        self.peak = clients;
        release_free_memory();
        true
    }

    fn due(&self, clients: usize) -> bool {
        self.peak - clients >= MIN_DROP && clients <= self.peak / 2
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes no pointer from us and is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_half_of_a_large_crowd_has_left() {
        let mut t = Trim::default();
        assert!(!t.tick(10_000));
        assert!(!t.tick(6_000), "not yet half");
        assert!(t.tick(5_000));
        assert!(!t.tick(4_000), "the peak is now 5,000");
        assert!(t.tick(2_000));
    }

    #[test]
    fn a_few_clients_coming_and_going_never_trim() {
        let mut t = Trim::default();
        for n in [0, 500, 10, 900, 0, 999, 0] {
            assert!(!t.tick(n));
        }
    }
}
