//! Session parameters in transaction mode: each client's own settings in
//! every transaction, whichever server runs it, and never another's.
//!
//! A client's settings are its tracked startup parameters plus the
//! session-level `SET`/`RESET`/`set_config` it ran, through either
//! protocol, each taking effect when its transaction commits ([`txn`])
//! ([`ClientParams`]). Each server remembers what pgwarden set on it
//! ([`ServerParams`]). Before a client's transaction, the difference is
//! applied in one statement ([`ServerParams::sync_to`]); nothing is sent
//! when nothing differs. What pgwarden cannot follow (a `SET` run by a
//! function or a `DO` block, `set_config` with computed arguments) marks
//! the server dirty, and a dirty server is wiped with `DISCARD ALL` before
//! anyone's next transaction: the change is lost for the client that made
//! it (which is told so), but never leaks to another.

mod effect;
pub mod options;
mod pairs;
pub mod parse;
pub mod pins;
pub mod txn;

/// Words without which a statement cannot change settings, pin a client,
/// prepare, run or drop statements: one case-insensitive pass over the text
/// lets the common query skip every closer look.
const TRIGGER_WORDS: [&str; 13] = [
    "set",
    "listen",
    "advisory",
    "temp",
    "hold",
    "discard",
    "deallocate",
    "prepare",
    "execute",
    // Ends or splits a block that holds setting changes.
    "rollback",
    "abort",
    "savepoint",
    "release",
];

/// The same words found by a multi-pattern automaton: what [`may_matter`]
/// is tested against.
#[cfg(test)]
static TRIGGERS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(TRIGGER_WORDS)
            .ok()
    });

/// One letter pair from each of [`TRIGGER_WORDS`], in the same order (a
/// test checks it), rare in ordinary queries: a text without any of them
/// cannot hold a trigger (see [`pairs`]), and where one is, only its word
/// need be compared. An automaton's pass cost ~1,000 instructions on
/// pgbench's `SELECT`, and ~700 a call where it found `SET` at once:
/// docs/benchmarks.md, issue 19.
const TRIGGER_PAIRS: [[u8; 2]; 13] = [
    *b"et", *b"is", *b"dv", *b"mp", *b"ld", *b"sc", *b"oc", *b"ep", *b"xe", *b"lb", *b"bo", *b"av",
    *b"ea",
];

static TRIGGER_PAIR_SET: pairs::Pairs = pairs::Pairs::new(&TRIGGER_PAIRS);

/// True if `sql` has one of [`TRIGGER_PAIRS`], in any case.
#[cfg(test)]
fn has_trigger_pair(sql: &[u8]) -> bool {
    TRIGGER_PAIR_SET.any_in(sql)
}

