//! Just enough of `SET`/`RESET` to follow session-level settings.

/// What a client statement does to session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Leaves them alone (or only for the transaction: `SET LOCAL`).
    None,
    /// `SET name TO value` (value kept as SQL text).
    Set(String, String),
    /// `set_config(name, value, false)`: the value as a plain string.
    SetRaw(String, String),
    /// `set_config` whose name or value is a parameter (`$1`) of a
    /// prepared statement: known once the statement is bound
    /// ([`super::Effect::bound`]); not followed before.
    SetBound(Arg, Arg),
    /// `RESET name` or `SET name TO DEFAULT`.
    Reset(String),
    ResetAll,
    /// Changes them in a way pgwarden does not follow.
    Untrackable,
}

/// An argument of `set_config`: a literal, or the statement's parameter
/// `$n` (0-based here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Param(usize),
}

impl Change {
    /// False for what pgwarden cannot carry to another server as it is.
    pub fn is_followed(&self) -> bool {
        !matches!(self, Change::Untrackable | Change::SetBound(..))
    }
}

/// Classifies one simple-query text (with or without its trailing NUL).
pub fn classify(sql: &[u8]) -> Change {
    // Most statements mention neither: decided without allocating.
    let mentions = |word: &[u8]| {
        sql.windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    if !mentions(b"set") && !mentions(b"discard") {
        return Change::None;
    }
    let text = String::from_utf8_lossy(sql);
    let text = text.trim_end_matches('\0').trim();
    if text.to_ascii_lowercase().contains("set_config") {
        return Change::Untrackable;
    }
    // Several statements (split naively: a `;` inside a literal only makes
    // this more careful): followed only if none of them changes settings.
    let statements: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match statements.as_slice() {
        [] => Change::None,
        [one] => classify_one(one),
        many => match many.iter().all(|s| classify_one(s) == Change::None) {
            true => Change::None,
            false => Change::Untrackable,
        },
    }
}

pub(super) fn classify_one(text: &str) -> Change {
    let text = skip_comments(text);
    let lower = text.to_ascii_lowercase();
    let first = first_word(&lower);
    if first == "discard" {
        // DISCARD ALL resets every setting, for the client as on the server.
        let all = lower
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| w.trim_end_matches(';') == "all");
        return if all { Change::ResetAll } else { Change::None };
    }
    if first == "do" || first == "call" || first == "execute" {
        // Code pgwarden cannot see into may run a SET (the caller checked
        // that the text mentions one).
        return Change::Untrackable;
    }
    if first != "set" && first != "reset" {
        return Change::None;
    }
    let body = text;
    let words: Vec<&str> = body.split_whitespace().collect();
    let lw: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    if first == "reset" {
        return match lw.get(1).map(String::as_str) {
            Some("all") if lw.len() == 2 => Change::ResetAll,
            Some("role" | "session") => Change::Untrackable,
            Some(name) if lw.len() == 2 => Change::Reset(name.trim_matches('"').to_string()),
            _ => Change::Untrackable,
        };
    }
    let mut i = 1;
    match lw.get(1).map(String::as_str) {
        Some("local" | "transaction" | "constraints") => return Change::None,
        Some("session") => match lw.get(2).map(String::as_str) {
            Some("characteristics" | "authorization") => return Change::Untrackable,
            _ => i = 2,
        },
        Some("role") => return Change::Untrackable,
        _ => {}
    }
    // SET [SESSION] TIME ZONE value
    if lw.get(i).map(String::as_str) == Some("time")
        && lw.get(i + 1).map(String::as_str) == Some("zone")
    {
        let value = words[i + 2..].join(" ");
        return set_or_reset("timezone".into(), value);
    }
    let Some(rest) = words.get(i..) else {
        return Change::Untrackable;
    };
    let joined = rest.join(" ");
    let (name, value) = match joined.find(|c: char| c == '=' || c.is_whitespace()) {
        Some(at) => {
            let name = joined[..at].trim();
            let after = joined[at..].trim_start();
            let value = if let Some(v) = after.strip_prefix('=') {
                v.trim()
            } else if after
                .as_bytes()
                .get(..2)
                .is_some_and(|b| b.eq_ignore_ascii_case(b"to"))
            {
                // Two ASCII bytes: slicing after them stays on a boundary.
                after[2..].trim()
            } else {
                return Change::Untrackable;
            };
            (name, value)
        }
        None => return Change::Untrackable,
    };
    if name.is_empty() || value.is_empty() {
        return Change::Untrackable;
    }
    set_or_reset(
        name.trim_matches('"').to_ascii_lowercase(),
        value.to_string(),
    )
}

fn set_or_reset(name: String, value: String) -> Change {
    if value.eq_ignore_ascii_case("default") {
        Change::Reset(name)
    } else if value.is_empty() {
        Change::Untrackable
    } else {
        Change::Set(name, value)
    }
}

/// The text after any leading `--` and `/* */` comments.
pub(crate) fn skip_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return text;
        }
    }
}

pub(super) fn first_word(lower: &str) -> &str {
    lower
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_text_after_a_name_is_no_panic() {
        // Found by the `sql` fuzz target: a 3-byte character where `TO`
        // would be.
        assert_eq!(classify("SET a €".as_bytes()), Change::Untrackable);
        assert_eq!(
            classify(b"set\n\0\n\n\n\x1f\xa2\xa2\xa2\xa2] "),
            classify(b"set\n\0\n\n\n\x1f\xa2\xa2\xa2\xa2] ")
        );
    }

    #[test]
    fn set_forms() {
        assert_eq!(
            classify(b"SET search_path TO a, b\0"),
            Change::Set("search_path".into(), "a, b".into())
        );
        assert_eq!(
            classify(b"set statement_timeout = '5s';"),
            Change::Set("statement_timeout".into(), "'5s'".into())
        );
        assert_eq!(
            classify(b"SET SESSION TimeZone TO 'UTC'"),
            Change::Set("timezone".into(), "'UTC'".into())
        );
        assert_eq!(
            classify(b"SET TIME ZONE 'Europe/Paris'"),
            Change::Set("timezone".into(), "'Europe/Paris'".into())
        );
        assert_eq!(
            classify(b"SET work_mem TO DEFAULT"),
            Change::Reset("work_mem".into())
        );
        assert_eq!(
            classify(b"RESET work_mem"),
            Change::Reset("work_mem".into())
        );
        assert_eq!(classify(b"RESET ALL"), Change::ResetAll);
        assert_eq!(classify(b"DISCARD ALL\0"), Change::ResetAll);
        assert_eq!(classify(b"DISCARD TEMP"), Change::None);
    }

    #[test]
    fn what_is_left_alone_or_not_followed() {
        assert_eq!(classify(b"SET LOCAL work_mem = '1MB'"), Change::None);
        assert_eq!(
            classify(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            Change::None
        );
        assert_eq!(classify(b"SELECT 1"), Change::None);
        assert_eq!(classify(b"SET ROLE admin"), Change::Untrackable);
        assert_eq!(classify(b"SET a = 1; SET b = 2"), Change::Untrackable);
        assert_eq!(
            classify(b"BEGIN; SET work_mem = '1MB'; COMMIT"),
            Change::Untrackable
        );
        assert_eq!(
            classify(b"BEGIN; SET LOCAL work_mem = '1MB'; COMMIT"),
            Change::None
        );
        assert_eq!(
            classify(b"SELECT set_config('search_path', 'x', false)"),
            Change::Untrackable
        );
    }
}
