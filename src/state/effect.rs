//! What one Query or prepared statement text does to session settings and
//! to the transaction block around them: its [`Effect`].
//!
//! The text is split into statements by the routing lexer (so a `;` in a
//! literal or a dollar-quoted body splits nothing); each statement gives at
//! most one event, `SELECT set_config(...)` one per call.

use super::parse::{classify_one, skip_comments, Arg};
use super::txn::{Effect, Event};
use super::Change;
use crate::sql::lexer::{Lexer, Token};

/// The effect of `sql` (with or without its trailing NUL). Callers skip
/// texts [`super::may_matter`] rules out.
pub fn effect(sql: &[u8]) -> Effect {
    if starts_no_event(sql) {
        return Effect::default();
    }
    split_effect(sql)
}

/// [`effect`], statement by statement.
fn split_effect(sql: &[u8]) -> Effect {
    let mut events = Vec::new();
    let mut statements = 0;
    let mut start = 0;
    let mut lexer = Lexer::new(sql);
    let mut unsure = false;
    loop {
        let token = lexer.next();
        let end = match token {
            Some(Token::Semicolon) => lexer.offset() - 1,
            None => sql.len(),
            Some(Token::Unsure) => {
                unsure = true;
                continue;
            }
            Some(_) => continue,
        };
        let text = String::from_utf8_lossy(&sql[start..end]);
        let text = skip_comments(text.trim_end_matches('\0'));
        if !text.trim().is_empty() {
            statements += 1;
            events.extend(statement(text));
        }
        start = lexer.offset();
        if token.is_none() {
            break;
        }
    }
    if unsure && !events.is_empty() {
        // A literal the lexer cannot read for certain may hide a `;`.
        events = vec![Event::Change(Change::Untrackable)];
    }
    Effect {
        events,
        several: statements > 1,
    }
}

/// First words of the statements that can be an event (with `set_config`
/// anywhere): the arms of [`statement`] and those `classify_one` reads.
const STARTS_AN_EVENT: [&str; 12] = [
    "savepoint",
    "release",
    "rollback",
    "abort",
    "commit",
    "end",
    "set",
    "reset",
    "discard",
    "do",
    "call",
    "execute",
];

/// True when `sql` is one statement (a `;` only as its last character)
/// whose first word starts no event and which calls no `set_config`: what
/// the split below and [`statement`] would find, without the lexer and
/// the lower-cased copy (an `UPDATE ... SET`, the usual text that reaches
/// here, cost ~2,500 instructions in them: docs/benchmarks.md, issue 19).
fn starts_no_event(sql: &[u8]) -> bool {
    let (body, rest) = match memchr::memrchr(b';', sql) {
        Some(at) => (&sql[..at], &sql[at + 1..]),
        None => (sql, &[][..]),
    };
    if memchr::memchr(b';', body).is_some() || calls_set_config(sql) {
        return false;
    }
    let (Ok(body), Ok(rest)) = (std::str::from_utf8(body), std::str::from_utf8(rest)) else {
        return false;
    };
    // After the `;`, nothing the split would count as a statement, and
    // nothing that could end a comment begun before it.
    if !rest.trim_end_matches('\0').trim().is_empty() {
        return false;
    }
    // As `first_word` splits the lower-cased text (which only ASCII
    // letters differ from).
    let first = skip_comments(body.trim_end_matches('\0'))
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or("");
    !STARTS_AN_EVENT
        .iter()
        .any(|w| w.eq_ignore_ascii_case(first))
}

/// `set_config` anywhere in `sql`, in any case.
fn calls_set_config(sql: &[u8]) -> bool {
    const NAME: &[u8] = b"set_config";
    memchr::memchr_iter(b'_', sql).any(|at| {
        at >= 3
            && sql
                .get(at - 3..at - 3 + NAME.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(NAME))
    })
}

