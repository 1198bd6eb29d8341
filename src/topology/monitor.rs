//! The topology monitor: one task per database, one tokio-postgres
//! connection per node, a check of every node each `monitor_interval`.
//!
//! A check asks `pg_is_in_recovery()` and the node's WAL position (inserted
//! on a primary, see [`super::lag::PRIMARY_LSN_SQL`]; replayed on a replica)
//! in one simple query, within
//! `monitor_timeout`. After each round the monitor elects the writer,
//! measures each replica's lag against the writer, applies the lag limits
//! with hysteresis, and publishes a new snapshot.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

use super::election::{Claim, Election};
use super::health::Health;
use super::lag::{insert_lsn_as_replayed, parse_lsn, LsnHistory};
use super::{NodeId, NodeView, Role, Snapshot, Topology, Writer, NO_NODE};
use crate::auth::backend::AuthMethods;
use crate::net::tls::TlsPolicy;
use crate::server::control::{self, ControlLogin};

const CHECK_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END";

/// What the monitor needs from the config.
#[derive(Clone, Debug)]
pub struct MonitorSettings {
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
    /// How nodes may authenticate the monitor (`server_require_auth`).
    pub allowed_auth: AuthMethods,
    /// TLS towards the nodes (`server_tls_*`, as at start).
    pub tls: TlsPolicy,
}

/// One check's answer.
#[derive(Debug, Clone, Copy)]
struct Probe {
    in_recovery: bool,
    lsn: u64,
    latency: Duration,
    asked: Instant,
    answered: Instant,
}

struct NodeState {
    client: Option<Client>,
    health: Health,
    next_check: Instant,
    last: Option<Probe>,
    latency_us: f64,
}

