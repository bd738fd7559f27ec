//! Creating, opening and mapping ring objects: what the rings call, and what they get back
//! ([`Mapped`]); the backing that keeps a mapping alive for the ring handles.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::endpoints::OwnedDescription;
use super::layout::{self, Header, INIT_WAIT};
use super::lock;
use super::peer::ProcessId;
use super::segment::{self, Segment};
use crate::config::OpenOptions;
use crate::error::OpenError;
use crate::geometry::{Geometry, HEADER_SIZE, KindRules};
use crate::storage::{Backing, EndpointStatus, Presence, Refused, Registry, Storage};
use crate::sync::region::Region;
use std::ptr::NonNull;

/// A mapped ring object whose geometry has been validated against the mapping.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(super) seg: Arc<Segment>,
    /// The geometry: every offset and length in it lies inside the mapping.
    pub(crate) geometry: Geometry,
}

impl Mapped {
    /// The control block, of type `C` (the caller's ring kind validated `CONTROL_SIZE`).
    pub(crate) fn control<C>(&self) -> NonNull<C> {
        self.at(self.geometry.control_offset).cast()
    }

    /// The start of the data region.
    pub(crate) fn data(&self) -> NonNull<u8> {
        self.at(self.geometry.data_offset)
    }

    /// The data region.
    pub(crate) fn region(&self) -> Region {
        // SAFETY: `data_offset + data_len <= total_len <= len` (validated, and the mapping
        // narrowed to `total_len` or made for it), the mapping lives
        // as long as the storage every ring handle keeps, and the data offset is page aligned.
        unsafe { Region::new(self.data(), self.geometry.data_len as usize) }
    }

    /// The record of this ring's ends in this process (see [`LocalEnds`](super::LocalEnds)).
    /// `generation` is this process's fork generation.
    pub(crate) fn local_ends(&self, generation: u32) -> Result<Arc<super::LocalEnds>, OpenError> {
        super::ends_of(self.seg.fd(), generation).map_err(|source| OpenError::Io {
            context: "fstat of the ring's object",
            source,
        })
    }

    /// The owner that keeps the mapping alive, for the ring handles.
    pub(crate) fn storage(&self) -> Storage {
        Storage::new(Arc::new(Shared(self.seg.clone())))
    }

    fn at(&self, off: u64) -> NonNull<u8> {
        debug_assert!(off < self.seg.len());
        // SAFETY: `off` is an offset of the validated geometry, below the mapping's length.
        unsafe { self.seg.ptr().add(off as usize) }
    }
}

/// The backing of a shared ring: its mapping, whose header holds the endpoint table.
#[derive(Debug)]
struct Shared(Arc<Segment>);

impl Backing for Shared {
    fn registry(&self) -> Option<&dyn Registry> {
        Some(self)
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.fd())
    }

    fn truncated(&self) -> bool {
        self.0.poisoned()
    }
}

impl Registry for Shared {
    fn attach(&self, slot: usize, role: u32) -> Result<Presence, Refused> {
        let own = self.own_description()?;
        Header::of(&self.0)
            .attach(slot, role, ProcessId::current(), own)
            .map(Presence::new)
            .map_err(|state| {
                if state == layout::EP_CLOSED {
                    Refused::Closed
                } else {
                    Refused::Taken
                }
            })
    }
    fn attach_any(&self, len: usize, role: u32) -> Result<Option<(usize, Presence)>, Refused> {
        let own = self.own_description()?;
        Ok(Header::of(&self.0)
            .attach_any(len, role, ProcessId::current(), own)
            .map(|(slot, lock)| (slot, Presence::new(lock))))
    }
    fn attached_role(&self, slot: usize) -> Option<u32> {
        Header::of(&self.0).attached_role(slot)
    }
    fn reap_if_dead(&self, slot: usize) -> Option<u32> {
        Header::of(&self.0).reap_if_dead(slot, self.0.fd())
    }
    fn detach(&self, slot: usize) {
        Header::of(&self.0).detach(slot)
    }
    fn status(&self, slot: usize) -> EndpointStatus {
        Header::of(&self.0).status(slot, self.0.fd())
    }
    fn poison(&self) {
        Header::of(&self.0).poison()
    }
}

impl Shared {
    /// A descriptor of the object for one endpoint alone, to hold its liveness lock on.
    fn own_description(&self) -> Result<OwnedDescription, Refused> {
        lock::reopen(self.0.fd(), self.0.name())
            .map(OwnedDescription)
            .map_err(Refused::Unavailable)
    }
}

