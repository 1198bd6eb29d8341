//! PgBouncer's `auth_file` format (`userlist.txt`).
//!
//! One user a line: `"name" "secret"`, each field in double quotes with `""`
//! standing for a quote inside; anything after the second field is ignored,
//! as are blank lines and lines starting with `;` or `#`.

use std::collections::HashMap;

use thiserror::Error;

use super::secret::Secret;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {what}")]
pub struct UserlistError {
    pub line: usize,
    pub what: &'static str,
}

/// Parses a whole userlist into user name → secret.
///
/// # Errors
/// The first line that is not two quoted fields.
pub fn parse(text: &str) -> Result<HashMap<String, Secret>, UserlistError> {
    let mut users = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let err = |what| UserlistError { line: i + 1, what };
        let (name, rest) = quoted(line).ok_or(err("expected \"user\" \"password\""))?;
        let (secret, _) = quoted(rest.trim_start()).ok_or(err("expected a quoted password"))?;
        users.insert(name, Secret::parse(&secret));
    }
    Ok(users)
}

/// Reads one `"..."` field from the front of `s`.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices().peekable();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if matches!(chars.peek(), Some((_, '"'))) {
                chars.next();
                out.push('"');
            } else {
                return Some((out, &s[i + 2..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_format() {
        let text = "; comment\n\"alice\" \"pw\"\n\"bob\" \"md5a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5\" extra\n\"q\"\"x\" \"a\"\"b\"\n";
        let users = parse(text).unwrap_or_default();
        assert_eq!(users.get("alice"), Some(&Secret::Plain("pw".into())));
        assert!(matches!(users.get("bob"), Some(Secret::Md5(_))));
        assert_eq!(users.get("q\"x"), Some(&Secret::Plain("a\"b".into())));
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            parse("\"a\" \"b\"\nalice pw\n").err().map(|e| e.line),
            Some(2)
        );
        assert_eq!(
            parse("\"a\" \"unterminated\n").err().map(|e| e.line),
            Some(1)
        );
    }
}
