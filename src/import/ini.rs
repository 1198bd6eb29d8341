//! `pgbouncer.ini` as PgBouncer reads it: `[section]` headers, `key = value`
//! lines, `;` and `#` comments, and `%include file` lines (relative to the
//! including file), in file order.

use std::path::{Path, PathBuf};

/// One setting, with the section it is in (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Syntax {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{0}: %include nests too deep (a loop?)")]
    TooDeep(PathBuf),
}

/// Every entry of `path` and the files it includes.
///
/// # Errors
/// A file cannot be read, a line is neither a section, a setting, a
/// comment nor an include, or includes nest more than 16 deep.
pub fn read(path: &Path) -> Result<Vec<Entry>, IniError> {
    let mut entries = Vec::new();
    let mut section = String::new();
    read_into(path, &mut section, &mut entries, 0)?;
    Ok(entries)
}

fn read_into(
    path: &Path,
    section: &mut String,
    entries: &mut Vec<Entry>,
    depth: usize,
) -> Result<(), IniError> {
    if depth > 16 {
        return Err(IniError::TooDeep(path.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|source| IniError::Read {
        path: path.to_owned(),
        source,
    })?;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(file) = line.strip_prefix("%include") {
            let file = Path::new(file.trim());
            let base = path.parent().unwrap_or(Path::new("."));
            read_into(&base.join(file), section, entries, depth + 1)?;
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            *section = name.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(IniError::Syntax {
                path: path.to_owned(),
                line: i + 1,
                what: format!("{line:?} is not `key = value`"),
            });
        };
        entries.push(Entry {
            section: section.clone(),
            key: key.trim().to_owned(),
            value: value.trim().to_owned(),
        });
    }
    Ok(())
}

/// A `[databases]` or `[users]` value: libpq-style `key=value` pairs,
/// a value optionally in single quotes (`''` or `\'` for a quote).
pub fn pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no `=value`"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("{key}: unterminated quote")),
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        value.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_with_quotes() {
        let p = pairs("host=h port=5 connect_query='set a=''x''; set b=1'  dbname = d").unwrap();
        assert_eq!(
            p,
            vec![
                ("host".into(), "h".into()),
                ("port".into(), "5".into()),
                ("connect_query".into(), "set a='x'; set b=1".into()),
                ("dbname".into(), "d".into()),
            ]
        );
        assert!(pairs("host").is_err());
        assert!(pairs("q='open").is_err());
    }

    #[test]
    fn sections_comments_and_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("more.ini"),
            "[users]\nalice = pool_mode=session\n",
        )
        .unwrap();
        let main = dir.path().join("main.ini");
        std::fs::write(
            &main,
            "; comment\n[PgBouncer]\nlisten_port = 6432\n%include more.ini\n[databases]\n# c\napp = host=h\n",
        )
        .unwrap();
        let e = read(&main).unwrap();
        let flat: Vec<_> = e
            .iter()
            .map(|e| format!("{}.{}={}", e.section, e.key, e.value))
            .collect();
        assert_eq!(
            flat,
            [
                "pgbouncer.listen_port=6432",
                "users.alice=pool_mode=session",
                "databases.app=host=h"
            ]
        );
    }
}
