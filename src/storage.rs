//! The storage seam: where a ring's control block and data region live, and what only shared
//! memory has.
//!
//! The ring algorithms (`spsc`, `mpmc`) see a pointer to their control block, a
//! [`Region`](crate::sync::region::Region), and a [`Storage`]: the owner that keeps that memory
//! alive. A storage is either a heap allocation (in-process channels, and the only kind that
//! loom models exercise) or a mapping of a shared-memory object (`shm`), which also has a
//! header page with an endpoint table. The rings reach the table only through the
//! [`Registry`] trait, so the same ring code compiles, unchanged, for both and under loom.
//! (This is bbqueue's storage seam, widened by what a multi-process ring needs: whether a
//! peer is still there, and a way to poison the ring for later openers.)

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::error::Corruption;
use crate::sync::doorbell::{Doorbell, HeapBell};

/// Role code of an SPSC producer or an MPMC sender in the endpoint table.
pub(crate) const ROLE_PRODUCER: u32 = 1;
/// Role code of an SPSC consumer or an MPMC receiver in the endpoint table.
pub(crate) const ROLE_CONSUMER: u32 = 2;

/// What an endpoint entry says about its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointStatus {
    /// Never attached.
    Free,
    /// Attached by a process that is alive (or mid-attach).
    Alive,
    /// Closed, or attached by a process that has died.
    Gone,
}

/// Why an endpoint entry could not be claimed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Attached (or being attached) by someone else.
    Taken,
    /// Attached before, and closed for good.
    Closed,
    /// This process could not get a descriptor of its own to hold its liveness lock on.
    Unavailable(std::io::Error),
}

impl Refused {
    /// The open error for an endpoint named `what` ("producer", "senders", ...).
    pub(crate) fn into_open_error(self, what: &'static str) -> crate::OpenError {
        match self {
            Refused::Taken => crate::OpenError::EndpointTaken(what),
            Refused::Closed => crate::OpenError::EndpointClosed(what),
            Refused::Unavailable(source) => crate::OpenError::Io {
                context: "reopening the ring object for the endpoint's liveness lock",
                source,
            },
        }
    }
}

/// An attached endpoint's hold on its entry of the endpoint table: while it lives, peers see
/// the endpoint alive. Dropping it (after the entry is marked closed) lets go.
pub(crate) struct Presence(#[allow(dead_code)] Box<dyn Send + Sync>);

impl Presence {
    pub(crate) fn new(token: impl Send + Sync + 'static) -> Presence {
        Presence(Box::new(token))
    }
}

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Presence")
    }
}

/// The endpoint table of a shared ring and the ring-wide state word, as the rings use them.
/// Every method is safe to call with any index: out of range means "no such entry".
pub(crate) trait Registry {
    /// Claims entry `slot` for this process in `role`. Fails if it is not free: `Closed` if
    /// its endpoint attached before and left, else `Taken`.
    fn attach(&self, slot: usize, role: u32) -> Result<Presence, Refused>;
    /// Claims any free or closed entry among the first `len` for this process in `role`.
    fn attach_any(&self, len: usize, role: u32) -> Result<Option<(usize, Presence)>, Refused>;
    /// The role of entry `slot` if it is attached (alive or not; cheap).
    fn attached_role(&self, slot: usize) -> Option<u32>;
    /// If entry `slot` is in use by an owner that is gone, marks it closed and returns its
    /// role if it was attached (exactly one caller wins). Slow: one system call.
    fn reap_if_dead(&self, slot: usize) -> Option<u32>;
    /// Marks entry `slot` closed.
    fn detach(&self, slot: usize);
    /// Whether the owner of entry `slot` is still there. Slow: one system call.
    fn status(&self, slot: usize) -> EndpointStatus;
    /// Marks the ring poisoned: later opens fail.
    fn poison(&self);
}

/// The owner of a ring's memory.
pub(crate) trait Backing: fmt::Debug + Send + Sync {
    /// The endpoint table, for shared rings.
    fn registry(&self) -> Option<&dyn Registry> {
        None
    }

