//! The new process's side of an online restart: a client handed over by
//! the process this one took over from becomes a session here, with the
//! key, settings, statements and routing state it had there. Nothing is
//! said to the client: it sees no login, only its next answer.
//!
//! Owns: rebuilding a [`Login`] without a handshake (the old process
//! authenticated the client; the hand-over socket is only reachable by
//! whoever could start pgwarden).

use std::sync::Arc;

use super::handshake::{admit, client_info, find_secret, route_state, startup_set, Login};
use super::members::{choose, ServerLogin};
use super::session::Session;
use crate::auth::backend::BackendSecret;
use crate::auth::scram::Keys;
use crate::error::ProxyError;
use crate::handoff::HandedClient;
use crate::net::Stream;
use crate::shared::Shared;

/// The session of a handed-over client, ready to run.
///
/// # Errors
/// Why this process cannot serve it: its database is gone from the config,
/// a limit is full, its key is taken. The caller tells the client (57P01
/// would invite a reconnect; these are the errors a reconnect would meet).
pub async fn resume(
    io: Stream,
    shared: Arc<Shared>,
    handed: Box<HandedClient>,
) -> Result<Box<Session>, (Stream, ProxyError)> {
    match login(&io, &shared, &handed).await {
        Ok(login) => {
            let mut session = Session::new(io, bytes::BytesMut::new(), login, shared);
            session.resume(&handed);
            Ok(session)
        }
        Err(e) => Err((io, e)),
    }
}

async fn login(io: &Stream, shared: &Arc<Shared>, h: &HandedClient) -> Result<Login, ProxyError> {
    let loaded = shared.config.load_full();
    let (user, database) = (h.user.as_str(), h.database.as_str());
    let db_settings = loaded
        .database(database)
        .cloned()
        .ok_or_else(|| ProxyError::UnknownDatabase(database.to_owned()))?;
    let slot = admit(shared, &loaded, user, database)?;
    // As at login: the keys its SCRAM proof gave, or the stored secret.
    let own = match &h.scram {
        Some(k) => Some(BackendSecret::ScramKeys {
            keys: Keys {
                client_key: k.client_key,
                server_key: k.server_key,
            },
            salt: k.salt.clone(),
            iterations: k.iterations,
        }),
        None => find_secret(&loaded, user, database)
            .await
            .and_then(|s| BackendSecret::from_stored(&s)),
    };
    let server = ServerLogin::of(&db_settings, &loaded, user, own);
    let chosen = choose(
        shared,
        &loaded,
        (database, &db_settings),
        user,
        &h.startup,
        &server,
    )?;
    let registration = shared
        .cancels
        .register_key(h.process_id, h.secret_key)
        .ok_or(ProxyError::Internal)?;
    let mut info = client_info(shared, io, (user, database), &h.startup, false);
    info.connected = std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.connected_ms);
    let _ = registration.control.info.set(info);
    let mode = loaded.pool_mode(database, user);
    let route = route_state(chosen.routed, mode);
    Ok(Login {
        database: shared.names.get(database),
        mode,
        route,
        pool: chosen.pool,
        registration,
        params: startup_set(shared, h.startup.clone()),
        slot,
    })
}