/// The events of one statement, comments before it skipped.
fn statement(text: &str) -> Vec<Event> {
    let lower = text.to_ascii_lowercase();
    // Most statements that reach here (an `UPDATE ... SET`) start with a
    // word none of the arms below or `classify_one` acts on: answer before
    // splitting them into words.
    if !STARTS_AN_EVENT.contains(&super::parse::first_word(&lower)) && !lower.contains("set_config")
    {
        return Vec::new();
    }
    let words: Vec<&str> = lower.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    let event = match first {
        "savepoint" => words.get(1).map(|_| Event::Savepoint(name_after(text, 1))),
        "release" => {
            let skip = if words.get(1) == Some(&"savepoint") {
                2
            } else {
                1
            };
            Some(Event::Release(name_after(text, skip)))
        }
        "rollback" | "abort" => match words.iter().position(|w| *w == "to") {
            Some(to) => {
                let skip = if words.get(to + 1) == Some(&"savepoint") {
                    to + 2
                } else {
                    to + 1
                };
                Some(Event::RollbackTo(name_after(text, skip)))
            }
            None if words.get(1) == Some(&"prepared") => None,
            None => Some(Event::Rollback),
        },
        "commit" | "end" if words.get(1) == Some(&"prepared") => None,
        "commit" | "end" => Some(Event::Commit),
        _ if lower.contains("set_config") => return set_configs(text, &lower),
        // Code pgwarden cannot see into (DO, CALL) counts only if it
        // mentions a setting change.
        _ if !lower.contains("set") && !lower.contains("discard") => None,
        _ => match classify_one(text) {
            Change::None => None,
            change => Some(Event::Change(change)),
        },
    };
    event.into_iter().collect()
}

/// The identifier after the first `skip` words: as written when quoted,
/// else lower-cased (PostgreSQL folds unquoted names).
fn name_after(text: &str, skip: usize) -> String {
    let word = text.split_whitespace().nth(skip).unwrap_or("");
    let word = word.trim_end_matches(';');
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => word.to_ascii_lowercase(),
    }
}

/// `SELECT set_config('name', 'value', false)`, one event per call: a
/// session-wide change when every argument is a literal, none for a local
/// one (`true`), not followed otherwise.
fn set_configs(text: &str, lower: &str) -> Vec<Event> {
    if !lower.trim_start().starts_with("select") {
        return vec![Event::Change(Change::Untrackable)];
    }
    let mut events = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("set_config") {
        let after = &rest[at + "set_config".len()..];
        match call(after) {
            Some((Arg::Text(name), Arg::Text(value), false, tail)) => {
                events.push(Event::Change(Change::SetRaw(
                    name.to_ascii_lowercase(),
                    value,
                )));
                rest = tail;
            }
            Some((name, value, false, tail)) => {
                events.push(Event::Change(Change::SetBound(name, value)));
                rest = tail;
            }
            Some((_, _, true, tail)) => rest = tail,
            None => return vec![Event::Change(Change::Untrackable)],
        }
    }
    events
}

/// `('name', 'value', is_local)` at the start of `s` (name and value may
/// be parameters), and what follows.
fn call(s: &str) -> Option<(Arg, Arg, bool, &str)> {
    let s = s.trim_start().strip_prefix('(')?;
    let (name, s) = argument(s)?;
    let s = s.trim_start().strip_prefix(',')?;
    let (value, s) = argument(s)?;
    let s = s.trim_start().strip_prefix(',')?.trim_start();
    let end = s.find(')')?;
    let local = match s[..end].trim().to_ascii_lowercase().as_str() {
        "false" | "'f'" | "'false'" | "off" => false,
        "true" | "'t'" | "'true'" | "on" => true,
        _ => return None,
    };
    Some((name, value, local, &s[end + 1..]))
}

