//! The producer: claims space, writes records, publishes them; waits while the ring is full.

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::ring::{
    CONSUMER_SLOT, PRODUCER_SLOT, Ring, consumer_closed, message_header, pad_header, record_size,
};
use crate::OpenOptions;
use crate::config::SpscConfig as Config;
use crate::endpoint::EndpointState;
use crate::error::{Corruption, OpenError, SendError, SendTimeoutError, TrySendError};
use crate::geometry::{RECORD_HEADER, SpscRules};
use crate::shm;
use crate::storage::{Presence, ROLE_PRODUCER};
use crate::sync::waiter::{SLICE, WaitStats, WaitStrategy};
use crate::sync::{Deadline, Ordering, weaken};

/// The result of claiming space for a record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Claim {
    /// Bytes of padding before the record (0, or up to the end of the region).
    pub(super) pad: u64,
    /// Region offset of the record header.
    pub(super) at: u64,
    /// Payload bytes granted.
    pub(super) len: u64,
    /// Bytes between the record header and the payload (0, or up to 56 to put a large
    /// payload on a 64-byte line).
    pub(super) gap: u64,
}

impl Claim {
    /// Region offset of the payload.
    #[inline]
    pub(super) fn payload(&self) -> usize {
        (self.at + RECORD_HEADER + self.gap) as usize
    }

    /// Bytes of the ring the claim takes: padding, the record, and the terminator after it.
    #[inline]
    pub(super) fn need(&self) -> u64 {
        self.pad + record_size(self.len, self.gap) + RECORD_HEADER
    }
}

/// Why space could not be claimed.
#[derive(Clone, Copy, Debug)]
pub(super) enum NoSpace {
    Full,
    Disconnected,
    Corrupted(Corruption),
}

/// The sending end of an SPSC ring.
///
/// Not `Clone` and not `Sync`; methods take `&mut self` because the producer caches the
/// consumer's index. It may be sent to another thread.
pub struct Producer {
    pub(super) ring: Ring,
    /// Our own index: bytes written. Ahead of `published` only inside a [`Batch`].
    pub(super) tail: u64,
    /// Bytes published (equal to the shared `tail`).
    pub(super) published: u64,
    /// The header word of the first written but unpublished record (a padding record's, or a
    /// message's), which goes to position `published` when the producer publishes: storing it
    /// publishes every record written behind it. Meaningless while `tail == published`.
    pub(super) first_header: u64,
    /// Last value of the consumer's `head` we loaded; at most the real one.
    pub(super) head_cache: u64,
    /// Whether we set `room_wanted` (and have not cleared it since).
    pub(super) wants_room: bool,
    /// Liveness throttle, fork guard, corruption, wait strategy and statistics.
    pub(super) ep: EndpointState,
}

