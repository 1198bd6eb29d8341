//! Admission switches the console turns: `PAUSE`/`RESUME` hold new
//! transactions of a database (or all) at their start, `DISABLE`/`ENABLE`
//! refuse new logins to a database.
//!
//! Owns: the switches. The per-transaction check is one atomic load while
//! nothing is paused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Gates {
    /// Anything paused: the fast path skips the lock when false.
    any_paused: AtomicBool,
    state: Mutex<State>,
    resumed: Notify,
}

#[derive(Debug, Default)]
struct State {
    all_paused: bool,
    paused: HashSet<String>,
    disabled: HashSet<String>,
}

impl Gates {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether new transactions of `db` must wait.
    pub fn is_paused(&self, db: &str) -> bool {
        if !self.any_paused.load(Ordering::Acquire) {
            return false;
        }
        let st = self.lock();
        st.all_paused || st.paused.contains(db)
    }

    /// Waits until `db` is not paused.
    ///
    /// # Cancel safety
    /// Safe: it only waits.
    pub async fn wait_open(&self, db: &str) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.is_paused(db) {
                return;
            }
            resumed.await;
        }
    }

    /// `PAUSE [db]`.
    pub fn pause(&self, db: Option<&str>) {
        let mut st = self.lock();
        match db {
            Some(db) => {
                st.paused.insert(db.to_owned());
            }
            None => st.all_paused = true,
        }
        self.any_paused.store(true, Ordering::Release);
    }

    /// `RESUME [db]`; `RESUME` alone resumes everything.
    pub fn resume(&self, db: Option<&str>) {
        let mut st = self.lock();
        match db {
            Some(db) => {
                st.paused.remove(db);
            }
            None => {
                st.all_paused = false;
                st.paused.clear();
            }
        }
        let any = st.all_paused || !st.paused.is_empty();
        self.any_paused.store(any, Ordering::Release);
        drop(st);
        self.resumed.notify_waiters();
    }

    /// Whether `db` (or everything) is paused, for `SHOW DATABASES`/`STATE`.
    pub fn paused(&self, db: Option<&str>) -> bool {
        let st = self.lock();
        match db {
            Some(db) => st.all_paused || st.paused.contains(db),
            None => st.all_paused,
        }
    }

    /// `DISABLE db` / `ENABLE db`.
    pub fn set_disabled(&self, db: &str, disabled: bool) {
        let mut st = self.lock();
        if disabled {
            st.disabled.insert(db.to_owned());
        } else {
            st.disabled.remove(db);
        }
    }

    pub fn is_disabled(&self, db: &str) -> bool {
        self.lock().disabled.contains(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pause_holds_until_resume() {
        let gates = std::sync::Arc::new(Gates::default());
        assert!(!gates.is_paused("a"));
        gates.pause(Some("a"));
        assert!(gates.is_paused("a") && !gates.is_paused("b"));
        let g = gates.clone();
        let waiter = tokio::spawn(async move { g.wait_open("a").await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        gates.resume(None);
        let done = tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await;
        assert!(matches!(done, Ok(Ok(()))), "still waiting after RESUME");
        gates.pause(None);
        assert!(gates.is_paused("b") && gates.paused(None));
        gates.resume(None);
        assert!(!gates.is_paused("b"));
        gates.set_disabled("a", true);
        assert!(gates.is_disabled("a"));
    }
}
