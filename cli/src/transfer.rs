//! `create`, `send` and `recv`: making a ring, feeding it from standard input, draining it to
//! standard output.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use shmring::{mpmc, spsc};

use crate::args::{Framing, Kind, Wait, parse_bytes, parse_mode, parse_secs};
use crate::ends::{Got, Rx, Tx};
use crate::exit::{Exit, Failure, Outcome};
use crate::framing::{FrameReader, write_frame};

/// Which end the creating process keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Neither: create the ring and exit; `send` and `recv` attach from other shells.
    None,
    /// Receive: print messages until the end of the stream, as `recv`.
    #[value(alias = "consumer")]
    Receiver,
    /// Send: standard input becomes messages, as `send`.
    #[value(alias = "producer")]
    Sender,
}

/// Options of `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the ring: one leading '/', no other '/' (e.g. /orders).
    name: String,
    /// Kind of ring.
    #[arg(long, value_enum, default_value = "spsc")]
    kind: Kind,
    /// SPSC: bytes of data region, a power of two (suffixes K, M, G) [default: 1M].
    #[arg(long, value_parser = parse_bytes)]
    capacity: Option<usize>,
    /// MPMC: number of slots (messages in flight at most), a power of two (suffixes K, M)
    /// [default: 1024].
    #[arg(long, value_parser = parse_bytes)]
    slots: Option<usize>,
    /// Largest message in bytes [SPSC default and maximum: capacity / 2 - 8; MPMC default:
    /// 112].
    #[arg(long, value_parser = parse_bytes)]
    max_message: Option<usize>,
    /// MPMC: entries of the endpoint registry (senders and receivers attached at once),
    /// 2..=64 [default: 64].
    #[arg(long)]
    endpoints: Option<usize>,
    /// Permission bits of the object, octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Which end this process keeps (`receiver`/`consumer`, `sender`/`producer`); with one,
    /// the name is removed when this process ends unless --keep is given.
    #[arg(long, value_enum, default_value = "none")]
    role: Role,
    /// With --role: keep the name after this process ends.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    io: IoArgs,
}

/// Options of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Name of the ring (attached as its producer, or as one more MPMC sender).
    name: String,
    /// Messages to send; without any, standard input is read and split as --framing says.
    messages: Vec<String>,
    /// Only attach to a ring of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    #[command(flatten)]
    io: IoArgs,
}

/// Options of `recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Name of the ring (attached as its consumer, or as one more MPMC receiver).
    name: String,
    /// Only attach to a ring of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    #[command(flatten)]
    io: IoArgs,
}

/// Options of the moving of messages, shared by `send`, `recv` and `create --role`.
#[derive(Debug, Args)]
struct IoArgs {
    /// How messages are delimited on standard input (send) and output (recv).
    #[arg(long, value_enum, default_value = "lines")]
    framing: Framing,
    /// recv: stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Give up (exit 4) when no message arrives (recv) or no room frees up (send) for this
    /// many seconds.
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// How to wait while the ring is empty (recv) or full (send).
    #[arg(long, value_enum, default_value = "adaptive")]
    wait: Wait,
}

/// Removes the name when dropped, unless disarmed.
struct UnlinkGuard<'a>(Option<&'a str>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            // Nothing more can be done about a failure here; the name may already be gone.
            let _ = shmring::unlink(name);
        }
    }
}

pub fn create(a: CreateArgs) -> Outcome {
    let usage = |m: &str| Err(Failure::new(Exit::Usage, m));
    match a.kind {
        Kind::Spsc if a.slots.is_some() || a.endpoints.is_some() => {
            return usage(
                "--slots and --endpoints are for MPMC rings (--kind mpmc); an SPSC ring takes --capacity",
            );
        }
        Kind::Mpmc if a.capacity.is_some() => {
            return usage(
                "--capacity is for SPSC rings; an MPMC ring takes --slots and --max-message",
            );
        }
        _ => {}
    }
    if a.keep && a.role == Role::None {
        return usage(
            "--keep goes with --role receiver or --role sender (a ring made with --role none keeps its name)",
        );
    }
    let made = match a.kind {
        Kind::Spsc => {
            let mut config = spsc::Config::default()
                .capacity_bytes(a.capacity.unwrap_or(1 << 20))
                .mode(a.mode);
            if let Some(m) = a.max_message {
                config = config.max_message_bytes(m);
            }
            spsc::create(&a.name, config)
        }
        Kind::Mpmc => {
            let mut config = mpmc::Config::default().mode(a.mode);
            if let Some(s) = a.slots {
                config = config.slots(s);
            }
            if let Some(m) = a.max_message {
                config = config.max_message_bytes(m);
            }
            if let Some(e) = a.endpoints {
                config = config.endpoints(e);
            }
            mpmc::create(&a.name, config)
        }
    };
    made.map_err(|e| Failure::from(e).about(&a.name))?;
    // From here on the name exists: a failure to attach must not leave it behind.
    let mut guard = UnlinkGuard(Some(&a.name));
    let kind = Some(a.kind);
    match a.role {
        Role::None => {
            guard.0 = None;
            let info = shmring::inspect(&a.name).map_err(Failure::from)?;
            eprintln!(
                "shmring: created {} ({} ring, {}, largest message {} bytes); attach with \
                 `shmring send {0}` and `shmring recv {0}`, remove with `shmring unlink {0}`",
                a.name,
                info.kind,
                match info.kind {
                    shmring::RingKind::Spsc => format!("{} bytes", info.capacity),
                    shmring::RingKind::Mpmc => format!("{} slots", info.capacity),
                },
                info.max_message,
            );
            Ok(Exit::Ok)
        }
        Role::Receiver => {
            let rx = Rx::open(&a.name, kind)?;
            guard.0 = (!a.keep).then_some(a.name.as_str());
            receive(rx, &a.io)
        }
        Role::Sender => {
            let tx = Tx::open(&a.name, kind)?;
            guard.0 = (!a.keep).then_some(a.name.as_str());
            transmit(tx, &[], &a.io)
        }
    }
}

