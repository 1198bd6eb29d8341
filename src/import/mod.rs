//! `pgwarden import-pgbouncer`: a `pgbouncer.ini` (and optionally its
//! userlist) as an equivalent proxy.toml. Every setting pgwarden takes is
//! carried over with its value; each it cannot express becomes a
//! `# not supported: key = value (why)` comment and a warning, so that
//! nothing is dropped silently.
//!
//! A value's TOML type is found by asking the config's own schema: the
//! first of integer, number, switch and string that it accepts for the key
//! (so the importer never falls out of step with the settings).

mod ini;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::config::{DatabaseSettings, ProxySettings, UserSettings};
pub use ini::IniError;

/// The translation: proxy.toml's text, and a warning per setting left out.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub toml: String,
    pub warnings: Vec<String>,
}

/// One `[section]` of the output, its lines in order.
#[derive(Default)]
struct Table {
    lines: Vec<String>,
}

impl Table {
    fn set(&mut self, key: &str, value: &toml::Value) {
        self.lines.push(format!("{} = {value}", toml_key(key)));
    }
}

/// Translates `ini` (and `userlist`, whose passwords go into `[users]`).
///
/// # Errors
/// A file cannot be read or has a line PgBouncer would not take either.
pub fn pgbouncer_ini(ini_path: &Path, userlist: Option<&Path>) -> Result<Imported, IniError> {
    let entries = ini::read(ini_path)?;
    let mut out = Imported::default();
    let mut proxy = Table::default();
    let mut databases: BTreeMap<String, Table> = BTreeMap::new();
    let mut users: BTreeMap<String, Table> = BTreeMap::new();
    let mut peers = Table::default();
    let mut other = Table::default();
    for e in &entries {
        match e.section.as_str() {
            "pgbouncer" => setting::<ProxySettings>(&e.key, &e.value, &mut proxy, &mut out),
            "databases" => {
                let t = databases.entry(e.key.clone()).or_default();
                database(&e.key, &e.value, t, &mut out);
            }
            "users" => {
                let t = users.entry(e.key.clone()).or_default();
                pairs_into::<UserSettings>(&e.key, &e.value, t, &mut out);
            }
            "peers" => peer(&e.key, &e.value, &mut peers, &mut out),
            section => unsupported(
                &mut other,
                &mut out,
                &format!("[{section}] {}", e.key),
                &e.value,
                "pgwarden has no such section",
            ),
        }
    }
    if let Some(path) = userlist {
        let text = std::fs::read_to_string(path).map_err(|source| IniError::Read {
            path: path.to_owned(),
            source,
        })?;
        for (user, password) in userlist_pairs(&text) {
            let t = users.entry(user).or_default();
            t.set("password", &toml::Value::String(password));
        }
    }
    let mut text = format!(
        "# Translated from {} by pgwarden import-pgbouncer.\n",
        ini_path.display()
    );
    write_table(&mut text, "[proxy]", &proxy);
    for (name, t) in &databases {
        write_table(&mut text, &format!("[databases.{}]", toml_key(name)), t);
    }
    for (name, t) in &users {
        write_table(&mut text, &format!("[users.{}]", toml_key(name)), t);
    }
    if !peers.lines.is_empty() {
        write_table(&mut text, "[peers]", &peers);
    }
    if !other.lines.is_empty() {
        write_table(&mut text, "", &other);
    }
    out.toml = text;
    Ok(out)
}

fn write_table(text: &mut String, header: &str, t: &Table) {
    text.push('\n');
    if !header.is_empty() {
        let _ = writeln!(text, "{header}");
    }
    for line in &t.lines {
        let _ = writeln!(text, "{line}");
    }
}

/// A bare TOML key where it may be one, else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

fn unsupported(t: &mut Table, out: &mut Imported, key: &str, value: &str, why: &str) {
    t.lines
        .push(format!("# not supported: {key} = {value} ({why})"));
    out.warnings
        .push(format!("not supported: {key} = {value} ({why})"));
}

/// Why pgwarden does not take a PgBouncer key, where it is known.
fn why_not(key: &str) -> &'static str {
    crate::config::pgbouncer_key_note(key).unwrap_or("pgwarden has no such setting")
}

/// `key = value` into `t` as the type `T` (a settings table) takes it, or
/// a not-supported comment.
fn setting<T: DeserializeOwned>(key: &str, value: &str, t: &mut Table, out: &mut Imported) {
    let key = key.to_ascii_lowercase();
    match typed::<T>(&key, value) {
        Some(v) => t.set(&key, &v),
        None => unsupported(t, out, &key, value, why_not(&key)),
    }
}

/// The value as the first TOML type `T` accepts for `key`.
fn typed<T: DeserializeOwned>(key: &str, value: &str) -> Option<toml::Value> {
    let unquoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    let candidates = [
        unquoted.parse::<i64>().ok().map(toml::Value::Integer),
        unquoted.parse::<f64>().ok().map(toml::Value::Float),
        switch(unquoted).map(toml::Value::Boolean),
        Some(toml::Value::String(unquoted.to_owned())),
    ];
    candidates.into_iter().flatten().find(|v| {
        let mut table = toml::Table::new();
        table.insert(key.to_owned(), v.clone());
        T::deserialize(toml::Value::Table(table)).is_ok()
    })
}

