//! The doorbell: how a ring end that waits in an event loop (epoll, mio, tokio) is told that
//! the ring has something for it, without a thread asleep in a futex.
//!
//! # The handshake
//!
//! It is the eventcount's (see [`waiter`](super::waiter)), with a second kind of waiter. A
//! waiter that will sleep in an event loop announces itself in the same `waiters` word of the
//! [`EventCount`](super::waiter::EventCount), but in its upper half ([`FD_PARKER`] per
//! waiter; futex sleepers count in the lower half), issues the heavy barrier, and looks at
//! the ring once more before it goes back to its loop. A notifier that finds `waiters != 0`
//! after publishing (one load, as before) looks at the halves: futex sleepers get their
//! `FUTEX_WAKE`, fd parkers get the doorbell rung. While nobody announced, notifying costs
//! what it always did: a compiler barrier and one load, no system call. The `EventCount`
//! stays 8 bytes, so no offset of the control block moves.
//!
//! ```text
//!  parked end (ring empty / full)           notifier (after publishing progress)
//!  ------------------------------           ------------------------------------
//!  waiters += FD_PARKER                     store index (Release)
//!  heavy barrier                            light barrier
//!  re-check; if ready: waiters -= ..., go   if waiters >= FD_PARKER: ring the doorbell
//!  wait for the readiness fd (epoll)
//! ```
//!
//! # The doorbell of a shared ring: a write to its own object, watched with inotify
//!
//! Ringing is `pwrite(2)` of one byte, always zero, to the last byte of the ring's header page
//! ([`DOORBELL_OFFSET`], reserved and never read). A write to a file makes the kernel queue an
//! `IN_MODIFY` inotify event for every watch on its inode, so the readiness fd of a parked end
//! is an inotify instance watching the ring's object (through `/proc/self/fd/<fd>`, which names
//! the object whether it is a named POSIX object, an unlinked one or a memfd). Stores through
//! the mapping make no event: only the doorbell does.
//!
//! Why this and not the alternatives:
//!
//! - *An eventfd per end, handed over a Unix socket at attach* (vhost-user's kick and call):
//!   rings are opened by name by unrelated processes, which share no socket; one would need a
//!   rendezvous (a socket path or an abstract name, per network namespace), something to clean
//!   up when a process dies, and a protocol to re-hand the fd when an end is reopened. An fd
//!   handed over by a peer is also the peer's choice: a hostile one could hand a pipe it keeps
//!   full, or a descriptor of something else.
//! - *A Unix datagram socket per end*: the same rendezvous and cleanup problems.
//! - *io_uring's `FUTEX_WAIT`* (Linux 6.7): the notifier would not change at all, but io_uring
//!   is disabled by many container runtimes' seccomp profiles and by the
//!   `kernel.io_uring_disabled` sysctl, and needs a recent kernel.
//!
//! The doorbell needs no handover: both ends already hold the object. Nothing is left behind
//! when a process is killed (its watches go with its inotify instances). It works wherever the
//! object is shared, across pid, network and user namespaces (a watch is on the inode). A
//! hostile peer gains nothing it did not have: it can ring the doorbell (a spurious wake-up,
//! after which the parked end looks at the ring and waits again), or leave a stale count in
//! the upper half of `waiters` (a needless `pwrite` per message), as it already could with
//! the futex words. Both directions ring the same inode, so a parked end also wakes for the
//! other direction's doorbell: spurious wake-ups only; a parked end always looks again.
//!
//! Limits: an inotify instance counts against `fs.inotify.max_user_instances` (often 128 per
//! user), so the async handles of a process share one (see `evented`), and the raw readiness
//! fd of each handle is one instance. A peer that dies rings nothing: a parked end must look at
//! its peer's liveness now and then (the async handles do every [`LIVENESS_TICK`]).
//!
//! # Heap rings
//!
//! A ring on the heap (`channel()`) has no file. Its doorbell is a list of eventfds, one per
//! readiness fd handed out; ringing writes each. Under loom the doorbell is modelled as a flag
//! per subscriber with a loom `Mutex` and `Condvar` (waiting on a readiness fd is waiting for
//! the flag), which is what the loom model of the handshake runs.

use std::time::Duration;

