//! Liveness of endpoints from open-file-description locks (`F_OFD_SETLK` / `F_OFD_GETLK`).
//!
//! # Why locks
//!
//! An endpoint that is alive holds a write lock on one byte of the ring's object; the kernel
//! drops the lock when the endpoint's open file description goes away, which happens when its
//! process dies, however it dies (`SIGKILL` included). A peer asks the kernel whether the byte
//! is still locked. The answer needs no process id, so it is right where a pid is not: across
//! pid namespaces (two containers sharing `/dev/shm`, where the peer's pid is absent from our
//! `/proc` or names some other process), and for a process whose main thread has exited while
//! other threads still run (its `/proc/<pid>/stat` says `Z`, yet it is alive and holds its
//! files). A free byte is positive evidence that no holder is left; a held byte is evidence
//! that one is.
//!
//! Byte offsets are only names: a lock on a byte far beyond the object's size is fine, and the
//! locks are advisory, so they never get in the way of reading, writing or mapping the object.
//! A suggested layout keeps them apart from the data, at [`LOCK_BASE`] and up: the creation
//! byte ([`CREATION_BYTE`]) first, then one byte per endpoint ([`endpoint_byte`]).
//!
//! # Open file descriptions, not processes
//!
//! An OFD lock belongs to the *open file description* (what `open` creates), not to a process
//! or an fd number:
//!
//! - Locks of one description never conflict with each other, and [`probe`] through a
//!   description never reports that description's own locks (`F_OFD_GETLK` answers "would
//!   this description get the lock", so it says free). Locking a byte the description already
//!   holds succeeds again (it only converts the lock type). Probes must therefore go through a
//!   description that does not hold the lock being asked about.
//! - A second `open` of the same object is a different description: its locks conflict with
//!   ours. This is why an endpoint holds its lock on a description of its own ([`OwnLock`]
//!   opens one), and the ring's mapping fd, which takes no locks, can probe every endpoint.
//! - `dup`, `fork`, `SCM_RIGHTS` and `pidfd_getfd` share the description, and with it the
//!   lock. The lock is released when the *last* fd referring to the description is closed
//!   (or explicitly unlocked through any of them). Unlike classic POSIX record locks, closing
//!   some *other* fd of the same file in the same process releases nothing, so library code
//!   can use them safely.
//!
//! # fork, exec, threads
//!
//! - **fork**: the child inherits the fd and so shares the description: the endpoint looks
//!   alive while the parent *or* the child still holds it. A forked child that does not exec
//!   keeps the parent's endpoints looking alive after the parent died, until the child exits
//!   or closes the fd. [`OwnLock`] dropped in a forked child only closes its copy of the fd
//!   (it never unlocks: that would release the parent's lock), as the ring handles in a forked
//!   child leave the parent's endpoints alone. A fork by *any* thread (another library's
//!   `Command::spawn` between its fork and its exec, say) shares every description open at
//!   that moment, so a bare close may leave a lock held for a while; [`OwnLock`] therefore
//!   unlocks explicitly when dropped in the process that took it, which no copy delays.
//!   "The process that took it" is decided by pid, as for the ring handles: a child forked
//!   into a new pid namespace by a process that is pid 1 of its own would pass for it.
//! - **exec**: the description is opened `O_CLOEXEC`, so an exec closes the child's copy and
//!   the lock depends on the parent alone again.
//! - **threads**: all threads share the fd table, so the lock belongs to the whole process.
//!   A thread exiting releases nothing, the main thread included: the lock goes when the
//!   process's last thread exits. It goes at exit, not at reaping: a zombie holds no files.
//!
//! # Namespaces and file systems
//!
//! Locks live on the inode. Pid, user and network namespaces play no part (`F_OFD_GETLK`
//! reports `l_pid == -1`, never a pid); two processes see each other's locks whenever they
//! open the same inode, e.g. a `/dev/shm` shared by bind mount. `/dev/shm` objects and
//! memfds are tmpfs/shmem inodes whose locks are local to the kernel; the caveats of locks on
//! network file systems (NFS lock recovery, lost locks) do not arise.
//!
//! # Opening a description of our own
//!
//! [`reopen`] opens `/proc/self/fd/<n>` with `O_RDWR | O_CLOEXEC`, which works for named
//! objects and memfds alike, and checks that the result is the same inode (device and inode
//! number). `/proc/self` fails (`ENOENT`) in a process whose `/proc` belongs to a pid
//! namespace it is not in, e.g. after `nsenter --mount` into a container without `--pid`, and
//! when no `/proc` is mounted. A named object then falls back to opening
//! `/dev/shm/<name>` with `O_NOFOLLOW` and the same inode check (a name that now refers to
//! another object is refused). A memfd has no name: in such a process an endpoint of a memfd
//! ring cannot get a description of its own, and attaching fails (the limitation; nothing
//! else creates a new description from an fd). Opening needs write permission on the
//! object, as the first open did.
//!
//! # The creation lock
//!
//! A creator holds a write lock on [`CREATION_BYTE`] while it initialises the object, so that
//! an opener can tell "being created" (held) from "left half-made by a dead creator" (free)
//! without waiting. The window between `open(O_CREAT | O_EXCL)` and taking the lock cannot be
//! closed, but it can be recognised: the creator takes the lock *before* `ftruncate`, so
//!
//! - size 0 and the byte free: a creator in that short window, or one that died in it; the
//!   opener retries for a short grace period before calling the object garbage;
//! - size > 0, the byte free and the header not valid: the creator died while initialising,
//!   garbage at once (it set the size only while holding the lock, and it releases the lock
//!   only after the header is valid);
//! - the byte held: being created; wait and retry.
//!
//! The creator can take the creation lock on its endpoint's own description
//! ([`OwnLock::fd`]) and [`unlock`] it when the header is published.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// First byte offset used for locks; far beyond any object's contents (locks beyond the end
/// of a file are allowed), below `i64::MAX` so every offset fits `off_t`.
pub(crate) const LOCK_BASE: u64 = 1 << 40;

