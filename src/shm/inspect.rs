//! Read-only inspection of a named ring: its geometry and who is attached, without attaching.

use super::endpoints::owner_present;
use super::layout::Header;
use super::layout::{EP_ATTACHED, EP_CLAIMING, EP_CLOSED, EP_TAKING};
use crate::error::OpenError;
use crate::geometry::{Kind, MpmcRules, SpscRules};
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
}

/// Opens the named object, validates it like an opener would, and reports its geometry and
/// endpoint table. Does not attach, so it changes nothing.
///
/// # Errors
/// The [`OpenError`]s of opening a ring (`NotFound`, `NotShmring`, `UnsupportedVersion`, …).
///
/// ```
/// use shmring::{spsc, RingKind};
/// let name = format!("/shmring-doc-inspect-{}", std::process::id());
/// let tx = spsc::Producer::create(&name, shmring::spsc::Config::default().capacity_bytes(4096))?;
/// let info = shmring::inspect(&name)?;
/// assert_eq!(info.kind, RingKind::Spsc);
/// assert_eq!(info.capacity, 4096);
/// assert_eq!(info.endpoints.len(), 1); // the producer
/// assert_eq!(info.endpoints[0].pid, std::process::id());
/// shmring::unlink(&name)?;
/// # drop(tx);
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn inspect(name: &str) -> Result<RingInfo, OpenError> {
    // Validates with the rules of the kind the header names; an unknown kind is refused
    // by the SPSC rules with `WrongKind`.
    // A report writes nothing and attaches nothing: other users' rings may be looked at.
    let options = crate::OpenOptions::default().allow_other_users(true);
    let mapped = match super::open::open::<SpscRules>(name, &options) {
        Err(OpenError::WrongKind { .. }) => super::open::open::<MpmcRules>(name, &options)?,
        r => r?,
    };
    let g = mapped.geometry;
    let h = Header::of(&mapped.seg);
    let kind = match h.raw_kind() {
        Some(Kind::Mpmc) => RingKind::Mpmc,
        _ => RingKind::Spsc,
    };
    let mut endpoints = Vec::new();
    for slot in 0..g.endpoint_count as usize {
        let Some((state, role, pid, _start_time)) = h.endpoint_snapshot(slot) else {
            break;
        };
        // Alive means the entry's liveness lock is held (see `endpoints`), whatever pid
        // namespace its owner runs in; the pid is shown as the owner recorded it.
        let present = || owner_present(mapped.seg.fd(), slot);
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
    Ok(RingInfo {
        kind,
        capacity: g.capacity,
        slot_size: g.slot_size,
        max_message: g.max_message,
        object_len: mapped.seg.len(),
        registry_len: g.endpoint_count,
        endpoints,
    })
}
