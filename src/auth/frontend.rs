//! Authenticating a client to pgwarden.
//!
//! The method follows `auth_type` and, like PgBouncer, the kind of secret
//! known: md5 with a SCRAM secret becomes SCRAM, SCRAM with an md5 secret
//! becomes md5. A user pgwarden does not know goes through the exchange
//! `auth_type` names against a mock secret (for SCRAM, with a salt stable
//! per name and a check that costs what a stored secret's does), and fails
//! as a wrong password would, so that neither the messages nor their timing
//! reveal which user names exist.

use bytes::BytesMut;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite};

use super::backend::BackendSecret;
use super::md5;
use super::scram::{self, ChannelBinding, Keys, ScramSecret, ScramServer};
use super::secret::Secret;
use super::AuthType;
use crate::net::{MessageStream, NetError};
use crate::wire::{backend as be, frontend as fe};

/// Cap on a client's auth message (PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH).
const MAX_AUTH_MESSAGE: usize = 65_535;

/// What a successful login leaves behind for logging in to servers.
#[derive(Debug, Default)]
pub struct Authenticated {
    /// Keys recovered from a SCRAM proof, or a cleartext password received.
    pub backend_secret: Option<BackendSecret>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Trust,
    Cleartext,
    Md5,
    Scram,
    Cert,
}

fn choose(auth_type: AuthType, secret: Option<&Secret>) -> Method {
    match (auth_type, secret) {
        (AuthType::Trust, _) => Method::Trust,
        (AuthType::Plain, _) => Method::Cleartext,
        (AuthType::Md5, Some(Secret::Scram(_))) => Method::Scram,
        (AuthType::Md5, _) => Method::Md5,
        (AuthType::ScramSha256, Some(Secret::Md5(_))) => Method::Md5,
        (AuthType::ScramSha256, _) => Method::Scram,
        (AuthType::Cert, _) => Method::Cert,
        // Resolved per connection before authentication; should it ever
        // arrive here, the strictest check, not a password-less one.
        (AuthType::Hba, _) => Method::Scram,
    }
}

/// Who a client says it is, and what pgwarden checks that against.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub user: &'a str,
    /// `None` for a user pgwarden does not know.
    pub secret: Option<&'a Secret>,
    /// The SCRAM secret derived at config load from a cleartext `secret`.
    pub derived: Option<&'a ScramSecret>,
    /// `tls-server-end-point` data when the client came over TLS: SCRAM is
    /// then offered with channel binding too (SCRAM-SHA-256-PLUS).
    pub channel_binding: Option<&'a [u8]>,
    /// The common name of the client's verified TLS certificate.
    pub cert_name: Option<&'a str>,
    pub auth_type: AuthType,
}

/// Why a client's login failed; `error.rs` gives each its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A wrong password, or a user pgwarden does not know (the client is
    /// not told which).
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    #[error("connection requires a valid client certificate")]
    CertRequired,
    #[error("certificate authentication failed for user \"{0}\"")]
    CertRefused(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The client closed its connection mid-exchange.
    #[error("the client closed the connection during login")]
    Abandoned,
}

