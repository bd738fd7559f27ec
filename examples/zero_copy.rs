//! A struct written and read in place: no copy between the two processes' memory and the
//! ring, on either side.
//!
//! The writer (this program) starts the reader (this program again, with the argument
//! `reader`), which creates an SPSC ring; the writer opens it. For each frame the writer
//! reserves a zeroed `Frame` inside the ring (`reserve_value`), fills its fields there and
//! commits it. The reader borrows each frame
//! where it lies (`as_value`, which checks the message's size and the payload's alignment),
//! checks its sequence number and checksum, and releases it by dropping the message.
//!
//! ```text
//! cargo run --release --features bytemuck --example zero_copy
//! ```

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmring::{RecvTimeoutError, spsc};

const FRAMES: u64 = 100_000;
const SAMPLES: usize = 500;

/// A frame of samples, 4 KiB: large enough that a copy would cost something.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Frame {
    seq: u64,
    /// Sum of the samples' bits, as written.
    checksum: u64,
    samples: [f64; SAMPLES],
}

fn checksum(samples: &[f64]) -> u64 {
    samples
        .iter()
        .fold(0u64, |acc, s| acc.rotate_left(5) ^ s.to_bits())
}

/// Removes the ring's name once both ends are attached, or on an early error.
struct Name(String);

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmring::unlink(&self.0);
    }
}

fn read(name: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
    let name = Name(name.to_owned());
    let config = spsc::Config::default().capacity_bytes(1 << 20);
    let mut rx = spsc::Consumer::create(&name.0, config)?;
    let mut next = 0u64;
    let mut sum = 0.0;
    // A writer that never comes (or stalls) ends the wait after a while.
    loop {
        let msg = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Disconnected) => break, // end of stream
            Err(e) => return Err(e.into()),
        };
        let frame: &Frame = msg.as_value()?; // the frame where the writer put it
        if frame.seq != next {
            return Err(format!("frame {} where {next} was expected", frame.seq).into());
        }
        if checksum(&frame.samples) != frame.checksum {
            return Err(format!("frame {next}: checksum mismatch").into());
        }
        sum += frame.samples[SAMPLES - 1];
        next += 1;
    }
    println!("reader: {next} frames read in place, every checksum right (last samples sum {sum})");
    if next != FRAMES {
        return Err(format!("{next} frames, {FRAMES} sent").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reader") {
        return read(&args[2]);
    }

    let name = Name(format!("/shmring-zero-copy-{}", std::process::id()));
    let mut reader = Command::new(std::env::current_exe()?)
        .args(["reader", &name.0])
        .spawn()?;
    // The reader creates the ring; both ends are attached once this succeeds.
    let mut tx = spsc::Producer::open_timeout(&name.0, Duration::from_secs(10))?;
    drop(name);

    let started = Instant::now();
    for seq in 0..FRAMES {
        // A zeroed Frame inside the ring, aligned for it: fill it where it lies.
        let mut frame = tx.reserve_value::<Frame>()?;
        frame.seq = seq;
        for (i, s) in frame.samples.iter_mut().enumerate() {
            *s = (seq as f64) + i as f64 * 0.5;
        }
        frame.checksum = checksum(&frame.samples);
        frame.commit()?;
    }
    drop(tx); // end of stream
    let status = reader.wait()?;
    let took = started.elapsed();
    if !status.success() {
        return Err(format!("reader failed: {status}").into());
    }
    println!(
        "writer: {FRAMES} frames of {} bytes written in place in {:.2?} ({:.0} MB/s)",
        size_of::<Frame>(),
        took,
        (FRAMES as usize * size_of::<Frame>()) as f64 / took.as_secs_f64() / 1e6
    );
    Ok(())
}