/// A literal, or `$n` (with an optional `::text` cast), and the rest.
fn argument(s: &str) -> Option<(Arg, &str)> {
    let s = s.trim_start();
    let Some(digits) = s.strip_prefix('$') else {
        return literal(s).map(|(v, rest)| (Arg::Text(v), rest));
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n: usize = digits[..end].parse().ok()?;
    let rest = &digits[end..];
    let rest = rest
        .trim_start()
        .strip_prefix("::text")
        .or_else(|| rest.trim_start().strip_prefix("::TEXT"))
        .unwrap_or(rest);
    Some((Arg::Param(n.checked_sub(1)?), rest))
}

/// A standard string literal at the start of `s` (no `E''`, no
/// backslashes: a setting that needs them is not followed), and the rest.
fn literal(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => return None,
            '\'' if s[i + 1..].starts_with('\'') => {
                value.push('\'');
                chars.next();
            }
            '\'' => return Some((value, &s[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut answers only what the split would.
    #[test]
    fn starts_no_event_agrees_with_the_split() {
        let words = [
            "UPDATE t ",
            "SET ",
            "set",
            "x = 1",
            ";",
            " ",
            "\n",
            "\0",
            "-- c\n",
            "/* ; */",
            "'a;b'",
            "$$;$$",
            "Set_Config(",
            "'search_path'",
            "commit",
            "END",
            "begin",
            "do ",
            "\"q\"",
            "é",
            "--",
            "/*",
            "reset all",
            "savepoint s",
            "SELECT ",
        ];
        let mut checked = 0;
        // Every text of up to four of the words.
        let n = words.len();
        for i in 0..n * n * n * n {
            let mut sql = String::new();
            let mut k = i;
            for _ in 0..4 {
                sql.push_str(words[k % n]);
                k /= n;
            }
            if starts_no_event(sql.as_bytes()) {
                checked += 1;
                assert_eq!(split_effect(sql.as_bytes()), Effect::default(), "{sql:?}");
            }
        }
        assert!(checked > 10_000, "{checked}");
        for sql in [
            "UPDATE pgbench_accounts SET abalance = abalance + -4 WHERE aid = 7;",
            "INSERT INTO h (a) VALUES (1);\0",
        ] {
            assert!(starts_no_event(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SET x = 1;",
            "UPDATE t SET a = 1; SET b = 2",
            "select SET_CONFIG('a', 'b', false)",
            "/* c; -- */ SET x\n",
        ] {
            assert!(!starts_no_event(sql.as_bytes()), "{sql}");
        }
    }

    fn events(sql: &str) -> Vec<Event> {
        effect(sql.as_bytes()).events
    }

    fn set(name: &str, value: &str) -> Event {
        Event::Change(Change::Set(name.into(), value.into()))
    }

    #[test]
    fn block_statements() {
        assert_eq!(events("SAVEPOINT s1"), [Event::Savepoint("s1".into())]);
        assert_eq!(
            events("savepoint \"_pg3_1\""),
            [Event::Savepoint("_pg3_1".into())]
        );
        assert_eq!(
            events("RELEASE SAVEPOINT S1"),
            [Event::Release("s1".into())]
        );
        assert_eq!(events("release s1"), [Event::Release("s1".into())]);
        assert_eq!(
            events("ROLLBACK TO SAVEPOINT s1"),
            [Event::RollbackTo("s1".into())]
        );
        assert_eq!(
            events("ROLLBACK WORK TO s1"),
            [Event::RollbackTo("s1".into())]
        );
        assert_eq!(events("ROLLBACK"), [Event::Rollback]);
        assert_eq!(events("abort"), [Event::Rollback]);
        assert_eq!(events("COMMIT AND CHAIN"), [Event::Commit]);
        assert_eq!(events("END"), [Event::Commit]);
        assert!(events("COMMIT PREPARED 'x'").is_empty());
        assert!(events("SELECT 1").is_empty());
    }

    #[test]
    fn statements_split_outside_literals() {
        let e = effect(b"BEGIN; SET search_path = 'a;b'; COMMIT\0");
        assert!(e.several);
        assert_eq!(e.events, [set("search_path", "'a;b'"), Event::Commit]);
        let e = effect(b"SET TimeZone = 'Asia/Tokyo'");
        assert!(!e.several);
        assert_eq!(e.events, [set("timezone", "'Asia/Tokyo'")]);
        let e = effect(b"DO $$ BEGIN PERFORM 1; END $$; SELECT 1");
        assert!(e.several && e.events.is_empty());
    }

    #[test]
    fn set_config_calls() {
        assert_eq!(
            events("SELECT set_config('search_path', 'a, b', false)"),
            [Event::Change(Change::SetRaw(
                "search_path".into(),
                "a, b".into()
            ))]
        );
        assert_eq!(
            events("select pg_catalog.set_config('App.Tenant', 'it''s', FALSE), set_config('x.y', '1', true)"),
            [Event::Change(Change::SetRaw("app.tenant".into(), "it's".into()))]
        );
        assert!(events("SELECT set_config('a.b', '1', true)").is_empty());
        assert_eq!(
            events("SELECT set_config('a.b', $1, false)"),
            [Event::Change(Change::SetBound(
                Arg::Text("a.b".into()),
                Arg::Param(0)
            ))]
        );
        assert_eq!(
            events("SELECT set_config('a.b', now()::text, false)"),
            [Event::Change(Change::Untrackable)]
        );
        assert_eq!(
            events("UPDATE t SET x = set_config('a.b', '1', false)"),
            [Event::Change(Change::Untrackable)]
        );
    }

    #[test]
    fn unreadable_literals_are_not_guessed() {
        assert_eq!(
            events("SET search_path = 'a\\'; SET x = 1"),
            [Event::Change(Change::Untrackable)]
        );
    }
}
