//! The shared-memory object: a named POSIX shm object or an anonymous memfd, sized, reserved
//! and mapped.
//!
//! - Named objects are created with `shm_open(O_CREAT | O_EXCL | O_RDWR, mode)`: creating never
//!   reuses an existing object, opening never creates one.
//! - Creating reserves the memory with `fallocate`, so a full `/dev/shm` is an `ENOSPC` error
//!   at creation instead of a `SIGBUS` on first touch.
//! - Opening maps the header page first ([`Segment::header`]); once the header is validated
//!   the object is mapped again for exactly the ring it describes ([`Segment::narrowed`]),
//!   after checking (`fstat`) that the object holds it. The object's own size only bounds the
//!   ring: a peer that grows an object (sparsely, at no cost to itself) to terabytes costs an
//!   opener no address space.
//! - memfd objects are sealed against shrinking and growing before they are mapped, so no
//!   process holding the fd can truncate the ring under another one.
//! - Every mapping whose pages a peer can take away is registered with the `SIGBUS` guard
//!   ([`sigbus`](super::sigbus)) for its whole range before anything touches it
//!   ([`ObjectMemory`]). Named POSIX objects cannot be sealed: any process allowed to open
//!   one read-write can truncate it, and our next access past the new end would raise
//!   `SIGBUS`. A hugetlbfs object sealed against shrinking still loses pages to a punched
//!   hole (`fallocate(FALLOC_FL_PUNCH_HOLE)`, which only `F_SEAL_WRITE` refuses), and the
//!   next access raises `SIGBUS` once no huge page is free to fill it. Under the guard it
//!   reads zeros instead and [`Segment::poisoned`] says so; the rings then report the ring as
//!   corrupted. If the guard's table is full the object is not mapped at all
//!   ([`OpenError::TooManyMappings`]). Only a tmpfs memfd sealed against shrinking goes
//!   unguarded: the kernel fills a hole punched in it with a fresh page on the next access
//!   (unless it refuses to overcommit memory, when the mapping is guarded too).
//! - A hugetlbfs object is mapped in whole huge pages (its mapping unit), so that unmapping
//!   it, and the guard's replacement of it, cover whole pages of the mapping.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{FallocateFlags, MemfdFlags, Mode, SealFlags};
use rustix::io::Errno;
use rustix::shm;

use super::lock::{CREATION_BYTE, LockKind};
use super::sigbus;
use crate::error::OpenError;
use crate::geometry::HEADER_SIZE;

/// Longest name accepted, leading '/' included (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Checks a name against the POSIX shared-memory rules: one leading '/', no other '/', no NUL,
/// not "/." or "/..", at most 255 bytes.
///
/// # Errors
/// [`OpenError::InvalidName`] naming the rule that is broken.
///
/// ```
/// assert!(shmring::validate_name("/orders").is_ok());
/// assert!(shmring::validate_name("orders").is_err());
/// assert!(shmring::validate_name("/a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |reason| {
        Err(OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if !name.starts_with('/') {
        return bad("must start with '/'");
    }
    if name.len() < 2 {
        return bad("must have at least one character after '/'");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 255 bytes");
    }
    if name[1..].contains('/') {
        return bad("must not contain '/' after the first character");
    }
    if name.contains('\0') {
        return bad("must not contain a NUL byte");
    }
    if name == "/." || name == "/.." {
        return bad("must not be \".\" or \"..\"");
    }
    Ok(())
}

/// Removes the named shared-memory object. Processes that have it open keep using it; the name
/// is free for a new ring at once (as `unlink(2)` for files).
///
/// # Errors
/// [`OpenError::InvalidName`], [`OpenError::NotFound`], [`OpenError::PermissionDenied`], or
/// [`OpenError::Io`].
///
/// ```
/// use shmring::spsc;
/// let name = format!("/shmring-doc-unlink-{}", std::process::id());
/// let tx = spsc::Producer::create(&name, &shmring::spsc::Config::default())?;
/// shmring::unlink(&name)?;
/// assert!(matches!(shmring::unlink(&name), Err(shmring::OpenError::NotFound(_))));
/// # drop(tx);
/// # Ok::<(), shmring::OpenError>(())
/// ```
pub fn unlink(name: &str) -> Result<(), OpenError> {
    validate_name(name)?;
    shm::unlink(name).map_err(|e| map_errno(e, name, "shm_unlink"))
}

