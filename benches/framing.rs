//! Micro-benchmarks of the per-transaction hot path: walking message
//! headers of what a server answers and what a client sends, the only
//! work pgwarden does on bytes it forwards.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgwarden::wire::codec::{Item, Scanner, Step, TagSet};

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// What PostgreSQL answers to pgbench -S: one row, one column.
fn select_answer() -> Vec<u8> {
    let mut v = Vec::new();
    msg(
        &mut v,
        b'T',
        b"\0\x01abalance\0\0\0\x40\x0a\0\x03\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
    );
    msg(&mut v, b'D', b"\0\x01\0\0\0\x041234");
    msg(&mut v, b'C', b"SELECT 1\0");
    msg(&mut v, b'Z', b"I");
    v
}

fn big_result(rows: usize) -> Vec<u8> {
    let mut v = Vec::new();
    msg(
        &mut v,
        b'T',
        b"\0\x01x\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
    );
    for i in 0..rows {
        let text = format!("row number {i} with some padding text to look like data");
        let mut body = vec![0, 1];
        body.extend_from_slice(&(text.len() as u32).to_be_bytes());
        body.extend_from_slice(text.as_bytes());
        msg(&mut v, b'D', &body);
    }
    msg(&mut v, b'C', b"SELECT 1000\0");
    msg(&mut v, b'Z', b"I");
    v
}

const SERVER_WHOLE: TagSet = TagSet::of(b"Z");

/// Walks a buffer the way the session does and returns the last ReadyForQuery status.
fn walk(buf: &[u8]) -> u8 {
    let mut s = Scanner::new();
    let mut pos = 0;
    let mut status = 0;
    while let Ok(Step::Item(item, used)) = s.next(&buf[pos..], &SERVER_WHOLE, i32::MAX as usize) {
        if let Item::Message { body, .. } = item {
            status = body[0];
        }
        pos += used;
    }
    status
}

fn bench(c: &mut Criterion) {
    let small = select_answer();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("pgbench_select_answer", |b| {
        b.iter(|| walk(black_box(&small)))
    });
    let big = big_result(1000);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("result_1000_rows", |b| b.iter(|| walk(black_box(&big))));
    let mut query = Vec::new();
    msg(
        &mut query,
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;\0",
    );
    g.throughput(Throughput::Bytes(query.len() as u64));
    g.bench_function("client_query", |b| b.iter(|| walk(black_box(&query))));
    g.finish();

    // Routing: one classification per transaction (issue target: < 1 µs).
    let mut r = c.benchmark_group("classify");
    for (name, sql) in [
        ("pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
        ("pgbench_update", "UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 48213;"),
        (
            "join_with_functions",
            "SELECT o.id, lower(c.name), count(*) FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE o.created_at > now() - interval '1 day' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20",
        ),
    ] {
        r.bench_function(name, |b| {
            b.iter(|| pgwarden::routing::classify(black_box(sql.as_bytes()), &[]))
        });
    }
    // The memo by shape: each text differs from the last in its number.
    let texts = [
        &b"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"[..],
        &b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;"[..],
    ];
    let mut turn = 0;
    r.bench_function("pgbench_select_remembered", |b| {
        b.iter(|| {
            turn ^= 1;
            pgwarden::routing::classify_remembered(black_box(texts[turn]), &[])
        })
    });
    r.bench_function("same_shape", |b| {
        b.iter(|| pgwarden::sql::shape::same_shape(black_box(texts[0]), black_box(texts[1])))
    });
    let mut unit = Vec::new();
    msg(
        &mut unit,
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;\0",
    );
    r.bench_function("first_unit_query", |b| {
        b.iter(|| pgwarden::routing::unit::first_unit(black_box(&unit), 1 << 20, &[], |_| None))
    });
    r.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
