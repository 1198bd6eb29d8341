//! The effective value of a setting that a database or a user may
//! override: `[users.NAME]` over `[databases.NAME]` over `[proxy]`, in
//! PgBouncer's order (its `pool_pool_size`, `pool_res_pool_size`, ...), so
//! that each precedence rule is written once.

use std::time::Duration;

use super::duration::Secs;
use super::{Loaded, PoolMode, UserSettings};
use crate::auth::secret::Secret;

/// Where and how to look a client's password up with `auth_query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLookup<'a> {
    pub user: &'a str,
    pub query: &'a str,
    /// The configured database (a `[databases]` key) whose primary runs it.
    pub database: &'a str,
    pub addr: &'a str,
    /// Its name on that server.
    pub dbname: String,
}

/// A session's timeouts, `None` where off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTimeouts {
    pub query: Option<Duration>,
    pub idle_transaction: Option<Duration>,
    pub transaction: Option<Duration>,
    pub client_idle: Option<Duration>,
}

impl Loaded {
    fn user(&self, user: &str) -> Option<&UserSettings> {
        self.config.users.get(user)
    }

    pub fn pool_mode(&self, db: &str, user: &str) -> PoolMode {
        self.user(user)
            .and_then(|u| u.pool_mode)
            .or_else(|| self.database(db).and_then(|d| d.pool_mode))
            .unwrap_or(self.config.proxy.pool_mode)
    }

    /// How many instances share the server-connection budgets:
    /// `fleet_size`, where 0 means one per `[peers]` entry (at least 1).
    pub fn fleet_size(&self) -> usize {
        match self.config.proxy.fleet_size {
            0 => self.config.peers.len().max(1),
            n => n,
        }
    }

    /// This instance's share of a fleet-wide count of server connections:
    /// rounded down, so that the fleet never exceeds the budget, but at
    /// least 1 where the budget is not 0 (a pool needs a server).
    fn share(&self, budget: usize, at_least_one: bool) -> usize {
        let fleet = self.fleet_size();
        match budget / fleet {
            0 if at_least_one && budget > 0 => 1,
            n => n,
        }
    }

    /// For the pool of `user` (the user servers see) on `db`: this
    /// instance's share of it (`fleet_size`).
    pub fn pool_size(&self, db: &str, user: &str) -> usize {
        let size = self
            .user(user)
            .and_then(|u| u.pool_size)
            .or_else(|| self.database(db).and_then(|d| d.pool_size))
            .unwrap_or(self.config.proxy.default_pool_size);
        self.share(size, true)
    }

    pub fn reserve_pool_size(&self, db: &str, user: &str) -> usize {
        let size = self
            .user(user)
            .and_then(|u| u.reserve_pool_size)
            .or_else(|| self.database(db).and_then(|d| d.reserve_pool_size))
            .unwrap_or(self.config.proxy.reserve_pool_size);
        self.share(size, false)
    }

    pub fn min_pool_size(&self, db: &str) -> usize {
        let size = self
            .database(db)
            .and_then(|d| d.min_pool_size)
            .unwrap_or(self.config.proxy.min_pool_size);
        self.share(size, false)
    }

    /// 0: no limit (and so in every instance).
    pub fn max_db_connections(&self, db: &str) -> usize {
        let max = self
            .database(db)
            .and_then(|d| d.max_db_connections)
            .unwrap_or(self.config.proxy.max_db_connections);
        self.share(max, true)
    }