/// Runs the exchange and sends AuthenticationOk on success.
///
/// # Errors
/// `BadPassword` for a wrong password or unknown user, `Protocol` for a
/// malformed exchange; the caller sends the ErrorResponse.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MessageStream<S>,
    claim: &Claim<'_>,
) -> Result<Authenticated, AuthError> {
    let Claim {
        user,
        secret,
        derived,
        channel_binding,
        cert_name,
        auth_type,
    } = *claim;
    let secret = secret.filter(|s| !s.is_empty_password());
    let known = secret.is_some();
    // An unknown user is checked against a mock secret that nothing matches.
    let decoy;
    let secret = match secret {
        Some(s) => s,
        None => {
            decoy = mock_secret(user, auth_type);
            &decoy
        }
    };
    let method = choose(auth_type, Some(secret));
    let bad = || AuthError::BadPassword(user.to_owned());
    let mut out = BytesMut::new();
    let result = match method {
        Method::Trust => Authenticated {
            backend_secret: BackendSecret::from_stored(secret).filter(|_| known),
        },
        // As PostgreSQL: the certificate's CN is the user; no password.
        Method::Cert => match cert_name {
            None => return Err(AuthError::CertRequired),
            Some(cn) if cn != user => return Err(AuthError::CertRefused(user.to_owned())),
            Some(_) => Authenticated {
                backend_secret: BackendSecret::from_stored(secret).filter(|_| known),
            },
        },
        Method::Cleartext => {
            be::authentication_cleartext(&mut out);
            stream.write_all(&out).await.map_err(net)?;
            let body = read_password(stream).await?;
            let pw = fe::parse_password(&body)
                .and_then(|p| std::str::from_utf8(p).ok())
                .ok_or_else(|| AuthError::Protocol("malformed password message".into()))?;
            if !known || pw.is_empty() || !cleartext_matches(pw, user, secret) {
                return Err(bad());
            }
            Authenticated {
                backend_secret: Some(BackendSecret::Password(pw.to_owned())),
            }
        }
        Method::Md5 => {
            let mut salt = [0u8; 4];
            rand::thread_rng().fill_bytes(&mut salt);
            be::authentication_md5(&mut out, salt);
            stream.write_all(&out).await.map_err(net)?;
            let body = read_password(stream).await?;
            let answer = fe::parse_password(&body)
                .ok_or_else(|| AuthError::Protocol("malformed password message".into()))?;
            let stored = match secret {
                Secret::Plain(pw) => md5::secret(pw, user),
                Secret::Md5(m) => m.clone(),
                Secret::Scram(_) => return Err(bad()),
            };
            let expected = md5::response(&stored, salt);
            if !known || !super::constant_time_eq(answer, expected.as_bytes()) {
                return Err(bad());
            }
            Authenticated {
                backend_secret: BackendSecret::from_stored(secret),
            }
        }
        Method::Scram => {
            let (scram_secret, from_plain) = match secret {
                Secret::Scram(s) => (s.clone(), false),
                // Derived at config load (the salt a user sees does not
                // change between attempts); here only for a cleartext
                // secret from `auth_query`.
                Secret::Plain(pw) => (
                    derived.cloned().unwrap_or_else(|| {
                        ScramSecret::from_password(
                            pw,
                            scram::mock_salt(user).to_vec(),
                            scram::DEFAULT_ITERATIONS,
                        )
                    }),
                    true,
                ),
                Secret::Md5(_) => return Err(bad()),
            };
            let keys = scram_exchange(stream, scram_secret.clone(), channel_binding, &mut out)
                .await
                .map_err(|e| match e {
                    ScramOutcome::Failed => bad(),
                    ScramOutcome::Fatal(e) => e,
                })?;
            if !known {
                return Err(bad());
            }
            let backend_secret = if from_plain {
                BackendSecret::from_stored(secret)
            } else {
                Some(BackendSecret::ScramKeys {
                    keys,
                    salt: scram_secret.salt,
                    iterations: scram_secret.iterations,
                })
            };
            Authenticated { backend_secret }
        }
    };
    out.clear();
    be::authentication_ok(&mut out);
    stream.write_all(&out).await.map_err(net)?;
    Ok(result)
}

/// The secret an unknown user is checked against: of the kind `auth_type`
/// asks for, so that the exchange is the one a user with a cleartext (or
/// md5) secret gets. (Under `md5`, users with stored SCRAM secrets get
/// SCRAM, as in PgBouncer and PostgreSQL.)
fn mock_secret(user: &str, auth_type: AuthType) -> Secret {
    match auth_type {
        AuthType::Md5 => {
            let mut raw = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut raw);
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            Secret::Md5(format!("md5{hex}"))
        }
        _ => Secret::Scram(ScramSecret::mock(user)),
    }
}

enum ScramOutcome {
    Failed,
    Fatal(AuthError),
}

