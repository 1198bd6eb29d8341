//! Parked idle clients (`park_idle_clients_after`): a client idle long
//! enough loses its task and its socket's place in tokio's reactor, and
//! gets both back on whatever comes next: its next query (with its own
//! settings and statements intact), its leaving, a cancel, `KILL_CLIENT`,
//! `client_idle_timeout`, garbage, or a shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::*;
use pgwarden::app::Proxy;
use pgwarden::config::duration::Secs;
use pgwarden::config::NameList;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PARK_AFTER: Duration = Duration::from_millis(200);

async fn parking_proxy(edit: impl FnOnce(&mut pgwarden::config::Config)) -> Proxy {
    proxy(|cfg| {
        cfg.proxy.park_idle_clients_after = Secs(PARK_AFTER);
        cfg.proxy.admin_users = NameList(vec![SCRAM_USER.into()]);
        // Raw-socket clients log in without a password exchange.
        cfg.proxy.auth_type = pgwarden::config::AuthType::Trust;
        edit(cfg);
    })
    .await
}

fn parked(proxy: &Proxy) -> usize {
    proxy.shared.parked.load(Ordering::Relaxed)
}

async fn parked_reaches(proxy: &Proxy, n: usize) -> bool {
    eventually(Duration::from_secs(5), || async { parked(proxy) == n }).await
}

