//! `SWITCHOVER db TO node`: a planned primary change without errors for
//! clients. New write transactions wait (as during a failover, up to
//! `failover_wait_ms`); open ones finish; the target replays the primary's
//! last WAL position; it is promoted (`pg_promote()`, with
//! `switchover_promote = true`) or the operator promotes it; the monitor
//! sees it as the primary (the old one is fenced: no traffic until it
//! returns as a replica); writes resume there. Clients see a pause.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::auth::backend::AuthMethods;
use crate::net::tls::TlsPolicy;
use crate::server::control::{self, ControlLogin};

use crate::error::ProxyError;
use crate::shared::Shared;
use crate::topology::lag::{insert_lsn_as_replayed, parse_lsn, PRIMARY_LSN_SQL};
use crate::topology::{Role, Topology, Writer};

/// How long open transactions on the old primary may take to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the target may take to replay the old primary's last position.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the promotion may take to be seen (an operator's included).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

/// Runs a switchover; writes are held for its whole length.
///
/// # Errors
/// Preconditions (no such database or node, the node is not an up
/// replica, there is no primary) or a step that timed out or failed
/// (55000); writes resume on the old primary unless the target was
/// promoted.
pub async fn switchover(shared: &Shared, db: &str, node: &str) -> Result<(), ProxyError> {
    let fail = |why: String| ProxyError::SwitchoverFailed(why);
    let topo = shared
        .topology(db)
        .ok_or_else(|| fail(format!("database \"{db}\" has no replicas to switch to")))?
        .clone();
    let target = topo
        .nodes
        .iter()
        .position(|n| n.addr == node)
        .ok_or_else(|| ProxyError::UnknownNode(node.to_owned()))?;
    let snap = topo.snapshot_full();
    let Writer::Node(old) = snap.writer else {
        return Err(fail("there is no primary to switch from".into()));
    };
    if old == target {
        return Err(fail(format!("{node} is already the primary")));
    }
    let view = snap.nodes[target];
    if !view.up || view.role != Role::Replica {
        return Err(fail(format!("{node} is not an up replica")));
    }
    let loaded = shared.config.load_full();
    let (user, password) = loaded
        .monitor_login(db)
        .ok_or_else(|| fail("no monitor login to reach the nodes".into()))?;
    let settings = loaded
        .database(db)
        .ok_or_else(|| ProxyError::UnknownDatabase(db.to_owned()))?;
    let dbname = settings.dbname.clone().unwrap_or_else(|| db.to_owned());
    let promote = settings.routing.switchover_promote;
    let login = Login {
        user: &user,
        password: password.as_deref(),
        dbname: &dbname,
        allowed_auth: loaded.allowed_server_auth(),
        tls: loaded.tls_policy(db),
    };
    tracing::info!(db, from = %topo.nodes[old].addr, to = node, "switchover starting");
    topo.hold_writes(true);
    let result = steps(shared, &topo, db, old, target, &login, promote).await;
    topo.hold_writes(false);
    match &result {
        Ok(()) => tracing::info!(db, to = node, "switchover done"),
        Err(e) => {
            tracing::warn!(db, to = node, step = %e.step, detail = %e.detail, "switchover failed")
        }
    }
    result.map_err(|e| fail(e.step))
}

/// A step that failed: what the console user is told, and the detail
/// (addresses, the server's or the OS's words) that only the log gets.
struct Failed {
    step: String,
    detail: String,
}

impl Failed {
    fn new(step: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self {
            step: step.into(),
            detail: detail.to_string(),
        }
    }
}

impl From<String> for Failed {
    /// A step whose text carries nothing internal (a timeout).
    fn from(step: String) -> Self {
        Self {
            detail: String::new(),
            step,
        }
    }
}

struct Login<'a> {
    user: &'a str,
    password: Option<&'a str>,
    dbname: &'a str,
    allowed_auth: AuthMethods,
    tls: TlsPolicy,
}

async fn steps(
    shared: &Shared,
    topo: &Topology,
    db: &str,
    old: usize,
    target: usize,
    login: &Login<'_>,
    promote: bool,
) -> Result<(), Failed> {
    // Open transactions on the old primary finish.
    let old_pools: Vec<_> = shared
        .pools
        .all()
        .into_iter()
        .filter(|p| p.key.db == db && p.key.node == old)
        .collect();
    wait_for(
        DRAIN_TIMEOUT,
        "transactions on the old primary to end",
        || {
            let busy = old_pools.iter().all(|p| p.busy() == 0);
            async move { busy }
        },
    )
    .await?;
    // The target replays everything written so far; again if the primary
    // moved meanwhile (a write that chose it just before the hold).
    let primary = connect(&topo.nodes[old].addr, login).await?;
    let replica = connect(&topo.nodes[target].addr, login).await?;
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let lsn = insert_lsn_as_replayed(value(&primary, PRIMARY_LSN_SQL).await?);
        let left = deadline.saturating_duration_since(Instant::now());
        wait_for(left, "the target to replay the primary's WAL", || {
            let replica = &replica;
            async move {
                value(replica, "SELECT pg_last_wal_replay_lsn()::text")
                    .await
                    .is_ok_and(|r| r >= lsn)
            }
        })
        .await?;
        let still = insert_lsn_as_replayed(value(&primary, PRIMARY_LSN_SQL).await?);
        if still == lsn && old_pools.iter().all(|p| p.busy() == 0) {
            break;
        }
    }
    // Two primaries for a moment: the monitor is to trust the target.
    topo.confirm_primary(target);
    if promote {
        replica
            .simple_query("SELECT pg_promote(true, 30)")
            .await
            .map_err(|e| Failed::new("pg_promote failed on the target (see pgwarden's log)", e))?;
    } else {
        tracing::info!(node = %topo.nodes[target].addr, "switchover waits for the node to be promoted");
    }
    wait_for(
        PROMOTE_TIMEOUT,
        "the target to take over as primary",
        || {
            let now = topo.snapshot().writer;
            async move { now == Writer::Node(target) }
        },
    )
    .await
}

async fn wait_for<F, Fut>(limit: Duration, what: &str, mut ready: F) -> Result<(), Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !ready().await {
        if Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

async fn connect(addr: &str, login: &Login<'_>) -> Result<Client, Failed> {
    control::connect(&ControlLogin {
        addr,
        user: login.user,
        password: login.password,
        dbname: login.dbname,
        application_name: "pgwarden switchover",
        timeout: Duration::from_secs(5),
        allowed_auth: login.allowed_auth,
        tls: &login.tls.target(addr),
    })
    .await
    .map_err(|e| {
        Failed::new(
            "could not connect to a node of the switchover (see pgwarden's log)",
            format_args!("{addr}: {e}"),
        )
    })
}

/// A WAL position as a number, from a query answering one `pg_lsn` text.
async fn value(client: &Client, sql: &str) -> Result<u64, Failed> {
    let row = client.query_one(sql, &[]).await.map_err(|e| {
        Failed::new(
            "a node did not tell its WAL position (see pgwarden's log)",
            e,
        )
    })?;
    let text: Option<String> = row.get(0);
    text.as_deref()
        .and_then(parse_lsn)
        .ok_or_else(|| Failed::from(format!("no WAL position from {sql}")))
}