/// The trigger word whose pair starts at `sql[at]` (the pair set found
/// one there), if the word is all there.
fn word_at(sql: &[u8], at: usize) -> bool {
    let pair = [sql[at] | 0x20, sql.get(at + 1).map_or(0, |b| b | 0x20)];
    let Some(k) = TRIGGER_PAIRS.iter().position(|p| *p == pair) else {
        return false;
    };
    let word = TRIGGER_WORDS[k].as_bytes();
    let Some(offset) = word.windows(2).position(|w| w == pair) else {
        return false;
    };
    at.checked_sub(offset)
        .and_then(|start| sql.get(start..start + word.len()))
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// The last text [`may_matter`] ruled out: a driver that sends the same
/// unnamed Parse every transaction (pgbench, node-postgres, PgJDBC before
/// its prepare threshold) pays one comparison for it instead of a scan
/// (~700 instructions of a `-S -M extended` transaction's ~11,800).
#[derive(Debug, Default)]
pub struct InertMemo {
    last: Vec<u8>,
}

impl InertMemo {
    /// Longer texts are scanned each time rather than kept per client.
    const MAX: usize = 512;

    /// [`may_matter`], remembered for the last text it ruled out.
    pub fn may_matter(&mut self, sql: &[u8]) -> bool {
        if !self.last.is_empty() && self.last == sql {
            return false;
        }
        let matters = may_matter(sql);
        if !matters && sql.len() <= Self::MAX {
            self.last.clear();
            self.last.extend_from_slice(sql);
        }
        matters
    }
}

/// False when `sql` certainly does nothing pgwarden follows.
pub fn may_matter(sql: &[u8]) -> bool {
    // Every trigger word holds its pair: it is found where its pair is.
    let mut from = 0;
    while let Some(at) = TRIGGER_PAIR_SET.first_in(&sql[from..]) {
        if word_at(sql, from + at) {
            return true;
        }
        from += at + 1;
    }
    false
}

#[cfg(test)]
mod trigger_tests {
    use super::*;

    #[test]
    fn a_trigger_word_is_found_wherever_its_pair_is() {
        for word in TRIGGER_WORDS {
            for pad in 0..12 {
                let sql = format!("{}{word} x", "z".repeat(pad));
                assert!(may_matter(sql.as_bytes()), "{sql}");
                assert!(may_matter(sql.to_ascii_uppercase().as_bytes()), "{sql}");
                assert!(
                    !may_matter(&sql.as_bytes()[..pad + word.len() - 1]),
                    "{sql}"
                );
            }
        }
        // A pair before the word, and one inside it.
        assert!(may_matter(b"zzet zzzzzzzzzzzzzzzzzz deallocate"));
        assert!(!may_matter(b"UPDATE t SE T x = 1"));
        assert!(
            !may_matter(b"et"),
            "a pair at the start of a word not all there"
        );
    }

    #[test]
    fn every_trigger_word_holds_a_pair() {
        for (word, pair) in TRIGGER_WORDS.iter().zip(TRIGGER_PAIRS) {
            assert!(
                word.as_bytes().windows(2).any(|w| w == pair),
                "{word} has not its pair {pair:?}"
            );
            let upper = word.to_ascii_uppercase();
            assert!(has_trigger_pair(upper.as_bytes()) && may_matter(upper.as_bytes()));
        }
    }

    #[test]
    fn the_memo_answers_as_the_scan_does() {
        let mut memo = InertMemo::default();
        let select = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;\0\0\0";
        for _ in 0..2 {
            assert!(!memo.may_matter(select));
            assert!(memo.may_matter(b"SET search_path = a"));
            assert!(!memo.may_matter(select));
        }
        assert!(!memo.may_matter(b""));
        assert!(
            memo.may_matter(b"set x = 1"),
            "an empty memo matches nothing"
        );
    }

    #[test]
    fn pgbench_select_skips_the_automaton() {
        let q = b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;\0";
        assert!(!has_trigger_pair(q));
        assert!(!may_matter(q));
        assert!(may_matter(b"UPDATE t SET x = 1"));
        assert!(may_matter(b"begin; SeT LOCAL search_path = a"));
    }

    proptest::proptest! {
        /// The pair filter never hides a text the automaton would match.
        #[test]
        fn the_pair_filter_only_skips_what_the_automaton_would(
            prefix in "[ -~]{0,20}", word in 0usize..13, upper in proptest::bool::ANY, suffix in "[ -~]{0,20}"
        ) {
            let w = if upper { TRIGGER_WORDS[word].to_ascii_uppercase() } else { TRIGGER_WORDS[word].to_string() };
            let sql = format!("{prefix}{w}{suffix}");
            proptest::prop_assert!(may_matter(sql.as_bytes()));
        }

        #[test]
        fn any_text_the_automaton_matches_has_a_pair(text in "[ -~]{0,60}") {
            let ac = TRIGGERS.as_ref().is_none_or(|ac| ac.is_match(text.as_bytes()));
            if ac {
                proptest::prop_assert!(has_trigger_pair(text.as_bytes()));
            }
        }

        /// Starting the automaton at the first pair finds what a whole pass does.
        #[test]
        fn may_matter_is_the_automaton_on_the_whole_text(
            text in "([a-z ;]{0,6}(set|et|se|hold|ld|ep|prepare|temp|mp|execute|xe|abort|bo|release|ea|DEALLOCATE|AV|SaVePoInT)?){0,6}"
        ) {
            let ac = TRIGGERS.as_ref().is_none_or(|ac| ac.is_match(text.as_bytes()));
            proptest::prop_assert_eq!(may_matter(text.as_bytes()), ac, "{}", text);
        }
    }
}

pub use effect::effect;
pub use parse::{classify, Arg, Change};
pub use txn::{Effect, Event, Txn};

use std::collections::BTreeMap;

use crate::handoff::Setting;

/// Parameter names are case-insensitive; keep them lower-case.
type Params = BTreeMap<String, Value>;

/// A setting's value, as the statement that gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// SQL text after `SET name =`, as the client wrote it.
    Sql(String),
    /// A plain string, as `set_config` and startup parameters take it (a
    /// list such as `search_path` is not one quoted element then).
    Raw(String),
}

