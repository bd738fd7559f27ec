//! Read-only inspection of a named ring: its geometry, who is attached and whether they are
//! alive, what is in flight, and whether the ring is stale; without attaching, through a
//! read-only mapping (so read permission is enough).

use std::fmt;

use super::census::{Traffic, View};
use super::endpoints::owner_present;
use super::layout::Header;
use super::layout::{EP_ATTACHED, EP_CLAIMING, EP_CLOSED, EP_TAKING};
use super::open::creator_busy;
use super::segment::Segment;
use super::stale;
use crate::error::OpenError;
use crate::geometry::{Geometry, Kind, MpmcRules, SpscRules};
use crate::storage::{ROLE_CONSUMER, ROLE_PRODUCER};

/// The kind of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    /// Single producer, single consumer, variable-length messages.
    Spsc,
    /// Multi producer, multi consumer, fixed-size slots.
    Mpmc,
}

/// State of one endpoint-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Being attached right now.
    Attaching,
    /// Attached by a process that is running.
    Attached,
    /// Attached (or being attached) by a process that has died without closing.
    Dead,
    /// Closed.
    Closed,
}

/// One used entry of a ring's endpoint table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Index in the table.
    pub slot: usize,
    /// "producer"/"consumer" (SPSC) or "sender"/"receiver" (MPMC).
    pub role: &'static str,
    /// Process id recorded at attach time (while an MPMC entry is being attached: the
    /// attaching process).
    pub pid: u32,
    /// What the entry says, with the recorded process's liveness checked.
    pub state: EndpointState,
}

/// What [`inspect`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingInfo {
    /// SPSC or MPMC.
    pub kind: RingKind,
    /// Data region: bytes (SPSC) or slots (MPMC).
    pub capacity: u64,
    /// MPMC slot stride in bytes (0 for SPSC).
    pub slot_size: u32,
    /// Largest message in bytes.
    pub max_message: u32,
    /// Size of the shared-memory object.
    pub object_len: u64,
    /// Entries of the endpoint table in use.
    pub registry_len: u32,
    /// Entries that were ever attached.
    pub endpoints: Vec<EndpointInfo>,
    /// Owner of the object (user id).
    pub uid: u32,
    /// Group of the object.
    pub gid: u32,
    /// Permission bits of the object.
    pub mode: u32,
    /// Indices, messages in flight, sleepers, closed sides.
    pub traffic: Traffic,
    /// Whether the ring is stale: some endpoint attached to it once, and nobody is there any
    /// more (every endpoint that attached has closed or died, no process holds any of the
    /// ring's liveness locks, and no creator is at work), and it holds no message for a
    /// receiving side that never attached. Removing a stale ring's name loses nothing that
    /// anybody could still receive. A ring that nobody ever attached to (made by
    /// [`spsc::create`](crate::spsc::create) or [`mpmc::create`](crate::mpmc::create) and
    /// waiting for its ends) is *not* stale, nor is one whose producer sent and left before
    /// its consumer came. See [`is_stale`](crate::is_stale).
    pub stale: bool,
}

impl fmt::Display for RingKind {
    /// `spsc` or `mpmc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RingKind::Spsc => "spsc",
            RingKind::Mpmc => "mpmc",
        })
    }
}

impl fmt::Display for EndpointState {
    /// `attaching`, `alive`, `dead` or `closed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointState::Attaching => "attaching",
            EndpointState::Attached => "alive",
            EndpointState::Dead => "dead",
            EndpointState::Closed => "closed",
        })
    }
}

