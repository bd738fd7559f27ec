//! Stale rings: rings that some endpoint attached to once and that nobody is in any more,
//! found and removed on positive evidence only.
//!
//! The rule (one place, used by [`inspect`](super::inspect()) and the tool's `list --stale`):
//! a ring is stale when
//!
//! 1. some entry of its endpoint table was ever taken (a ring that nobody attached to yet is
//!    waiting for its ends, like a FIFO made by `mkfifo`, and is never stale),
//! 2. it holds no message for a receiving side that never attached (a producer that sent
//!    and left before its consumer came left its messages for that consumer), and
//! 3. no process holds any of its locks: neither the creation lock (a creator at work) nor
//!    any endpoint's liveness lock (an endpoint alive, or one attaching right now).
//!
//! The locks are OFD locks that the kernel releases when their holder dies, however it dies,
//! so a ring whose processes were killed with SIGKILL becomes stale at once, and a ring with a
//! live endpoint in any pid namespace never is. A ring whose creator died while initialising
//! it (`Abandoned`) and a ring marked poisoned are stale under 3 alone: nobody can open
//! either again. A probe that fails counts as a held lock (not stale).
//!
//! Removing ([`unlink_if_stale`]) closes the race with a process attaching meanwhile: it
//! takes every one of the ring's locks itself (an attacher that finds its byte locked backs
//! off, as from an endpoint in use), judges the ring again under them, checks that the name
//! still refers to the same object, and only then removes the name.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::census::View;
use super::inspect::validated_any;
use super::layout::{EP_FREE, Header};
use super::lock::{self, CREATION_BYTE, LockKind, endpoint_byte};
use super::segment::{self, Segment};
use crate::error::OpenError;
use crate::geometry::{Geometry, Kind, MAGIC, MAX_ENDPOINTS};

/// The SPSC consumer's entry in the endpoint table (the producer's is 0).
const SPSC_CONSUMER_SLOT: usize = 1;
use crate::sync::shared::{AtomicU64, Ordering};

/// Whether any process other than through `fd`'s own description holds the creation lock or
/// an endpoint lock of the object (one system call). A failed probe counts as held.
fn anyone_holds(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    lock::probe_range(fd, CREATION_BYTE, 1 + MAX_ENDPOINTS as u64).map_or(true, |r| r.is_some())
}

/// Whether some entry among the first `entries` of the table was ever taken.
fn ever_attached(h: &Header, entries: u32) -> bool {
    (0..entries as usize).any(|slot| h.endpoint_snapshot(slot).is_some_and(|e| e.0 != EP_FREE))
}

/// Whether the ring holds messages for a receiving side that never attached: the SPSC
/// consumer's entry was never taken, or no MPMC receiver ever attached.
fn awaits_first_receiver(seg: &Segment, g: &Geometry) -> bool {
    let view = View::of(seg, g);
    let came = match g.kind {
        Kind::Spsc => Header::of(seg)
            .endpoint_snapshot(SPSC_CONSUMER_SLOT)
            .is_some_and(|e| e.0 != EP_FREE),
        Kind::Mpmc => view.mpmc_receivers_came(),
    };
    !came && view.traffic().used_bytes > 0
}

