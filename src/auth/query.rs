//! `auth_query`: looking a user's secret up in PostgreSQL through the
//! `auth_user` connection, as PgBouncer does.

use std::time::Duration;

use super::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    #[error("auth_query connection failed: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("auth_query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
    #[error("auth_query timed out")]
    Timeout,
    #[error("auth_user has no cleartext password to log in with")]
    NoPassword,
}

/// Where to run the query and as whom.
pub struct AuthQuery<'a> {
    pub addr: &'a str,
    pub dbname: &'a str,
    pub auth_user: &'a str,
    pub auth_password: &'a str,
    pub query: &'a str,
}

/// Returns the user's secret, or `None` when the query finds no such user
/// or a NULL password.
///
/// # Errors
/// The auth_user connection or the query failed.
pub async fn lookup(
    q: &AuthQuery<'_>,
    user: &str,
    timeout: Duration,
) -> Result<Option<Secret>, AuthQueryError> {
    match tokio::time::timeout(timeout, run(q, user)).await {
        Ok(r) => r,
        Err(_) => Err(AuthQueryError::Timeout),
    }
}

async fn run(q: &AuthQuery<'_>, user: &str) -> Result<Option<Secret>, AuthQueryError> {
    let (host, port) = q.addr.rsplit_once(':').unwrap_or((q.addr, "5432"));
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port.parse().unwrap_or(5432))
        .user(q.auth_user)
        .password(q.auth_password)
        .dbname(q.dbname)
        .application_name("pgwarden auth_query");
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(AuthQueryError::Connect)?;
    let driver = tokio::spawn(conn);
    let rows = client
        .query(q.query, &[&user])
        .await
        .map_err(AuthQueryError::Query);
    drop(client);
    let _ = driver.await;
    let rows = rows?;
    let secret = rows
        .first()
        .and_then(|row| row.try_get::<_, Option<String>>(1).ok().flatten())
        .map(|s| Secret::parse(&s));
    Ok(secret)
}