    pub fn max_user_connections(&self, user: &str) -> usize {
        let max = self
            .user(user)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.config.proxy.max_user_connections);
        self.share(max, true)
    }

    /// Clients at once on database `db` as clients name it (0: no limit).
    /// As in PgBouncer, a database's own 0 means "the global value".
    pub fn max_db_client_connections(&self, db: &str) -> usize {
        self.database(db)
            .and_then(|d| d.max_db_client_connections)
            .filter(|&n| n > 0)
            .unwrap_or(self.config.proxy.max_db_client_connections)
    }

    /// Clients at once logged in as `user` (0: no limit).
    pub fn max_user_client_connections(&self, user: &str) -> usize {
        self.user(user)
            .and_then(|u| u.max_user_client_connections)
            .filter(|&n| n > 0)
            .unwrap_or(self.config.proxy.max_user_client_connections)
    }

    /// `None`: servers live on until idle-closed. A database's own 0 means
    /// "the global value", as in PgBouncer.
    pub fn server_lifetime(&self, db: &str) -> Option<Duration> {
        self.database(db)
            .and_then(|d| d.server_lifetime)
            .filter(|l| *l != Secs::ZERO)
            .unwrap_or(self.config.proxy.server_lifetime)
            .enabled()
    }

    /// The startup parameters every server of `db` is opened with, beyond
    /// `user` and `database`.
    pub fn server_startup(&self, db: &str) -> Vec<(&'static str, String)> {
        let Some(d) = self.database(db) else {
            return Vec::new();
        };
        [
            ("client_encoding", &d.client_encoding),
            ("DateStyle", &d.datestyle),
            ("TimeZone", &d.timezone),
            ("application_name", &d.application_name),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.clone()?)))
        .collect()
    }

    /// `connect_query` of `db`, if set and not blank.
    pub fn connect_query(&self, db: &str) -> Option<&str> {
        self.database(db)?
            .connect_query
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
    }

    /// How a client of `db` is looked up with `auth_query`: the database's
    /// `auth_user`/`auth_query`/`auth_dbname` over `[proxy]`'s, run in
    /// `auth_dbname` or else `db` (the first of its clusters for a database
    /// made of clusters). `None` when no `auth_user` applies.
    pub fn auth_lookup<'a>(&'a self, db: &'a str) -> Option<AuthLookup<'a>> {
        let p = &self.config.proxy;
        let d = self.database(db)?;
        let user = d.auth_user.as_deref().or(p.auth_user.as_deref())?;
        let query = d.auth_query.as_deref().unwrap_or(&p.auth_query);
        let database = d
            .auth_dbname
            .as_deref()
            .or(p.auth_dbname.as_deref())
            .or(d.clusters.first().map(String::as_str))
            .unwrap_or(db);
        let target = self.database(database).unwrap_or(d);
        Some(AuthLookup {
            user,
            query,
            database,
            addr: &target.primary,
            dbname: target.dbname.clone().unwrap_or_else(|| database.to_owned()),
        })
    }

    /// The timeouts of a session of `user`: its own over `[proxy]`'s.
    pub fn session_timeouts(&self, user: &str) -> SessionTimeouts {
        let p = &self.config.proxy;
        let u = self.user(user);
        let pick = |own: Option<Secs>, global: Secs| own.unwrap_or(global).enabled();
        SessionTimeouts {
            query: pick(u.and_then(|u| u.query_timeout), p.query_timeout),
            idle_transaction: pick(
                u.and_then(|u| u.idle_transaction_timeout),
                p.idle_transaction_timeout,
            ),
            transaction: pick(u.and_then(|u| u.transaction_timeout), p.transaction_timeout),
            client_idle: pick(u.and_then(|u| u.client_idle_timeout), p.client_idle_timeout),
        }
    }

    /// The login the topology monitor uses for `db`: `monitor_user`, else
    /// the database's forced `user`, else `auth_user`; the password from the
    /// same place or, in cleartext, from `[users]`/`auth_file`.
    pub fn monitor_login(&self, db: &str) -> Option<(String, Option<String>)> {
        let d = self.database(db)?;
        let (user, password) = match (&d.routing.monitor_user, &d.user) {
            (Some(u), _) => (u.clone(), d.routing.monitor_password.clone().map(|p| p.0)),
            (None, Some(u)) => (u.clone(), d.password.clone().map(|p| p.0)),
            (None, None) => (
                d.auth_user
                    .clone()
                    .or_else(|| self.config.proxy.auth_user.clone())?,
                None,
            ),
        };
        let password = password.or_else(|| match self.users.get(&user) {
            Some(Secret::Plain(p)) => Some(p.clone()),
            _ => None,
        });
        Some((user, password))
    }
}

