//! Named prepared statements in transaction mode: a client's statements
//! work on whichever server runs its transaction, with real drivers and
//! tools, under eviction and after errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;

use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_with_prepared_statements_on_five_servers() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 5).await;
    let url = url(&proxy, MD5_USER, PASSWORD, DB);
    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect_url(&url).await?;
            let add = client.prepare("SELECT $1::int + 1").await?;
            let concat = client.prepare("SELECT $1::text || '-' || $2::text").await?;
            for j in 0..20i32 {
                let n: i32 = client.query_one(&add, &[&(i * 100 + j)]).await?.get(0);
                assert_eq!(n, i * 100 + j + 1);
                let s: String = client
                    .query_one(&concat, &[&i.to_string(), &j.to_string()])
                    .await?
                    .get(0);
                assert_eq!(s, format!("{i}-{j}"));
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_prepared_on_one_server_runs_on_another() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let a = connect(&proxy, SCRAM_USER).await.unwrap();
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    // Warm both servers so the pool has two.
    b.batch_execute("BEGIN").await.unwrap();
    backend_pid(&a).await;
    b.batch_execute("COMMIT").await.unwrap();
    let stmt = a.prepare("SELECT $1::int * 2").await.unwrap();
    // b takes the server a just used (last in, first out); a moves.
    b.batch_execute("BEGIN").await.unwrap();
    let b_pid = backend_pid(&b).await;
    let a_pid = backend_pid(&a).await;
    assert_ne!(a_pid, b_pid, "a now runs on the other server");
    let v: i32 = a.query_one(&stmt, &[&21]).await.unwrap().get(0);
    assert_eq!(v, 42);
    b.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_at_most_max_prepared_statements_per_server() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.max_prepared_statements = 2;
    })
    .await;
    let client = connect(&proxy, PLAIN_USER).await.unwrap();
    let mut stmts = Vec::new();
    for k in 0..8 {
        stmts.push(
            client
                .prepare(&format!("SELECT $1::int + {k}"))
                .await
                .unwrap(),
        );
    }
    for round in 0..3 {
        for (k, stmt) in stmts.iter().enumerate() {
            let v: i32 = client.query_one(stmt, &[&round]).await.unwrap().get(0);
            assert_eq!(v, round + k as i32);
        }
    }
    let on_server: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        on_server <= 2,
        "{on_server} statements prepared on the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_a_batch_leaves_the_pool_consistent() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 1).await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let div = client.prepare("SELECT 10 / $1::int").await.unwrap();
    let err = client.query_one(&div, &[&0]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22012"));
    // A statement prepared after the error, and the failed one, both work.
    let other = client.prepare("SELECT $1::int - 1").await.unwrap();
    let v: i32 = client.query_one(&div, &[&5]).await.unwrap().get(0);
    assert_eq!(v, 2);
    let v: i32 = client.query_one(&other, &[&5]).await.unwrap().get(0);
    assert_eq!(v, 4);
    // And another client on the same server is unaffected.
    let second = connect(&proxy, SCRAM_USER).await.unwrap();
    let s = second.prepare("SELECT 10 / $1::int").await.unwrap();
    let v: i32 = second.query_one(&s, &[&2]).await.unwrap().get(0);
    assert_eq!(v, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_statements_from_clients_share_one_server_statement() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 1).await;
    let clients: Vec<_> = clients_of(&proxy, 5).await;
    for c in &clients {
        let s = c.prepare("SELECT 'shared'::text").await.unwrap();
        let v: String = c.query_one(&s, &[]).await.unwrap().get(0);
        assert_eq!(v, "shared");
    }
    let on_server: i64 = clients[0]
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT ''shared''::text'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_server, 1);
}

async fn clients_of(proxy: &pgwarden::app::Proxy, n: usize) -> Vec<Arc<tokio_postgres::Client>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Arc::new(connect(proxy, MD5_USER).await.unwrap()));
    }
    v
}

