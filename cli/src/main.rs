//! `shmring`: create, inspect, feed, drain and remove shared-memory rings from the shell, and
//! benchmark them against the kernel's IPC mechanisms (`shmring bench`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bench;
mod ring;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lock-free message rings in POSIX shared memory.
#[derive(Debug, Parser)]
#[command(name = "shmring", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a named SPSC ring and act as one of its ends (an SPSC end cannot be handed over,
    /// so the creating process stays attached: as the consumer it prints what arrives, as the
    /// producer it sends its standard input lines).
    Create(ring::CreateArgs),
    /// Show a ring's geometry and endpoints without attaching to it.
    Stat(ring::StatArgs),
    /// Open a ring as its producer and send messages (arguments, or standard input lines).
    Send(ring::SendArgs),
    /// Open a ring as its consumer and print messages until end of stream.
    Recv(ring::RecvArgs),
    /// Remove a ring's name (processes attached keep using it).
    Unlink(ring::UnlinkArgs),
    /// Measure shmring against pipes, FIFOs, Unix sockets, TCP and POSIX message queues.
    Bench(bench::BenchArgs),
    /// The peer process of `bench` (started by `bench` itself).
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer {
        /// Job description (JSON).
        spec: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(a) => ring::create(a),
        Command::Stat(a) => ring::stat(a),
        Command::Send(a) => ring::send(a),
        Command::Recv(a) => ring::recv(a),
        Command::Unlink(a) => ring::unlink(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchPeer { spec } => return bench::peer_main(&spec),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmring: error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Error type of the subcommands: anything printable.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
