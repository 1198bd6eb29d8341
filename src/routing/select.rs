//! Which node runs a read: among replicas in rotation that meet the
//! session's consistency, by the configured strategy; else the primary or
//! an error, as `replica_fallback` and `primary_reads` say.

use std::time::{Duration, Instant};

use super::nodeset::NodeSet;
use super::route::Live;
use crate::config::{
    Consistency, PrimaryReads, ReplicaFallback, ReplicaSelection, RoutingSettings,
};
use crate::topology::{NodeId, Snapshot, Writer};

/// What a read needs from its node.
#[derive(Debug, Clone, Copy)]
pub struct ReadNeeds {
    pub consistency: Consistency,
    /// Read-your-writes: the replica must have replayed this far (0: no write yet).
    pub min_lsn: u64,
    /// Bounded staleness limit: a replica qualifies only if it provably
    /// held, this long ago, every commit the primary had.
    pub max_staleness_ms: u64,
    /// The moment the read is routed (staleness is measured to it); `None`:
    /// read the clock when the staleness bound needs it, so that other
    /// reads read none.
    pub now: Option<Instant>,
    /// The nodes the session's tenant may use ([`super::residency::mask`]);
    /// no other is ever chosen.
    pub allowed: NodeSet,
    /// Nodes in the proxy's own region: preferred among those that qualify.
    pub local: NodeSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadChoice {
    Node(NodeId),
    /// Read-your-writes: no replica is known to have the client's write
    /// yet; this one is the best bet, worth asking and waiting for.
    CatchUp(NodeId),
    /// No replica qualifies: the primary serves it (whichever node that is
    /// by then; failover rules apply as for writes).
    Fallback,
    /// No replica qualifies and the primary may not serve reads.
    Nowhere,
}

/// Where a write (or a read the primary serves) may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteChoice {
    Node(NodeId),
    /// No writer now, but a node the session may use is up: a failover
    /// may bring one.
    Wait,
    /// The writer is outside the session's nodes, or none of them is up.
    OutOfBounds,
    SplitBrain(NodeId, NodeId),
}

/// Chooses the node for a write among the `allowed` nodes.
pub fn choose_write(snap: &Snapshot, allowed: NodeSet) -> WriteChoice {
    match snap.writer {
        Writer::SplitBrain(a, b) => WriteChoice::SplitBrain(a, b),
        Writer::Node(w) if allowed.contains(w) => WriteChoice::Node(w),
        Writer::Node(_) => WriteChoice::OutOfBounds,
        Writer::None if !allowed.is_all() && !any_up(snap, allowed) => WriteChoice::OutOfBounds,
        Writer::None => WriteChoice::Wait,
    }
}

/// Whether any node in `mask` was up at the last check.
pub fn any_up(snap: &Snapshot, mask: NodeSet) -> bool {
    snap.nodes
        .iter()
        .enumerate()
        .any(|(id, v)| v.up && mask.contains(id))
}

