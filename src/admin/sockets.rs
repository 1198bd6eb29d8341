//! `SHOW CLIENTS`, `SHOW SERVERS`, `SHOW SOCKETS`, `SHOW ACTIVE_SOCKETS`
//! and `SHOW FDS`, in PgBouncer 1.25's columns: one row per logged-in
//! client, and per server (lent to a client, or idle in a pool).
//!
//! Columns of PgBouncer's internals that pgwarden has no counterpart of
//! are filled as PgBouncer fills them when unused: `replication` is
//! `none` (pgwarden refuses replication connections), a client's
//! `prepared_statements` is 0 (its statements are counted per server), and
//! the buffer positions of `SHOW SOCKETS` are 0 (pgwarden reads into
//! per-message buffers, not PgBouncer's iobuf).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::Stamp;

use super::table::{Cell, Kind, Table};
use crate::shared::Shared;

use Kind::{Int4, Int8, Text};

const COLUMNS: [(&str, Kind); 21] = [
    ("type", Text),
    ("user", Text),
    ("database", Text),
    ("replication", Text),
    ("state", Text),
    ("addr", Text),
    ("port", Int4),
    ("local_addr", Text),
    ("local_port", Int4),
    ("connect_time", Text),
    ("request_time", Text),
    ("wait", Int4),
    ("wait_us", Int4),
    ("close_needed", Int4),
    ("ptr", Text),
    ("link", Text),
    ("remote_pid", Int4),
    ("tls", Text),
    ("application_name", Text),
    ("prepared_statements", Int4),
    ("id", Int8),
];

/// `SHOW SOCKETS` adds PgBouncer's buffer positions.
const DEBUG_COLUMNS: [(&str, Kind); 7] = [
    ("recv_pos", Int4),
    ("pkt_pos", Int4),
    ("pkt_remain", Int4),
    ("send_pos", Int4),
    ("send_remain", Int4),
    ("pkt_avail", Int4),
    ("send_avail", Int4),
];

/// One connection, client or server, as the socket tables show it.
struct Socket {
    server: bool,
    user: String,
    database: String,
    /// `active` (linked), `idle` or `waiting`.
    state: &'static str,
    addr: (Cell, Cell),
    local: (Cell, Cell),
    connect_time: String,
    request_time: String,
    wait: (i32, i32),
    ptr: String,
    /// Its partner's `ptr`, empty when it has none.
    link: String,
    remote_pid: i32,
    tls: String,
    application_name: String,
    prepared: usize,
    id: u64,
    fd: i32,
    /// Its partner's descriptor (`SHOW FDS`).
    link_fd: Option<i32>,
    cancel_key: i64,
}

impl Socket {
    fn cells(self, state: String, debug: bool) -> Vec<Cell> {
        let mut row: Vec<Cell> = vec![
            if self.server { "S" } else { "C" }.into(),
            self.user.into(),
            self.database.into(),
            "none".into(),
            state.into(),
            self.addr.0,
            self.addr.1,
            self.local.0,
            self.local.1,
            self.connect_time.into(),
            self.request_time.into(),
            self.wait.0.into(),
            self.wait.1.into(),
            0.into(),
            self.ptr.into(),
            self.link.into(),
            self.remote_pid.into(),
            self.tls.into(),
            self.application_name.into(),
            self.prepared.into(),
            self.id.into(),
        ];
        if debug {
            row.extend(DEBUG_COLUMNS.map(|_| Cell::Int(0)));
        }
        row
    }
}

fn host(a: Option<std::net::SocketAddr>) -> (Cell, Cell) {
    match a {
        Some(a) => (a.ip().to_string().into(), i32::from(a.port()).into()),
        None => ("".into(), 0.into()),
    }
}

