//! [`route`] over random snapshots, units, preferences and tenant node
//! sets, with a table standing in for the live per-node numbers.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::config::Consistency;
use crate::topology::Role;

/// The live numbers of each node, as a test table.
struct Table {
    drained: Vec<bool>,
    seen_lsn: Vec<u64>,
    outstanding: Vec<u32>,
}

impl Live for Table {
    fn drained(&self, id: NodeId) -> bool {
        self.drained[id]
    }
    fn lsn(&self, id: NodeId, view: &NodeView) -> u64 {
        view.lsn.max(self.seen_lsn[id])
    }
    fn outstanding(&self, id: NodeId) -> u32 {
        self.outstanding[id]
    }
    fn weight(&self, _: NodeId) -> u32 {
        1
    }
}

#[derive(Debug, Clone)]
struct Drawn {
    up: bool,
    primary: bool,
    readable: bool,
    lsn: u64,
    seen: u64,
    drained: bool,
    outstanding: u32,
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        any::<bool>(),
        prop::bool::weighted(0.3),
        any::<bool>(),
        0u64..1000,
        0u64..1000,
        prop::bool::weighted(0.1),
        0u32..5,
    )
        .prop_map(
            |(up, primary, readable, lsn, seen, drained, outstanding)| Drawn {
                up,
                primary,
                readable,
                lsn,
                seen,
                drained,
                outstanding,
            },
        )
}

fn snapshot(nodes: &[Drawn]) -> Snapshot {
    let primaries: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].primary && nodes[i].up)
        .collect();
    let writer = match primaries.as_slice() {
        [] => Writer::None,
        [w] => Writer::Node(*w),
        [a, b, ..] => Writer::SplitBrain(*a, *b),
    };
    let now = Instant::now();
    Snapshot {
        writer,
        nodes: nodes
            .iter()
            .map(|n| NodeView {
                up: n.up,
                role: if n.primary {
                    Role::Primary
                } else {
                    Role::Replica
                },
                readable: n.up && !n.primary && n.readable,
                lsn: n.lsn,
                lag_bytes: 0,
                lag_ms: 0,
                latency_us: n.lsn,
                asked: None,
                fresh_at: now.checked_sub(Duration::from_millis(n.lsn / 2)),
            })
            .collect(),
        round: 1,
        taken: now,
    }
}

/// Every strategy, primary-reads and fallback setting (and consistency
/// default) by the bits of `knobs`.
fn settings(knobs: u8) -> RoutingSettings {
    crate::routing::residency::tests::settings_from(knobs)
}

fn class(i: u8) -> Classified {
    let intent = [Intent::Read, Intent::Write, Intent::Uncertain][usize::from(i % 3)];
    let hint = [None, Some(Hint::Primary), Some(Hint::Replica)][usize::from(i / 3 % 3)];
    Classified { intent, hint }
}

fn consistency(i: u8) -> Consistency {
    [
        Consistency::Eventual,
        Consistency::ReadYourWrites,
        Consistency::Bounded,
    ][usize::from(i % 3)]
}

