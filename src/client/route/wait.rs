//! The half of routing that waits: in line for a server, for a writer
//! during a failover, for a replica to replay the session's writes.
//!
//! [`RouteState::begin`] handles the common unit, which gets a server at
//! once, without a future; only a unit that must wait comes here, through
//! the boxed [`RouteState::finish`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Attached, Miss, Pending, RouteState};
use crate::audit::Audit;
use crate::cancel::SessionControl;
use crate::error::ProxyError;
use crate::pool::{Pool, PoolError, ServerGuard};
use crate::routing::nodeset::NodeSet;
use crate::routing::route::{Ask, Refusal, Target};
use crate::topology::lag::parse_lsn;
use crate::topology::NodeId;

/// Pause between read-your-writes checks of a replica.
const CATCH_UP_POLL: Duration = Duration::from_millis(1);

impl RouteState {
    /// Routes a unit [`begin`](Self::begin) could not lend a server to at
    /// once: waits in line, for a writer, or for a replica to catch up.
    pub async fn finish(
        &mut self,
        buf: &[u8],
        pending: Pending,
        audit: &Audit,
        cancel: &SessionControl,
    ) -> Attached {
        let Pending {
            mut ask,
            read,
            len,
            first,
        } = pending;
        let mut routed = self.borrow(&mut ask, cancel, first).await;
        if matches!(routed, Err(Miss::Region)) && self.plan.spill {
            // `preferred`: none of the tenant's nodes can serve; any may.
            ask.needs.allowed = NodeSet::ALL;
            routed = self.borrow(&mut ask, cancel, None).await;
        }
        self.lent(routed, read, buf, len, audit)
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
    /// catch up with the session's writes. `first` is the target
    /// [`begin`](Self::begin) found (and whether the read spreads), not
    /// asked again: its choice is counted once.
    async fn borrow(
        &mut self,
        ask: &mut Ask,
        cancel: &SessionControl,
        mut first: Option<(bool, Target)>,
    ) -> Result<(ServerGuard, NodeId, bool), Miss> {
        let ctx = self.ctx.clone();
        let topo = &ctx.topology;
        let spread = match first {
            Some((spread, _)) => spread,
            None => self.spread(ask),
        };
        let deadline = Instant::now() + Duration::from_millis(ctx.settings.failover_wait_ms);
        let mut replica_tries = topo.nodes.len();
        loop {
            let target = match first.take() {
                Some((_, target)) => target,
                None => self.target(ask, spread, replica_tries > 0),
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
                // wait or a catch-up would otherwise enlarge this one, which
                // every routed unit that waits in line carries.
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
