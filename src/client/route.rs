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
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::prefs::Prefs;
use super::tenancy::{Plan, Tenancy};
use crate::audit::Audit;
use crate::cancel::SessionControl;
use crate::config::{CommitLsn, Consistency, Loaded};
use crate::error::ProxyError;
use crate::handoff::HandedRoute;
use crate::pool::{Clusters, NodePools, Pool, PoolError, ServerGuard};
use crate::prepared::SessionTracker;
use crate::routing::control::{self, Control};
use crate::routing::nodeset::NodeSet;
use crate::routing::route::{is_read, route, write_target, Ask, Refusal, Target, View};
use crate::routing::select::ReadNeeds;
use crate::routing::unit::{first_unit, Scan};
use crate::routing::{classify, Classified, Hint, Intent};
use crate::topology::lag::{insert_lsn_as_replayed, parse_lsn, PRIMARY_LSN_SQL};
use crate::topology::{NodeId, Writer};
use crate::wire::backend as be;

/// A unit longer than this is routed before it has all arrived (as a write).
const MAX_UNIT_WAIT: usize = 1 << 20;
/// Pause between read-your-writes checks of a replica.
const CATCH_UP_POLL: Duration = Duration::from_millis(1);

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

/// What [`RouteState::attach`] did.
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

    /// Borrows a server for the unit at the start of `buf`.
    pub async fn attach(
        &mut self,
        buf: &[u8],
        tracker: &SessionTracker,
        loaded: &Loaded,
        audit: &Audit,
        cancel: &SessionControl,
    ) -> Attached {
        if let Some(answered) = self.control(buf, loaded) {
            return answered;
        }
        match self.tenancy.plan(loaded, &self.members, audit) {
            Ok(plan) => {
                self.tenancy.mark_used();
                self.follow(plan);
            }
            Err(e) => return refuse(buf, e, None),
        }
        self.prefs.refresh(tracker, &self.ctx.settings);
        let ctx = self.ctx.clone();
        let (class, len) = match (self.split, self.prefs.route) {
            (false, _) | (_, Some(Hint::Primary)) => (Classified::WRITE, None),
            _ => {
                let functions = &ctx.settings.read_only_functions.0;
                let named = |name: &[u8]| {
                    tracker.statement(name).map(|s| match s.class.intent {
                        Intent::Uncertain if !functions.is_empty() => {
                            classify(s.query(), functions)
                        }
                        _ => s.class,
                    })
                };
                match first_unit(buf, MAX_UNIT_WAIT, functions, named) {
                    Scan::NeedMore => return Attached::Wait,
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
                now: Instant::now(),
            },
            position_known: true,
        };
        let read = is_read(&ask);
        self.fetch_lsn = !read && self.split;
        self.requests = 0;
        let mut routed = self.borrow(&mut ask, cancel).await;
        if matches!(routed, Err(Miss::Region)) && self.plan.spill {
            // `preferred`: none of the tenant's nodes can serve; any may.
            ask.needs.allowed = NodeSet::ALL;
            routed = self.borrow(&mut ask, cancel).await;
        }
        match routed {
            Ok((guard, node, on_replica)) => {
                self.tenancy.routed(self.plan.member, node, &ctx.topology);
                let stats = &ctx.topology.nodes[node].stats;
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

    /// Read-your-writes: waits up to `ryw_wait_ms` for this replica to
    /// replay the client's last write. False if it did not in time.
    async fn catch_up(&mut self, id: NodeId, lsn: u64, guard: &mut ServerGuard) -> bool {
        let topo = &self.ctx.topology;
        topo.nodes[id]
            .stats
            .ryw_waits
            .fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_millis(self.ctx.settings.ryw_wait_ms);
        loop {
            let replayed = guard
                .conn()
                .query_value("SELECT pg_last_wal_replay_lsn()")
                .await;
            let Ok(Some(replayed)) = replayed.map(|v| v.as_deref().and_then(parse_lsn)) else {
                guard.mark_used();
                return false;
            };
            topo.nodes[id].saw_lsn(replayed);
            if replayed >= lsn {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// Borrows a server where [`routing::route`](crate::routing::route)
    /// sends the unit: asks again when the chosen node turns out
    /// unreachable (a replica: at most once per node, then the writer),
    /// waits up to `failover_wait_ms` for a writer, and for a replica to
    /// catch up with the session's writes.
    async fn borrow(
        &mut self,
        ask: &mut Ask,
        cancel: &SessionControl,
    ) -> Result<(ServerGuard, NodeId, bool), Miss> {
        let ctx = self.ctx.clone();
        let topo = &ctx.topology;
        // Only a read that may go to a replica rotates the shared cursor
        // or draws a random number: writes stay free of both.
        let spread = is_read(ask) && {
            ask.position_known = self.write_position_known();
            ask.needs.min_lsn = self.min_lsn();
            ask.position_known
        };
        let deadline = Instant::now() + Duration::from_millis(ctx.settings.failover_wait_ms);
        let mut replica_tries = topo.nodes.len();
        loop {
            let target = {
                let snap = topo.snapshot();
                let holding = topo.holding_writes.load(Ordering::Acquire);
                if replica_tries == 0 {
                    write_target(&snap, ask.needs.allowed, holding)
                } else {
                    let view = View {
                        snap: &snap,
                        live: &**topo,
                        settings: &ctx.settings,
                        holding_writes: holding,
                        cursor: match spread {
                            true => topo.cursor.fetch_add(1, Ordering::Relaxed),
                            false => 0,
                        },
                        random: if spread { rand::random() } else { 0 },
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
            };
            let (id, catch_up) = match target {
                Target::Writer(id) => (id, None),
                Target::Replica(id) => (id, Some(None)),
                Target::CatchUp { node, lsn } => (node, Some(Some(lsn))),
                Target::Refuse(Refusal::OutsideRegions) => return Err(Miss::Region),
                Target::Refuse(Refusal::NoReplica) => {
                    return Err(ProxyError::NoReplica(topo.db.clone()).into())
                }
                Target::Refuse(Refusal::SplitBrain(a, b)) => {
                    static SPLIT: crate::logline::Throttle = crate::logline::Throttle::new(5);
                    if let Some(suppressed) = SPLIT.admit() {
                        tracing::error!(db = %topo.db, a = %topo.nodes[a].addr, b = %topo.nodes[b].addr,
                            suppressed, "writes refused: both nodes claim to be the primary");
                    }
                    return Err(ProxyError::SplitBrain {
                        db: topo.db.clone(),
                    }
                    .into());
                }
                // Boxed, as every rare path here: the futures of a failover
                // wait or a catch-up would otherwise enlarge the future of
                // every routed transaction, copied whole into its box.
                Target::Wait => {
                    Box::pin(self.wait_for_writer(deadline, cancel)).await?;
                    continue;
                }
            };
            let mut guard = match checkout(&ctx.pools[id], cancel).await? {
                Ok(g) => g,
                Err(e) if crate::error::node_unavailable(&e) => {
                    topo.report_failure(id);
                    match catch_up {
                        Some(_) => replica_tries -= 1,
                        None => Box::pin(self.wait_for_writer(deadline, cancel)).await?,
                    }
                    continue;
                }
                Err(e) => return Err(ProxyError::from_pool(e, &ctx.pools[id].key.user).into()),
            };
            match catch_up {
                None => return Ok((guard, id, false)),
                Some(Some(lsn)) if !Box::pin(self.catch_up(id, lsn, &mut guard)).await => {
                    topo.nodes[id]
                        .stats
                        .fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    replica_tries = 0;
                }
                Some(_) => return Ok((guard, id, true)),
            }
        }
    }

    /// Waits for a new topology snapshot (a writer may appear), or fails
    /// with 08006 once `deadline` has passed.
    async fn wait_for_writer(
        &self,
        deadline: Instant,
        cancel: &SessionControl,
    ) -> Result<(), Miss> {
        let topo = &self.ctx.topology;
        let now = Instant::now();
        if now >= deadline {
            return Err(ProxyError::NoPrimary {
                db: topo.db.clone(),
                waited_ms: self.ctx.settings.failover_wait_ms,
            }
            .into());
        }
        // A new snapshot may name a writer; the timeout covers a snapshot
        // published between the check and this wait.
        let step = (deadline - now).min(Duration::from_millis(100));
        let changed = tokio::time::timeout(step, topo.changed());
        match cancel.unless_cancelled(changed).await {
            Some(_) => Ok(()),
            None => Err(ProxyError::Cancelled.into()),
        }
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

/// A server from `pool`; a cancel request while waiting for one ends the
/// wait with [`ProxyError::Cancelled`].
async fn checkout(
    pool: &Arc<Pool>,
    cancel: &SessionControl,
) -> Result<Result<ServerGuard, PoolError>, Miss> {
    if let Some(g) = pool.try_checkout() {
        return Ok(Ok(g));
    }
    match cancel.unless_cancelled(Box::pin(pool.checkout())).await {
        Some(r) => Ok(r),
        None => Err(ProxyError::Cancelled.into()),
    }
}

#[cfg(test)]
mod tests;
