//! PostgreSQL's md5 password scheme: `"md5" + md5(md5(password + user) + salt)`.

use md5::{Digest, Md5};

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a password: `md5` followed by 32 hex digits.
pub fn secret(password: &str, user: &str) -> String {
    format!("md5{}", md5_hex(&[password.as_bytes(), user.as_bytes()]))
}

/// What a client sends for a given stored secret (`md5...`) and salt.
pub fn response(stored: &str, salt: [u8; 4]) -> String {
    let inner = stored.strip_prefix("md5").unwrap_or(stored);
    format!("md5{}", md5_hex(&[inner.as_bytes(), &salt]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postgres() {
        // Reference values from Python's hashlib, the same as PostgreSQL's md5().
        let s = secret("pw", "alice");
        assert_eq!(s, "md5aa7bb6fc2700e717ae61ec5c1567469c");
        assert_eq!(
            response(&s, [1, 2, 3, 4]),
            "md527972593be6fc26d3f4484e91163efdf"
        );
        assert!(super::super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::super::constant_time_eq(b"abc", b"abd"));
    }
}