/// Shared-memory rings cannot be model-checked: loom's atomics are not plain words.
fn refuse_under_model() -> Result<(), OpenError> {
    if crate::sync::MODEL_CHECKING {
        return Err(OpenError::Incompatible(
            "shared-memory rings are not available in loom builds",
        ));
    }
    Ok(())
}

/// Where [`create`] puts a new ring.
#[derive(Debug)]
pub(crate) enum Place<'a> {
    /// A new named object.
    Named(&'a str),
    /// A new memfd.
    Anonymous,
    /// A mapping this process already has (`shared_memory` interop), whose object exists.
    #[cfg(feature = "shared_memory")]
    Foreign(Segment),
}

impl<'a> From<Option<&'a str>> for Place<'a> {
    fn from(name: Option<&'a str>) -> Place<'a> {
        name.map_or(Place::Anonymous, Place::Named)
    }
}

/// Creates a ring object of kind `R` where `place` says: the header is written, `creator`
/// (an endpoint slot and role), if any, is attached for this process, then `init` prepares
/// the control block, and only then is the ring published as ready.
pub(crate) fn create<'a, R: KindRules>(
    place: impl Into<Place<'a>>,
    g: &Geometry,
    mode: u32,
    creator: Option<(usize, u32)>,
    init: impl FnOnce(&Mapped),
) -> Result<(Mapped, Option<Presence>), OpenError> {
    refuse_under_model()?;
    let (seg, named) = match place.into() {
        Place::Named(name) => (Segment::create(name, g.object_len(), mode)?, true),
        Place::Anonymous => (Segment::create_anonymous(g.object_len())?, false),
        #[cfg(feature = "shared_memory")]
        Place::Foreign(seg) => {
            super::foreign::prepare(&seg, g)?;
            (seg, true)
        }
    };
    let me = ProcessId::current();
    Header::of(&seg).init(g, me);
    let mapped = Mapped {
        seg: Arc::new(seg),
        geometry: *g,
    };
    // A fresh object is zero-filled and nobody else can attach before it is published: the
    // slot can only fail to be ours if this process cannot get a descriptor of its own.
    let presence = match creator {
        Some((slot, role)) => Some(
            Shared(mapped.seg.clone())
                .attach(slot, role)
                .map_err(|r| r.into_open_error("creator"))?,
        ),
        None => None,
    };
    init(&mapped);
    Header::of(&mapped.seg).publish();
    // Published: openers no longer need to know whether a creator is at work.
    if named {
        let _ = lock::unlock(mapped.seg.fd(), lock::CREATION_BYTE);
    }
    Ok((mapped, presence))
}

/// Opens a named ring object of kind `R` as `options` say and validates it (without waiting
/// for it to be created: that is [`wait_until_found`]).
pub(crate) fn open<R: KindRules>(name: &str, options: &OpenOptions) -> Result<Mapped, OpenError> {
    refuse_under_model()?;
    let seg = open_sized(name, options.allow_other_users)?;
    validated::<R>(seg)
}

/// `open` as `options` say, waiting for the ring to be created if they ask to; `attach`
/// then makes a handle of it.
pub(crate) fn open_with<R: KindRules, H>(
    name: &str,
    options: &OpenOptions,
    mut attach: impl FnMut(Mapped) -> Result<H, OpenError>,
) -> Result<H, OpenError> {
    match options.timeout {
        None => attach(open::<R>(name, options)?),
        Some(t) => wait_until_found(t, || attach(open::<R>(name, options)?)),
    }
}

/// What [`open_fd`] asks of a descriptor before it maps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdTrust {
    /// Only a memfd sealed against shrinking: nobody can truncate it under us, whatever
    /// other descriptors of it exist (`from_fd`). A hugetlbfs one can still lose pages to a
    /// punched hole, and is mapped under the `SIGBUS` guard.
    SealedMemfd,
    /// Any descriptor the caller vouches for (`from_fd_unchecked`). One whose pages can be
    /// taken away (it can be shrunk, or it is on hugetlbfs) is mapped under the `SIGBUS`
    /// guard, as a named object is.
    Caller,
}

/// Maps and validates a ring object given by its fd (a memfd passed from another process).
pub(crate) fn open_fd<R: KindRules>(fd: OwnedFd, trust: FdTrust) -> Result<Mapped, OpenError> {
    refuse_under_model()?;
    if trust == FdTrust::SealedMemfd {
        check_sealed_memfd(&fd)?;
    }
    validated::<R>(Segment::header(fd)?)
}