/// The byte a creator holds while it initialises the object.
pub(crate) const CREATION_BYTE: u64 = LOCK_BASE;

/// The byte the endpoint at `index` of the endpoint table holds for the life of its handle.
pub(crate) const fn endpoint_byte(index: u32) -> u64 {
    LOCK_BASE + 1 + index as u64
}

/// Type of lock to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// Shared: compatible with other read locks (needs a description open for reading).
    #[cfg_attr(not(test), allow(dead_code))] // the rings take write locks only
    Read,
    /// Exclusive (needs a description open for writing).
    Write,
}

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockState {
    /// No other description holds a lock there.
    Free,
    /// Another description holds a (read or write) lock there.
    Held,
}

// The kernel takes OFD commands with a 64-bit `struct flock64` only: on 64-bit targets that is
// `struct flock` through `fcntl`; on these 32-bit targets only the `fcntl64` system call
// accepts them (its `fcntl` fails them with EINVAL, which is what C libraries before glibc
// 2.28 called), so the call bypasses the C library there.
#[cfg(all(
    target_pointer_width = "32",
    any(
        target_arch = "x86",
        target_arch = "arm",
        target_arch = "mips",
        target_arch = "powerpc",
        target_arch = "sparc",
        target_arch = "m68k"
    )
))]
mod sys {
    pub(super) type Flock = libc::flock64;
    pub(super) type Off = libc::off64_t;

    /// `fcntl64(fd, cmd, fl)`.
    pub(super) fn fcntl_lock(fd: libc::c_int, cmd: libc::c_int, fl: &mut Flock) -> libc::c_long {
        // SAFETY: `fcntl64` with a lock command reads and writes one `struct flock64`, which
        // `fl` points to and which lives for the call; a bad `fd` only makes it fail.
        unsafe { libc::syscall(libc::SYS_fcntl64, fd, cmd, fl as *mut Flock) }
    }
}

