//! Both ring kinds, SPSC and MPMC, behind one interface, and the rings of a scenario.

use std::time::Duration;

use super::common::{self, RingName};
use super::{MSG_MAX, PATIENCE};
use shmring::{EndpointState, RecvTimeoutError, SendTimeoutError, mpmc, spsc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Spsc,
    Mpmc,
}

/// Which end of a ring the peer process holds; the test holds the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerEnd {
    Sends,
    Receives,
}

pub(crate) enum Tx {
    Spsc(spsc::Producer),
    Mpmc(mpmc::Sender),
}

pub(crate) enum Rx {
    Spsc(spsc::Consumer),
    Mpmc(mpmc::Receiver),
}

/// Small rings, so that a few messages fill them.
pub(crate) fn spsc_config() -> spsc::Config {
    spsc::Config::default().capacity_bytes(256)
}

pub(crate) fn mpmc_config() -> mpmc::Config {
    mpmc::Config::default().slots(4).max_message_bytes(48)
}

impl Tx {
    pub(crate) fn create(kind: Kind, name: &str) -> Tx {
        match kind {
            Kind::Spsc => Tx::Spsc(spsc::Producer::create(name, spsc_config()).unwrap()),
            Kind::Mpmc => Tx::Mpmc(mpmc::Sender::create(name, mpmc_config()).unwrap()),
        }
    }

    pub(crate) fn open(kind: Kind, name: &str) -> Tx {
        match kind {
            Kind::Spsc => Tx::Spsc(spsc::Producer::open_timeout(name, PATIENCE).unwrap()),
            Kind::Mpmc => Tx::Mpmc(mpmc::Sender::open_timeout(name, PATIENCE).unwrap()),
        }
    }

    pub(crate) fn send_timeout(
        &mut self,
        msg: &[u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        match self {
            Tx::Spsc(p) => p.send_timeout(msg, timeout),
            Tx::Mpmc(s) => s.send_timeout(msg, timeout),
        }
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        match self {
            Tx::Spsc(p) => p.is_disconnected(),
            Tx::Mpmc(s) => s.is_disconnected(),
        }
    }

    /// Sends messages `from..` without waiting until the ring is full; returns the next
    /// sequence number.
    pub(crate) fn fill(&mut self, from: u64) -> u64 {
        let mut seq = from;
        loop {
            match self.send_timeout(&msg(seq), Duration::ZERO) {
                Ok(()) => seq += 1,
                Err(SendTimeoutError::Timeout(())) => return seq,
                Err(e) => panic!("filling the ring: {e:?}"),
            }
        }
    }
}

impl Rx {
    pub(crate) fn create(kind: Kind, name: &str) -> Rx {
        match kind {
            Kind::Spsc => Rx::Spsc(spsc::Consumer::create(name, spsc_config()).unwrap()),
            Kind::Mpmc => Rx::Mpmc(mpmc::Receiver::create(name, mpmc_config()).unwrap()),
        }
    }

    pub(crate) fn open(kind: Kind, name: &str) -> Rx {
        match kind {
            Kind::Spsc => Rx::Spsc(spsc::Consumer::open_timeout(name, PATIENCE).unwrap()),
            Kind::Mpmc => Rx::Mpmc(mpmc::Receiver::open_timeout(name, PATIENCE).unwrap()),
        }
    }

    pub(crate) fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        match self {
            Rx::Spsc(c) => c.recv_timeout(timeout).map(|m| m.to_vec()),
            Rx::Mpmc(r) => r.recv_timeout(timeout).map(|m| m.to_vec()),
        }
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        match self {
            Rx::Spsc(c) => c.is_disconnected(),
            Rx::Mpmc(r) => r.is_disconnected(),
        }
    }

    /// Receives message `seq` (waiting up to `PATIENCE`) and checks every byte of it.
    pub(crate) fn expect(&mut self, seq: u64, what: &str) {
        let got = self
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("{what}: message {seq}: {e:?}"));
        common::check_msg(seq, MSG_MAX, &got, &mut Vec::new());
    }
}

/// The test's end of a ring.
pub(crate) enum Local {
    Tx(Tx),
    Rx(Rx),
}

impl Local {
    pub(crate) fn is_disconnected(&self) -> bool {
        match self {
            Local::Tx(t) => t.is_disconnected(),
            Local::Rx(r) => r.is_disconnected(),
        }
    }
}