/// Every logged-in client.
fn client_sockets(shared: &Shared) -> Vec<Socket> {
    // A client of the Unix socket has no address: PgBouncer shows `unix`
    // and the listening port, on both ends.
    // Read once per table, not once per socket client.
    let unix_port = {
        let loaded = shared.config.load();
        let listen = &loaded.config.proxy.listen;
        listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let unix = || -> (Cell, Cell) { ("unix".into(), unix_port.into()) };
    let mut all = Vec::new();
    for (key, control) in shared.cancels.sessions() {
        let Some(info) = control.info.get() else {
            continue;
        };
        let target = control.target();
        let (addr, local) = match info.addr {
            Some(_) => (host(info.addr), host(info.local)),
            None => (unix(), unix()),
        };
        let connected = format_time(info.connected);
        // Waiting for a server (in line, behind PAUSE, or for a failover),
        // with PgBouncer's wait in seconds and the microseconds beyond.
        let waited = control.waiting_since().map(|t| t.elapsed());
        let (state, wait) = match (waited, target) {
            (Some(d), _) => (
                "waiting",
                (
                    i32::try_from(d.as_secs()).unwrap_or(i32::MAX),
                    d.subsec_micros() as i32,
                ),
            ),
            (None, Some(_)) => ("active", (0, 0)),
            (None, None) => ("idle", (0, 0)),
        };
        all.push(Socket {
            server: false,
            user: info.user.to_string(),
            database: info.database.to_string(),
            state,
            addr,
            local,
            connect_time: connected.clone(),
            request_time: connected,
            wait,
            ptr: format!("{key:#x}"),
            link: target.map_or(String::new(), |s| format!("{:#x}", s.process_id)),
            remote_pid: 0,
            tls: info.tls.to_string(),
            application_name: info.application_name.to_string(),
            prepared: 0,
            id: info.id,
            fd: info.fd,
            link_fd: target.map(|s| s.fd),
            cancel_key: i64::from(key),
        });
    }
    all
}

/// Every server: lent out (its session knows it) or idle in a pool.
fn server_sockets(shared: &Shared) -> Vec<Socket> {
    let now = (Stamp::now(), SystemTime::now());
    let wall = |at: Stamp| format_time(now.1 - now.0.since(at));
    let mut all = Vec::new();
    for (key, control) in shared.cancels.sessions() {
        let (Some(info), Some(server)) = (control.info.get(), control.target()) else {
            continue;
        };
        all.push(Socket {
            server: true,
            user: info.user.to_string(),
            database: info.database.to_string(),
            state: "active",
            addr: host(Some(server.addr)),
            local: ("".into(), 0.into()),
            connect_time: String::new(),
            request_time: String::new(),
            wait: (0, 0),
            ptr: format!("{:#x}", server.process_id),
            link: format!("{key:#x}"),
            remote_pid: server.process_id,
            tls: server.tls.to_string(),
            application_name: String::new(),
            prepared: 0,
            id: server.id,
            fd: server.fd,
            link_fd: Some(info.fd),
            cancel_key: i64::from(server.process_id),
        });
    }
    for pool in shared.pools.all() {
        for s in pool.idle_servers() {
            all.push(Socket {
                server: true,
                user: pool.key.user.clone(),
                database: pool.key.db.clone(),
                state: "idle",
                addr: host(Some(s.addr)),
                local: host(s.local),
                connect_time: wall(s.opened),
                request_time: wall(s.used),
                wait: (0, 0),
                ptr: format!("{:#x}", s.process_id),
                link: String::new(),
                remote_pid: s.process_id,
                tls: s.tls.to_string(),
                application_name: String::new(),
                prepared: s.prepared,
                id: s.id,
                fd: s.fd,
                link_fd: None,
                cancel_key: i64::from(s.process_id),
            });
        }
    }
    all
}

pub fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&COLUMNS);
    for s in client_sockets(shared) {
        let state = s.state.to_owned();
        t.push(s.cells(state, false));
    }
    t
}

pub fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&COLUMNS);
    for s in server_sockets(shared) {
        let state = s.state.to_owned();
        t.push(s.cells(state, false));
    }
    t
}

/// `SHOW SOCKETS` (every socket) or `SHOW ACTIVE_SOCKETS` (those linked
/// to a partner: PgBouncer's "with data in flight"), with PgBouncer's
/// `cl_`/`sv_` states and buffer columns.
pub fn sockets(shared: &Shared, active_only: bool) -> Table {
    let mut columns = COLUMNS.to_vec();
    columns.extend(DEBUG_COLUMNS);
    let mut t = Table::new(&columns);
    let all = client_sockets(shared)
        .into_iter()
        .chain(server_sockets(shared));
    for s in all {
        if active_only && s.state != "active" {
            continue;
        }
        let state = match (s.server, s.state) {
            (false, "idle") => "cl_active".to_owned(),
            (false, st) => format!("cl_{st}"),
            (true, st) => format!("sv_{st}"),
        };
        t.push(s.cells(state, true));
    }
    t
}

/// `SHOW FDS`: each client and server socket's descriptor. Sent as a
/// table only: PgBouncer's passing of descriptors to a new process (its
/// old online restart) is not how pgwarden restarts.
pub fn fds(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("fd", Int4),
        ("task", Text),
        ("user", Text),
        ("database", Text),
        ("addr", Text),
        ("port", Int4),
        ("cancel", Int8),
        ("link", Int4),
    ]);
    let all = client_sockets(shared)
        .into_iter()
        .chain(server_sockets(shared));
    for s in all {
        t.push(vec![
            s.fd.into(),
            if s.server { "server" } else { "client" }.into(),
            s.user.into(),
            s.database.into(),
            s.addr.0,
            s.addr.1,
            s.cancel_key.into(),
            s.link_fd.map_or(Cell::Null, |fd| fd.into()),
        ]);
    }
    t
}

/// `SHOW DNS_HOSTS`: the host names servers were resolved from.
pub fn dns_hosts() -> Table {
    let mut t = Table::new(&[("hostname", Text), ("ttl", Int8), ("addrs", Text)]);
    for h in crate::net::dns::hosts() {
        t.push(vec![h.hostname.into(), h.ttl.into(), h.addrs.into()]);
    }
    t
}

/// `SHOW DNS_ZONES`: always empty, as PgBouncer's without
/// `dns_zone_check_period`: pgwarden does not watch zone serials.
pub fn dns_zones() -> Table {
    Table::new(&[("zonename", Text), ("serial", Int8), ("count", Int4)])
}

/// `2026-11-23 21:38:47 UTC`, as PgBouncer prints times.
pub fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_as_pgbouncer_prints_them() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_469_927);
        assert_eq!(format_time(t), "2026-11-23 21:38:47 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_time(leap), "2000-02-29 00:00:00 UTC");
    }
}
