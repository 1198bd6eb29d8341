//! A session's routing preferences: its startup parameters
//! (`pgwarden.route`, `pgwarden.consistency`, `pgwarden.max_staleness_ms`,
//! `default_transaction_read_only`) under its own `SET pgwarden.*`, over the
//! database's `[routing]` defaults.
//!
//! Owns: those preferences, refreshed only when the session's parameters
//! changed. The `SET`s are answered by pgwarden ([`crate::routing::control`]).

use crate::error::ProxyError;

use crate::config::{Consistency, RoutingSettings};
use crate::prepared::SessionTracker;
use crate::routing::control::{Command, Control};
use crate::routing::Hint;

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
    /// `default_transaction_read_only` is on: PostgreSQL refuses writes anyway.
    pub read_only: bool,
    /// The parameters' version these were made from (`None`: make again).
    version: Option<u32>,
    /// `SET pgwarden.*` by the session, over its startup parameters.
    set_route: RouteSet,
    set_consistency: Option<Consistency>,
    set_staleness: Option<u64>,
}

impl Prefs {
    pub fn new(settings: &RoutingSettings) -> Self {
        Self {
            route: None,
            consistency: settings.consistency,
            max_staleness_ms: settings.max_staleness_ms,
            read_only: false,
            version: None,
            set_route: RouteSet::NotSet,
            set_consistency: None,
            set_staleness: None,
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
            Control::Consistency => match value.map(Consistency::parse) {
                None => {
                    self.set_consistency = None;
                    true
                }
                Some(Some(c)) => {
                    self.set_consistency = Some(c);
                    true
                }
                Some(None) => false,
            },
            Control::MaxStalenessMs => match value.map(str::parse::<u64>) {
                None => {
                    self.set_staleness = None;
                    true
                }
                Some(Ok(ms)) => {
                    self.set_staleness = Some(ms);
                    true
                }
                Some(Err(_)) => false,
            },
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
    }
}
