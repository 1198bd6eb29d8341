//! Carrying out routing for one session: classify the next unit of work,
//! pick its node, and borrow a server there; wait out a failover for
//! writes, wait for a replica to catch up for read-your-writes reads.
//!
//! Owns: the session's routing state ([`RouteState`]). The decisions
//! themselves are pure and live in [`crate::routing`]; the tenant's
//! allowed nodes come from [`super::tenancy`], and no node outside them is
//! ever borrowed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::prefs::Prefs;
use super::tenancy::{Plan, Tenancy};
use crate::audit::Audit;
use crate::config::{CommitLsn, Consistency, Loaded, ReplicaSelection};
use crate::error::ProxyError;
use crate::handoff::HandedRoute;
use crate::pool::{Clusters, NodePools, ServerGuard};
use crate::prepared::SessionTracker;
use crate::routing::control::{self, Control};
use crate::routing::nodeset::NodeSet;
use crate::routing::route::{is_read, route, write_target, Ask, Target, View};
use crate::routing::select::ReadNeeds;
use crate::routing::unit::{first_unit, Scan};
use crate::routing::{classify, Classified, Hint, Intent};
use crate::topology::lag::{insert_lsn_as_replayed, parse_lsn, PRIMARY_LSN_SQL};
use crate::topology::{NodeId, Writer};
use crate::wire::backend as be;

/// A unit longer than this is routed before it has all arrived (as a write).
const MAX_UNIT_WAIT: usize = 1 << 20;

/// Why no server was borrowed.
enum Miss {
    /// No node the transaction may use can serve it.
    Region,
    Error(ProxyError),
}

impl From<ProxyError> for Miss {
    fn from(e: ProxyError) -> Self {
        Miss::Error(e)
    }
}

/// A session's routing state; boxed, only routed sessions have one.
pub struct RouteState {
    /// The cluster the current (or last) transaction used.
    pub ctx: Arc<NodePools>,
    members: Clusters,
    /// The session's tenant and the nodes it may use.
    tenancy: Box<Tenancy>,
    /// Where the current transaction may go.
    plan: Plan,
    /// Read/write splitting applies (transaction or statement mode).
    split: bool,
    prefs: Prefs,
    /// The node the attached server is on, counted in its `outstanding`.
    node: Option<NodeId>,
    /// The attached server is a replica: only whole read units may go to it.
    pub on_replica: bool,
    /// The client's last write is at this WAL position (read-your-writes).
    last_write_lsn: u64,
    /// The client's last write ended at this time, its position not known
    /// yet (`ryw_commit_lsn = "monitor"`).
    wrote_since: Option<Instant>,
    /// The lending may have written: record where its writes ended
    /// before giving the server back.
    pub fetch_lsn: bool,
    /// Requests (Query, Sync, FunctionCall) sent on the attached server.
    requests: u32,
}

/// What [`RouteState::begin`] or [`RouteState::finish`] did for a unit.
pub enum Attached {
    Server(ServerGuard),
    /// The unit has not all arrived; read more first.
    Wait,
    /// pgwarden answered the unit itself (`len` bytes) with these bytes.
    Answered(BytesMut, usize),
    /// The unit cannot run; answer it with this error. `len` is the unit's
    /// length when it can be skipped (else the session ends).
    Refused(ProxyError, Option<usize>),
}

/// What [`RouteState::begin`] came to.
pub enum Begun {
    /// Decided without waiting (a server lent at once, most often).
    Done(Attached),
    /// A wait is needed: [`RouteState::finish`] carries it out.
    Waits(Pending),
}

/// A routed unit that waits: what [`RouteState::begin`] decided so far.
pub struct Pending {
    ask: Ask,
    read: bool,
    len: Option<usize>,
    /// The target already chosen, and whether the read spreads.
    first: Option<(bool, Target)>,
}

impl RouteState {
    pub fn new(members: Clusters, tenancy: Box<Tenancy>, pooled: bool) -> Option<Box<Self>> {
        let ctx = members.first()?.clone();
        let prefs = Prefs::new(&ctx.settings);
        Some(Box::new(Self {
            split: pooled && ctx.settings.read_write_split,
            ctx,
            members,
            tenancy,
            plan: Plan {
                member: 0,
                mask: NodeSet::ALL,
                local: NodeSet::ALL,
                spill: false,
            },
            prefs,
            node: None,
            on_replica: false,
            last_write_lsn: 0,
            wrote_since: None,
            fetch_lsn: false,
            requests: 0,
        }))
    }

