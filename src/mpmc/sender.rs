//! The sending end of an MPMC ring: claims a slot at `tail`, writes the message, publishes
//! it through the slot's sequence word; waits while the ring is full.

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::handle::{Handle, NoSlot};
use super::recovery::check_peers;
use super::ring::{MAX_INDEX, RETRY_BUDGET, Role, SKIP, TAG_SEND};
use crate::OpenOptions;
use crate::config::MpmcConfig as Config;
use crate::error::{ClaimError, Corruption, OpenError, SendError, SendTimeoutError, TrySendError};
use crate::geometry::MpmcRules;
use crate::shm;
use crate::sync::waiter::{Poll, WaitStats, WaitStrategy};
use crate::sync::{Deadline, Ordering, weaken};

/// The success ordering of the compare-exchanges of `tail` that claim a position.
///
/// SYNC POINT: AcqRel. Release pairs with the Acquire loads of `tail` by other senders (see
/// `try_claim`: whoever sees the new `tail` sees the `seq` this sender saw, so an older lap
/// never reads as corruption) and by recovery (`recover_abandoned`: whoever sees the new
/// `tail` sees this endpoint's claim record, stored just before, so a live claimer is never
/// taken for a dead one). Acquire continues the same chain: the next claim of this sender
/// passes on what the previous claimers saw. Loom models: `sender_sees_the_lap_behind_tail`,
/// `live_slow_sender_keeps_its_slot`.
#[inline(always)]
fn claim_order() -> Ordering {
    weaken(
        cfg!(shmring_mutant = "mpmc_relaxed_claim_tail"),
        Ordering::AcqRel,
    )
}

/// The sending end of an MPMC ring.
///
/// [`try_clone`](Sender::try_clone) makes another endpoint, with its own registry entry (there
/// is no `Clone`: a clone can fail when the registry is full, and `Clone` cannot say so).
/// `Send`, not `Sync`:
/// methods take `&mut self` because an endpoint holds at most one claimed slot at a time.
pub struct Sender {
    pub(super) h: Handle,
}

