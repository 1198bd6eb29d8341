//! The status page (`GET /` on `admin_listen`): what a DBA wants on a
//! screen during an incident, in one server-rendered HTML page that
//! reloads itself every few seconds (no script).
//!
//! Its tables are the console's own (`SHOW NODES`, `SHOW POOLS`, `SHOW
//! TENANTS`), so the page and `psql` never disagree; the last minute's
//! rates and latency come from the `stats_period` window.

use std::fmt::Write;

use crate::admin::show;
use crate::admin::table::{Cell, Table};
use crate::shared::Shared;

/// Seconds between the page's reloads.
pub const REFRESH_SECS: u32 = 5;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.6em}\
table{border-collapse:collapse}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.down,.out_of_rotation,.refused{color:#b00;font-weight:600}.writer,.primary{font-weight:600}\
.waiting{color:#b60;font-weight:600}p.note{color:#666}";

/// The page.
pub fn render(shared: &Shared) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>pgwarden status</title><style>{STYLE}</style></head><body>\
         <h1>pgwarden {}</h1>",
        env!("CARGO_PKG_VERSION")
    );
    let pools = table(shared, "pools");
    let waiting: i64 = column_sum(&pools, "cl_waiting");
    let clients = shared.admission.clients();
    let class = if waiting > 0 {
        " class=\"waiting\""
    } else {
        ""
    };
    let _ = write!(
        out,
        "<p id=\"summary\">Clients: <b id=\"clients\">{clients}</b> &middot; \
         waiting for a server: <b id=\"waiting\"{class}>{waiting}</b></p>"
    );
    out.push_str("<h2>Nodes</h2>");
    html_table(
        &mut out,
        "nodes",
        &table(shared, "nodes"),
        &[
            "database",
            "node",
            "role",
            "region",
            "state",
            "lag_bytes",
            "lag_ms",
            "latency_us",
            "outstanding",
            "reads",
            "writes",
            "fallbacks",
        ],
    );
    out.push_str("<h2>Pools (one row per node)</h2>");
    html_table(
        &mut out,
        "pools",
        &pools,
        &[
            "database",
            "user",
            "host",
            "port",
            "role",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "maxwait",
            "pool_mode",
        ],
    );
    out.push_str("<h2>Last minute</h2>");
    html_table(&mut out, "minute", &last_minute(shared), &[]);
    out.push_str(
        "<p class=\"note\">Rates and latency of the last complete minute \
         (stats_period); zero during the first.</p><h2>Tenants</h2>",
    );
    html_table(&mut out, "tenants", &table(shared, "tenants"), &[]);
    out.push_str("</body></html>\n");
    out
}

fn table(shared: &Shared, what: &str) -> Table {
    show::show(shared, what).unwrap_or_else(|_| Table::new(&[]))
}

/// Per database: transactions and queries per second, mean transaction
/// time, and latency percentiles over the last period.
fn last_minute(shared: &Shared) -> Table {
    use crate::admin::table::Kind::Numeric;
    let mut t = Table::new(&[
        ("database", crate::admin::table::Kind::Text),
        ("xact_per_s", Numeric),
        ("query_per_s", Numeric),
        ("avg_xact_us", Numeric),
        ("avg_wait_us", Numeric),
        ("p50_us", Numeric),
        ("p95_us", Numeric),
        ("p99_us", Numeric),
    ]);
    let loaded = shared.config.load();
    let mut dbs: Vec<&String> = loaded.config.databases.keys().collect();
    dbs.sort();
    for db in dbs {
        let (avg, lat) = shared.stats.last_period(db);
        t.push(vec![
            db.as_str().into(),
            avg.xacts.into(),
            avg.queries.into(),
            avg.xact_us.into(),
            avg.wait_us.into(),
            lat.p50.into(),
            lat.p95.into(),
            lat.p99.into(),
        ]);
    }
    t
}

fn column_sum(t: &Table, name: &str) -> i64 {
    let Some(i) = t.columns.iter().position(|(c, _)| *c == name) else {
        return 0;
    };
    t.rows
        .iter()
        .filter_map(|r| match r.get(i) {
            Some(Cell::Int(n)) => Some(*n),
            _ => None,
        })
        .sum()
}

/// `t`'s `columns` (all when empty) as an HTML table with id `id`; each
/// cell's class is its column's name (and a state's value, for colour).
fn html_table(out: &mut String, id: &str, t: &Table, columns: &[&str]) {
    let picked: Vec<(usize, &str)> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| columns.is_empty() || columns.contains(name))
        .map(|(i, (name, _))| (i, *name))
        .collect();
    let _ = write!(out, "<table id=\"{id}\"><tr>");
    for (_, name) in &picked {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("</tr>");
    if t.rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td colspan=\"{}\">none</td></tr>",
            picked.len().max(1)
        );
    }
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, name) in &picked {
            match row.get(*i) {
                Some(Cell::Int(n)) => {
                    let _ = write!(out, "<td class=\"{name} num\">{n}</td>");
                }
                Some(Cell::Text(s)) => {
                    let value = escape(s);
                    let _ = write!(out, "<td class=\"{name} {}\">{value}</td>", class_of(s));
                }
                _ => {
                    let _ = write!(out, "<td class=\"{name}\"></td>");
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// A value usable as a CSS class (states and roles), else nothing.
fn class_of(value: &str) -> &str {
    match value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        true => value,
        false => "",
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::table::Kind;

    #[test]
    fn cells_are_escaped_and_classed() {
        let mut t = Table::new(&[
            ("node", Kind::Text),
            ("state", Kind::Text),
            ("n", Kind::Numeric),
        ]);
        t.push(vec!["<b>&".into(), "down".into(), 7i64.into()]);
        let mut out = String::new();
        html_table(&mut out, "x", &t, &["node", "state", "n"]);
        assert!(
            out.contains("<td class=\"node \">&lt;b&gt;&amp;</td>"),
            "{out}"
        );
        assert!(out.contains("<td class=\"state down\">down</td>"), "{out}");
        assert!(out.contains("<td class=\"n num\">7</td>"), "{out}");
    }
}