/// `O_NOFOLLOW` for `shm_open`: the name must not be a symbolic link (glibc adds it itself;
/// rustix's own implementation opens `/dev/shm/<name>` with the flags as given).
fn nofollow() -> shm::OFlags {
    shm::OFlags::from_bits_retain(rustix::fs::OFlags::NOFOLLOW.bits())
}

/// Refuses an object that is not a regular file, or (unless `allow_other_users`) that is
/// owned by another user than `euid` or writable by its group or by others: any of them could
/// truncate it or write into it.
pub(crate) fn check_trusted(
    name: &str,
    st: &rustix::fs::Stat,
    euid: u32,
    allow_other_users: bool,
) -> Result<(), OpenError> {
    let refuse = |reason: String| {
        Err(OpenError::Untrusted {
            object: format!("{name:?}"),
            reason,
        })
    };
    let mode = st.st_mode;
    if mode & libc::S_IFMT != libc::S_IFREG {
        return refuse("not a regular file".to_owned());
    }
    if allow_other_users {
        return Ok(());
    }
    if st.st_uid != euid {
        return refuse(format!(
            "owned by uid {}, not by this process's uid {euid} (see OpenOptions::allow_other_users)",
            st.st_uid
        ));
    }
    if mode & 0o022 != 0 {
        return refuse(format!(
            "mode {:04o} lets users other than its owner write it (see \
             OpenOptions::allow_other_users)",
            mode & 0o7777
        ));
    }
    Ok(())
}

pub(crate) fn map_errno(e: Errno, name: &str, context: &'static str) -> OpenError {
    match e {
        Errno::NOENT => OpenError::NotFound(name.to_owned()),
        // O_NOFOLLOW met a symbolic link.
        Errno::LOOP => OpenError::Untrusted {
            object: format!("{name:?}"),
            reason: "is a symbolic link".to_owned(),
        },
        Errno::EXIST => OpenError::AlreadyExists(name.to_owned()),
        Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(name.to_owned()),
        Errno::NAMETOOLONG | Errno::INVAL => OpenError::InvalidName {
            name: name.to_owned(),
            reason: "rejected by the system",
        },
        e => OpenError::Io {
            context,
            source: e.into(),
        },
    }
}

/// A mapped shared-memory object. Unmapped (and the fd closed) on drop; a named object's name
/// is removed only by [`unlink`].
#[derive(Debug)]
pub(crate) struct Segment {
    /// The `SIGBUS` guard of the whole mapping, for objects whose pages can be taken away
    /// under us (`None` for a tmpfs memfd sealed against shrinking, see [`ObjectMemory`]).
    /// Declared before `_map` so that it is dropped (unregistered) before the mapping is
    /// unmapped, as the guard requires.
    guard: Option<sigbus::Guard>,
    /// Keeps the mapping alive; accessed through `base`.
    _map: Mapping,
    base: NonNull<u8>,
    fd: OwnedFd,
    /// Length of the mapping in bytes.
    len: u64,
    /// Bytes of the object a ring in this segment may span: the object's size when it was
    /// mapped (our own mappings, which [`narrowed`](Segment::narrowed) then fits to the
    /// ring), or the mapping's length (one another library made).
    extent: u64,
    /// Whether the mapping is writable.
    writable: bool,
    /// How the object maps.
    memory: ObjectMemory,
    /// The name of a named object (to reopen it where `/proc/self/fd` is unavailable).
    name: Option<String>,
}