/// Test message `seq`.
pub(crate) fn msg(seq: u64) -> Vec<u8> {
    let mut m = vec![0; common::msg_len(seq, MSG_MAX)];
    common::fill_msg(seq, &mut m);
    m
}

/// A ring of a scenario: its name (unlinked on drop), kind, and which end the peer holds.
pub(crate) struct Ring {
    pub(crate) name: RingName,
    pub(crate) kind: Kind,
    pub(crate) peer: PeerEnd,
    pub(crate) label: String,
}

impl Ring {
    pub(crate) fn new(test: &str, kind: Kind, peer: PeerEnd, extra: &str) -> Ring {
        let label = format!("{kind:?} peer {peer:?}{extra}").to_lowercase();
        Ring {
            name: RingName::new(test),
            kind,
            peer,
            label,
        }
    }

    /// The four combinations of kind and direction.
    pub(crate) fn all_four(test: &str, extra: &str) -> Vec<Ring> {
        [Kind::Spsc, Kind::Mpmc]
            .into_iter()
            .flat_map(|k| [PeerEnd::Sends, PeerEnd::Receives].map(|p| (k, p)))
            .map(|(k, p)| Ring::new(test, k, p, extra))
            .collect()
    }

    /// Creates the ring with the test's end attached.
    pub(crate) fn create_local(&self) -> Local {
        match self.peer {
            PeerEnd::Sends => Local::Rx(Rx::create(self.kind, self.name.as_str())),
            PeerEnd::Receives => Local::Tx(Tx::create(self.kind, self.name.as_str())),
        }
    }

    /// `kind:end:name`, as the child parses it.
    pub(crate) fn spec(&self) -> String {
        let kind = match self.kind {
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
        };
        let end = match self.peer {
            PeerEnd::Sends => "sends",
            PeerEnd::Receives => "receives",
        };
        format!("{kind}:{end}:{}", self.name.as_str())
    }

    /// The role name `inspect` gives the peer's end.
    pub(crate) fn peer_role(&self) -> &'static str {
        match (self.kind, self.peer) {
            (Kind::Spsc, PeerEnd::Sends) => "producer",
            (Kind::Spsc, PeerEnd::Receives) => "consumer",
            (Kind::Mpmc, PeerEnd::Sends) => "sender",
            (Kind::Mpmc, PeerEnd::Receives) => "receiver",
        }
    }

    /// The peer's entry in `inspect`'s report (there is exactly one of its role).
    pub(crate) fn peer_entry(&self) -> shmring::EndpointInfo {
        let info = shmring::inspect(self.name.as_str()).expect("inspect");
        let role = self.peer_role();
        let entries: Vec<_> = info.endpoints.iter().filter(|e| e.role == role).collect();
        assert_eq!(entries.len(), 1, "{}: {:?}", self.label, info.endpoints);
        *entries[0]
    }

    /// Asserts that `inspect` shows the peer attached, under the pid it recorded.
    pub(crate) fn assert_peer_attached(&self, pid: u32) {
        let e = self.peer_entry();
        assert_eq!(e.state, EndpointState::Attached, "{}: {e:?}", self.label);
        assert_eq!(e.pid, pid, "{}: recorded pid", self.label);
    }

    /// Asserts that `inspect` no longer shows the peer attached (closed, or dead).
    pub(crate) fn assert_peer_gone(&self) -> EndpointState {
        let e = self.peer_entry();
        assert!(
            matches!(e.state, EndpointState::Closed | EndpointState::Dead),
            "{}: {e:?}",
            self.label
        );
        e.state
    }
}

/// Parses the `RINGS` list a child gets: `kind:end:name,...`.
pub(crate) fn parse_rings(list: &str) -> Vec<(Kind, PeerEnd, String)> {
    list.split(',')
        .map(|spec| {
            let mut parts = spec.splitn(3, ':');
            let kind = match parts.next() {
                Some("spsc") => Kind::Spsc,
                Some("mpmc") => Kind::Mpmc,
                other => panic!("bad kind {other:?}"),
            };
            let end = match parts.next() {
                Some("sends") => PeerEnd::Sends,
                Some("receives") => PeerEnd::Receives,
                other => panic!("bad end {other:?}"),
            };
            (kind, end, parts.next().expect("name").to_string())
        })
        .collect()
}

pub(crate) fn specs(rings: &[Ring]) -> String {
    rings.iter().map(Ring::spec).collect::<Vec<_>>().join(",")
}
