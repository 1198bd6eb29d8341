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
