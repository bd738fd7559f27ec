//! An anonymous ring (a sealed memfd: no name, nothing to clean up) shared across `fork`.
//!
//! The parent creates the ring with `Producer::create_anonymous`, which also returns a
//! descriptor of it, and forks. The child attaches as the consumer with `Consumer::from_fd`
//! on its inherited copy of the descriptor, receives and checks every message, and exits
//! with its verdict. The parent sends the messages and collects the child's exit status.
//!
//! The producer handle the child inherited is the parent's endpoint: there, its calls fail
//! (`Corruption::is_inherited`) and dropping it closes nothing.
//!
//! ```text
//! cargo run --release --example fork_anonymous
//! ```

use std::error::Error;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use shmring::spsc;

const MESSAGES: u64 = 1_000_000;

/// The child: consumes the ring until end of stream; returns how many messages were right.
fn child(fd: OwnedFd) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let mut rx = spsc::Consumer::from_fd(fd)?;
    let mut next = 0u64;
    while let Ok(msg) = rx.recv() {
        let seq = u64::from_le_bytes(msg[..8].try_into()?);
        if seq != next || msg.len() != 8 + (seq % 57) as usize {
            return Err(format!(
                "message {seq} ({} bytes) where {next} was expected",
                msg.len()
            )
            .into());
        }
        next += 1;
    }
    Ok(next)
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let config = spsc::Config::default().capacity_bytes(256 * 1024);
    let (mut tx, fd) = spsc::Producer::create_anonymous(config)?;

    // SAFETY: this process has a single thread here, so the child may run any code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        // The child: the producer is the parent's; dropping our copy closes nothing.
        drop(tx);
        let code = match child(fd) {
            Ok(n) if n == MESSAGES => {
                println!("child: {n} messages received in order over an anonymous ring");
                0
            }
            Ok(n) => {
                eprintln!("child: {n} messages, {MESSAGES} sent");
                1
            }
            Err(e) => {
                eprintln!("child: {e}");
                1
            }
        };
        std::process::exit(code);
    }

    // The parent: the child has its own copy of the descriptor.
    drop(fd);
    let started = Instant::now();
    let mut buf = [0u8; 8 + 56];
    for seq in 0..MESSAGES {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        // Bounded: a child that failed before attaching never drains the ring.
        tx.send_timeout(&buf[..8 + (seq % 57) as usize], Duration::from_secs(30))?;
    }
    drop(tx); // end of stream
    let mut status = 0;
    // SAFETY: waits for the child this process just forked, by its pid.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(std::io::Error::last_os_error().into());
    }
    let took = started.elapsed();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child failed (wait status {status:#x})").into());
    }
    println!(
        "parent: {MESSAGES} messages to a forked child in {took:.2?} ({:.1} M messages/s)",
        MESSAGES as f64 / took.as_secs_f64() / 1e6
    );
    Ok(())
}
