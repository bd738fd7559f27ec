//! The sending and receiving ends of either kind of ring, behind one interface for `send`,
//! `recv` and `create`.

use std::time::Duration;

use shmring::{EndpointState, OpenError, RecvTimeoutError, TryRecvError, WaitStrategy, mpmc, spsc};

use crate::args::Kind;
use crate::exit::{Exit, Failure};

/// Opens a ring as `kind` says, or, without a kind, as whichever kind it is.
fn open_either<T>(
    name: &str,
    kind: Option<Kind>,
    open_spsc: impl FnOnce(&str) -> Result<T, OpenError>,
    open_mpmc: impl FnOnce(&str) -> Result<T, OpenError>,
) -> Result<T, Failure> {
    let r = match kind {
        Some(Kind::Spsc) => open_spsc(name),
        Some(Kind::Mpmc) => open_mpmc(name),
        None => match open_spsc(name) {
            Err(OpenError::WrongKind { .. }) => open_mpmc(name),
            r => r,
        },
    };
    r.map_err(|e| match e {
        OpenError::EndpointTaken(role) if end_died(name, role) => Failure::new(
            Exit::Disconnected,
            format!(
                "{name}: the ring's {role} died without closing, and an SPSC end cannot be \
                 attached again (`shmring unlink --stale` removes such rings)"
            ),
        ),
        e => Failure::from(e).about(name),
    })
}

/// Whether the ring's `role` end is held by a process that died (its entry says attached,
/// its liveness lock is free).
fn end_died(name: &str, role: &str) -> bool {
    shmring::inspect(name).is_ok_and(|info| {
        info.endpoints
            .iter()
            .any(|e| e.role == role && e.state == EndpointState::Dead)
    })
}

/// A sending end: an SPSC producer or an MPMC sender.
pub enum Tx {
    Spsc(spsc::Producer),
    Mpmc(mpmc::Sender),
}

impl Tx {
    /// Attaches to the named ring as its producer (SPSC) or as a sender (MPMC).
    pub fn open(name: &str, kind: Option<Kind>) -> Result<Tx, Failure> {
        open_either(
            name,
            kind,
            |n| spsc::Producer::open(n).map(Tx::Spsc),
            |n| mpmc::Sender::open(n).map(Tx::Mpmc),
        )
    }

    pub fn max_message(&self) -> usize {
        match self {
            Tx::Spsc(t) => t.max_message(),
            Tx::Mpmc(t) => t.max_message(),
        }
    }

    pub fn set_wait_strategy(&mut self, w: WaitStrategy) {
        match self {
            Tx::Spsc(t) => t.set_wait_strategy(w),
            Tx::Mpmc(t) => t.set_wait_strategy(w),
        }
    }

    /// Whether the receiving side is gone: the consumer (every receiver) closed or died.
    /// Looks at their processes at most every 100 ms.
    pub fn is_disconnected(&self) -> bool {
        match self {
            Tx::Spsc(t) => t.is_disconnected(),
            Tx::Mpmc(t) => t.is_disconnected(),
        }
    }

    /// Whether nothing sent is waiting in the ring.
    pub fn is_empty(&self) -> bool {
        match self {
            Tx::Spsc(t) => t.is_empty(),
            Tx::Mpmc(t) => t.is_empty(),
        }
    }

    /// Sends one message, waiting for room (at most `timeout`, if given).
    pub fn send(&mut self, msg: &[u8], timeout: Option<Duration>) -> Result<(), Failure> {
        let r = match (self, timeout) {
            (Tx::Spsc(t), None) => t.send(msg).map_err(Into::into),
            (Tx::Spsc(t), Some(d)) => t.send_timeout(msg, d),
            (Tx::Mpmc(t), None) => t.send(msg).map_err(Into::into),
            (Tx::Mpmc(t), Some(d)) => t.send_timeout(msg, d),
        };
        r.map_err(Failure::from)
    }
}

/// What a receive found.
pub enum Got {
    /// A message of this many bytes, copied into the buffer.
    Message(usize),
    /// Nothing yet (non-blocking receive only).
    Empty,
    /// The end of the stream: every sender is gone and nothing is left.
    End,
}

/// A receiving end: an SPSC consumer or an MPMC receiver.
pub enum Rx {
    Spsc(spsc::Consumer),
    Mpmc(mpmc::Receiver),
}

impl Rx {
    /// Attaches to the named ring as its consumer (SPSC) or as a receiver (MPMC).
    pub fn open(name: &str, kind: Option<Kind>) -> Result<Rx, Failure> {
        open_either(
            name,
            kind,
            |n| spsc::Consumer::open(n).map(Rx::Spsc),
            |n| mpmc::Receiver::open(n).map(Rx::Mpmc),
        )
    }

    pub fn max_message(&self) -> usize {
        match self {
            Rx::Spsc(r) => r.max_message(),
            Rx::Mpmc(r) => r.max_message(),
        }
    }

    pub fn set_wait_strategy(&mut self, w: WaitStrategy) {
        match self {
            Rx::Spsc(r) => r.set_wait_strategy(w),
            Rx::Mpmc(r) => r.set_wait_strategy(w),
        }
    }

    /// Takes the next message if one is there, copied out (with volatile reads: the peer
    /// is not trusted) into `buf`, which holds at least `max_message` bytes.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Got, Failure> {
        let r = match self {
            Rx::Spsc(r) => r.try_recv().map(|m| m.copy_to(buf)),
            Rx::Mpmc(r) => r.try_recv().map(|m| m.copy_to(buf)),
        };
        match r {
            Ok(n) => Ok(Got::Message(n)),
            Err(TryRecvError::Empty) => Ok(Got::Empty),
            Err(TryRecvError::Disconnected) => Ok(Got::End),
            Err(TryRecvError::Corrupted(c)) => Err(RecvTimeoutError::Corrupted(c).into()),
        }
    }

    /// Waits for the next message (at most `timeout`, if given), copied out into `buf`.
    pub fn recv(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<Got, Failure> {
        let r = match (self, timeout) {
            (Rx::Spsc(r), None) => r.recv().map(|m| m.copy_to(buf)).map_err(Into::into),
            (Rx::Spsc(r), Some(d)) => r.recv_timeout(d).map(|m| m.copy_to(buf)),
            (Rx::Mpmc(r), None) => r.recv().map(|m| m.copy_to(buf)).map_err(Into::into),
            (Rx::Mpmc(r), Some(d)) => r.recv_timeout(d).map(|m| m.copy_to(buf)),
        };
        match r {
            Ok(n) => Ok(Got::Message(n)),
            Err(RecvTimeoutError::Disconnected) => Ok(Got::End),
            Err(e) => Err(e.into()),
        }
    }
}
