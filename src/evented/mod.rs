//! Event loops: a readiness file descriptor per ring end, and (feature `tokio`) async
//! handles built on it.
//!
//! A ring end normally waits by blocking its thread on a futex. A program built on an event
//! loop (epoll, mio, tokio, io_uring) instead asks the end for a [`Readiness`]: a descriptor
//! that becomes readable when the ring has something for that end — a message for a
//! consumer or receiver, room for a producer or sender, and for either, the other side closing.
//! The notifier enters the kernel only for an end that announced it is parked (see
//! [`Readiness::arm`]); while both sides are busy no system call is made per message. How the
//! descriptor works and why is in the docs of the doorbell (`src/sync/doorbell.rs`): for a
//! shared ring it is an inotify instance watching the ring's object, which the notifier
//! "rings" by writing one reserved byte of it; for a heap ring (`channel()`) an eventfd.
//!
//! # The loop
//!
//! ```
//! use std::time::Duration;
//! use shmring::{spsc, TryRecvError};
//!
//! let (mut tx, mut rx) = spsc::channel(&spsc::Config::default())?;
//! let mut ready = rx.readiness()?;          // register `ready.as_fd()` with epoll / mio
//! std::thread::spawn(move || tx.send(b"hello").unwrap());
//! let msg = loop {
//!     match rx.try_recv() {
//!         Ok(msg) => break msg.to_vec(),
//!         Err(TryRecvError::Empty) => {
//!             if ready.arm() {
//!                 continue;                  // just announced: look once more first
//!             }
//!             // epoll_wait / poll on ready.as_fd(), with a timeout of at most
//!             // `Readiness::LIVENESS_INTERVAL` so that a peer that died is noticed
//!             ready.wait(Some(Readiness::LIVENESS_INTERVAL));
//!             ready.clear();
//!         }
//!         Err(e) => panic!("{e}"),
//!     }
//! };
//! ready.disarm();                            // busy again: the sender stops ringing
//! assert_eq!(msg, b"hello");
//! # use shmring::evented::Readiness;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A peer that dies (SIGKILL) rings nothing: the end's non-blocking calls notice it (they
//! look at the peer's liveness at most every 100 ms), so a parked end must call them at least
//! every [`Readiness::LIVENESS_INTERVAL`]. Wake-ups may be spurious (the other direction of the
//! same ring rings the same doorbell): always look at the ring again.

use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::time::Duration;

use crate::storage::{BellSource, Storage};
use crate::sync::doorbell::{LIVENESS_TICK, Signal};
use crate::sync::waiter::EventCount;

#[cfg(all(feature = "tokio", not(loom)))]
mod hub;
#[cfg(all(feature = "tokio", not(loom)))]
mod io_async;
#[cfg(all(feature = "tokio", not(loom)))]
mod mpmc;
#[cfg(all(feature = "tokio", not(loom)))]
mod park;
#[cfg(all(feature = "tokio", not(loom)))]
mod spsc;

#[cfg(all(feature = "tokio", not(loom)))]
#[cfg(all(feature = "tokio", not(loom)))]
pub use io_async::{AsyncByteReader, AsyncRecvEnd};
#[cfg(all(feature = "tokio", not(loom)))]
pub use mpmc::{AsyncReceiver, AsyncSender};
#[cfg(all(feature = "tokio", not(loom)))]
pub use spsc::{AsyncConsumer, AsyncProducer};

/// An end's announcement that it is parked on one of the ring's wait channels (the ring's
/// `readable` or `writable` eventcount), made and withdrawn by the parked end.
pub(crate) struct Announcement {
    /// Keeps the ring's memory (and so `channel`) alive.
    #[cfg_attr(any(loom, not(feature = "tokio")), allow(dead_code))]
    storage: Storage,
    channel: NonNull<EventCount>,
    armed: bool,
    /// What the heavy barrier of the last `arm` reported (see `is_covered`).
    covered: bool,
}

// SAFETY: `channel` points into memory that `storage` (an Arc) keeps alive and in place; it is
// only used for atomic operations, from any thread.
unsafe impl Send for Announcement {}
// SAFETY: as above; `&Announcement` only reads `armed`.
unsafe impl Sync for Announcement {}

impl Announcement {
    /// `channel` must lie in memory that `storage` keeps alive.
    pub(crate) fn new(storage: Storage, channel: &EventCount) -> Announcement {
        Announcement {
            storage,
            channel: NonNull::from(channel),
            armed: false,
            covered: true,
        }
    }

    fn channel(&self) -> &EventCount {
        // SAFETY: `channel` lies in the ring's memory, which `self.storage` keeps alive.
        unsafe { self.channel.as_ref() }
    }

    #[cfg_attr(any(loom, not(feature = "tokio")), allow(dead_code))]
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Announces the end (if not yet) and returns whether it just did: then the caller must
    /// look at the ring once more before it waits.
    pub(crate) fn arm(&mut self) -> bool {
        if self.armed {
            return false;
        }
        self.armed = true;
        self.covered = self.channel().park_fd();
        // The mutant of the loom model: wait without looking again.
        !cfg!(shmring_mutant = "fd_no_recheck")
    }

