//! What `list` and `stat` show of a ring: one report per ring, built from the library's
//! read-only inspection, printed as text or as JSON.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;
use shmring::{EndpointState, OpenError, RingInfo, RingKind};

use crate::exit::one_line;

/// Where POSIX shared-memory objects appear in the file system on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// One endpoint-table entry that was ever used.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointReport {
    pub slot: usize,
    pub role: &'static str,
    /// As the endpoint recorded it (for display: in another pid namespace it means nothing
    /// here).
    pub pid: u32,
    /// `alive`, `attaching`, `dead` or `closed` (alive = its liveness lock is held).
    pub state: String,
}

/// Everything `list` and `stat` say about one ring.
#[derive(Clone, Debug, Serialize)]
pub struct RingReport {
    pub name: String,
    /// `spsc` or `mpmc` (absent when the header could not be validated).
    pub kind: Option<String>,
    /// `active` (an endpoint is alive), `unused` (nobody attached yet), `pending` (the
    /// senders left messages for a receiving side that has not come yet), `stale` (everyone
    /// who attached is gone, nothing is left for anyone), `attaching` (a process is taking
    /// an entry right now), or why the ring cannot be read: `abandoned`, `poisoned`, `corrupted`, `incompatible`,
    /// `initialising`, `unreadable`.
    pub status: &'static str,
    /// Whether `unlink --stale` would remove it.
    pub stale: bool,
    /// Why the ring could not be inspected, if it could not.
    pub error: Option<String>,
    pub object_bytes: Option<u64>,
    pub uid: Option<u32>,
    pub owner: Option<String>,
    /// Permission bits, octal (e.g. "0600").
    pub mode: Option<String>,
    /// SPSC: bytes of data region; MPMC: slots.
    pub capacity: Option<u64>,
    /// MPMC: bytes per slot (header included).
    pub slot_size: Option<u32>,
    pub max_message: Option<u32>,
    /// Bytes of the data region.
    pub data_bytes: Option<u64>,
    /// Bytes of the data region in use (SPSC: records and padding; MPMC: claimed slots).
    pub used_bytes: Option<u64>,
    /// `used_bytes / data_bytes`, 0 to 1.
    pub fill: Option<f64>,
    /// Messages published and not yet received.
    pub messages: Option<u64>,
    /// Their payload bytes.
    pub payload_bytes: Option<u64>,
    /// Receiving index: bytes released (SPSC) or positions taken (MPMC).
    pub head: Option<u64>,
    /// Sending index: bytes published (SPSC) or positions claimed (MPMC).
    pub tail: Option<u64>,
    /// Receivers asleep waiting for a message.
    pub waiting_receivers: Option<u32>,
    /// Senders asleep waiting for room.
    pub waiting_senders: Option<u32>,
    pub senders_closed: Option<bool>,
    pub receivers_closed: Option<bool>,
    /// Something in the shared counters that no sound ring holds.
    pub corruption: Option<String>,
    /// MPMC: entries of the endpoint registry.
    pub registry: Option<u32>,
    pub endpoints: Vec<EndpointReport>,
}

/// User names by uid, from /etc/passwd (for display only).
#[derive(Default)]
pub struct Users(HashMap<u32, String>);

impl Users {
    pub fn load() -> Users {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let map = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_owned()))
            })
            .collect();
        Users(map)
    }

    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }
}