#[cfg(not(all(
    target_pointer_width = "32",
    any(
        target_arch = "x86",
        target_arch = "arm",
        target_arch = "mips",
        target_arch = "powerpc",
        target_arch = "sparc",
        target_arch = "m68k"
    )
)))]
mod sys {
    pub(super) type Flock = libc::flock;
    pub(super) type Off = libc::off_t;

    /// `fcntl(fd, cmd, fl)`.
    pub(super) fn fcntl_lock(fd: libc::c_int, cmd: libc::c_int, fl: &mut Flock) -> libc::c_long {
        // SAFETY: `fcntl` with a lock command reads and writes one `struct flock`, which `fl`
        // points to and which lives for the call; a bad `fd` only makes it fail.
        libc::c_long::from(unsafe { libc::fcntl(fd, cmd, fl as *mut Flock) })
    }
}

/// A `struct flock` for `[start, start + len)` (`len > 0`), with `l_pid == 0` as OFD commands
/// require.
fn flock(l_type: libc::c_int, start: u64, len: u64) -> io::Result<sys::Flock> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "lock range out of range");
    let end = start.checked_add(len).ok_or_else(bad)?;
    if len == 0 || sys::Off::try_from(end).is_err() {
        return Err(bad());
    }
    // SAFETY: `struct flock` is plain integers (and padding on some targets), for which all
    // zeroes is a valid value.
    let mut fl: sys::Flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as sys::Off;
    fl.l_len = len as sys::Off;
    Ok(fl)
}

/// Runs an OFD lock command, retrying on `EINTR`.
fn ofd(fd: BorrowedFd<'_>, cmd: libc::c_int, fl: &mut sys::Flock) -> io::Result<()> {
    loop {
        if sys::fcntl_lock(fd.as_raw_fd(), cmd, fl) != -1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Tries to lock `byte` for the description behind `fd` without waiting (`F_OFD_SETLK`).
/// `Ok(false)`: another description holds a conflicting lock. Succeeds if this description
/// already holds the byte (the lock is converted to `kind`).
pub(crate) fn try_lock(fd: BorrowedFd<'_>, byte: u64, kind: LockKind) -> io::Result<bool> {
    let l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
    };
    let mut fl = flock(l_type, byte, 1)?;
    match ofd(fd, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases this description's lock on `byte` (nothing happens if it holds none).
pub(crate) fn unlock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let mut fl = flock(libc::F_UNLCK, byte, 1)?;
    ofd(fd, libc::F_OFD_SETLK, &mut fl)
}

/// Whether a description other than the one behind `fd` holds a lock on `byte`
/// (`F_OFD_GETLK` asking for a write lock). Works on a description open read-only too. Makes
/// no heap allocation.
pub(crate) fn probe(fd: BorrowedFd<'_>, byte: u64) -> io::Result<LockState> {
    Ok(match probe_range(fd, byte, 1)? {
        None => LockState::Free,
        Some(_) => LockState::Held,
    })
}

/// Whether any byte of `[start, start + len)` is locked by a description other than the one
/// behind `fd`, in one system call. Returns the part of `[start, start + len)` covered by one
/// such lock (the kernel reports one conflicting lock, not necessarily the lowest), as
/// `(first, end)`.
pub(crate) fn probe_range(
    fd: BorrowedFd<'_>,
    start: u64,
    len: u64,
) -> io::Result<Option<(u64, u64)>> {
    let mut fl = flock(libc::F_WRLCK, start, len)?;
    ofd(fd, libc::F_OFD_GETLK, &mut fl)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    let end = start + len;
    // The reported lock conflicts with the request, so it overlaps it; `l_len == 0` means "to
    // the end of all offsets".
    let lock_start = u64::try_from(fl.l_start).unwrap_or(0);
    let lock_end = match u64::try_from(fl.l_len) {
        Ok(0) | Err(_) => u64::MAX,
        Ok(l) => lock_start.saturating_add(l),
    };
    let first = lock_start.max(start);
    let last = lock_end.min(end);
    if first >= last {
        // Not expected from the kernel; report the whole request as held rather than free.
        return Ok(Some((start, end)));
    }
    Ok(Some((first, last)))
}

/// Which of the `n <= 64` bytes `start..start + n` are locked by descriptions other than the
/// one behind `fd`: bit `i` stands for byte `start + i`. Costs one `F_OFD_GETLK` per lock
/// found plus one per free gap between them, at most `2k + 1` calls for `k` locks in the
/// window: cheaper than probing each byte when few are held, dearer when most are. Makes no
/// heap allocation.
#[cfg_attr(not(test), allow(dead_code))] // for scans of many entries; the rings probe one by one
pub(crate) fn held_mask(fd: BorrowedFd<'_>, start: u64, n: u32) -> io::Result<u64> {
    if n > 64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more than 64 bytes",
        ));
    }
    let end = start
        .checked_add(u64::from(n))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "lock range out of range"))?;
    let mut mask = 0u64;
    // Ranges still to probe; they are disjoint and non-empty, so at most 64 at a time.
    let mut todo = [(0u64, 0u64); 64];
    let mut len = 0;
    if n > 0 {
        todo[0] = (start, end);
        len = 1;
    }
    while len > 0 {
        len -= 1;
        let (a, b) = todo[len];
        let Some((s, e)) = probe_range(fd, a, b - a)? else {
            continue;
        };
        for byte in s..e {
            mask |= 1 << (byte - start);
        }
        for part in [(a, s), (e, b)] {
            if part.0 < part.1 {
                todo[len] = part;
                len += 1;
            }
        }
    }
    Ok(mask)
}