    /// The file descriptor of the shared object, for shared rings.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Whether the shared object was truncated under the mapping (and the access that found
    /// out was survived: the memory reads zeros from then on). Heap memory cannot be.
    fn truncated(&self) -> bool {
        false
    }

    /// The doorbell of a heap ring (a shared ring's is a write to its object, see
    /// [`doorbell`](crate::sync::doorbell)).
    fn bell(&self) -> Option<&Arc<HeapBell>> {
        None
    }
}

/// Where the readiness of a ring comes from, for a waiter that parks in an event loop.
#[derive(Debug)]
pub(crate) enum BellSource<'a> {
    /// A shared ring's object: watch it with inotify.
    #[cfg_attr(loom, allow(dead_code))]
    File(BorrowedFd<'a>),
    /// A heap ring's doorbell: subscribe to it.
    Heap(&'a Arc<HeapBell>),
}

/// Keeps a ring's memory alive; cloned into every handle of the ring.
#[derive(Clone, Debug)]
pub(crate) struct Storage(Arc<dyn Backing>);

impl Storage {
    pub(crate) fn new(backing: Arc<dyn Backing>) -> Storage {
        Storage(backing)
    }

    /// The endpoint table (shared rings).
    #[inline]
    pub(crate) fn registry(&self) -> Option<&dyn Registry> {
        self.0.registry()
    }

    /// Whether this ring lives in shared memory (has an endpoint table).
    pub(crate) fn is_shared(&self) -> bool {
        self.registry().is_some()
    }

    /// Whether the owner of endpoint `slot` is gone (closed or dead). Heap rings have no
    /// endpoint table (their handles always close on drop): always `false` for them.
    pub(crate) fn endpoint_gone(&self, slot: usize) -> bool {
        self.registry()
            .is_some_and(|r| r.status(slot) == EndpointStatus::Gone)
    }

    /// Marks endpoint `slot` closed (shared rings only).
    pub(crate) fn detach(&self, slot: usize) {
        if let Some(r) = self.registry() {
            r.detach(slot);
        }
    }

    /// If the ring's shared object was truncated under the mapping: the corruption to report.
    /// Cheap (one atomic load) unless it was; for the slow paths and corruption reports, not
    /// for every message. A load that read a zero of the truncated memory is always followed
    /// by a call of this that returns `Some`.
    #[cold]
    pub(crate) fn truncation(&self) -> Option<Corruption> {
        if !self.0.truncated() {
            return None;
        }
        let len = self
            .0
            .fd()
            .and_then(|fd| rustix::fs::fstat(fd).ok())
            .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
        Some(Corruption::truncated(len))
    }

    /// Marks the ring poisoned after corruption was found (shared rings only).
    pub(crate) fn poison(&self) {
        if let Some(r) = self.registry() {
            r.poison();
        }
    }

    /// Rings the ring's doorbell: every end parked in an event loop looks at the ring.
    #[cold]
    pub(crate) fn ring_doorbell(&self) {
        if let Some(bell) = self.0.bell() {
            bell.ring();
        } else if let Some(fd) = self.0.fd() {
            crate::sync::doorbell::ring_file(fd);
        }
    }

    /// What a waiter parked in an event loop watches.
    pub(crate) fn bell_source(&self) -> Option<BellSource<'_>> {
        if let Some(bell) = self.0.bell() {
            return Some(BellSource::Heap(bell));
        }
        self.0.fd().map(BellSource::File)
    }

    /// A new descriptor (close-on-exec) of the object behind a shared ring, to hand to
    /// another process.
    pub(crate) fn dup_fd(&self) -> Result<OwnedFd, crate::OpenError> {
        let fd = self.0.fd().ok_or(crate::OpenError::Incompatible(
            "a heap ring has no file descriptor",
        ))?;
        fd.try_clone_to_owned()
            .map_err(|source| crate::OpenError::Io {
                context: "fcntl(F_DUPFD_CLOEXEC)",
                source,
            })
    }
}

impl Doorbell for Storage {
    #[inline]
    fn ring(&self) {
        self.ring_doorbell();
    }
}