    /// Routes the unit at the start of `buf` as far as it goes without
    /// waiting: most units get their server here, and the session then
    /// skips the boxed future that [`finish`](Self::finish) needs.
    pub fn begin(
        &mut self,
        buf: &[u8],
        tracker: &SessionTracker,
        loaded: &Loaded,
        audit: &Audit,
    ) -> Begun {
        if let Some(answered) = self.control(buf, loaded) {
            return Begun::Done(answered);
        }
        match self.tenancy.plan(loaded, &self.members, audit) {
            Ok(plan) => {
                self.tenancy.mark_used();
                self.follow(plan);
            }
            Err(e) => return Begun::Done(refuse(buf, e, None)),
        }
        self.prefs.refresh(tracker, &self.ctx.settings);
        let (class, len) = match (self.split, self.prefs.route) {
            (false, _) | (_, Some(Hint::Primary)) => (Classified::WRITE, None),
            _ => {
                let functions = &self.ctx.settings.read_only_functions.0;
                let named = |name: &[u8]| {
                    tracker.statement(name).map(|s| match s.class.intent {
                        Intent::Uncertain if !functions.is_empty() => {
                            classify(s.query(), functions)
                        }
                        _ => s.class,
                    })
                };
                match first_unit(buf, MAX_UNIT_WAIT, functions, named) {
                    Scan::NeedMore => return Begun::Done(Attached::Wait),
                    Scan::Unit { len, class } => (class, len),
                }
            }
        };
        let mut ask = Ask {
            class,
            route: self.prefs.route,
            read_only: self.prefs.read_only,
            split: self.split,
            needs: ReadNeeds {
                consistency: self.prefs.consistency,
                min_lsn: self.min_lsn(),
                max_staleness_ms: self.prefs.max_staleness_ms,
                allowed: self.plan.mask,
                local: self.plan.local,
                now: None,
            },
            position_known: true,
        };
        let read = is_read(&ask);
        self.fetch_lsn = !read && self.split;
        self.requests = 0;
        let spread = self.spread(&mut ask);
        let first = self.target(&ask, spread, true);
        let at_once = match first {
            Target::Writer(id) => Some((id, false)),
            Target::Replica(id) => Some((id, true)),
            _ => None,
        };
        if let Some((id, on_replica)) = at_once {
            if let Some(guard) = self.ctx.pools[id].try_checkout() {
                return Begun::Done(self.lent(Ok((guard, id, on_replica)), read, buf, len, audit));
            }
        }
        Begun::Waits(Pending {
            ask,
            read,
            len,
            first: Some((spread, first)),
        })
    }

    /// The outcome of borrowing for a unit of `len` bytes (a `read`).
    fn lent(
        &mut self,
        routed: Result<(ServerGuard, NodeId, bool), Miss>,
        read: bool,
        buf: &[u8],
        len: Option<usize>,
        audit: &Audit,
    ) -> Attached {
        match routed {
            Ok((guard, node, on_replica)) => {
                let topology = &self.ctx.topology;
                self.tenancy.routed(self.plan.member, node, topology);
                let stats = &topology.nodes[node].stats;
                stats.outstanding.fetch_add(1, Ordering::Relaxed);
                match read {
                    true => stats.reads.fetch_add(1, Ordering::Relaxed),
                    false => stats.writes.fetch_add(1, Ordering::Relaxed),
                };
                self.node = Some(node);
                self.on_replica = on_replica;
                if on_replica {
                    self.fetch_lsn = false;
                }
                Attached::Server(guard)
            }
            Err(miss) => {
                self.fetch_lsn = false;
                let e = match miss {
                    Miss::Region => self.tenancy.no_node(audit),
                    Miss::Error(e) => e,
                };
                refuse(buf, e, len)
            }
        }
    }

    /// The session's routing state, for an online restart.
    pub fn export(&self) -> HandedRoute {
        let mut handed = HandedRoute::default();
        self.prefs.export(&mut handed);
        (handed.tenant, handed.tenant_used) = self.tenancy.export();
        handed.last_write_lsn = self.last_write_lsn;
        handed.write_unplaced = self.wrote_since.is_some();
        handed
    }