/// What one client has set.
/// A client's startup parameters as sent, `application_name` apart: the
/// same for most clients of a pool, so shared (see [`crate::intern`]).
pub type StartupSet = [(Box<str>, Box<str>)];

#[derive(Debug, Default, Clone)]
pub struct ClientParams {
    values: Params,
    /// Unique to these values among all clients' (a new stamp on every
    /// change), so that derived facts (routing preferences) are recomputed
    /// only when something changed, and a server already set to them is
    /// known without comparing them (see [`ServerParams::sync_to`]).
    version: u64,
    /// Changed since the startup parameters (by a `SET` the server carried
    /// out, even one back to the same value, or a hand-over's import).
    changed: bool,
}

/// Stamps for [`ClientParams`]: process-wide, so that two clients' values
/// never share one unless one is a clone of the other.
fn next_stamp() -> u64 {
    static STAMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    STAMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl ClientParams {
    /// From the tracked startup parameters (`options=-c k=v` included).
    pub fn from_startup<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut values = Params::new();
        for (k, v) in params {
            if k.eq_ignore_ascii_case("options") {
                // The handshake refuses a malformed one and expands it
                // before sessions see it; raw startup params may still hold it.
                for (name, value) in options::parse(v).unwrap_or_default() {
                    values.insert(name, Value::Raw(value));
                }
            } else {
                values.insert(k.to_ascii_lowercase(), Value::Raw(v.to_owned()));
            }
        }
        Self {
            values,
            version: next_stamp(),
            changed: false,
        }
    }

    /// Records a change the server carried out for this client.
    pub fn apply(&mut self, change: &Change) {
        self.version = next_stamp();
        self.changed = true;
        apply(&mut self.values, change);
    }

    /// True while these are the values the startup parameters give: made
    /// again from them, they would be equal.
    pub fn as_at_startup(&self) -> bool {
        !self.changed
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every setting, for an online restart (see [`crate::handoff`]).
    pub fn export(&self) -> Vec<Setting> {
        self.values
            .iter()
            .map(|(name, value)| {
                let (value, raw) = match value {
                    Value::Sql(v) => (v.clone(), false),
                    Value::Raw(v) => (v.clone(), true),
                };
                Setting {
                    name: name.clone(),
                    value,
                    raw,
                }
            })
            .collect()
    }

    /// The settings a session had on the process it was handed over from.
    pub fn import(&mut self, settings: &[Setting]) {
        self.values = settings
            .iter()
            .map(|s| {
                let value = match s.raw {
                    true => Value::Raw(s.value.clone()),
                    false => Value::Sql(s.value.clone()),
                };
                (s.name.to_ascii_lowercase(), value)
            })
            .collect();
        self.version = next_stamp();
        self.changed = true;
    }

    /// A setting's value as the client gave it, quotes removed.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            Value::Raw(v) => Some(v),
            Value::Sql(v) => {
                let v = v.trim();
                Some(
                    v.strip_prefix('\'')
                        .and_then(|v| v.strip_suffix('\''))
                        .unwrap_or(v),
                )
            }
        }
    }
}

/// What pgwarden has set on one server.
#[derive(Debug, Default)]
pub struct ServerParams {
    values: Params,
    /// Changed in ways pgwarden did not follow: wipe before reuse.
    dirty: bool,
    /// The [`ClientParams::version`] these values were last made equal to:
    /// a client with that version needs no comparison (the common case, a
    /// pool whose clients share their settings, or one client on its own
    /// server again).
    synced: Option<u64>,
}