// SAFETY: the raw pointers refer to memory kept alive by `ring.storage` (an Arc); the
// handle's claim record is written only through this handle, which moves as a whole.
unsafe impl Send for Sender {}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("slots", &self.h.ring.slots)
            .field("max_message", &self.h.ring.max_message)
            .field("entry", &self.h.entry)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A new sender endpoint of the same ring, with its own registry entry.
    ///
    /// # Errors
    /// [`OpenError::RegistryFull`](crate::OpenError::RegistryFull) when every registry
    /// entry is taken by a live endpoint; `OpenError::Corrupted` for a handle inherited
    /// across `fork` ([`Corruption::is_inherited`](crate::Corruption::is_inherited)).
    ///
    /// ```
    /// use shmring::{mpmc, OpenError};
    /// let name = format!("/shmring-doc-mpmc-clone-{}", std::process::id());
    /// let tx = mpmc::Sender::create(&name, shmring::mpmc::Config::default().endpoints(2))?;
    /// shmring::unlink(&name)?;
    /// let _tx2 = tx.try_clone()?;
    /// assert!(matches!(tx.try_clone(), Err(OpenError::RegistryFull { capacity: 2 })));
    /// # Ok::<(), OpenError>(())
    /// ```
    pub fn try_clone(&self) -> Result<Sender, crate::OpenError> {
        Ok(Sender {
            h: self.h.try_clone()?,
        })
    }

    /// Creates a named MPMC ring (exclusively: an existing name is an error) and returns a
    /// sender of it. Other processes attach with [`Sender::open`] and [`Receiver::open`](super::Receiver::open).
    ///
    /// # Errors
    /// [`OpenError`]: invalid name or configuration, `AlreadyExists`, `PermissionDenied`,
    /// `NoSpace`, or an OS error.
    ///
    /// ```
    /// use shmring::mpmc;
    /// let name = format!("/shmring-doc-mpmc-create-{}", std::process::id());
    /// let mut tx = mpmc::Sender::create(&name, shmring::mpmc::Config::default().slots(16).max_message_bytes(112))?;
    /// let mut rx = mpmc::Receiver::open(&name)?; // normally in another process
    /// shmring::unlink(&name)?;
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// assert_eq!(tx.max_message(), 112);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: Handle::create(Some(name), config.borrow(), Role::Sender)?,
        })
    }

    /// Creates an anonymous MPMC ring on a sealed memfd and returns a sender of it. Hand the
    /// returned descriptor to other processes, which attach with [`Sender::from_fd`] or
    /// [`Receiver::from_fd`](super::Receiver::from_fd).
    ///
    /// # Errors
    /// As [`Sender::create`].
    ///
    /// ```
    /// use shmring::mpmc;
    /// let (mut tx, fd) = mpmc::Sender::create_anonymous(shmring::mpmc::Config::default())?;
    /// let mut rx = mpmc::Receiver::from_fd(fd)?;
    /// tx.send(b"over a memfd")?;
    /// assert_eq!(&*rx.recv()?, b"over a memfd");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_anonymous(
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<(Sender, OwnedFd), OpenError> {
        let h = Handle::create(None, config.borrow(), Role::Sender)?;
        let fd = h.ring.storage.dup_fd()?;
        Ok((Sender { h }, fd))
    }

    /// Attaches a new sender to an existing named MPMC ring.
    ///
    /// # Errors
    /// [`OpenError`]: `NotFound`, `PermissionDenied`, `Untrusted` (a symbolic link, or an
    /// object other users could write: see [`OpenOptions`]), a layout mismatch (`NotShmring`,
    /// `UnsupportedVersion`, `WrongKind`, `TooSmall`, `BadGeometry`, `StillInitialising`,
    /// `Poisoned`), `RegistryFull`, or `EndpointClosed` if every sender that was attached
    /// is gone (the senders' side is closed for good).
    ///
    /// ```
    /// use shmring::mpmc;
    /// let name = format!("/shmring-doc-mpmc-sopen-{}", std::process::id());
    /// let mut rx = mpmc::Receiver::create(&name, shmring::mpmc::Config::default())?;
    /// let mut tx = mpmc::Sender::open(&name)?;
    /// shmring::unlink(&name)?;
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(name: &str) -> Result<Sender, OpenError> {
        Sender::open_with(name, OpenOptions::default())
    }

    /// Opens a named ring like [`open`](Sender::open), as `options` say: whether to trust
    /// an object other users could write, and whether to wait for the ring to be created.
    ///
    /// # Errors
    /// As [`open`](Sender::open).
    ///
    /// ```
    /// let name = format!("/shmring-doc-openwith-sender-{}", std::process::id());
    /// let options = shmring::OpenOptions::default().timeout(std::time::Duration::from_millis(20));
    /// let err = shmring::mpmc::Sender::open_with(&name, options).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_with(
        name: &str,
        options: impl std::borrow::Borrow<OpenOptions>,
    ) -> Result<Sender, OpenError> {
        shm::open_with::<MpmcRules, _>(name, options.borrow(), |opened| {
            Ok(Sender {
                h: Handle::attach(opened, Role::Sender)?,
            })
        })
    }

    /// Opens a sender end of a named ring like [`open`](Sender::open), waiting up to
    /// `timeout` for the ring to be created if it does not exist yet (for a process that may
    /// start before its peer).
    ///
    /// # Errors
    /// As [`open`](Sender::open); `NotFound` if the ring still does not exist at the deadline.
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Sender, OpenError> {
        Sender::open_with(name, OpenOptions::default().timeout(timeout))
    }

    /// Attaches a new sender to a ring given by a file descriptor (see
    /// [`Sender::create_anonymous`]).
    ///
    /// Only a memfd sealed against shrinking (`F_SEAL_SHRINK`, as `create_anonymous` makes it)
    /// is accepted: then no holder of another descriptor can truncate the ring under the
    /// mapping. Any other descriptor (a named object's, an unsealed memfd's, a file's) is
    /// refused; [`from_fd_unchecked`](Sender::from_fd_unchecked) accepts it.
    ///
    /// # Errors
    /// [`OpenError::Untrusted`] for a descriptor that is not a memfd sealed against
    /// shrinking; otherwise as [`Sender::open`].
    ///
    /// ```
    /// use shmring::mpmc;
    /// let (rx, fd) = mpmc::Receiver::create_anonymous(shmring::mpmc::Config::default())?;
    /// let tx = mpmc::Sender::from_fd(fd)?;
    /// assert!(!tx.is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: Handle::attach(
                shm::open_fd::<MpmcRules>(fd, shm::FdTrust::SealedMemfd)?,
                Role::Sender,
            )?,
        })
    }

    /// Attaches a new sender to a ring given by any descriptor of a shared-memory
    /// object or file that maps as plain memory: a named object's, an unsealed memfd's, a
    /// file's. [`from_fd`](Sender::from_fd) accepts only sealed memfds.
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
    /// instead of killing the process. That is also why [`from_fd`](Sender::from_fd) can
    /// refuse such descriptors without `unsafe`: the refusal is a default, not a safety rule.
    ///
    /// # Errors
    /// As [`Sender::open`].
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use shmring::{mpmc, OpenError};
    /// let name = format!("/shmring-doc-unchecked-sender-{}", std::process::id());
    /// let mut rx = mpmc::Receiver::create(&name, mpmc::Config::default())?;
    /// // A descriptor of the named object, as another process could pass it on.
    /// let fd: OwnedFd = std::fs::OpenOptions::new()
    ///     .read(true)
    ///     .write(true)
    ///     .open(format!("/dev/shm{name}"))?
    ///     .into();
    /// shmring::unlink(&name)?;
    /// assert!(matches!(
    ///     mpmc::Sender::from_fd(fd.try_clone()?),
    ///     Err(OpenError::Untrusted { .. })
    /// ));
    /// // SAFETY: `fd` is a POSIX shared-memory object: plain memory.
    /// let mut tx = unsafe { mpmc::Sender::from_fd_unchecked(fd) }?;
    /// tx.send(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_fd_unchecked(fd: OwnedFd) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: Handle::attach(
                shm::open_fd::<MpmcRules>(fd, shm::FdTrust::Caller)?,
                Role::Sender,
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
    /// let (tx, _rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default().slots(8))?;
    /// assert_eq!(tx.capacity(), 8);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.h.ring.slots as usize
    }

    /// Largest message this ring accepts, in bytes.
    ///
    /// ```
    /// let cfg = shmring::mpmc::Config::default().max_message_bytes(240);
    /// let (tx, _rx) = shmring::mpmc::channel(&cfg)?;
    /// assert_eq!(tx.max_message(), 240);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.h.ring.max_message as usize
    }

    /// How blocked calls wait.
    ///
    /// ```
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// tx.set_wait_strategy(shmring::WaitStrategy::Block);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.h.ep.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    ///
    /// ```
    /// let (tx, _rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// assert_eq!(tx.wait_stats().waits, 0);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn wait_stats(&self) -> WaitStats {
        self.h.ep.stats
    }

    /// Whether every receiver has gone (closed, or died). Sends will fail from now on.
    ///
    /// For a shared ring this also looks whether the receivers' processes are still there
    /// (at most once per 50 ms per handle), so it notices receivers killed without closing
    /// even if this sender never blocks; dead ones are reaped, as a blocked call would.
    ///
    /// ```
    /// let (tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// assert!(!tx.is_disconnected());
    /// drop(rx);
    /// assert!(tx.is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.h.peers_gone()
    }

    /// The common case of [`try_claim`](Sender::try_claim), small enough to inline into the
    /// caller: the slot at `tail` is free and the compare-exchange wins. `None` means "ask
    /// `try_claim`", which handles everything else (full, lost races, closed, corrupted)
    /// and clears or rewrites the claim record this may leave behind.
    #[inline(always)]
    pub(super) fn claim_fast(&mut self) -> Option<u64> {
        if self.h.ep.stopped() || self.h.peers_closed() {
            return None;
        }
        let ring = &self.h.ring;
        let ctrl = ring.ctrl();
        // Relaxed: `t` only names the position to try. The claim goes ahead only if that
        // slot's `seq` is exactly `t` (Acquire, below) and the compare-exchange from `t`
        // wins, which it does only while `t` is the latest `tail`; a stale `t` (whose slot
        // may show a later lap) goes to `try_claim`, whose loads of `tail` are Acquire and
        // which alone reports corruption.
        let t = ctrl.tail.tail.load(Ordering::Relaxed);
        // SYNC POINT: Acquire pairs with the Release store of `seq` by the receiver that
        // released the slot, as in `try_claim`. Any `t` is masked to a slot; a `t` out of
        // range is left to `try_claim` to report.
        if t >= MAX_INDEX || ring.meta(t).seq.load(Ordering::Acquire) != t {
            return None;
        }
        self.h.record(t, TAG_SEND);
        // SYNC POINT: AcqRel, as in `try_claim`. A lost race goes to `try_claim`, so the
        // value read on failure is not used: Relaxed.
        ctrl.tail
            .tail
            .compare_exchange(t, t + 1, claim_order(), Ordering::Relaxed)
            .ok()?;
        // A refusal is recorded as corruption; `try_claim` reports it.
        self.h.lend(t).ok().map(|()| t)
    }

    /// Tries to claim the slot at `tail`, without waiting. Returns the claimed position, or
    /// `Again` after [`RETRY_BUDGET`] rounds that each found `tail` moved under it.
    pub(super) fn try_claim(&mut self) -> Result<u64, NoSlot> {
        if let Some(c) = self.h.ep.fault() {
            return Err(NoSlot::Corrupted(c));
        }
        if self.h.peers_closed() {
            return Err(NoSlot::Disconnected);
        }
        let ring = &self.h.ring;
        let ctrl = ring.ctrl();
        let cap = ring.slots;
        let mut recorded = false;
        // SYNC POINT: every load of `tail` here (and the failure ordering of the
        // compare-exchange) is Acquire, pairing with the senders' AcqRel compare-exchanges:
        // the sender that claimed `t - slots` loaded `seq == t - slots` before moving `tail`
        // on, so whoever sees `tail == t` sees that `seq` or a later one, never an older
        // value that would read as out of range (corruption). Loom model:
        // `sender_sees_the_lap_behind_tail`.
        let first = weaken(
            cfg!(shmring_mutant = "mpmc_relaxed_tail_load"),
            Ordering::Acquire,
        );
        let mut t = ctrl.tail.tail.load(first);
        let mut budget = RETRY_BUDGET;
        let bad = loop {
            if budget == 0 {
                if recorded {
                    self.h.clear_record();
                }
                return Err(NoSlot::Again);
            }
            budget -= 1;
            if t >= MAX_INDEX {
                // No ring ever gets there (2^62 messages): a peer wrote it.
                if recorded {
                    self.h.clear_record();
                }
                break t;
            }
            // SYNC POINT: Acquire pairs with the Release store of `seq` by the receiver that
            // released the slot (`Receiver::release`) or by a recovery: the receiver is done
            // reading before we overwrite the payload.
            let s = ring.meta(t).seq.load(Ordering::Acquire);
            if s == t {
                self.h.record(t, TAG_SEND);
                recorded = true;
                // SYNC POINT: see `claim_order`.
                match ctrl.tail.tail.compare_exchange_weak(
                    t,
                    t + 1,
                    claim_order(),
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        return match self.h.lend(t) {
                            Ok(()) => Ok(t),
                            Err(c) => Err(NoSlot::Corrupted(c)),
                        };
                    }
                    Err(cur) => {
                        t = cur;
                        continue;
                    }
                }
            }
            let sm = s & !SKIP;
            let full = if cfg!(shmring_mutant = "mpmc_full_off_by_one") {
                sm < t && sm + cap > t
            } else {
                sm < t && sm + cap >= t
            };
            if full {
                // The slot still holds the previous lap's message: full, unless `tail`
                // moved meanwhile.
                let now = ctrl.tail.tail.load(Ordering::Acquire);
                if now != t {
                    t = now;
                    continue;
                }
                if recorded {
                    self.h.clear_record();
                }
                return Err(NoSlot::Busy);
            }
            if sm > t {
                // Another sender claimed `t` already; its `tail` store happened before the
                // `seq` we saw, so a reload shows a newer tail.
                let now = ctrl.tail.tail.load(Ordering::Acquire);
                if now != t {
                    t = now;
                    continue;
                }
            }
            break s;
        };
        Err(NoSlot::Corrupted(self.h.corrupt(Corruption::new(
            "slot sequence out of range for the tail",
            bad,
        ))))
    }

    /// Checks the size, then claims a slot, waiting per the strategy up to `deadline`.
    #[inline]
    pub(super) fn claim(&mut self, len: usize, deadline: Deadline) -> Result<u64, ClaimError> {
        if len as u64 <= self.h.ring.max_message {
            if let Some(pos) = self.claim_fast() {
                return Ok(pos);
            }
        }
        self.claim_slower(len, deadline)
    }

    /// Refuses a message larger than the ring's maximum.
    pub(super) fn check_size(&self, len: usize) -> Result<(), ClaimError> {
        if len as u64 > self.h.ring.max_message {
            return Err(ClaimError::TooLarge {
                len,
                max: self.h.ring.max_message as usize,
            });
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    pub(super) fn claim_slower(
        &mut self,
        len: usize,
        deadline: Deadline,
    ) -> Result<u64, ClaimError> {
        self.check_size(len)?;
        match self.try_claim() {
            Ok(pos) => Ok(pos),
            Err(NoSlot::Busy | NoSlot::Again) => self.claim_slow(deadline),
            Err(e) => Err(e.into()),
        }
    }

    /// `try_claim`, tried again while it runs out of its retry budget and `deadline` has not
    /// passed; `Busy` once it has.
    fn claim_until(&mut self, deadline: Deadline) -> Result<u64, NoSlot> {
        loop {
            match self.try_claim() {
                Err(NoSlot::Again) if !deadline.expired() => {}
                Err(NoSlot::Again) => return Err(NoSlot::Busy),
                r => return r,
            }
        }
    }

    #[cold]
    pub(super) fn claim_slow(&mut self, deadline: Deadline) -> Result<u64, ClaimError> {
        let ring = self.h.ring.clone();
        let writable = &ring.ctrl().wait.writable;
        let strategy = self.h.ep.strategy;
        let mut stats = self.h.ep.stats;
        let mut spin = self.h.ep.spin;
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut clock = self.h.ep.throttle;
        let result = writable.wait(
            strategy,
            deadline,
            &mut stats,
            &mut spin,
            || match self.claim_until(deadline) {
                Ok(pos) => Poll::Ready(Ok(pos)),
                Err(NoSlot::Busy) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e.into())),
            },
            || match check_peers(&ring, &mut clock) {
                Ok(()) => Poll::Pending,
                Err(c) => Poll::Ready(Err(ClaimError::Corrupted(c))),
            },
        );
        self.h.ep.stats = stats;
        self.h.ep.spin = spin;
        self.h.ep.throttle = clock;
        if let Some(c) = self.h.ep.truncated(&ring.storage) {
            return Err(ClaimError::Corrupted(c));
        }
        match result {
            Ok(Err(ClaimError::Corrupted(c))) => Err(ClaimError::Corrupted(self.h.corrupt(c))),
            Ok(r) => r,
            Err(_) => Err(ClaimError::Timeout),
        }
    }

    /// The slow-path peer check after a `try_` call found the ring full: `Full`, unless the
    /// check found the ring corrupted.
    #[cold]
    pub(super) fn check_after_busy(&mut self) -> ClaimError {
        match check_peers(&self.h.ring, &mut self.h.ep.throttle) {
            Ok(()) => ClaimError::Full,
            Err(c) => ClaimError::Corrupted(self.h.corrupt(c)),
        }
    }

    /// Publishes the claimed position `pos` holding `len` payload bytes.
    #[inline]
    pub(super) fn publish(&mut self, pos: u64, len: usize) {
        let ring = &self.h.ring;
        ring.region.track_write(ring.payload(pos), len);
        let meta = ring.meta(pos);
        meta.len.store(len as u32, Ordering::Relaxed);
        // Before the store that hands the slot over: a receiver of this process may claim it
        // the moment it reads as full.
        self.h.give_back(pos);
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq` in
        // `Receiver::try_take`: the length and payload are visible before the slot reads as
        // full.
        let order = weaken(
            cfg!(shmring_mutant = "mpmc_relaxed_publish"),
            Ordering::Release,
        );
        meta.seq.store(pos + 1, order);
        ring.ctrl().wait.readable.notify(&ring.storage);
    }

    /// Gives up the claimed position `pos`: receivers skip it.
    #[cold]
    pub(super) fn abandon(&mut self, pos: u64) {
        let ring = &self.h.ring;
        // Before the hand-over, as in `publish`.
        self.h.give_back(pos);
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq`: what the grant
        // wrote into the slot happens before the receiver that skips the position releases
        // it to the sender of the next lap (loom model
        // `dropped_grant_slot_is_rewritten_by_another_thread`).
        let order = weaken(
            cfg!(shmring_mutant = "mpmc_relaxed_abandon"),
            Ordering::Release,
        );
        ring.meta(pos).seq.store((pos + 1) | SKIP, order);
        ring.ctrl().wait.readable.notify(&ring.storage);
    }

    #[inline]
    pub(super) fn write_and_publish(&mut self, pos: u64, msg: &[u8]) {
        let ring = &self.h.ring;
        // SAFETY: the payload range of a claimed slot lies inside the region (index masked,
        // `len <= max_message <= slot_size - 16`) and is ours alone until published.
        let dst = unsafe { ring.region.slice_mut(ring.payload(pos), msg.len()) };
        crate::sync::region::copy_in(dst, msg);
        self.publish(pos, msg.len());
    }

    /// Sends a message, waiting while the ring is full.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if every receiver is gone, [`SendError::TooLarge`] if the
    /// message exceeds [`max_message`](Sender::max_message) (the error states both sizes),
    /// [`SendError::Corrupted`]; all hand the message back.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default().max_message_bytes(48))?;
    /// tx.send(b"ping")?;
    /// let big = [0u8; 49];
    /// let err = tx.send(&big).unwrap_err();
    /// assert_eq!(err.to_string(), "message of 49 bytes exceeds the ring's maximum message size of 48 bytes");
    /// drop(rx);
    /// let err = tx.send(b"lost?").unwrap_err();
    /// assert!(err.is_disconnected());
    /// // The caller still holds the message; the error borrows nothing, so `?` converts it.
    /// let boxed: Box<dyn std::error::Error + Send + Sync> = err.into();
    /// assert!(boxed.to_string().contains("gone"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        match self.claim(msg.len(), Deadline::never()) {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send(())),
        }
    }

    /// Sends a message if a slot is free now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if no slot is free right now (one might be soon), otherwise
    /// as [`send`](Sender::send). The message is handed back.
    ///
    /// ```
    /// use shmring::{mpmc, TrySendError};
    /// let (mut tx, _rx) = mpmc::channel(&shmring::mpmc::Config::default().slots(2))?;
    /// tx.try_send(b"a")?;
    /// tx.try_send(b"b")?;
    /// assert!(matches!(tx.try_send(b"c"), Err(TrySendError::Full(()))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        if msg.len() as u64 <= self.h.ring.max_message {
            if let Some(pos) = self.claim_fast() {
                self.write_and_publish(pos, msg);
                return Ok(());
            }
        }
        self.try_send_slow(msg)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn try_send_slow(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        if let Err(e) = self.check_size(msg.len()) {
            return Err(e.into_try_send(()));
        }
        match self.try_claim() {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(NoSlot::Busy) => Err(self.check_after_busy().into_try_send(())),
            Err(e) => Err(ClaimError::from(e).into_try_send(())),
        }
    }

    /// Sends a message, waiting at most `timeout` for a free slot.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] if no slot became free in time, otherwise as
    /// [`send`](Sender::send). The message is handed back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::{mpmc, SendTimeoutError};
    /// let (mut tx, _rx) = mpmc::channel(&shmring::mpmc::Config::default().slots(2))?;
    /// tx.send(b"1")?;
    /// tx.send(b"2")?;
    /// let e = tx.send_timeout(b"3", Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, SendTimeoutError::Timeout(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        match self.claim(msg.len(), Deadline::after(timeout)) {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send_timeout(())),
        }
    }

    /// Closes this sender. When it was the last sender, receivers get what was sent, then
    /// `Disconnected`. Dropping the sender does the same.
    ///
    /// ```
    /// let (tx, mut rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
    /// let tx2 = tx.try_clone()?;
    /// tx.close();
    /// assert!(!rx.is_disconnected());
    /// tx2.close();
    /// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.h.close();
    }
}