// SAFETY: the producer's raw pointers refer to memory kept alive by `ring.storage` (an Arc),
// and only the producer writes the producer side of the ring; moving it to another thread does
// not create a second producer.
unsafe impl Send for Producer {}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity)
            .field("max_message", &self.ring.max_message)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl Producer {
    pub(super) fn new(ring: Ring, strategy: WaitStrategy, presence: Option<Presence>) -> Producer {
        let (tail, head_cache) = ring.start;
        // An opened ring's indices come from shared memory: check them before the first use
        // (positions must be record aligned, and the used bytes within the capacity; indices
        // count modulo 2^64, so only their difference is checked).
        let broken =
            (tail % 8 != 0 || head_cache % 8 != 0 || tail.wrapping_sub(head_cache) > ring.capacity)
                .then(|| Corruption::new("producer index out of range", tail));
        Producer {
            ring,
            tail,
            published: tail,
            first_header: 0,
            head_cache,
            wants_room: false,
            ep: EndpointState::new(strategy, SLICE)
                .with_broken(broken)
                .with_presence(presence),
        }
    }

    /// Creates a named ring (exclusively: an existing name is an error) and returns its
    /// producer. The consumer opens it by name with [`Consumer::open`](super::Consumer::open).
    ///
    /// # Errors
    /// [`OpenError`]: invalid name or configuration, `AlreadyExists`, `PermissionDenied`,
    /// `NoSpace`, or an OS error.
    ///
    /// ```
    /// use shmring::spsc;
    /// let name = format!("/shmring-doc-create-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, shmring::spsc::Config::default().capacity_bytes(1 << 16))?;
    /// let mut rx = spsc::Consumer::open(&name)?; // normally in another process
    /// shmring::unlink(&name)?;                   // the name can go once both are attached
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Producer, OpenError> {
        let config = config.borrow();
        let (ring, presence) =
            Ring::create(Some(name), config, Some((PRODUCER_SLOT, ROLE_PRODUCER)))?;
        Ok(Producer::new(ring, config.wait_strategy, presence))
    }

    /// Opens the producer end of an existing named ring (created by [`Consumer::create`](super::Consumer::create)).
    ///
    /// # Errors
    /// [`OpenError`]: `NotFound`, `PermissionDenied`, `Untrusted` (a symbolic link, or an
    /// object other users could write: see [`OpenOptions`]), a layout mismatch (`NotShmring`,
    /// `UnsupportedVersion`, `WrongKind`, `TooSmall`, `BadGeometry`, `StillInitialising`,
    /// `Poisoned`), or `EndpointTaken` / `EndpointClosed` if a producer already attached.
    ///
    /// ```
    /// use shmring::spsc;
    /// let name = format!("/shmring-doc-popen-{}", std::process::id());
    /// let mut rx = spsc::Consumer::create(&name, shmring::spsc::Config::default())?;
    /// let mut tx = spsc::Producer::open(&name)?;
    /// shmring::unlink(&name)?;
    /// assert!(matches!(spsc::Producer::open(&name), Err(shmring::OpenError::NotFound(_))));
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(name: &str) -> Result<Producer, OpenError> {
        Producer::open_with(name, OpenOptions::default())
    }

    /// Opens a named ring like [`open`](Producer::open), as `options` say: whether to trust
    /// an object other users could write, and whether to wait for the ring to be created.
    ///
    /// # Errors
    /// As [`open`](Producer::open).
    ///
    /// ```
    /// let name = format!("/shmring-doc-openwith-producer-{}", std::process::id());
    /// let options = shmring::OpenOptions::default().timeout(std::time::Duration::from_millis(20));
    /// let err = shmring::spsc::Producer::open_with(&name, options).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_with(
        name: &str,
        options: impl std::borrow::Borrow<OpenOptions>,
    ) -> Result<Producer, OpenError> {
        shm::open_with::<SpscRules, _>(name, options.borrow(), |opened| {
            let (ring, presence) = Ring::attach(opened, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
            Ok(Producer::new(ring, WaitStrategy::default(), Some(presence)))
        })
    }

    /// Opens the producer end of a named ring like [`open`](Producer::open), waiting up to
    /// `timeout` for the ring to be created if it does not exist yet (for a process that may
    /// start before its peer).
    ///
    /// # Errors
    /// As [`open`](Producer::open); `NotFound` if the ring still does not exist at the deadline.
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Producer, OpenError> {
        Producer::open_with(name, OpenOptions::default().timeout(timeout))
    }

    /// Attaches as the producer of a ring given by a file descriptor, such as the memfd of an
    /// anonymous ring received over a Unix socket or inherited across `exec`.
    ///
    /// Only a memfd sealed against shrinking (`F_SEAL_SHRINK`, as `create_anonymous` makes it)
    /// is accepted: then no holder of another descriptor can truncate the ring under the
    /// mapping. Any other descriptor (a named object's, an unsealed memfd's, a file's) is
    /// refused; [`from_fd_unchecked`](Producer::from_fd_unchecked) accepts it.
    ///
    /// # Errors
    /// [`OpenError::Untrusted`] for a descriptor that is not a memfd sealed against
    /// shrinking; otherwise as [`Producer::open`].
    pub fn from_fd(fd: OwnedFd) -> Result<Producer, OpenError> {
        let opened = shm::open_fd::<SpscRules>(fd, shm::FdTrust::SealedMemfd)?;
        let (ring, presence) = Ring::attach(opened, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
        Ok(Producer::new(ring, WaitStrategy::default(), Some(presence)))
    }

    /// Attaches as the producer of a ring given by any descriptor of a shared-memory
    /// object or file that maps as plain memory: a named object's, an unsealed memfd's, a
    /// file's. [`from_fd`](Producer::from_fd) accepts only sealed memfds.
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
    /// instead of killing the process. That is also why [`from_fd`](Producer::from_fd) can
    /// refuse such descriptors without `unsafe`: the refusal is a default, not a safety rule.
    ///
    /// # Errors
    /// As [`Producer::open`].
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use shmring::{spsc, OpenError};
    /// let name = format!("/shmring-doc-unchecked-producer-{}", std::process::id());
    /// let mut rx = spsc::Consumer::create(&name, spsc::Config::default())?;
    /// // A descriptor of the named object, as another process could pass it on.
    /// let fd: OwnedFd = std::fs::OpenOptions::new()
    ///     .read(true)
    ///     .write(true)
    ///     .open(format!("/dev/shm{name}"))?
    ///     .into();
    /// shmring::unlink(&name)?;
    /// assert!(matches!(
    ///     spsc::Producer::from_fd(fd.try_clone()?),
    ///     Err(OpenError::Untrusted { .. })
    /// ));
    /// // SAFETY: `fd` is a POSIX shared-memory object: plain memory.
    /// let mut tx = unsafe { spsc::Producer::from_fd_unchecked(fd) }?;
    /// tx.send(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_fd_unchecked(fd: OwnedFd) -> Result<Producer, OpenError> {
        let opened = shm::open_fd::<SpscRules>(fd, shm::FdTrust::Caller)?;
        let (ring, presence) = Ring::attach(opened, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
        Ok(Producer::new(ring, WaitStrategy::default(), Some(presence)))
    }

    /// Creates an anonymous ring on a sealed memfd and returns its producer, with a
    /// descriptor of the memfd to hand to another process (over a Unix socket, or across
    /// `fork`/`exec`), which attaches with [`Consumer::from_fd`](super::Consumer::from_fd).
    ///
    /// # Errors
    /// As [`Producer::create`].
    ///
    /// ```
    /// use shmring::spsc;
    /// let (mut tx, fd) = spsc::Producer::create_anonymous(spsc::Config::default())?;
    /// let mut rx = spsc::Consumer::from_fd(fd)?; // normally in another process
    /// tx.send(b"over a memfd")?;
    /// assert_eq!(&*rx.recv()?, b"over a memfd");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_anonymous(
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<(Producer, OwnedFd), OpenError> {
        let config = config.borrow();
        let (ring, presence) = Ring::create(None, config, Some((PRODUCER_SLOT, ROLE_PRODUCER)))?;
        let fd = ring.storage.dup_fd()?;
        Ok((Producer::new(ring, config.wait_strategy, presence), fd))
    }

    /// Bytes of the ring in use: records published and not yet released (padding
    /// included). Both sides move meanwhile, so it is a snapshot. (An SPSC ring holds
    /// messages of any size, so it counts bytes, not messages.)
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// assert!(tx.is_empty() && rx.is_empty());
    /// tx.send(b"abc")?;
    /// assert_eq!(rx.used_bytes(), 16); // an 8-byte record header, the payload padded to 8
    /// assert!(!tx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn used_bytes(&self) -> usize {
        self.ring.used_bytes(None)
    }

    /// Whether no message is waiting in the ring (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.used_bytes() == 0
    }

    /// Capacity of the data region in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Largest message this ring accepts, in bytes.
    pub fn max_message(&self) -> usize {
        self.ring.max_message as usize
    }

    /// How blocked calls wait.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.ep.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.ep.stats
    }

    /// Whether the consumer has closed or died. It might close right after this returns
    /// `false`. Looks at the consumer's process at most once per 100 ms.
    pub fn is_disconnected(&self) -> bool {
        self.ring
            .peer_closed(&self.ep, CONSUMER_SLOT, consumer_closed)
    }

    /// Publishes a claimed record with a `len`-byte payload (`len <= claim.len`).
    #[inline]
    pub(super) fn publish(&mut self, claim: Claim, len: u64) {
        self.write_record(claim, len);
        self.flush();
    }

    /// Writes the headers of a claimed record and advances our private tail; the record is
    /// visible to the consumer only after [`Producer::flush`].
    ///
    /// Order matters: the consumer polls the header word at its position and follows a
    /// record as soon as that word is ready, so every word it can reach from there must be
    /// written first. The terminator (0) after the record is stored before the record's own
    /// header is, and the header that makes the batch visible — the first unpublished one,
    /// at position `published` — is stored last, in `flush`, with Release.
    #[inline]
    pub(super) fn write_record(&mut self, claim: Claim, len: u64) {
        let region = self.ring.region;
        let rec = record_size(len, claim.gap);
        let end = claim.at + rec;
        let next = if end == self.ring.capacity { 0 } else { end };
        // The words stored here are 8-byte aligned positions inside the free space `try_claim`
        // found room for (the record, the padding before it and the terminator word after
        // it), which the consumer does not read until the first header is published.
        // SAFETY: the terminator word, in claimed free space (above).
        unsafe { region.store_word(next as usize, 0, Ordering::Relaxed) };
        let header = message_header(len, claim.gap);
        let first = if claim.pad != 0 {
            // The message sits at 0, reachable only through the padding record.
            // SAFETY: the message's header word at 0, in claimed free space (above).
            unsafe { region.store_word(0, header, Ordering::Relaxed) };
            pad_header(claim.pad)
        } else {
            header
        };
        if self.tail == self.published {
            self.first_header = first;
        } else {
            let pos = (self.tail & self.ring.mask()) as usize;
            // SAFETY: the record's (or padding's) header word at our tail, in claimed free
            // space behind the unpublished first header (above).
            unsafe { region.store_word(pos, first, Ordering::Relaxed) };
        }
        region.track_write(claim.payload(), len as usize);
        self.tail = self.tail.wrapping_add(claim.pad + rec);
    }

    /// Publishes every record written so far by storing the first one's header with Release,
    /// and wakes the consumer if it sleeps.
    #[inline]
    pub(super) fn flush(&mut self) {
        if self.tail == self.published {
            return;
        }
        let pos = (self.published & self.ring.mask()) as usize;
        // SYNC POINT: Release pairs with the consumer's Acquire load of the header word in
        // `Consumer::peek`: the records behind it (headers, payloads, the terminator) are
        // written before it is seen ready.
        let order = weaken(cfg!(shmring_mutant = "relaxed_ready"), Ordering::Release);
        // Our own record of what is published first, for a consumer of this process (see
        // `shm::LocalEnds`): one that sees the header sees this too.
        if let Some(local) = &self.ring.local {
            local.producer.advance(self.tail);
        }
        // SAFETY: `pos` is the aligned position of the first unpublished record, in space
        // this producer claimed.
        unsafe { self.ring.region.store_word(pos, self.first_header, order) };
        self.published = self.tail;
        let ctrl = self.ring.ctrl();
        // For `used_bytes` and the inspection tools only: the consumer does not wait on it.
        ctrl.producer.tail.store(self.tail, Ordering::Release);
        ctrl.wait.readable.notify(&self.ring.storage);
    }

    /// Sends a message, waiting while the ring is full.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the consumer is gone, [`SendError::TooLarge`] if the
    /// message exceeds [`max_message`](Producer::max_message); both hand the message back.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"ping")?;
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
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send(())),
        }
    }

    /// Sends a message if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if there is no room right now (the ring might not be full for
    /// long), otherwise as [`send`](Producer::send). The message is handed back.
    ///
    /// ```
    /// use shmring::{spsc, TrySendError};
    /// let (mut tx, _rx) = spsc::channel(&shmring::spsc::Config::default().capacity_bytes(64))?;
    /// tx.try_send(&[1; 16])?; // a 24-byte record
    /// tx.try_send(&[2; 16])?; // the ring is now full (it keeps 8 bytes after the last record)
    /// assert!(matches!(tx.try_send(&[3; 16]), Err(TrySendError::Full(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        match self.try_claim_once(msg.len()) {
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_try_send(())),
        }
    }

    /// Sends a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] if there was still no room, otherwise as
    /// [`send`](Producer::send). The message is handed back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::{spsc, SendTimeoutError};
    /// let (mut tx, _rx) = spsc::channel(&shmring::spsc::Config::default().capacity_bytes(32))?;
    /// tx.send(&[0; 8])?; // a 16-byte record
    /// tx.send(&[])?;     // an 8-byte one: full (8 bytes stay free after the last record)
    /// let e = tx.send_timeout(&[0; 8], Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, SendTimeoutError::Timeout(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        match self.claim(msg.len(), Deadline::after(timeout)) {
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send_timeout(())),
        }
    }

    #[inline]
    pub(super) fn write_and_publish(&mut self, claim: Claim, msg: &[u8]) {
        if cfg!(shmring_mutant = "ready_before_payload") {
            // Mutant: the record is published before its payload is written.
            self.publish(claim, msg.len() as u64);
            self.write_payload(claim, msg);
            return;
        }
        self.write_payload(claim, msg);
        self.publish(claim, msg.len() as u64);
    }

    #[inline]
    pub(super) fn write_payload(&mut self, claim: Claim, msg: &[u8]) {
        // SAFETY: the payload range follows the claimed record header (and gap), inside the
        // claimed free space, which only the producer touches until it is published.
        let dst = unsafe { self.ring.region.slice_mut(claim.payload(), msg.len()) };
        crate::sync::region::copy_in(dst, msg);
    }

    /// Closes the producer: the consumer receives what was sent, then `Disconnected`.
    /// Dropping the producer does the same.
    ///
    /// A handle inherited by a forked child is not that endpoint: in the child every call
    /// that would move data fails with a [`Corruption`] for which
    /// [`is_inherited`](Corruption::is_inherited) holds, and dropping it only unmaps the
    /// ring (as closing an unused pipe end should not end the parent's stream).
    ///
    /// ```
    /// let (tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.close();
    /// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.close_inner();
    }

    pub(super) fn close_inner(&mut self) {
        if !self.ep.begin_close() {
            // An inherited copy in a forked child: the endpoint belongs to the parent, which
            // is still using it. Only unmap.
            return;
        }
        self.flush();
        let w = &self.ring.ctrl().wait;
        // SYNC POINT: Release after our last publish: a consumer that sees the flag (Acquire)
        // also sees the final tail (`spsc_close::consumer_polling_sees_close_after_last_message`).
        let order = weaken(cfg!(shmring_mutant = "relaxed_close"), Ordering::Release);
        w.producer_closed.store(1, order);
        w.readable.notify_closed(&self.ring.storage);
        self.ring.leave_locally(PRODUCER_SLOT);
        self.ring.storage.detach(PRODUCER_SLOT);
        self.ep.end_presence();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close_inner();
    }
}