/// `/dev/shm/<name>` for a POSIX shm name (as `shm_open` maps it), or `None` if the name is
/// not one.
fn shm_path(name: &str) -> Option<String> {
    let rest = name.trim_start_matches('/');
    if rest.is_empty() || rest == "." || rest == ".." || rest.contains('/') || name.len() > 255 {
        return None;
    }
    Some(format!("/dev/shm/{rest}"))
}

/// Whether `a` and `b` refer to the same inode.
fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    let sa = rustix::fs::fstat(a)?;
    let sb = rustix::fs::fstat(b)?;
    Ok(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
}

/// Opens `path` read-write and checks it is the inode behind `object`.
fn open_same(object: BorrowedFd<'_>, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(path, flags | OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    if !same_inode(object, fd.as_fd())? {
        return Err(io::Error::other(format!(
            "{path} is not the object behind the given fd"
        )));
    }
    Ok(fd)
}

/// Opens a new open file description (read-write, close-on-exec) for the object behind
/// `object`: through `/proc/self/fd/<n>`, or if that fails and `shm_name` is given, through
/// `/dev/shm/<name>` without following symbolic links. Either way the result is checked to be
/// the same inode.
pub(crate) fn reopen(object: BorrowedFd<'_>, shm_name: Option<&str>) -> io::Result<OwnedFd> {
    reopen_with(object, true, shm_name)
}

fn reopen_with(
    object: BorrowedFd<'_>,
    use_proc: bool,
    shm_name: Option<&str>,
) -> io::Result<OwnedFd> {
    let proc_err = if use_proc {
        let path = format!("/proc/self/fd/{}", object.as_raw_fd());
        match open_same(object, &path, OFlags::empty()) {
            Ok(fd) => return Ok(fd),
            Err(e) => io::Error::new(e.kind(), format!("reopening through {path}: {e}")),
        }
    } else {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "reopening through /proc not tried",
        )
    };
    let Some(name) = shm_name else {
        return Err(proc_err);
    };
    let Some(path) = shm_path(name) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a shm name ({proc_err})"),
        ));
    };
    open_same(object, &path, OFlags::NOFOLLOW).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reopening through {path}: {e} ({proc_err})"),
        )
    })
}

