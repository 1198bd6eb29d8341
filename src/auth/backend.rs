//! Logging in to a PostgreSQL server: answers its cleartext, md5 or SCRAM
//! request with what pgwarden knows of the user.

use tokio::io::{AsyncRead, AsyncWrite};

use bytes::BytesMut;

use super::md5;
use super::scram::{self, ChannelBinding, ClientCredentials, Keys, ScramClient, ScramError};
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
    #[error("server {0}, which server_require_auth does not allow")]
    NotAllowed(&'static str),
    #[error(transparent)]
    Net(#[from] NetError),
}

/// The ways a server may authenticate pgwarden (`server_require_auth`,
/// libpq's `require_auth`): a server that asks for another, or lets
/// pgwarden in without one it allows, is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthMethods(u8);

impl AuthMethods {
    pub const PASSWORD: AuthMethods = AuthMethods(1);
    pub const MD5: AuthMethods = AuthMethods(2);
    pub const SCRAM: AuthMethods = AuthMethods(4);
    /// No challenge at all (the server trusts the connection).
    pub const NONE: AuthMethods = AuthMethods(8);
    /// The names `server_require_auth` takes.
    pub const NAMES: [(&'static str, AuthMethods); 4] = [
        ("password", Self::PASSWORD),
        ("md5", Self::MD5),
        ("scram-sha-256", Self::SCRAM),
        ("none", Self::NONE),
    ];

    /// The methods named (unknown names are the config check's business).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a String>) -> AuthMethods {
        let mut bits = 0;
        for name in names {
            for (n, m) in Self::NAMES {
                if name.eq_ignore_ascii_case(n) {
                    bits |= m.0;
                }
            }
        }
        AuthMethods(bits)
    }

    pub fn allows(self, m: AuthMethods) -> bool {
        self.0 & m.0 != 0
    }
}

/// Runs the authentication exchange after the StartupMessage was sent, up
/// to and including AuthenticationOk.
///
/// # Errors
/// The server's own ErrorResponse, a request the secret cannot answer, or
/// one `allowed` does not allow (including an AuthenticationOk before a
/// SCRAM exchange ended with the server's proof).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MessageStream<S>,
    user: &str,
    secret: Option<&BackendSecret>,
    allowed: AuthMethods,
    end_point: Option<&[u8]>,
) -> Result<(), BackendAuthError> {
    let mut out = BytesMut::new();
    let mut scram: Option<ScramClient> = None;
    // What the server asked for so far, and whether its SCRAM proof checked.
    let mut asked = false;
    let mut proven = false;
    let need = |m: AuthMethods, what: &'static str| match allowed.allows(m) {
        true => Ok(()),
        false => Err(BackendAuthError::NotAllowed(what)),
    };
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
            AuthRequest::Ok if scram.is_some() && !proven => {
                return Err(BackendAuthError::NotAllowed(
                    "ended SCRAM without proving it knows the password",
                ))
            }
            AuthRequest::Ok if !asked => {
                need(AuthMethods::NONE, "let pgwarden in without a password")?;
                return Ok(());
            }
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => match secret {
                _ if !allowed.allows(AuthMethods::PASSWORD) => {
                    return Err(BackendAuthError::NotAllowed(
                        "asked for a cleartext password",
                    ))
                }
                Some(BackendSecret::Password(pw)) => {
                    frontend::password_message(&mut out, pw.as_bytes())
                }
                None => return Err(BackendAuthError::NoPassword),
                Some(_) => return Err(BackendAuthError::CannotAnswer("a cleartext password")),
            },
            AuthRequest::Md5 { salt } => {
                need(AuthMethods::MD5, "asked for an md5 password")?;
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
                need(AuthMethods::SCRAM, "asked for SCRAM")?;
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
                // Bound to the server's certificate whenever the server
                // offers it: SCRAM then also proves the TLS peer is the
                // server that knows the secret.
                let (mechanism, binding) = match end_point {
                    Some(data) if mechanisms.contains(&scram::MECHANISM_PLUS) => (
                        scram::MECHANISM_PLUS,
                        ChannelBinding::EndPoint(data.to_vec()),
                    ),
                    Some(_) => (scram::MECHANISM, ChannelBinding::NotChosen),
                    None => (scram::MECHANISM, ChannelBinding::Unsupported),
                };
                let (client, first) = ScramClient::start(creds, &binding);
                scram = Some(client);
                frontend::sasl_initial_response(&mut out, mechanism, first.as_bytes());
            }
            AuthRequest::SaslContinue(data) => {
                let client = scram.as_mut().ok_or(BackendAuthError::Unexpected('R'))?;
                let fin = client.respond(data)?;
                frontend::sasl_response(&mut out, fin.as_bytes());
            }
            AuthRequest::SaslFinal(data) => {
                let client = scram.as_ref().ok_or(BackendAuthError::Unexpected('R'))?;
                client.verify(data)?;
                proven = true;
                continue;
            }
            AuthRequest::Other(code) => {
                return Err(BackendAuthError::Unsupported(format!("code {code}")))
            }
        }
        asked = true;
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `login` against a hostile server that sends `requests` (each
    /// after reading whatever pgwarden answered to the one before).
    async fn against(
        requests: Vec<BytesMut>,
        allowed: AuthMethods,
    ) -> Result<(), BackendAuthError> {
        let (ours, theirs) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut theirs = MessageStream::new(theirs);
            for (i, r) in requests.iter().enumerate() {
                if i > 0 {
                    let _ = theirs.read_message(4096).await;
                }
                let _ = theirs.write_all(r).await;
            }
            // Keep the stream open until pgwarden is done.
            let _ = theirs.read_message(4096).await;
        });
        let mut ours = MessageStream::new(ours);
        let secret = BackendSecret::Password("pw".into());
        login(&mut ours, "u", Some(&secret), allowed, None).await
    }

    fn request(build: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut b = BytesMut::new();
        build(&mut b);
        b
    }

    const DEFAULT: AuthMethods = AuthMethods(2 | 4 | 8);

    #[tokio::test]
    async fn a_server_asking_for_cleartext_is_refused_unless_allowed() {
        let ask = || {
            vec![
                request(be::authentication_cleartext),
                request(be::authentication_ok),
            ]
        };
        let refused = against(ask(), DEFAULT).await;
        assert!(
            matches!(refused, Err(BackendAuthError::NotAllowed(_))),
            "{refused:?}"
        );
        assert!(against(ask(), AuthMethods::PASSWORD).await.is_ok());
    }

    #[tokio::test]
    async fn a_server_skipping_scrams_proof_is_refused() {
        let sasl = request(|b| be::authentication_sasl(b, &[scram::MECHANISM]));
        let refused = against(vec![sasl, request(be::authentication_ok)], DEFAULT).await;
        assert!(
            matches!(refused, Err(BackendAuthError::NotAllowed(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn no_challenge_needs_none() {
        assert!(against(vec![request(be::authentication_ok)], DEFAULT)
            .await
            .is_ok());
        let refused = against(vec![request(be::authentication_ok)], AuthMethods::SCRAM).await;
        assert!(
            matches!(refused, Err(BackendAuthError::NotAllowed(_))),
            "{refused:?}"
        );
    }

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
                allowed_auth: AuthMethods::MD5,
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("abcdef"),
            "{shown}"
        );
    }
}
