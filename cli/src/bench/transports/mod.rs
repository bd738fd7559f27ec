//! The transports the benchmark compares, one module per family. Adding a transport is one
//! module that implements [`Transport`] plus one line in [`registry`].

mod asynch;
mod floor;
mod links;
mod mpmc;
mod mq;
mod pipe;
mod shm;
mod socket;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::harness::{Job, ParentResult, SideReport, Test};

/// Which family a transport belongs to (for the tables and ratios).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The machine's floor (bare cache-line ping-pong, memcpy).
    Floor,
    /// A shmring ring.
    Shmring,
    /// A kernel IPC mechanism.
    Kernel,
}

/// Why a job did not produce a measurement.
#[derive(Debug)]
pub enum Unavailable {
    /// The transport cannot carry this job on this machine (reported as "n/a", not a failure).
    NotApplicable(String),
    /// Setting it up failed.
    Failed(String),
}

impl From<String> for Unavailable {
    fn from(s: String) -> Self {
        Unavailable::Failed(s)
    }
}

/// What the parent prepared for one job before starting the peer.
pub struct Setup {
    /// What the peer needs to attach (names, descriptor numbers, a port), as JSON.
    pub args: Value,
    /// Descriptors the peer inherits (not close-on-exec). The parent closes its copies once
    /// the peer has started.
    pub pass: Vec<OwnedFd>,
    /// The parent's end, run once the peer reported that it is ready.
    pub end: Box<dyn ParentEnd>,
}

/// The parent's end of a prepared job.
pub trait ParentEnd {
    /// Runs the parent's side (see `harness::drive`). Called after the peer is ready; it may
    /// first finish the set-up (accept a connection, remove names).
    fn run(&mut self, job: &Job) -> Result<ParentResult, String>;
}

/// A way of moving messages between two processes.
pub trait Transport: Sync {
    /// Name used on the command line and in the tables.
    fn name(&self) -> &'static str;
    /// One line on what exactly is measured.
    fn about(&self) -> &'static str;
    /// Its family.
    fn family(&self) -> Family {
        Family::Kernel
    }
    /// Why the transport cannot run this test at this size at all, if so.
    fn not_applicable(&self, _test: Test, _size: usize) -> Option<String> {
        None
    }
    /// Measures in this process alone (no peer): only the memcpy floor does.
    fn in_process(&self, _job: &Job) -> Option<Result<ParentResult, String>> {
        None
    }
    /// Creates the channel for `job` in the parent.
    fn prepare(&self, ctx: &Ctx, job: &Job) -> Result<Setup, Unavailable>;
    /// Runs the peer's side in the peer process. `ready` must be called once the peer has
    /// attached to everything the parent created (or as soon as the parent may proceed).
    fn peer(&self, job: &Job, args: &Value, ready: &mut dyn FnMut()) -> Result<SideReport, String>;
}

/// Every transport, in table order.
pub fn registry() -> &'static [&'static dyn Transport] {
    static ALL: &[&dyn Transport] = &[
        &floor::SpinFloor,
        &floor::MEMCPY,
        &floor::MEMCPY_PLUS_8,
        &shm::SPSC_SPIN,
        &shm::SPSC_BLOCK,
        &shm::SPSC_ADAPTIVE,
        &shm::SPSC_BATCH,
        &shm::SPSC_MANY,
        &shm::SPSC_ZERO_COPY,
        &mpmc::Mpmc,
        &asynch::ShmAsync,
        &pipe::PIPE,
        &pipe::PIPE_1M,
        &pipe::Fifo,
        &socket::UNIX_STREAM,
        &socket::UNIX_SEQPACKET,
        &socket::UNIX_DGRAM,
        &socket::Tcp,
        &asynch::TokioUnix,
        &mq::PosixMq,
    ];
    ALL
}

/// Looks a transport up by name.
pub fn find(name: &str) -> Option<&'static dyn Transport> {
    registry().iter().copied().find(|t| t.name() == name)
}

/// Per-run context: unique names for shared objects.
pub struct Ctx {
    pid: u32,
    counter: AtomicU64,
}

impl Ctx {
    /// A context for this process.
    pub fn new() -> Ctx {
        Ctx {
            pid: std::process::id(),
            counter: AtomicU64::new(0),
        }
    }

    /// A name unique to this run and call, e.g. `/shmring-bench-4242-7-a`.
    pub fn unique(&self, suffix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("/shmring-bench-{}-{n}-{suffix}", self.pid)
    }
}

/// Reads a string field of the peer's arguments.
pub fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("peer arguments lack string {key:?}"))
}

/// Reads an integer field of the peer's arguments.
pub fn arg_int(args: &Value, key: &str) -> Result<i64, String> {
    args.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("peer arguments lack integer {key:?}"))
}

/// Formats an OS error for the report.
pub fn os_err(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}
