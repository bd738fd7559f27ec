//! The receiving end of an MPMC ring: claims the message at `head`, lends it out in place,
//! releases the slot to the next lap's sender; waits while the ring is empty.

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::handle::{Handle, NoSlot};
use super::recovery::check_peers;
use super::ring::{MAX_INDEX, RETRY_BUDGET, Role, SKIP, TAG_RECV};
use crate::OpenOptions;
use crate::config::MpmcConfig as Config;
use crate::error::{Corruption, OpenError, RecvError, RecvTimeoutError, TryRecvError};
use crate::geometry::MpmcRules;
use crate::shm;
use crate::sync::waiter::{Poll, WaitStats, WaitStrategy};
use crate::sync::{Deadline, Ordering, weaken};

/// The success ordering of the compare-exchanges of `head` that claim a message.
///
/// SYNC POINT: AcqRel. Release pairs with the Acquire loads of `head` by other receivers (see
/// `try_take`: whoever sees the new `head` sees the `seq` this receiver saw, so an older lap
/// never reads as corruption) and by recovery (`recover_abandoned`: whoever sees the new
/// `head` sees this endpoint's claim record, stored just before, so a live receiver's
/// message is never taken for a dead one's). Acquire continues the same chain. Loom models:
/// `receiver_sees_the_lap_behind_head`, `live_slow_receiver_keeps_its_slot`.
#[inline(always)]
fn claim_order() -> Ordering {
    weaken(
        cfg!(shmring_mutant = "mpmc_relaxed_claim_head"),
        Ordering::AcqRel,
    )
}

/// A claimed message: its position and validated length.
#[derive(Clone, Copy, Debug)]
pub(super) struct Taken {
    pub(super) pos: u64,
    pub(super) len: usize,
}

/// The receiving end of an MPMC ring.
///
/// [`try_clone`](Receiver::try_clone) makes another endpoint, with its own registry entry (there
/// is no `Clone`: a clone can fail when the registry is full, and `Clone` cannot say so).
/// `Send`, not `Sync`:
/// methods take `&mut self` because an endpoint holds at most one message at a time.
pub struct Receiver {
    pub(super) h: Handle,
}