async fn scram_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MessageStream<S>,
    secret: ScramSecret,
    end_point: Option<&[u8]>,
    out: &mut BytesMut,
) -> Result<Keys, ScramOutcome> {
    let fatal = |e: AuthError| ScramOutcome::Fatal(e);
    // PostgreSQL's order: -PLUS first, for clients that take the first.
    match end_point {
        Some(_) => be::authentication_sasl(out, &[scram::MECHANISM_PLUS, scram::MECHANISM]),
        None => be::authentication_sasl(out, &[scram::MECHANISM]),
    }
    stream.write_all(out).await.map_err(|e| fatal(net(e)))?;
    let body = read_password(stream).await.map_err(fatal)?;
    let (mechanism, data) = fe::parse_sasl_initial(&body)
        .ok_or_else(|| fatal(AuthError::Protocol("malformed SASLInitialResponse".into())))?;
    let binding = match (mechanism, end_point) {
        (scram::MECHANISM, None) => ChannelBinding::Unsupported,
        (scram::MECHANISM, Some(_)) => ChannelBinding::NotChosen,
        (scram::MECHANISM_PLUS, Some(data)) => ChannelBinding::EndPoint(data.to_vec()),
        _ => {
            return Err(fatal(AuthError::Protocol(format!(
                "client selected an invalid SASL authentication mechanism {mechanism:?}"
            ))))
        }
    };
    let (server, first) = ScramServer::start(secret, data, &binding)
        .map_err(|e| fatal(AuthError::Protocol(e.to_string())))?;
    out.clear();
    be::authentication_sasl_continue(out, first.as_bytes());
    stream.write_all(out).await.map_err(|e| fatal(net(e)))?;
    let body = read_password(stream).await.map_err(fatal)?;
    let (final_msg, keys) = server.finish(&body).map_err(|e| match e {
        scram::ScramError::BadProof => ScramOutcome::Failed,
        other => fatal(AuthError::Protocol(other.to_string())),
    })?;
    out.clear();
    be::authentication_sasl_final(out, final_msg.as_bytes());
    stream.write_all(out).await.map_err(|e| fatal(net(e)))?;
    Ok(keys)
}

fn cleartext_matches(pw: &str, user: &str, secret: &Secret) -> bool {
    match secret {
        Secret::Plain(p) => super::constant_time_eq(p.as_bytes(), pw.as_bytes()),
        Secret::Md5(m) => super::constant_time_eq(md5::secret(pw, user).as_bytes(), m.as_bytes()),
        Secret::Scram(s) => {
            let derived = ScramSecret::from_password(pw, s.salt.clone(), s.iterations);
            super::constant_time_eq(&derived.stored_key, &s.stored_key)
        }
    }
}

async fn read_password<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MessageStream<S>,
) -> Result<bytes::Bytes, AuthError> {
    let (tag, body) = stream.read_message(MAX_AUTH_MESSAGE).await.map_err(net)?;
    if tag != fe::PASSWORD {
        return Err(AuthError::Protocol(format!(
            "expected password response, got message type {:?}",
            tag as char
        )));
    }
    Ok(body)
}

