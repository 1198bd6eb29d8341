//! Opens N client connections to a pooler, logs each in (trust auth), and
//! holds them idle for a while: the load behind the "memory per idle client"
//! benchmark row. Usage: idle_clients HOST:PORT USER DB N HOLD_SECONDS
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn login(addr: &str, user: &str, db: &str) -> std::io::Result<TcpStream> {
    let mut sock = TcpStream::connect(addr).await?;
    let mut out = BytesMut::new();
    pgwarden::wire::frontend::startup_message(&mut out, &[("user", user), ("database", db)]);
    sock.write_all(&out).await?;
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
                b'Z' => return Ok(sock),
                b'E' => return Err(std::io::Error::other("login refused")),
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
            .map(|_| {
                let (a, u, d) = (args[1].clone(), args[2].clone(), args[3].clone());
                tokio::spawn(async move { login(&a, &u, &d).await })
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