/// Parts 1 and 2 of the rule, from the ring's memory and how validating it went.
fn by_header(seg: &Segment, validated: Result<Geometry, OpenError>) -> Result<bool, OpenError> {
    match validated {
        Ok(g) => {
            Ok(ever_attached(Header::of(seg), g.endpoint_count) && !awaits_first_receiver(seg, &g))
        }
        Err(OpenError::Abandoned | OpenError::Poisoned) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The whole rule for a mapped object whose validation gave `validated` (part 3 last: an
/// endpoint that attached while the rest was read holds its lock by then).
pub(super) fn judge(
    seg: &Segment,
    validated: Result<Geometry, OpenError>,
) -> Result<bool, OpenError> {
    Ok(by_header(seg, validated)? && !anyone_holds(seg.fd()))
}

/// Whether the object starts with the ring magic (for an object whose locks are held, which
/// is not validated: a creator may be at work).
fn check_magic(seg: &Segment) -> Result<(), OpenError> {
    // SAFETY: a mapped segment is at least HEADER_SIZE bytes and page aligned; an atomic
    // accepts any bit pattern and a load writes nothing (the mapping may be read-only).
    let magic = unsafe { &*seg.ptr().as_ptr().cast::<AtomicU64>() };
    if magic.load(Ordering::Relaxed) == MAGIC {
        Ok(())
    } else {
        Err(OpenError::NotShmring)
    }
}

/// Whether the named ring is stale (see [`RingInfo::stale`](crate::RingInfo::stale) for the
/// rule). Attaches nothing and writes nothing; needs read permission only. Unlike
/// [`inspect`](crate::inspect) it answers for rings that cannot be opened any more
/// (abandoned by their creator, or poisoned), which are stale once nobody holds them.
///
/// # Errors
/// The [`OpenError`]s of opening a ring (`NotFound`, `NotShmring`, `UnsupportedVersion`, …).
///
/// ```
/// use shmring::spsc;
/// let name = format!("/shmring-doc-is-stale-{}", std::process::id());
/// spsc::create(&name, spsc::Config::default())?;
/// assert!(!shmring::is_stale(&name)?); // nobody attached yet: waiting for its ends
/// let tx = spsc::Producer::open(&name)?;
/// assert!(!shmring::is_stale(&name)?); // a live producer
/// drop(tx);
/// assert!(shmring::is_stale(&name)?);  // it came and went
/// shmring::unlink(&name)?;
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn is_stale(name: &str) -> Result<bool, OpenError> {
    let seg = Segment::open_read_only(name)?;
    if anyone_holds(seg.fd()) {
        // In use, or being created: not stale, without waiting for a creator.
        return check_magic(&seg).map(|()| false);
    }
    let (seg, validated) = validated_any(seg)?;
    judge(&seg, validated)
}

/// Removes the named ring if it is stale, and says whether it did. A process that tries to
/// attach while this runs fails as if the endpoint were taken, and then finds the name gone.
///
/// # Errors
/// The [`OpenError`]s of opening a ring read-write (`NotFound`, `PermissionDenied`,
/// `NotShmring`, …) and of [`unlink`](crate::unlink).
///
/// ```
/// use shmring::mpmc;
/// let name = format!("/shmring-doc-unlink-stale-{}", std::process::id());
/// let rx = mpmc::Receiver::create(&name, mpmc::Config::default())?;
/// assert!(!shmring::unlink_if_stale(&name)?); // a live receiver: kept
/// drop(rx);
/// assert!(shmring::unlink_if_stale(&name)?);
/// assert!(matches!(shmring::inspect(&name), Err(shmring::OpenError::NotFound(_))));
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn unlink_if_stale(name: &str) -> Result<bool, OpenError> {
    if !is_stale(name)? {
        return Ok(false);
    }
    // Write locks need a description open for writing.
    let fd = Segment::open_object(name, true)?;
    for byte in CREATION_BYTE..endpoint_byte(MAX_ENDPOINTS as u32) {
        match lock::try_lock(fd.as_fd(), byte, LockKind::Write) {
            Ok(true) => {}
            // Someone came: not stale any more. Closing `fd` lets go of what we took.
            Ok(false) => return Ok(false),
            Err(source) => {
                return Err(OpenError::Io {
                    context: "fcntl(F_OFD_SETLK)",
                    source,
                });
            }
        }
    }
    // Every lock is ours (probes through this description do not see them), so no endpoint
    // of the ring is alive and none can attach until we let go.
    let (seg, validated) = validated_any(Segment::header(fd)?.with_name(name))?;
    if !by_header(&seg, validated)? {
        return Ok(false);
    }
    let st = rustix::fs::fstat(seg.fd()).map_err(|e| segment::io_err("fstat", e))?;
    let same = std::fs::symlink_metadata(format!("/dev/shm{name}"))
        .is_ok_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino);
    if !same {
        // The name was removed, or now names another object, since we opened it.
        return Ok(false);
    }
    crate::unlink(name)?;
    Ok(true)
}
