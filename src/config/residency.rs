//! Data residency settings: where a database's tenants may be served.
//! See `docs/data-residency.md` for the model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Regions each tenant may be served from: `acme = ["eu-west-1", "eu-central-1"]`.
pub type TenantMap = BTreeMap<String, Vec<String>>;

/// How a database enforces its tenants' regions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Only nodes in the tenant's regions, ever; none available is an error.
    Strict,
    /// The tenant's regions first; others only when none of those is up,
    /// counted and logged.
    Preferred,
    /// No tenant rules: nodes in the proxy's own region first.
    #[default]
    Off,
}

/// Where a session's tenant comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantFrom {
    /// The user the client logged in as.
    #[default]
    User,
    /// The database name the client asked for.
    Database,
    /// The startup parameter `pgwarden.tenant` (`options=-c pgwarden.tenant=...`).
    Startup,
    /// `SET pgwarden.tenant = '...'` before the first query (or the startup parameter).
    Set,
}

/// What a client whose tenant is not in the map gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTenant {
    /// Refused with SQLSTATE RZ002.
    #[default]
    Reject,
    /// Served as a tenant of `default_region`.
    DefaultRegion,
}

/// `[databases.NAME.residency]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResidencySettings {
    pub policy: Policy,
    pub tenant_from: TenantFrom,
    /// With `tenant_from = "set"`: a session may change its tenant later.
    pub tenant_changes: bool,
    pub unknown_tenant: UnknownTenant,
    pub default_region: Option<String>,
}
