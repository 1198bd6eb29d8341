//! Console commands that act on traffic: `PAUSE`/`RESUME`, `DISABLE`/
//! `ENABLE`, `RECONNECT`, `SHUTDOWN`.

use std::time::Duration;

use crate::error::ProxyError;
use crate::shared::Shared;

/// How often `PAUSE` looks whether the last transactions have ended.
const PAUSE_POLL: Duration = Duration::from_millis(10);

/// `PAUSE [db]`: new transactions wait; returns once every server of the
/// database(s) is back in its pool, then closes them (as PgBouncer does,
/// e.g. before a server restart). Sessions holding a server (session mode,
/// pinned) keep it, and PAUSE waits for them.
///
/// # Errors
/// `db` is not configured.
pub async fn pause(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    known(shared, db)?;
    shared.gates.pause(db);
    let affected = |key_db: &str| db.is_none_or(|d| d == key_db);
    loop {
        let pools: Vec<_> = shared
            .pools
            .all()
            .into_iter()
            .filter(|p| affected(&p.key.db))
            .collect();
        if pools.iter().all(|p| p.busy() == 0) {
            for p in &pools {
                p.close_idle();
            }
            return Ok(());
        }
        if !shared.gates.paused(db) {
            // Resumed by another console meanwhile.
            return Ok(());
        }
        tokio::time::sleep(PAUSE_POLL).await;
    }
}

/// `KILL [db]`: the database (without one, every database) is paused
/// (new logins' transactions wait for `RESUME`), every client of it is
/// told to end (57P01) and its running query is cancelled so that it ends
/// now rather than at its transaction's end, and idle servers are closed.
/// Console connections are not clients of a database: they stay.
///
/// # Errors
/// `db` is not configured.
pub async fn kill(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    known(shared, db)?;
    shared.gates.pause(db);
    let affected = |name: &str| db.is_none_or(|d| d == name);
    for (_, control) in shared.cancels.sessions() {
        if control
            .info
            .get()
            .is_none_or(|i| i.console || !affected(&i.database))
        {
            continue;
        }
        control.request_kill();
        crate::cancel::forward_cancel(&control).await;
    }
    for pool in shared.pools.all() {
        if affected(&pool.key.db) {
            pool.close_idle();
        }
    }
    tracing::info!(db = db.unwrap_or("(all)"), "KILL from the admin console");
    Ok(())
}

/// `RESUME [db]`.
///
/// # Errors
/// `db` is not configured.
pub fn resume(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    known(shared, db)?;
    shared.gates.resume(db);
    Ok(())
}

/// `DISABLE db` / `ENABLE db`: new logins to it are refused (57P03) or
/// allowed again; connected clients stay.
///
/// # Errors
/// `db` is not configured.
pub fn set_disabled(shared: &Shared, db: &str, disabled: bool) -> Result<(), ProxyError> {
    known(shared, Some(db))?;
    shared.gates.set_disabled(db, disabled);
    Ok(())
}

/// `RECONNECT [db]`: every server of the database(s) is closed once idle,
/// so that the next transactions get fresh ones (after a DNS or
/// `pg_hba.conf` change, say).
///
/// # Errors
/// `db` is not configured.
pub fn reconnect(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    known(shared, db)?;
    for pool in shared.pools.all() {
        if db.is_none_or(|d| d == pool.key.db) {
            pool.reconnect();
        }
    }
    shared.fast_close(db);
    Ok(())
}

/// `DRAIN NODE addr` / `UNDRAIN NODE addr`: new transactions avoid the
/// node (in every database it serves) or may use it again; transactions
/// running there finish, pinned sessions keep their server.
///
/// # Errors
/// No such node (42704), or it is a database's writer (55000): writes
/// cannot go elsewhere until a switchover.
pub fn drain(shared: &Shared, node: &str, drained: bool) -> Result<(), ProxyError> {
    let mut found = false;
    for (db, topo) in shared.topologies() {
        let Some(id) = topo.nodes.iter().position(|n| n.addr == node) else {
            continue;
        };
        found = true;
        if drained && topo.snapshot().writer == crate::topology::Writer::Node(id) {
            return Err(ProxyError::NodeIsWriter {
                node: node.to_owned(),
                db: db.clone(),
            });
        }
    }
    if !found {
        return Err(ProxyError::UnknownNode(node.to_owned()));
    }
    for (_, topo) in shared.topologies() {
        for n in topo.nodes.iter().filter(|n| n.addr == node) {
            n.drained
                .store(drained, std::sync::atomic::Ordering::Relaxed);
        }
    }
    tracing::info!(node, drained, "node drain changed from the admin console");
    Ok(())
}

/// `WAIT_CLOSE [db]`: returns once every server open at the last
/// `RECONNECT` has closed (none is lent out any more, or each has come
/// back and been closed).
///
/// # Errors
/// `db` is not configured.
pub async fn wait_close(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    known(shared, db)?;
    loop {
        let done = shared
            .pools
            .all()
            .iter()
            .filter(|p| db.is_none_or(|d| d == p.key.db))
            .all(|p| p.close_needed() == 0 || p.busy() == 0);
        if done {
            return Ok(());
        }
        tokio::time::sleep(PAUSE_POLL).await;
    }
}

/// `SUSPEND`: as `PAUSE` of everything (new transactions wait, returns once
/// every server is back); `RESUME` ends it. pgwarden has no online restart
/// to hand sockets to, so nothing more is stopped.
pub async fn suspend(shared: &Shared) -> Result<(), ProxyError> {
    pause(shared, None).await
}

/// `KILL_CLIENT id`: that client ends at once (a running query is
/// cancelled), told "admin forced disconnect".
///
/// # Errors
/// No logged-in client has that id (08P01).
pub async fn kill_client(shared: &Shared, id: u64) -> Result<(), ProxyError> {
    let found = shared
        .cancels
        .sessions()
        .into_iter()
        .find(|(_, c)| c.info.get().is_some_and(|i| i.id == id && !i.console));
    let Some((_, control)) = found else {
        return Err(ProxyError::AdminNoSuchClient(id));
    };
    control.request_kill();
    crate::cancel::forward_cancel(&control).await;
    tracing::info!(id, "KILL_CLIENT from the admin console");
    Ok(())
}

/// `SHUTDOWN [WAIT_FOR_SERVERS]`: as SIGTERM (new connections refused,
/// idle clients told 57P01, open transactions finish). `SHUTDOWN
/// WAIT_FOR_CLIENTS`: new connections refused, and every connected client
/// served until it leaves by itself, as PgBouncer 1.23+ does for a rolling
/// restart behind a load balancer.
pub fn shutdown(shared: &Shared, wait_for_clients: bool) {
    tracing::info!(wait_for_clients, "SHUTDOWN from the admin console");
    if wait_for_clients {
        shared.stop_accepting();
    } else {
        shared.begin_shutdown();
    }
}

fn known(shared: &Shared, db: Option<&str>) -> Result<(), ProxyError> {
    match db {
        Some(d) if shared.config.load().database(d).is_none() => {
            Err(ProxyError::AdminNoSuchDatabase(d.to_owned()))
        }
        _ => Ok(()),
    }
}
