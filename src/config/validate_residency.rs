//! Checks of regions, tenants and databases made of regional clusters, and
//! the merge of `tenants_file` into `[tenants]`.

use std::path::Path;

use super::residency::{Policy, TenantMap, UnknownTenant};
use super::schema::{Config, PoolMode};

/// Whether `db`'s nodes need the topology monitor: replicas to route to,
/// residency to enforce, or a logical database that uses it as a cluster.
pub fn monitored(config: &Config, db: &str) -> bool {
    let Some(d) = config.databases.get(db) else {
        return false;
    };
    d.clusters.is_empty()
        && (!d.replicas.is_empty()
            || d.residency.policy != Policy::Off
            || config
                .databases
                .values()
                .any(|other| other.clusters.iter().any(|c| c == db)))
}

pub fn check(config: &mut Config, base: &Path, problem: &mut impl FnMut(&str, String)) {
    if let Some(file) = &config.proxy.tenants_file {
        let path = base.join(file);
        match read_tenants(&path) {
            Ok(more) => {
                for (tenant, regions) in more {
                    // The same entry twice is a config validated again
                    // after its file was merged (a live SET).
                    if config.tenants.get(&tenant).is_some_and(|r| *r != regions) {
                        problem(
                            "proxy.tenants_file",
                            format!("tenant {tenant:?} is also in [tenants]"),
                        );
                    }
                    config.tenants.insert(tenant, regions);
                }
            }
            Err(e) => problem("proxy.tenants_file", format!("{}: {e}", path.display())),
        }
    }
    for (tenant, regions) in &config.tenants {
        if regions.is_empty() || regions.iter().any(|r| r.trim().is_empty()) {
            problem(
                &format!("tenants.{tenant}"),
                "needs at least one region, none empty".into(),
            );
        }
    }
    for (name, db) in &config.databases {
        let key = |k: &str| format!("databases.{name}.{k}");
        let res = &db.residency;
        if res.unknown_tenant == UnknownTenant::DefaultRegion && res.default_region.is_none() {
            problem(
                &key("residency.default_region"),
                "unknown_tenant = \"default_region\" needs default_region".into(),
            );
        }
        let mode = db.pool_mode.unwrap_or(config.proxy.pool_mode);
        if res.policy != Policy::Off && mode == PoolMode::Session {
            problem(
                &key("residency.policy"),
                "residency is enforced per transaction: use pool_mode \"transaction\" or \"statement\"".into(),
            );
        }
        if db.clusters.is_empty() {
            continue;
        }
        if !db.primary.is_empty() || !db.replicas.is_empty() {
            problem(
                &key("clusters"),
                "a database made of clusters has no primary or replicas of its own".into(),
            );
        }
        for c in &db.clusters {
            match config.databases.get(c) {
                None => problem(
                    &key("clusters"),
                    format!("{c:?} is not a configured database"),
                ),
                Some(m) if !m.clusters.is_empty() => problem(
                    &key("clusters"),
                    format!("{c:?} is itself made of clusters"),
                ),
                Some(m) if m.region.is_none() => problem(
                    &key("clusters"),
                    format!("{c:?} has no region: set databases.{c}.region"),
                ),
                Some(_) => {}
            }
        }
    }
}

fn read_tenants(path: &Path) -> Result<TenantMap, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    toml::from_str(&text).map_err(|e| e.message().to_owned())
}
