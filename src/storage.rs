//! The storage seam: where a ring's control block and data region live.
//!
//! The ring algorithms (`spsc`, `mpmc`) see only a pointer to their control block and a
//! [`Region`]; what keeps that memory alive is a [`Storage`]: a shared mapping (named object or
//! memfd) or a heap allocation. Heap storage is the only kind compiled under `--cfg loom`, and
//! it is also public API, for rings between threads of one process.

use std::sync::Arc;

#[cfg(not(loom))]
use std::ptr::NonNull;

#[cfg(not(loom))]
use crate::{
    error::OpenError,
    header::{EndpointStatus, Geometry, Header, KindRules},
    peer::ProcessId,
    segment::Segment,
    sync::region::Region,
};

/// Keeps a ring's memory alive and knows what only shared memory has: the header, its
/// endpoint table, and the peers' liveness.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// A mapping of a shared-memory object.
    #[cfg(not(loom))]
    Shm(Arc<Segment>),
    /// Memory on this process's heap (the control block and data region are owned by `Heap`).
    Heap { _owner: Arc<dyn HeapOwner> },
}

/// Owner of a heap ring's memory.
pub(crate) trait HeapOwner: std::fmt::Debug + Send + Sync {}

impl Storage {
    /// The header, for shared rings.
    #[cfg(not(loom))]
    pub(crate) fn header(&self) -> Option<&Header> {
        match self {
            Storage::Shm(seg) => Some(Header::of(seg)),
            Storage::Heap { .. } => None,
        }
    }

    /// Whether the owner of endpoint `slot` is gone (closed or dead). Heap rings have no
    /// endpoint table (their handles always close on drop): always `false` for them.
    #[cfg(not(loom))]
    pub(crate) fn endpoint_gone(&self, slot: usize) -> bool {
        match self.header() {
            Some(h) => h.status(slot) == EndpointStatus::Gone,
            None => false,
        }
    }

    /// Marks endpoint `slot` closed (shared rings only).
    pub(crate) fn detach(&self, _slot: usize) {
        #[cfg(not(loom))]
        if let Some(h) = self.header() {
            h.detach(_slot);
        }
    }

    /// Marks the ring poisoned after corruption was found (shared rings only).
    pub(crate) fn poison(&self) {
        #[cfg(not(loom))]
        if let Some(h) = self.header() {
            h.poison();
        }
    }

    /// The memfd or shm fd behind a shared ring.
    #[cfg(not(loom))]
    pub(crate) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Storage::Shm(seg) => Some(seg.fd()),
            Storage::Heap { .. } => None,
        }
    }
}

/// Pointers into a shared segment, derived from a validated geometry.
#[cfg(not(loom))]
pub(crate) fn shm_parts<C>(seg: &Segment, g: &Geometry) -> (NonNull<C>, Region) {
    debug_assert!(g.total_len <= seg.len());
    // SAFETY: `g` was validated against this segment's real length (`total_len <= len`), so
    // control_offset + size_of::<C>() <= data_offset and data_offset + data_len <= len; the
    // control offset is page aligned, the data offset is page aligned (8-byte alignment is
    // what Region needs).
    unsafe {
        let base = seg.ptr().as_ptr();
        let ctrl = NonNull::new_unchecked(base.add(g.control_offset as usize).cast::<C>());
        let data = NonNull::new_unchecked(base.add(g.data_offset as usize));
        (ctrl, Region::new(data, g.data_len as usize))
    }
}

/// Creates a named (or, with `name == None`, anonymous) ring object of kind `R`: the header is
/// written, `creator` (an endpoint slot and role), if any, is attached for this process, then
/// `init` prepares the control block, and only then is the ring published as ready.
#[cfg(not(loom))]
pub(crate) fn create_shm<R: KindRules>(
    name: Option<&str>,
    g: &Geometry,
    mode: u32,
    creator: Option<(usize, u32)>,
    init: impl FnOnce(&Segment),
) -> Result<Arc<Segment>, OpenError> {
    let seg = match name {
        Some(name) => Segment::create(name, g.object_len(), mode)?,
        None => Segment::create_anonymous(g.object_len())?,
    };
    let me = ProcessId::current();
    let h = Header::of(&seg);
    h.init(g, me);
    if let Some((slot, role)) = creator {
        // A fresh object is zero-filled; the slot cannot be taken.
        let _ = h.attach(slot, role, me);
    }
    init(&seg);
    h.publish();
    Ok(Arc::new(seg))
}

