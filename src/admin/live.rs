//! Live changes from the console: `SET key = value` on the running config
//! and `RELOAD` of the file, each validated in full before it applies, the
//! running config kept on any error.
//!
//! A `SET` changes the running config only; `RELOAD` goes back to the file.

use std::path::Path;

use serde::Deserialize;

use crate::app::Shared;
use crate::config::{self, Loaded, ProxySettings};
use crate::error::ProxyError;

/// `[proxy]` keys read at start only.
const RESTART_ONLY: &[&str] = &["listen", "workers"];

/// Whether `SET key` applies without a restart.
pub fn changeable(key: &str) -> bool {
    !RESTART_ONLY.contains(&key)
}

/// `SET key = value` for a `[proxy]` setting.
///
/// # Errors
/// Unknown key (42704), a restart-only key (55P02), a bad value (22023), or
/// a config the full validation refuses (F0000).
pub fn set(shared: &Shared, key: &str, value: &str) -> Result<(), ProxyError> {
    if !changeable(key) {
        return Err(ProxyError::AdminRestartOnly(key.to_owned()));
    }
    let current = shared.config.load_full();
    let Ok(toml::Value::Table(mut table)) = toml::Value::try_from(&current.config.proxy) else {
        return Err(ProxyError::Internal);
    };
    table.insert(key.to_owned(), parse_value(value));
    let proxy = ProxySettings::deserialize(toml::Value::Table(table)).map_err(|e| {
        let why = e.to_string();
        if why.contains("unknown field") {
            ProxyError::AdminUnknownSetting(key.to_owned())
        } else {
            ProxyError::AdminBadValue {
                key: key.to_owned(),
                why: why.lines().next().unwrap_or_default().to_owned(),
            }
        }
    })?;
    let mut cfg = current.config.clone();
    cfg.proxy = proxy;
    let base = current
        .path
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let mut next =
        config::from_config(cfg, base).map_err(|problems| ProxyError::AdminBadValue {
            key: key.to_owned(),
            why: problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.what))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    next.path = current.path.clone();
    apply(shared, next)
}

/// `RELOAD`: the config file again, validated in full.
///
/// # Errors
/// The proxy was started without a file, or the file is refused (F0000,
/// with every problem).
pub fn reload(shared: &Shared) -> Result<(), ProxyError> {
    let current = shared.config.load_full();
    let Some(path) = current.path.clone() else {
        return Err(ProxyError::ConfigRefused(
            "pgwarden was started without a config file".into(),
        ));
    };
    let next = config::load(&path).map_err(|e| ProxyError::ConfigRefused(e.to_string()))?;
    apply(shared, next)
}

fn apply(shared: &Shared, next: Loaded) -> Result<(), ProxyError> {
    shared.reload(next).map_err(ProxyError::ConfigRefused)?;
    tracing::info!("configuration changed from the admin console");
    Ok(())
}

/// A console value as TOML: a number, boolean or array when it reads as
/// one, else a string.
fn parse_value(value: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.to_owned())),
        Err(_) => toml::Value::String(value.to_owned()),
    }
}