/// The node a target sends the unit to, if any.
fn node_of(t: Target) -> Option<NodeId> {
    match t {
        Target::Writer(n) | Target::Replica(n) | Target::CatchUp { node: n, .. } => Some(n),
        Target::Wait | Target::Refuse(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_decision_keeps_the_three_guarantees(
        nodes in prop::collection::vec(drawn(), 1..8),
        unit in any::<u8>(),
        prefs in any::<u8>(),
        knobs in any::<u8>(),
        allowed_bits in any::<u8>(),
        strict in any::<bool>(),
        min_lsn in 0u64..1000,
        position_known in prop::bool::weighted(0.8),
        holding in prop::bool::weighted(0.1),
        cursor in any::<usize>(),
        random in any::<u32>(),
    ) {
        let snap = snapshot(&nodes);
        let table = Table {
            drained: nodes.iter().map(|n| n.drained).collect(),
            seen_lsn: nodes.iter().map(|n| n.seen).collect(),
            outstanding: nodes.iter().map(|n| n.outstanding).collect(),
        };
        let allowed = match strict {
            true => (0..nodes.len()).filter(|i| allowed_bits & (1 << i) != 0).collect(),
            false => NodeSet::ALL,
        };
        let route_pref = [None, Some(Hint::Primary), Some(Hint::Replica)][usize::from(prefs % 3)];
        let ask = Ask {
            class: class(unit),
            route: route_pref,
            read_only: prefs & 8 != 0,
            split: prefs & 16 == 0,
            needs: ReadNeeds {
                consistency: consistency(prefs / 32),
                min_lsn,
                max_staleness_ms: 300,
                allowed,
                local: NodeSet::ALL,
                now: None,
            },
            position_known,
        };
        let settings = settings(knobs);
        let view = View {
            snap: &snap,
            live: &table,
            settings: &settings,
            holding_writes: holding,
            cursor,
            random,
        };
        let d = route(&ask, &view);

        // A write never targets a node that is not the writer.
        let writes = ask.class.intent == Intent::Write
            || ask.class.hint == Some(Hint::Primary)
            || route_pref == Some(Hint::Primary)
            || !ask.split;
        if writes {
            prop_assert!(!d.read);
            match d.target {
                Target::Writer(w) => prop_assert_eq!(snap.writer, Writer::Node(w)),
                Target::Replica(_) | Target::CatchUp { .. } => {
                    prop_assert!(false, "a write went to a replica: {:?}", d)
                }
                Target::Wait | Target::Refuse(_) => {}
            }
        }
        // While a switchover holds writes, none is sent anywhere.
        if holding && !d.read {
            prop_assert_eq!(d.target, Target::Wait);
        }
        // Strict residency: the unit never reaches a node outside the set.
        if let Some(n) = node_of(d.target) {
            prop_assert!(allowed.contains(n), "node {} outside {:?}: {:?}", n, allowed, d);
            prop_assert!(n < nodes.len());
        }
        // Read-your-writes: never a replica known to be behind the
        // session's last write (catching up names the position to wait for).
        if ask.needs.consistency == Consistency::ReadYourWrites {
            match d.target {
                Target::Replica(n) => {
                    prop_assert!(position_known, "position unknown yet the read went to a replica");
                    prop_assert!(table.lsn(n, &snap.nodes[n]) >= min_lsn, "node {} behind {}: {:?}", n, min_lsn, d);
                }
                Target::CatchUp { lsn, .. } => prop_assert_eq!(lsn, min_lsn),
                _ => {}
            }
        }
        // A replica target is readable and not drained.
        if let Target::Replica(n) | Target::CatchUp { node: n, .. } = d.target {
            prop_assert!(snap.nodes[n].readable && !table.drained[n]);
        }
    }
}

#[test]
fn a_read_goes_to_a_fresh_replica_and_a_write_to_the_writer() {
    let node = |primary, lsn| Drawn {
        up: true,
        primary,
        readable: true,
        lsn,
        seen: 0,
        drained: false,
        outstanding: 0,
    };
    let nodes = [node(true, 500), node(false, 100), node(false, 400)];
    let snap = snapshot(&nodes);
    let table = Table {
        drained: vec![false; 3],
        seen_lsn: vec![0; 3],
        outstanding: vec![0; 3],
    };
    let settings = RoutingSettings::default();
    let view = View {
        snap: &snap,
        live: &table,
        settings: &settings,
        holding_writes: false,
        cursor: 0,
        random: 7,
    };
    let mut ask = Ask {
        class: Classified {
            intent: Intent::Read,
            hint: None,
        },
        route: None,
        read_only: false,
        split: true,
        needs: ReadNeeds {
            consistency: Consistency::ReadYourWrites,
            min_lsn: 300,
            max_staleness_ms: 0,
            allowed: NodeSet::ALL,
            local: NodeSet::ALL,
            now: None,
        },
        position_known: true,
    };
    assert_eq!(route(&ask, &view).target, Target::Replica(2));
    ask.needs.min_lsn = 450;
    assert_eq!(
        route(&ask, &view).target,
        Target::CatchUp { node: 2, lsn: 450 }
    );
    ask.position_known = false;
    assert_eq!(route(&ask, &view).target, Target::Writer(0));
    ask.class = Classified::WRITE;
    assert_eq!(route(&ask, &view).target, Target::Writer(0));
    ask.needs.allowed = [1, 2].into_iter().collect();
    assert_eq!(
        route(&ask, &view).target,
        Target::Refuse(Refusal::OutsideRegions)
    );
}