impl ServerParams {
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
        self.synced = None;
    }

    /// Records a change a client made here (it now holds on this server).
    pub fn apply(&mut self, change: &Change) {
        if !change.is_followed() {
            self.dirty = true;
        }
        self.synced = None;
        apply(&mut self.values, change);
    }

    /// The statements that make this server's settings the client's, each
    /// to be sent as its own Query (`DISCARD ALL` cannot share one: a
    /// multi-statement Query is a transaction block). Empty when they
    /// already are. Also returns whether `DISCARD ALL` is among them (it
    /// drops prepared statements too).
    ///
    /// Two stamps found to name equal values are made one (the lower, on
    /// both sides): the clients of a pool, which mostly share their
    /// settings, soon carry one stamp, and a server set for one of them is
    /// known set for all without comparing the values again.
    pub fn sync_to(&mut self, client: &mut ClientParams) -> (Vec<String>, bool) {
        if !self.dirty && self.synced == Some(client.version) {
            return (Vec::new(), false);
        }
        if !self.dirty && self.values == client.values {
            // `synced`, when set, names these very values: so does the
            // client's stamp, and either may stand for both.
            let stamp = self
                .synced
                .map_or(client.version, |s| s.min(client.version));
            client.version = stamp;
            self.synced = Some(stamp);
            return (Vec::new(), false);
        }
        self.synced = Some(client.version);
        let mut queries = Vec::new();
        let discard = self.dirty;
        if discard {
            queries.push("DISCARD ALL".to_string());
            self.values.clear();
            self.dirty = false;
        }
        let mut sql = String::new();
        for name in self.values.keys() {
            if !client.values.contains_key(name) {
                sql.push_str(&format!("RESET {};", ident(name)));
            }
        }
        for (name, value) in &client.values {
            if self.values.get(name) != Some(value) {
                match value {
                    Value::Sql(v) => sql.push_str(&format!("SET {} = {v};", ident(name))),
                    Value::Raw(v) => sql.push_str(&format!(
                        "SELECT pg_catalog.set_config({}, {}, false);",
                        quote(name),
                        quote(v)
                    )),
                }
            }
        }
        if !sql.is_empty() {
            queries.push(sql);
        }
        if !queries.is_empty() {
            // Cloned only when they differed: the common case allocates nothing.
            self.values = client.values.clone();
        }
        (queries, discard)
    }
}

/// Applies a followed change to a set of values (others change nothing).
fn apply(values: &mut Params, change: &Change) {
    match change {
        Change::Set(name, value) => {
            values.insert(name.clone(), Value::Sql(value.clone()));
        }
        Change::SetRaw(name, value) => {
            values.insert(name.clone(), Value::Raw(value.clone()));
        }
        Change::Reset(name) => {
            values.remove(name);
        }
        Change::ResetAll => values.clear(),
        Change::None | Change::Untrackable | Change::SetBound(..) => {}
    }
}

/// One Query that checks startup settings as PostgreSQL would at login,
/// leaving the server as it was: each `SET LOCAL` is validated and applied,
/// then undone when the (implicit) transaction ends.
pub fn set_local_sql<'a>(settings: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut sql = String::new();
    for (name, value) in settings {
        sql.push_str(&format!("SET LOCAL {} = {};", ident(name), quote(value)));
    }
    sql
}

