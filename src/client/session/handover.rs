//! A session crossing an online restart: leaving this process between two
//! transactions (its socket and state into the [`Outbox`]), or arriving
//! from the process this one took over from.
//!
//! [`Outbox`]: crate::handoff::Outbox

use std::os::fd::OwnedFd;

use super::Session;
use crate::auth::backend::BackendSecret;
use crate::config::PoolMode;
use crate::handoff::{HandedClient, HandedScram};
use crate::net::Stream;

impl Session {
    /// Hands the client to the new process if an online restart is under
    /// way and the session can be carried: between transactions, nothing
    /// buffered, not TLS (its keys cannot be carried yet), not in session
    /// mode (its server would have to go too). True when handed over: the
    /// session then ends without a word to the client.
    pub(super) fn hand_over(&mut self) -> bool {
        let outbox = &self.shared.outbox;
        if !outbox.is_open()
            || self.server.is_some()
            || !self.cbuf.is_empty()
            || !self.streams_quiet()
            || self.login.mode == PoolMode::Session
            || !matches!(self.client, Stream::Tcp(_) | Stream::Unix(_))
        {
            return false;
        }
        let Some(handed) = self.handed() else {
            return false;
        };
        let Some(fd) = take_fd(&mut self.client) else {
            return false;
        };
        if outbox.put((Box::new(handed), fd)).is_err() {
            tracing::warn!("the new process is gone: a client is dropped mid-hand-over");
        }
        true
    }

    /// What the new process needs to carry on with this client.
    fn handed(&self) -> Option<HandedClient> {
        let registration = &self.login.registration;
        let info = registration.control.info.get()?;
        let (settings, statements) = match self.tracker.as_deref() {
            Some(t) => {
                let (settings, statements) = t.export()?;
                (Some(settings), statements)
            }
            None => (None, Vec::new()),
        };
        let connected_ms = info
            .connected
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Some(HandedClient {
            user: info.user.to_string(),
            database: self.login.database.to_string(),
            startup: self
                .login
                .startup()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            process_id: registration.process_id,
            secret_key: registration.secret_key,
            connected_ms,
            settings,
            statements,
            route: self.route.as_ref().map(|r| r.export()),
            scram: match self.login.pool.target().secret {
                Some(BackendSecret::ScramKeys {
                    keys,
                    salt,
                    iterations,
                }) => Some(HandedScram {
                    client_key: keys.client_key,
                    server_key: keys.server_key,
                    salt,
                    iterations,
                }),
                _ => None,
            },
        })
    }

    /// Takes over the state a handed-over client had on the old process.
    pub(crate) fn resume(&mut self, handed: &HandedClient) {
        self.fresh = false;
        if let Some(settings) = &handed.settings {
            let max = self
                .shared
                .config
                .load()
                .config
                .proxy
                .max_prepared_statements;
            self.ensure_tracker(max);
            if let Some(t) = self.tracker.as_mut() {
                t.import(&self.shared.statements, settings, &handed.statements);
            }
        }
        if let (Some(route), Some(handed)) = (self.route.as_mut(), &handed.route) {
            route.import(handed);
        }
    }
}

/// The client's socket as a plain descriptor, out of the runtime; the
/// session keeps a closed stream.
fn take_fd(client: &mut Stream) -> Option<OwnedFd> {
    match std::mem::replace(client, Stream::Closed) {
        Stream::Tcp(s) => s.into_std().ok().map(OwnedFd::from),
        Stream::Unix(s) => s.into_std().ok().map(OwnedFd::from),
        other => {
            *client = other;
            None
        }
    }
}