impl Segment {
    /// Creates a named object of `len` bytes (exclusive), reserves and maps it.
    pub(crate) fn create(name: &str, len: u64, mode: u32) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let fd = shm::open(
            name,
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR | nofollow(),
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| map_errno(e, name, "shm_open"))?;
        // From here on a failure must not leave the half-made object behind.
        let cleanup = UnlinkOnError(name);
        // The creation lock, before the object gets a size: an opener that finds the object
        // empty or its header unwritten and this byte free knows no creator is at work. The
        // creator releases it once the header is published (`open::create`). Only a failure
        // to lock a brand-new object (a file system without OFD locks) goes on without it:
        // openers then give up on a silent object after a short grace.
        let _ = super::lock::try_lock(fd.as_fd(), CREATION_BYTE, LockKind::Write);
        let mut seg = Self::size_and_map(fd, len)?;
        std::mem::forget(cleanup);
        seg.name = Some(name.to_owned());
        Ok(seg)
    }

    /// Creates an anonymous object on a memfd, sealed against resizing before it is mapped
    /// (so its mapping needs no `SIGBUS` guard, see [`ObjectMemory`]).
    pub(crate) fn create_anonymous(len: u64) -> Result<Segment, OpenError> {
        let fd =
            rustix::fs::memfd_create("shmring", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(|e| io_err("memfd_create", e))?;
        Self::size(&fd, len)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| io_err("fcntl(F_ADD_SEALS)", e))?;
        Self::map_with(fd, len, len, true)
    }

    fn size_and_map(fd: OwnedFd, len: u64) -> Result<Segment, OpenError> {
        Self::size(&fd, len)?;
        Self::map_with(fd, len, len, true)
    }

    /// Sizes a new object and reserves its memory.
    fn size(fd: &OwnedFd, len: u64) -> Result<(), OpenError> {
        rustix::fs::ftruncate(fd, len).map_err(|e| match e {
            Errno::FBIG | Errno::NOSPC => OpenError::NoSpace { bytes: len },
            e => io_err("ftruncate", e),
        })?;
        let reserved = loop {
            match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, len) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        match reserved {
            Ok(()) => {}
            Err(Errno::NOSPC) => return Err(OpenError::NoSpace { bytes: len }),
            // Filesystems without fallocate: the memory is then reserved on first touch.
            Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(io_err("fallocate", e)),
        }
        Ok(())
    }

    /// Opens an existing named object (without mapping it), after checking that it is a
    /// regular file (not a symbolic link: `O_NOFOLLOW`) and that other users cannot write it
    /// (unless `allow_other_users`). [`Segment::header`] maps it.
    pub(crate) fn open_object(name: &str, allow_other_users: bool) -> Result<OwnedFd, OpenError> {
        validate_name(name)?;
        let fd = shm::open(name, shm::OFlags::RDWR | nofollow(), Mode::empty())
            .map_err(|e| map_errno(e, name, "shm_open"))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err("fstat", e))?;
        check_trusted(
            name,
            &st,
            rustix::process::geteuid().as_raw(),
            allow_other_users,
        )?;
        Ok(fd)
    }

    /// Opens an existing named object read-only and maps its header page read-only, for a
    /// report that writes nothing (`inspect`): only read permission is needed, so other
    /// users' rings can be looked at. A symbolic link (`O_NOFOLLOW`) or anything but a
    /// regular file is refused. [`Segment::narrowed`] maps the ring once its header is
    /// validated.
    pub(crate) fn open_read_only(name: &str) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let fd = shm::open(name, shm::OFlags::RDONLY | nofollow(), Mode::empty())
            .map_err(|e| map_errno(e, name, "shm_open"))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err("fstat", e))?;
        check_trusted(name, &st, rustix::process::geteuid().as_raw(), true)?;
        Self::header_with(fd, false).map(|s| s.with_name(name))
    }

    /// Maps the header page of an object given by an fd (a named object just opened, or
    /// e.g. a memfd received over a Unix socket or inherited across `fork`/`exec`), after
    /// checking it holds at least that page. Once the header is validated,
    /// [`Segment::narrowed`] maps the ring it describes.
    pub(crate) fn header(fd: OwnedFd) -> Result<Segment, OpenError> {
        Self::header_with(fd, true)
    }

    /// [`header`](Segment::header), mapped read-write or read-only.
    fn header_with(fd: OwnedFd, writable: bool) -> Result<Segment, OpenError> {
        let size = object_size(&fd)?;
        if size < HEADER_SIZE {
            // Too small to be mapped as a ring. If it does not even start with the magic it
            // is not a ring at all, which is the more useful thing to say.
            let mut magic = [0u8; 8];
            if size >= 8
                && rustix::io::pread(&fd, &mut magic, 0) == Ok(8)
                && u64::from_ne_bytes(magic) != crate::geometry::MAGIC
            {
                return Err(OpenError::NotShmring);
            }
            return Err(OpenError::TooSmall {
                actual: size,
                needed: HEADER_SIZE,
            });
        }
        Self::map_with(fd, HEADER_SIZE, size, writable)
    }

    /// The object mapped for exactly its first `len` bytes (a validated header's
    /// `total_len`), rounded out to whole mapping units, in place of this mapping, after
    /// checking that the object (still) holds them; the guard, if the object needs one,
    /// covers the new mapping before anything touches it. Whatever the object's size, the
    /// mapping is no larger than the ring. A mapping another library made is kept as it is.
    pub(crate) fn narrowed(self, len: u64) -> Result<Segment, OpenError> {
        let too_small = |actual| {
            Err(OpenError::TooSmall {
                actual,
                needed: len,
            })
        };
        if len > self.extent {
            return too_small(self.extent);
        }
        #[cfg(feature = "shared_memory")]
        if matches!(self._map, Mapping::Foreign(_)) {
            return Ok(self);
        }
        let len = if mutant_maps_whole_object() {
            self.extent
        } else {
            len
        };
        if self.memory.map_len(len)? == self.len {
            return Ok(self);
        }
        let size = object_size(&self.fd)?;
        if size < len {
            return too_small(size);
        }
        let Segment {
            guard,
            _map: map,
            fd,
            writable,
            name,
            ..
        } = self;
        // The guard goes before the mapping it covers (see `sigbus`).
        drop(guard);
        drop(map);
        let mut seg = Self::map_with(fd, len, size, writable)?;
        seg.name = name;
        Ok(seg)
    }

    /// Maps the first `len` bytes of the object behind `fd` (of `extent` bytes), rounded out
    /// to its mapping unit, under the `SIGBUS` guard if its pages can be taken away.
    fn map_with(fd: OwnedFd, len: u64, extent: u64, writable: bool) -> Result<Segment, OpenError> {
        let memory = ObjectMemory::of(fd.as_fd());
        let map_len = memory.map_len(len)?;
        let mut options = MmapOptions::new();
        options.len(map_len as usize);
        let map = if writable {
            options.map_raw(&fd)
        } else {
            options.map_raw_read_only(&fd)
        };
        let map = map.map_err(|source| OpenError::Io {
            context: "mmap",
            source,
        })?;
        let base = NonNull::new(map.as_mut_ptr()).ok_or(OpenError::Io {
            context: "mmap",
            source: std::io::Error::other("null mapping"),
        })?;
        // SAFETY: the range is exactly the mapping just made, which the segment owns and
        // unmaps only after dropping the guard (field order), and nothing has accessed it yet.
        let mut seg = unsafe { Self::guarded(Mapping::Own(map), base, map_len, fd, memory) }?;
        seg.extent = extent;
        seg.writable = writable;
        Ok(seg)
    }

    /// A segment over a mapping that another library made and keeps (`owner`), of the object
    /// behind `fd`.
    ///
    /// # Safety
    /// `base..base + len` must be a shared mapping of the object behind `fd`, readable and
    /// writable, that `owner` keeps mapped until it is dropped, and that nothing in this
    /// process accesses meanwhile except through the returned segment.
    #[cfg(feature = "shared_memory")]
    pub(crate) unsafe fn foreign(
        owner: super::foreign::Owner,
        base: NonNull<u8>,
        len: u64,
        fd: OwnedFd,
        name: String,
    ) -> Result<Segment, OpenError> {
        let memory = ObjectMemory::of(fd.as_fd());
        // SAFETY: as this function's contract; the owner is dropped after the guard (field
        // order), so the range stays mapped while the guard covers it.
        let seg = unsafe { Self::guarded(Mapping::Foreign(owner), base, len, fd, memory) }?;
        Ok(seg.with_name(&name))
    }

    /// Puts `base..base + len` under the `SIGBUS` guard unless `memory` says no access to
    /// it can fault.
    ///
    /// # Safety
    /// `base..base + len` is a mapping of `fd` that `map` keeps mapped, and nothing has
    /// accessed it through this segment yet.
    unsafe fn guarded(
        map: Mapping,
        base: NonNull<u8>,
        len: u64,
        fd: OwnedFd,
        memory: ObjectMemory,
    ) -> Result<Segment, OpenError> {
        let guard = if memory.can_fault {
            // SAFETY: the range is mapped for as long as `map`, which the segment drops only
            // after the guard (field order); nothing accessed it yet (caller contract). The
            // rings reach it through raw pointers and atomics, and read the bytes of a message
            // in place as they read bytes a peer may rewrite at any time; they check
            // `poisoned` on their slow paths and whenever they find corruption (the contents
            // then count as garbage, as the guard's contract asks).
            match unsafe { sigbus::Guard::register(base.as_ptr(), len as usize) } {
                Ok(guard) => Some(guard),
                // Never map an object that can fault without the guard.
                Err(sigbus::Full) => {
                    return Err(OpenError::TooManyMappings {
                        limit: sigbus::CAPACITY,
                    });
                }
            }
        } else {
            None
        };
        Ok(Segment {
            guard,
            _map: map,
            base,
            fd,
            len,
            extent: len,
            writable: true,
            memory,
            name: None,
        })
    }

    /// Base of the mapping (page aligned).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes of the object that a ring in this segment may span: the object's size when it
    /// was mapped, or the length of a mapping another library made. A validated ring's
    /// `total_len` is at most this, and [`narrowed`](Segment::narrowed) to it.
    pub(crate) fn extent(&self) -> u64 {
        self.extent
    }

    /// The same mapping, knowing the name it was opened by.
    pub(crate) fn with_name(mut self, name: &str) -> Segment {
        self.name = Some(name.to_owned());
        self
    }

    /// The object's name, for named objects.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The object's file descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the object's pages were taken away under the mapping (it was truncated, or a
    /// hole was punched in a hugetlbfs object) and an access to them was survived: the whole
    /// mapping now reads zeros and its writes reach no one. Never goes back to `false`. A
    /// load that read such a zero is always followed by a call of this that returns `true`.
    pub(crate) fn poisoned(&self) -> bool {
        self.guard.as_ref().is_some_and(sigbus::Guard::poisoned)
    }
}