/// Chooses the node for a read; `cursor` rotates the choice among equals.
pub fn choose_read<L: Live>(
    snap: &Snapshot,
    live: &L,
    settings: &RoutingSettings,
    needs: ReadNeeds,
    cursor: usize,
    random: u32,
) -> ReadChoice {
    let writer = match snap.writer {
        Writer::Node(w) => Some(w),
        _ => None,
    };
    // Sets, not lists: nothing to clear or copy per read.
    let mut ok = NodeSet::EMPTY;
    let mut behind = NodeSet::EMPTY;
    let mut now = needs.now;
    let primary_always = settings.primary_reads == PrimaryReads::Always;
    let nodes = &snap.nodes[..snap.nodes.len().min(NodeSet::MAX)];
    for (id, view) in nodes.iter().enumerate() {
        let primary_ok = primary_always && Some(id) == writer;
        if !(view.readable || primary_ok) || !needs.allowed.contains(id) || live.drained(id) {
            continue;
        }
        let fresh = match needs.consistency {
            Consistency::Eventual => true,
            Consistency::Bounded => {
                let bound = Duration::from_millis(needs.max_staleness_ms);
                let now = *now.get_or_insert_with(Instant::now);
                primary_ok
                    || view
                        .fresh_at
                        .is_some_and(|t| now.saturating_duration_since(t) <= bound)
            }
            Consistency::ReadYourWrites => primary_ok || live.lsn(id, view) >= needs.min_lsn,
        };
        match fresh {
            true => ok = ok.with(id),
            false => behind = behind.with(id),
        }
    }
    if !ok.is_empty() {
        // Locality: the qualifying nodes in the proxy's region, if any.
        let near = ok.and(needs.local);
        let set = if near.is_empty() { ok } else { near };
        return ReadChoice::Node(pick(set, snap, live, settings, cursor, random));
    }
    if !behind.is_empty() && needs.consistency == Consistency::ReadYourWrites {
        // The most advanced one is the likeliest to catch up first.
        let best = behind
            .ids_below(snap.nodes.len())
            .max_by_key(|&id| live.lsn(id, &snap.nodes[id]));
        if let Some(id) = best {
            return ReadChoice::CatchUp(id);
        }
    }
    match (settings.replica_fallback, settings.primary_reads) {
        (ReplicaFallback::Primary, PrimaryReads::Fallback | PrimaryReads::Always) => {
            ReadChoice::Fallback
        }
        _ => ReadChoice::Nowhere,
    }
}

