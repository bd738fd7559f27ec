//! A tiny RPC between two processes: two SPSC rings as a duplex channel, typed requests and
//! replies (`#[repr(C)]` structs that derive `bytemuck::Pod`).
//!
//! The client (this program) creates a request ring (it produces) and a reply ring (it
//! consumes), starts the server (this program again, with the argument `server`), and makes
//! 10,000 calls, one at a time, checking every answer. The server reads each request in
//! place and writes each reply in place. The client closes its request ring to end the
//! session: the server sees end of stream and exits.
//!
//! ```text
//! cargo run --release --features bytemuck --example request_reply
//! ```

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmring::spsc;

const CALLS: u64 = 10_000;

const OP_ADD: u32 = 1;
const OP_MUL: u32 = 2;
const OP_DIV: u32 = 3;

/// A call: `id` is echoed in the reply; `op` is one of the `OP_` codes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Request {
    id: u64,
    op: u32,
    _pad: u32,
    a: f64,
    b: f64,
}

/// An answer: `ok == 0` means `value` is meaningless (unknown operation, division by zero).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Reply {
    id: u64,
    ok: u32,
    _pad: u32,
    value: f64,
}

/// Removes the rings' names when the client is done, also on an early error.
struct Names([String; 2]);

impl Drop for Names {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = shmring::unlink(name);
        }
    }
}

fn serve(requests: &str, replies: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut rx = spsc::Consumer::open(requests)?;
    let mut tx = spsc::Producer::open(replies)?;
    let mut served = 0u64;
    // Ends when the client closes its request ring.
    while let Ok(msg) = rx.recv() {
        // In place: the request is read where the client wrote it.
        let req: &Request = msg.as_value()?;
        let value = match req.op {
            OP_ADD => Some(req.a + req.b),
            OP_MUL => Some(req.a * req.b),
            OP_DIV if req.b != 0.0 => Some(req.a / req.b),
            _ => None,
        };
        // ...and the reply is written in place in the other ring.
        let mut reply = tx.reserve_value::<Reply>()?;
        reply.id = req.id;
        reply.ok = u32::from(value.is_some());
        reply.value = value.unwrap_or(0.0);
        drop(msg); // the request's space goes back to the client
        reply.commit()?;
        served += 1;
    }
    eprintln!("server: {served} requests served, client gone");
    Ok(())
}

/// One call: sends the request and waits for its reply.
fn call(
    tx: &mut spsc::Producer,
    rx: &mut spsc::Consumer,
    req: Request,
) -> Result<Option<f64>, Box<dyn Error + Send + Sync>> {
    tx.send_value(&req)?;
    let msg = rx.recv_timeout(Duration::from_secs(10))?;
    let reply: Reply = msg.read_value()?;
    if reply.id != req.id {
        return Err(format!("reply {} to request {}", reply.id, req.id).into());
    }
    Ok((reply.ok != 0).then_some(reply.value))
}

fn request(id: u64, op: u32, a: f64, b: f64) -> Request {
    Request {
        id,
        op,
        _pad: 0,
        a,
        b,
    }
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        return serve(&args[2], &args[3]);
    }

    let pid = std::process::id();
    let names = Names([
        format!("/shmring-rpc-requests-{pid}"),
        format!("/shmring-rpc-replies-{pid}"),
    ]);
    let config = spsc::Config::default().capacity_bytes(64 * 1024);
    let mut tx = spsc::Producer::create(&names.0[0], config)?;
    let mut rx = spsc::Consumer::create(&names.0[1], config)?;
    let mut server = Command::new(std::env::current_exe()?)
        .args(["server", &names.0[0], &names.0[1]])
        .spawn()?;

    // The first call also tells us the server is attached to both rings: the names can go.
    let first = call(&mut tx, &mut rx, request(0, OP_ADD, 3.0, 4.0))?;
    assert_eq!(first, Some(7.0));
    drop(names);
    println!("3 + 4 = {}", first.unwrap_or(f64::NAN));
    let none = call(&mut tx, &mut rx, request(1, OP_DIV, 1.0, 0.0))?;
    assert_eq!(none, None);
    println!("1 / 0 = error (as it should be)");

    let started = Instant::now();
    for id in 2..CALLS {
        let (a, b) = (id as f64, (id % 97) as f64 + 1.0);
        let (op, want) = match id % 3 {
            0 => (OP_ADD, a + b),
            1 => (OP_MUL, a * b),
            _ => (OP_DIV, a / b),
        };
        let got = call(&mut tx, &mut rx, request(id, op, a, b))?;
        if got != Some(want) {
            return Err(format!("call {id}: got {got:?}, expected {want}").into());
        }
    }
    let took = started.elapsed();

    drop(tx); // end of the session: the server sees end of stream
    let status = server.wait()?;
    if !status.success() {
        return Err(format!("server failed: {status}").into());
    }
    println!(
        "{CALLS} calls answered and checked; mean round trip {:.2} µs",
        took.as_secs_f64() * 1e6 / (CALLS - 2) as f64
    );
    Ok(())
}