// SAFETY: as for `Sender`.
unsafe impl Send for Receiver {}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("slots", &self.h.ring.slots)
            .field("max_message", &self.h.ring.max_message)
            .field("entry", &self.h.entry)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A new receiver endpoint of the same ring, with its own registry entry.
    ///
    /// # Errors
    /// [`OpenError::RegistryFull`](crate::OpenError::RegistryFull) when every registry
    /// entry is taken by a live endpoint; `OpenError::Corrupted` for a handle inherited
    /// across `fork` ([`Corruption::is_inherited`](crate::Corruption::is_inherited)).
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let mut rx2 = rx.try_clone()?;
    /// drop(rx);
    /// tx.send(b"still read")?;
    /// assert_eq!(&*rx2.recv()?, b"still read");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_clone(&self) -> Result<Receiver, crate::OpenError> {
        Ok(Receiver {
            h: self.h.try_clone()?,
        })
    }

    /// Creates a named MPMC ring (exclusively) and returns a receiver of it.
    ///
    /// # Errors
    /// As [`Sender::create`](super::Sender::create).
    ///
    /// ```
    /// use shmring::mpmc;
    /// let name = format!("/shmring-doc-mpmc-rcreate-{}", std::process::id());
    /// let rx = mpmc::Receiver::create(&name, shmring::mpmc::Config::default())?;
    /// assert!(matches!(
    ///     mpmc::Receiver::create(&name, shmring::mpmc::Config::default()),
    ///     Err(shmring::OpenError::AlreadyExists(_))
    /// ));
    /// shmring::unlink(&name)?;
    /// # drop(rx);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: Handle::create(Some(name), config.borrow(), Role::Receiver)?,
        })
    }

    /// Creates an anonymous MPMC ring on a sealed memfd and returns a receiver of it.
    ///
    /// # Errors
    /// As [`Sender::create`](super::Sender::create).
    ///
    /// ```
    /// let (rx, fd) = shmring::mpmc::Receiver::create_anonymous(shmring::mpmc::Config::default())?;
    /// let tx = shmring::mpmc::Sender::from_fd(fd)?; // normally in another process
    /// assert!(!rx.is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn create_anonymous(
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<(Receiver, OwnedFd), OpenError> {
        let h = Handle::create(None, config.borrow(), Role::Receiver)?;
        let fd = h.ring.storage.dup_fd()?;
        Ok((Receiver { h }, fd))
    }

    /// Attaches a new receiver to an existing named MPMC ring.
    ///
    /// # Errors
    /// As [`Sender::open`](super::Sender::open) (`EndpointClosed` if every receiver that was attached is gone).
    ///
    /// ```
    /// let missing = format!("/shmring-doc-mpmc-missing-{}", std::process::id());
    /// match shmring::mpmc::Receiver::open(&missing) {
    ///     Err(shmring::OpenError::NotFound(name)) => assert_eq!(name, missing),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// ```
    pub fn open(name: &str) -> Result<Receiver, OpenError> {
        Receiver::open_with(name, OpenOptions::default())
    }

    /// Opens a named ring like [`open`](Receiver::open), as `options` say: whether to trust
    /// an object other users could write, and whether to wait for the ring to be created.
    ///
    /// # Errors
    /// As [`open`](Receiver::open).
    ///
    /// ```
    /// let name = format!("/shmring-doc-openwith-receiver-{}", std::process::id());
    /// let options = shmring::OpenOptions::default().timeout(std::time::Duration::from_millis(20));
    /// let err = shmring::mpmc::Receiver::open_with(&name, options).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_with(
        name: &str,
        options: impl std::borrow::Borrow<OpenOptions>,
    ) -> Result<Receiver, OpenError> {
        shm::open_with::<MpmcRules, _>(name, options.borrow(), |opened| {
            Ok(Receiver {
                h: Handle::attach(opened, Role::Receiver)?,
            })
        })
    }

    /// Attaches a new receiver to a ring given by a file descriptor.
    ///
    /// Only a memfd sealed against shrinking (`F_SEAL_SHRINK`, as `create_anonymous` makes it)
    /// is accepted: then no holder of another descriptor can truncate the ring under the
    /// mapping. Any other descriptor (a named object's, an unsealed memfd's, a file's) is
    /// refused; [`from_fd_unchecked`](Receiver::from_fd_unchecked) accepts it.
    ///
    /// # Errors
    /// [`OpenError::Untrusted`] for a descriptor that is not a memfd sealed against
    /// shrinking; otherwise as [`Sender::open`](super::Sender::open).
    ///
    /// ```
    /// let (mut tx, fd) = shmring::mpmc::Sender::create_anonymous(shmring::mpmc::Config::default())?;
    /// let mut rx = shmring::mpmc::Receiver::from_fd(fd)?;
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: Handle::attach(
                shm::open_fd::<MpmcRules>(fd, shm::FdTrust::SealedMemfd)?,
                Role::Receiver,
            )?,
        })
    }

    /// Attaches a new receiver to a ring given by any descriptor of a shared-memory
    /// object or file that maps as plain memory: a named object's, an unsealed memfd's, a
    /// file's. [`from_fd`](Receiver::from_fd) accepts only sealed memfds.
    ///
    /// # Safety
    /// `fd` must refer to plain memory: a POSIX shared-memory object, a memfd, or a regular
    /// file (on tmpfs or a local file system). Not a device or other special file (`/dev/mem`,
    /// a GPU or DMA buffer, a window on hardware registers): this function cannot tell such a
    /// mapping from memory, and loads and stores to it may have effects beyond the bytes of the
    /// ring, on memory this program does not own.
    ///
    /// Truncation is not part of this contract: an object that can be shrunk is mapped under
    /// the `SIGBUS` guard, as a ring opened by name is, so a peer that truncates it makes the
    /// handle report `Corrupted` ([`Corruption::is_truncation`](crate::Corruption::is_truncation))
    /// instead of killing the process. That is also why [`from_fd`](Receiver::from_fd) can
    /// refuse such descriptors without `unsafe`: the refusal is a default, not a safety rule.
    ///
    /// # Errors
    /// As [`Sender::open`](super::Sender::open).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use shmring::{mpmc, OpenError};
    /// let name = format!("/shmring-doc-unchecked-receiver-{}", std::process::id());
    /// let mut tx = mpmc::Sender::create(&name, mpmc::Config::default())?;
    /// // A descriptor of the named object, as another process could pass it on.
    /// let fd: OwnedFd = std::fs::OpenOptions::new()
    ///     .read(true)
    ///     .write(true)
    ///     .open(format!("/dev/shm{name}"))?
    ///     .into();
    /// shmring::unlink(&name)?;
    /// assert!(matches!(
    ///     mpmc::Receiver::from_fd(fd.try_clone()?),
    ///     Err(OpenError::Untrusted { .. })
    /// ));
    /// // SAFETY: `fd` is a POSIX shared-memory object: plain memory.
    /// let mut rx = unsafe { mpmc::Receiver::from_fd_unchecked(fd) }?;
    /// tx.send(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_fd_unchecked(fd: OwnedFd) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: Handle::attach(
                shm::open_fd::<MpmcRules>(fd, shm::FdTrust::Caller)?,
                Role::Receiver,
            )?,
        })
    }

    /// Messages in the ring: claimed by senders and not yet taken by receivers (a snapshot;
    /// other endpoints move meanwhile).
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// assert!(rx.is_empty());
    /// tx.send(b"a")?;
    /// tx.send(b"b")?;
    /// assert_eq!(rx.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.h.ring.len()
    }

    /// Whether no message is in the ring (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    ///
    /// ```
    /// let (_tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default().slots(4))?;
    /// assert_eq!(rx.capacity(), 4);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.h.ring.slots as usize
    }

    /// Largest message this ring accepts, in bytes.
    ///
    /// ```
    /// let (_tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default().max_message_bytes(100))?;
    /// assert_eq!(rx.max_message(), 100);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.h.ring.max_message as usize
    }

    /// How blocked calls wait.
    ///
    /// ```
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// rx.set_wait_strategy(shmring::WaitStrategy::Spin);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.h.ep.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let _ = rx.recv_timeout(Duration::from_millis(1));
    /// assert_eq!(rx.wait_stats().waits, 1);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn wait_stats(&self) -> WaitStats {
        self.h.ep.stats
    }

    /// Whether every sender has gone (closed, or died). Messages may still be waiting.
    ///
    /// For a shared ring this also looks whether the senders' processes are still there (at
    /// most once per 50 ms per handle), so it notices senders killed without closing even if
    /// this receiver never blocks; dead ones are reaped, as a blocked call would.
    ///
    /// ```
    /// let (tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// drop(tx);
    /// assert!(rx.is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.h.peers_gone()
    }

    /// The common case of [`try_take`](Receiver::try_take), small enough to inline into the
    /// caller: the slot at `head` holds a message and the compare-exchange wins. `None`
    /// means "ask `try_take`", which handles everything else (empty, skip marks, lost
    /// races, corruption) and clears or rewrites the claim record this may leave behind.
    #[inline(always)]
    pub(super) fn take_fast(&mut self) -> Option<Taken> {
        if self.h.ep.stopped() {
            return None;
        }
        let ring = &self.h.ring;
        let ctrl = ring.ctrl();
        // Relaxed: `h` only names the position to try. The take goes ahead only if that
        // slot's `seq` is exactly `h + 1` (Acquire, below) and the compare-exchange from `h`
        // wins, which it does only while `h` is the latest `head`; a stale `h` (whose slot
        // may show a later lap) goes to `try_take`, whose loads of `head` are Acquire and
        // which alone reports corruption.
        let h = ctrl.head.head.load(Ordering::Relaxed);
        if h >= MAX_INDEX {
            return None;
        }
        let meta = ring.meta(h);
        // SYNC POINT: Acquire pairs with the sender's Release store of `seq` in
        // `Sender::publish`: the length and payload are visible.
        let order = weaken(
            cfg!(shmring_mutant = "mpmc_relaxed_take"),
            Ordering::Acquire,
        );
        let s = meta.seq.load(order);
        if s != h + 1 {
            return None;
        }
        self.h.record(h, TAG_RECV);
        // SYNC POINT: AcqRel, as in `try_take`. A lost race goes to `try_take`, so the value
        // read on failure is not used: Relaxed.
        if ctrl
            .head
            .head
            .compare_exchange(h, h + 1, claim_order(), Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let len = meta.len.load(Ordering::Relaxed);
        if u64::from(len) > ring.max_message {
            self.bad_length(h, len);
            return None;
        }
        // A refusal is recorded as corruption; `try_take` reports it.
        self.h.lend(h).ok()?;
        Some(Taken {
            pos: h,
            len: len as usize,
        })
    }

    /// We claimed `pos` but its length is out of range: let the ring go on without us and
    /// remember the corruption (every later call reports it).
    #[cold]
    pub(super) fn bad_length(&mut self, pos: u64, len: u32) -> Corruption {
        self.release(pos);
        self.h.corrupt(Corruption::new(
            "message length out of range",
            u64::from(len),
        ))
    }

    /// Tries to claim the message at `head`, without waiting. `Again` after [`RETRY_BUDGET`]
    /// rounds, each of which found `head` moved under it or released a skipped position.
    pub(super) fn try_take(&mut self) -> Result<Taken, NoSlot> {
        if let Some(c) = self.h.ep.fault() {
            return Err(NoSlot::Corrupted(c));
        }
        let cap = self.h.ring.slots;
        let mut recorded = false;
        // SYNC POINT: every load of `head` here (and the failure ordering of the
        // compare-exchange) is Acquire, pairing with the receivers' AcqRel compare-exchanges:
        // the receiver that claimed `h - slots` loaded `seq == h - slots + 1` before moving
        // `head` on, so whoever sees `head == h` sees that `seq` or a later one, never an
        // older value that would read as out of range (corruption).
        let mut h = self.h.ring.ctrl().head.head.load(Ordering::Acquire);
        let mut budget = RETRY_BUDGET;
        let bad = loop {
            if budget == 0 {
                if recorded {
                    self.h.clear_record();
                }
                return Err(NoSlot::Again);
            }
            budget -= 1;
            if h >= MAX_INDEX {
                // No ring ever gets there (2^62 messages): a peer wrote it.
                if recorded {
                    self.h.clear_record();
                }
                break h;
            }
            let ring = &self.h.ring;
            let ctrl = ring.ctrl();
            let meta = ring.meta(h);
            // SYNC POINT: Acquire pairs with the sender's Release store of `seq` in
            // `Sender::publish` (or a skip mark): the length and payload are visible.
            let order = weaken(
                cfg!(shmring_mutant = "mpmc_relaxed_take"),
                Ordering::Acquire,
            );
            let s = meta.seq.load(order);
            let sm = s & !SKIP;
            if sm == h + 1 {
                self.h.record(h, TAG_RECV);
                recorded = true;
                // SYNC POINT: see `claim_order`.
                if let Err(cur) =
                    ctrl.head
                        .head
                        .compare_exchange_weak(h, h + 1, claim_order(), Ordering::Acquire)
                {
                    h = cur;
                    continue;
                }
                if s & SKIP != 0 {
                    // Nothing in it: release it and look further. (Acquire, as every load of
                    // `head` here: loom model `receiver_sees_the_lap_behind_head_after_a_skip`.)
                    self.release(h);
                    h = ctrl.head.head.load(weaken(
                        cfg!(shmring_mutant = "mpmc_relaxed_skip_head"),
                        Ordering::Acquire,
                    ));
                    continue;
                }
                let len = meta.len.load(Ordering::Relaxed);
                if u64::from(len) > ring.max_message {
                    return Err(NoSlot::Corrupted(self.bad_length(h, len)));
                }
                if let Err(c) = self.h.lend(h) {
                    return Err(NoSlot::Corrupted(c));
                }
                return Ok(Taken {
                    pos: h,
                    len: len as usize,
                });
            }
            let slack = if cfg!(shmring_mutant = "mpmc_empty_off_by_one") {
                1
            } else {
                0
            };
            let empty = sm <= h && sm + cap > h + slack;
            if empty {
                // Not published yet at this lap (or the previous lap's receiver still holds
                // the slot): empty, unless `head` moved meanwhile.
                let now = ctrl.head.head.load(Ordering::Acquire);
                if now != h {
                    h = now;
                    continue;
                }
                if recorded {
                    self.h.clear_record();
                }
                return Err(NoSlot::Busy);
            }
            if sm > h + 1 {
                // Another receiver took `h` already; its `head` store happened before the
                // `seq` we saw, so a reload shows a newer head. (Acquire, as every load of
                // `head` here: loom model `receiver_sees_the_lap_behind_head_after_a_skip`.)
                let now = ctrl.head.head.load(weaken(
                    cfg!(shmring_mutant = "mpmc_relaxed_head_reload"),
                    Ordering::Acquire,
                ));
                if now != h {
                    h = now;
                    continue;
                }
            }
            break s;
        };
        Err(NoSlot::Corrupted(self.h.corrupt(Corruption::new(
            "slot sequence out of range for the head",
            bad,
        ))))
    }

    /// `try_take`, plus end-of-stream detection when the ring is empty: `Busy` (nothing yet),
    /// `Disconnected` (end of stream), or `Again` (a retry budget ran out: look again).
    pub(super) fn poll_msg(&mut self) -> Result<Taken, NoSlot> {
        match self.try_take() {
            Err(NoSlot::Busy) => {}
            r => return r,
        }
        if !self.h.peers_closed() {
            return Err(NoSlot::Busy);
        }
        // Every sender is gone, after its last publish: look again, and skip positions that a
        // departed sender claimed but never published. A sound ring has at most one such
        // position per sender endpoint, and never more than `slots` positions between `head`
        // and the (now final) `tail`; the budget bounds the rounds whatever a peer writes.
        for _ in 0..RETRY_BUDGET {
            match self.try_take() {
                Err(NoSlot::Busy) => {}
                r => return r,
            }
            let ring = &self.h.ring;
            let ctrl = ring.ctrl();
            // Relaxed, both: `peers_closed` read the side's CLOSED with Acquire, which pairs
            // with the Release that closed it, so every claim of every sender happens before
            // this point and `tail` reads as final. `head <= tail` then holds for any `head`
            // read, and `head >= tail - slots` too: the claimer of `tail - 1` saw its slot
            // released (Acquire) by the receiver that had moved `head` past `tail - slots`.
            let t = ctrl.tail.tail.load(Ordering::Relaxed);
            let h = ctrl.head.head.load(Ordering::Relaxed);
            if t == h {
                return Err(NoSlot::Disconnected);
            }
            if t < h {
                let c = self.h.corrupt(Corruption::new("tail behind head", t));
                return Err(NoSlot::Corrupted(c));
            }
            if t - h > ring.slots || t >= MAX_INDEX {
                // More claimed positions than slots: no sender ever claimed them.
                let c = self
                    .h
                    .corrupt(Corruption::new("tail more than a ring ahead of head", t));
                return Err(NoSlot::Corrupted(c));
            }
            // Relaxed: the skip mark hands nothing over. No sender will write this slot again
            // (the side is closed for good), and a receiver that takes the position reads
            // nothing of it. On failure: the claimer of `h` saw `seq == h` before its claim,
            // which happens before this point, so the value read is `h` or later; one at or
            // below `h` that is not `h` is a forgery, and then what this reads only decides
            // whether to report it.
            match ring.meta(h).seq.compare_exchange(
                h,
                (h + 1) | SKIP,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => ring.ctrl().wait.readable.notify(&ring.storage),
                Err(cur) if cur & !SKIP <= h && ctrl.head.head.load(Ordering::Relaxed) == h => {
                    // Claimed (t > h) yet neither published nor free for its sender.
                    let c = self.h.corrupt(Corruption::new(
                        "slot sequence out of range for the head",
                        cur,
                    ));
                    return Err(NoSlot::Corrupted(c));
                }
                Err(_) => {}
            }
        }
        Err(NoSlot::Again)
    }

    /// `poll_msg`, tried again while it runs out of its retry budget and `deadline` has not
    /// passed; `Busy` once it has.
    fn poll_until(&mut self, deadline: Deadline) -> Result<Taken, NoSlot> {
        loop {
            match self.poll_msg() {
                Err(NoSlot::Again) if !deadline.expired() => {}
                Err(NoSlot::Again) => return Err(NoSlot::Busy),
                r => return r,
            }
        }
    }

    /// Releases position `pos` to the senders of the next lap.
    #[inline]
    pub(super) fn release(&self, pos: u64) {
        let ring = &self.h.ring;
        // Before the store that hands the slot over: a sender of this process may claim it
        // the moment it reads as free.
        self.h.give_back(pos);
        // SYNC POINT: Release pairs with the senders' Acquire load of `seq` in
        // `Sender::try_claim`: we are done reading before the slot is rewritten.
        ring.meta(pos)
            .seq
            .store(pos + ring.slots, Ordering::Release);
        ring.ctrl().wait.writable.notify(&ring.storage);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn try_recv_slow(&mut self) -> Result<Taken, TryRecvError> {
        match self.poll_msg() {
            Ok(t) => Ok(t),
            Err(NoSlot::Busy) => match check_peers(&self.h.ring, &mut self.h.ep.throttle) {
                Ok(()) => Err(TryRecvError::Empty),
                Err(c) => Err(TryRecvError::Corrupted(self.h.corrupt(c))),
            },
            Err(NoSlot::Again) => Err(TryRecvError::Empty),
            Err(NoSlot::Disconnected) => Err(TryRecvError::Disconnected),
            Err(NoSlot::Corrupted(c)) => Err(TryRecvError::Corrupted(c)),
        }
    }

    #[inline]
    pub(super) fn recv_deadline(&mut self, deadline: Deadline) -> Result<Taken, RecvTimeoutError> {
        match self.take_fast() {
            Some(t) => Ok(t),
            None => self.recv_deadline_slow(deadline),
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn recv_deadline_slow(
        &mut self,
        deadline: Deadline,
    ) -> Result<Taken, RecvTimeoutError> {
        match readiness(self.poll_until(deadline)) {
            Poll::Ready(r) => r.map_err(Into::into),
            Poll::Pending => self.recv_slow(deadline),
        }
    }

    #[cold]
    pub(super) fn recv_slow(&mut self, deadline: Deadline) -> Result<Taken, RecvTimeoutError> {
        let ring = self.h.ring.clone();
        let readable = &ring.ctrl().wait.readable;
        let strategy = self.h.ep.strategy;
        let mut stats = self.h.ep.stats;
        let mut spin = self.h.ep.spin;
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut clock = self.h.ep.throttle;
        let result = readable.wait(
            strategy,
            deadline,
            &mut stats,
            &mut spin,
            || readiness(self.poll_until(deadline)),
            || match check_peers(&ring, &mut clock) {
                Ok(()) => Poll::Pending,
                Err(c) => Poll::Ready(Err(RecvError::Corrupted(c))),
            },
        );
        self.h.ep.stats = stats;
        self.h.ep.spin = spin;
        self.h.ep.throttle = clock;
        if let Some(c) = self.h.ep.truncated(&ring.storage) {
            return Err(RecvTimeoutError::Corrupted(c));
        }
        match result {
            Ok(Err(RecvError::Corrupted(c))) => Err(RecvTimeoutError::Corrupted(self.h.corrupt(c))),
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Opens a receiver end of a named ring like [`open`](Receiver::open), waiting up to
    /// `timeout` for the ring to be created if it does not exist yet (for a process that may
    /// start before its peer).
    ///
    /// # Errors
    /// As [`open`](Receiver::open); `NotFound` if the ring still does not exist at the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// let name = format!("/shmring-doc-opent-mpmc-{}", std::process::id());
    /// let err = shmring::mpmc::Receiver::open_timeout(&name, Duration::from_millis(20)).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Receiver, OpenError> {
        Receiver::open_with(name, OpenOptions::default().timeout(timeout))
    }

    /// Closes this receiver. When it was the last receiver, sends fail with `Disconnected`
    /// from then on. Dropping the receiver does the same.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// rx.close();
    /// assert!(tx.send(b"x").unwrap_err().is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.h.close();
    }
}

/// What a waiter makes of `poll_msg`'s outcome.
fn readiness(r: Result<Taken, NoSlot>) -> Poll<Result<Taken, RecvError>> {
    match r {
        Ok(t) => Poll::Ready(Ok(t)),
        Err(NoSlot::Busy | NoSlot::Again) => Poll::Pending,
        Err(NoSlot::Disconnected) => Poll::Ready(Err(RecvError::Disconnected)),
        Err(NoSlot::Corrupted(c)) => Poll::Ready(Err(RecvError::Corrupted(c))),
    }
}