fn net(e: NetError) -> AuthError {
    match e {
        NetError::Frame(f) => AuthError::Protocol(f.to_string()),
        _ => AuthError::Abandoned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(
        user: &'a str,
        secret: Option<&'a Secret>,
        derived: Option<&'a ScramSecret>,
        auth_type: AuthType,
    ) -> Claim<'a> {
        Claim {
            user,
            secret,
            derived,
            channel_binding: None,
            cert_name: None,
            auth_type,
        }
    }
    use crate::wire::codec::decode_whole;

    #[tokio::test]
    async fn md5_login_over_duplex() {
        let (client, server) = tokio::io::duplex(4096);
        let mut server = MessageStream::new(server);
        let secret = Secret::Plain("pw".into());
        let task = tokio::spawn(async move {
            authenticate(
                &mut server,
                &claim("alice", Some(&secret), None, AuthType::Md5),
            )
            .await
            .map(|_| ())
        });
        let mut client = MessageStream::new(client);
        let (tag, body) = client
            .read_message(1000)
            .await
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(tag, be::AUTHENTICATION);
        let salt: [u8; 4] = body[4..8].try_into().unwrap_or_default();
        let mut out = BytesMut::new();
        fe::password_message(
            &mut out,
            md5::response(&md5::secret("pw", "alice"), salt).as_bytes(),
        );
        let _ = client.write_all(&out).await;
        let (tag, body) = client
            .read_message(1000)
            .await
            .map_err(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!((tag, &body[..]), (be::AUTHENTICATION, &[0u8, 0, 0, 0][..]));
        assert!(matches!(task.await, Ok(Ok(()))));
        let _ = decode_whole(&[], 1);
    }

    /// The first authentication request pgwarden sends for `user`.
    async fn first_request(user: &'static str, secret: Option<Secret>) -> Vec<u8> {
        let (client, server) = tokio::io::duplex(4096);
        let mut server = MessageStream::new(server);
        tokio::spawn(async move {
            let _ = authenticate(
                &mut server,
                &claim(user, secret.as_ref(), None, AuthType::Md5),
            )
            .await;
        });
        let mut client = MessageStream::new(client);
        let (_, body) = client.read_message(1000).await.unwrap_or_default();
        body.to_vec()
    }

    #[tokio::test]
    async fn unknown_user_is_asked_what_a_known_user_is_asked() {
        // auth_type = md5: an md5 request (its salt random every time).
        let known = first_request("alice", Some(Secret::Plain("pw".into()))).await;
        let unknown = first_request("ghost", None).await;
        assert_eq!(known[..4], unknown[..4], "md5 for both");
        assert_eq!(unknown[..4], [0, 0, 0, 5]);
        // An empty password is no password.
        let empty = first_request("nobody", Some(Secret::Plain(String::new()))).await;
        assert_eq!(empty[..4], unknown[..4]);
    }

    /// pgwarden's own server-side login against its client-side one.
    async fn scram_login(secret: Secret, derived: Option<ScramSecret>, password: &str) -> bool {
        bound_login(secret, derived, password, None, None).await
    }

    /// The same, with the server offering -PLUS for `server_cert` and the
    /// client binding to `client_cert` (the certificate it saw).
    async fn bound_login(
        secret: Secret,
        derived: Option<ScramSecret>,
        password: &str,
        server_cert: Option<Vec<u8>>,
        client_cert: Option<Vec<u8>>,
    ) -> bool {
        use crate::auth::backend::{login, AuthMethods};
        let (client, server) = tokio::io::duplex(4096);
        let mut server = MessageStream::new(server);
        let task = tokio::spawn(async move {
            let mut c = claim(
                "alice",
                Some(&secret),
                derived.as_ref(),
                AuthType::ScramSha256,
            );
            c.channel_binding = server_cert.as_deref();
            authenticate(&mut server, &c).await.is_ok()
        });
        let mut client = MessageStream::new(client);
        let answer = BackendSecret::Password(password.into());
        let logged_in = login(
            &mut client,
            "alice",
            Some(&answer),
            AuthMethods::SCRAM,
            client_cert.as_deref(),
        )
        .await;
        logged_in.is_ok() && task.await.unwrap_or(false)
    }

    /// SCRAM-SHA-256-PLUS end to end: bound to the same certificate hash it
    /// logs in; a man in the middle (another certificate) cannot.
    #[tokio::test]
    async fn scram_plus_binds_to_the_certificate() {
        let pw = || Secret::Plain("pw".into());
        let cert = Some(vec![1u8; 32]);
        assert!(bound_login(pw(), None, "pw", cert.clone(), cert.clone()).await);
        assert!(!bound_login(pw(), None, "pw", cert.clone(), Some(vec![2u8; 32])).await);
        // A client that cannot bind takes plain SCRAM over TLS.
        assert!(bound_login(pw(), None, "pw", cert.clone(), None).await);
        assert!(!bound_login(pw(), None, "wrong", cert, None).await);
    }

    /// A cleartext secret is checked against the SCRAM secret derived at
    /// config load, not derived again for each attempt.
    #[tokio::test]
    async fn scram_with_a_cleartext_secret_uses_the_derived_secret() {
        let plain = || Secret::Plain("pw".into());
        let derive = |pw| ScramSecret::from_password(pw, scram::mock_salt("alice").to_vec(), 4096);
        assert!(scram_login(plain(), None, "pw").await);
        assert!(!scram_login(plain(), None, "wrong").await);
        assert!(scram_login(plain(), Some(derive("pw")), "pw").await);
        // Proof that the derived one is what is checked.
        assert!(scram_login(plain(), Some(derive("other")), "other").await);
        assert!(!scram_login(plain(), Some(derive("other")), "pw").await);
    }

    #[test]
    fn mock_salt_is_stable_per_user() {
        assert_eq!(
            ScramSecret::mock("ghost").salt,
            ScramSecret::mock("ghost").salt
        );
        assert_ne!(
            ScramSecret::mock("ghost").salt,
            ScramSecret::mock("ghosts").salt
        );
    }
}