/// One fd parker in `EventCount::waiters`: the upper 16 bits count the ends parked in an
/// event loop, the lower 16 bits the threads asleep on the futex.
pub(crate) const FD_PARKER: u32 = 1 << 16;

/// Offset in the ring's object of the byte that ringing the doorbell writes: the last byte of
/// the header page, reserved for it (see `shm::layout`). Never read by anyone.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const DOORBELL_OFFSET: u64 = crate::geometry::HEADER_SIZE - 1;

/// How often a parked end looks at its peer's liveness: a peer that dies rings no doorbell.
/// With the liveness throttle of the handles (100 ms) a killed peer is seen within
/// `LIVENESS_TICK + 100 ms`.
pub(crate) const LIVENESS_TICK: Duration = Duration::from_millis(200);

/// Something that can be rung: the ring's storage (see `Storage::ring_doorbell`).
pub(crate) trait Doorbell {
    /// Tells every end parked on the ring's readiness fds to look at the ring.
    fn ring(&self);
}

#[cfg(not(loom))]
mod imp {
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rustix::event::{EventfdFlags, PollFd, PollFlags};
    use rustix::fs::inotify;
    use rustix::io::Errno;

    use super::DOORBELL_OFFSET;

    /// Rings the doorbell of a shared ring: one zero byte written to its reserved byte.
    ///
    /// Errors are ignored: a ring whose object cannot be written any more (truncated, a
    /// descriptor gone bad) is noticed by the parked end on its liveness tick. An object
    /// truncated by a peer to less than a page grows back to a page here, which changes
    /// nothing for a ring that is corrupted already.
    #[cold]
    pub(crate) fn ring_file(fd: BorrowedFd<'_>) {
        loop {
            match rustix::io::pwrite(fd, &[0], DOORBELL_OFFSET) {
                Err(Errno::INTR) => continue,
                _ => return,
            }
        }
    }

    /// The doorbell of a heap ring: one eventfd per subscriber.
    #[derive(Debug, Default)]
    pub(crate) struct HeapBell {
        subscribers: Mutex<Vec<Arc<OwnedFd>>>,
    }

    impl HeapBell {
        pub(crate) fn new() -> HeapBell {
            HeapBell::default()
        }

        /// Writes every subscriber's eventfd.
        #[cold]
        pub(crate) fn ring(&self) {
            let subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            for fd in subs.iter() {
                // EAGAIN (the counter is saturated) means it is readable already.
                let _ = rustix::io::write(&**fd, &1u64.to_ne_bytes());
            }
        }

        /// A new eventfd (non-blocking, close-on-exec) that every later ring makes readable.
        pub(crate) fn subscribe(&self) -> io::Result<Arc<OwnedFd>> {
            let fd = Arc::new(rustix::event::eventfd(
                0,
                EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC,
            )?);
            self.subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fd.clone());
            Ok(fd)
        }