/// The overrides' own problems: an `auth_dbname` that names no database,
/// a pool of no servers.
pub(super) fn check(config: &super::Config, problem: &mut impl FnMut(&str, String)) {
    let known = |name: &str| config.databases.contains_key(name);
    if let Some(name) = config.proxy.auth_dbname.as_deref().filter(|n| !known(n)) {
        problem(
            "proxy.auth_dbname",
            format!("{name:?} is not a configured database"),
        );
    }
    for (db, d) in &config.databases {
        if let Some(name) = d.auth_dbname.as_deref().filter(|n| !known(n)) {
            problem(
                &format!("databases.{db}.auth_dbname"),
                format!("{name:?} is not a configured database"),
            );
        }
        if d.auth_query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            problem(&format!("databases.{db}.auth_query"), "is empty".into());
        }
    }
    for (user, u) in &config.users {
        if u.pool_size == Some(0) {
            problem(
                &format!("users.{user}.pool_size"),
                "must be at least 1".into(),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Config, DatabaseSettings};

    fn loaded(text: &str) -> Loaded {
        let config: Config = toml::from_str(text).unwrap();
        crate::config::from_config(config, std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn the_user_wins_over_the_database_over_proxy() {
        let l = loaded(
            "[proxy]\ndefault_pool_size = 20\nreserve_pool_size = 1\nquery_timeout = 9\n\
             [databases.app]\nprimary = \"h:1\"\npool_size = 10\nreserve_pool_size = 2\n\
             [users.batch]\npool_size = 3\nquery_timeout = 60\n",
        );
        assert_eq!(l.pool_size("app", "batch"), 3);
        assert_eq!(l.pool_size("app", "web"), 10);
        assert_eq!(l.pool_size("other", "web"), 20);
        assert_eq!(l.reserve_pool_size("app", "batch"), 2);
        assert_eq!(
            l.session_timeouts("batch").query,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            l.session_timeouts("web").query,
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn each_instance_takes_its_share_of_the_fleets_budget() {
        let l = loaded(
            "[proxy]\nfleet_size = 3\ndefault_pool_size = 20\nmax_db_connections = 30\n\
             reserve_pool_size = 2\nmax_user_connections = 2\n\
             [databases.a]\nprimary = \"h:1\"\n",
        );
        assert_eq!(l.fleet_size(), 3);
        assert_eq!(l.pool_size("a", "u"), 6, "20 / 3, rounded down");
        assert_eq!(l.max_db_connections("a"), 10);
        assert_eq!(l.reserve_pool_size("a", "u"), 0);
        assert_eq!(l.max_user_connections("u"), 1, "at least one");
        let auto = loaded(
            "[proxy]\nfleet_size = 0\npeer_id = \"1\"\nmax_db_connections = 30\n\
             [peers]\n1 = \"a:1\"\n2 = \"b:1\"\n[databases.a]\nprimary = \"h:1\"\n",
        );
        assert_eq!(auto.max_db_connections("a"), 15, "one share per peer");
        let alone = loaded("[proxy]\nfleet_size = 0\n[databases.a]\nprimary = \"h:1\"\n");
        assert_eq!(alone.fleet_size(), 1);
        assert_eq!(alone.max_db_connections("a"), 0, "no limit stays none");
    }

    #[test]
    fn a_database_zero_means_the_global_value() {
        let l = loaded(
            "[proxy]\nserver_lifetime = 100\nmax_db_client_connections = 50\n\
             [databases.a]\nprimary = \"h:1\"\nserver_lifetime = 0\nmax_db_client_connections = 0\n\
             [databases.b]\nprimary = \"h:1\"\nserver_lifetime = 5\nmax_db_client_connections = 7\n",
        );
        assert_eq!(l.server_lifetime("a"), Some(Duration::from_secs(100)));
        assert_eq!(l.server_lifetime("b"), Some(Duration::from_secs(5)));
        assert_eq!(l.max_db_client_connections("a"), 50);
        assert_eq!(l.max_db_client_connections("b"), 7);
    }

    #[test]
    fn auth_lookup_runs_in_auth_dbname_with_the_database_overrides() {
        let mut config = Config::default();
        config.proxy.auth_user = Some("global".into());
        for name in ["global", "local"] {
            let password = Some(crate::config::Password("pw".into()));
            let u = crate::config::UserSettings {
                password,
                ..Default::default()
            };
            config.users.insert(name.into(), u);
        }
        let auth = DatabaseSettings {
            primary: "auth-host:5432".into(),
            dbname: Some("postgres".into()),
            ..Default::default()
        };
        let app = DatabaseSettings {
            primary: "app-host:5432".into(),
            auth_query: Some("SELECT * FROM my_lookup($1)".into()),
            auth_dbname: Some("authdb".into()),
            ..Default::default()
        };
        let own = DatabaseSettings {
            primary: "own-host:5432".into(),
            auth_user: Some("local".into()),
            ..Default::default()
        };
        config.databases.insert("authdb".into(), auth);
        config.databases.insert("app".into(), app);
        config.databases.insert("own".into(), own);
        let l = crate::config::from_config(config, std::path::Path::new("/")).unwrap();
        let a = l.auth_lookup("app").unwrap();
        assert_eq!(
            (a.user, a.query, a.database, a.addr, a.dbname.as_str()),
            (
                "global",
                "SELECT * FROM my_lookup($1)",
                "authdb",
                "auth-host:5432",
                "postgres"
            )
        );
        let o = l.auth_lookup("own").unwrap();
        assert_eq!(
            (o.user, o.addr, o.dbname.as_str()),
            ("local", "own-host:5432", "own")
        );
        assert!(l.auth_lookup("missing").is_none());
    }

    #[test]
    fn an_auth_dbname_must_be_configured() {
        let text = "[proxy]\nauth_dbname = \"nope\"\n[databases.a]\nprimary = \"h:1\"\nauth_dbname = \"gone\"\n";
        let config: Config = toml::from_str(text).unwrap();
        let problems = crate::config::from_config(config, std::path::Path::new("/")).unwrap_err();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"proxy.auth_dbname"), "{keys:?}");
        assert!(keys.contains(&"databases.a.auth_dbname"), "{keys:?}");
    }

    #[test]
    fn the_star_template_serves_unconfigured_names_only_without_replicas() {
        let l = loaded(
            "[databases.app]\nprimary = \"h:1\"\npool_size = 4\n\
             [databases.\"*\"]\nprimary = \"h:2\"\npool_size = 9\n",
        );
        assert_eq!(l.pool_size("app", "u"), 4);
        assert_eq!(l.pool_size("anything", "u"), 9);
        assert!(l.configured("app") && !l.configured("anything"));
        let text = "[databases.\"*\"]\nprimary = \"h:2\"\nreplicas = [\"h:3\"]\n";
        let config: Config = toml::from_str(text).unwrap();
        let problems = crate::config::from_config(config, std::path::Path::new("/")).unwrap_err();
        assert!(
            problems.iter().any(|p| p.key == "databases.*"),
            "{problems:?}"
        );
    }

    #[test]
    fn server_startup_names_parameters_as_postgres_reports_them() {
        let l = loaded(
            "[databases.app]\nprimary = \"h:1\"\ntimezone = \"Asia/Tokyo\"\nclient_encoding = \"LATIN1\"\n",
        );
        assert_eq!(
            l.server_startup("app"),
            vec![
                ("client_encoding", "LATIN1".to_owned()),
                ("TimeZone", "Asia/Tokyo".to_owned())
            ]
        );
        assert!(l.server_startup("none").is_empty());
    }
}