/// One of `set`'s nodes (it is never empty) by the configured strategy,
/// counting positions in the set from its lowest id.
fn pick<L: Live>(
    set: NodeSet,
    snap: &Snapshot,
    live: &L,
    settings: &RoutingSettings,
    cursor: usize,
    random: u32,
) -> NodeId {
    let count = set.len().max(1);
    let at = |k: usize| set.ids().nth(k % count).unwrap_or_default();
    if count == 1 {
        return at(0);
    }
    let outstanding = |id: NodeId| live.outstanding(id);
    match settings.replica_selection {
        ReplicaSelection::RoundRobin => at(cursor),
        ReplicaSelection::LeastOutstanding => {
            // Ties are broken from a rotating start, so idle replicas
            // share: among equals, the first at or after `start`, else the
            // first before it.
            let start = cursor % count;
            let mut best = (u32::MAX, true, usize::MAX);
            let mut chosen = at(0);
            for (pos, id) in set.ids().enumerate() {
                let key = (outstanding(id), pos < start, pos);
                if key < best {
                    (best, chosen) = (key, id);
                }
            }
            chosen
        }
        ReplicaSelection::P2c => {
            let r = random as usize;
            let a = r % count;
            let b = match (r / count + 1 + r) % count {
                b if b == a => (a + 1) % count,
                b => b,
            };
            let (a, b) = (at(a), at(b));
            let cost = |id: NodeId| (outstanding(id), snap.nodes[id].latency_us);
            if cost(b) < cost(a) {
                b
            } else {
                a
            }
        }
        ReplicaSelection::WeightedRandom => {
            let total: u64 = set.ids().map(|id| u64::from(live.weight(id).max(1))).sum();
            let mut left = u64::from(random) % total.max(1);
            for id in set.ids() {
                let w = u64::from(live.weight(id).max(1));
                if left < w {
                    return id;
                }
                left -= w;
            }
            at(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::nodeset::NodeSet;
    use crate::topology::{NodeView, Role, Topology};
    use std::sync::atomic::Ordering;

    fn view(role: Role, readable: bool, lsn: u64, lag_ms: u64) -> NodeView {
        NodeView {
            up: true,
            role,
            readable,
            lsn,
            lag_bytes: 0,
            lag_ms,
            latency_us: 100,
            asked: None,
            fresh_at: Instant::now().checked_sub(Duration::from_millis(lag_ms)),
        }
    }

    fn setup(weights: [u32; 3]) -> (std::sync::Arc<Topology>, Snapshot) {
        let t = Topology::new(
            "db",
            (0..3)
                .map(|i| (format!("h:{i}"), weights[i], None))
                .collect(),
        );
        let snap = Snapshot {
            writer: Writer::Node(0),
            nodes: vec![
                view(Role::Primary, false, 500, 0),
                view(Role::Replica, true, 400, 10),
                view(Role::Replica, true, 300, 900),
            ],
            round: 1,
            taken: Instant::now(),
        };
        (t, snap)
    }

    /// Per-node load and weights, nothing drained.
    struct Fake {
        outstanding: Vec<u32>,
        weight: Vec<u32>,
    }

    impl Live for Fake {
        fn drained(&self, _: NodeId) -> bool {
            false
        }
        fn lsn(&self, _: NodeId, view: &NodeView) -> u64 {
            view.lsn
        }
        fn outstanding(&self, id: NodeId) -> u32 {
            self.outstanding[id]
        }
        fn weight(&self, id: NodeId) -> u32 {
            self.weight[id]
        }
    }

    /// The strategies as first written, over a list of ids.
    fn pick_from_list(
        ids: &[NodeId],
        live: &Fake,
        s: &RoutingSettings,
        cursor: usize,
        random: u32,
    ) -> NodeId {
        let n = ids.len();
        match s.replica_selection {
            ReplicaSelection::RoundRobin => ids[cursor % n],
            ReplicaSelection::LeastOutstanding => (0..n)
                .map(|k| ids[(cursor + k) % n])
                .min_by_key(|&id| live.outstanding(id))
                .unwrap_or(ids[0]),
            ReplicaSelection::P2c => {
                let a = ids[random as usize % n];
                let b = ids[(random as usize / n + 1 + random as usize) % n];
                let b = if a == b && n > 1 {
                    ids[(ids.iter().position(|&x| x == a).unwrap_or(0) + 1) % n]
                } else {
                    b
                };
                // Every node's latency is the same here.
                if live.outstanding(b) < live.outstanding(a) {
                    b
                } else {
                    a
                }
            }
            ReplicaSelection::WeightedRandom => {
                let total: u64 = ids
                    .iter()
                    .map(|&id| u64::from(live.weight(id).max(1)))
                    .sum();
                let mut at = u64::from(random) % total;
                for &id in ids {
                    let w = u64::from(live.weight(id).max(1));
                    if at < w {
                        return id;
                    }
                    at -= w;
                }
                unreachable!()
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_set_picks_as_its_list_does(
            bits in 1u32..64,
            outstanding in proptest::collection::vec(0u32..3, 6),
            weight in proptest::collection::vec(0u32..4, 6),
            cursor in proptest::prelude::any::<usize>(),
            random in proptest::prelude::any::<u32>(),
            strategy in 0usize..4,
        ) {
            let ids: Vec<NodeId> = (0..6).filter(|&i| bits & (1 << i) != 0).collect();
            let set: NodeSet = ids.iter().copied().collect();
            let snap = Snapshot {
                writer: Writer::Node(0),
                nodes: (0..6).map(|_| view(Role::Replica, true, 1, 0)).collect(),
                round: 1,
                taken: Instant::now(),
            };
            let s = RoutingSettings {
                replica_selection: [
                    ReplicaSelection::RoundRobin,
                    ReplicaSelection::LeastOutstanding,
                    ReplicaSelection::P2c,
                    ReplicaSelection::WeightedRandom,
                ][strategy],
                ..Default::default()
            };
            let live = Fake { outstanding, weight };
            proptest::prop_assert_eq!(
                pick(set, &snap, &live, &s, cursor, random),
                pick_from_list(&ids, &live, &s, cursor, random)
            );
        }
    }

    fn eventual() -> ReadNeeds {
        ReadNeeds {
            consistency: Consistency::Eventual,
            min_lsn: 0,
            max_staleness_ms: 0,
            allowed: NodeSet::ALL,
            local: NodeSet::ALL,
            now: None,
        }
    }

    #[test]
    fn consistency_filters() {
        let (t, snap) = setup([1, 1, 1]);
        let s = RoutingSettings::default();
        let ryw = |min_lsn| ReadNeeds {
            consistency: Consistency::ReadYourWrites,
            min_lsn,
            max_staleness_ms: 0,
            allowed: NodeSet::ALL,
            local: NodeSet::ALL,
            now: None,
        };
        assert_eq!(
            choose_read(&snap, &*t, &s, ryw(350), 0, 0),
            ReadChoice::Node(1)
        );
        assert_eq!(
            choose_read(&snap, &*t, &s, ryw(450), 0, 0),
            ReadChoice::CatchUp(1)
        );
        t.nodes[2].saw_lsn(460);
        assert_eq!(
            choose_read(&snap, &*t, &s, ryw(450), 0, 0),
            ReadChoice::Node(2)
        );
        let bounded = ReadNeeds {
            consistency: Consistency::Bounded,
            min_lsn: 0,
            max_staleness_ms: 100,
            allowed: NodeSet::ALL,
            local: NodeSet::ALL,
            now: None,
        };
        assert_eq!(
            choose_read(&snap, &*t, &s, bounded, 0, 0),
            ReadChoice::Node(1)
        );
        // Proven fresh when the snapshot was taken, stale by now.
        let later = ReadNeeds {
            now: Some(Instant::now() + Duration::from_millis(200)),
            ..bounded
        };
        assert_eq!(
            choose_read(&snap, &*t, &s, later, 0, 0),
            ReadChoice::Fallback
        );
        // Never proven: never chosen.
        let mut unproven = snap.clone();
        unproven.nodes[1].fresh_at = None;
        unproven.nodes[2].fresh_at = None;
        assert_eq!(
            choose_read(&unproven, &*t, &s, bounded, 0, 0),
            ReadChoice::Fallback
        );
    }

    #[test]
    fn fallback_and_error() {
        let (t, mut snap) = setup([1, 1, 1]);
        snap.nodes[1].readable = false;
        snap.nodes[2].readable = false;
        let mut s = RoutingSettings::default();
        assert_eq!(
            choose_read(&snap, &*t, &s, eventual(), 0, 0),
            ReadChoice::Fallback
        );
        s.replica_fallback = ReplicaFallback::Error;
        assert_eq!(
            choose_read(&snap, &*t, &s, eventual(), 0, 0),
            ReadChoice::Nowhere
        );
        s.primary_reads = PrimaryReads::Always;
        assert_eq!(
            choose_read(&snap, &*t, &s, eventual(), 0, 0),
            ReadChoice::Node(0)
        );
    }

    #[test]
    fn strategies_spread() {
        let (t, snap) = setup([1, 1, 9]);
        let mut counts = [0usize; 3];
        for sel in [
            ReplicaSelection::RoundRobin,
            ReplicaSelection::LeastOutstanding,
            ReplicaSelection::P2c,
        ] {
            let s = RoutingSettings {
                replica_selection: sel,
                ..Default::default()
            };
            for r in 0..100u32 {
                if let ReadChoice::Node(id) = choose_read(
                    &snap,
                    &*t,
                    &s,
                    eventual(),
                    r as usize,
                    r.wrapping_mul(2_654_435_761),
                ) {
                    counts[id] += 1;
                }
            }
        }
        assert_eq!(counts[0], 0, "the primary serves no reads");
        assert!(counts[1] > 50 && counts[2] > 50, "{counts:?}");
        // Equals: the first from the rotating start.
        let least = RoutingSettings {
            replica_selection: ReplicaSelection::LeastOutstanding,
            ..Default::default()
        };
        for (cursor, id) in [(0, 1), (1, 2), (2, 1), (5, 2)] {
            assert_eq!(
                choose_read(&snap, &*t, &least, eventual(), cursor, 0),
                ReadChoice::Node(id)
            );
        }
        t.nodes[1].stats.outstanding.store(5, Ordering::Relaxed);
        let s = RoutingSettings::default();
        assert_eq!(
            choose_read(&snap, &*t, &s, eventual(), 0, 0),
            ReadChoice::Node(2)
        );
        let w = RoutingSettings {
            replica_selection: ReplicaSelection::WeightedRandom,
            ..Default::default()
        };
        let heavy = (0..1000u32)
            .filter(|r| {
                choose_read(&snap, &*t, &w, eventual(), 0, r.wrapping_mul(2_654_435_761))
                    == ReadChoice::Node(2)
            })
            .count();
        assert!(heavy > 800, "{heavy}");
    }
}
