//! The consumer half of `producer`: opens the named ring (waiting for it to appear), checks
//! every message's sequence number and checksum, and reports the end of stream, or the
//! producer's death if it is killed.
//!
//! ```sh
//! cargo run --release --example consumer -- /shmring-demo
//! ```

use std::time::{Duration, Instant};

use shmring::{RecvError, spsc};

fn main() {
    if let Err(e) = run() {
        eprintln!("consumer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/shmring-demo".to_owned());

    // The producer creates the ring; wait for it (bounded).
    let mut rx = spsc::Consumer::open_timeout(&name, Duration::from_secs(60))?;
    // Both ends are attached: the name is no longer needed.
    shmring::unlink(&name)?;
    eprintln!("consumer: attached to {name}");

    let mut expected = 0u64;
    let mut bytes = 0u64;
    let mut start = None;
    loop {
        let msg = match rx.recv() {
            Ok(m) => m,
            Err(RecvError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        };
        start.get_or_insert_with(Instant::now);
        if msg.len() < 12 {
            return Err(format!("message {expected}: only {} bytes", msg.len()).into());
        }
        let seq = u64::from_le_bytes(msg[..8].try_into()?);
        let crc = u32::from_le_bytes(msg[8..12].try_into()?);
        if seq != expected {
            return Err(format!("expected message {expected}, got {seq}").into());
        }
        if crc32fast::hash(&msg[12..]) != crc {
            return Err(format!("message {seq}: checksum mismatch").into());
        }
        bytes += msg.len() as u64;
        expected += 1;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // End of stream: either the producer closed, or it died (then it may have sent fewer
    // messages than it meant to; it printed how many it sent).
    eprintln!(
        "consumer: end of stream after {expected} messages ({:.1} MB), all in order and intact; \
         {:.2} M msg/s",
        bytes as f64 / 1e6,
        if secs > 0.0 {
            expected as f64 / secs / 1e6
        } else {
            0.0
        }
    );
    println!("{expected}");
    Ok(())
}
