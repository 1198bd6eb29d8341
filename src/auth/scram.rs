//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as plain state machines.
//!
//! [`ScramServer`] checks a client's proof against a stored secret and, as
//! PgBouncer does, recovers the client's `ClientKey` from that proof. With
//! `ClientKey` and `ServerKey`, [`ScramClient`] can then log in to a server
//! whose secret is the same (same salt and iteration count) without ever
//! knowing the password, which is what makes `auth_query` work with only
//! the `pg_authid` secret.
//!
//! No I/O here: callers feed message bodies in and send what comes out.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// SCRAM with channel binding, offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type PostgreSQL implements.
const END_POINT: &str = "tls-server-end-point";

/// Channel binding in one exchange (RFC 5802 section 6), seen from either
/// side: what the gs2 header says, and what `c=` must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    /// No TLS, or a certificate without a binding hash: header `n`.
    Unsupported,
    /// Both sides could bind but SCRAM-SHA-256 (not -PLUS) was chosen: the
    /// client says `y` when the server offered no -PLUS; a server that did
    /// offer it refuses `y` (a downgrade).
    NotChosen,
    /// SCRAM-SHA-256-PLUS, bound to the server certificate's hash.
    EndPoint(Vec<u8>),
}
/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
const NONCE_LEN: usize = 18;

type Key = [u8; 32];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM channel binding negotiation error")]
    BindingNegotiation,
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    #[error("SCRAM nonce mismatch")]
    Nonce,
    #[error("SCRAM proof does not match")]
    BadProof,
    #[error("server signature does not match")]
    BadServerSignature,
    #[error("server's salt or iteration count differs from the stored secret")]
    SecretMismatch,
}

/// A parsed `SCRAM-SHA-256$iter:salt$StoredKey:ServerKey` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Key,
    pub server_key: Key,
}

impl std::fmt::Debug for ScramSecret {
    // Never print key material, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramSecret(iterations={})", self.iterations)
    }
}

impl ScramSecret {
    /// Parses PostgreSQL's stored form of a SCRAM secret.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            iterations: iter.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// Derives a secret from a password, as `CREATE ROLE ... PASSWORD` does.
    pub fn from_password(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let keys = Keys::from_password(password, &salt, iterations);
        Self {
            iterations,
            salt,
            stored_key: sha256(&keys.client_key),
            server_key: keys.server_key,
        }
    }

    /// Derives a secret with a fresh random salt.
    pub fn generate(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, salt, DEFAULT_ITERATIONS)
    }

    /// A secret for a user pgwarden does not know, as PostgreSQL makes one:
    /// its salt is the same at every attempt for the same name (derived
    /// from a key secret to this process), its iteration count the default,
    /// its keys random (so nothing matches them, and no key derivation
    /// makes it slower than a stored secret).
    pub fn mock(user: &str) -> Self {
        let mut stored_key = [0u8; 32];
        let mut server_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut stored_key);
        rand::thread_rng().fill_bytes(&mut server_key);
        ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt: mock_salt(user).to_vec(),
            stored_key,
            server_key,
        }
    }
}

/// A per-user salt derived from a random per-process key.
pub fn mock_salt(user: &str) -> [u8; 16] {
    static KEY: std::sync::LazyLock<Key> = std::sync::LazyLock::new(|| {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    });
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&hmac(&KEY[..], user.as_bytes())[..16]);
    salt
}

/// The two keys that let pgwarden act as the client towards a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub client_key: Key,
    pub server_key: Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        // PostgreSQL normalises with SASLprep and falls back to the raw bytes
        // when the password is not valid for it; do the same.
        let prepared = stringprep::saslprep(password)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| password.to_owned());
        let salted = hi(prepared.as_bytes(), salt, iterations);
        Self {
            client_key: hmac(&salted, b"Client Key"),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Key {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// PBKDF2-HMAC-SHA-256 with one output block ("Hi" in RFC 5802).
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> Key {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = a[i] ^ b[i];
    }
    out
}

fn random_nonce() -> String {
    let mut raw = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut raw);
    B64.encode(raw)
}

