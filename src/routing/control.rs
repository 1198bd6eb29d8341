//! `SET pgwarden.route = primary`, `SET pgwarden.consistency = ...`,
//! `SET pgwarden.max_staleness_ms = ...`, `SET pgwarden.tenant = '...'`,
//! `SET pgwarden.min_lsn = '...'` and their `RESET`s: a session's routing controls, answered by pgwarden
//! itself. PostgreSQL would reject
//! `primary` unquoted (a reserved word) and has no use for them.

use crate::sql::lexer::{Lexer, Token};
use crate::wire::codec::whole_at;
use crate::wire::frontend as fe;

/// The routing settings a session may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Route,
    Consistency,
    MaxStalenessMs,
    /// The session's tenant (data residency); its value keeps its case.
    Tenant,
    /// A WAL position the session's reads must see (read-your-writes
    /// carried from another instance, as its `pgwarden.commit_lsn`).
    MinLsn,
}

/// A recognised statement: the setting, and its new value (`None`: reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub control: Control,
    pub value: Option<String>,
}

/// A lone `SET`/`RESET pgwarden.*` Query at the start of `buf`, all of it
/// arrived (at most `max` bytes): the command and the Query's length.
pub fn leading(buf: &[u8], max: usize) -> Option<(Command, usize)> {
    let sql = leading_query(buf, max)?;
    Some((parse(sql.0)?, sql.1))
}

/// Whether `buf` starts with a whole `SET`/`RESET pgwarden.*` Query, which
/// pgwarden answers itself: pipelined behind other work, it waits for that
/// work to end instead of reaching PostgreSQL (which would take it as a
/// placeholder setting and change nothing). Cheap for everything else: it
/// runs on every pipelined message boundary.
pub fn starts_with_control(buf: &[u8], max: usize) -> bool {
    let Some((sql, _)) = leading_query(buf, max) else {
        return false;
    };
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let word = |w: &[u8]| {
        sql.get(start..start + w.len() + 1).is_some_and(|s| {
            s[..w.len()].eq_ignore_ascii_case(w) && s[w.len()].is_ascii_whitespace()
        })
    };
    (word(b"set") || word(b"reset")) && parse(sql).is_some()
}

/// The text of a whole simple Query at the start of `buf`, and its length.
fn leading_query(buf: &[u8], max: usize) -> Option<(&[u8], usize)> {
    if buf.first() != Some(&fe::QUERY) {
        return None;
    }
    let (_, body, len) = whole_at(buf, 0, max).ok()??;
    Some((&body[..body.len().saturating_sub(1)], len))
}

/// Whether `pgwarden` appears in the text, in any case. Most texts hold
/// few `p`s, which `memchr` finds many bytes at a time; comparing every
/// 8-byte window instead cost ~800 instructions per `-S` query.
fn names_pgwarden(sql: &[u8]) -> bool {
    let last = sql.len().saturating_sub(7);
    memchr::memchr2_iter(b'p', b'P', &sql[..last])
        .any(|i| sql[i..i + 8].eq_ignore_ascii_case(b"pgwarden"))
}

/// False when the text's first token cannot be `SET` or `RESET`, read
/// as the lexer reads it: space and NUL skipped, and a comment or `;` first
/// left to the lexer. `SELECT ... pgbench_accounts` stops here instead of
/// at every `p` of its text.
fn may_start_with_set(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|&b| !(b.is_ascii_whitespace() || b == 0))
        .unwrap_or(sql.len());
    let rest = &sql[start..];
    if matches!(rest.first(), Some(b'/' | b'-' | b';')) {
        return true;
    }
    let word = &rest[..rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len())];
    word.eq_ignore_ascii_case(b"set") || word.eq_ignore_ascii_case(b"reset")
}

