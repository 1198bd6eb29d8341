//! The one routing decision: where the unit of work at hand runs, from
//! what it is, what the session asked for, where its tenant may go and
//! what the topology looked like a moment ago.
//!
//! Owns: [`route`], a function of its inputs. The live per-node numbers it
//! reads (connections in flight, a position a session saw) come through the
//! small [`Live`] trait and the rotating cursor is passed in, so that tests
//! drive it with tables and random snapshots. Must not: wait or borrow a
//! server; `client/route.rs` carries the [`Target`] out (and asks again
//! when a node it chose turns out unreachable).

use std::sync::atomic::Ordering;

use super::nodeset::NodeSet;
use super::select::{choose_read, choose_write, ReadChoice, ReadNeeds, WriteChoice};
use super::{Classified, Hint, Intent};
use crate::config::RoutingSettings;
use crate::topology::{NodeId, NodeView, Snapshot, Topology, Writer};

/// The per-node numbers that change between snapshots.
pub trait Live {
    /// `DRAIN`ed from the console: no new reads.
    fn drained(&self, id: NodeId) -> bool;
    /// The furthest WAL position the node is known to have replayed: the
    /// snapshot's, or a later one a session saw.
    fn lsn(&self, id: NodeId, view: &NodeView) -> u64;
    /// Transactions running on the node through this proxy.
    fn outstanding(&self, id: NodeId) -> u32;
    /// The configured `weight`.
    fn weight(&self, id: NodeId) -> u32;
}

impl Live for Topology {
    fn drained(&self, id: NodeId) -> bool {
        self.nodes[id].drained.load(Ordering::Relaxed)
    }

    fn lsn(&self, id: NodeId, view: &NodeView) -> u64 {
        self.nodes[id].lsn(view)
    }

    fn outstanding(&self, id: NodeId) -> u32 {
        self.nodes[id].stats.outstanding.load(Ordering::Relaxed)
    }

    fn weight(&self, id: NodeId) -> u32 {
        self.nodes[id].weight
    }
}

/// What is to be routed, and for whom.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// The unit's classification (`Classified::WRITE` when not split).
    pub class: Classified,
    /// The session's `pgwarden.route`.
    pub route: Option<Hint>,
    /// `default_transaction_read_only` is on.
    pub read_only: bool,
    /// Read/write splitting applies (transaction or statement mode).
    pub split: bool,
    /// What a read needs of its node, and the nodes the tenant may use.
    pub needs: ReadNeeds,
    /// The session's last write has a known WAL position (with
    /// `ryw_commit_lsn = "monitor"` it may not yet: reads then go to the
    /// writer).
    pub position_known: bool,
}

/// The topology as the decision sees it.
pub struct View<'a, L: Live> {
    pub snap: &'a Snapshot,
    pub live: &'a L,
    pub settings: &'a RoutingSettings,
    /// A switchover is under way: writes wait.
    pub holding_writes: bool,
    /// Rotates the choice among equal replicas.
    pub cursor: usize,
    pub random: u32,
}

/// Where the unit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The writer (for a write, or a read the primary serves).
    Writer(NodeId),
    /// A replica that meets the read's needs.
    Replica(NodeId),
    /// Read-your-writes: this replica, once it has replayed `lsn`.
    CatchUp {
        node: NodeId,
        lsn: u64,
    },
    /// No writer the session may use yet, but one may come (failover,
    /// switchover): wait, up to `failover_wait_ms`.
    Wait,
    Refuse(Refusal),
}

/// Why a unit cannot run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Two nodes claim to be the primary.
    SplitBrain(NodeId, NodeId),
    /// No node the tenant may use can serve it.
    OutsideRegions,
    /// No replica qualifies and the primary may not serve reads.
    NoReplica,
}

/// The decision, with what the executor reports of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The unit only reads (counted as a read on its node).
    pub read: bool,
    pub target: Target,
    /// A read that no replica could take, sent to the writer instead.
    pub fell_back: bool,
}

/// Whether the unit may run on a replica: it reads, or is uncertain and
/// the session vouches for it (a replica hint or route, read-only mode).
pub fn is_read(ask: &Ask) -> bool {
    if !ask.split || ask.route == Some(Hint::Primary) {
        return false;
    }
    let trusted =
        ask.class.hint == Some(Hint::Replica) || ask.route == Some(Hint::Replica) || ask.read_only;
    match (ask.class.hint, ask.class.intent) {
        (Some(Hint::Primary), _) | (_, Intent::Write) => false,
        (_, Intent::Read) => true,
        (_, Intent::Uncertain) => trusted,
    }
}

/// Where the unit runs.
pub fn route<L: Live>(ask: &Ask, view: &View<'_, L>) -> Decision {
    let read = is_read(ask);
    let writer = |fell_back| Decision {
        read,
        target: write_target(view.snap, ask.needs.allowed, view.holding_writes),
        fell_back,
    };
    if !read || !ask.position_known {
        return writer(false);
    }
    let choice = choose_read(
        view.snap,
        view.live,
        view.settings,
        ask.needs,
        view.cursor,
        view.random,
    );
    let target = match choice {
        ReadChoice::Node(id) if view.snap.writer == Writer::Node(id) => Target::Writer(id),
        ReadChoice::Node(id) => Target::Replica(id),
        ReadChoice::CatchUp(node) => Target::CatchUp {
            node,
            lsn: ask.needs.min_lsn,
        },
        ReadChoice::Fallback => return writer(true),
        ReadChoice::Nowhere => Target::Refuse(Refusal::NoReplica),
    };
    Decision {
        read,
        target,
        fell_back: false,
    }
}

/// Where a write (or a read the primary serves) goes among `allowed`.
pub fn write_target(snap: &Snapshot, allowed: NodeSet, holding_writes: bool) -> Target {
    if holding_writes {
        return Target::Wait;
    }
    match choose_write(snap, allowed) {
        WriteChoice::Node(w) => Target::Writer(w),
        WriteChoice::Wait => Target::Wait,
        WriteChoice::OutOfBounds => Target::Refuse(Refusal::OutsideRegions),
        WriteChoice::SplitBrain(a, b) => Target::Refuse(Refusal::SplitBrain(a, b)),
    }
}

#[cfg(test)]
mod tests;
