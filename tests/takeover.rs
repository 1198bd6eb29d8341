//! Online restart on the real binary: a pgwarden started with
//! `--takeover PATH` takes the listening socket and the clients of the one
//! listening on PATH. Idle clients carry on with their own settings,
//! prepared statements and cancel keys; clients mid-pgbench see no failure;
//! the old process exits by itself and leaves no server connection behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::*;

const IDLE: usize = 200;
const POOL: usize = 8;

/// Server connections of the test's user to the test database.
async fn servers() -> i64 {
    let admin = direct().await;
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $2",
            &[&MD5_USER, &DB],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_keeps_idle_and_busy_clients() {
    let dir = tempfile::tempdir().unwrap();
    let port = pgwarden::localpg::free_port_range(1).unwrap();
    let config = dir.path().join("proxy.toml");
    let sock = dir.path().join("takeover.sock");
    // A user known only by its SCRAM secret: servers are logged in to with
    // the keys its client's proof gave, which must cross the takeover.
    let verifier: String = direct()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&SCRAM_USER],
        )
        .await
        .unwrap()
        .get(0);
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = 20\nmax_client_conn = 1000\n\
             auth_type = \"scram-sha-256\"\ndefault_pool_size = {POOL}\n\
             [databases.{DB}]\nprimary = \"{}\"\n\
             [databases.session_db]\nprimary = \"{0}\"\ndbname = \"{DB}\"\npool_mode = \"session\"\n\
             [users.{MD5_USER}]\npassword = \"{PASSWORD}\"\n\
             [users.{SCRAM_USER}]\npassword = \"{verifier}\"\n",
            cluster().primary.addr()
        ),
    )
    .unwrap();
    let takeover = [std::ffi::OsStr::new("--takeover"), sock.as_os_str()];
    let (old, old_notify) = start_binary(&config, dir.path(), "old", &takeover);
    let mut reaper = Reaper(vec![old.id()]);
    let url = format!("postgres://{MD5_USER}:{PASSWORD}@127.0.0.1:{port}/{DB}");
    let scram_client = connect_url(&format!(
        "postgres://{SCRAM_USER}:{PASSWORD}@127.0.0.1:{port}/{DB}"
    ))
    .await
    .unwrap();
    scram_client
        .batch_execute("SET search_path = scram_path")
        .await
        .unwrap();

    // Idle clients, each with its own settings and a prepared statement.
    let mut idle = Vec::new();
    for i in 0..IDLE {
        let client = connect_url(&url).await.unwrap();
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{}ms'; SET search_path = s{i}, public",
                10_001 + i
            ))
            .await
            .unwrap();
        let stmt = client
            .prepare(&format!("SELECT $1::int + {i}"))
            .await
            .unwrap();
        idle.push((client, stmt));
    }
    // One inside a transaction block: the old process waits for it.
    let in_block = connect_url(&url).await.unwrap();
    in_block
        .batch_execute("BEGIN; SET LOCAL work_mem = '5MB'")
        .await
        .unwrap();
    // Session mode keeps a server per client, which is not carried: 57P01.
    let session_url = format!("postgres://{MD5_USER}:{PASSWORD}@127.0.0.1:{port}/session_db");
    let session_client = connect_url(&session_url).await.unwrap();
    session_client.simple_query("SELECT 1").await.unwrap();
    // psql kept open across the takeover.
    let mut psql = std::process::Command::new(pg_tool("psql"))
        .args(["-X", "-q", "-A", "-t", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    reaper.0.push(psql.id());
    let mut psql_in = psql.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut psql_in,
        b"SET search_path = psql_path, public;\nSELECT 'before';\n",
    )
    .unwrap();
    // A busy load: 20 pgbench clients in a loop across the takeover.
    let script = dir.path().join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let bench = spawn_pgbench(port, &script, &["-n", "-T", "12", "-c", "20", "-j", "2"]);
    reaper.0.push(bench.id());
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A connection that is not a pgwarden asking is refused: nothing is
    // handed to it, and the old process goes on serving.
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0xff; 4],
        b"\0\0\0\x05{}}}}",
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        std::io::Write::write_all(&mut s, junk).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    idle[1].0.simple_query("SELECT 1").await.unwrap();
    let (new, _new_notify) = start_binary(&config, dir.path(), "new", &takeover);
    reaper.0.push(new.id());
    let mut buf = [0u8; 512];
    let n = old_notify.recv(&mut buf).expect("STOPPING=1");
    assert!(buf[..n].starts_with(b"STOPPING=1"));
    // The transaction ends on the old process, and the client moves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still: String = in_block
        .query_one("SELECT current_setting('work_mem')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, "5MB");
    in_block.batch_execute("COMMIT").await.unwrap();
    let exited = exit_of(old).await;
    let log = |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old process exits by itself: {exited:?}\n{}",
        log("old")
    );

    // Every idle client carries on, with its own settings and statement.
    for (i, (client, stmt)) in idle.iter().enumerate() {
        let row = client
            .query_one(
                "SELECT current_setting('statement_timeout'), current_setting('search_path')",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("idle client {i}: {e}\n{}", log("new")));
        let (timeout, path): (String, String) = (row.get(0), row.get(1));
        assert_eq!(timeout, format!("{}ms", 10_001 + i));
        assert_eq!(path, format!("s{i}, public"));
        let sum: i32 = client.query_one(stmt, &[&1i32]).await.unwrap().get(0);
        assert_eq!(sum, 1 + i as i32);
    }
    in_block.simple_query("SELECT 2").await.unwrap();
    // Its first server on the new process logs in with the carried keys.
    let row = scram_client
        .query_one(
            "SELECT current_user::text, current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (SCRAM_USER.into(), "scram_path".into())
    );
    std::io::Write::write_all(&mut psql_in, b"SHOW search_path;\n\\q\n").unwrap();
    drop(psql_in);
    let out = tokio::task::spawn_blocking(move || psql.wait_with_output().unwrap())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.split_whitespace().collect::<Vec<_>>(),
        ["before", "psql_path,", "public"],
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = session_client.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.is_closed() || sqlstate(&e).as_deref() == Some("57P01"),
        "a session-mode client is told 57P01: {e}"
    );
    connect_url(&session_url)
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
    // A cancel key issued by the old process cancels on the new one.
    let (client, _) = &idle[0];
    let token = client.cancel_token();
    let sleeper = client.simple_query("SELECT pg_sleep(30)");
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    };
    let (slept, ()) = tokio::join!(sleeper, cancel);
    let e = slept.expect_err("cancelled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e}");

    let (ok, text) = tokio::task::spawn_blocking(move || bench_output(bench))
        .await
        .unwrap();
    assert!(ok, "{text}\n{}", log("old"));
    assert!(text.contains("number of failed transactions: 0 "), "{text}");
    let new_log = log("new");
    assert!(new_log.contains("takeover complete"), "{new_log}");
    eprintln!(
        "{}",
        new_log
            .lines()
            .filter(|l| l.contains("takeover"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The old process's servers are gone: only the new one's pools remain
    // (the session-mode database's holds the one server its reconnect used).
    drop(idle);
    let open = servers().await;
    assert!(
        open <= POOL as i64 + 1,
        "{open} server connections, pool {POOL} + 1"
    );
    drop(in_block);
    eprintln!("takeover: {IDLE} idle clients carried, pgbench 0 failed, {open} servers after");

    // The new process offers itself for the next takeover, which works
    // the same way: a third generation takes its clients.
    let client = connect_url(&url).await.unwrap();
    client
        .batch_execute("SET search_path = third, public")
        .await
        .unwrap();
    let (third, _third_notify) = start_binary(&config, dir.path(), "third", &takeover);
    reaper.0.push(third.id());
    assert!(exit_of(new).await.is_some_and(|s| s.success()));
    let path: String = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "third, public");
    signal(&third, libc::SIGTERM);
    assert!(exit_of(third).await.is_some());
}

/// Waits (off the runtime) up to 20 s for a pgwarden process to exit.
async fn exit_of(mut child: std::process::Child) -> Option<std::process::ExitStatus> {
    tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
        .await
        .unwrap()
}