/// Finds `key=value` in a comma-separated SCRAM attribute list.
fn attr(msg: &str, key: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

/// Server side of one exchange, after the client-first message.
pub struct ScramServer {
    secret: ScramSecret,
    client_first_bare: String,
    server_first: String,
    /// What `c=` must decode to: the gs2 header, then the binding data.
    binding: Vec<u8>,
    nonce: String,
}

impl ScramServer {
    /// Reads client-first-message and returns the state and server-first-message.
    ///
    /// # Errors
    /// A malformed message or a request for channel binding.
    pub fn start(
        secret: ScramSecret,
        client_first: &[u8],
        binding: &ChannelBinding,
    ) -> Result<(Self, String), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed)?;
        // PostgreSQL's rules: -PLUS needs `p=tls-server-end-point`; plain
        // SCRAM takes `n`, or `y` only where no -PLUS was offered.
        let cbind_data = match (flag, binding) {
            ("n", ChannelBinding::Unsupported | ChannelBinding::NotChosen) => Vec::new(),
            ("y", ChannelBinding::Unsupported) => Vec::new(),
            ("y", ChannelBinding::NotChosen) => return Err(ScramError::BindingNegotiation),
            (f, ChannelBinding::EndPoint(data)) if f.strip_prefix("p=") == Some(END_POINT) => {
                data.clone()
            }
            ("n" | "y", ChannelBinding::EndPoint(_)) => return Err(ScramError::BindingNegotiation),
            (f, _) if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        };
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
        let client_nonce = attr(bare, 'r').ok_or(ScramError::Malformed)?;
        if client_nonce.is_empty() {
            return Err(ScramError::Malformed);
        }
        let nonce = format!("{client_nonce}{}", random_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secret.salt),
            secret.iterations
        );
        let state = Self {
            secret,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            binding: [format!("{flag},{authzid},").into_bytes(), cbind_data].concat(),
            nonce,
        };
        Ok((state, server_first))
    }

    /// Checks client-final-message; on success returns server-final-message
    /// and the client's `ClientKey`.
    ///
    /// # Errors
    /// A malformed message, a wrong nonce or channel-binding echo, or a bad proof.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Keys), ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let binding = attr(without_proof, 'c').ok_or(ScramError::Malformed)?;
        let echoed = B64.decode(binding).map_err(|_| ScramError::Malformed)?;
        if !super::constant_time_eq(&echoed, &self.binding) {
            return Err(ScramError::BindingMismatch);
        }
        if attr(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(ScramError::Nonce);
        }
        let proof: Key = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.secret.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !super::constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.secret.server_key, auth_message.as_bytes());
        let keys = Keys {
            client_key,
            server_key: self.secret.server_key,
        };
        Ok((format!("v={}", B64.encode(server_signature)), keys))
    }
}

/// What pgwarden knows when it logs in to a server with SCRAM.
#[derive(Clone, Debug)]
pub enum ClientCredentials {
    Password(String),
    /// Keys recovered from a client's proof; they only fit a server whose
    /// secret has this salt and iteration count.
    Keys {
        keys: Keys,
        salt: Vec<u8>,
        iterations: u32,
    },
}

/// Client side of one exchange, towards a server.
pub struct ScramClient {
    credentials: ClientCredentials,
    /// base64 of the gs2 header and binding data, for `c=`.
    binding: String,
    client_first_bare: String,
    nonce: String,
    expected_server_signature: Option<Key>,
}

impl ScramClient {
    /// Starts an exchange; returns the state and client-first-message.
    /// With [`ChannelBinding::EndPoint`] the mechanism is -PLUS.
    pub fn start(credentials: ClientCredentials, binding: &ChannelBinding) -> (Self, String) {
        let nonce = random_nonce();
        let client_first_bare = format!("n=,r={nonce}");
        let (gs2, data) = match binding {
            ChannelBinding::Unsupported => ("n,,".to_owned(), &[][..]),
            ChannelBinding::NotChosen => ("y,,".to_owned(), &[][..]),
            ChannelBinding::EndPoint(d) => (format!("p={END_POINT},,"), &d[..]),
        };
        let first = format!("{gs2}{client_first_bare}");
        let state = Self {
            credentials,
            binding: B64.encode([gs2.as_bytes(), data].concat()),
            client_first_bare,
            nonce,
            expected_server_signature: None,
        };
        (state, first)
    }