    /// The routing state a session had on the process it was handed over
    /// from. A write whose position was not asked yet (`ryw_commit_lsn =
    /// "monitor"`) counts as just made: its reads go to the primary until
    /// this process's monitor has seen the primary.
    pub fn import(&mut self, handed: &HandedRoute) {
        self.prefs.import(handed);
        self.tenancy
            .import(handed.tenant.clone(), handed.tenant_used);
        self.last_write_lsn = handed.last_write_lsn;
        if handed.write_unplaced {
            self.wrote_since = Some(Instant::now());
        }
    }

    /// Takes the transaction's plan, moving to its cluster if it changed.
    fn follow(&mut self, plan: Plan) {
        if plan.member != self.plan.member {
            if let Some(ctx) = self.members.get(plan.member) {
                self.ctx = ctx.clone();
                // Write positions of another cluster mean nothing here.
                self.last_write_lsn = 0;
                self.wrote_since = None;
            }
        }
        self.plan = plan;
    }

    /// Whether the attached server's node may still serve this session
    /// under the config in force (a pinned session keeps its server).
    pub fn still_allowed(&mut self, loaded: &Loaded, audit: &Audit) -> bool {
        let Some(node) = self.node else {
            return true;
        };
        let member = self.plan.member;
        match self.tenancy.plan(loaded, &self.members, audit) {
            Ok(_) => self.tenancy.allows(member, node),
            Err(_) => false,
        }
    }

    /// The error for a pinned session whose node its tenant lost.
    pub fn lost_region(&self, audit: &Audit) -> ProxyError {
        self.tenancy.no_node(audit)
    }