/// Recognises one `SET`/`RESET` of a `pgwarden.` setting (the whole text).
pub fn parse(sql: &[u8]) -> Option<Command> {
    // Routed sessions ask this of every transaction's first Query: a text
    // that cannot start with `SET` or never names `pgwarden` is refused
    // before any word is lexed and copied.
    if !may_start_with_set(sql) || !names_pgwarden(sql) {
        return None;
    }
    let mut words = Vec::with_capacity(6);
    for t in Lexer::new(sql) {
        match t {
            Token::Comment(_) | Token::Semicolon => {}
            Token::Word(w) => words.push(String::from_utf8_lossy(w).to_ascii_lowercase()),
            Token::Dot => words.push(".".into()),
            Token::Literal => {
                // `=`, or a quoted/numeric value: keep the text.
                words.push(String::new());
            }
            _ => return None,
        }
        if words.len() > 8 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(sql);
    let (verb, rest) = match words.first().map(String::as_str) {
        Some("set") => (true, &words[1..]),
        Some("reset") => (false, &words[1..]),
        _ => return None,
    };
    let rest = match rest.first().map(String::as_str) {
        Some("session") => &rest[1..],
        _ => rest,
    };
    if rest.len() < 3 || rest[0] != "pgwarden" || rest[1] != "." {
        return None;
    }
    let control = match rest[2].as_str() {
        "route" => Control::Route,
        "consistency" => Control::Consistency,
        "max_staleness_ms" => Control::MaxStalenessMs,
        "tenant" => Control::Tenant,
        "min_lsn" => Control::MinLsn,
        _ => return None,
    };
    if !verb {
        return (rest.len() == 3).then_some(Command {
            control,
            value: None,
        });
    }
    // The value is whatever follows `=` or `TO`, quotes and `;` removed.
    let lower = text.to_ascii_lowercase();
    let name_at = lower.find("pgwarden")? + "pgwarden".len();
    let after = lower[name_at..].find(|c: char| c == '=' || c.is_whitespace())? + name_at;
    let tail = text[after..].trim_start();
    let tail = tail
        .strip_prefix('=')
        .or_else(|| {
            tail.get(..2)
                .filter(|p| p.eq_ignore_ascii_case("to"))
                .map(|_| &tail[2..])
        })?
        .trim()
        .trim_end_matches(';')
        .trim()
        .trim_matches('\'');
    if tail.is_empty() || tail.contains(char::is_whitespace) {
        return None;
    }
    let tail = match control {
        Control::Tenant => tail.to_owned(),
        _ => tail.to_ascii_lowercase(),
    };
    Some(Command {
        control,
        value: (!tail.eq_ignore_ascii_case("default")).then_some(tail),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_pgwarden_in_any_case_anywhere() {
        use super::names_pgwarden;
        for yes in [
            &b"pgwarden"[..],
            b"set PGWarden.route",
            b"xx pgwarden",
            b"ppgwarden",
        ] {
            assert!(names_pgwarden(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"p",
            b"pgwarde",
            b"select * from pgbench_accounts",
            b"pgwardeN"[..7].as_ref(),
        ] {
            assert!(!names_pgwarden(no), "{}", String::from_utf8_lossy(no));
        }
    }

    use super::*;

    #[test]
    fn recognised() {
        let c = |s: &str| parse(s.as_bytes());
        assert_eq!(
            c("SET pgwarden.route = primary"),
            Some(Command {
                control: Control::Route,
                value: Some("primary".into())
            })
        );
        assert_eq!(
            c("set session pgwarden.consistency to 'read_your_writes';"),
            Some(Command {
                control: Control::Consistency,
                value: Some("read_your_writes".into())
            })
        );
        assert_eq!(
            c("SET pgwarden.max_staleness_ms=250"),
            Some(Command {
                control: Control::MaxStalenessMs,
                value: Some("250".into())
            })
        );
        assert_eq!(
            c("RESET pgwarden.route"),
            Some(Command {
                control: Control::Route,
                value: None
            })
        );
        assert_eq!(
            c("SET pgwarden.tenant = 'Acme'"),
            Some(Command {
                control: Control::Tenant,
                value: Some("Acme".into())
            })
        );
        assert_eq!(
            c("SET pgwarden.min_lsn = '0/3000A8'"),
            Some(Command {
                control: Control::MinLsn,
                value: Some("0/3000a8".into())
            })
        );
        assert_eq!(c("SET search_path = x"), None);
        assert_eq!(c("SET pgwarden.other = x"), None);
        assert_eq!(c("SET pgwarden.route = primary; SELECT 1"), None);
        assert_eq!(c("SET LOCAL pgwarden.route = primary"), None);
        // What the first-word prefilter must let through.
        for text in [
            " \n\0SET pgwarden.route = primary",
            "/* why */ SET pgwarden.route = primary",
            "-- why\nSET pgwarden.route = primary",
            "; SET pgwarden.route = primary",
            "reSET pgwarden.route",
        ] {
            assert!(c(text).is_some(), "{text}");
        }
        for text in [
            "SELECT pgwarden.route = primary",
            "SETTLE pgwarden.route = primary",
            "SET_x pgwarden.route = primary",
            "\x0bSET pgwarden.route = primary",
            "(SET pgwarden.route = primary)",
        ] {
            assert!(c(text).is_none(), "{text}");
        }
    }

    /// The prefilter never refuses a text the full reading accepts.
    #[test]
    fn the_first_word_prefilter_refuses_only_what_parse_would() {
        let alphabet: &[u8] = b"sSetTrR_ ;/*-\n\x0b\0(";
        let tail = b"pgwarden.route = primary";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            let mut text = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 9) {
                text.push(alphabet[((seed >> (8 + 4 * k)) % alphabet.len() as u64) as usize]);
            }
            text.push(b' ');
            text.extend_from_slice(tail);
            if !may_start_with_set(&text) {
                let mut words = Vec::new();
                for t in Lexer::new(&text) {
                    match t {
                        Token::Comment(_) | Token::Semicolon => {}
                        Token::Word(w) => words.push(w.to_ascii_lowercase()),
                        _ => break,
                    }
                }
                let first = words.first().map(Vec::as_slice);
                assert!(
                    !matches!(first, Some(b"set" | b"reset")),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
}
