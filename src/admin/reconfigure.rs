//! Live changes from the console: `SET key = value` on the running config,
//! `RELOAD` of the file and `SAVE CONFIG` back to it, each validated in full
//! before it applies, the running config kept on any error.
//!
//! Keys: a `[proxy]` setting (`default_pool_size`), or a database's or a
//! user's (`databases.app.pool_size`, `users.alice.pool_mode`). A `SET`
//! changes the running config and is remembered until `SAVE CONFIG` writes
//! it into the file (comments and layout kept) or `RELOAD` drops it.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{self, Loaded, ProxySettings};
use crate::error::ProxyError;
use crate::shared::Shared;

/// Database keys that apply live (the rest shape nodes, monitors and
/// server logins, made at start).
const DATABASE_LIVE: &[&str] = &[
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "max_db_connections",
    "pool_mode",
    "session_features",
    "region",
    "max_db_client_connections",
    "server_lifetime",
    "connect_query",
    "client_encoding",
    "datestyle",
    "timezone",
    "application_name",
    "auth_user",
    "auth_query",
    "auth_dbname",
];

/// Whether `SET key` applies without a restart.
pub fn changeable(key: &str) -> bool {
    match split(key).as_slice() {
        [k] => !ProxySettings::RESTART_ONLY.contains(&k.as_str()),
        [t, _, k] if t == "databases" => DATABASE_LIVE.contains(&k.as_str()),
        [t, _, _] => t == "users",
        _ => false,
    }
}

/// `SET key = value`.
///
/// # Errors
/// Unknown key (42704), a restart-only key (55P02), a bad value (22023), or
/// a config the full validation refuses (22023, with its problems).
pub fn set(shared: &Shared, key: &str, value: &str) -> Result<(), ProxyError> {
    let path = split(key);
    let current = shared.config.load_full();
    let mut cfg = current.config.clone();
    let mut value = parse_value(value);
    let bad = |why: String| ProxyError::AdminBadValue {
        key: key.to_owned(),
        why,
    };
    match path.as_slice() {
        [k] => cfg.proxy = with_key(&cfg.proxy, k, &mut value, key)?,
        [t, name, k] if t == "databases" => {
            let db = cfg
                .databases
                .get(name.as_str())
                .ok_or_else(|| ProxyError::UnknownDatabase(name.clone()))?;
            let db = with_key(db, k, &mut value, key)?;
            cfg.databases.insert(name.clone(), db);
        }
        [t, name, k] if t == "users" => {
            let user = cfg
                .users
                .get(name.as_str())
                .ok_or_else(|| ProxyError::AdminUnknownSetting(key.to_owned()))?;
            let user = with_key(user, k, &mut value, key)?;
            cfg.users.insert(name.clone(), user);
        }
        _ => return Err(ProxyError::AdminUnknownSetting(key.to_owned())),
    }
    if !changeable(key) {
        return Err(ProxyError::AdminRestartOnly(key.to_owned()));
    }
    let mut next = config::from_config(cfg, base(&current)).map_err(|problems| {
        bad(problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.what))
            .collect::<Vec<_>>()
            .join("; "))
    })?;
    next.path = current.path.clone();
    shared.apply(next)?;
    let mut toml_path = path;
    if toml_path.len() == 1 {
        toml_path.insert(0, "proxy".into());
    }
    shared.unsaved.push(toml_path, value);
    tracing::info!(key, "configuration changed from the admin console");
    Ok(())
}

/// `RELOAD`: the config file again, validated in full; unsaved `SET`s are
/// dropped.
///
/// # Errors
/// The proxy was started without a file, or the file is refused (F0000,
/// with every problem).
pub fn reload(shared: &Shared) -> Result<(), ProxyError> {
    let path = file(shared)?;
    let next = config::load(&path).map_err(|e| ProxyError::ConfigRefused(e.to_string()))?;
    shared.reload(next)
}

