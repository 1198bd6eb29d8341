//! Session settings in transaction mode: every client sees exactly its own
//! settings in every transaction, whichever server runs it, and no other
//! client ever sees them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::*;

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    let rows = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

/// Each client's (search_path, statement_timeout, TimeZone).
async fn settings(client: &tokio_postgres::Client) -> (String, String, String) {
    (
        show(client, "search_path").await,
        show(client, "statement_timeout").await,
        show(client, "TimeZone").await,
    )
}

/// The three settings as one query sees them (wrapped in `before`/`after`).
async fn current_settings(
    client: &tokio_postgres::Client,
    before: &str,
    after: &str,
) -> (String, String, String) {
    let sql = format!(
        "{before}SELECT current_setting('search_path'), current_setting('statement_timeout'), \
         current_setting('TimeZone'){after}"
    );
    let rows = client.simple_query(&sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get(0).unwrap().to_owned(),
                r.get(1).unwrap().to_owned(),
                r.get(2).unwrap().to_owned(),
            )),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_with_different_settings_never_see_each_others() {
    // Two servers for two clients that interleave: each transaction may land
    // on either.
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let a = connect(&proxy, SCRAM_USER).await.unwrap();
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    let baseline = settings(&b).await;
    a.batch_execute("SET search_path TO pg_catalog, public")
        .await
        .unwrap();
    a.batch_execute("SET statement_timeout = '7s'")
        .await
        .unwrap();
    a.batch_execute("SET TIME ZONE 'Asia/Tokyo'").await.unwrap();
    b.batch_execute("SET TimeZone TO 'America/Lima'")
        .await
        .unwrap();
    let want_a = (
        "pg_catalog, public".to_string(),
        "7s".to_string(),
        "Asia/Tokyo".to_string(),
    );
    let want_b = (
        baseline.0.clone(),
        baseline.1.clone(),
        "America/Lima".to_string(),
    );
    let check_a = async {
        for _ in 0..1000 {
            let row = current_settings(&a, "BEGIN; ", "; COMMIT").await;
            assert_eq!(row, want_a);
        }
    };
    let check_b = async {
        for _ in 0..1000 {
            assert_eq!(current_settings(&b, "", "").await, want_b);
        }
    };
    tokio::join!(check_a, check_b);
    // RESET brings a setting back to the default, for this client only.
    a.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(show(&a, "statement_timeout").await, baseline.1);
    assert_eq!(show(&a, "TimeZone").await, "Asia/Tokyo");
}

/// SET the way drivers send it: inside transaction blocks (held until the
/// COMMIT, dropped by ROLLBACK and by ROLLBACK TO an earlier savepoint),
/// through `set_config`, and through the extended protocol. One server for
/// two clients: each of `a`'s transactions is followed by one of `b`'s on
/// the same server, which must never see `a`'s settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_made_in_blocks_set_config_and_prepared_statements_stick() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 1).await;
    let a = connect(&proxy, MD5_USER).await.unwrap();
    let b = connect(&proxy, MD5_USER).await.unwrap();
    let baseline = show(&b, "work_mem").await;
    let steps: &[(&[&str], &str)] = &[
        (&["BEGIN", "SET work_mem = '13MB'", "COMMIT"], "13MB"),
        (&["BEGIN; SET work_mem = '2MB'; COMMIT"], "2MB"),
        (&["BEGIN", "SET work_mem = '14MB'", "ROLLBACK"], "2MB"),
        (
            &[
                "BEGIN",
                "SET work_mem = '15MB'",
                "SAVEPOINT s",
                "SET work_mem = '16MB'",
                "ROLLBACK TO SAVEPOINT s",
                "COMMIT",
            ],
            "15MB",
        ),
        (
            &[
                "BEGIN",
                "SAVEPOINT s",
                "SET work_mem = '3MB'",
                "RELEASE s",
                "COMMIT",
            ],
            "3MB",
        ),
        (
            &["BEGIN", "SET work_mem = '17MB'", "SELECT 1/0", "COMMIT"],
            "3MB",
        ),
        (&["BEGIN", "SET LOCAL work_mem = '18MB'", "COMMIT"], "3MB"),
        (&["SELECT set_config('work_mem', '19MB', false)"], "19MB"),
        (
            &[
                "BEGIN",
                "SELECT set_config('work_mem', '20MB', true)",
                "COMMIT",
            ],
            "19MB",
        ),
    ];
    for (statements, expected) in steps {
        for sql in *statements {
            // The failing statement fails; the others succeed.
            let _ = a.batch_execute(sql).await;
        }
        assert_eq!(
            show(&a, "work_mem").await,
            *expected,
            "after {statements:?}"
        );
        assert_eq!(
            show(&b, "work_mem").await,
            baseline,
            "leaked: {statements:?}"
        );
    }
    // The extended protocol: tokio-postgres prepares a named statement.
    a.execute("SET work_mem = '21MB'", &[]).await.unwrap();
    assert_eq!(show(&a, "work_mem").await, "21MB");
    let tx = a.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(tx.get::<_, i32>(0), 1);
    a.batch_execute("BEGIN").await.unwrap();
    a.execute("SET work_mem = '22MB'", &[]).await.unwrap();
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(show(&a, "work_mem").await, "21MB", "rolled back");
    assert_eq!(
        show(&b, "work_mem").await,
        baseline,
        "leaked from a prepared SET"
    );
    // set_config with the value as a parameter: followed at its Bind.
    a.query_one("SELECT set_config('work_mem', $1, false)", &[&"24MB"])
        .await
        .unwrap();
    assert_eq!(show(&a, "work_mem").await, "24MB");
    assert_eq!(
        show(&b, "work_mem").await,
        baseline,
        "leaked from a bound set_config"
    );
    // set_config takes a list as the server's configuration does.
    a.batch_execute("SELECT set_config('search_path', 'pg_catalog, public', false)")
        .await
        .unwrap();
    assert_eq!(show(&a, "search_path").await, "pg_catalog, public");
    assert_ne!(show(&b, "search_path").await, "pg_catalog, public");
}