/// An endpoint's liveness lock: a write lock on one byte, held on an open file description of
/// its own for as long as this value lives.
///
/// Dropping it in the process that took it unlocks the byte and closes the description.
/// Dropping a copy inherited by a forked child only closes the child's fd: the description,
/// and the lock, stay with the parent (see the module docs).
#[derive(Debug)]
pub(crate) struct OwnLock {
    fd: OwnedFd,
    byte: u64,
    owner_pid: u32,
}

impl OwnLock {
    /// Opens a description of its own for the object behind `object` (see [`reopen`]) and
    /// write-locks `byte` on it. `Ok(None)`: another description holds the byte.
    #[cfg_attr(not(test), allow(dead_code))] // endpoints reopen through `reopen` + `on`
    pub(crate) fn acquire(
        object: BorrowedFd<'_>,
        byte: u64,
        shm_name: Option<&str>,
    ) -> io::Result<Option<OwnLock>> {
        let fd = reopen(object, shm_name)?;
        Self::on(fd, byte)
    }

    /// Write-locks `byte` on the given description, which must be this endpoint's own.
    pub(crate) fn on(fd: OwnedFd, byte: u64) -> io::Result<Option<OwnLock>> {
        if !try_lock(fd.as_fd(), byte, LockKind::Write)? {
            return Ok(None);
        }
        Ok(Some(OwnLock {
            fd,
            byte,
            owner_pid: std::process::id(),
        }))
    }

    /// Takes ownership of a description on which this process has just write-locked `byte`.
    pub(crate) fn adopt(fd: OwnedFd, byte: u64) -> OwnLock {
        OwnLock {
            fd,
            byte,
            owner_pid: std::process::id(),
        }
    }

    /// The endpoint's own description (e.g. to hold the creation lock on it too). Probing
    /// through it does not see its own locks.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for OwnLock {
    fn drop(&mut self) {
        if std::process::id() == self.owner_pid {
            // Unlock even if a forked child still shares the description, so the byte is free
            // for a new endpoint at once. Closing (below) would release it anyway otherwise.
            let _ = unlock(self.fd.as_fd(), self.byte);
        }
        // The `OwnedFd` closes the description (our reference to it) after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn memfd() -> OwnedFd {
        let fd = rustix::fs::memfd_create("ofd-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        fd
    }

    /// A named object, unlinked on drop (also when the test fails).
    struct ShmName(String);

    impl ShmName {
        fn create(tag: &str) -> (ShmName, OwnedFd) {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "/shmring-ofd-unit-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let fd = rustix::shm::open(
                name.as_str(),
                rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
                Mode::from_bits_truncate(0o600),
            )
            .unwrap();
            (ShmName(name), fd)
        }
    }

    impl Drop for ShmName {
        fn drop(&mut self) {
            let _ = rustix::shm::unlink(self.0.as_str());
        }
    }

