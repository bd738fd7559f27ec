//! The producer half of the textbook shared-memory producer/consumer, without the busy wait:
//! creates a named ring and sends numbered, checksummed messages of varying size. Run
//! `consumer` with the same name in another terminal (either may start first).
//!
//! ```sh
//! cargo run --release --example producer -- /shmring-demo 1000000
//! cargo run --release --example consumer -- /shmring-demo
//! ```

use std::time::Instant;

use shmring::{OpenError, spsc};

fn main() {
    if let Err(e) = run() {
        eprintln!("producer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "/shmring-demo".to_owned());
    let count: u64 = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| format!("bad message count {n:?}: {e}"))?,
        None => 1_000_000,
    };

    let mut tx = match spsc::Producer::create(
        &name,
        shmring::spsc::Config::default().capacity_bytes(1 << 20),
    ) {
        Err(OpenError::AlreadyExists(_)) => {
            return Err(format!(
                "{name} already exists (a previous run?); remove it with \
                 `cargo run -- unlink {name}` or `rm /dev/shm{name}`"
            )
            .into());
        }
        r => r?,
    };
    eprintln!("producer: created {name}; sending {count} messages");

    let start = Instant::now();
    let mut bytes = 0u64;
    for seq in 0..count {
        // Write in place: [seq: u64][crc32 of the rest: u32][payload].
        let len = 12 + (seq.wrapping_mul(0x9E37_79B9) % 245) as usize;
        let mut g = match tx.reserve(len) {
            Ok(g) => g,
            Err(e) if e.is_disconnected() => {
                return Err(format!("consumer went away after {seq} messages").into());
            }
            Err(e) => return Err(e.into()),
        };
        g[..8].copy_from_slice(&seq.to_le_bytes());
        for (i, b) in g[12..].iter_mut().enumerate() {
            *b = (seq as u8).wrapping_add(i as u8);
        }
        let crc = crc32fast::hash(&g[12..]);
        g[8..12].copy_from_slice(&crc.to_le_bytes());
        match g.commit(len) {
            Ok(()) => bytes += len as u64,
            Err(shmring::CommitError::Disconnected) => {
                return Err(format!("consumer went away after {seq} messages").into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = tx.wait_stats();
    tx.close(); // end of stream: the consumer drains, then stops
    eprintln!(
        "producer: sent {count} messages ({:.1} MB) in {secs:.2} s: {:.2} M msg/s; \
         waited {} times, slept {} times",
        bytes as f64 / 1e6,
        count as f64 / secs / 1e6,
        stats.waits,
        stats.sleeps
    );
    Ok(())
}
