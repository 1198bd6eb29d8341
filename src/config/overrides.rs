//! The console's `SET`s on the running config that the file does not hold
//! yet: re-applied over the file on each live change, written into it by
//! `SAVE CONFIG`, dropped by `RELOAD`.

use std::sync::Mutex;

/// `SET`s not yet saved to the file, as (TOML path, value).
#[derive(Debug, Default)]
pub struct Overrides(Mutex<Vec<(Vec<String>, toml::Value)>>);

impl Overrides {
    /// Remembers `path = value`, replacing an earlier `SET` of the same key.
    pub fn push(&self, path: Vec<String>, value: toml::Value) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(p, _)| *p != path);
        v.push((path, value));
    }

    /// Empties the list, returning what it held (`SAVE CONFIG` writes it).
    pub fn take(&self) -> Vec<(Vec<String>, toml::Value)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What is set and not saved, oldest first.
    pub fn list(&self) -> Vec<(Vec<String>, toml::Value)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The file was read again: what was set is gone.
    pub fn clear(&self) {
        self.take();
    }
}