/// A change pgwarden cannot see (a DO block that calls set_config) gets
/// one NOTICE per session, holds for none of the client's next
/// transactions, and never reaches another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_pgwarden_cannot_follow_are_told_and_never_leak() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.auth_type = pgwarden::config::AuthType::Trust;
    })
    .await;
    let b = connect(&proxy, TRUST_USER).await.unwrap();
    let baseline = show(&b, "work_mem").await;
    let mut a = raw_login(&proxy).await;
    let a = &mut a;
    let hidden = "DO $$ BEGIN PERFORM set_config('work_mem', '23MB', false); END $$";
    let (notices, _) = raw_query(a, hidden).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("cannot follow"), "{notices:?}");
    assert!(notices[0].contains("00000"), "{notices:?}");
    let (notices, value) = raw_query(a, "SHOW work_mem").await;
    assert!(notices.is_empty());
    assert_eq!(
        value.as_deref(),
        Some(baseline.as_str()),
        "undone before the next transaction"
    );
    assert_eq!(
        show(&b, "work_mem").await,
        baseline,
        "leaked from a DO block"
    );
    let (notices, _) = raw_query(a, hidden).await;
    assert!(notices.is_empty(), "told once per session: {notices:?}");
    assert_eq!(
        show(&b, "work_mem").await,
        baseline,
        "leaked from a DO block"
    );
}

/// Runs `sql` on a raw socket: the notices' bodies and the first value.
async fn raw_query(sock: &mut tokio::net::TcpStream, sql: &str) -> (Vec<String>, Option<String>) {
    use tokio::io::AsyncWriteExt;
    let mut out = bytes::BytesMut::new();
    pgwarden::wire::frontend::query(&mut out, sql);
    sock.write_all(&out).await.unwrap();
    let messages = read_until_ready(sock).await;
    let notices = messages
        .iter()
        .filter(|(tag, _)| *tag == b'N')
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .collect();
    let value = messages
        .iter()
        .find(|(tag, _)| *tag == b'D')
        .map(|(_, body)| String::from_utf8_lossy(&body[6..]).into_owned());
    (notices, value)
}