/// pgbench (15) prepares each statement with a blocking `PQprepare` on
/// first use, which stalls the whole pgbench thread: with more clients
/// than servers, a thread blocked waiting for a server can hold back the
/// client that would free one. So clients = servers here; statements still
/// move, since each transaction takes whichever server is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_mode_runs_without_errors() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 4).await;
    let port = proxy.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        let (ok, text) = pgbench(port, &["-i", "-s", "1", "-q"]);
        assert!(ok, "pgbench -i failed: {text}");
        pgbench(
            port,
            &["-M", "prepared", "-c", "4", "-j", "2", "-T", "10", "-n"],
        )
    })
    .await
    .unwrap();
    assert!(out.0, "pgbench failed: {}", out.1);
    assert!(
        out.1.contains("number of failed transactions: 0"),
        "{}",
        out.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_with_prepared_statements() {
    let Some(python) = python_with_drivers() else {
        missing_dependency("Python with asyncpg and psycopg");
        return;
    };
    run_driver_script(python, "python_drivers.py", &[]).await;
}

/// Raw extended-protocol messages, for sequences drivers do not expose.
mod raw {
    use bytes::{BufMut, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
        out.put_u8(tag);
        out.put_u32(4 + body.len() as u32);
        out.put_slice(body);
    }

    pub fn parse(out: &mut BytesMut, name: &str, sql: &str) {
        msg(
            out,
            b'P',
            &[name.as_bytes(), b"\0", sql.as_bytes(), b"\0\0\0"].concat(),
        );
    }

    pub fn bind_execute(out: &mut BytesMut, name: &str) {
        msg(
            out,
            b'B',
            &[b"\0", name.as_bytes(), b"\0\0\0\0\0\0\0"].concat(),
        );
        msg(out, b'E', b"\0\0\0\0\0");
    }

    pub fn close(out: &mut BytesMut, name: &str) {
        msg(out, b'C', &[b"S", name.as_bytes(), b"\0"].concat());
    }

    pub fn sync(out: &mut BytesMut) {
        msg(out, b'S', b"");
    }

    /// Sends `out` and reads the answers up to ReadyForQuery, as a string
    /// of tags, with each DataRow's first column in brackets.
    pub async fn exchange(sock: &mut TcpStream, out: &BytesMut) -> String {
        sock.write_all(out).await.unwrap();
        let mut buf = Vec::new();
        let mut seen = String::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed; saw {seen}");
            buf.extend_from_slice(&chunk[..n]);
            let mut pos = 0;
            while let Ok(Some((tag, body, used))) =
                pgwarden::wire::codec::decode_whole(&buf[pos..], 1 << 20)
            {
                pos += used;
                seen.push(tag as char);
                if tag == b'D' {
                    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
                    seen.push_str(&format!("[{}]", String::from_utf8_lossy(&body[6..6 + len])));
                }
                if tag == b'Z' {
                    return seen;
                }
            }
            buf.drain(..pos);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_then_reparse_same_name_with_other_text_in_one_pipeline() {
    let proxy = proxy(|c| {
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
        c.proxy.default_pool_size = 2;
    })
    .await;
    let mut sock = raw_login(&proxy).await;
    let mut out = bytes::BytesMut::new();
    raw::parse(&mut out, "s", "SELECT 'one'");
    raw::bind_execute(&mut out, "s");
    raw::close(&mut out, "s");
    raw::parse(&mut out, "s", "SELECT 'two'");
    raw::bind_execute(&mut out, "s");
    raw::sync(&mut out);
    // Every answer in order, pgwarden's own CloseComplete ('3') included.
    assert_eq!(raw::exchange(&mut sock, &out).await, "12D[one]C312D[two]CZ");
    // A second client preparing the first text under the same name gets it,
    // not the other client's second text.
    let mut other = raw_login(&proxy).await;
    let mut out = bytes::BytesMut::new();
    raw::parse(&mut out, "s", "SELECT 'one'");
    raw::bind_execute(&mut out, "s");
    raw::sync(&mut out);
    assert_eq!(raw::exchange(&mut other, &out).await, "12D[one]CZ");
    // And the first client's "s" is still its second text, on any server.
    let mut out = bytes::BytesMut::new();
    raw::bind_execute(&mut out, "s");
    raw::sync(&mut out);
    assert_eq!(raw::exchange(&mut sock, &out).await, "2D[two]CZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_is_refused_with_a_clear_error() {
    let proxy = proxy(|_| {}).await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = client
        .simple_query("PREPARE p AS SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"));
    let db = err.as_db_error().unwrap();
    assert!(db.message().contains("SQL PREPARE"), "{}", db.message());
    assert!(db.hint().unwrap_or("").contains("pool_mode = session"));
    // Inside a transaction it fails the transaction, as any error would.
    client.batch_execute("BEGIN").await.unwrap();
    assert!(client.simple_query("prepare q as select 2").await.is_err());
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.unwrap();
    // DEALLOCATE and EXECUTE pass through to PostgreSQL's own answers.
    let err = client.simple_query("EXECUTE p").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_named_queries() {
    let modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nodeenv/node_modules");
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node || !modules.join("pg").exists() {
        missing_dependency("node with node-postgres");
        return;
    }
    run_driver_script("node".into(), "node_pg.js", &[("NODE_PATH", modules)]).await;
}

/// Runs `tests/drivers/<script>` with `program` against a fresh proxy (3
/// servers) and expects it to print OK.
async fn run_driver_script(
    program: std::path::PathBuf,
    script: &str,
    env: &[(&str, std::path::PathBuf)],
) {
    let proxy = proxy(|c| c.proxy.default_pool_size = 3).await;
    let url = format!(
        "postgresql://{MD5_USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
        proxy.addr.port()
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(script);
    let out = tokio::process::Command::new(program)
        .arg(path)
        .arg(url)
        .envs(env.iter().cloned())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("OK"), "{text}");
}
