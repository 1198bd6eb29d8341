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
    use tokio::io::AsyncWriteExt;
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

    pub fn query(out: &mut BytesMut, sql: &str) {
        msg(out, b'Q', &[sql.as_bytes(), b"\0"].concat());
    }

    pub fn describe_statement(out: &mut BytesMut, name: &str) {
        msg(out, b'D', &[b"S", name.as_bytes(), b"\0"].concat());
    }

    /// One message of a [`batch`].
    #[derive(Debug)]
    pub enum Msg {
        Parse(&'static str, &'static str),
        BindExecute(&'static str),
        Query(&'static str),
        Sync,
    }

    pub fn batch(msgs: &[Msg]) -> BytesMut {
        let mut out = BytesMut::new();
        for m in msgs {
            match m {
                Msg::Parse(name, sql) => parse(&mut out, name, sql),
                Msg::BindExecute(name) => bind_execute(&mut out, name),
                Msg::Query(sql) => query(&mut out, sql),
                Msg::Sync => sync(&mut out),
            }
        }
        out
    }

    pub fn sync(out: &mut BytesMut) {
        msg(out, b'S', b"");
    }

    /// Sends `out` and reads the answers up to ReadyForQuery, as a string
    /// of tags, with each DataRow's first column and each error's SQLSTATE
    /// in brackets.
    pub async fn exchange(sock: &mut TcpStream, out: &BytesMut) -> String {
        exchange_until(sock, out, 1).await
    }

    /// [`exchange`] up to the `n`th ReadyForQuery.
    pub async fn exchange_until(sock: &mut TcpStream, out: &BytesMut, mut zs: usize) -> String {
        sock.write_all(out).await.unwrap();
        let messages = super::read_messages(sock, |tag, _| {
            zs -= usize::from(tag == b'Z');
            zs == 0
        })
        .await;
        let mut seen = String::new();
        for (tag, body) in messages {
            seen.push(tag as char);
            if tag == b'E' {
                // The SQLSTATE field.
                let code = body
                    .split(|&b| b == 0)
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
                seen.push_str(&format!("[{}]", code.unwrap_or_default()));
            }
            if tag == b'D' {
                let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
                seen.push_str(&format!("[{}]", String::from_utf8_lossy(&body[6..6 + len])));
            }
        }
        seen
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
async fn second_parse_of_a_name_is_refused_and_the_first_kept() {
    use raw::Msg::{BindExecute as BE, Parse as P, Query as Q, Sync as S};
    let proxy = proxy(|c| {
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
        c.proxy.default_pool_size = 2;
    })
    .await;
    let mut sock = raw_login(&proxy).await;
    let steps: &[(&[raw::Msg], &str)] = &[
        (&[P("s", "SELECT 'one'"), S], "1Z"),
        // PostgreSQL: 42P05, and the rest of the batch skipped to its Sync.
        (&[P("s", "SELECT 'two'"), BE("s"), S], "E[42P05]Z"),
        // Even the same text again is a duplicate.
        (&[P("s", "SELECT 'one'"), S], "E[42P05]Z"),
        (&[BE("s"), S], "2D[one]CZ"),
        // A Parse the server refuses makes no name: the name is free again.
        (&[P("t", "SELEC 1"), S], "E[42601]Z"),
        (&[P("t", "SELECT 't'"), BE("t"), S], "12D[t]CZ"),
        // In a transaction block the duplicate fails the transaction, as
        // PostgreSQL's own error does.
        (&[Q("BEGIN")], "CZ"),
        (&[P("s", "SELECT 'three'"), S], "E[42P05]Z"),
        (&[Q("SELECT 1")], "E[25P02]Z"),
        (&[Q("ROLLBACK")], "CZ"),
    ];
    for (msgs, want) in steps {
        let got = raw::exchange(&mut sock, &raw::batch(msgs)).await;
        assert_eq!(&got, want, "{msgs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_retry_after_a_failed_prepare_is_not_a_duplicate() {
    let proxy = proxy(|c| {
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
        c.proxy.default_pool_size = 2;
    })
    .await;
    let mut sock = raw_login(&proxy).await;
    for round in 0..20 {
        // All sent at once, as a pipelining driver does: PostgreSQL runs
        // them in order, so the retry finds the name free.
        let mut out = bytes::BytesMut::new();
        raw::query(&mut out, &format!("PREPARE r{round} AS SELEC 1"));
        raw::query(&mut out, &format!("PREPARE r{round} AS SELECT 'ok'"));
        raw::query(&mut out, &format!("EXECUTE r{round}"));
        raw::parse(&mut out, &format!("p{round}"), "SELEC 2");
        raw::sync(&mut out);
        raw::parse(&mut out, &format!("p{round}"), "SELECT 'p'");
        raw::bind_execute(&mut out, &format!("p{round}"));
        raw::sync(&mut out);
        assert_eq!(
            raw::exchange_until(&mut sock, &out, 5).await,
            "E[42601]ZCZTD[ok]CZE[42601]Z12D[p]CZ",
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_names_are_never_reachable_by_a_client() {
    let proxy = proxy(|c| {
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
        c.proxy.default_pool_size = 1;
    })
    .await;
    let mut a = raw_login(&proxy).await;
    let mut out = bytes::BytesMut::new();
    raw::parse(&mut out, "mine", "SELECT 'a secret'");
    raw::query(&mut out, "PREPARE sqlmine AS SELECT 'another secret'");
    assert_eq!(raw::exchange(&mut a, &out).await, "1CZ");
    // One server: b runs on the server that has a's statements, and tries
    // their server-side names every way a client can name a statement.
    let mut b = raw_login(&proxy).await;
    for n in 1..=20 {
        let name = format!("pgw_{n}");
        let mut out = bytes::BytesMut::new();
        raw::bind_execute(&mut out, &name);
        raw::sync(&mut out);
        assert_eq!(raw::exchange(&mut b, &out).await, "E[26000]Z", "{name}");
        let mut out = bytes::BytesMut::new();
        raw::query(&mut out, &format!("EXECUTE {name}"));
        assert_eq!(raw::exchange(&mut b, &out).await, "E[26000]Z", "{name}");
        let mut out = bytes::BytesMut::new();
        raw::describe_statement(&mut out, &name);
        raw::sync(&mut out);
        assert_eq!(raw::exchange(&mut b, &out).await, "E[26000]Z", "{name}");
    }
    let mut out = bytes::BytesMut::new();
    raw::query(&mut out, "EXECUTE mine");
    assert_eq!(raw::exchange(&mut b, &out).await, "E[26000]Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_execute_deallocate_follow_the_client_across_servers() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let a = connect(&proxy, SCRAM_USER).await.unwrap();
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    a.simple_query("PREPARE Double (int) AS SELECT $1 * 2;")
        .await
        .unwrap();
    assert_eq!(
        one(&a, "EXECUTE double(21)").await.unwrap().as_deref(),
        Some("42")
    );
    // b holds a's last server in a transaction: a's next EXECUTE runs on the
    // other server, which has never seen the statement.
    b.batch_execute("BEGIN").await.unwrap();
    let b_pid = backend_pid(&b).await;
    let a_pid = backend_pid(&a).await;
    assert_ne!(a_pid, b_pid);
    assert_eq!(
        one(&a, "/* moved */ EXECUTE \"double\" (5)")
            .await
            .unwrap()
            .as_deref(),
        Some("10")
    );
    // b cannot see a's statement, even on the server where it is prepared.
    let err = one(&b, "EXECUTE double(1)").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    b.batch_execute("ROLLBACK").await.unwrap();
    // PREPARE of a taken name: 42P05, the first statement kept.
    let err = one(&a, "PREPARE double AS SELECT 'other'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42P05"));
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("\"double\" already exists"));
    assert_eq!(
        one(&a, "EXECUTE double(2)").await.unwrap().as_deref(),
        Some("4")
    );
    // b may use the same name for its own statement.
    b.simple_query("PREPARE double AS SELECT 'b'")
        .await
        .unwrap();
    assert_eq!(
        one(&b, "EXECUTE double").await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(
        one(&a, "EXECUTE double(3)").await.unwrap().as_deref(),
        Some("6")
    );
    // A PREPARE the server refuses makes no name.
    let err = one(&a, "PREPARE broken AS SELEC 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42601"));
    a.simple_query("PREPARE broken AS SELECT 'fixed'")
        .await
        .unwrap();
    assert_eq!(
        one(&a, "EXECUTE broken").await.unwrap().as_deref(),
        Some("fixed")
    );
    // Prepared inside a transaction that fails, it stays (as PostgreSQL's do),
    // and a PREPARE in the failed transaction fails with it.
    a.batch_execute("BEGIN").await.unwrap();
    a.simple_query("PREPARE in_tx AS SELECT 'kept'")
        .await
        .unwrap();
    assert!(a.simple_query("SELECT 1/0").await.is_err());
    let err = one(&a, "PREPARE too_late AS SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        one(&a, "EXECUTE in_tx").await.unwrap().as_deref(),
        Some("kept")
    );
    a.simple_query("PREPARE too_late AS SELECT 'now'")
        .await
        .unwrap();
    // Several statements in one query cannot be carried: a clear refusal.
    let err = one(&a, "PREPARE x AS SELECT 1; EXECUTE x")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"));
    // DEALLOCATE and DEALLOCATE ALL.
    a.simple_query("DEALLOCATE double").await.unwrap();
    let err = one(&a, "EXECUTE double(1)").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    let err = one(&a, "DEALLOCATE double").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    assert_eq!(
        one(&b, "EXECUTE double").await.unwrap().as_deref(),
        Some("b")
    );
    a.simple_query("DEALLOCATE ALL").await.unwrap();
    let err = one(&a, "EXECUTE in_tx").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    // A client that left leaves nothing another can run.
    drop(b);
    let c = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = one(&c, "EXECUTE double").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("26000"));
    c.simple_query("PREPARE double AS SELECT 'c'")
        .await
        .unwrap();
    assert_eq!(
        one(&c, "EXECUTE double").await.unwrap().as_deref(),
        Some("c")
    );
}

/// The first column of the first row a simple query returns.
async fn one(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let rows = c.simple_query(sql).await?;
    Ok(rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepared_statements_survive_eviction() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 2;
        c.proxy.max_prepared_statements = 2;
    })
    .await;
    let clients = clients_of(&proxy, 3).await;
    for (i, c) in clients.iter().enumerate() {
        for k in 0..4 {
            c.simple_query(&format!("PREPARE s{k} AS SELECT {k} + {i} * 10"))
                .await
                .unwrap();
        }
    }
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            for k in 0..4 {
                let v = one(c, &format!("EXECUTE s{k}")).await.unwrap();
                let want = (k + i * 10).to_string();
                assert_eq!(v.as_deref(), Some(want.as_str()), "round {round}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_the_command_tags_of_sql_prepare() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let script = "PREPARE p (int) AS SELECT $1 + 1;\n\
                  EXECUTE p(41);\n\
                  PREPARE p AS SELECT 2;\n\
                  DEALLOCATE p;\n\
                  PREPARE q AS SELECT 'q';\n\
                  DEALLOCATE ALL;\n\
                  EXECUTE q;\n";
    let mut child = std::process::Command::new(pg_tool("psql"))
        .args(["-X", "-a", "-h", "127.0.0.1", "-p"])
        .arg(proxy.addr.port().to_string())
        .args(["-U", SCRAM_USER, "-d", DB])
        .env("PGPASSWORD", PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "PREPARE\n",
        "42\n",
        "prepared statement \"p\" already exists",
        "DEALLOCATE\n",
        "DEALLOCATE ALL\n",
        "prepared statement \"q\" does not exist",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
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
    run_driver(program.as_os_str(), &[], script, &url, env).await;
}