/// The size of the object behind `fd` (`fstat`).
fn object_size(fd: &OwnedFd) -> Result<u64, OpenError> {
    let st = rustix::fs::fstat(fd).map_err(|e| io_err("fstat", e))?;
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

/// `statfs` magic of hugetlbfs (`HUGETLBFS_MAGIC`).
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;
/// `statfs` magic of tmpfs, which memfds and named POSIX objects live on (`TMPFS_MAGIC`).
const TMPFS_MAGIC: u32 = 0x0102_1994;

/// How the object behind a descriptor maps, asked of it before it is mapped.
#[derive(Clone, Copy, Debug)]
struct ObjectMemory {
    /// The granule of its mappings: the huge page size on hugetlbfs, else the page size.
    /// Mappings are made in whole units, so that the kernel unmaps exactly what was mapped
    /// (a hugetlbfs mapping cannot be split inside a huge page), and the guard's replacement
    /// covers whole units.
    unit: u64,
    /// Whether an access can fault with `SIGBUS` because a peer took the page away: true
    /// for every object except a tmpfs memfd sealed against shrinking (`F_SEAL_SHRINK`).
    ///
    /// - Any object that is not sealed can be truncated (named POSIX objects report only
    ///   `F_SEAL_SEAL`: they cannot be sealed; objects that are not shmem fail with
    ///   `EINVAL`).
    /// - A hole punched in a hugetlbfs object (allowed under every seal but `F_SEAL_WRITE`,
    ///   which would forbid our own writes) returns its huge page to the pool; if another
    ///   process takes it, the next access finds no page to fault in.
    /// - A hole punched in a tmpfs memfd is filled with a fresh page on the next access; the
    ///   kernel fails that allocation with `SIGBUS` only when it refuses to overcommit
    ///   memory (`vm.overcommit_memory = 2`), which is then treated like hugetlbfs.
    can_fault: bool,
}

impl ObjectMemory {
    fn of(fd: BorrowedFd<'_>) -> ObjectMemory {
        let page = rustix::param::page_size() as u64;
        let fs = rustix::fs::fstatfs(fd).ok();
        // `f_type` is a signed or unsigned word of 32 or 64 bits, depending on the target;
        // the magics fit in 32.
        #[allow(clippy::unnecessary_cast)]
        let magic = fs.as_ref().map(|fs| fs.f_type as u32);
        let unit = match &fs {
            Some(fs) if magic == Some(HUGETLBFS_MAGIC) => u64::try_from(fs.f_bsize)
                .ok()
                .filter(|b| b.is_power_of_two() && *b >= page)
                .unwrap_or(page),
            _ => page,
        };
        let sealed =
            rustix::fs::fcntl_get_seals(fd).is_ok_and(|seals| seals.contains(SealFlags::SHRINK));
        ObjectMemory {
            unit,
            can_fault: can_fault(sealed, magic, strict_overcommit),
        }
    }

    /// Bytes to map for the first `len` bytes of the object: whole units.
    fn map_len(&self, len: u64) -> Result<u64, OpenError> {
        len.checked_next_multiple_of(self.unit)
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| OpenError::InvalidConfig(format!("{len} bytes do not fit in memory")))
    }
}

