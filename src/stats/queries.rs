//! `SHOW QUERIES`: the top query fingerprints (constants stripped) with
//! their calls and latency percentiles. Off by default (`query_stats`);
//! memory is bounded by `query_stats_max` fingerprints (later ones count
//! under one "(other)" entry) and a small histogram each.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Normalized text kept per fingerprint.
const MAX_TEXT: usize = 1024;
/// Key of the entry that collects fingerprints beyond the limit.
const OTHER: u64 = 0;

#[derive(Debug)]
struct Entry {
    text: String,
    calls: u64,
    total_us: u64,
    /// One significant digit: ~2 KiB an entry.
    hist: Option<Histogram<u32>>,
}

/// One fingerprint's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRow {
    pub fingerprint: u64,
    pub query: String,
    pub calls: u64,
    pub total_us: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

#[derive(Debug, Default)]
pub struct QueryStats {
    enabled: AtomicBool,
    max: AtomicUsize,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl QueryStats {
    /// Follows the config (`query_stats`, `query_stats_max`).
    pub fn configure(&self, enabled: bool, max: usize) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The fingerprint of `sql`, its entry made if there is room.
    pub fn note(&self, sql: &[u8]) -> u64 {
        let text = normalize(sql);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let key = h.finish().max(1);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&key) {
            return key;
        }
        if map.len() >= self.max.load(Ordering::Relaxed) {
            map.entry(OTHER).or_insert_with(|| entry("(other)".into()));
            return OTHER;
        }
        map.insert(key, entry(text));
        key
    }

    /// One call of `key` that took `us` microseconds.
    pub fn record(&self, key: u64, us: u64) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&key) {
            e.calls += 1;
            e.total_us += us;
            if let Some(h) = e.hist.as_mut() {
                h.saturating_record(us.max(1));
            }
        }
    }

    /// Every fingerprint, most total time first.
    pub fn rows(&self) -> Vec<QueryRow> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<QueryRow> = map
            .iter()
            .filter(|(_, e)| e.calls > 0)
            .map(|(k, e)| {
                let q = |p: f64| e.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
                QueryRow {
                    fingerprint: *k,
                    query: e.text.clone(),
                    calls: e.calls,
                    total_us: e.total_us,
                    p50: q(0.50),
                    p95: q(0.95),
                    p99: q(0.99),
                }
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.total_us));
        rows
    }
}

fn entry(text: String) -> Entry {
    Entry {
        text,
        calls: 0,
        total_us: 0,
        hist: Histogram::new_with_bounds(1, 3_600_000_000, 1).ok(),
    }
}

/// The query with literals (strings, numbers, parameters) as `?`,
/// comments dropped, whitespace collapsed and unquoted words lower-cased.
pub fn normalize(sql: &[u8]) -> String {
    let mut out = String::with_capacity(sql.len().min(MAX_TEXT));
    let mut i = 0;
    let mut space = false;
    let push = |out: &mut String, s: &str, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(s);
    };
    while i < sql.len() && out.len() < MAX_TEXT {
        let c = sql[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                space = true;
                i += 1;
            }
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < sql.len() && sql[i] != b'\n' {
                    i += 1;
                }
                space = true;
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < sql.len() && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
                space = true;
            }
            b'\'' => {
                i = skip_quoted(sql, i, b'\'');
                push(&mut out, "?", &mut space);
            }
            b'"' => {
                let end = skip_quoted(sql, i, b'"');
                push(
                    &mut out,
                    &String::from_utf8_lossy(&sql[i..end.min(sql.len())]),
                    &mut space,
                );
                i = end;
            }
            b'$' => {
                // $1 parameters, or $tag$...$tag$ strings.
                let digits = sql[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    i += 1 + digits;
                } else {
                    let tag_len = sql[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    let tag = &sql[i..(i + tag_len + 2).min(sql.len())];
                    if tag.last() == Some(&b'$') && tag.len() >= 2 {
                        let body = i + tag.len();
                        let end =
                            find(&sql[body..], tag).map_or(sql.len(), |p| body + p + tag.len());
                        i = end;
                    } else {
                        i += 1;
                    }
                }
                push(&mut out, "?", &mut space);
            }
            b'0'..=b'9' => {
                while i < sql.len() && (sql[i].is_ascii_alphanumeric() || sql[i] == b'.') {
                    i += 1;
                }
                push(&mut out, "?", &mut space);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < sql.len()
                    && (sql[i].is_ascii_alphanumeric()
                        || sql[i] == b'_'
                        || sql[i] == b'$'
                        || sql[i] >= 0x80)
                {
                    i += 1;
                }
                let word = String::from_utf8_lossy(&sql[start..i]).to_lowercase();
                // E'...' and the like: the prefix belongs to the string.
                if sql.get(i) == Some(&b'\'') && word.len() == 1 {
                    i = skip_quoted(sql, i, b'\'');
                    push(&mut out, "?", &mut space);
                } else {
                    push(&mut out, &word, &mut space);
                }
            }
            _ => {
                let s = (c as char).to_string();
                push(&mut out, &s, &mut space);
                i += 1;
            }
        }
    }
    out
}

/// The index after a quoted run starting at `i` (doubled quotes escape).
fn skip_quoted(s: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < s.len() {
        if s[i] == q {
            if s.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_stripped() {
        let n = |s: &str| normalize(s.as_bytes());
        assert_eq!(
            n("SELECT abalance FROM pgbench_accounts WHERE aid = 42;"),
            "select abalance from pgbench_accounts where aid = ?;"
        );
        assert_eq!(
            n("select * from t where a = 'x''y' and b=$1"),
            n("SELECT *  FROM t\nWHERE a = 'z' AND b=$2")
        );
        assert_eq!(
            n("insert into \"T\" values (1.5e3, E'a', $$x$$) -- c"),
            "insert into \"T\" values (?, ?, ?)"
        );
        assert_eq!(n("/* hint */ select 1"), "select ?");
        assert_eq!(n("select $tag$ it's $tag$"), "select ?");
    }

    #[test]
    fn bounded() {
        let s = QueryStats::default();
        s.configure(true, 2);
        let a = s.note(b"select 1");
        let b = s.note(b"select a from t");
        let c = s.note(b"select b from u");
        assert_eq!(c, OTHER);
        assert_ne!(a, b);
        for k in [a, a, b, c] {
            s.record(k, 100);
        }
        let rows = s.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].calls, 2);
        assert!(rows.iter().any(|r| r.query == "(other)"));
    }
}