/// Opens a named ring object of kind `R` and validates it.
#[cfg(not(loom))]
pub(crate) fn open_shm<R: KindRules>(name: &str) -> Result<(Arc<Segment>, Geometry), OpenError> {
    let seg = wait_for_size(|| Segment::open(name, crate::header::HEADER_SIZE))?;
    let g = Header::validate::<R>(&seg)?;
    Ok((Arc::new(seg), g))
}

/// Maps and validates a ring object given by its fd (a memfd passed from another process).
#[cfg(not(loom))]
pub(crate) fn open_fd<R: KindRules>(
    fd: std::os::fd::OwnedFd,
) -> Result<(Arc<Segment>, Geometry), OpenError> {
    // A memfd must be sealed against shrinking, or whoever holds another fd to it could
    // truncate it under us (SIGBUS). Other fds (EINVAL: not a memfd) cannot be sealed; like
    // named objects, they rely on their permissions.
    match rustix::fs::fcntl_get_seals(&fd) {
        Ok(seals) if !seals.contains(rustix::fs::SealFlags::SHRINK) => {
            return Err(OpenError::Incompatible(
                "memfd is not sealed against shrinking (F_SEAL_SHRINK)",
            ));
        }
        _ => {}
    }
    let seg = Segment::from_owned_fd(fd, crate::header::HEADER_SIZE)?;
    let g = Header::validate::<R>(&seg)?;
    Ok((Arc::new(seg), g))
}

/// Between `shm_open(O_CREAT)` and `ftruncate` a creator's object has size 0. An opener that
/// finds an empty object waits (bounded) for it to be sized.
#[cfg(not(loom))]
fn wait_for_size(
    mut open: impl FnMut() -> Result<Segment, OpenError>,
) -> Result<Segment, OpenError> {
    let started = std::time::Instant::now();
    loop {
        match open() {
            Err(OpenError::TooSmall { actual: 0, .. })
                if started.elapsed() < crate::header::INIT_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(OpenError::TooSmall { actual: 0, .. }) => {
                return Err(OpenError::StillInitialising(crate::header::INIT_WAIT));
            }
            other => return other,
        }
    }
}

/// Looks at a peer's liveness from non-blocking calls, at most once per
/// [`SLICE`](crate::sync::waiter::SLICE), so that `try_recv` / `try_send` also notice a peer
/// that died without closing, without a `/proc` lookup on every call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerWatch {
    #[cfg(not(loom))]
    next: Option<std::time::Instant>,
    /// The process that attached this handle; a copy inherited by a forked child is not
    /// that endpoint and must not close it.
    #[cfg(not(loom))]
    owner_pid: u32,
}

impl PeerWatch {
    pub(crate) fn new() -> PeerWatch {
        PeerWatch {
            #[cfg(not(loom))]
            next: None,
            #[cfg(not(loom))]
            owner_pid: std::process::id(),
        }
    }

    /// Whether the owner of endpoint `slot` is known to be gone; looks (throttled) only for
    /// shared rings.
    pub(crate) fn peer_gone(&mut self, _storage: &Storage, _slot: usize) -> bool {
        #[cfg(not(loom))]
        if let Storage::Shm(_) = _storage {
            let now = std::time::Instant::now();
            if self.next.is_some_and(|next| now < next) {
                return false;
            }
            self.next = Some(now + crate::sync::waiter::SLICE);
            return _storage.endpoint_gone(_slot);
        }
        false
    }

    /// Whether this handle is being used in the process that attached it (not a forked
    /// child holding an inherited copy).
    pub(crate) fn in_owner_process(&self) -> bool {
        #[cfg(not(loom))]
        return std::process::id() == self.owner_pid;
        #[cfg(loom)]
        true
    }
}
