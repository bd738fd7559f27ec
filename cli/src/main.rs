//! `shmring`: create, list, inspect, feed, drain and remove shared-memory rings from the
//! shell, and benchmark them against the kernel's IPC mechanisms (`shmring bench`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod bench;
mod ends;
mod exit;
mod framing;
mod list;
mod stat;
mod transfer;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use exit::{Exit, Outcome};

/// Lock-free message rings in POSIX shared memory (SPSC and MPMC).
#[derive(Debug, Parser)]
#[command(name = "shmring", version, about, propagate_version = true, after_help = exit::TABLE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a named ring (SPSC or MPMC). By default the ring is left for `send` and `recv`
    /// to attach to from other shells; --role keeps one end in this process.
    #[command(after_help = exit::TABLE)]
    Create(transfer::CreateArgs),
    /// List every ring on this machine (shmring objects in /dev/shm): kind, size, fill
    /// level, endpoints alive and dead, owner, mode, status.
    #[command(after_help = exit::TABLE)]
    List(list::ListArgs),
    /// Show one ring: geometry, fill level, head and tail, messages in flight, sleepers,
    /// each endpoint's pid and liveness. Attaches nothing.
    #[command(after_help = exit::TABLE)]
    Stat(stat::StatArgs),
    /// Attach as the producer (SPSC) or a sender (MPMC) and send messages: the arguments, or
    /// standard input split by --framing. The end closes when the input ends.
    #[command(after_help = exit::TABLE)]
    Send(transfer::SendArgs),
    /// Attach as the consumer (SPSC) or a receiver (MPMC) and write the messages to standard
    /// output, framed, until the end of the stream.
    #[command(after_help = exit::TABLE)]
    Recv(transfer::RecvArgs),
    /// Remove rings' names (processes attached keep using them); --stale removes only rings
    /// whose every endpoint is gone.
    #[command(after_help = exit::TABLE)]
    Unlink(list::UnlinkArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr, status 2.
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    let outcome: Outcome = match cli.command {
        Command::Create(a) => transfer::create(a),
        Command::List(a) => list::list(a),
        Command::Stat(a) => stat::stat(a),
        Command::Send(a) => transfer::send(a),
        Command::Recv(a) => transfer::recv(a),
        Command::Unlink(a) => list::unlink(a),
        Command::Bench(a) => {
            return match bench::run(a) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("shmring: error: {}", exit::one_line(&*e));
                    Exit::Error.into()
                }
            };
        }
        Command::BenchPeer { spec } => return bench::peer_main(&spec),
    };
    match outcome {
        Ok(code) => code.into(),
        Err(f) => {
            eprintln!("shmring: error: {f}");
            f.exit.into()
        }
    }
}

/// Error type of `bench`: anything printable.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
