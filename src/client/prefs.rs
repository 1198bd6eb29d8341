//! A session's routing preferences: its startup parameters
//! (`pgwarden.route`, `pgwarden.consistency`, `pgwarden.max_staleness_ms`,
//! `pgwarden.min_lsn`, `default_transaction_read_only`) under its own `SET pgwarden.*`, over the
//! database's `[routing]` defaults.
//!
//! Owns: those preferences, refreshed only when the session's parameters
//! changed. The `SET`s are answered by pgwarden ([`crate::routing::control`]).

use crate::error::ProxyError;
use crate::handoff::HandedRoute;

use crate::config::{Consistency, RoutingSettings};
use crate::prepared::SessionTracker;
use crate::routing::control::{Command, Control};
use crate::routing::Hint;
use crate::topology::lag::parse_lsn;

/// The session's own `SET pgwarden.route`, over its startup parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteSet {
    /// Never set, or `RESET`: the startup parameter holds.
    NotSet,
    /// `auto`: the classifier decides, whatever the startup parameter said.
    Auto,
    To(Hint),
}

/// What the session asked for.
#[derive(Debug, Clone, Copy)]
pub struct Prefs {
    pub route: Option<Hint>,
    pub consistency: Consistency,
    pub max_staleness_ms: u64,
    /// Reads must see this WAL position (`pgwarden.min_lsn`: a write made
    /// through another instance); 0 when none was carried.
    pub min_lsn: u64,
    /// `default_transaction_read_only` is on: PostgreSQL refuses writes anyway.
    pub read_only: bool,
    /// The parameters' version these were made from (`None`: make again).
    version: Option<u64>,
    /// `SET pgwarden.*` by the session, over its startup parameters.
    set_route: RouteSet,
    set_consistency: Option<Consistency>,
    set_staleness: Option<u64>,
    set_min_lsn: Option<u64>,
}

impl Prefs {
    pub fn new(settings: &RoutingSettings) -> Self {
        Self {
            route: None,
            consistency: settings.consistency,
            max_staleness_ms: settings.max_staleness_ms,
            min_lsn: 0,
            read_only: false,
            version: None,
            set_route: RouteSet::NotSet,
            set_consistency: None,
            set_staleness: None,
            set_min_lsn: None,
        }
    }

    /// Applies a `SET`/`RESET` of a routing preference.
    ///
    /// # Errors
    /// `BadRoutingValue` (22023) for a value the preference cannot take.
    pub fn set(&mut self, command: &Command) -> Result<(), ProxyError> {
        let value = command.value.as_deref();
        let ok = match command.control {
            Control::Tenant => false,
            Control::Route => match value {
                None => {
                    self.set_route = RouteSet::NotSet;
                    true
                }
                Some("auto") => {
                    self.set_route = RouteSet::Auto;
                    true
                }
                Some("primary") => {
                    self.set_route = RouteSet::To(Hint::Primary);
                    true
                }
                Some("replica") => {
                    self.set_route = RouteSet::To(Hint::Replica);
                    true
                }
                Some(_) => false,
            },
            Control::Consistency => {
                override_with(&mut self.set_consistency, value.map(Consistency::parse))
            }
            Control::MaxStalenessMs => override_with(
                &mut self.set_staleness,
                value.map(|v| v.parse::<u64>().ok()),
            ),
            Control::MinLsn => override_with(&mut self.set_min_lsn, value.map(parse_lsn)),
        };
        if !ok {
            return Err(ProxyError::BadRoutingValue(
                value.unwrap_or_default().to_owned(),
            ));
        }
        // Applied on top of the parameters at the next refresh.
        self.version = None;
        Ok(())
    }

    /// The session's own `SET`s, for an online restart.
    pub fn export(&self, into: &mut HandedRoute) {
        into.route = match self.set_route {
            RouteSet::NotSet => None,
            RouteSet::Auto => Some("auto".into()),
            RouteSet::To(Hint::Primary) => Some("primary".into()),
            RouteSet::To(Hint::Replica) => Some("replica".into()),
        };
        into.consistency = self.set_consistency;
        into.max_staleness_ms = self.set_staleness;
        into.min_lsn = self.set_min_lsn;
    }

    /// The `SET`s a session had on the process it was handed over from.
    pub fn import(&mut self, handed: &HandedRoute) {
        self.set_route = match handed.route.as_deref() {
            Some("auto") => RouteSet::Auto,
            Some("primary") => RouteSet::To(Hint::Primary),
            Some("replica") => RouteSet::To(Hint::Replica),
            _ => RouteSet::NotSet,
        };
        self.set_consistency = handed.consistency;
        self.set_staleness = handed.max_staleness_ms;
        self.set_min_lsn = handed.min_lsn;
        self.version = None;
    }

    /// Makes the preferences again if the session's parameters changed.
    pub fn refresh(&mut self, tracker: &SessionTracker, settings: &RoutingSettings) {
        let params = tracker.params();
        if self.version == Some(params.version()) {
            return;
        }
        self.version = Some(params.version());
        let lower = |name: &str| params.get(name).map(str::to_ascii_lowercase);
        self.route = match lower("pgwarden.route").as_deref() {
            Some("primary") => Some(Hint::Primary),
            Some("replica") => Some(Hint::Replica),
            _ => None,
        };
        self.consistency = lower("pgwarden.consistency")
            .and_then(|c| Consistency::parse(&c))
            .unwrap_or(settings.consistency);
        self.max_staleness_ms = params
            .get("pgwarden.max_staleness_ms")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(settings.max_staleness_ms);
        // Checked at login (a malformed value is refused there); one set
        // through PostgreSQL (extended protocol, in a block) is not, and
        // is then no position at all.
        self.min_lsn = params
            .get("pgwarden.min_lsn")
            .and_then(parse_lsn)
            .unwrap_or(0);
        self.read_only = matches!(
            lower("default_transaction_read_only").as_deref(),
            Some("on" | "true" | "1" | "yes")
        );
        match self.set_route {
            RouteSet::NotSet => {}
            RouteSet::Auto => self.route = None,
            RouteSet::To(hint) => self.route = Some(hint),
        }
        if let Some(c) = self.set_consistency {
            self.consistency = c;
        }
        if let Some(ms) = self.set_staleness {
            self.max_staleness_ms = ms;
        }
        if let Some(lsn) = self.set_min_lsn {
            self.min_lsn = self.min_lsn.max(lsn);
        }
    }
}

/// A `SET` (`Some(parsed)`) or `RESET` (`None`) of a preference the session
/// sets over its parameters: false when the value did not parse.
fn override_with<T>(slot: &mut Option<T>, value: Option<Option<T>>) -> bool {
    match value {
        None => *slot = None,
        Some(Some(v)) => *slot = Some(v),
        Some(None) => return false,
    }
    true
}
