//! Each database's nodes (the configured primary and its replicas), what
//! the monitor last learned about them, and per-node counters.
//!
//! Owns: one [`Topology`] per database with replicas. The [`monitor`]
//! publishes an immutable [`Snapshot`] after every round of checks;
//! sessions read it once per transaction (an `ArcSwap` load) and never
//! wait on the monitor, except writes during a failover.
//! Must not: route (that is `routing`) or lend servers (that is `pool`).

pub mod election;
pub mod health;
pub mod lag;
pub mod monitor;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

pub use election::Writer;

/// A node's index: 0 is the configured primary, then replicas in order.
pub type NodeId = usize;

/// What a node was last seen to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// One node as of the last check.
#[derive(Debug, Clone, Copy)]
pub struct NodeView {
    pub up: bool,
    pub role: Role,
    /// A replica that may serve reads: up, in recovery, within the lag limits.
    pub readable: bool,
    /// Replayed (replica) or inserted (primary) WAL position.
    pub lsn: u64,
    pub lag_bytes: u64,
    pub lag_ms: u64,
    /// Smoothed latency of the monitor's check query.
    pub latency_us: u64,
    /// When the check that saw `lsn` was sent: a position asked after a
    /// commit returned covers that commit.
    pub asked: Option<Instant>,
    /// A replica holds every commit made on the primary before this moment
    /// ([`lag::LsnHistory::fresh_at`]); `None`: not proven for any moment.
    pub fresh_at: Option<Instant>,
}

impl NodeView {
    /// Not checked, or down.
    pub const UNKNOWN: NodeView = NodeView {
        up: false,
        role: Role::Unknown,
        readable: false,
        lsn: 0,
        lag_bytes: 0,
        lag_ms: 0,
        latency_us: 0,
        asked: None,
        fresh_at: None,
    };
}

/// The topology after one round of checks.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub writer: Writer,
    pub nodes: Vec<NodeView>,
    /// Rounds of checks so far (0: none yet).
    pub round: u64,
    pub taken: Instant,
}

/// Counters of one node, for the admin console and metrics.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Transactions running on the node through pgwarden now.
    pub outstanding: AtomicU32,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    /// Reads sent here because no replica qualified.
    pub fallbacks: AtomicU64,
    /// Read-your-writes reads that had to wait for this replica.
    pub ryw_waits: AtomicU64,
    /// Read-your-writes reads sent to this primary because the client wrote
    /// after its last check (`ryw_commit_lsn = "monitor"`).
    pub ryw_primary_reads: AtomicU64,
    pub state_changes: AtomicU64,
    pub check_failures: AtomicU64,
}

/// A node as configured, with its live counters.
#[derive(Debug)]
pub struct Node {
    pub addr: String,
    pub weight: u32,
    pub region: Option<String>,
    pub stats: NodeStats,
    /// Highest replay position a session has seen here between checks.
    seen_lsn: AtomicU64,
    /// A session failed to reach it: the monitor checks it at once.
    suspect: AtomicBool,
    /// `DRAIN NODE`: no new transaction goes here.
    pub drained: AtomicBool,
}

impl Node {
    /// The replay position known for this node: the last check's, or
    /// newer if a session has seen it since.
    pub fn lsn(&self, view: &NodeView) -> u64 {
        view.lsn.max(self.seen_lsn.load(Ordering::Relaxed))
    }

    /// Records a replay position a session read from this node.
    pub fn saw_lsn(&self, lsn: u64) {
        self.seen_lsn.fetch_max(lsn, Ordering::Relaxed);
    }
}

/// One database's nodes and their last known state.
pub struct Topology {
    pub db: String,
    pub nodes: Vec<Node>,
    snapshot: ArcSwap<Snapshot>,
    /// Wakes writers waiting out a failover when a new snapshot is out.
    published: tokio::sync::Notify,
    /// Wakes the monitor early (a suspect node).
    wake: tokio::sync::Notify,
    /// Round-robin cursor for replica choice.
    pub cursor: AtomicUsize,
    /// Operator's pick in a split brain, for the monitor to apply.
    confirm: AtomicUsize,
    /// `SWITCHOVER` in progress: new writes wait (as during a failover).
    pub holding_writes: AtomicBool,
}

/// No confirmation pending.
const NO_NODE: usize = usize::MAX;

impl Topology {
    /// `nodes[0]` is the configured primary.
    pub fn new(db: &str, nodes: Vec<(String, u32, Option<String>)>) -> Arc<Self> {
        let n = nodes.len();
        let nodes: Vec<Node> = nodes
            .into_iter()
            .map(|(addr, weight, region)| Node {
                addr,
                weight,
                region,
                stats: NodeStats::default(),
                seen_lsn: AtomicU64::new(0),
                suspect: AtomicBool::new(false),
                drained: AtomicBool::new(false),
            })
            .collect();
        let mut views = vec![NodeView::UNKNOWN; n];
        // Until the first check, trust the config: the primary takes
        // everything and no replica is read from.
        if let Some(v) = views.first_mut() {
            v.up = true;
            v.role = Role::Primary;
        }
        Arc::new(Self {
            db: db.to_owned(),
            nodes,
            snapshot: ArcSwap::from_pointee(Snapshot {
                writer: Writer::Node(0),
                nodes: views,
                round: 0,
                taken: Instant::now(),
            }),
            published: tokio::sync::Notify::new(),
            wake: tokio::sync::Notify::new(),
            cursor: AtomicUsize::new(0),
            confirm: AtomicUsize::new(NO_NODE),
            holding_writes: AtomicBool::new(false),
        })
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn publish(&self, snap: Snapshot) {
        self.snapshot.store(Arc::new(snap));
        self.published.notify_waiters();
    }

    /// Waits for the next published snapshot.
    ///
    /// # Cancel safety
    /// Safe: it only waits.
    pub async fn changed(&self) {
        self.published.notified().await;
    }

    /// A session could not reach `node`: take it out of rotation now and
    /// have the monitor check it at once.
    pub fn report_failure(&self, node: NodeId) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        n.stats.check_failures.fetch_add(1, Ordering::Relaxed);
        n.suspect.store(true, Ordering::Relaxed);
        let current = self.snapshot_full();
        if current.nodes.get(node).is_some_and(|v| v.up) {
            let mut next = (*current).clone();
            next.nodes[node].up = false;
            next.nodes[node].readable = false;
            if next.writer == Writer::Node(node) {
                next.writer = Writer::None;
            }
            self.publish(next);
        }
        self.wake.notify_one();
    }

    /// Starts or ends holding new writes (`SWITCHOVER`); waiting writers
    /// look again when it ends.
    pub fn hold_writes(&self, hold: bool) {
        self.holding_writes.store(hold, Ordering::Release);
        if !hold {
            self.published.notify_waiters();
        }
    }

    /// An operator says `node` is the primary to trust in a split brain.
    pub fn confirm_primary(&self, node: NodeId) {
        if node < self.nodes.len() {
            self.confirm.store(node, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}
