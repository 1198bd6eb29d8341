//! What pgwarden knows about a user's password.

use super::scram::ScramSecret;

/// A user's credential, as found in `auth_file`, `[users]` or `auth_query`.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A cleartext password.
    Plain(String),
    /// `md5` + hex digest of password and user name.
    Md5(String),
    Scram(ScramSecret),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The type, never the value: secrets must not reach logs.
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::Md5(_) => "Secret::Md5(..)",
            Secret::Scram(_) => "Secret::Scram(..)",
        })
    }
}

impl Secret {
    /// An empty password: PostgreSQL never accepts one, so neither does
    /// pgwarden (the user fails as an unknown one would).
    pub fn is_empty_password(&self) -> bool {
        matches!(self, Secret::Plain(p) if p.is_empty())
    }

    /// Reads a stored password in any of PostgreSQL's forms.
    pub fn parse(s: &str) -> Secret {
        if let Some(scram) = ScramSecret::parse(s) {
            return Secret::Scram(scram);
        }
        let is_md5 =
            s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if is_md5 {
            Secret::Md5(s.to_ascii_lowercase())
        } else {
            Secret::Plain(s.to_owned())
        }
    }
}