    /// Reads server-first-message and returns client-final-message.
    ///
    /// # Errors
    /// A malformed message, a nonce that does not extend ours, or keys that
    /// were derived for another salt.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let nonce = attr(msg, 'r').ok_or(ScramError::Malformed)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = B64
            .decode(attr(msg, 's').ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        let iterations: u32 = attr(msg, 'i')
            .and_then(|i| i.parse().ok())
            .filter(|&i| i > 0)
            .ok_or(ScramError::Malformed)?;
        let keys = match &self.credentials {
            ClientCredentials::Password(pw) => Keys::from_password(pw, &salt, iterations),
            ClientCredentials::Keys {
                keys,
                salt: s,
                iterations: i,
            } => {
                if *s != salt || *i != iterations {
                    return Err(ScramError::SecretMismatch);
                }
                keys.clone()
            }
        };
        let without_proof = format!("c={},r={nonce}", self.binding);
        let auth_message = format!("{},{},{}", self.client_first_bare, msg, without_proof);
        let stored_key = sha256(&keys.client_key);
        let proof = xor(
            &keys.client_key,
            &hmac(&stored_key, auth_message.as_bytes()),
        );
        self.expected_server_signature = Some(hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final-message.
    ///
    /// # Errors
    /// A signature that does not prove the server knows the secret.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        let sig = attr(msg, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::BadServerSignature)?;
        match self.expected_server_signature {
            Some(expected) if super::constant_time_eq(&expected, &sig) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(password: &str, secret: ScramSecret) -> Result<Keys, ScramError> {
        bound_exchange(
            password,
            secret,
            &ChannelBinding::Unsupported,
            &ChannelBinding::Unsupported,
        )
    }

    fn bound_exchange(
        password: &str,
        secret: ScramSecret,
        client_side: &ChannelBinding,
        server_side: &ChannelBinding,
    ) -> Result<Keys, ScramError> {
        let (mut client, first) =
            ScramClient::start(ClientCredentials::Password(password.into()), client_side);
        let (server, server_first) = ScramServer::start(secret, first.as_bytes(), server_side)?;
        let fin = client.respond(server_first.as_bytes())?;
        let (server_final, keys) = server.finish(fin.as_bytes())?;
        client.verify(server_final.as_bytes())?;
        Ok(keys)
    }

    #[test]
    fn password_round_trip_and_key_recovery() {
        let secret = ScramSecret::generate("hunter2");
        let keys = exchange("hunter2", secret.clone());
        let Ok(keys) = keys else {
            panic!("exchange failed: {keys:?}")
        };
        // The recovered keys log in again without the password.
        let (mut client, first) = ScramClient::start(
            ClientCredentials::Keys {
                keys,
                salt: secret.salt.clone(),
                iterations: secret.iterations,
            },
            &ChannelBinding::Unsupported,
        );
        let (server, server_first) =
            ScramServer::start(secret, first.as_bytes(), &ChannelBinding::Unsupported)
                .map_err(|e| e.to_string())
                .unwrap_or_else(|e| panic!("{e}"));
        let fin = client.respond(server_first.as_bytes()).unwrap_or_default();
        assert!(server.finish(fin.as_bytes()).is_ok());
    }

    #[test]
    fn wrong_password_fails() {
        let secret = ScramSecret::generate("right");
        assert_eq!(exchange("wrong", secret).err(), Some(ScramError::BadProof));
    }

    #[test]
    fn parses_postgres_secret() {
        // Secret for password "pw" as produced by PostgreSQL 15.
        let s = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let parsed = ScramSecret::parse(s);
        assert_eq!(
            parsed.map(|p| (p.iterations, p.salt)),
            Some((4096, b"saltsaltsalt".to_vec()))
        );
        assert!(ScramSecret::parse("SCRAM-SHA-256$x:y$z").is_none());
    }

    #[test]
    fn rejects_channel_binding_and_garbage() {
        let secret = ScramSecret::generate("pw");
        let none = ChannelBinding::Unsupported;
        assert!(matches!(
            ScramServer::start(secret.clone(), b"p=tls-server-end-point,,n=,r=abc", &none),
            Err(ScramError::ChannelBinding)
        ));
        assert!(ScramServer::start(secret.clone(), b"garbage", &none).is_err());
        assert!(ScramServer::start(secret, &[0xff, 0xfe], &none).is_err());
    }

    #[test]
    fn channel_binding_as_postgresql_negotiates_it() {
        use ChannelBinding::*;
        let secret = ScramSecret::generate("pw");
        let cert = EndPoint(vec![7; 32]);
        let ok =
            |c: &ChannelBinding, s: &ChannelBinding| bound_exchange("pw", secret.clone(), c, s);
        assert!(
            ok(&cert, &cert).is_ok(),
            "-PLUS with the same certificate hash"
        );
        assert!(matches!(
            ok(&cert, &EndPoint(vec![8; 32])),
            Err(ScramError::BindingMismatch)
        ));
        assert!(ok(&Unsupported, &NotChosen).is_ok(), "plain SCRAM over TLS");
        assert!(
            ok(&NotChosen, &Unsupported).is_ok(),
            "y where no -PLUS was offered"
        );
        assert!(matches!(
            ok(&NotChosen, &NotChosen),
            Err(ScramError::BindingNegotiation)
        ));
        assert!(matches!(
            ok(&Unsupported, &cert),
            Err(ScramError::BindingNegotiation)
        ));
        assert!(matches!(
            ok(&cert, &Unsupported),
            Err(ScramError::ChannelBinding)
        ));
        // A client-final that claims no binding after a p= header.
        let started = ScramServer::start(secret, b"p=tls-server-end-point,,n=,r=abc", &cert);
        let Ok((server, first)) = started else {
            panic!("-PLUS start refused")
        };
        let nonce = attr(&first, 'r').unwrap_or_default();
        let fin = format!("c=biws,r={nonce},p={}", B64.encode([0u8; 32]));
        assert!(matches!(
            server.finish(fin.as_bytes()),
            Err(ScramError::BindingMismatch)
        ));
    }
}