/// Opens the named object read-only, validates it like an opener would, and reports its
/// geometry, endpoint table and traffic. Attaches nothing and writes nothing, so it changes
/// nothing; read permission on the object is enough (other users' rings can be looked at).
///
/// # Errors
/// The [`OpenError`]s of opening a ring (`NotFound`, `NotShmring`, `UnsupportedVersion`,
/// `Abandoned`, `Poisoned`, …), and `PermissionDenied` if the object cannot be read.
///
/// ```
/// use shmring::{spsc, RingKind};
/// let name = format!("/shmring-doc-inspect-{}", std::process::id());
/// let mut tx = spsc::Producer::create(&name, shmring::spsc::Config::default().capacity_bytes(4096))?;
/// tx.send(b"hello")?;
/// let info = shmring::inspect(&name)?;
/// assert_eq!(info.kind, RingKind::Spsc);
/// assert_eq!(info.capacity, 4096);
/// assert_eq!(info.endpoints.len(), 1); // the producer
/// assert_eq!(info.endpoints[0].pid, std::process::id());
/// assert_eq!(info.traffic.messages, Some(1));
/// assert_eq!(info.traffic.payload_bytes, Some(5));
/// assert!(!info.stale);
/// shmring::unlink(&name)?;
/// # drop(tx);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(name: &str) -> Result<RingInfo, OpenError> {
    let (seg, g) = validated_any(Segment::open_read_only(name)?)?;
    let g = g?;
    let h = Header::of(&seg);
    let kind = match g.kind {
        Kind::Mpmc => RingKind::Mpmc,
        Kind::Spsc => RingKind::Spsc,
    };
    let mut endpoints = Vec::new();
    for slot in 0..g.endpoint_count as usize {
        let Some((state, role, pid, _start_time)) = h.endpoint_snapshot(slot) else {
            break;
        };
        // Alive means the entry's liveness lock is held (see `endpoints`), whatever pid
        // namespace its owner runs in; the pid is shown as the owner recorded it.
        let present = || owner_present(seg.fd(), slot);
        let state = match state {
            EP_CLAIMING | EP_TAKING if present() => EndpointState::Attaching,
            EP_ATTACHED if present() => EndpointState::Attached,
            EP_CLAIMING | EP_TAKING | EP_ATTACHED => EndpointState::Dead,
            EP_CLOSED => EndpointState::Closed,
            _ => continue,
        };
        let role = match (kind, role) {
            (RingKind::Spsc, ROLE_PRODUCER) => "producer",
            (RingKind::Spsc, ROLE_CONSUMER) => "consumer",
            (RingKind::Mpmc, ROLE_PRODUCER) => "sender",
            (RingKind::Mpmc, ROLE_CONSUMER) => "receiver",
            _ => "unknown",
        };
        endpoints.push(EndpointInfo {
            slot,
            role,
            pid,
            state,
        });
    }
    let traffic = View::of(&seg, &g).traffic();
    let st = rustix::fs::fstat(seg.fd()).map_err(|e| super::segment::io_err("fstat", e))?;
    // Judged last: an endpoint that attached while the table was read holds its lock now.
    let stale = matches!(stale::judge(&seg, Ok(g)), Ok(true));
    Ok(RingInfo {
        kind,
        capacity: g.capacity,
        slot_size: g.slot_size,
        max_message: g.max_message,
        object_len: u64::try_from(st.st_size).unwrap_or(0),
        registry_len: g.endpoint_count,
        endpoints,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        traffic,
        stale,
    })
}

/// Validates the header page `seg` maps with [`validate_any`] and, if it holds a ring, maps
/// exactly the ring it describes (whatever the object's size) in its place. The error of a
/// header that is not a valid ring comes back with the header page still mapped (stale
/// rings are judged on it); failing to map the ring is the error of the call.
pub(super) fn validated_any(
    seg: Segment,
) -> Result<(Segment, Result<Geometry, OpenError>), OpenError> {
    match validate_any(&seg) {
        Ok(g) => Ok((seg.narrowed(g.total_len)?, Ok(g))),
        Err(e) => Ok((seg, Err(e))),
    }
}

/// Validates a mapped object with the rules of the kind its header names. The kind word is
/// read before validation only to pick the rules to try first (the header may still be
/// being written): whichever rules the validated header then refuses with `WrongKind`, the
/// other kind's are tried (an unknown kind is refused by both).
fn validate_any(seg: &Segment) -> Result<Geometry, OpenError> {
    let busy = || creator_busy(seg);
    if Header::of(seg).raw_kind() == Some(Kind::Mpmc) {
        match Header::validate::<MpmcRules>(seg, busy) {
            Err(OpenError::WrongKind { .. }) => Header::validate::<SpscRules>(seg, busy),
            r => r,
        }
    } else {
        match Header::validate::<SpscRules>(seg, busy) {
            Err(OpenError::WrongKind { .. }) => Header::validate::<MpmcRules>(seg, busy),
            r => r,
        }
    }
}