/// `SAVE CONFIG`: the unsaved `SET`s written into the config file, the rest
/// of it (comments, order, other keys) as it is; atomically (a new file
/// renamed over the old one), and only if the result loads.
///
/// # Errors
/// No file, it cannot be read or written, or the result would not load
/// (F0000).
pub fn save(shared: &Shared) -> Result<(), ProxyError> {
    let path = file(shared)?;
    let refused = |e: String| ProxyError::ConfigRefused(format!("{}: {e}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| refused(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| refused(e.to_string()))?;
    for (keys, value) in shared.unsaved.list() {
        set_in(&mut doc, &keys, &value).map_err(refused)?;
    }
    let out = doc.to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    config::from_str(&out, dir).map_err(|problems| {
        refused(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.what))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.pgwarden-save",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    std::fs::write(&tmp, out.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            refused(e.to_string())
        })?;
    shared.unsaved.clear();
    tracing::info!(file = %path.display(), "configuration saved from the admin console");
    Ok(())
}

fn file(shared: &Shared) -> Result<PathBuf, ProxyError> {
    shared.config.load().path.clone().ok_or_else(|| {
        ProxyError::ConfigRefused("pgwarden was started without a config file".into())
    })
}

fn base(loaded: &Loaded) -> &Path {
    loaded
        .path
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
}

/// `settings` with `key` set to `value`, through its serde form (so the
/// file's rules and types apply).
/// `settings` with `key` set to `value`; a switch given as PgBouncer
/// writes it (`0`, `1`, `on`, `off`) becomes a TOML boolean, in `value`
/// too, so that `SAVE CONFIG` writes what loads.
fn with_key<T: Serialize + DeserializeOwned>(
    settings: &T,
    key: &str,
    value: &mut toml::Value,
    full_key: &str,
) -> Result<T, ProxyError> {
    let Ok(toml::Value::Table(mut table)) = toml::Value::try_from(settings) else {
        return Err(ProxyError::Internal);
    };
    if let (Some(toml::Value::Boolean(_)), Some(b)) = (table.get(key), as_switch(value)) {
        *value = toml::Value::Boolean(b);
    }
    table.insert(key.to_owned(), value.clone());
    T::deserialize(toml::Value::Table(table)).map_err(|e| {
        let why = e.to_string();
        if why.contains("unknown field") {
            ProxyError::AdminUnknownSetting(full_key.to_owned())
        } else {
            ProxyError::AdminBadValue {
                key: full_key.to_owned(),
                why: why.lines().next().unwrap_or_default().to_owned(),
            }
        }
    })
}

/// Sets `keys` (tables, then a key) in the document, making tables as needed.
fn set_in(
    doc: &mut toml_edit::DocumentMut,
    keys: &[String],
    value: &toml::Value,
) -> Result<(), String> {
    let Some((last, tables)) = keys.split_last() else {
        return Err("empty key".into());
    };
    let mut table = doc.as_table_mut();
    for k in tables {
        let item = table.entry(k).or_insert(toml_edit::table());
        table = item
            .as_table_mut()
            .ok_or_else(|| format!("{k} is not a table"))?;
    }
    let value: toml_edit::Value = value
        .to_string()
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    match table.get_mut(last).and_then(toml_edit::Item::as_value_mut) {
        // Keep the old value's comments and spacing.
        Some(old) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        None => {
            table.insert(last, toml_edit::Item::Value(value));
        }
    }
    Ok(())
}

fn split(key: &str) -> Vec<String> {
    key.split('.').map(str::to_owned).collect()
}

/// A console value as TOML: a number, boolean or array when it reads as
/// one, else a string.
/// `0`/`1`, `on`/`off`, `yes`/`no`, `true`/`false` as a boolean.
fn as_switch(value: &toml::Value) -> Option<bool> {
    match value {
        toml::Value::Integer(0) => Some(false),
        toml::Value::Integer(1) => Some(true),
        toml::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => Some(true),
            "off" | "no" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn parse_value(value: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_keeps_comments_and_other_keys() {
        let mut doc: toml_edit::DocumentMut =
            "# top\n[proxy]\n# the size\ndefault_pool_size = 20 # inline\nlisten = \"x:1\"\n"
                .parse()
                .unwrap_or_default();
        let path = vec!["proxy".to_owned(), "default_pool_size".to_owned()];
        assert!(set_in(&mut doc, &path, &toml::Value::Integer(40)).is_ok());
        let db = vec!["databases".into(), "app".into(), "pool_size".into()];
        assert!(set_in(&mut doc, &db, &toml::Value::Integer(5)).is_ok());
        let out = doc.to_string();
        assert!(
            out.contains("# the size\ndefault_pool_size = 40 # inline"),
            "{out}"
        );
        assert!(
            out.contains("# top") && out.contains("listen = \"x:1\""),
            "{out}"
        );
        assert!(out.contains("[databases.app]\npool_size = 5"), "{out}");
    }

    #[test]
    fn which_keys_apply_live() {
        assert!(changeable("default_pool_size"));
        assert!(!changeable("listen"));
        assert!(changeable("databases.app.pool_size"));
        assert!(!changeable("databases.app.primary"));
        assert!(changeable("users.alice.pool_mode"));
        assert!(!changeable("nonsense.a.b.c"));
    }
}