/// Refuses a descriptor that is not a memfd sealed against shrinking: anyone holding another
/// descriptor of it could truncate it under us, and only a seal rules that out.
fn check_sealed_memfd(fd: &OwnedFd) -> Result<(), OpenError> {
    use std::os::fd::AsRawFd;
    let refuse = |reason: &str| {
        Err(OpenError::Untrusted {
            object: format!("file descriptor {}", fd.as_raw_fd()),
            reason: reason.to_owned(),
        })
    };
    match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) if seals.contains(rustix::fs::SealFlags::SHRINK) => Ok(()),
        Ok(_) => refuse(
            "not sealed against shrinking (F_SEAL_SHRINK), so it could be truncated under the \
             mapping; use from_fd_unchecked to accept it",
        ),
        // Only shmem files (memfds, tmpfs and named shm objects) know about seals.
        Err(rustix::io::Errno::INVAL) => refuse(
            "not a memfd, so it cannot be sealed against shrinking; use from_fd_unchecked to \
             accept it",
        ),
        Err(e) => Err(segment::io_err("fcntl(F_GET_SEALS)", e)),
    }
}

/// Validates a ring of kind `R` in a mapping this process already has (`shared_memory`
/// interop).
#[cfg(feature = "shared_memory")]
pub(crate) fn open_segment<R: KindRules>(seg: Segment) -> Result<Mapped, OpenError> {
    refuse_under_model()?;
    validated::<R>(seg)
}

/// Validates the header of `seg` (the header page of an object, or a foreign mapping) as a
/// ring of kind `R`, then maps exactly the ring it describes: the object's size only has to
/// hold it, and may be far larger.
fn validated<R: KindRules>(seg: Segment) -> Result<Mapped, OpenError> {
    let geometry = Header::validate::<R>(&seg, || creator_busy(&seg))?;
    Ok(Mapped {
        seg: Arc::new(seg.narrowed(geometry.total_len)?),
        geometry,
    })
}

/// Calls `open` until it finds the object or `timeout` passes (`open_timeout`).
pub(crate) fn wait_until_found<T>(
    timeout: std::time::Duration,
    mut open: impl FnMut() -> Result<T, OpenError>,
) -> Result<T, OpenError> {
    let started = std::time::Instant::now();
    loop {
        match open() {
            Err(OpenError::NotFound(name)) => {
                let left = timeout.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(OpenError::NotFound(name));
                }
                std::thread::sleep(left.min(std::time::Duration::from_millis(5)));
            }
            other => return other,
        }
    }
}

/// How long an empty object without a creation lock is looked at again before it is called a
/// stray: the creator's window between creating the object and locking it.
const CREATE_GRACE: Duration = Duration::from_millis(20);

/// Opens a named object and maps it once it has a size. Between `shm_open(O_CREAT)` and
/// `ftruncate` a creator's object has size 0: an opener that finds an empty object waits
/// (bounded) for it to be sized while its creator may be at work ([`creator_busy`]), and
/// otherwise answers at once that it is too small (a stray object, not a ring).
fn open_sized(name: &str, allow_other_users: bool) -> Result<Segment, OpenError> {
    let started = Instant::now();
    loop {
        // Opened afresh each round: the name may now be another object.
        let fd = Segment::open_object(name, allow_other_users)?;
        let len = rustix::fs::fstat(&fd)
            .map_err(|e| segment::io_err("fstat", e))?
            .st_size;
        if len != 0 {
            return Segment::header(fd).map(|seg| seg.with_name(name));
        }
        // Size 0 and no creation lock: a creator between `shm_open` and taking the lock (a
        // few system calls), or none at all. Look again for a short grace, then answer (the
        // size once more first: a creator sizes its object only while holding the lock, so
        // one that did so between our look and the probe shows here).
        if !creator_busy(&fd)
            && started.elapsed() >= CREATE_GRACE
            && rustix::fs::fstat(&fd).map_or(0, |st| st.st_size) == 0
        {
            return Err(OpenError::TooSmall {
                actual: 0,
                needed: HEADER_SIZE,
            });
        }
        if started.elapsed() >= INIT_WAIT {
            return Err(OpenError::StillInitialising(INIT_WAIT));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether the creator of an object is still initialising it: it holds the creation lock
/// ([`lock::CREATION_BYTE`]) from before it sizes the object until the header is published.
/// Then an empty object, or one whose header is still unwritten, is worth waiting for
/// (bounded by [`INIT_WAIT`]); otherwise the opener answers `TooSmall`, `NotShmring` or
/// `Abandoned` at once. A probe that fails says nothing: wait (bounded) as for a creator.
pub(crate) fn creator_busy(object: impl AsFd) -> bool {
    !matches!(
        lock::probe(object.as_fd(), lock::CREATION_BYTE),
        Ok(lock::LockState::Free)
    )
}
