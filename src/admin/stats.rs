//! `SHOW STATS`, `STATS_TOTALS` and `STATS_AVERAGES`, from the totals and
//! the last period's averages that [`crate::stats`] keeps.

use crate::pool::Pools;
use crate::stats::{totals, Totals, Window};

use super::table::{Kind, Table};

const TOTALS: [&str; 7] = [
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
];

fn cells(t: &Totals) -> [u64; 7] {
    [
        t.xacts, t.queries, t.recv, t.sent, t.xact_us, t.query_us, t.wait_us,
    ]
}

/// `SHOW STATS`, `SHOW STATS_TOTALS` or `SHOW STATS_AVERAGES`.
pub fn table(what: &str, pools: &Pools, window: &Window) -> Table {
    let mut columns: Vec<(&'static str, Kind)> = vec![("database", Kind::Text)];
    let (with_totals, with_avgs) = match what {
        "stats_totals" => (true, false),
        "stats_averages" => (false, true),
        _ => (true, true),
    };
    if what == "stats" {
        columns.extend(
            [
                "total_xact_count",
                "total_query_count",
                "total_received",
                "total_sent",
                "total_xact_time",
                "total_query_time",
                "total_wait_time",
                "avg_xact_count",
                "avg_query_count",
                "avg_recv",
                "avg_sent",
                "avg_xact_time",
                "avg_query_time",
                "avg_wait_time",
                // PgBouncer before 1.8 called query counts requests; the
                // exporter Debian ships still reads this column.
                "total_requests",
            ]
            .map(|c| (c, Kind::Numeric)),
        );
    } else {
        columns.extend(TOTALS.map(|c| (c, Kind::Numeric)));
    }
    let mut t = Table::new(&columns);
    for (db, totals) in totals(pools) {
        let mut row = vec![db.clone().into()];
        if with_totals {
            row.extend(cells(&totals).map(Into::into));
        }
        if with_avgs {
            row.extend(cells(&window.averages(&db)).map(Into::into));
        }
        if what == "stats" {
            row.push(totals.queries.into());
        }
        t.push(row);
    }
    t
}

/// `SHOW TOTALS`: `SHOW STATS` summed over every database, as PgBouncer's
/// `name`/`value` rows. The prepared-statement counts and the average of
/// server assignments are not kept by pgwarden: 0 (README, compatibility).
pub fn totals_table(pools: &Pools, window: &Window) -> Table {
    let mut sum = Totals::default();
    let mut avg = Totals::default();
    let (mut xact_us, mut query_us) = (0u128, 0u128);
    for (db, t) in totals(pools) {
        sum.xacts += t.xacts;
        sum.queries += t.queries;
        sum.recv += t.recv;
        sum.sent += t.sent;
        sum.xact_us += t.xact_us;
        sum.query_us += t.query_us;
        sum.wait_us += t.wait_us;
        let a = window.averages(&db);
        avg.xacts += a.xacts;
        avg.queries += a.queries;
        avg.recv += a.recv;
        avg.sent += a.sent;
        avg.wait_us += a.wait_us;
        // Per-transaction and per-query times, weighted by their counts.
        xact_us += u128::from(a.xact_us) * u128::from(a.xacts);
        query_us += u128::from(a.query_us) * u128::from(a.queries);
    }
    let per = |total: u128, n: u64| u64::try_from(total / u128::from(n.max(1))).unwrap_or(u64::MAX);
    avg.xact_us = per(xact_us, avg.xacts);
    avg.query_us = per(query_us, avg.queries);
    let assignments: u64 = pools
        .all()
        .iter()
        .map(|p| p.stats.checkouts.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let rows: [(&str, u64); 22] = [
        ("total_server_assignment_count", assignments),
        ("total_xact_count", sum.xacts),
        ("total_query_count", sum.queries),
        ("total_client_bytes", sum.recv),
        ("total_server_bytes", sum.sent),
        ("total_xact_time", sum.xact_us),
        ("total_query_time", sum.query_us),
        ("total_wait_time", sum.wait_us),
        ("total_client_parse_count", 0),
        ("total_server_parse_count", 0),
        ("total_bind_count", 0),
        ("avg_server_assignment_count", 0),
        ("avg_xact_count", avg.xacts),
        ("avg_query_count", avg.queries),
        ("avg_client_bytes", avg.recv),
        ("avg_server_bytes", avg.sent),
        ("avg_xact_time", avg.xact_us),
        ("avg_query_time", avg.query_us),
        ("avg_wait_time", avg.wait_us),
        ("avg_client_parse_count", 0),
        ("avg_server_parse_count", 0),
        ("avg_bind_count", 0),
    ];
    let mut t = Table::new(&[("name", Kind::Text), ("value", Kind::Numeric)]);
    for (name, value) in rows {
        t.push(vec![name.into(), value.into()]);
    }
    t
}