    /// The server is given back (or lost): it no longer counts on its node.
    pub fn detached(&mut self) {
        if let Some(node) = self.node.take() {
            self.ctx.topology.nodes[node]
                .stats
                .outstanding
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.on_replica = false;
    }

    /// The client sent `n` requests on the attached server. A unit pipelined
    /// behind the first rides the same server without being classified:
    /// on the primary it may write, so its position is recorded too.
    pub fn requested(&mut self, n: u32) {
        self.requests = self.requests.saturating_add(n);
        if self.requests > 1 && self.split && !self.on_replica {
            self.fetch_lsn = true;
        }
    }

    /// The WAL position the session's reads must see: its own last write,
    /// or one carried from another instance (`pgwarden.min_lsn`).
    fn min_lsn(&self) -> u64 {
        self.last_write_lsn.max(self.prefs.min_lsn)
    }

    /// Whether the write ending now is to be answered with its position
    /// (`pgwarden.commit_lsn`), so that the client can carry the guarantee
    /// to another instance: asked for read-your-writes sessions when the
    /// position is asked on the server (`ryw_commit_lsn = "query"`).
    pub fn reports_commit_lsn(&self) -> bool {
        self.fetch_lsn
            && self.ctx.settings.ryw_commit_lsn == CommitLsn::Query
            && self.prefs.consistency == Consistency::ReadYourWrites
    }

    /// The session's write position, as `pgwarden.commit_lsn` gives it.
    pub fn commit_lsn(&self) -> u64 {
        self.last_write_lsn
    }

    /// After a write: the primary's WAL position now covers the client's
    /// commit, so its reads wait for replicas that have replayed that far.
    ///
    /// Asked on the same server (one round trip) only when a
    /// read-your-writes read may follow on a replica; otherwise the
    /// monitor's next check of the primary gives the position for free, and
    /// until it has, reads that need it go to the primary.
    ///
    /// False when the server did not answer the question: its state is not
    /// known, so it is not to be lent again.
    pub async fn record_write(&mut self, guard: &mut ServerGuard) -> bool {
        self.fetch_lsn = false;
        // `route = primary` reads nothing from replicas, but its position
        // may be carried to another instance: asked all the same.
        let ask = self.ctx.settings.ryw_commit_lsn == CommitLsn::Query
            && self.prefs.consistency == Consistency::ReadYourWrites;
        if !ask {
            self.wrote_since = Some(Instant::now());
            return true;
        }
        let lsn = match guard.conn().query_value(PRIMARY_LSN_SQL).await {
            Ok(Some(text)) => parse_lsn(&text),
            _ => None,
        };
        match lsn {
            Some(lsn) => {
                let lsn = insert_lsn_as_replayed(lsn);
                self.last_write_lsn = self.last_write_lsn.max(lsn);
            }
            None => {
                // Unknown: reads go to the primary until the monitor has
                // seen it after this moment.
                self.wrote_since = Some(Instant::now());
                return false;
            }
        }
        true
    }

    /// Answers a lone `SET`/`RESET pgwarden.*` Query at the start of `buf`
    /// (an invalid value is refused, and the session goes on).
    fn control(&mut self, buf: &[u8], loaded: &Loaded) -> Option<Attached> {
        let (command, len) = control::leading(buf, MAX_UNIT_WAIT)?;
        let applied = match command.control {
            Control::Tenant => self.tenancy.set(loaded, command.value.clone()),
            _ => self.prefs.set(&command),
        };
        if let Err(e) = applied {
            return Some(Attached::Refused(e, Some(len)));
        }
        let mut out = BytesMut::new();
        let tag = if command.value.is_some() {
            "SET"
        } else {
            "RESET"
        };
        be::command_complete(&mut out, tag);
        be::ready_for_query(&mut out, be::TX_IDLE);
        Some(Attached::Answered(out, len))
    }

    /// With `ryw_commit_lsn = "monitor"`: whether the client's last write
    /// has a known position, taken from the first check of the primary sent
    /// after it. False sends the read to the primary.
    fn write_position_known(&mut self) -> bool {
        let Some(since) = self.wrote_since else {
            return true;
        };
        if self.prefs.consistency != Consistency::ReadYourWrites {
            return true;
        }
        let topo = &self.ctx.topology;
        let snap = topo.snapshot_full();
        let Writer::Node(w) = snap.writer else {
            return false;
        };
        let view = &snap.nodes[w];
        if view.asked.is_some_and(|asked| asked > since) {
            self.last_write_lsn = self.last_write_lsn.max(view.lsn);
            self.wrote_since = None;
            return true;
        }
        topo.nodes[w]
            .stats
            .ryw_primary_reads
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Whether the unit is a read that may go to a replica: only those
    /// rotate the shared cursor or draw a random number, writes stay free
    /// of both. Fills in the write position the read must see.
    fn spread(&mut self, ask: &mut Ask) -> bool {
        is_read(ask) && {
            ask.position_known = self.write_position_known();
            ask.needs.min_lsn = self.min_lsn();
            ask.position_known
        }
    }

    /// Where the unit goes now; with `replicas` false (each has failed
    /// once), the writer.
    fn target(&self, ask: &Ask, spread: bool, replicas: bool) -> Target {
        let topo = &self.ctx.topology;
        let snap = topo.snapshot();
        let holding = topo.holding_writes.load(Ordering::Acquire);
        if !replicas {
            return write_target(&snap, ask.needs.allowed, holding);
        }
        let view = View {
            snap: &snap,
            live: &**topo,
            settings: &self.ctx.settings,
            holding_writes: holding,
            cursor: match spread {
                true => topo.cursor.fetch_add(1, Ordering::Relaxed),
                false => 0,
            },
            // Only two strategies draw: the others spare the generator.
            random: match self.ctx.settings.replica_selection {
                ReplicaSelection::P2c | ReplicaSelection::WeightedRandom if spread => {
                    rand::random()
                }
                _ => 0,
            },
        };
        let decision = route(ask, &view);
        if decision.fell_back {
            if let Writer::Node(w) = snap.writer {
                topo.nodes[w]
                    .stats
                    .fallbacks
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        decision.target
    }
}

/// Refuses the unit at the start of `buf` with `e`, skipping it when its
/// length is known (else the session ends); waits for the rest of a unit
/// that has not all arrived.
fn refuse(buf: &[u8], e: ProxyError, len: Option<usize>) -> Attached {
    if len.is_some() {
        return Attached::Refused(e, len);
    }
    match first_unit(buf, MAX_UNIT_WAIT, &[], |_| None) {
        Scan::NeedMore => Attached::Wait,
        Scan::Unit { len, .. } => Attached::Refused(e, len),
    }
}

#[cfg(test)]
mod tests;
mod wait;
