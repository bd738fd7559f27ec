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
//! its own), looked up once per handle, holding each end's progress in this process's own
//! memory, which no other process can write.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::sync::shared::{AtomicBool, AtomicU64, Ordering};

/// What the ends of one ring in this process publish to each other.
#[derive(Debug, Default)]
pub(crate) struct LocalEnds {
    /// The producer's index of what it published.
    pub(crate) producer: Progress,
    /// The consumer's index of what it released.
    pub(crate) consumer: Progress,
}

/// One end's progress, as an index of the ring (the end's own, never one read from shared
/// memory after the end attached).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    here: AtomicBool,
    at: AtomicU64,
}

impl Progress {
    /// The end attaches in this process at index `at`; `false` if an end of this role is
    /// already here (the shared endpoint table was forged to let a second one in).
    pub(crate) fn join(&self, at: u64) -> bool {
        self.at.store(at, Ordering::Relaxed);
        // Release: a reader that sees the end here sees its index too.
        !self.here.swap(true, Ordering::AcqRel)
    }

    /// The end is gone (closed or dropped): nothing of it is lent out any more.
    pub(crate) fn leave(&self) {
        self.here.store(false, Ordering::Release);
    }

    /// The end got to `at`. Stored before the end publishes the same index in shared memory,
    /// so that a reader that loaded the shared index (Acquire) and then this one finds this
    /// one at least as far.
    #[inline]
    pub(crate) fn advance(&self, at: u64) {
        self.at.store(at, Ordering::Release);
    }

    /// The end's index, if it is in this process.
    #[inline]
    pub(crate) fn get(&self) -> Option<u64> {
        if !self.here.load(Ordering::Acquire) {
            return None;
        }
        Some(self.at.load(Ordering::Acquire))
    }
}

/// The [`LocalEnds`] of the object `fd` refers to, shared by every end of this process that
/// asks for the same object.
pub(crate) fn ends_of(fd: BorrowedFd<'_>) -> io::Result<Arc<LocalEnds>> {
    type Table = Vec<((u64, u64), Weak<LocalEnds>)>;
    static TABLE: Mutex<Table> = Mutex::new(Vec::new());
    let st = rustix::fs::fstat(fd)?;
    let id = (st.st_dev, st.st_ino);
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    table.retain(|(_, w)| w.strong_count() > 0);
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
    use super::*;

    #[test]
    fn one_object_one_record_whatever_the_descriptor() {
        let a =
            rustix::fs::memfd_create("shmring-local-a", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let b =
            rustix::fs::memfd_create("shmring-local-b", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let a2 = rustix::io::dup(&a).unwrap();
        let ea = ends_of(a.as_fd()).unwrap();
        let ea2 = ends_of(a2.as_fd()).unwrap();
        let eb = ends_of(b.as_fd()).unwrap();
        assert!(Arc::ptr_eq(&ea, &ea2));
        assert!(!Arc::ptr_eq(&ea, &eb));
        assert_eq!(ea.producer.get(), None);
        assert!(ea.producer.join(40));
        assert_eq!(ea2.producer.get(), Some(40));
        assert!(!ea2.producer.join(0), "a second producer joined");
        ea.producer.leave();
        assert_eq!(ea.producer.get(), None);
    }

    use std::os::fd::AsFd;
}