    /// Waits (up to 2 s) until `byte` is free. After a bare *close*, a fork by another test's
    /// thread (e.g. `Command::spawn` before its exec) can share the description for a moment;
    /// an explicit unlock does not depend on that.
    fn wait_free(fd: BorrowedFd<'_>, byte: u64) -> bool {
        let t = std::time::Instant::now();
        while probe(fd, byte).unwrap() == LockState::Held {
            if t.elapsed() > std::time::Duration::from_secs(2) {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn ofd_held_for_others_free_for_own_description() {
        for fd in [memfd(), ShmName::create("held").1] {
            let byte = endpoint_byte(3);
            let own = OwnLock::acquire(fd.as_fd(), byte, None).unwrap().unwrap();
            // The original description (the "mapping fd") sees the lock ...
            assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Held);
            assert!(!try_lock(fd.as_fd(), byte, LockKind::Write).unwrap());
            assert!(!try_lock(fd.as_fd(), byte, LockKind::Read).unwrap());
            // ... the holder's own description does not: own locks never conflict.
            assert_eq!(probe(own.fd(), byte).unwrap(), LockState::Free);
            assert!(try_lock(own.fd(), byte, LockKind::Write).unwrap());
            // Neighbouring bytes are free.
            assert_eq!(probe(fd.as_fd(), byte - 1).unwrap(), LockState::Free);
            assert_eq!(probe(fd.as_fd(), byte + 1).unwrap(), LockState::Free);
            // A third description sees it too, and acquiring the byte again fails.
            assert!(OwnLock::acquire(fd.as_fd(), byte, None).unwrap().is_none());
            drop(own);
            assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Free);
            assert!(OwnLock::acquire(fd.as_fd(), byte, None).unwrap().is_some());
        }
    }

    #[test]
    fn ofd_free_after_drop_and_after_close() {
        let fd = memfd();
        let byte = endpoint_byte(0);
        let own = OwnLock::acquire(fd.as_fd(), byte, None).unwrap().unwrap();
        drop(own);
        assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Free);

        // Without an explicit unlock, closing the last fd of the description releases it.
        let other = reopen(fd.as_fd(), None).unwrap();
        assert!(try_lock(other.as_fd(), byte, LockKind::Write).unwrap());
        let dup = other.try_clone().unwrap();
        drop(other);
        // A dup still refers to the description: still held.
        assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Held);
        drop(dup);
        assert!(wait_free(fd.as_fd(), byte));
    }

    #[test]
    fn ofd_closing_another_description_keeps_the_lock() {
        // Classic POSIX locks die when the process closes *any* fd of the file; OFD locks
        // do not.
        let fd = memfd();
        let own = OwnLock::acquire(fd.as_fd(), CREATION_BYTE, None)
            .unwrap()
            .unwrap();
        let unrelated = reopen(fd.as_fd(), None).unwrap();
        drop(unrelated);
        assert_eq!(probe(fd.as_fd(), CREATION_BYTE).unwrap(), LockState::Held);
        drop(own);
    }

    #[test]
    fn ofd_race_on_one_byte_has_exactly_one_winner() {
        const THREADS: usize = 4;
        let fd = memfd();
        for round in 0..200u32 {
            let byte = endpoint_byte(round % 64);
            let descs: Vec<OwnedFd> = (0..THREADS)
                .map(|_| reopen(fd.as_fd(), None).unwrap())
                .collect();
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = descs
                .into_iter()
                .map(|d| {
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        let won = try_lock(d.as_fd(), byte, LockKind::Write).unwrap();
                        (won, d)
                    })
                })
                .collect();
            // Keep every description open until all have tried.
            let results: Vec<(bool, OwnedFd)> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners = results.iter().filter(|(won, _)| *won).count();
            assert_eq!(winners, 1, "round {round}");
            assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Held);
            for (won, d) in &results {
                if *won {
                    unlock(d.as_fd(), byte).unwrap();
                }
            }
            assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Free);
            drop(results);
        }
    }

    #[test]
    fn ofd_probe_works_read_only_and_sees_read_locks() {
        let fd = memfd();
        let ro = rustix::fs::open(
            format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let byte = endpoint_byte(7);
        // A write lock needs a description open for writing.
        let e = try_lock(ro.as_fd(), byte, LockKind::Write).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // A read lock on the read-only description, and read locks are shared.
        assert!(try_lock(ro.as_fd(), byte, LockKind::Read).unwrap());
        let other = reopen(fd.as_fd(), None).unwrap();
        assert!(try_lock(other.as_fd(), byte, LockKind::Read).unwrap());
        assert!(!try_lock(fd.as_fd(), byte, LockKind::Write).unwrap());
        // The probe (a write request) sees read locks as held.
        assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Held);
        unlock(other.as_fd(), byte).unwrap();
        unlock(ro.as_fd(), byte).unwrap();
        // A read-only description can probe.
        let own = OwnLock::acquire(fd.as_fd(), byte, None).unwrap().unwrap();
        assert_eq!(probe(ro.as_fd(), byte).unwrap(), LockState::Held);
        drop(own);
        assert_eq!(probe(ro.as_fd(), byte).unwrap(), LockState::Free);
    }

    #[test]
    fn ofd_range_probe_and_mask() {
        let fd = memfd();
        let base = endpoint_byte(0);
        assert_eq!(probe_range(fd.as_fd(), base, 64).unwrap(), None);
        assert_eq!(held_mask(fd.as_fd(), base, 64).unwrap(), 0);
        let indexes = [0u32, 1, 2, 9, 31, 32, 62, 63];
        let locks: Vec<OwnLock> = indexes
            .iter()
            .map(|&i| {
                OwnLock::acquire(fd.as_fd(), endpoint_byte(i), None)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let expected = indexes.iter().fold(0u64, |m, &i| m | 1 << i);
        assert_eq!(held_mask(fd.as_fd(), base, 64).unwrap(), expected);
        // Sub-windows.
        assert_eq!(held_mask(fd.as_fd(), base + 3, 6).unwrap(), 0);
        assert_eq!(held_mask(fd.as_fd(), base + 2, 8).unwrap(), 1 | 1 << 7);
        let (s, e) = probe_range(fd.as_fd(), base + 3, 10).unwrap().unwrap();
        assert_eq!((s, e), (endpoint_byte(9), endpoint_byte(9) + 1));
        assert_eq!(probe_range(fd.as_fd(), base + 10, 21).unwrap(), None);
        // One lock spanning several bytes is reported clipped to the request.
        let wide = reopen(fd.as_fd(), None).unwrap();
        let mut fl = flock(libc::F_WRLCK, base + 10, 5).unwrap();
        ofd(wide.as_fd(), libc::F_OFD_SETLK, &mut fl).unwrap();
        assert_eq!(
            probe_range(fd.as_fd(), base + 12, 10).unwrap(),
            Some((base + 12, base + 15))
        );
        assert_eq!(
            held_mask(fd.as_fd(), base, 64).unwrap(),
            expected | 0b11111 << 10
        );
        // The holder of some of the locks does not see its own.
        assert_eq!(
            held_mask(locks[0].fd(), base, 64).unwrap(),
            (expected & !1) | 0b11111 << 10
        );
        drop(locks);
        let mut fl = flock(libc::F_UNLCK, base + 10, 5).unwrap();
        ofd(wide.as_fd(), libc::F_OFD_SETLK, &mut fl).unwrap();
        assert_eq!(held_mask(fd.as_fd(), base, 64).unwrap(), 0);
    }

    #[test]
    fn ofd_rejects_offsets_beyond_off_t() {
        let fd = memfd();
        for byte in [i64::MAX as u64, u64::MAX] {
            let e = probe(fd.as_fd(), byte).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            let e = try_lock(fd.as_fd(), byte, LockKind::Write).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        assert!(held_mask(fd.as_fd(), 0, 65).is_err());
        // The largest lockable byte works, far beyond the object's size.
        let top = i64::MAX as u64 - 1;
        let own = OwnLock::acquire(fd.as_fd(), top, None).unwrap().unwrap();
        assert_eq!(probe(fd.as_fd(), top).unwrap(), LockState::Held);
        drop(own);
    }

    #[test]
    fn ofd_reopen_by_name_checks_the_inode() {
        let (name, fd) = ShmName::create("byname");
        let byte = endpoint_byte(1);
        // The fallback path alone.
        let by_name = reopen_with(fd.as_fd(), false, Some(&name.0)).unwrap();
        let own = OwnLock::on(by_name, byte).unwrap().unwrap();
        assert_eq!(probe(fd.as_fd(), byte).unwrap(), LockState::Held);
        drop(own);
        // A memfd has no name to fall back to.
        let m = memfd();
        assert!(reopen_with(m.as_fd(), false, None).is_err());
        // A name that now refers to another object is refused.
        rustix::shm::unlink(name.0.as_str()).unwrap();
        let replacement = rustix::shm::open(
            name.0.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = reopen_with(fd.as_fd(), false, Some(&name.0)).unwrap_err();
        assert!(e.to_string().contains("not the object"), "{e}");
        // /proc/self/fd still reaches the unlinked original.
        let again = reopen(fd.as_fd(), Some(&name.0)).unwrap();
        assert!(same_inode(again.as_fd(), fd.as_fd()).unwrap());
        assert!(!same_inode(again.as_fd(), replacement.as_fd()).unwrap());
        // A symbolic link in place of the name is not followed.
        let link = ShmName(format!("{}-link", name.0));
        std::os::unix::fs::symlink(shm_path(&name.0).unwrap(), shm_path(&link.0).unwrap()).unwrap();
        let link_path = shm_path(&link.0).unwrap();
        let e = open_same(replacement.as_fd(), &link_path, OFlags::NOFOLLOW).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(reopen_with(replacement.as_fd(), false, Some(&link.0)).is_err());
        assert!(shm_path("/a/b").is_none() && shm_path("/..").is_none());
    }

    #[test]
    fn ofd_creation_lock_protocol() {
        let (_name, creator_fd) = ShmName::create("create");
        let opener = reopen(creator_fd.as_fd(), None).unwrap();
        // The creator's endpoint description takes the creation byte before sizing.
        let own = OwnLock::acquire(creator_fd.as_fd(), endpoint_byte(0), None)
            .unwrap()
            .unwrap();
        assert!(try_lock(own.fd(), CREATION_BYTE, LockKind::Write).unwrap());
        rustix::fs::ftruncate(&creator_fd, 4096).unwrap();
        // The opener sees "being created" at once.
        assert_eq!(
            probe(opener.as_fd(), CREATION_BYTE).unwrap(),
            LockState::Held
        );
        // Published: the creation byte is released, the endpoint's byte stays held.
        unlock(own.fd(), CREATION_BYTE).unwrap();
        assert_eq!(
            probe(opener.as_fd(), CREATION_BYTE).unwrap(),
            LockState::Free
        );
        assert_eq!(
            probe(opener.as_fd(), endpoint_byte(0)).unwrap(),
            LockState::Held
        );
        // A creator that dies while initialising: its description closes, both bytes free.
        let dying = reopen(creator_fd.as_fd(), None).unwrap();
        assert!(try_lock(dying.as_fd(), CREATION_BYTE, LockKind::Write).unwrap());
        assert_eq!(
            probe(opener.as_fd(), CREATION_BYTE).unwrap(),
            LockState::Held
        );
        drop(dying);
        assert!(wait_free(opener.as_fd(), CREATION_BYTE));
        drop(own);
        assert_eq!(held_mask(opener.as_fd(), LOCK_BASE, 64).unwrap(), 0);
    }

    #[test]
    fn ofd_probe_cost() {
        // Not a benchmark; prints the order of magnitude for the integration notes.
        let fd = memfd();
        let locks: Vec<OwnLock> = (0..64)
            .map(|i| {
                OwnLock::acquire(fd.as_fd(), endpoint_byte(i), None)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let t = std::time::Instant::now();
        let mut held = 0;
        for _ in 0..100 {
            for i in 0..64 {
                held +=
                    usize::from(probe(fd.as_fd(), endpoint_byte(i)).unwrap() == LockState::Held);
            }
        }
        let per_probe = t.elapsed() / 6400;
        assert_eq!(held, 6400);
        let t = std::time::Instant::now();
        assert!(
            probe_range(fd.as_fd(), endpoint_byte(0), 64)
                .unwrap()
                .is_some()
        );
        let range = t.elapsed();
        println!("probe with 64 locks on the inode: {per_probe:?} each; range probe: {range:?}");
        drop(locks);
    }
}
