//! The ring subcommands: create, stat, send, recv, unlink.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shmring::spsc::{Consumer, Producer};
use shmring::{RecvTimeoutError, WaitStrategy};

use crate::CliError;

/// Where POSIX shared-memory objects appear in the file system on Linux.
const SHM_DIR: &str = "/dev/shm";

/// Parses a byte count with an optional binary suffix: `4096`, `64K`, `1M`, `1G`, `64KiB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 4096, 64K, 1M)"))?;
    let mult: usize = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => return Err(format!("unknown size suffix {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim_start_matches("0o");
    let m = u32::from_str_radix(t, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if m & !0o777 != 0 {
        return Err(format!("mode {s} has bits outside 0o777"));
    }
    Ok(m)
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(format!("{s:?} is not a usable number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// How a blocked call waits (`WaitStrategy`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Wait {
    /// Spin briefly, then sleep on the futex.
    Adaptive,
    /// Sleep at once.
    Block,
    /// Never sleep.
    Spin,
}

impl From<Wait> for WaitStrategy {
    fn from(w: Wait) -> WaitStrategy {
        match w {
            Wait::Adaptive => WaitStrategy::Adaptive,
            Wait::Block => WaitStrategy::Block,
            Wait::Spin => WaitStrategy::Spin,
        }
    }
}

/// Which end the creating process keeps.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    /// Receive: print messages until end of stream (as `recv`).
    Consumer,
    /// Send: standard input lines become messages (as `send`).
    Producer,
    /// Neither: create the ring and exit, leaving both ends free for `send` and `recv`
    /// (the name is kept).
    None,
}

/// Options of `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the ring: one leading '/', no other '/' (e.g. /orders).
    name: String,
    /// Bytes of data region; a power of two (suffixes K, M, G).
    #[arg(long, default_value = "1M", value_parser = parse_bytes)]
    capacity: usize,
    /// Largest message in bytes (default and maximum: capacity / 2 - 8).
    #[arg(long, value_parser = parse_bytes)]
    max_message: Option<usize>,
    /// Permission bits of the object, octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    mode: u32,
    /// Which end this process keeps.
    #[arg(long, value_enum, default_value = "consumer")]
    role: Role,
    /// How to wait when the ring is empty (consumer) or full (producer).
    #[arg(long, value_enum, default_value = "adaptive")]
    wait: Wait,
    /// Keep the name after this process ends (default: unlink it on exit).
    #[arg(long)]
    keep: bool,
    /// Consumer: stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Consumer: give up if no message arrives for this many seconds.
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<Duration>,
}

/// Options of `stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Name of the ring.
    name: String,
}

/// Options of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Name of the ring (opened as its producer).
    name: String,
    /// Messages to send; without any, each line of standard input is one message.
    messages: Vec<String>,
    /// Give up if the ring stays full for this many seconds.
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// How to wait while the ring is full.
    #[arg(long, value_enum, default_value = "adaptive")]
    wait: Wait,
}

/// Options of `recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Name of the ring (opened as its consumer).
    name: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Give up if no message arrives for this many seconds.
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// How to wait while the ring is empty.
    #[arg(long, value_enum, default_value = "adaptive")]
    wait: Wait,
}

