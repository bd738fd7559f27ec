//! The ends of one ring object that live in this process, whatever mapping each uses: how
//! far each has really got, so that another end in this process never takes shared memory's
//! word beyond it.
//!
//! Two ends of one ring in one process (two threads that opened the same name, or a name
//! and a descriptor of it) map the object twice. A third process that rewrites the shared
//! indices or record headers could then make a safe API of this process hand out a
//! `&mut [u8]` (a producer's grant) and a `&[u8]` (a consumer's message) over the same
//! bytes. The ends cannot see each other's private state through the mapping, so they meet
//! here: a table keyed by the object's identity (device and inode; a memfd has an inode of
//! its own) and by the process's fork generation (a forked child starts a table of its own:
//! the copies of its parent's ends are not ends of the child), looked up once per handle,
//! holding each end's progress in this process's own memory, which no other process can
//! write.
//!
//! The table is behind a mutex: like every lock, a child forked by a multithreaded parent
//! while another thread held it would wait for ever on its first open (as for `malloc`'s
//! locks, only `exec` is safe in such a child).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::sync::shared::{AtomicU32, AtomicU64, Ordering};

/// What the ends of one ring in this process publish to each other.
#[derive(Debug, Default)]
pub(crate) struct LocalEnds {
    /// The producer: `at` is the index of what it published, `bound` the index up to which
    /// it may write (its cached view of the consumer's `head`, plus the capacity).
    pub(crate) producer: Progress,
    /// The consumer: `at` is the index of what it released, `bound` the index up to which it
    /// has read (the end of the record it last looked at).
    pub(crate) consumer: Progress,
}

/// No end of this role is here.
const ABSENT: u32 = 0;
/// An end is joining: its indices are being written.
const JOINING: u32 = 1;
/// An end is here, and its indices are its own.
const PRESENT: u32 = 2;

/// One end's progress, as indices of the ring (the end's own, never one read from shared
/// memory after the end attached).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    state: AtomicU32,
    at: AtomicU64,
    bound: AtomicU64,
}

impl Progress {
    /// The end attaches in this process at index `at` (with `bound`); `false` if an end of
    /// this role is already here (the shared endpoint table was forged to let a second one
    /// in), which is then left as it was.
    pub(crate) fn join(&self, at: u64, bound: u64) -> bool {
        if self
            .state
            .compare_exchange(ABSENT, JOINING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.at.store(at, Ordering::Relaxed);
        self.bound.store(bound, Ordering::Relaxed);
        // Release: a reader that sees the end here sees its indices too.
        self.state.store(PRESENT, Ordering::Release);
        true
    }

    /// The end is gone (closed or dropped): nothing of it is lent out any more.
    pub(crate) fn leave(&self) {
        self.state.store(ABSENT, Ordering::Release);
    }

    /// The end got to `at`. Stored before the end publishes the same index in shared memory,
    /// so that a reader that loaded the shared index (Acquire) and then this one finds this
    /// one at least as far.
    #[inline]
    pub(crate) fn advance(&self, at: u64) {
        self.at.store(at, Ordering::Release);
    }

    /// The end's other index moved to `bound`.
    #[inline]
    pub(crate) fn set_bound(&self, bound: u64) {
        self.bound.store(bound, Ordering::Release);
    }

    /// The end's index `at`, if it is here.
    #[inline]
    pub(crate) fn get(&self) -> Option<u64> {
        if self.state.load(Ordering::Acquire) != PRESENT {
            return None;
        }
        Some(self.at.load(Ordering::Acquire))
    }

    /// The end's `at` and `bound`, if it is here.
    pub(crate) fn both(&self) -> Option<(u64, u64)> {
        if self.state.load(Ordering::Acquire) != PRESENT {
            return None;
        }
        Some((
            self.at.load(Ordering::Acquire),
            self.bound.load(Ordering::Acquire),
        ))
    }
}

/// The [`LocalEnds`] of the object `fd` refers to in fork generation `generation`, shared by
/// every end of this process that asks for the same object.
pub(crate) fn ends_of(fd: BorrowedFd<'_>, generation: u32) -> io::Result<Arc<LocalEnds>> {
    type Table = Vec<((u64, u64, u32), Weak<LocalEnds>)>;
    static TABLE: Mutex<Table> = Mutex::new(Vec::new());
    let st = rustix::fs::fstat(fd)?;
    #[allow(clippy::useless_conversion)] // `st_dev` and `st_ino` are narrower on some targets
    let id = (u64::from(st.st_dev), u64::from(st.st_ino), generation);
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    // Entries of an older generation are a forked parent's: never ours.
    table.retain(|((_, _, g), w)| *g == generation && w.strong_count() > 0);
    if let Some(ends) = table
        .iter()
        .find(|(k, _)| *k == id)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(ends);
    }
    let ends = Arc::new(LocalEnds::default());
    table.push((id, Arc::downgrade(&ends)));
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn one_object_one_record_whatever_the_descriptor() {
        let a =
            rustix::fs::memfd_create("shmring-local-a", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let b =
            rustix::fs::memfd_create("shmring-local-b", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let a2 = rustix::io::dup(&a).unwrap();
        let ea = ends_of(a.as_fd(), 0).unwrap();
        let ea2 = ends_of(a2.as_fd(), 0).unwrap();
        let eb = ends_of(b.as_fd(), 0).unwrap();
        assert!(Arc::ptr_eq(&ea, &ea2));
        assert!(!Arc::ptr_eq(&ea, &eb));
        // Another fork generation (a forked child) has a record of its own.
        let child = ends_of(a.as_fd(), 1).unwrap();
        assert!(!Arc::ptr_eq(&ea, &child));
        assert_eq!(ea.producer.get(), None);
        assert!(ea.producer.join(40, 80));
        assert_eq!(ea2.producer.both(), Some((40, 80)));
        // A second producer is refused and changes nothing.
        assert!(!ea2.producer.join(0, 0), "a second producer joined");
        assert_eq!(ea.producer.both(), Some((40, 80)));
        ea.producer.leave();
        assert_eq!(ea.producer.get(), None);
        assert!(ea.producer.join(8, 16));
    }
}