impl RingReport {
    /// The report of ring `name` from what inspecting it gave.
    pub fn new(name: &str, inspected: Result<RingInfo, OpenError>, users: &Users) -> RingReport {
        let mut r = RingReport {
            name: name.to_owned(),
            kind: None,
            status: "unreadable",
            stale: false,
            error: None,
            object_bytes: None,
            uid: None,
            owner: None,
            mode: None,
            capacity: None,
            slot_size: None,
            max_message: None,
            data_bytes: None,
            used_bytes: None,
            fill: None,
            messages: None,
            payload_bytes: None,
            head: None,
            tail: None,
            waiting_receivers: None,
            waiting_senders: None,
            senders_closed: None,
            receivers_closed: None,
            corruption: None,
            registry: None,
            endpoints: Vec::new(),
        };
        let info = match inspected {
            Ok(info) => info,
            Err(e) => {
                r.status = match e {
                    OpenError::Abandoned => "abandoned",
                    OpenError::Poisoned => "poisoned",
                    OpenError::TooSmall { .. }
                    | OpenError::BadGeometry(_)
                    | OpenError::Corrupted(_) => "corrupted",
                    OpenError::NotShmring
                    | OpenError::UnsupportedVersion { .. }
                    | OpenError::WrongKind { .. }
                    | OpenError::Incompatible(_) => "incompatible",
                    OpenError::StillInitialising(_) => "initialising",
                    _ => "unreadable",
                };
                if matches!(r.status, "abandoned" | "poisoned") {
                    r.stale = shmring::is_stale(name).unwrap_or(false);
                }
                r.error = Some(one_line(&e));
                if let Ok(m) = std::fs::symlink_metadata(format!("{SHM_DIR}{name}")) {
                    r.object_bytes = Some(m.len());
                    r.uid = Some(m.uid());
                    r.owner = Some(users.name(m.uid()));
                    r.mode = Some(format!("{:04o}", m.mode() & 0o7777));
                }
                return r;
            }
        };
        let t = info.traffic;
        let data_bytes = match info.kind {
            RingKind::Spsc => info.capacity,
            RingKind::Mpmc => info.capacity * u64::from(info.slot_size),
        };
        let live = info
            .endpoints
            .iter()
            .any(|e| matches!(e.state, EndpointState::Attached | EndpointState::Attaching));
        r.status = if info.stale {
            "stale"
        } else if live {
            "active"
        } else if info.endpoints.is_empty() {
            "unused"
        } else if t.used_bytes > 0 {
            "pending"
        } else {
            "attaching"
        };
        r.stale = info.stale;
        r.kind = Some(info.kind.to_string());
        r.object_bytes = Some(info.object_len);
        r.uid = Some(info.uid);
        r.owner = Some(users.name(info.uid));
        r.mode = Some(format!("{:04o}", info.mode));
        r.capacity = Some(info.capacity);
        r.slot_size = (info.kind == RingKind::Mpmc).then_some(info.slot_size);
        r.max_message = Some(info.max_message);
        r.data_bytes = Some(data_bytes);
        r.used_bytes = Some(t.used_bytes);
        r.fill = Some(if data_bytes == 0 {
            0.0
        } else {
            t.used_bytes as f64 / data_bytes as f64
        });
        r.messages = t.messages;
        r.payload_bytes = t.payload_bytes;
        r.head = Some(t.head);
        r.tail = Some(t.tail);
        r.waiting_receivers = Some(t.waiting_receivers);
        r.waiting_senders = Some(t.waiting_senders);
        r.senders_closed = Some(t.senders_closed);
        r.receivers_closed = Some(t.receivers_closed);
        r.corruption = t.anomaly.map(|c| c.to_string());
        r.registry = (info.kind == RingKind::Mpmc).then_some(info.registry_len);
        r.endpoints = info
            .endpoints
            .iter()
            .map(|e| EndpointReport {
                slot: e.slot,
                role: e.role,
                pid: e.pid,
                state: e.state.to_string(),
            })
            .collect();
        r
    }

    /// `2 alive, 1 dead` (states with no entry left out), or `-` if nobody ever attached.
    pub fn endpoint_summary(&self) -> String {
        let mut parts = Vec::new();
        for state in ["alive", "attaching", "dead", "closed"] {
            let n = self.endpoints.iter().filter(|e| e.state == state).count();
            if n > 0 {
                parts.push(format!("{n} {state}"));
            }
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}
