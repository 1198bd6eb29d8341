//! Opens N client connections to a pooler, logs each in (trust auth), and
//! holds them idle for a while: the load behind the "memory per idle client"
//! benchmark row. Usage: idle_clients HOST:PORT USER DB N HOLD_SECONDS
//!
//! Each client sends what psycopg and PgJDBC send: a distinct
//! `application_name`, `client_encoding`, `DateStyle`, `TimeZone` and
//! `extra_float_digits` (`IDLE_PLAIN=1`: `user` and `database` only).
//! `IDLE_QUERY=1`: each runs one `SELECT 1` before it idles, as a client
//! of an application does (what a session keeps after its first
//! transaction is then measured too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects from one of several loopback source addresses, so that more
/// clients than one address has ephemeral ports can be held.
async fn connect(addr: &str, id: usize) -> std::io::Result<TcpStream> {
    let to: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    let from = std::net::Ipv4Addr::new(127, 0, 1 + (id / 20_000) as u8, 1);
    socket.bind((from, 0).into())?;
    socket.connect(to).await
}

async fn login(addr: &str, user: &str, db: &str, id: usize) -> std::io::Result<TcpStream> {
    let mut sock = connect(addr, id).await?;
    let mut out = BytesMut::new();
    let app = format!("worker-{id}");
    let mut params = vec![("user", user), ("database", db)];
    if std::env::var_os("IDLE_PLAIN").is_none() {
        params.extend([
            ("application_name", app.as_str()),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "3"),
        ]);
    }
    pgwarden::wire::frontend::startup_message(&mut out, &params);
    sock.write_all(&out).await?;
    until_ready(&mut sock).await?;
    if std::env::var_os("IDLE_QUERY").is_some() {
        out.clear();
        pgwarden::wire::frontend::query(&mut out, "SELECT 1");
        sock.write_all(&out).await?;
        until_ready(&mut sock).await?;
    }
    Ok(sock)
}

/// Reads up to the next ReadyForQuery; an ErrorResponse is a failure.
async fn until_ready(sock: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed during login"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        while let Ok(Some((tag, _, used))) =
            pgwarden::wire::codec::decode_whole(&buf[pos..], 1 << 20)
        {
            match tag {
                b'Z' => return Ok(()),
                b'E' => return Err(std::io::Error::other("refused")),
                _ => pos += used,
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: idle_clients HOST:PORT USER DB N HOLD_SECONDS");
        std::process::exit(2);
    }
    let n: usize = args[4].parse().expect("N");
    let hold: u64 = args[5].parse().expect("HOLD_SECONDS");
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    let mut left = n;
    while left > 0 {
        let batch = left.min(100);
        left -= batch;
        let tasks: Vec<_> = (0..batch)
            .map(|i| {
                let (a, u, d) = (args[1].clone(), args[2].clone(), args[3].clone());
                let id = n - left - batch + i;
                tokio::spawn(async move { login(&a, &u, &d, id).await })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => held.push(s),
                _ => failed += 1,
            }
        }
    }
    println!("ready {} failed {failed}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
}
