//! `auth_query`: looking a user's secret up in PostgreSQL through the
//! `auth_user` connection, as PgBouncer does.

use super::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    #[error("auth_query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
}

/// Returns the user's secret, or `None` when the query finds no such user
/// or a NULL password. `client` is logged in as `auth_user`.
///
/// # Errors
/// The query failed.
pub async fn lookup(
    client: &tokio_postgres::Client,
    query: &str,
    user: &str,
) -> Result<Option<Secret>, AuthQueryError> {
    let rows = client
        .query(query, &[&user])
        .await
        .map_err(AuthQueryError::Query)?;
    let secret = rows
        .first()
        .and_then(|row| row.try_get::<_, Option<String>>(1).ok().flatten())
        .map(|s| Secret::parse(&s));
    Ok(secret)
}