/// The rule of [`ObjectMemory::can_fault`], for an object that is (or is not) sealed against
/// shrinking, on the file system of `magic` (`None`: unknown); `strict_overcommit` is asked
/// only when the answer depends on it.
fn can_fault(sealed: bool, magic: Option<u32>, strict_overcommit: impl FnOnce() -> bool) -> bool {
    if mutant_no_guard() {
        return false;
    }
    if mutant_trusts_every_seal() {
        return !sealed;
    }
    let refilled = magic == Some(TMPFS_MAGIC) && !strict_overcommit();
    !(sealed && refilled)
}

/// Whether the kernel refuses to overcommit memory (`vm.overcommit_memory = 2`); a setting
/// that cannot be read counts as refusing.
fn strict_overcommit() -> bool {
    std::fs::read("/proc/sys/vm/overcommit_memory").map_or(true, |v| v.first() == Some(&b'2'))
}

/// The switch of the mutant check that shows the guard is what keeps truncation survivable.
fn mutant_no_guard() -> bool {
    cfg!(shmring_mutant = "no_sigbus_guard")
}

/// The switch of the mutant check that shows a seal alone does not keep pages in place
/// (hugetlbfs).
fn mutant_trusts_every_seal() -> bool {
    cfg!(shmring_mutant = "seal_means_unguarded")
}

