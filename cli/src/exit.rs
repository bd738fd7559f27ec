//! How the tool ends: one exit status per kind of failure, and one line on standard error
//! that says what went wrong.

use std::fmt;
use std::process::ExitCode;

use shmring::{OpenError, RecvTimeoutError, SendTimeoutError};

/// The exit statuses of every subcommand (`--help` and the README print [`TABLE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done (for `recv`: also the end of the stream).
    Ok = 0,
    /// Any failure not listed below: I/O, permissions, shared memory full.
    Error = 1,
    /// Bad command line: unknown option, bad size, name or configuration.
    Usage = 2,
    /// No ring (no shared-memory object) of that name.
    NotFound = 3,
    /// `--timeout` passed: no message (`recv`) or no room (`send`) in time.
    Timeout = 4,
    /// The other side is gone: `send` found every receiver closed, or the end to attach
    /// was closed for good.
    Disconnected = 5,
    /// The ring's shared memory holds what no sound ring holds (or was marked poisoned).
    Corrupted = 6,
    /// Not a ring of the kind asked for: another kind, another layout version, not a
    /// shmring object at all.
    WrongKind = 7,
    /// The name or the end is taken: the ring exists already (`create`), its SPSC end is
    /// attached, or its MPMC registry is full.
    Busy = 8,
}

/// The table printed by `--help` and in the README.
pub const TABLE: &str = "\
Exit status:
  0  success (recv: also end of stream)
  1  other error (I/O, permission, shared memory full, message too large)
  2  bad command line (unknown option, bad size, name or configuration)
  3  not found: no ring of that name
  4  timeout (--timeout passed without a message or without room)
  5  disconnected: the other side closed or died (send), or the end is closed for good
  6  corrupted: the ring's shared memory is inconsistent or poisoned
  7  wrong kind: another ring kind or layout version, or not a shmring object
  8  busy: the name exists (create), the end is attached, or the registry is full";

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A failed subcommand: its exit status and the one line to print.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with the ring's name unless it names it.
    pub fn about(self, name: &str) -> Failure {
        if self.message.contains(name) {
            self
        } else {
            self.context(name)
        }
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Failure {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of a subcommand.
pub type Outcome = Result<Exit, Failure>;

/// The status for an error of creating or opening a ring.
pub fn open_status(e: &OpenError) -> Exit {
    match e {
        OpenError::InvalidName { .. } | OpenError::InvalidConfig(_) => Exit::Usage,
        OpenError::NotFound(_) => Exit::NotFound,
        OpenError::NotShmring
        | OpenError::UnsupportedVersion { .. }
        | OpenError::WrongKind { .. }
        | OpenError::Incompatible(_) => Exit::WrongKind,
        OpenError::TooSmall { .. }
        | OpenError::BadGeometry(_)
        | OpenError::Abandoned
        | OpenError::Poisoned
        | OpenError::Corrupted(_) => Exit::Corrupted,
        OpenError::EndpointClosed(_) => Exit::Disconnected,
        OpenError::AlreadyExists(_)
        | OpenError::EndpointTaken(_)
        | OpenError::RegistryFull { .. } => Exit::Busy,
        _ => Exit::Error,
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Failure {
        Failure::new(open_status(&e), one_line(&e))
    }
}

impl From<RecvTimeoutError> for Failure {
    fn from(e: RecvTimeoutError) -> Failure {
        let exit = match e {
            RecvTimeoutError::Timeout => Exit::Timeout,
            RecvTimeoutError::Disconnected => Exit::Disconnected,
            _ => Exit::Corrupted,
        };
        Failure::new(exit, one_line(&e))
    }
}

impl From<SendTimeoutError> for Failure {
    fn from(e: SendTimeoutError) -> Failure {
        let exit = match e {
            SendTimeoutError::Timeout(_) => Exit::Timeout,
            SendTimeoutError::Disconnected(_) => Exit::Disconnected,
            SendTimeoutError::TooLarge { .. } => Exit::Error,
            _ => Exit::Corrupted,
        };
        Failure::new(exit, one_line(&e))
    }
}

/// An error and its sources on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = c.source();
    }
    s
}
