//! The HTTP side on `admin_listen`: `GET /metrics` (Prometheus text),
//! `/health` (the process answers), `/ready` (every database has a
//! reachable primary; JSON per database, 503 when one has none) and
//! `/pools` (JSON, for health checks). One request per connection; nothing
//! here prints a secret.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::Shared;
use crate::topology::Writer;

/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((socket, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move { handle(socket, &shared).await });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin_listen accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut socket: TcpStream, shared: &Shared) {
    let mut head = Vec::with_capacity(512);
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return false;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    let (status, kind, body) = if complete {
        respond(&head, shared)
    } else {
        (400, "text/plain", "bad request\n".to_owned())
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let challenge = match status {
        401 => "WWW-Authenticate: Bearer\r\n",
        _ => "",
    };
    let out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n{challenge}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(out.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn respond(head: &[u8], shared: &Shared) -> (u16, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return (400, "text/plain", "bad request\n".into());
    };
    if method != "GET" && method != "HEAD" {
        return (405, "text/plain", "GET only\n".into());
    }
    let path = target.split('?').next().unwrap_or("");
    let token = shared.config.load().config.proxy.admin_http_token.clone();
    if let Some(token) = token.filter(|_| path != "/health") {
        if !bearer_matches(head, &token) {
            return (401, "text/plain", "a bearer token is required\n".into());
        }
    }
    match path {
        "/" => (
            200,
            "text/html; charset=utf-8",
            super::status::render(shared),
        ),
        "/metrics" => (200, "text/plain; version=0.0.4", super::render(shared)),
        "/health" => (200, "text/plain", "ok\n".into()),
        "/ready" => {
            let (ready, body) = readiness(shared);
            (
                if ready { 200 } else { 503 },
                "application/json",
                body.to_string(),
            )
        }
        "/pools" => (200, "application/json", pools(shared).to_string()),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

/// True when the request carries `Authorization: Bearer <token>`.
fn bearer_matches(head: &[u8], token: &str) -> bool {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n").skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.trim();
        name.trim().eq_ignore_ascii_case("authorization")
            && value.len() > 7
            && value[..7].eq_ignore_ascii_case("bearer ")
            && crate::auth::constant_time_eq(value[7..].trim().as_bytes(), token.as_bytes())
    })
}

/// Every database with a topology needs a writer that is up; a database
/// without one is ready (nothing watches it; its errors reach clients).
fn readiness(shared: &Shared) -> (bool, Value) {
    let loaded = shared.config.load();
    let mut all = true;
    let mut dbs = serde_json::Map::new();
    let mut names: Vec<&String> = loaded.config.databases.keys().collect();
    names.sort();
    for name in names {
        let Some(d) = loaded.database(name) else {
            continue;
        };
        if !d.clusters.is_empty() {
            continue;
        }
        let entry = match shared.topology(name) {
            Some(topo) => {
                let snap = topo.snapshot();
                let writer = match snap.writer {
                    Writer::Node(w) if snap.nodes.get(w).is_some_and(|v| v.up) => {
                        topo.nodes.get(w).map(|n| n.addr.clone())
                    }
                    _ => None,
                };
                let ready = writer.is_some();
                all &= ready;
                json!({ "ready": ready, "primary": writer, "monitored": true })
            }
            None => json!({ "ready": true, "primary": d.primary, "monitored": false }),
        };
        dbs.insert(name.clone(), entry);
    }
    (all, json!({ "ready": all, "databases": dbs }))
}

fn pools(shared: &Shared) -> Value {
    let loaded = shared.config.load();
    let list: Vec<Value> = shared
        .pools
        .all()
        .iter()
        .map(|p| {
            let (idle, total, waiting) = p.counts();
            json!({
                "database": p.key.db,
                "user": p.key.user,
                "node": p.key.node,
                "addr": p.target().addr,
                "pool_mode": loaded.pool_mode(&p.key.db, &p.key.user).as_str(),
                "clients": p.stats.clients.load(Ordering::Relaxed),
                "waiting": waiting,
                "active_servers": total.saturating_sub(idle),
                "idle_servers": idle,
                "pool_size": p.settings().size,
            })
        })
        .collect();
    json!({ "pools": list })
}