    /// Withdraws the announcement, if any.
    #[inline]
    pub(crate) fn disarm(&mut self) {
        if self.armed {
            self.armed = false;
            self.channel().unpark_fd();
        }
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }

    /// Whether the last announcement is sure to be seen by every notifier: `false` when this
    /// process may not issue the heavy barrier (`membarrier(2)` refused, e.g. by seccomp), so
    /// a doorbell can be missed and the end must look at the ring again soon by itself.
    pub(crate) fn is_covered(&self) -> bool {
        self.covered
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// A file descriptor that becomes readable when the ring has something for one end: a
/// message (consumer, receiver), room (producer, sender), or the other side closed.
///
/// Made by `readiness()` of each handle ([`Consumer`](crate::spsc::Consumer::readiness),
/// [`Producer`](crate::spsc::Producer::readiness), [`Receiver`](crate::mpmc::Receiver::readiness),
/// [`Sender`](crate::mpmc::Sender::readiness)). Register [`as_fd`](std::os::fd::AsFd::as_fd)
/// with epoll or mio (level-triggered or edge-triggered both work), and wait as the module
/// docs show: [`arm`](Readiness::arm) before waiting (and look at the ring once more when it
/// returns `true`), [`clear`](Readiness::clear) after a wake-up, [`disarm`](Readiness::disarm)
/// once the end is busy again (while armed, the other side enters the kernel for every
/// message). Dropping it disarms.
///
/// Each one is an inotify instance for a shared ring, which counts against the per-user
/// limit `fs.inotify.max_user_instances` (often 128); the async handles of one process share a
/// single instance instead.
pub struct Readiness {
    announcement: Announcement,
    signal: Signal,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("armed", &self.announcement.armed)
            .finish_non_exhaustive()
    }
}

/// Longest wait on the descriptor when the announcement is not covered.
const UNCOVERED_WAIT: Duration = Duration::from_millis(1);

impl Readiness {
    /// The longest a parked end should wait before calling its ring again: a peer that dies
    /// rings nothing, and the end's calls notice a dead peer only when they run.
    pub const LIVENESS_INTERVAL: Duration = LIVENESS_TICK;

    /// A readiness fd for the end waiting on `channel` of the ring in `storage`.
    pub(crate) fn new(storage: Storage, channel: &EventCount) -> io::Result<Readiness> {
        let signal = match storage.bell_source() {
            Some(BellSource::Heap(bell)) => Signal::for_heap(bell.clone())?,
            Some(BellSource::File(fd)) => Signal::for_file(fd)?,
            None => return Err(io::Error::other("this ring has no doorbell")),
        };
        Ok(Readiness {
            announcement: Announcement::new(storage, channel),
            signal,
        })
    }

    /// Announces that this end is about to wait for the descriptor, so that the other side
    /// rings it from now on. Returns `true` if it was not armed yet: then look at the ring
    /// once more before waiting, since the other side may have published just before the
    /// announcement. Returns `false` if it was armed already (nothing done).
    ///
    /// ```
    /// let (_tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let mut ready = rx.readiness()?;
    /// assert!(ready.arm());
    /// assert!(!ready.arm());
    /// ready.disarm();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm(&mut self) -> bool {
        self.announcement.arm()
    }

    /// Withdraws the announcement: the other side stops ringing. Call it once the end has
    /// work again.
    pub fn disarm(&mut self) {
        self.announcement.disarm();
    }

    /// Whether the end is announced as parked.
    pub fn is_armed(&self) -> bool {
        self.announcement.is_armed()
    }

    /// Reads what the doorbell queued, so that the descriptor polls unreadable until the
    /// next ring. Call it after a wake-up, before looking at the ring.
    pub fn clear(&self) {
        self.signal.clear();
    }

    /// Waits (with `poll(2)`) until the descriptor is readable or `timeout` passes, for
    /// programs without an event loop of their own. Returns in any case; look at the ring.
    ///
    /// When the announcement is not covered (see [`is_covered`](Readiness::is_covered)), it
    /// waits at most 1 ms, as the blocking calls do then.
    pub fn wait(&self, timeout: Option<Duration>) {
        let timeout = if self.is_covered() {
            timeout
        } else {
            Some(timeout.map_or(UNCOVERED_WAIT, |t| t.min(UNCOVERED_WAIT)))
        };
        self.signal.wait(timeout);
    }

    /// Whether the other side is sure to ring this descriptor after the last
    /// [`arm`](Readiness::arm). It is not when this process may not issue the barrier the
    /// announcement relies on (`membarrier(2)` refused, e.g. by a seccomp filter): then a ring
    /// can be missed, and an event loop should not wait on the descriptor for longer than
    /// about a millisecond before looking at the ring again.
    pub fn is_covered(&self) -> bool {
        self.announcement.is_covered()
    }
}

impl std::os::fd::AsFd for Readiness {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.signal.fd()
    }
}

impl std::os::fd::AsRawFd for Readiness {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}