/// Runs until `stop` is cancelled.
pub async fn run(topology: Arc<Topology>, settings: MonitorSettings, stop: CancellationToken) {
    let n = topology.nodes.len();
    let mut states: Vec<NodeState> = (0..n)
        .map(|_| NodeState {
            client: None,
            health: Health::default(),
            next_check: Instant::now(),
            last: None,
            latency_us: 0.0,
        })
        .collect();
    let mut election = Election::new(n, 0);
    // Enough history to measure minutes of lag.
    let mut history = LsnHistory::new(2400);
    let mut round = 0u64;
    let mut writer = election.initial();
    loop {
        round += 1;
        let now = Instant::now();
        let due: Vec<NodeId> = (0..n)
            .filter(|&i| {
                topology.nodes[i].suspect.swap(false, Ordering::Relaxed)
                    || states[i].next_check <= now
            })
            .collect();
        let probes = futures_join(&topology, &settings, &mut states, &due).await;
        for (i, probe) in due.iter().copied().zip(probes) {
            let st = &mut states[i];
            let ok = probe.is_some();
            if !ok {
                topology.nodes[i]
                    .stats
                    .check_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            let known = st.health.is_known();
            if st.health.observe(ok, settings.rise) {
                topology.nodes[i]
                    .stats
                    .state_changes
                    .fetch_add(1, Ordering::Relaxed);
                let (db, node) = (&topology.db, &topology.nodes[i].addr);
                // Down is what an operator must see; up is news only after down.
                match (ok, known) {
                    (false, _) => tracing::warn!(%db, %node, "node down"),
                    (true, false) => tracing::info!(%db, %node, "node up"),
                    (true, true) => tracing::info!(%db, %node, "node back up"),
                }
            }
            if let Some(p) = probe {
                let us = p.latency.as_micros() as f64;
                st.latency_us = if st.last.is_none() {
                    us
                } else {
                    0.8 * st.latency_us + 0.2 * us
                };
            }
            st.last = probe;
            st.next_check = Instant::now() + st.health.next_delay(settings.interval);
        }

        if let Some(node) = take_confirmation(&topology) {
            election.confirm(node);
        }
        let claims: Vec<Claim> = states
            .iter()
            .map(|s| match (s.health.is_up(), s.last) {
                (true, Some(p)) if p.in_recovery => Claim::Replica,
                (true, Some(_)) => Claim::Primary,
                _ => Claim::Unknown,
            })
            .collect();
        let decided = election.decide(&claims);
        if decided != writer {
            tracing::warn!(db = %topology.db, ?decided, before = ?writer, "writer changed");
            writer = decided;
        }
        let taken = Instant::now();
        if let Writer::Node(w) = writer {
            if let Some(p) = states[w].last.filter(|p| !p.in_recovery) {
                history.record(p.asked, p.answered, p.lsn);
            }
        }
        let views = states
            .iter_mut()
            .enumerate()
            .map(|(i, s)| view_of(i, s, &history, &settings, taken, &topology))
            .collect();
        topology.publish(Snapshot {
            writer,
            nodes: views,
            round,
            taken,
        });

        let next = states
            .iter()
            .map(|s| s.next_check)
            .min()
            .unwrap_or_else(|| Instant::now() + settings.interval);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = topology.wake.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn take_confirmation(topology: &Topology) -> Option<NodeId> {
    let n = topology.confirm.swap(NO_NODE, Ordering::Relaxed);
    (n != NO_NODE).then_some(n)
}

/// A node's view for the snapshot; updates its lag hysteresis.
fn view_of(
    i: NodeId,
    s: &mut NodeState,
    history: &LsnHistory,
    settings: &MonitorSettings,
    now: Instant,
    topology: &Topology,
) -> NodeView {
    let up = s.health.is_up();
    let Some(p) = s.last.filter(|_| up) else {
        return NodeView {
            latency_us: s.latency_us as u64,
            ..NodeView::UNKNOWN
        };
    };
    let role = if p.in_recovery {
        Role::Replica
    } else {
        Role::Primary
    };
    let (lag_bytes, lag_ms, fresh_at) = match (role, history.latest()) {
        (Role::Replica, Some(primary)) => (
            primary.saturating_sub(p.lsn),
            history.lag(p.lsn, now).as_millis() as u64,
            history.fresh_at(p.lsn),
        ),
        _ => (0, 0, None),
    };
    let over = |v: u64, max: u64| max > 0 && v > max;
    let under_half = |v: u64, max: u64| max == 0 || v <= max / 2;
    if role == Role::Replica {
        let is_over = over(lag_bytes, settings.max_lag_bytes) || over(lag_ms, settings.max_lag_ms);
        let calm = under_half(lag_bytes, settings.max_lag_bytes)
            && under_half(lag_ms, settings.max_lag_ms);
        if s.health.observe_lag(is_over, calm, settings.rise) {
            topology.nodes[i]
                .stats
                .state_changes
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(db = %topology.db, node = %topology.nodes[i].addr,
                lagging = s.health.lagging, lag_bytes, lag_ms, "replica rotation changed");
        }
    }
    NodeView {
        up,
        role,
        readable: role == Role::Replica && !s.health.lagging,
        lsn: p.lsn,
        lag_bytes,
        lag_ms,
        latency_us: s.latency_us as u64,
        asked: Some(p.asked),
        fresh_at,
    }
}

/// Checks the due nodes concurrently.
async fn futures_join(
    topology: &Topology,
    settings: &MonitorSettings,
    states: &mut [NodeState],
    due: &[NodeId],
) -> Vec<Option<Probe>> {
    let mut set = tokio::task::JoinSet::new();
    for &i in due {
        let client = states[i].client.take();
        let addr = topology.nodes[i].addr.clone();
        let settings = settings.clone();
        set.spawn(async move {
            let r = tokio::time::timeout(settings.timeout, check(client, &addr, &settings)).await;
            let r = r.unwrap_or((None, None));
            (i, r)
        });
    }
    let mut out = vec![None; due.len()];
    while let Some(joined) = set.join_next().await {
        let Ok((i, (client, probe))) = joined else {
            continue;
        };
        states[i].client = client;
        if let Some(k) = due.iter().position(|&d| d == i) {
            out[k] = probe;
        }
    }
    out
}

/// One check, reconnecting first if needed. Returns the connection to keep
/// (none after a failure) and the answer.
async fn check(
    client: Option<Client>,
    addr: &str,
    settings: &MonitorSettings,
) -> (Option<Client>, Option<Probe>) {
    let client = match client {
        Some(c) if !c.is_closed() => c,
        _ => match connect(addr, settings).await {
            Some(c) => c,
            None => return (None, None),
        },
    };
    let started = Instant::now();
    let rows = match client.simple_query(CHECK_SQL).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(node = addr, error = %e, "check failed");
            return (None, None);
        }
    };
    let answered = Instant::now();
    let probe = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => {
            let in_recovery = row.get(0) == Some("t");
            let lsn = row.get(1).and_then(parse_lsn).unwrap_or(0);
            Some(Probe {
                in_recovery,
                lsn: match in_recovery {
                    true => lsn,
                    false => insert_lsn_as_replayed(lsn),
                },
                latency: answered - started,
                asked: started,
                answered,
            })
        }
        _ => None,
    });
    (Some(client), probe)
}

async fn connect(addr: &str, settings: &MonitorSettings) -> Option<Client> {
    let login = ControlLogin {
        addr,
        user: &settings.user,
        password: settings.password.as_deref(),
        dbname: &settings.dbname,
        application_name: "pgwarden monitor",
        timeout: settings.timeout,
        allowed_auth: settings.allowed_auth,
        tls: &settings.tls.target(addr),
    };
    match control::connect(&login).await {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::debug!(node = addr, error = %e, "monitor cannot connect");
            None
        }
    }
}