/// Options of `unlink`.
#[derive(Debug, Args)]
pub struct UnlinkArgs {
    /// Names of the rings to remove.
    #[arg(required = true)]
    names: Vec<String>,
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

pub fn create(a: CreateArgs) -> Result<ExitCode, CliError> {
    let mut config = shmring::spsc::Config::default()
        .capacity_bytes(a.capacity)
        .mode(a.mode)
        .wait_strategy(a.wait.into());
    if let Some(m) = a.max_message {
        config = config.max_message_bytes(m);
    }
    match a.role {
        Role::Consumer => {
            let mut rx = Consumer::create(&a.name, config)?;
            let _guard = UnlinkGuard((!a.keep).then_some(a.name.as_str()));
            eprintln!(
                "shmring: created {} ({} bytes, largest message {} bytes); waiting for a producer",
                a.name,
                rx.capacity(),
                rx.max_message()
            );
            receive(&mut rx, a.count, a.timeout)
        }
        Role::Producer => {
            let mut tx = Producer::create(&a.name, config)?;
            let _guard = UnlinkGuard((!a.keep).then_some(a.name.as_str()));
            eprintln!(
                "shmring: created {} ({} bytes, largest message {} bytes); sending standard input",
                a.name,
                tx.capacity(),
                tx.max_message()
            );
            send_lines(&mut tx, io::stdin().lock(), None)?;
            Ok(ExitCode::SUCCESS)
        }
        Role::None => {
            shmring::spsc::create(&a.name, config)?;
            eprintln!(
                "shmring: created {}; attach with `shmring send {0}` and `shmring recv {0}`, \
                 remove with `shmring unlink {0}`",
                a.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn stat(a: StatArgs) -> Result<ExitCode, CliError> {
    shmring::validate_name(&a.name)?;
    let path = format!("{SHM_DIR}{}", a.name);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("no shared-memory object named {:?}", a.name).into());
        }
        Err(e) => return Err(format!("cannot stat {path}: {e}").into()),
    };
    let mut magic = [0u8; 8];
    let shmring_magic = std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| &magic == b"SHMRING\0");
    println!("name:        {}", a.name);
    println!("object:      {path}");
    println!("size:        {} bytes", meta.len());
    println!("mode:        {:o}", meta.mode() & 0o7777);
    println!("owner:       uid {} gid {}", meta.uid(), meta.gid());
    match &shmring_magic {
        Ok(true) => println!("contents:    shmring ring (magic present)"),
        Ok(false) => println!("contents:    not a shmring ring (no magic)"),
        Err(e) => println!("contents:    unreadable ({e})"),
    }
    if matches!(shmring_magic, Ok(true)) {
        let info = shmring::inspect(&a.name)?;
        let kind = match info.kind {
            shmring::RingKind::Spsc => "SPSC",
            shmring::RingKind::Mpmc => "MPMC",
        };
        println!("kind:        {kind}");
        match info.kind {
            shmring::RingKind::Spsc => println!("capacity:    {} bytes", info.capacity),
            shmring::RingKind::Mpmc => println!(
                "capacity:    {} slots of {} bytes",
                info.capacity, info.slot_size
            ),
        }
        println!("max message: {} bytes", info.max_message);
        println!("mapped:      {} bytes", info.object_len);
        println!(
            "endpoints:   {} in use of {}",
            info.endpoints.len(),
            info.registry_len
        );
        for e in &info.endpoints {
            println!(
                "  [{}] {:<9} pid {:<8} {:?}",
                e.slot, e.role, e.pid, e.state
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn send(a: SendArgs) -> Result<ExitCode, CliError> {
    let mut tx = Producer::open(&a.name)?;
    tx.set_wait_strategy(a.wait.into());
    if a.messages.is_empty() {
        send_lines(&mut tx, io::stdin().lock(), a.timeout)?;
    } else {
        for m in &a.messages {
            send_one(&mut tx, m.as_bytes(), a.timeout)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn send_one(tx: &mut Producer, msg: &[u8], timeout: Option<Duration>) -> Result<(), CliError> {
    let r = match timeout {
        None => tx.send(msg).map_err(io::Error::from),
        Some(t) => tx.send_timeout(msg, t).map_err(io::Error::from),
    };
    r.map_err(|e| format!("cannot send a {}-byte message: {e}", msg.len()).into())
}

fn send_lines(
    tx: &mut Producer,
    mut input: impl BufRead,
    timeout: Option<Duration>,
) -> Result<(), CliError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading standard input: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        send_one(tx, &line, timeout)?;
    }
}

pub fn recv(a: RecvArgs) -> Result<ExitCode, CliError> {
    let mut rx = Consumer::open(&a.name)?;
    rx.set_wait_strategy(a.wait.into());
    receive(&mut rx, a.count, a.timeout)
}

fn receive(
    rx: &mut Consumer,
    count: Option<u64>,
    timeout: Option<Duration>,
) -> Result<ExitCode, CliError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut n = 0u64;
    while count.is_none_or(|c| n < c) {
        let msg = match timeout {
            None => rx.recv().map_err(RecvTimeoutError::from),
            Some(t) => rx.recv_timeout(t),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                eprintln!(
                    "shmring: no message within {:.3} s ({n} received)",
                    timeout.unwrap_or_default().as_secs_f64()
                );
                return Ok(ExitCode::from(3));
            }
            Err(e @ RecvTimeoutError::Corrupted(_)) => return Err(e.into()),
        };
        let written = out
            .write_all(&msg)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        drop(msg);
        match written {
            Ok(()) => n += 1,
            // The reader of our output went away (e.g. `| head`): stop quietly.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(format!("writing standard output: {e}").into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unlink(a: UnlinkArgs) -> Result<ExitCode, CliError> {
    let mut failed = false;
    for name in &a.names {
        if let Err(e) = shmring::unlink(name) {
            eprintln!("shmring: error: {e}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
