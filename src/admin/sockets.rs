//! `SHOW CLIENTS` and `SHOW SERVERS`, in PgBouncer's columns: one row per
//! logged-in client, and per server (lent to a client, or idle in a pool).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::table::{Cell, Kind, Table};
use crate::shared::Shared;

use Kind::{Int4, Text};

const COLUMNS: [(&str, Kind); 18] = [
    ("type", Text),
    ("user", Text),
    ("database", Text),
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
];

fn host(a: Option<std::net::SocketAddr>) -> (Cell, Cell) {
    match a {
        Some(a) => (a.ip().to_string().into(), i32::from(a.port()).into()),
        None => ("".into(), 0.into()),
    }
}

pub fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&COLUMNS);
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
    for (key, control) in shared.cancels.sessions() {
        let Some(info) = control.info.get() else {
            continue;
        };
        let target = control.target();
        let ((addr, port), (local, local_port)) = match info.addr {
            Some(_) => (host(info.addr), host(info.local)),
            None => (unix(), unix()),
        };
        let connected = format_time(info.connected);
        // Waiting for a server (in line, behind PAUSE, or for a failover),
        // with PgBouncer's wait in seconds and the microseconds beyond.
        let waited = control.waiting_since().map(|t| t.elapsed());
        let (state, wait, wait_us) = match waited {
            Some(d) => (
                "waiting",
                i32::try_from(d.as_secs()).unwrap_or(i32::MAX),
                d.subsec_micros() as i32,
            ),
            None => ("active", 0, 0),
        };
        t.push(vec![
            "C".into(),
            info.user.to_string().into(),
            info.database.to_string().into(),
            state.into(),
            addr,
            port,
            local,
            local_port,
            connected.clone().into(),
            connected.into(),
            wait.into(),
            wait_us.into(),
            0.into(),
            format!("{key:#x}").into(),
            target
                .map_or(String::new(), |s| format!("{:#x}", s.process_id))
                .into(),
            0.into(),
            info.tls.to_string().into(),
            info.application_name.to_string().into(),
        ]);
    }
    t
}

pub fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&COLUMNS);
    let now = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| format_time(now.1 - now.0.saturating_duration_since(at));
    // Lent out: the sessions using them know them.
    for (key, control) in shared.cancels.sessions() {
        let (Some(info), Some(server)) = (control.info.get(), control.target()) else {
            continue;
        };
        let (addr, port) = host(Some(server.addr));
        t.push(vec![
            "S".into(),
            info.user.to_string().into(),
            info.database.to_string().into(),
            "active".into(),
            addr,
            port,
            "".into(),
            0.into(),
            "".into(),
            "".into(),
            0.into(),
            0.into(),
            0.into(),
            format!("{:#x}", server.process_id).into(),
            format!("{key:#x}").into(),
            server.process_id.into(),
            server.tls.to_string().into(),
            "".into(),
        ]);
    }
    for pool in shared.pools.all() {
        for s in pool.idle_servers() {
            let (addr, port) = host(Some(s.addr));
            let (local, local_port) = host(s.local);
            t.push(vec![
                "S".into(),
                pool.key.user.clone().into(),
                pool.key.db.clone().into(),
                "idle".into(),
                addr,
                port,
                local,
                local_port,
                wall(s.opened).into(),
                wall(s.used).into(),
                0.into(),
                0.into(),
                0.into(),
                format!("{:#x}", s.process_id).into(),
                "".into(),
                s.process_id.into(),
                s.tls.to_string().into(),
                "".into(),
            ]);
        }
    }
    t
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
