//! [`RouteState`] carrying out what it can without a server: the
//! session's `SET pgwarden.*` answered or refused, a unit that has not all
//! arrived left to wait, a tenant that is not set refused as the policy
//! says, and which lendings must record their write position. Pools are
//! made (as at login) but never asked for a server.

use std::sync::Arc;

use bytes::BytesMut;

use super::*;
use crate::cancel::CancelRegistry;
use crate::client::tenancy::tests::{setup, CONFIG};
use crate::wire::{frontend as fe, put_cstr, put_message};

fn query(sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    put_message(&mut b, fe::QUERY, |b| put_cstr(b, sql.as_bytes()));
    b
}

struct Fixture {
    loaded: Arc<Loaded>,
    state: Box<RouteState>,
    tracker: SessionTracker,
    audit: Audit,
    cancels: Arc<CancelRegistry>,
}

impl Fixture {
    fn new(tenant: Option<&str>) -> Self {
        let (loaded, members) = setup(CONFIG);
        let tenancy = Tenancy::new("app", tenant.map(str::to_owned));
        let state = RouteState::new(Arc::from(members), tenancy, true);
        let Some(state) = state else {
            panic!("a database with replicas is routed");
        };
        Self {
            loaded: Arc::new(loaded),
            state,
            tracker: SessionTracker::new(100, [], false, true),
            audit: Audit::default(),
            cancels: Arc::new(CancelRegistry::default()),
        }
    }

    /// What the session's attach would do with `buf` at its front.
    fn attach(&mut self, buf: &[u8]) -> Attached {
        let registration = self.cancels.register();
        let pending = match self
            .state
            .begin(buf, &self.tracker, &self.loaded, &self.audit)
        {
            Begun::Done(attached) => return attached,
            Begun::Waits(pending) => pending,
        };
        let attached = self
            .state
            .finish(buf, pending, &self.audit, &registration.control);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            panic!("no runtime");
        };
        runtime.block_on(attached)
    }

    /// Where the session's preferences send its next transaction.
    fn route_hint(&mut self) -> Option<Hint> {
        let state = &mut self.state;
        state.prefs.refresh(&self.tracker, &state.ctx.settings);
        state.prefs.route
    }
}

#[test]
fn routing_controls_are_answered_without_a_server() {
    let mut f = Fixture::new(Some("acme"));
    let set = query("SET pgwarden.route = primary");
    match f.attach(&set) {
        Attached::Answered(out, len) => {
            assert_eq!(len, set.len());
            assert!(out.windows(3).any(|w| w == b"SET"), "CommandComplete SET");
        }
        _ => panic!("answered by pgwarden"),
    }
    assert_eq!(f.route_hint(), Some(Hint::Primary));
    let reset = query("RESET pgwarden.route");
    assert!(matches!(f.attach(&reset), Attached::Answered(_, n) if n == reset.len()));
    assert_eq!(f.route_hint(), None);
}

#[test]
fn a_bad_routing_value_is_refused_and_skipped() {
    let mut f = Fixture::new(Some("acme"));
    let bad = query("SET pgwarden.consistency = 'sometimes'");
    match f.attach(&bad) {
        Attached::Refused(e, Some(len)) => {
            assert_eq!(e.sqlstate(), "22023");
            assert_eq!(len, bad.len(), "the session skips it and goes on");
        }
        _ => panic!("refused"),
    }
}

#[test]
fn a_unit_not_all_arrived_waits() {
    let mut f = Fixture::new(Some("acme"));
    let mut parse = BytesMut::new();
    put_message(&mut parse, fe::PARSE, |b| {
        put_cstr(b, b"");
        put_cstr(b, b"SELECT 1");
        b.extend_from_slice(&[0, 0]);
    });
    assert!(matches!(f.attach(&parse), Attached::Wait), "no Sync yet");
    let cut = query("SELECT 1");
    assert!(matches!(f.attach(&cut[..6]), Attached::Wait));
}

#[test]
fn a_strict_database_refuses_a_session_without_its_tenant() {
    let mut f = Fixture::new(None);
    let q = query("SELECT 1");
    match f.attach(&q) {
        Attached::Refused(e, Some(len)) => {
            assert_eq!(e.sqlstate(), "RZ003");
            assert_eq!(len, q.len());
        }
        _ => panic!("refused"),
    }
    let unknown = query("SET pgwarden.tenant = 'nobody'");
    match f.attach(&unknown) {
        Attached::Refused(e, _) => assert_eq!(e.sqlstate(), "RZ002"),
        Attached::Answered(..) => match f.attach(&q) {
            Attached::Refused(e, _) => assert_eq!(e.sqlstate(), "RZ002"),
            _ => panic!("an unknown tenant is refused at its first query"),
        },
        _ => panic!("answered or refused"),
    }
}

#[test]
fn a_pipelined_unit_on_the_primary_records_its_write_position() {
    let mut f = Fixture::new(Some("acme"));
    f.state.requested(1);
    assert!(!f.state.fetch_lsn, "one classified unit: its class decides");
    f.state.requested(1);
    assert!(f.state.fetch_lsn, "a second, unclassified unit may write");
    let mut g = Fixture::new(Some("acme"));
    g.state.on_replica = true;
    g.state.requested(3);
    assert!(!g.state.fetch_lsn, "a replica never wrote");
}
