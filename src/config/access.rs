//! Who may use the admin console, and under which database names it is
//! reached: read from the config at login, before the console runs.

use super::ProxySettings;

/// The database names that reach the console (unless configured as real ones).
pub const CONSOLE_DATABASES: [&str; 2] = ["pgwarden", "pgbouncer"];

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `admin_users`: everything.
    Admin,
    /// `stats_users`: `SHOW` only.
    Stats,
}

impl Access {
    /// The user's access, `None` when it has none.
    pub fn of(settings: &ProxySettings, user: &str) -> Option<Access> {
        if settings.admin_users.contains(user) {
            Some(Access::Admin)
        } else if settings.stats_users.contains(user) {
            Some(Access::Stats)
        } else {
            None
        }
    }
}
