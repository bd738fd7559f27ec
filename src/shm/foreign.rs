//! Rings inside a mapping another library made: a `shared_memory::Shmem` (cargo feature
//! `shared_memory`). See the public `interop` module for what this gives and what it does not.
//!
//! A `Shmem` on Linux is a named POSIX object (its `os_id`) that the crate created with
//! `shm_open(O_CREAT | O_EXCL, 0600)` and mapped shared, read-write. The ring uses that
//! mapping as its own (header, control block, data region), and opens the object once more
//! by its name for a descriptor of its own: the endpoints' liveness locks are OFD locks on
//! it, and its size and seals are asked of it. Before it trusts that descriptor it checks
//! (in `/proc/self/maps`) that the mapping really is of that object, at offset 0.

use std::fmt;
use std::ptr::NonNull;

use super::layout::Header;
use super::lock::{self, CREATION_BYTE, LockKind};
use super::segment::{Segment, io_err};
use crate::error::OpenError;
use crate::geometry::{Geometry, HEADER_SIZE, MAGIC};
use crate::sync::shared::{AtomicU64, Ordering};

/// A `Shmem` kept alive by a ring's segment.
pub(crate) struct Owner(#[allow(dead_code)] shared_memory::Shmem);

// SAFETY: `Shmem` is not `Send` only because it holds the mapping's address as a raw
// pointer. The segment never calls its methods after construction; it only keeps it alive
// and drops it (from whichever thread drops the last ring handle), and that drop is
// `munmap`, `close` and, for the owner, `shm_unlink`: system calls with no thread affinity.
unsafe impl Send for Owner {}
// SAFETY: as above: no method of the `Shmem` is called through a shared reference.
unsafe impl Sync for Owner {}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shmem")
    }
}

/// The segment of a ring inside `shmem`: its mapping, checked (page aligned, not larger than
/// the object), and a descriptor of the same object, opened by its name under the usual
/// rules (owner and mode, no symbolic link).
pub(crate) fn segment(shmem: shared_memory::Shmem) -> Result<Segment, OpenError> {
    let name = shm_name(shmem.get_os_id());
    let len = shmem.len();
    let base = NonNull::new(shmem.as_ptr()).ok_or(OpenError::Incompatible(
        "the shared_memory mapping has no address",
    ))?;
    // Every segment holds at least the header page (`Header::of` relies on it).
    if (len as u64) < HEADER_SIZE {
        return Err(OpenError::TooSmall {
            actual: len as u64,
            needed: HEADER_SIZE,
        });
    }
    let page = rustix::param::page_size();
    if base.as_ptr() as usize % page != 0 {
        return Err(OpenError::Incompatible(
            "the shared_memory mapping does not start on a page boundary",
        ));
    }
    let fd = Segment::open_object(&name, false)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err("fstat", e))?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size < len as u64 {
        // The object shrank under the mapping already.
        return Err(OpenError::TooSmall {
            actual: size,
            needed: len as u64,
        });
    }
    same_object(&name, base, &st)?;
    // SAFETY: `base..base + len` is the `Shmem`'s shared read-write mapping of the object
    // behind `fd` (checked just above), which the `Shmem`, moved into the segment, keeps
    // mapped until it is dropped; the caller gave the `Shmem` up, so nothing else in this
    // process reaches the mapping through it.
    unsafe { Segment::foreign(Owner(shmem), base, len as u64, fd, name) }
}

