//! The consumer: finds and validates records, lends them out in place, releases their space;
//! waits while the ring is empty.

use std::fmt;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::Duration;

use super::ring::{
    CONSUMER_SLOT, PAD, PRODUCER_SLOT, Ring, pad_header, parse_header, producer_closed, record_size,
};
use crate::OpenOptions;
use crate::config::SpscConfig as Config;
use crate::endpoint::EndpointState;
use crate::error::{Corruption, OpenError, RecvError, RecvTimeoutError, TryRecvError};
use crate::geometry::{RECORD_HEADER, SpscRules};
use crate::shm;
use crate::storage::{Presence, ROLE_CONSUMER};
use crate::sync::waiter::{Poll, SLICE, WaitStats, WaitStrategy};
use crate::sync::{Deadline, Ordering};

/// Where the next record is, after validation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peeked {
    /// Region offset of the payload.
    pub(super) off: u64,
    /// Payload length.
    pub(super) len: u64,
    /// Bytes to release (padding + record).
    pub(super) advance: u64,
}

/// The receiving end of an SPSC ring.
///
/// Not `Clone` and not `Sync`; methods take `&mut self` because the consumer caches the
/// producer's index. It may be sent to another thread.
pub struct Consumer {
    pub(super) ring: Ring,
    /// Our own index: bytes read (the messages lent out are not counted until dropped).
    pub(super) head: u64,
    /// The `head` last stored in the shared control block: bytes released to the producer.
    /// Released lazily (see `release`).
    pub(super) released: u64,
    /// Liveness throttle, fork guard, corruption, wait strategy and statistics.
    pub(super) ep: EndpointState,
}

