use super::*;
use crate::config::residency::TenantFrom;
use crate::config::{
    Consistency, PrimaryReads, ReplicaFallback, ReplicaSelection, RoutingSettings,
};
use crate::routing::nodeset::NodeSet;
use crate::routing::select::{choose_read, choose_write, ReadChoice, ReadNeeds, WriteChoice};
use crate::topology::{NodeView, Role, Snapshot, Topology, Writer};
use proptest::prelude::*;
use std::time::Instant;

const REGIONS: [&str; 4] = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"];

fn strict() -> ResidencySettings {
    ResidencySettings {
        policy: Policy::Strict,
        tenant_from: TenantFrom::Startup,
        ..Default::default()
    }
}

fn tenants() -> TenantMap {
    [(
        "acme".to_owned(),
        vec!["eu-west-1".to_owned(), "eu-central-1".to_owned()],
    )]
    .into_iter()
    .collect()
}

#[test]
fn tenants_resolve_to_their_regions() {
    let s = strict();
    let t = tenants();
    assert_eq!(
        allowed_regions(&s, &t, Some("acme")),
        Ok(Some(vec!["eu-west-1".into(), "eu-central-1".into()]))
    );
    assert_eq!(allowed_regions(&s, &t, None), Err(Refusal::NotSet));
    assert_eq!(allowed_regions(&s, &t, Some("")), Err(Refusal::NotSet));
    assert_eq!(
        allowed_regions(&s, &t, Some("nobody")),
        Err(Refusal::Unknown("nobody".into()))
    );
    let default = ResidencySettings {
        unknown_tenant: UnknownTenant::DefaultRegion,
        default_region: Some("us-east-1".into()),
        ..strict()
    };
    assert_eq!(
        allowed_regions(&default, &t, Some("nobody")),
        Ok(Some(vec!["us-east-1".into()]))
    );
    let off = ResidencySettings::default();
    assert_eq!(allowed_regions(&off, &t, None), Ok(None));
}

#[test]
fn masks_hold_nodes_in_the_regions() {
    let regions = ["eu-west-1".to_owned()];
    let m = mask(
        [
            Some("eu-west-1"),
            None,
            Some("us-east-1"),
            Some("eu-west-1"),
        ],
        &regions,
    );
    assert_eq!(m, [0, 3].into_iter().collect());
    assert!(m.contains(0) && !m.contains(1) && !m.contains(2) && m.contains(3));
    assert!(!NodeSet::ALL.contains(40));
}

#[test]
fn clusters_by_region() {
    let clusters = [
        ClusterRegions {
            region: "eu-west-1",
            nodes: vec![Some("eu-west-1"), Some("eu-central-1")],
        },
        ClusterRegions {
            region: "us-east-1",
            nodes: vec![Some("us-east-1")],
        },
    ];
    let us = ["us-east-1".to_owned()];
    let central = ["eu-central-1".to_owned()];
    let ap = ["ap-south-1".to_owned()];
    let choose = |allowed: Option<&[String]>, policy, local| {
        choose_cluster(&clusters, allowed, policy, local)
    };
    assert_eq!(
        choose(Some(&us), Policy::Strict, None).map(|c| c.index),
        Some(1)
    );
    // Only a replica of the EU cluster is in eu-central-1: still that cluster.
    assert_eq!(
        choose(Some(&central), Policy::Strict, None).map(|c| c.index),
        Some(0)
    );
    assert_eq!(choose(Some(&ap), Policy::Strict, None), None);
    assert_eq!(
        choose(Some(&ap), Policy::Preferred, None),
        Some(ClusterChoice {
            index: 0,
            out_of_region: true
        })
    );
    assert_eq!(
        choose(None, Policy::Off, Some("us-east-1")).map(|c| c.index),
        Some(1)
    );
    assert_eq!(choose(None, Policy::Off, None).map(|c| c.index), Some(0));
}

/// A node as the property test draws it: region, role, state.
#[derive(Debug, Clone)]
struct Drawn {
    region: usize,
    primary: bool,
    up: bool,
    readable: bool,
    lsn: u64,
}

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        0..REGIONS.len(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u64..1000,
    )
        .prop_map(|(region, primary, up, readable, lsn)| Drawn {
            region,
            primary,
            up,
            readable,
            lsn,
        })
}