/// The switch of the mutant check that shows openers must map the ring, not the object.
fn mutant_maps_whole_object() -> bool {
    cfg!(shmring_mutant = "map_whole_object")
}

/// What keeps a segment's memory mapped.
#[derive(Debug)]
enum Mapping {
    /// Our own mapping, unmapped on drop.
    Own(#[allow(dead_code)] MmapRaw),
    /// A mapping another library made (a `shared_memory::Shmem`), unmapped by it on drop.
    #[cfg(feature = "shared_memory")]
    Foreign(#[allow(dead_code)] super::foreign::Owner),
}

struct UnlinkOnError<'a>(&'a str);

impl Drop for UnlinkOnError<'_> {
    fn drop(&mut self) {
        let _ = shm::unlink(self.0);
    }
}

pub(crate) fn io_err(context: &'static str, e: Errno) -> OpenError {
    OpenError::Io {
        context,
        source: e.into(),
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: `base` points into `map`, which is owned by the segment and lives as long as it; the
// segment itself never dereferences it. Concurrent access to the mapped bytes is governed by
// the ring protocols, not by this type.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out the pointer and the fd.
unsafe impl Sync for Segment {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sealed_tmpfs_object_without_strict_overcommit_cannot_fault() {
        let lenient = || false;
        let strict = || true;
        assert!(!can_fault(true, Some(TMPFS_MAGIC), lenient));
        // A hole punched in it may find no page under strict overcommit.
        assert!(can_fault(true, Some(TMPFS_MAGIC), strict));
        // A hole punched in a hugetlbfs object may find no huge page, seals or not.
        assert!(can_fault(true, Some(HUGETLBFS_MAGIC), lenient));
        // Unknown file systems, and anything that can be shrunk.
        assert!(can_fault(true, None, lenient));
        assert!(can_fault(false, Some(TMPFS_MAGIC), lenient));
        assert!(can_fault(false, Some(HUGETLBFS_MAGIC), lenient));
    }

    #[test]
    fn hugetlbfs_mappings_are_whole_huge_pages() {
        let huge = ObjectMemory {
            unit: 2 << 20,
            can_fault: true,
        };
        assert_eq!(huge.map_len(HEADER_SIZE).unwrap(), 2 << 20);
        assert_eq!(huge.map_len((2 << 20) + 1).unwrap(), 4 << 20);
        assert!(huge.map_len(u64::MAX - 1).is_err());
    }
}