/// Settings of many clients set the way drivers set them, interleaved on
/// few servers: psycopg 3 in its default mode (autocommit off, savepoints)
/// and with every statement prepared, asyncpg, and PgJDBC in its default
/// mode; each client checks its own settings after every transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_settings_hold_and_never_leak() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 3).await;
    let port = proxy.addr.port();
    let url = format!("postgresql://{MD5_USER}:{PASSWORD}@127.0.0.1:{port}/{DB}");
    match python_with_drivers() {
        Some(python) => run_driver(python.as_os_str(), &[], "settings.py", &url, &[]).await,
        None => missing_dependency("Python with asyncpg and psycopg"),
    }
    let jar = std::path::Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() {
        return missing_dependency("PgJDBC (Debian's libpostgresql-jdbc-java)");
    }
    let port = proxy.addr.port();
    let jdbc =
        format!("jdbc:postgresql://127.0.0.1:{port}/{DB}?user={MD5_USER}&password={PASSWORD}");
    let cp: [&std::ffi::OsStr; 2] = ["-cp".as_ref(), jar.as_os_str()];
    run_driver("java".as_ref(), &cp, "JdbcSettings.java", &jdbc, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_and_options_hold_in_every_transaction() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 1).await;
    let plain = connect(&proxy, PLAIN_USER).await.unwrap();
    let baseline_tz = show(&plain, "TimeZone").await;
    let url = format!(
        "{} application_name=tenant_a options='-c search_path=pg_catalog -c lock_timeout=3s'",
        url(&proxy, PLAIN_USER, PASSWORD, DB)
    );
    let a = connect_url(&url).await.unwrap();
    for _ in 0..20 {
        assert_eq!(show(&a, "application_name").await, "tenant_a");
        assert_eq!(show(&a, "search_path").await, "pg_catalog");
        assert_eq!(show(&a, "lock_timeout").await, "3s");
        assert_ne!(show(&plain, "application_name").await, "tenant_a");
        assert_ne!(show(&plain, "lock_timeout").await, "3s");
        assert_eq!(show(&plain, "TimeZone").await, baseline_tz);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_pins_its_server_and_notifications_arrive() {
    let proxy = proxy(|c| c.proxy.default_pool_size = 2).await;
    let (listener, mut conn) = tokio_postgres::connect(
        &url(&proxy, SCRAM_USER, PASSWORD, DB),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let pool = proxy
        .shared
        .pools
        .get(&pgwarden::pool::PoolKey::new(DB, SCRAM_USER))
        .unwrap();
    let pinned = |n: usize| {
        let pool = pool.clone();
        async move { pool.stats.pinned.load(std::sync::atomic::Ordering::Relaxed) == n }
    };
    // Counted once the session has seen the answer (just after the client).
    assert!(eventually(std::time::Duration::from_secs(5), || pinned(1)).await);
    let notifier = connect(&proxy, SCRAM_USER).await.unwrap();
    for i in 0..3 {
        notifier
            .batch_execute(&format!("NOTIFY jobs, 'job-{i}'"))
            .await
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("notification reaches the idle listening client")
            .unwrap();
        assert_eq!(got, ("jobs".to_string(), format!("job-{i}")));
    }
    // UNLISTEN * gives the server back.
    listener.batch_execute("UNLISTEN *").await.unwrap();
    assert!(eventually(std::time::Duration::from_secs(5), || pinned(0)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_lock_pins_until_unlocked() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.query_wait_timeout = pgwarden::config::duration::Secs::from_millis(700);
    })
    .await;
    let holder = connect(&proxy, MD5_USER).await.unwrap();
    let other = connect(&proxy, MD5_USER).await.unwrap();
    let pid = backend_pid(&holder).await;
    holder
        .simple_query("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();
    // The lock's server stays with its holder: nobody else gets it.
    let err = other.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    assert_eq!(
        backend_pid(&holder).await,
        pid,
        "still on the lock's server"
    );
    holder
        .simple_query("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let again = connect(&proxy, MD5_USER).await.unwrap();
    assert!(again.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_mode_explains_why() {
    let proxy = proxy(|c| {
        c.databases.get_mut(DB).unwrap().session_features =
            pgwarden::config::SessionFeatures::Refuse;
    })
    .await;
    let client = connect(&proxy, SCRAM_USER).await.unwrap();
    let err = client.batch_execute("LISTEN jobs").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"));
    let db = err.as_db_error().unwrap();
    assert!(
        db.message().contains("LISTEN is refused"),
        "{}",
        db.message()
    );
    assert!(db.hint().unwrap_or("").contains("session_features"));
    assert!(client.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_applies_startup_parameters_too() {
    let proxy = proxy(|c| {
        c.proxy.pool_mode = pgwarden::config::PoolMode::Session;
        c.proxy.default_pool_size = 1;
    })
    .await;
    let url = format!(
        "{} options='-c lock_timeout=4s'",
        url(&proxy, SCRAM_USER, PASSWORD, DB)
    );
    let a = connect_url(&url).await.unwrap();
    assert_eq!(show(&a, "lock_timeout").await, "4s");
    drop(a);
    // The next client on the same server (after the reset) has its own.
    let b = connect(&proxy, SCRAM_USER).await.unwrap();
    assert_eq!(show(&b, "lock_timeout").await, "0");
}

/// `application_name` is never checked on a server at login: PostgreSQL
/// cleans any value rather than refusing it, and drivers send a distinct
/// one per client. A login with a new name goes through while the only
/// server is busy in a transaction (a check would wait for it, then time
/// out), and each client's name reaches the server as PostgreSQL shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_application_name_logs_in_without_a_server() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.query_wait_timeout = pgwarden::config::duration::Secs::from_millis(700);
    })
    .await;
    let base = url(&proxy, PLAIN_USER, PASSWORD, DB);
    let busy = connect_url(&base).await.unwrap();
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let named = |name: &str| format!("{base} application_name='{name}'");
    let fresh = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        connect_url(&named("fresh-1")),
    )
    .await
    .expect("no wait for the busy server")
    .unwrap();
    let accented = connect_url(&named("caf\u{e9}")).await.unwrap();
    busy.batch_execute("COMMIT").await.unwrap();
    assert_eq!(show(&fresh, "application_name").await, "fresh-1");
    // What PostgreSQL itself makes of a non-ASCII name.
    assert_eq!(show(&accented, "application_name").await, "caf??");
    assert_eq!(show(&busy, "application_name").await, "");
}

/// `application_name_add_host`: the server sees each client's address
/// after its application name (`app - 127.0.0.1:port`), or after a bare
/// dash when it sent none, in every transaction it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_name_add_host_shows_each_client_address() {
    let proxy = proxy(|c| {
        c.proxy.application_name_add_host = true;
        c.proxy.default_pool_size = 1;
    })
    .await;
    let base = url(&proxy, PLAIN_USER, PASSWORD, DB);
    let named = connect_url(&format!("{base} application_name=billing"))
        .await
        .unwrap();
    let bare = connect_url(&base).await.unwrap();
    for _ in 0..2 {
        let name = show(&named, "application_name").await;
        let port = name
            .strip_prefix("billing - 127.0.0.1:")
            .map(str::parse::<u16>);
        assert!(matches!(port, Some(Ok(_))), "{name}");
        let name = show(&bare, "application_name").await;
        assert!(name.starts_with(" - 127.0.0.1:"), "{name:?}");
    }
}

/// A startup setting PostgreSQL would refuse is refused at login with
/// PostgreSQL's own error, and never leaves the client on a server that
/// still has the previous client's settings (it once saw them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_startup_settings_are_refused_and_leak_nothing() {
    let proxy = proxy(|c| {
        c.proxy.default_pool_size = 1;
        c.proxy.ignore_startup_parameters =
            pgwarden::config::NameList(vec!["statement_timeout".into()]);
    })
    .await;
    let base = url(&proxy, PLAIN_USER, PASSWORD, DB);
    let with = |options: &str| format!("{base} options='{options}'");
    let a = connect_url(&with("-c timezone=America/New_York"))
        .await
        .unwrap();
    assert_eq!(show(&a, "TimeZone").await, "America/New_York");

    for (options, code) in [
        ("-c datestyle=Bogus", "22023"),
        ("-c timezone=Nowhere/Bogus", "22023"),
        ("-c no_such_setting.x=1 -c work_mem=-5", "22023"),
        ("-c work_mem", "42601"),
        ("--work_mem", "42601"),
        ("-d 5", "42601"),
    ] {
        let e = connect_err(&with(options)).await;
        assert_eq!(sqlstate(&e).as_deref(), Some(code), "{options}: {e}");
    }
    // libpq's escaping: one value with a space in it.
    let c = connect_url(&with(
        r"-c datestyle=German,\\ YMD --search-path=pg_catalog",
    ))
    .await
    .unwrap();
    assert_eq!(show(&c, "DateStyle").await, "German, YMD");
    assert_eq!(show(&c, "search_path").await, "pg_catalog");
    assert_ne!(show(&c, "TimeZone").await, "America/New_York");
    // ignore_startup_parameters applies inside options too.
    let d = connect_url(&with("-c statement_timeout=1ms"))
        .await
        .unwrap();
    assert_eq!(show(&d, "statement_timeout").await, "0");
    assert_eq!(show(&a, "TimeZone").await, "America/New_York");
}