fn switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// A `[users]` (or the rest of a `[databases]`) line's pairs.
fn pairs_into<T: DeserializeOwned>(name: &str, value: &str, t: &mut Table, out: &mut Imported) {
    match ini::pairs(value) {
        Ok(pairs) => {
            for (k, v) in pairs {
                setting::<T>(&k, &v, t, out);
            }
        }
        Err(e) => unsupported(t, out, name, value, &e),
    }
}

/// A `[databases]` line: `host`/`port` become `primary`, PgBouncer 1.18's
/// `reserve_pool` is `reserve_pool_size`; the rest as they are named.
fn database(name: &str, value: &str, t: &mut Table, out: &mut Imported) {
    let pairs = match ini::pairs(value) {
        Ok(p) => p,
        Err(e) => return unsupported(t, out, name, value, &e),
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let port = get("port").unwrap_or("5432");
    let hosts: Vec<&str> =
        get("host").map_or(Vec::new(), |h| h.split(',').map(str::trim).collect());
    let host = match hosts.first() {
        Some(h) if !h.starts_with('/') => *h,
        _ => {
            unsupported(
                t,
                out,
                "host",
                get("host").unwrap_or("(none: a Unix socket)"),
                "pgwarden reaches servers over TCP: localhost is used",
            );
            "localhost"
        }
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    t.set("primary", &toml::Value::String(addr));
    if hosts.len() > 1 {
        unsupported(
            t,
            out,
            "host",
            &hosts.join(","),
            "one primary per database: the first host is used; add read replicas with `replicas`",
        );
    }
    for (k, v) in &pairs {
        match k.as_str() {
            "host" | "port" => {}
            "reserve_pool" => setting::<DatabaseSettings>("reserve_pool_size", v, t, out),
            "load_balance_hosts" => unsupported(
                t,
                out,
                k,
                v,
                "pgwarden balances reads over `replicas` by lag and load",
            ),
            _ => setting::<DatabaseSettings>(k, v, t, out),
        }
    }
}

/// A `[peers]` line, `1 = host=h port=6432 pool_size=10`, as `"1" =
/// "h:6432"`.
fn peer(id: &str, value: &str, t: &mut Table, out: &mut Imported) {
    let key = format!("[peers] {id}");
    let pairs = match ini::pairs(value) {
        Ok(p) => p,
        Err(e) => return unsupported(t, out, &key, value, &e),
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let host = get("host").unwrap_or_default();
    if host.is_empty() || host.starts_with('/') {
        return unsupported(
            t,
            out,
            &key,
            value,
            "a peer is reached over TCP: give its host",
        );
    }
    let port = get("port").unwrap_or("6432");
    let addr = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    t.lines.push(format!(
        "{} = {}",
        toml::Value::String(id.to_owned()),
        toml::Value::String(addr)
    ));
    if let Some(size) = get("pool_size") {
        unsupported(
            t,
            out,
            &format!("[peers] {id} pool_size"),
            size,
            "each forwarded cancel has its own short connection; none is capped",
        );
    }
}

/// `"user" "password"` lines of a userlist (`""` inside quotes is a quote).
fn userlist_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let mut field = String::new();
            let mut chars = rest[start + 1..].char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().is_some_and(|(_, n)| *n == '"') {
                        chars.next();
                        field.push('"');
                        continue;
                    }
                    end = Some(start + 1 + i + 1);
                    break;
                }
                field.push(c);
            }
            fields.push(field);
            match end {
                Some(e) => rest = &rest[e..],
                None => break,
            }
        }
        if let [user, password, ..] = fields.as_slice() {
            out.push((user.clone(), password.clone()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_take_the_type_the_schema_wants() {
        assert_eq!(
            typed::<ProxySettings>("max_client_conn", "10"),
            Some(toml::Value::Integer(10))
        );
        assert_eq!(
            typed::<ProxySettings>("tcp_keepalive", "0"),
            Some(toml::Value::Boolean(false))
        );
        assert_eq!(
            typed::<ProxySettings>("query_wait_timeout", "1.5"),
            Some(toml::Value::Float(1.5))
        );
        assert_eq!(
            typed::<ProxySettings>("syslog_ident", "1"),
            Some(toml::Value::String("1".into()))
        );
        assert_eq!(typed::<ProxySettings>("no_such_key", "1"), None);
    }

    #[test]
    fn peers_as_pgbouncer_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            "[pgbouncer]\npeer_id = 2\n[peers]\n1 = host=10.0.0.1 port=6433\n\
             2 = host=pgb2.internal pool_size=5\n3 = host=/tmp\n",
        )
        .unwrap();
        let out = pgbouncer_ini(&ini, None).unwrap();
        let config: crate::config::Config = toml::from_str(&out.toml).unwrap();
        assert_eq!(config.proxy.peer_id, 2);
        assert_eq!(config.peers["1"], "10.0.0.1:6433");
        assert_eq!(
            config.peers["2"], "pgb2.internal:6432",
            "PgBouncer's default port"
        );
        assert!(!config.peers.contains_key("3"));
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    }

    #[test]
    fn userlists_as_pgbouncer_writes_them() {
        let pairs = userlist_pairs("\"a\" \"p\"\"w\"\n;x\n\"b\" \"\"\n");
        assert_eq!(
            pairs,
            vec![("a".into(), "p\"w".into()), ("b".into(), String::new())]
        );
    }
}
