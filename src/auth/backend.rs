//! Logging in to a PostgreSQL server: answers its cleartext, md5 or SCRAM
//! request with what pgwarden knows of the user.

use tokio::io::{AsyncRead, AsyncWrite};

use bytes::BytesMut;

use super::md5;
use super::scram::{self, ClientCredentials, Keys, ScramClient, ScramError};
use super::secret::Secret;
use crate::net::{MessageStream, NetError};
use crate::wire::backend::{self as be, AuthRequest, ErrorFields};
use crate::wire::frontend;

/// Auth messages are small; PostgreSQL itself caps SASL tokens near this.
const MAX_AUTH_MESSAGE: usize = 64 * 1024;

/// What pgwarden can present to a server for one user.
#[derive(Clone)]
pub enum BackendSecret {
    Password(String),
    /// `md5...`: enough for md5 auth, not for cleartext or SCRAM.
    Md5(String),
    /// Keys recovered from a client's SCRAM proof.
    ScramKeys {
        keys: Keys,
        salt: Vec<u8>,
        iterations: u32,
    },
}

impl std::fmt::Debug for BackendSecret {
    // The kind, never the value: a `{:?}` of a target must not leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendSecret::Password(_) => "BackendSecret::Password(..)",
            BackendSecret::Md5(_) => "BackendSecret::Md5(..)",
            BackendSecret::ScramKeys { .. } => "BackendSecret::ScramKeys(..)",
        })
    }
}

impl BackendSecret {
    /// What a stored secret alone allows; a SCRAM secret needs a client's
    /// proof first, so it yields nothing here.
    pub fn from_stored(secret: &Secret) -> Option<BackendSecret> {
        match secret {
            Secret::Plain(p) => Some(BackendSecret::Password(p.clone())),
            Secret::Md5(m) => Some(BackendSecret::Md5(m.clone())),
            Secret::Scram(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendAuthError {
    #[error("server refused login: {} {}", .0.code, .0.message)]
    Server(ErrorFields),
    #[error("server asked for a password but pgwarden knows none for this user")]
    NoPassword,
    #[error("server asked for {0}, which the known secret cannot answer")]
    CannotAnswer(&'static str),
    #[error("unsupported authentication request {0}")]
    Unsupported(String),
    #[error("SCRAM with server: {0}")]
    Scram(#[from] ScramError),
    #[error("unexpected message {0:?} during login")]
    Unexpected(char),
    #[error(transparent)]
    Net(#[from] NetError),
}

/// Runs the authentication exchange after the StartupMessage was sent, up
/// to and including AuthenticationOk.
///
/// # Errors
/// The server's own ErrorResponse, or a request the secret cannot answer.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MessageStream<S>,
    user: &str,
    secret: Option<&BackendSecret>,
) -> Result<(), BackendAuthError> {
    let mut out = BytesMut::new();
    let mut scram: Option<ScramClient> = None;
    loop {
        let (tag, body) = stream.read_message(MAX_AUTH_MESSAGE).await?;
        match tag {
            be::AUTHENTICATION => {}
            be::ERROR_RESPONSE => {
                return Err(BackendAuthError::Server(
                    be::parse_error_fields(&body).unwrap_or_default(),
                ))
            }
            other => return Err(BackendAuthError::Unexpected(other as char)),
        }
        let request = be::parse_auth_request(&body)
            .ok_or_else(|| BackendAuthError::Unsupported("malformed".into()))?;
        out.clear();
        match request {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => match secret {
                Some(BackendSecret::Password(pw)) => {
                    frontend::password_message(&mut out, pw.as_bytes())
                }
                None => return Err(BackendAuthError::NoPassword),
                Some(_) => return Err(BackendAuthError::CannotAnswer("a cleartext password")),
            },
            AuthRequest::Md5 { salt } => {
                let stored = match secret {
                    Some(BackendSecret::Password(pw)) => md5::secret(pw, user),
                    Some(BackendSecret::Md5(m)) => m.clone(),
                    None => return Err(BackendAuthError::NoPassword),
                    Some(_) => return Err(BackendAuthError::CannotAnswer("an md5 password")),
                };
                frontend::password_message(&mut out, md5::response(&stored, salt).as_bytes());
            }
            AuthRequest::Sasl { mechanisms } => {
                if !mechanisms.contains(&scram::MECHANISM) {
                    return Err(BackendAuthError::Unsupported(mechanisms.join(",")));
                }
                let creds = match secret {
                    Some(BackendSecret::Password(pw)) => ClientCredentials::Password(pw.clone()),
                    Some(BackendSecret::ScramKeys {
                        keys,
                        salt,
                        iterations,
                    }) => ClientCredentials::Keys {
                        keys: keys.clone(),
                        salt: salt.clone(),
                        iterations: *iterations,
                    },
                    None => return Err(BackendAuthError::NoPassword),
                    Some(BackendSecret::Md5(_)) => {
                        return Err(BackendAuthError::CannotAnswer(
                            "SCRAM (only an md5 secret is known)",
                        ))
                    }
                };
                let (client, first) = ScramClient::start(creds);
                scram = Some(client);
                frontend::sasl_initial_response(&mut out, scram::MECHANISM, first.as_bytes());
            }
            AuthRequest::SaslContinue(data) => {
                let client = scram.as_mut().ok_or(BackendAuthError::Unexpected('R'))?;
                let fin = client.respond(data)?;
                frontend::sasl_response(&mut out, fin.as_bytes());
            }
            AuthRequest::SaslFinal(data) => {
                let client = scram.as_ref().ok_or(BackendAuthError::Unexpected('R'))?;
                client.verify(data)?;
                continue;
            }
            AuthRequest::Other(code) => {
                return Err(BackendAuthError::Unsupported(format!("code {code}")))
            }
        }
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let shown = format!(
            "{:?} {:?}",
            BackendSecret::Password("hunter2".into()),
            crate::server::ServerTarget {
                addr: "h:1".into(),
                dbname: "d".into(),
                user: "u".into(),
                secret: Some(BackendSecret::Md5("md5abcdef".into())),
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("abcdef"),
            "{shown}"
        );
    }
}