/// A parameter name as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string as an SQL literal, whatever `standard_conforming_strings`
/// is (a backslash makes it an `E''` literal).
fn quote(v: &str) -> String {
    match v.contains('\\') {
        false => format!("'{}'", v.replace('\'', "''")),
        true => format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn startup(kv: &[(&str, &str)]) -> ClientParams {
        ClientParams::from_startup(kv.iter().copied())
    }

    #[test]
    fn nothing_sent_when_nothing_differs() {
        let mut c = startup(&[("application_name", "app")]);
        let mut s = ServerParams::default();
        let (sql, discard) = s.sync_to(&mut c);
        assert_eq!(
            sql,
            ["SELECT pg_catalog.set_config('application_name', 'app', false);"]
        );
        assert!(!discard);
        assert!(s.sync_to(&mut c).0.is_empty());
    }

    #[test]
    fn other_clients_settings_are_reset_and_dirty_servers_discarded() {
        let mut a = startup(&[]);
        a.apply(&Change::Set("search_path".into(), "a".into()));
        let mut b = startup(&[]);
        let mut s = ServerParams::default();
        s.sync_to(&mut a);
        assert_eq!(s.sync_to(&mut b).0, ["RESET \"search_path\";"]);
        s.apply(&Change::Untrackable);
        let (sql, discard) = s.sync_to(&mut a);
        assert!(discard);
        assert_eq!(sql, ["DISCARD ALL", "SET \"search_path\" = a;"]);
    }

    #[test]
    fn a_server_changed_since_its_sync_is_compared_again() {
        let mut a = startup(&[("application_name", "a")]);
        let mut b = startup(&[("application_name", "a")]);
        let mut s = ServerParams::default();
        assert_eq!(s.sync_to(&mut a).0.len(), 1);
        assert!(s.sync_to(&mut a).0.is_empty(), "synced to a's version");
        assert!(s.sync_to(&mut b).0.is_empty(), "b's values are a's");
        // b's change commits on this server: a's settings are no longer its.
        let change = Change::Set("search_path".into(), "x".into());
        b.apply(&change);
        s.apply(&change);
        assert!(s.sync_to(&mut b).0.is_empty());
        assert_eq!(s.sync_to(&mut a).0, ["RESET \"search_path\";"]);
        s.mark_dirty();
        assert_eq!(s.sync_to(&mut a).0[0], "DISCARD ALL");
        // A clone carries the version and the values together.
        let mut c = a.clone();
        assert!(s.sync_to(&mut c).0.is_empty());
    }

    #[test]
    fn clients_with_equal_settings_come_to_share_one_stamp() {
        let mut a = startup(&[("application_name", "x")]);
        let mut b = startup(&[("application_name", "x")]);
        assert_ne!(a.version(), b.version());
        let (mut s1, mut s2) = (ServerParams::default(), ServerParams::default());
        assert_eq!(s1.sync_to(&mut a).0.len(), 1);
        assert_eq!(s2.sync_to(&mut b).0.len(), 1);
        // Each on the other's server: equal values, the lower stamp for all.
        assert!(s1.sync_to(&mut b).0.is_empty());
        assert!(s2.sync_to(&mut a).0.is_empty());
        assert_eq!(a.version(), b.version());
        assert_eq!(s1.synced, Some(a.version()));
        assert_eq!(s2.synced, Some(a.version()));
        // A change gives its client a stamp of its own again.
        let change = Change::Set("search_path".into(), "x".into());
        b.apply(&change);
        assert_ne!(a.version(), b.version());
        assert_eq!(s1.sync_to(&mut b).0, ["SET \"search_path\" = x;"]);
        assert_eq!(s1.sync_to(&mut a).0, ["RESET \"search_path\";"]);
        assert!(s2.sync_to(&mut a).0.is_empty());
        assert_eq!(s2.sync_to(&mut b).0, ["SET \"search_path\" = x;"]);
    }

    #[test]
    fn options_become_settings() {
        let mut c = startup(&[("options", "-c statement_timeout=5s -csearch_path=x")]);
        let mut s = ServerParams::default();
        let sql = s.sync_to(&mut c).0.concat();
        assert!(
            sql.contains("set_config('statement_timeout', '5s', false);"),
            "{sql}"
        );
        assert!(
            sql.contains("set_config('search_path', 'x', false);"),
            "{sql}"
        );
    }

    #[test]
    fn settings_survive_a_hand_over_as_they_were_given() {
        let mut c = startup(&[("DateStyle", "ISO, MDY")]);
        c.apply(&Change::Set("search_path".into(), "a, 'b c'".into()));
        let mut carried = ClientParams::default();
        carried.import(&c.export());
        assert_ne!(carried.version(), 0, "preferences are made again");
        // The new process's servers get exactly what the old ones did.
        let (mut old, mut new) = (ServerParams::default(), ServerParams::default());
        assert_eq!(old.sync_to(&mut c).0, new.sync_to(&mut carried).0);
        assert_eq!(carried.get("datestyle"), Some("ISO, MDY"));
    }
    #[test]
    fn values_are_as_at_startup_until_a_change_or_an_import() {
        let mut a = startup(&[("application_name", "x"), ("TimeZone", "UTC")]);
        let mut b = startup(&[("application_name", "x"), ("TimeZone", "UTC")]);
        let mut s = ServerParams::default();
        s.sync_to(&mut a);
        // Sharing a stamp changes no value.
        assert!(s.sync_to(&mut b).0.is_empty());
        assert!(a.as_at_startup() && b.as_at_startup());
        // A SET counts even when it sets the value the client started with.
        b.apply(&Change::Set("timezone".into(), "'UTC'".into()));
        assert!(!b.as_at_startup());
        let mut carried = startup(&[("application_name", "x")]);
        carried.import(&a.export());
        assert!(!carried.as_at_startup(), "an import is not the startup");
    }
}
