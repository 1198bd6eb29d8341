//! Startup settings checked as PostgreSQL checks them at login.
//!
//! A pooled client's settings are applied to whichever server it borrows,
//! per transaction. A value PostgreSQL would refuse (`DateStyle=Bogus`)
//! would make that sync fail on a server mid-session, where the client's
//! query then runs with the previous client's settings. So a login carrying
//! a value no server has accepted yet is checked first, on a server, with
//! `SET LOCAL` (validated like a login's settings, undone at the end of the
//! statement), and refused with PostgreSQL's own error if it fails.
//!
//! Accepted `name=value` pairs are remembered per pool, so that the usual
//! logins (drivers send the same few settings) cost no round trip.

use std::sync::Arc;

use crate::error::ProxyError;
use crate::pool::Pool;
use crate::server::ServerError;
use crate::state::set_local_sql;

/// Settings PostgreSQL never refuses a value of: pgwarden's own (mere
/// placeholders to PostgreSQL) and `application_name`, which it cleans
/// (non-ASCII becomes `?`) and truncates instead. Drivers send a distinct
/// `application_name` per client, so checking it would cost a server round
/// trip at nearly every login.
fn any_value_goes(name: &str) -> bool {
    name.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("pgwarden."))
        || name.eq_ignore_ascii_case("application_name")
}

/// Checks the client's startup settings (`options` already expanded into
/// `settings`) on a server of `pool` unless each was accepted before.
///
/// # Errors
/// The server's refusal (as a FATAL with its SQLSTATE, as PostgreSQL
/// refuses such a login), or why no server could be had.
pub async fn check_settings(
    pool: &Arc<Pool>,
    settings: &[(String, String)],
) -> Result<(), ProxyError> {
    let unknown: Vec<(&str, &str)> = {
        let accepted = &pool.accepted_settings;
        settings
            .iter()
            .filter(|(k, _)| !any_value_goes(k))
            .filter(|(k, v)| !accepted.contains(k, v))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    if unknown.is_empty() {
        return Ok(());
    }
    let mut guard = match pool.try_checkout() {
        Some(g) => g,
        None => Box::pin(pool.checkout())
            .await
            .map_err(|e| ProxyError::from_pool(e, &pool.key.user))?,
    };
    let sql = set_local_sql(unknown.iter().copied());
    match guard.conn().run(&sql).await {
        Ok(()) => {
            pool.accepted_settings.add(&unknown);
            Ok(())
        }
        // The failed statement changed nothing; the server stays usable.
        Err(ServerError::Refused(e)) => Err(ProxyError::Server {
            code: e.code,
            message: e.message,
        }),
        Err(e) => {
            guard.close();
            tracing::warn!(pool = %pool.key, error = %e, "server lost while checking startup settings");
            Err(ProxyError::ServerUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::any_value_goes;

    #[test]
    fn only_settings_postgresql_never_refuses_skip_the_check() {
        assert!(any_value_goes("application_name"));
        assert!(any_value_goes("Application_Name"));
        assert!(any_value_goes("pgwarden.min_lsn"));
        assert!(!any_value_goes("DateStyle"));
        assert!(!any_value_goes("search_path"));
        assert!(!any_value_goes("application"));
    }
}