        /// Stops ringing `fd`.
        pub(crate) fn unsubscribe(&self, fd: &Arc<OwnedFd>) {
            self.subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|s| !Arc::ptr_eq(s, fd));
        }
    }

    /// An inotify instance (non-blocking, close-on-exec) watching the object behind `fd` for
    /// the doorbell, and the watch descriptor.
    pub(crate) fn watch_file(inotify_fd: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<i32> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        Ok(inotify::add_watch(
            inotify_fd,
            path,
            inotify::WatchFlags::MODIFY,
        )?)
    }

    /// A new inotify instance, non-blocking and close-on-exec.
    pub(crate) fn inotify_instance() -> io::Result<OwnedFd> {
        Ok(inotify::init(
            inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC,
        )?)
    }

    /// What one readiness fd is: an inotify instance watching a shared ring's object, or an
    /// eventfd subscribed to a heap ring's doorbell.
    #[derive(Debug)]
    pub(crate) enum Signal {
        Inotify(OwnedFd),
        Event(Arc<OwnedFd>, Arc<HeapBell>),
    }

    impl Signal {
        /// A readiness fd for a shared ring whose object is `fd`.
        pub(crate) fn for_file(fd: BorrowedFd<'_>) -> io::Result<Signal> {
            let inotify_fd = inotify_instance()?;
            watch_file(inotify_fd.as_fd(), fd)?;
            Ok(Signal::Inotify(inotify_fd))
        }

        /// A readiness fd for a heap ring.
        pub(crate) fn for_heap(bell: Arc<HeapBell>) -> io::Result<Signal> {
            let fd = bell.subscribe()?;
            Ok(Signal::Event(fd, bell))
        }

        pub(crate) fn fd(&self) -> BorrowedFd<'_> {
            match self {
                Signal::Inotify(fd) => fd.as_fd(),
                Signal::Event(fd, _) => fd.as_fd(),
            }
        }

        /// Reads everything queued on the fd, so that it polls unreadable until the next ring.
        pub(crate) fn clear(&self) {
            drain(self.fd());
        }

        /// Waits (poll(2)) until the fd is readable or `timeout` passes.
        pub(crate) fn wait(&self, timeout: Option<Duration>) {
            let ts = timeout.map(|d| rustix::time::Timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            let fd = self.fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            // EINTR and timeouts mean the same as a wake-up to the caller: look again.
            let _ = rustix::event::poll(&mut fds, ts.as_ref());
        }
    }

    impl Drop for Signal {
        fn drop(&mut self) {
            if let Signal::Event(fd, bell) = self {
                bell.unsubscribe(fd);
            }
        }
    }

    /// Reads a non-blocking inotify instance or eventfd until it would block.
    pub(crate) fn drain(fd: BorrowedFd<'_>) {
        let mut buf = [0u8; 4096];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => return,
                Ok(_) | Err(Errno::INTR) => continue,
                Err(_) => return,
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::io;
    use std::os::fd::BorrowedFd;
    use std::time::Duration;

    /// Shared mappings do not exist under loom: nothing to ring.
    pub(crate) fn ring_file(_fd: BorrowedFd<'_>) {}

    use loom::sync::{Arc, Condvar, Mutex};

    /// One subscriber's "fd": a readable flag.
    #[derive(Debug, Default)]
    pub(crate) struct Flag {
        readable: Mutex<bool>,
        cond: Condvar,
    }

    /// The model of a heap ring's doorbell: ringing sets every subscriber's flag.
    #[derive(Debug, Default)]
    pub(crate) struct HeapBell {
        subscribers: Mutex<Vec<Arc<Flag>>>,
    }

    impl HeapBell {
        pub(crate) fn new() -> HeapBell {
            HeapBell::default()
        }

        pub(crate) fn ring(&self) {
            for f in self.subscribers.lock().unwrap().iter() {
                *f.readable.lock().unwrap() = true;
                f.cond.notify_all();
            }
        }
    }

    /// The model of a readiness fd. Its descriptor (for `AsFd`, which no model polls) is
    /// `/dev/null`'s, so the public types are the same in every build.
    #[derive(Debug)]
    pub(crate) struct Signal {
        flag: Arc<Flag>,
        bell: std::sync::Arc<HeapBell>,
        null: std::os::fd::OwnedFd,
    }

    impl Signal {
        pub(crate) fn for_heap(bell: std::sync::Arc<HeapBell>) -> io::Result<Signal> {
            let null = std::fs::File::open("/dev/null")?.into();
            let flag = Arc::new(Flag::default());
            bell.subscribers.lock().unwrap().push(flag.clone());
            Ok(Signal { flag, bell, null })
        }

        /// Shared mappings do not exist under loom.
        pub(crate) fn for_file(_fd: BorrowedFd<'_>) -> io::Result<Signal> {
            Err(io::Error::other("loom models have no shared mappings"))
        }

        pub(crate) fn fd(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.null.as_fd()
        }

        pub(crate) fn clear(&self) {
            *self.flag.readable.lock().unwrap() = false;
        }

        /// Waits until rung; a timed wait returns at once (loom has no clock).
        pub(crate) fn wait(&self, timeout: Option<Duration>) {
            let mut readable = self.flag.readable.lock().unwrap();
            if timeout.is_some() {
                return;
            }
            while !*readable {
                readable = self.flag.cond.wait(readable).unwrap();
            }
        }
    }

    impl Drop for Signal {
        fn drop(&mut self) {
            let mut subs = self.bell.subscribers.lock().unwrap();
            subs.retain(|s| !Arc::ptr_eq(s, &self.flag));
        }
    }
}

pub(crate) use imp::*;