/// Prepares `seg` for a new ring of geometry `g` (the creator's part of `open::create`):
/// refuses a mapping that is too small or that holds a ring already, takes the creation lock,
/// reserves the object's memory and zeroes the ring's bytes.
pub(crate) fn prepare(seg: &Segment, g: &Geometry) -> Result<(), OpenError> {
    let name = seg.name().unwrap_or_default().to_owned();
    let needed = g.object_len();
    if seg.len() < needed {
        return Err(OpenError::TooSmall {
            actual: seg.len(),
            needed,
        });
    }
    // Held by another description: someone else is creating a ring here right now.
    if !lock::try_lock(seg.fd(), CREATION_BYTE, LockKind::Write).unwrap_or(true) {
        return Err(OpenError::AlreadyExists(name));
    }
    // SAFETY: the segment is at least a header page long (`needed` includes it), page
    // aligned; the first word is plain memory, read atomically.
    let magic = unsafe { seg.ptr().cast::<AtomicU64>().as_ref() }.load(Ordering::Acquire);
    if magic == MAGIC || magic == MAGIC.swap_bytes() {
        let _ = lock::unlock(seg.fd(), CREATION_BYTE);
        return Err(OpenError::AlreadyExists(name));
    }
    reserve(seg.fd(), needed)?;
    // SAFETY: `needed <= seg.len()` bytes of the segment's mapping, writable; no ring lives
    // there (no magic) and we hold the creation lock, so no opener trusts these bytes until
    // the header is published.
    unsafe { std::ptr::write_bytes(seg.ptr().as_ptr(), 0, needed as usize) };
    debug_assert!(Header::of(seg).raw_kind().is_none());
    Ok(())
}

/// Reserves the first `len` bytes of the object, so that a full `/dev/shm` is an error now
/// rather than a `SIGBUS` at first touch (the `shared_memory` crate does not reserve).
fn reserve(fd: std::os::fd::BorrowedFd<'_>, len: u64) -> Result<(), OpenError> {
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::KEEP_SIZE, 0, len) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
            Err(rustix::io::Errno::NOSPC) => return Err(OpenError::NoSpace { bytes: len }),
            Err(e) => return Err(io_err("fallocate", e)),
        }
    }
}

/// The POSIX name of a `Shmem`'s object: its `os_id`, with the leading '/' that `shm_open`
/// takes as implied when it is missing.
fn shm_name(os_id: &str) -> String {
    if os_id.starts_with('/') {
        os_id.to_owned()
    } else {
        format!("/{os_id}")
    }
}

/// Checks in `/proc/self/maps` that the mapping at `base` is of the object `st` describes
/// (device and inode), from offset 0: the name could by now be another object than the one
/// the `Shmem` mapped.
fn same_object(name: &str, base: NonNull<u8>, st: &rustix::fs::Stat) -> Result<(), OpenError> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|source| OpenError::Io {
        context: "reading /proc/self/maps to identify the shared_memory mapping",
        source,
    })?;
    let start = format!("{:x}-", base.as_ptr() as usize);
    let line = maps.lines().find(|l| l.starts_with(&start));
    let refuse = |reason: String| {
        Err(OpenError::Untrusted {
            object: format!("{name:?}"),
            reason,
        })
    };
    let Some(line) = line else {
        return refuse(format!("no mapping starts at {:p}", base.as_ptr()));
    };
    // start-end perms offset major:minor inode path
    let fields: Vec<&str> = line.split_whitespace().collect();
    let parsed = (|| {
        let offset = u64::from_str_radix(fields.get(2)?, 16).ok()?;
        let (major, minor) = fields.get(3)?.split_once(':')?;
        let major = u32::from_str_radix(major, 16).ok()?;
        let minor = u32::from_str_radix(minor, 16).ok()?;
        let inode: u64 = fields.get(4)?.parse().ok()?;
        Some((offset, major, minor, inode, fields.get(1)?.to_string()))
    })();
    let Some((offset, major, minor, inode, perms)) = parsed else {
        return refuse(format!(
            "cannot read the mapping's line in /proc/self/maps: {line:?}"
        ));
    };
    let dev = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    if (major, minor) != dev || inode != st.st_ino || offset != 0 {
        return refuse(format!(
            "the mapping at {:p} is not of this object from offset 0 (the name now names \
             another object?)",
            base.as_ptr()
        ));
    }
    if !perms.starts_with("rw") || perms.as_bytes().get(3) != Some(&b's') {
        return refuse(format!("the mapping is not shared and writable ({perms})"));
    }
    Ok(())
}
