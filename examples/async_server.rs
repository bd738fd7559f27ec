//! One tokio task set serving many rings: a request/reply server for 64 clients, each with
//! its own request ring and reply ring, all on one current-thread runtime.
//!
//! ```sh
//! # both processes (the clients are this program started again):
//! cargo run --release --features tokio --example async_server
//! # or in two terminals (the server creates the rings, the clients open them):
//! cargo run --release --features tokio --example async_server -- server /demo 64
//! cargo run --release --features tokio --example async_server -- client /demo 64 10000
//! ```
//!
//! Every request carries a client number and a sequence number; the server answers with the
//! sum of the request's payload bytes and the client checks it. A client waiting for its
//! reply, and the server task of an idle client, park in the runtime (no thread each, no
//! system call while busy); the doorbell of the ring wakes them.

use std::error::Error;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmring::evented::{AsyncConsumer, AsyncProducer};
use shmring::{RecvError, spsc};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn ring_name(prefix: &str, client: usize, dir: &str) -> String {
    format!("{prefix}-{client}-{dir}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// The server: creates every client's rings, then serves them all from one thread.
fn server(prefix: &str, clients: usize, started: impl FnOnce()) -> Res<u64> {
    let config = spsc::Config::default().capacity_bytes(1 << 16);
    let mut pairs = Vec::new();
    for c in 0..clients {
        let requests = spsc::Consumer::create(&ring_name(prefix, c, "req"), config)?;
        let replies = spsc::Producer::create(&ring_name(prefix, c, "rep"), config)?;
        pairs.push((requests, replies));
    }
    started();
    runtime().block_on(async move {
        let local = tokio::task::LocalSet::new();
        let mut tasks = Vec::new();
        for (requests, replies) in pairs {
            let mut requests = AsyncConsumer::new(requests)?;
            let mut replies = AsyncProducer::new(replies)?;
            tasks.push(local.spawn_local(async move {
                let mut served = 0u64;
                loop {
                    let reply = match requests.recv().await {
                        Ok(req) => {
                            let sum: u64 = req[16..].iter().map(|&b| u64::from(b)).sum();
                            let mut reply = [0u8; 24];
                            reply[..16].copy_from_slice(&req[..16]);
                            reply[16..].copy_from_slice(&sum.to_le_bytes());
                            reply
                        }
                        // The client closed its request ring: done.
                        Err(RecvError::Disconnected) => return Ok::<u64, RecvError>(served),
                        Err(e) => return Err(e),
                    };
                    if replies.send(&reply).await.is_err() {
                        return Ok(served);
                    }
                    served += 1;
                }
            }));
        }
        local
            .run_until(async move {
                let mut total = 0;
                for t in tasks {
                    total += t.await??;
                }
                Ok(total)
            })
            .await
    })
}

/// The clients: `clients` tasks on one current-thread runtime, each sending `requests`
/// requests one at a time and checking every reply.
fn client(prefix: &str, clients: usize, requests: u64) -> Res<()> {
    let open = std::time::Duration::from_secs(10);
    let mut pairs = Vec::new();
    for c in 0..clients {
        let tx = spsc::Producer::open_timeout(&ring_name(prefix, c, "req"), open)?;
        let rx = spsc::Consumer::open_timeout(&ring_name(prefix, c, "rep"), open)?;
        // Both ends attached: the names can go.
        shmring::unlink(&ring_name(prefix, c, "req"))?;
        shmring::unlink(&ring_name(prefix, c, "rep"))?;
        pairs.push((tx, rx));
    }
    let start = Instant::now();
    let worst = runtime().block_on(async move {
        let local = tokio::task::LocalSet::new();
        let mut tasks = Vec::new();
        for (c, (tx, rx)) in pairs.into_iter().enumerate() {
            let mut tx = AsyncProducer::new(tx)?;
            let mut rx = AsyncConsumer::new(rx)?;
            tasks.push(local.spawn_local(async move {
                let mut worst = Duration::ZERO;
                let mut req = [0u8; 64];
                for seq in 0..requests {
                    req[..8].copy_from_slice(&(c as u64).to_le_bytes());
                    req[8..16].copy_from_slice(&seq.to_le_bytes());
                    for (i, b) in req[16..].iter_mut().enumerate() {
                        *b = (seq as usize + i) as u8;
                    }
                    let want: u64 = req[16..].iter().map(|&b| u64::from(b)).sum();
                    let sent = Instant::now();
                    tx.send(&req).await?;
                    let reply = rx.recv().await?;
                    worst = worst.max(sent.elapsed());
                    if reply[..16] != req[..16] || reply[16..24] != want.to_le_bytes() {
                        return Err(format!("client {c}: wrong reply to request {seq}").into());
                    }
                }
                Ok::<Duration, Box<dyn Error + Send + Sync>>(worst)
            }));
        }
        local
            .run_until(async move {
                let mut worst = Duration::ZERO;
                for t in tasks {
                    worst = worst.max(t.await??);
                }
                Ok::<Duration, Box<dyn Error + Send + Sync>>(worst)
            })
            .await
    })?;
    let total = clients as u64 * requests;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{clients} clients, {total} checked request/reply round trips in {secs:.2} s: \
         {:.0} round trips/s in all; slowest round trip {worst:?}",
        total as f64 / secs
    );
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(1) {
        Some("server") => {
            let prefix = arg(2).unwrap_or("/shmring-async-demo");
            let clients = arg(3).map_or(Ok(64), str::parse)?;
            let served = server(prefix, clients, || {
                println!("serving {clients} clients (rings {prefix}-<n>-req/-rep)");
            })?;
            println!("served {served} requests; every client has gone");
        }
        Some("client") => {
            let prefix = arg(2).unwrap_or("/shmring-async-demo");
            let clients = arg(3).map_or(Ok(64), str::parse)?;
            let requests = arg(4).map_or(Ok(10_000), str::parse)?;
            client(prefix, clients, requests)?;
        }
        None => {
            // Both: this process serves, a second one (this program again) is the clients.
            let prefix = format!("/shmring-async-demo-{}", std::process::id());
            let (clients, requests) = (64, 10_000);
            let mut child = None;
            let served = server(&prefix, clients, || {
                child = Some(
                    Command::new(std::env::current_exe().expect("this program"))
                        .args([
                            "client",
                            &prefix,
                            &clients.to_string(),
                            &requests.to_string(),
                        ])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("start the clients"),
                );
            });
            let status = child.take().map(|mut c| c.wait()).transpose()?;
            // The clients unlink the names once attached; if they never got there, do it here.
            for c in 0..clients {
                let _ = shmring::unlink(&ring_name(&prefix, c, "req"));
                let _ = shmring::unlink(&ring_name(&prefix, c, "rep"));
            }
            let served = served?;
            println!("server: served {served} requests on one thread");
            if !status.is_some_and(|s| s.success()) {
                return Err(format!("the clients failed: {status:?}").into());
            }
        }
        Some(other) => return Err(format!("unknown mode {other:?}: server | client").into()),
    }
    Ok(())
}