/// 40 clients, each with its own setting and a protocol-prepared
/// statement, park, are served with their own state, park again, and
/// race each other out of the lot, three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_keep_their_state_and_wake_on_a_query() {
    let proxy = parking_proxy(|_| {}).await;
    let mut clients = Vec::new();
    for i in 0..40 {
        let c = connect(&proxy, SCRAM_USER).await.unwrap();
        c.batch_execute(&format!("SET application_name = 'parked{i}'"))
            .await
            .unwrap();
        let st = c
            .prepare("SELECT current_setting('application_name'), $1::int")
            .await
            .unwrap();
        clients.push((c, st));
    }
    assert!(
        parked_reaches(&proxy, 40).await,
        "parked: {}",
        parked(&proxy)
    );
    for round in 0..3 {
        let answers =
            futures::future::join_all(clients.iter().enumerate().map(|(i, (c, st))| async move {
                let n = i32::try_from(i).unwrap();
                let row = c.query_one(st, &[&n]).await.unwrap();
                (i, row.get::<_, String>(0), row.get::<_, i32>(1))
            }))
            .await;
        for (i, name, n) in answers {
            assert_eq!(name, format!("parked{i}"), "round {round}");
            assert_eq!(n, i32::try_from(i).unwrap());
        }
        assert!(
            parked_reaches(&proxy, 40).await,
            "round {round}: {}",
            parked(&proxy)
        );
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A parked client that leaves is gone from the lot and from the pool's
/// clients; one that sends garbage gets 08P01; a cancel for a parked
/// client changes nothing; `KILL_CLIENT` ends one (08P01, "admin forced
/// disconnect"); the others are served throughout.
/// A parked client whose settings are still its startup parameters gives
/// up its settings tracker and has it made again from its login: four such
/// clients, each with its own `application_name` and `lock_timeout` at
/// startup, share one server with a client that `SET`s both, park between
/// rounds, and each finds its own values every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_parked_with_startup_settings_only_keep_them() {
    let proxy = parking_proxy(|c| c.proxy.default_pool_size = 1).await;
    let base = url(&proxy, SCRAM_USER, PASSWORD, DB);
    let setter = connect_url(&base).await.unwrap();
    setter
        .batch_execute("SET application_name = 'setter'; SET lock_timeout = '7s'")
        .await
        .unwrap();
    let mut clients = vec![(setter, "setter".to_owned(), "7s".to_owned())];
    for i in 0..4 {
        let name = format!("startup{i}");
        let timeout = format!("{}ms", 1001 + i);
        let c = connect_url(&format!(
            "{base} application_name={name} options='-c lock_timeout={timeout}'"
        ))
        .await
        .unwrap();
        clients.push((c, name, timeout));
    }
    for round in 0..3 {
        assert!(
            parked_reaches(&proxy, clients.len()).await,
            "round {round}: parked {}",
            parked(&proxy)
        );
        // The setter first, so that each of the others finds the server
        // set for someone else.
        let (setter, ..) = &clients[0];
        assert_eq!(read(setter).await, ("setter".into(), "7s".into()));
        let seen = futures::future::join_all(clients.iter().map(|(c, ..)| read(c))).await;
        for ((_, name, timeout), got) in clients.iter().zip(seen) {
            assert_eq!(got, (name.clone(), timeout.clone()), "round {round}");
        }
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_leave_misbehave_are_cancelled_and_killed() {
    let proxy = parking_proxy(|_| {}).await;
    let admin = connect_url(&url(&proxy, SCRAM_USER, PASSWORD, "pgbouncer"))
        .await
        .unwrap();
    let leaving = connect(&proxy, SCRAM_USER).await.unwrap();
    let cancelled = connect(&proxy, SCRAM_USER).await.unwrap();
    let killed = connect_url(&format!(
        "{} application_name=to_be_killed",
        url(&proxy, SCRAM_USER, PASSWORD, DB)
    ))
    .await
    .unwrap();
    let bystander = connect(&proxy, SCRAM_USER).await.unwrap();
    let mut garbage = raw_login(&proxy).await;
    // The console's connection is not a session: it is not parked.
    assert!(
        parked_reaches(&proxy, 5).await,
        "parked: {}",
        parked(&proxy)
    );

    drop(leaving);
    assert!(
        parked_reaches(&proxy, 4).await,
        "parked: {}",
        parked(&proxy)
    );

    // A frame whose length cannot hold its own length field.
    garbage.write_all(&[b'Q', 0, 0, 0, 2]).await.unwrap();
    assert_eq!(error_code(&mut garbage).await, "08P01");

    cancelled
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    assert_eq!(
        one(&cancelled).await,
        1,
        "a cancel left the parked client usable"
    );

    assert!(
        parked_reaches(&proxy, 3).await,
        "parked: {}",
        parked(&proxy)
    );
    let pid = client_id(&admin, "to_be_killed").await;
    admin
        .simple_query(&format!("KILL_CLIENT {pid}"))
        .await
        .unwrap();
    let e = killed.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        sqlstate(&e).as_deref() == Some("08P01") || e.is_closed(),
        "{e:?}"
    );
    assert_eq!(one(&bystander).await, 1);
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// `client_idle_timeout` ends a parked client on time (57P05).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_times_out() {
    let proxy = parking_proxy(|cfg| {
        cfg.users
            .get_mut(TRUST_USER)
            .expect("trust user")
            .client_idle_timeout = Some(Secs(Duration::from_millis(1500)));
    })
    .await;
    let mut idle = raw_login(&proxy).await;
    let start = std::time::Instant::now();
    assert!(
        parked_reaches(&proxy, 1).await,
        "parked: {}",
        parked(&proxy)
    );
    assert_eq!(error_code(&mut idle).await, "57P05");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(parked_reaches(&proxy, 0).await);
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A shutdown tells every parked client 57P01, closes it, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_are_told_of_a_shutdown() {
    let proxy = parking_proxy(|_| {}).await;
    let mut staying = Vec::new();
    for _ in 0..20 {
        staying.push(raw_login(&proxy).await);
    }
    assert!(
        parked_reaches(&proxy, 20).await,
        "parked: {}",
        parked(&proxy)
    );
    assert!(
        proxy.shutdown(Duration::from_secs(5)).await,
        "shutdown completes"
    );
    for mut s in staying {
        assert_eq!(error_code(&mut s).await, "57P01");
        let mut rest = [0u8; 16];
        assert_eq!(s.read(&mut rest).await.unwrap_or(0), 0, "closed");
    }
    assert_eq!(parked(&proxy), 0);
}

/// The SQLSTATE of the next ErrorResponse on a raw socket.
/// A client's `application_name` and `lock_timeout` as its server has them.
async fn read(c: &tokio_postgres::Client) -> (String, String) {
    let sql = "SELECT current_setting('application_name'), current_setting('lock_timeout')";
    let row = c.query_one(sql, &[]).await.unwrap();
    (row.get(0), row.get(1))
}

async fn error_code(sock: &mut tokio::net::TcpStream) -> String {
    let messages = tokio::time::timeout(
        Duration::from_secs(5),
        read_messages(sock, |tag, _| tag == b'E'),
    )
    .await
    .expect("an ErrorResponse within 5 s");
    let (_, body) = messages.last().expect("a message");
    body.split(|&b| b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

async fn one(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT 1", &[]).await.unwrap().get(0)
}

/// The console's id (`KILL_CLIENT` takes it) of the client logged in
/// with `application_name`.
async fn client_id(admin: &tokio_postgres::Client, application_name: &str) -> String {
    let rows = admin.simple_query("SHOW CLIENTS").await.unwrap();
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            if r.get("application_name") == Some(application_name) {
                return r.get("id").expect("id column").to_owned();
            }
        }
    }
    panic!("{application_name} is not in SHOW CLIENTS");
}