// SAFETY: as for `Producer`: the pointers refer to memory kept alive by `ring.storage`, and
// moving the consumer does not create a second one.
unsafe impl Send for Consumer {}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity)
            .field("max_message", &self.ring.max_message)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(super) fn new(ring: Ring, strategy: WaitStrategy, presence: Option<Presence>) -> Consumer {
        let head = ring.start.1;
        // Checked before the first use: record positions are 8-byte aligned.
        let broken = (head % 8 != 0).then(|| Corruption::new("consumer index misaligned", head));
        Consumer {
            ring,
            head,
            released: head,
            ep: EndpointState::new(strategy, SLICE)
                .with_broken(broken)
                .with_presence(presence),
        }
    }

    /// Creates a named ring (exclusively) and returns its consumer; the producer opens it with
    /// [`Producer::open`](super::Producer::open).
    ///
    /// # Errors
    /// As [`Producer::create`](super::Producer::create).
    ///
    /// ```
    /// use shmring::spsc;
    /// let name = format!("/shmring-doc-ccreate-{}", std::process::id());
    /// let rx = spsc::Consumer::create(&name, shmring::spsc::Config::default())?;
    /// assert!(matches!(
    ///     spsc::Consumer::create(&name, shmring::spsc::Config::default()),
    ///     Err(shmring::OpenError::AlreadyExists(_))
    /// ));
    /// shmring::unlink(&name)?;
    /// # drop(rx);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Consumer, OpenError> {
        let config = config.borrow();
        let (ring, presence) =
            Ring::create(Some(name), config, Some((CONSUMER_SLOT, ROLE_CONSUMER)))?;
        Ok(Consumer::new(ring, config.wait_strategy, presence))
    }

    /// Opens the consumer end of an existing named ring (created by [`Producer::create`](super::Producer::create)).
    ///
    /// # Errors
    /// As [`Producer::open`](super::Producer::open).
    ///
    /// ```
    /// let missing = format!("/shmring-doc-missing-{}", std::process::id());
    /// match shmring::spsc::Consumer::open(&missing) {
    ///     Err(shmring::OpenError::NotFound(name)) => assert_eq!(name, missing),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// ```
    pub fn open(name: &str) -> Result<Consumer, OpenError> {
        Consumer::open_with(name, OpenOptions::default())
    }

    /// Opens a named ring like [`open`](Consumer::open), as `options` say: whether to trust
    /// an object other users could write, and whether to wait for the ring to be created.
    ///
    /// # Errors
    /// As [`open`](Consumer::open).
    ///
    /// ```
    /// let name = format!("/shmring-doc-openwith-consumer-{}", std::process::id());
    /// let options = shmring::OpenOptions::default().timeout(std::time::Duration::from_millis(20));
    /// let err = shmring::spsc::Consumer::open_with(&name, options).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_with(
        name: &str,
        options: impl std::borrow::Borrow<OpenOptions>,
    ) -> Result<Consumer, OpenError> {
        shm::open_with::<SpscRules, _>(name, options.borrow(), |opened| {
            let (ring, presence) = Ring::attach(opened, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
            Ok(Consumer::new(ring, WaitStrategy::default(), Some(presence)))
        })
    }

    /// Attaches as the consumer of a ring given by a file descriptor (see
    /// [`Producer::create_anonymous`](super::Producer::create_anonymous)).
    ///
    /// Only a memfd sealed against shrinking (`F_SEAL_SHRINK`, as `create_anonymous` makes it)
    /// is accepted: then no holder of another descriptor can truncate the ring under the
    /// mapping. Any other descriptor (a named object's, an unsealed memfd's, a file's) is
    /// refused; [`from_fd_unchecked`](Consumer::from_fd_unchecked) accepts it.
    ///
    /// # Errors
    /// [`OpenError::Untrusted`] for a descriptor that is not a memfd sealed against
    /// shrinking; otherwise as [`Producer::open`](super::Producer::open).
    pub fn from_fd(fd: OwnedFd) -> Result<Consumer, OpenError> {
        let opened = shm::open_fd::<SpscRules>(fd, shm::FdTrust::SealedMemfd)?;
        let (ring, presence) = Ring::attach(opened, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
        Ok(Consumer::new(ring, WaitStrategy::default(), Some(presence)))
    }

    /// Attaches as the consumer of a ring given by any descriptor of a shared-memory
    /// object or file that maps as plain memory: a named object's, an unsealed memfd's, a
    /// file's. [`from_fd`](Consumer::from_fd) accepts only sealed memfds.
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
    /// instead of killing the process. That is also why [`from_fd`](Consumer::from_fd) can
    /// refuse such descriptors without `unsafe`: the refusal is a default, not a safety rule.
    ///
    /// # Errors
    /// As [`Producer::open`](super::Producer::open).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use shmring::{spsc, OpenError};
    /// let name = format!("/shmring-doc-unchecked-consumer-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, spsc::Config::default())?;
    /// // A descriptor of the named object, as another process could pass it on.
    /// let fd: OwnedFd = std::fs::OpenOptions::new()
    ///     .read(true)
    ///     .write(true)
    ///     .open(format!("/dev/shm{name}"))?
    ///     .into();
    /// shmring::unlink(&name)?;
    /// assert!(matches!(
    ///     spsc::Consumer::from_fd(fd.try_clone()?),
    ///     Err(OpenError::Untrusted { .. })
    /// ));
    /// // SAFETY: `fd` is a POSIX shared-memory object: plain memory.
    /// let mut rx = unsafe { spsc::Consumer::from_fd_unchecked(fd) }?;
    /// tx.send(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_fd_unchecked(fd: OwnedFd) -> Result<Consumer, OpenError> {
        let opened = shm::open_fd::<SpscRules>(fd, shm::FdTrust::Caller)?;
        let (ring, presence) = Ring::attach(opened, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
        Ok(Consumer::new(ring, WaitStrategy::default(), Some(presence)))
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
        self.ring.used_bytes(Some(self.head))
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

    /// Finds the next record, if one is published. Validates everything it reads.
    ///
    /// The record at our position is published once its header word is ready; the producer
    /// writes everything behind that word (the payload, and the terminator where the next
    /// header goes) before it stores the word with Release, so one Acquire load is the whole
    /// handshake: the producer's `tail` line never moves for it.
    #[inline]
    pub(super) fn peek(&mut self) -> Result<Option<Peeked>, Corruption> {
        if let Some(c) = self.ep.fault() {
            return Err(c);
        }
        let cap = self.ring.capacity;
        let region = self.ring.region;
        let mut pos = self.head & self.ring.mask();
        let mut skip = 0;
        // SYNC POINT: Acquire pairs with the producer's Release store of the first header of
        // what it publishes, in `Producer::flush`: the records behind it are fully written.
        // SAFETY: `pos` is 8-byte aligned (indices advance by multiples of 8, checked when
        // the handle was made and on every record) and below the capacity.
        let mut word = unsafe { region.load_word(pos as usize, Ordering::Acquire) };
        if word == 0 {
            // The terminator: nothing published here yet. Give back what we read, so a
            // producer waiting for room is not kept waiting on a reader with nothing to do.
            if self.head != self.released {
                self.store_head();
            }
            return Ok(None);
        }
        if word & PAD != 0 {
            skip = cap - pos;
            if word != pad_header(skip) {
                return Err(self.corrupt(Corruption::new("bad padding record", word)));
            }
            pos = 0;
            // SAFETY: position 0 is aligned and inside the region; the producer wrote the
            // header there before it published the padding (Acquire above).
            word = unsafe { region.load_word(0, Ordering::Acquire) };
        }
        let Some((len, gap)) = parse_header(word) else {
            return Err(self.corrupt(Corruption::new("bad record header", word)));
        };
        let rec = record_size(len, gap);
        if len > self.ring.max_message || rec > cap - pos {
            return Err(self.corrupt(Corruption::new("record length out of range", len)));
        }
        // A producer of this process says itself how far it published: a forged header
        // must not lend out bytes it may be writing (see `shm::LocalEnds`). We say how far we
        // read first, for a producer that joins meanwhile: after its heavy barrier it sees
        // that, or we see it here (the light barrier pairs with it).
        if let Some(local) = &self.ring.local {
            local.consumer.set_bound(self.head.wrapping_add(skip + rec));
            crate::sync::barrier::light();
            if let Some(published) = local.producer.get() {
                let ahead = published.wrapping_sub(self.head);
                if ahead > cap || skip + rec > ahead {
                    return Err(self.corrupt(Corruption::new(
                        "record beyond what the producer of this process published",
                        word,
                    )));
                }
            }
        }
        Ok(Some(Peeked {
            off: pos + RECORD_HEADER + gap,
            len,
            advance: skip + rec,
        }))
    }

    #[cold]
    pub(super) fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.ep.corrupt(&self.ring.storage, c)
    }

    /// `peek`, plus end-of-stream detection when nothing is there.
    #[inline]
    pub(super) fn poll_record(&mut self) -> Poll<Result<Peeked, RecvError>> {
        match self.peek() {
            Ok(Some(p)) => Poll::Ready(Ok(p)),
            Err(c) => Poll::Ready(Err(RecvError::Corrupted(c))),
            Ok(None) => {
                let w = &self.ring.ctrl().wait;
                if w.producer_closed.load(Ordering::Acquire) == 0 {
                    return Poll::Pending;
                }
                // The producer closed after its last publish; look once more, since that
                // publish may have happened after our first look.
                match self.peek() {
                    Ok(Some(p)) => Poll::Ready(Ok(p)),
                    Ok(None) => Poll::Ready(Err(RecvError::Disconnected)),
                    Err(c) => Poll::Ready(Err(RecvError::Corrupted(c))),
                }
            }
        }
    }

    #[inline]
    pub(super) fn message(&mut self, p: Peeked) -> Message<'_> {
        // SAFETY: `p` was validated by `peek`: the payload lies inside the region and inside
        // the published bytes, which the producer will not touch until we release them (the
        // message borrows the consumer mutably, so release happens only on its drop).
        let data = unsafe { self.ring.region.slice(p.off as usize, p.len as usize) };
        Message {
            consumer: self,
            data: NonNull::from(data),
            off: p.off as usize,
            advance: p.advance,
        }
    }

    /// Releases `advance` bytes (the record just read and any padding before it) — to the
    /// producer only once a quarter of the ring was read since the last release, so that the
    /// consumer's `head` line moves to the producer once per quarter ring, not per message.
    /// The rest is given back when the consumer finds the ring empty (`peek`), at the end of
    /// a `drain`, or at close.
    ///
    /// While the producer asks for room (`room_wanted`, set once the ring is within a quarter
    /// of full), every release is stored at once: a producer waiting for room must not wait
    /// on a consumer that has released some and then stopped reading (the io_uring
    /// need-wakeup pattern: the waiting side announces itself, the other side publishes
    /// eagerly only when it sees the announcement). Nobody asking costs one load of a line
    /// the producer rarely writes, and no store.
    #[inline]
    pub(super) fn release(&mut self, advance: u64) {
        self.head = self.head.wrapping_add(advance);
        if self.head.wrapping_sub(self.released) >= self.ring.capacity / 4 || self.room_wanted() {
            self.store_head();
        }
    }

    /// Whether the producer asks for released room at once (see `release`).
    #[inline]
    pub(super) fn room_wanted(&self) -> bool {
        !cfg!(shmring_mutant = "lazy_release_only")
            && self.ring.ctrl().wait.room_wanted.load(Ordering::Relaxed) != 0
    }

    /// Publishes our `head` to the producer and wakes it if it sleeps. Not from a copy
    /// inherited by a forked child (a message it held at the fork, or a `drain` whose
    /// callback forked): the parent still reads that space and releases it itself.
    #[inline]
    pub(super) fn store_head(&mut self) {
        if self.ep.inherited() {
            return;
        }
        let ctrl = self.ring.ctrl();
        self.released = self.head;
        // Our own record first, for a producer of this process (see `shm::LocalEnds`).
        if let Some(local) = &self.ring.local {
            local.consumer.advance(self.head);
        }
        // SYNC POINT: Release pairs with the producer's Acquire load of `head` in
        // `Producer::try_claim`: we are done reading before the space is reused.
        ctrl.consumer.head.store(self.head, Ordering::Release);
        ctrl.wait.writable.notify(&self.ring.storage);
    }

    /// Receives the next message, waiting while the ring is empty. The returned guard derefs
    /// to the payload, which stays in the ring (zero copy) until the guard is dropped.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the producer is gone and everything it sent has been
    /// received (end of stream).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"one")?;
    /// tx.send(b"two")?;
    /// drop(tx);
    /// assert_eq!(&*rx.recv()?, b"one");
    /// assert_eq!(&*rx.recv()?, b"two");
    /// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        match self.recv_deadline(Deadline::never()) {
            Ok(p) => Ok(self.message(p)),
            Err(RecvTimeoutError::Corrupted(c)) => Err(RecvError::Corrupted(c)),
            // Without a deadline only end of stream ends the wait.
            Err(_) => Err(RecvError::Disconnected),
        }
    }

    /// Receives the next message if one is there.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is there (more might arrive),
    /// [`TryRecvError::Disconnected`] at end of stream.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// assert_eq!(rx.try_recv().unwrap_err(), shmring::TryRecvError::Empty);
    /// tx.send(b"now")?;
    /// assert_eq!(&*rx.try_recv()?, b"now");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        match self.poll_record() {
            Poll::Ready(Ok(p)) => Ok(self.message(p)),
            Poll::Ready(Err(e)) => Err(e.into()),
            Poll::Pending => Err(self.empty_or_ended()),
        }
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if nothing arrived in time, otherwise as
    /// [`recv`](Consumer::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e, shmring::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, RecvTimeoutError> {
        let p = self.recv_deadline(Deadline::after(timeout))?;
        Ok(self.message(p))
    }

    #[inline]
    pub(super) fn recv_deadline(&mut self, deadline: Deadline) -> Result<Peeked, RecvTimeoutError> {
        match self.poll_record() {
            Poll::Ready(r) => return r.map_err(Into::into),
            Poll::Pending => {}
        }
        self.recv_slow(deadline)
    }

    #[cold]
    pub(super) fn recv_slow(&mut self, deadline: Deadline) -> Result<Peeked, RecvTimeoutError> {
        // The wait channel lives in the control block, which `storage` keeps alive.
        let ctrl = self.ring.ctrl_detached();
        let readable = &ctrl.wait.readable;
        let storage = self.ring.storage.clone();
        let strategy = self.ep.strategy;
        let mut stats = self.ep.stats;
        let mut spin = self.ep.spin;
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut throttle = self.ep.throttle;
        let result = readable.wait(
            strategy,
            deadline,
            &mut stats,
            &mut spin,
            || self.poll_record(),
            || {
                if throttle.due() && storage.endpoint_gone(PRODUCER_SLOT) {
                    // The producer died without closing: close for it; the next poll drains
                    // what it published and then reports end of stream.
                    ctrl.wait.producer_closed.store(1, Ordering::Release);
                }
                // Last: the look at the peer may be the access that finds a truncation.
                match storage.truncation() {
                    Some(c) => Poll::Ready(Err(RecvError::Corrupted(c))),
                    None => Poll::Pending,
                }
            },
        );
        self.ep.stats = stats;
        self.ep.spin = spin;
        self.ep.throttle = throttle;
        if let Some(c) = self.ep.truncated(&storage) {
            return Err(RecvTimeoutError::Corrupted(c));
        }
        match result {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// What a non-blocking receive reports when nothing is there: `Empty`, unless the
    /// ring's object was truncated (then `Corrupted`) or the producer died without closing
    /// (looked up at most once per slice) and the ring is drained.
    #[cold]
    pub(super) fn empty_or_ended(&mut self) -> TryRecvError {
        if let Some(c) = self.ep.truncated(&self.ring.storage) {
            return TryRecvError::Corrupted(c);
        }
        if !self
            .ring
            .peer_died(&mut self.ep, PRODUCER_SLOT, producer_closed)
        {
            return TryRecvError::Empty;
        }
        // Closed for it now; anything it published before dying is still delivered first.
        match self.poll_record() {
            Poll::Ready(Err(RecvError::Corrupted(c))) => TryRecvError::Corrupted(c),
            Poll::Ready(Err(RecvError::Disconnected)) => TryRecvError::Disconnected,
            _ => TryRecvError::Empty,
        }
    }

    /// An iterator that receives messages (copied into `Vec`s), waiting for each, until end
    /// of stream. Corruption is yielded as an error rather than ending the stream silently.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// for w in ["a", "b", "c"] {
    ///     tx.send(w.as_bytes())?;
    /// }
    /// drop(tx);
    /// let all = rx.iter().collect::<Result<Vec<Vec<u8>>, _>>()?;
    /// assert_eq!(all, [b"a", b"b", b"c"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            blocking: true,
            done: false,
        }
    }

    /// An iterator over the messages that are in the ring now, without waiting.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"a")?;
    /// tx.send(b"b")?;
    /// assert_eq!(rx.try_iter().count(), 2);
    /// assert!(rx.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            blocking: false,
            done: false,
        }
    }

    /// Opens the consumer end of a named ring like [`open`](Consumer::open), waiting up to
    /// `timeout` for the ring to be created if it does not exist yet (for a process that may
    /// start before its peer).
    ///
    /// # Errors
    /// As [`open`](Consumer::open); `NotFound` if the ring still does not exist at the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// let name = format!("/shmring-doc-opent-spsc-{}", std::process::id());
    /// let err = shmring::spsc::Consumer::open_timeout(&name, Duration::from_millis(20)).unwrap_err();
    /// assert!(matches!(err, shmring::OpenError::NotFound(_)));
    /// ```
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Consumer, OpenError> {
        Consumer::open_with(name, OpenOptions::default().timeout(timeout))
    }

    /// Whether the producer has closed or died; messages may still be waiting. Looks at the
    /// producer's process at most once per 100 ms.
    pub fn is_disconnected(&self) -> bool {
        self.ring
            .peer_closed(&self.ep, PRODUCER_SLOT, producer_closed)
    }

    /// Closes the consumer: later sends fail with `Disconnected`. Dropping does the same.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// rx.close();
    /// assert!(tx.send(b"x").unwrap_err().is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.close_inner();
    }

    pub(super) fn close_inner(&mut self) {
        if !self.ep.begin_close() {
            // An inherited copy in a forked child (see `Producer::close`): only unmap.
            return;
        }
        let w = &self.ring.ctrl().wait;
        w.consumer_closed.store(1, Ordering::Release);
        w.writable.notify_closed(&self.ring.storage);
        self.ring.leave_locally(CONSUMER_SLOT);
        self.ring.storage.detach(CONSUMER_SLOT);
        self.ep.end_presence();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// A received message, still in the ring. Derefs to its payload; its space is released to
/// the producer when the guard is dropped.
///
/// # Reading a message from a peer you do not trust
///
/// The bytes are read in place, in memory the other process can write. A peer that follows
/// the protocol never touches them until they are released, and then `Deref` (a `&[u8]`) is
/// all you need. A peer that does not follow it can change them while you look: a value you
/// checked may differ when you use it. For such a peer, copy the message out first with
/// [`copy_to`](Message::copy_to) or [`to_vec_volatile`](Message::to_vec_volatile) (volatile
/// reads, as rust-vmm's `vm-memory` reads guest memory) and validate and use the copy. The
/// ring itself never trusts these bytes: only the lengths and indices it checked decide where
/// it reads and writes.
#[must_use = "dropping the message releases its space"]
pub struct Message<'a> {
    pub(super) consumer: &'a mut Consumer,
    pub(super) data: NonNull<[u8]>,
    /// Region offset of the payload.
    pub(super) off: usize,
    pub(super) advance: u64,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

impl Message<'_> {
    /// Copies the message into `dst` with volatile reads (see "Reading a message from a
    /// peer you do not trust") and returns how many bytes were copied: the message's length,
    /// or `dst.len()` if that is shorter.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"snapshot")?;
    /// let msg = rx.recv()?;
    /// let mut buf = [0u8; 64];
    /// let n = msg.copy_to(&mut buf);
    /// assert_eq!(&buf[..n], b"snapshot");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        // SAFETY: the payload lies inside the mapping (validated when it was received), which
        // stays mapped while this guard borrows the handle.
        unsafe { crate::sync::region::copy_out_volatile(self.data, dst) }
    }

    /// The message copied into a new `Vec` with volatile reads (see "Reading a message from
    /// a peer you do not trust").
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"owned")?;
    /// assert_eq!(rx.recv()?.to_vec_volatile(), b"owned");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_vec_volatile(&self) -> Vec<u8> {
        let mut v = vec![0; self.data.len()];
        self.copy_to(&mut v);
        v
    }
}

impl Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the payload is published and not released while the guard lives.
        unsafe { self.data.as_ref() }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        // Marks the end of our read for loom's race detector.
        c.ring.region.track_read(self.off, self.data.len());
        c.release(self.advance);
    }
}

/// Iterator returned by [`Consumer::iter`] (waits for each message) and [`Consumer::try_iter`]
/// (takes only the messages there now). Yields each message copied into a `Vec`; ends at end
/// of stream (and, for `try_iter`, when the ring is empty). Corruption is not the end of the
/// stream: it is yielded as `Some(Err(..))`, once, and then the iterator ends.
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Iter<'a> {
    pub(super) consumer: &'a mut Consumer,
    pub(super) blocking: bool,
    pub(super) done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Vec<u8>, Corruption>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let got = if self.blocking {
            self.consumer.recv().map_err(TryRecvError::from)
        } else {
            self.consumer.try_recv()
        };
        match got {
            Ok(m) => Some(Ok(m.to_vec())),
            Err(e) => {
                self.done = true;
                e.corruption().map(Err)
            }
        }
    }
}

impl std::iter::FusedIterator for Iter<'_> {}
