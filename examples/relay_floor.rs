//! The floor of a task per client on tokio: a relay that gives each client
//! its own PostgreSQL connection and copies bytes both ways, with no
//! framing, no pool and no state. Under callgrind, its instructions per
//! `pgbench -S` transaction are what any proxy built as pgwarden is (a
//! tokio task per client, on a current-thread runtime) pays before doing
//! anything of its own (docs/benchmarks.md, issue 19).
//! Usage: relay_floor LISTEN_ADDR POSTGRES_ADDR
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: relay_floor LISTEN_ADDR POSTGRES_ADDR");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                for s in [&client, &server] {
                    s.set_nodelay(true).ok();
                }
                // Both directions in one task, as a session polls its
                // client and its server.
                tokio::io::copy_bidirectional(&mut client, &mut server)
                    .await
                    .ok();
            });
        }
    })
}