pub fn send(a: SendArgs) -> Outcome {
    let tx = Tx::open(&a.name, a.kind)?;
    transmit(tx, &a.messages, &a.io)
}

pub fn recv(a: RecvArgs) -> Outcome {
    let rx = Rx::open(&a.name, a.kind)?;
    receive(rx, &a.io)
}

/// Sends `messages`, or, without any, the framed messages of standard input; the sending
/// end closes when this returns (end of stream for the receivers).
fn transmit(mut tx: Tx, messages: &[String], io: &IoArgs) -> Outcome {
    tx.set_wait_strategy(io.wait.into());
    let max = tx.max_message();
    let mut sent = 0u64;
    let gone = |sent: u64| {
        Failure::new(
            Exit::Disconnected,
            format!("the receiving side is gone ({sent} messages sent)"),
        )
    };
    // A send into a ring whose receivers died succeeds while there is room: ask first.
    if tx.is_disconnected() {
        return Err(gone(0));
    }
    let mut send = |tx: &mut Tx, msg: &[u8]| {
        let r = tx.send(msg, io.timeout).map_err(|f| match f.exit {
            Exit::Timeout => f.context(format_args!(
                "no room within {} s ({sent} messages sent)",
                secs(io.timeout)
            )),
            Exit::Disconnected => gone(sent),
            _ => f.context(format_args!("message {}", sent + 1)),
        });
        sent += 1;
        r
    };
    if messages.is_empty() {
        let stdin = io::stdin();
        let mut input = FrameReader::new(
            io::BufReader::with_capacity(1 << 16, stdin.lock()),
            io.framing,
        );
        while let Some(msg) = input.next_frame(max)? {
            send(&mut tx, msg)?;
        }
    } else {
        for m in messages {
            send(&mut tx, m.as_bytes())?;
        }
    }
    // Messages left in the ring of a receiving side that is gone will never be read: the
    // broken pipe that a send into it would have met.
    if !tx.is_empty() && tx.is_disconnected() {
        return Err(Failure::new(
            Exit::Disconnected,
            format!("the receiving side is gone with messages unread ({sent} messages sent)"),
        ));
    }
    Ok(Exit::Ok)
}

/// Writes the messages that arrive to standard output, framed, until the end of the stream
/// (exit 0), `--count` messages, `--timeout` without a message (exit 4), or a reader of our
/// output that goes away (`| head`: exit 0).
fn receive(mut rx: Rx, io: &IoArgs) -> Outcome {
    rx.set_wait_strategy(io.wait.into());
    let mut buf = vec![0u8; rx.max_message()];
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut n = 0u64;
    let outcome = loop {
        if io.count.is_some_and(|c| n >= c) {
            break Ok(Exit::Ok);
        }
        // Take what is there without waiting; before waiting, hand what we wrote on (an
        // interactive reader sees each message as it comes, a busy pipe gets full buffers).
        let got = match rx.try_recv(&mut buf)? {
            Got::Empty => {
                if let Err(e) = out.flush() {
                    break output_error(e);
                }
                match rx.recv(&mut buf, io.timeout) {
                    Err(f) if f.exit == Exit::Timeout => {
                        break Err(f.context(format_args!(
                            "no message within {} s ({n} received)",
                            secs(io.timeout)
                        )));
                    }
                    r => r?,
                }
            }
            got => got,
        };
        match got {
            Got::Message(len) => {
                if let Err(e) = write_frame(&mut out, io.framing, &buf[..len]) {
                    break output_error(e);
                }
                n += 1;
            }
            Got::End => break Ok(Exit::Ok),
            Got::Empty => {}
        }
    };
    if let Err(e) = out.flush() {
        return output_error(e);
    }
    outcome
}

/// A failed write to standard output: a reader that went away (`| head`) ends the receive
/// quietly and successfully, as with `yes | head`; anything else is an error.
fn output_error(e: io::Error) -> Outcome {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(Exit::Ok)
    } else {
        Err(Failure::new(
            Exit::Error,
            format!("writing standard output: {e}"),
        ))
    }
}

fn secs(d: Option<Duration>) -> String {
    format!("{:.3}", d.unwrap_or_default().as_secs_f64())
}