pub(crate) fn settings_from(i: u8) -> RoutingSettings {
    RoutingSettings {
        replica_selection: [
            ReplicaSelection::LeastOutstanding,
            ReplicaSelection::P2c,
            ReplicaSelection::RoundRobin,
            ReplicaSelection::WeightedRandom,
        ][usize::from(i % 4)],
        primary_reads: [
            PrimaryReads::Never,
            PrimaryReads::Fallback,
            PrimaryReads::Always,
        ][usize::from(i / 4 % 3)],
        replica_fallback: if i & 16 == 0 {
            ReplicaFallback::Primary
        } else {
            ReplicaFallback::Error
        },
        consistency: [
            Consistency::Eventual,
            Consistency::ReadYourWrites,
            Consistency::Bounded,
        ][usize::from(i / 32 % 3)],
        ..Default::default()
    }
}

proptest! {
    /// Strict residency: whatever the topology, the tenant's regions, the
    /// failures and the settings, a read or a write is served by a node in
    /// the tenant's regions or refused; never by another.
    #[test]
    fn strict_never_leaves_the_tenants_regions(
        nodes in prop::collection::vec(drawn(), 1..8),
        map in prop::collection::vec(prop::collection::btree_set(0..REGIONS.len(), 1..3), 1..4),
        tenant in 0usize..5,
        local in 0..REGIONS.len(),
        knobs in any::<u8>(),
        min_lsn in 0u64..1000,
        random in any::<u32>(),
    ) {
        // A random tenant map; the tenant may be missing from it.
        let map: TenantMap = map
            .iter()
            .enumerate()
            .map(|(i, regions)| {
                (format!("t{i}"), regions.iter().map(|&r| REGIONS[r].to_owned()).collect())
            })
            .collect();
        let allowed = match allowed_regions(&strict(), &map, Some(&format!("t{tenant}"))) {
            Ok(Some(regions)) => regions,
            Ok(None) => return Err(TestCaseError::fail("strict always has rules")),
            Err(refusal) => {
                prop_assert!(tenant >= map.len(), "{refusal:?}");
                return Ok(());
            }
        };
        let topology = Topology::new(
            "db",
            nodes.iter().enumerate()
                .map(|(i, n)| (format!("h:{i}"), 1, Some(REGIONS[n.region].to_owned())))
                .collect(),
        );
        let regions = || topology.nodes.iter().map(|n| n.region.as_deref());
        let m = mask(regions(), &allowed);
        let local = mask(regions(), &[REGIONS[local].to_owned()]);
        let writer = nodes.iter().position(|n| n.primary && n.up);
        let snap = Snapshot {
            writer: writer.map_or(Writer::None, Writer::Node),
            nodes: nodes.iter().map(|n| NodeView {
                up: n.up,
                role: if n.primary { Role::Primary } else { Role::Replica },
                readable: n.up && !n.primary && n.readable,
                lsn: n.lsn,
                lag_bytes: 0,
                lag_ms: n.lsn / 2,
                latency_us: n.lsn,
                asked: None,
                fresh_at: Instant::now().checked_sub(std::time::Duration::from_millis(n.lsn / 2)),
            }).collect(),
            round: 1,
            taken: Instant::now(),
        };
        let settings = settings_from(knobs);
        let needs = ReadNeeds {
            consistency: settings.consistency,
            min_lsn,
            max_staleness_ms: 300,
            allowed: m,
            local,
            now: None,
        };
        // The write path and a read's fallback both go to the writer.
        let writer_target = match choose_write(&snap, m) {
            WriteChoice::Node(id) => Some(id),
            _ => None,
        };
        let read_target = match choose_read(&snap, &*topology, &settings, needs, random as usize, random) {
            ReadChoice::Node(id) | ReadChoice::CatchUp(id) => Some(id),
            ReadChoice::Fallback => writer_target,
            ReadChoice::Nowhere => None,
        };
        for id in [read_target, writer_target].into_iter().flatten() {
            let region = topology.nodes[id].region.as_deref().unwrap_or("");
            prop_assert!(allowed.iter().any(|a| a == region), "node {id} in {region}, allowed {allowed:?}");
        }
    }
}
