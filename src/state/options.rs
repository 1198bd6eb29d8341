//! The `options` startup parameter, read as PostgreSQL reads it: words
//! split on whitespace with `\` escaping the next character (libpq's
//! `PGOPTIONS` rules, so `-c datestyle=German,\ YMD` is one value), then
//! `-c name=value`, `-cname=value` or `--name=value` per setting, with
//! dashes in names read as underscores.
//!
//! Other server switches (`-d 5`, `-B ...`) are refused: PostgreSQL applies
//! them to a backend for its whole life, which a pooled server cannot give
//! one client.

/// Why an `options` value was refused; PostgreSQL's own words and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("-c {0} requires a value")]
    NoValue(String),
    #[error("--{0} requires a value")]
    LongNoValue(String),
    #[error("invalid command-line argument for server process: {0}")]
    Invalid(String),
}

/// Splits `opts` into words (PostgreSQL's `pg_split_opts`).
fn words(opts: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = opts.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_ascii_whitespace() => break,
                '\\' => {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                }
                c => word.push(c),
            }
        }
        out.push(word);
    }
}

/// The `(name, value)` settings in `opts`, names lower-cased.
pub fn parse(opts: &str) -> Result<Vec<(String, String)>, OptionsError> {
    let mut out = Vec::new();
    let mut words = words(opts).into_iter();
    while let Some(w) = words.next() {
        let (setting, long) = if w == "-c" {
            match words.next() {
                Some(s) => (s, false),
                None => return Err(OptionsError::Invalid(w)),
            }
        } else if let Some(s) = w.strip_prefix("--") {
            (s.to_owned(), true)
        } else if let Some(s) = w.strip_prefix("-c") {
            (s.to_owned(), false)
        } else {
            return Err(OptionsError::Invalid(w));
        };
        match setting.split_once('=') {
            Some((name, value)) if !name.is_empty() => out.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_owned(),
            )),
            _ if long => return Err(OptionsError::LongNoValue(setting)),
            _ => return Err(OptionsError::NoValue(setting)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<(String, String)> {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_of_a_setting() {
        assert_eq!(
            ok("-c search_path=x --statement-timeout=5s -cTimeZone=UTC"),
            vec![
                ("search_path".into(), "x".into()),
                ("statement_timeout".into(), "5s".into()),
                ("timezone".into(), "UTC".into()),
            ]
        );
        assert_eq!(ok("  "), vec![]);
    }

    #[test]
    fn libpq_escaping() {
        assert_eq!(
            ok(r"-c datestyle=German,\ YMD"),
            vec![("datestyle".into(), "German, YMD".into())]
        );
        assert_eq!(
            ok(r"-c search_path=a\\b"),
            vec![("search_path".into(), r"a\b".into())]
        );
    }

    #[test]
    fn refused_as_postgresql_refuses() {
        assert_eq!(parse("-d 5"), Err(OptionsError::Invalid("-d".into())));
        assert_eq!(parse("-c"), Err(OptionsError::Invalid("-c".into())));
        assert_eq!(
            parse("-c work_mem"),
            Err(OptionsError::NoValue("work_mem".into()))
        );
        assert_eq!(
            parse("--work_mem"),
            Err(OptionsError::LongNoValue("work_mem".into()))
        );
        assert_eq!(parse("stray"), Err(OptionsError::Invalid("stray".into())));
    }
}
