//! Single-producer single-consumer ring of variable-length messages.
//!
//! # Algorithm
//!
//! The data region is `capacity` bytes (a power of two). Two indices count bytes and only grow:
//! `tail` (written by the producer: bytes published) and `head` (written by the consumer: bytes
//! released). `tail - head` bytes are in use; the position of an index is `index & (capacity -
//! 1)`. Each side keeps its own index in private memory and a cached copy of the other side's,
//! which it reloads only when the cache says the ring is full (producer) or empty (consumer),
//! so in steady state each side touches the other's cache line once per batch, not per
//! message.
//!
//! A message is a record: an 8-byte header word (payload length in the low 32 bits, flags in
//! the high bits) followed by the payload, padded to 8 bytes. Every record is one contiguous
//! slice of the region: when a record does not fit before the end of the region, the producer
//! first writes a *padding record* (flag `PAD`) that covers the rest of the region and puts
//! the record at position 0. Padding was chosen over mapping the region twice back to back
//! because it works unchanged on the heap (and therefore under loom) and needs no second
//! mapping per process; its cost is that a message may be at most `capacity / 2 - 8` bytes,
//! which guarantees that a record plus padding always fits in an empty ring.
//!
//! Publishing: the producer writes the record (and padding) into free space, then stores the
//! new `tail` with Release; the consumer loads `tail` with Acquire before it reads a record.
//! Releasing: the consumer stores the new `head` with Release after it is done with a record;
//! the producer loads `head` with Acquire before it reuses that space.
//!
//! Everything read from shared memory is checked before use: `tail - head` must lie within
//! `0..=capacity`, a record's length within the ring's maximum and within the published bytes,
//! a padding record must end exactly at the end of the region. A violation is reported as
//! [`Corruption`](crate::Corruption) and the handle stops using the ring; nothing is read or
//! written outside the region.
//!
//! Blocking uses two [`EventCount`]s (`readable`, `writable`), see `sync::waiter`.
//!
//! # Ends of the stream
//!
//! Like a pipe: when the producer closes (or is dropped, or dies), the consumer receives what
//! is left and then gets `Disconnected`. When the consumer closes (or dies), sends fail with
//! `Disconnected` and hand the message back. A peer that dies without closing is noticed by a
//! blocked waiter within [`SLICE`](crate::sync::waiter::SLICE) of sleep (a few hundred
//! milliseconds at most), by checking the pid and start time recorded in the endpoint table.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use crate::config::Config;
use crate::error::{
    CommitError, Corruption, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::storage::{PeerWatch, Storage};
use crate::sync::region::{HeapBytes, Region};
use crate::sync::waiter::{EventCount, Poll, WaitStats, WaitStrategy};
use crate::sync::{AtomicU32, AtomicU64, Deadline, Ordering};

#[cfg(not(loom))]
use crate::error::OpenError;
#[cfg(not(loom))]
use crate::header::{self, Geometry, Kind, KindRules, ROLE_CONSUMER, ROLE_PRODUCER};

/// Endpoint-table slot of the producer.
const PRODUCER_SLOT: usize = 0;
/// Endpoint-table slot of the consumer.
const CONSUMER_SLOT: usize = 1;

/// Flag bit of a padding record's header word.
const PAD: u64 = 1 << 63;
/// Bytes of a record header.
const RECORD_HEADER: u64 = 8;
/// Smallest capacity: room for two of the smallest records.
pub const MIN_CAPACITY: usize = 32;
/// Largest capacity: 1 TiB (1 GiB on 32-bit targets, whose address space must hold the
/// whole ring).
#[cfg(target_pointer_width = "64")]
pub const MAX_CAPACITY: usize = 1 << 40;
/// Largest capacity: 1 GiB on 32-bit targets, whose address space must hold the whole ring
/// (1 TiB on 64-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_CAPACITY: usize = 1 << 30;
/// The capacity rule, as error messages say it.
#[cfg(target_pointer_width = "64")]
const CAPACITY_RULE: &str = "capacity must lie in 32 bytes ..= 1 TiB";
#[cfg(not(target_pointer_width = "64"))]
const CAPACITY_RULE: &str = "capacity must lie in 32 bytes ..= 1 GiB on 32-bit targets";

/// Size of the record holding a `len`-byte payload.
#[inline]
fn record_size(len: u64) -> u64 {
    RECORD_HEADER + ((len + 7) & !7)
}

/// Largest payload a ring of `capacity` bytes can always take.
pub const fn max_message_for(capacity: usize) -> usize {
    (capacity / 2).saturating_sub(RECORD_HEADER as usize)
}

/// The producer's cache line.
#[repr(C, align(128))]
#[derive(Debug)]
struct ProducerLine {
    /// Bytes published so far. Written only by the producer (Release); read by the consumer
    /// (Acquire) when its cached copy says the ring is empty.
    tail: AtomicU64,
}

/// The consumer's cache line.
#[repr(C, align(128))]
#[derive(Debug)]
struct ConsumerLine {
    /// Bytes released so far. Written only by the consumer (Release); read by the producer
    /// (Acquire) when its cached copy says the ring is full.
    head: AtomicU64,
}

/// Rarely written words: the wait channels and the closed flags.
#[repr(C, align(128))]
#[derive(Debug)]
struct WaitLine {
    /// The consumer waits here for records; the producer notifies after publishing.
    readable: EventCount,
    /// The producer waits here for space; the consumer notifies after releasing.
    writable: EventCount,
    /// Non-zero once the producer closed (or was found dead). Written with Release after the
    /// producer's last publish.
    producer_closed: AtomicU32,
    /// Non-zero once the consumer closed (or was found dead).
    consumer_closed: AtomicU32,
}

/// The SPSC control block: three cache lines. In shared memory it sits right after the
/// header page; all-zero bytes are its initial state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    producer: ProducerLine,
    consumer: ConsumerLine,
    wait: WaitLine,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(Control, producer) == 0);
    assert!(offset_of!(Control, consumer) == 128);
    assert!(offset_of!(Control, wait) == 256);
    assert!(size_of::<Control>() == 384);
    assert!(size_of::<EventCount>() == 8);
};

impl Control {
    fn new() -> Control {
        Control {
            producer: ProducerLine {
                tail: AtomicU64::new(0),
            },
            consumer: ConsumerLine {
                head: AtomicU64::new(0),
            },
            wait: WaitLine {
                readable: EventCount::new(),
                writable: EventCount::new(),
                producer_closed: AtomicU32::new(0),
                consumer_closed: AtomicU32::new(0),
            },
        }
    }
}

#[cfg(not(loom))]
pub(crate) struct SpscRules;

#[cfg(not(loom))]
impl KindRules for SpscRules {
    const KIND: Kind = Kind::Spsc;
    const CONTROL_SIZE: u64 = std::mem::size_of::<Control>() as u64;

    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption> {
        check_geometry(capacity, u64::from(max_message))?;
        if slot_size != 0 {
            return Err(Corruption::new(
                "an SPSC ring has no slot size",
                u64::from(slot_size),
            ));
        }
        Ok(capacity)
    }
}

pub(crate) fn check_geometry(capacity: u64, max_message: u64) -> Result<(), Corruption> {
    if !capacity.is_power_of_two() {
        return Err(Corruption::new("capacity must be a power of two", capacity));
    }
    if capacity < MIN_CAPACITY as u64 || capacity > MAX_CAPACITY as u64 {
        return Err(Corruption::new(CAPACITY_RULE, capacity));
    }
    let limit = (max_message_for(capacity as usize) as u64).min(u64::from(u32::MAX));
    if max_message == 0 || max_message > limit {
        return Err(Corruption::new(
            "max message must lie in 1 ..= capacity / 2 - 8 (and below 4 GiB)",
            max_message,
        ));
    }
    Ok(())
}

/// What both handles know about the ring: where it is and its validated shape.
#[derive(Debug)]
struct Ring {
    ctrl: NonNull<Control>,
    region: Region,
    capacity: u64,
    max_message: u64,
    storage: Storage,
    watch: PeerWatch,
}

impl Ring {
    #[inline]
    fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a control block inside memory that `storage` keeps alive
        // for as long as this `Ring`; it holds only atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.capacity - 1
    }

    /// For non-blocking calls that found nothing to do: whether the peer in `slot` died
    /// without closing (looked up at most once per slice). If so, closes the ring for it
    /// by setting `closed_flag`.
    #[cold]
    fn peer_died(&mut self, slot: usize, closed_flag: fn(&Control) -> &AtomicU32) -> bool {
        if !self.watch.peer_gone(&self.storage, slot) {
            return false;
        }
        closed_flag(self.ctrl()).store(1, Ordering::Release);
        true
    }
}

fn consumer_closed(c: &Control) -> &AtomicU32 {
    &c.wait.consumer_closed
}

fn producer_closed(c: &Control) -> &AtomicU32 {
    &c.wait.producer_closed
}

/// A heap ring's memory (in-process channels and loom models).
struct HeapRing {
    ctrl: Box<Control>,
    data: HeapBytes,
    #[cfg(loom)]
    cells: Box<[loom::cell::UnsafeCell<()>]>,
}

impl fmt::Debug for HeapRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRing")
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the data words are accessed only through `Region` under the ring protocol, which
// gives each byte a single owner at a time (producer for free space, consumer for published
// records); the control block is atomics.
unsafe impl Sync for HeapRing {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for HeapRing {}
impl crate::storage::HeapOwner for HeapRing {}

/// Creates an in-process ring on the heap, for two threads.
///
/// # Errors
/// [`InvalidConfig`](crate::OpenError::InvalidConfig) when the configuration describes no
/// valid ring (under loom the function panics instead, as loom models are test code).
///
/// ```
/// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default().capacity(4096))?;
/// let t = std::thread::spawn(move || {
///     for i in 0u32..1000 {
///         tx.send(&i.to_le_bytes()).unwrap();
///     }
/// });
/// let mut n = 0u32;
/// while let Ok(msg) = rx.recv() {
///     assert_eq!(*msg, n.to_le_bytes());
///     n += 1;
/// }
/// assert_eq!(n, 1000);
/// t.join().unwrap();
/// # Ok::<(), shmring::OpenError>(())
/// ```
#[cfg(not(loom))]
pub fn channel(config: &Config) -> Result<(Producer, Consumer), crate::OpenError> {
    let (capacity, max_message) = config.spsc_geometry()?;
    Ok(heap_channel(capacity, max_message, config.wait_strategy))
}

/// Creates an in-process ring on the heap (loom build: the configuration must be valid).
#[cfg(loom)]
pub fn channel(config: &Config) -> (Producer, Consumer) {
    let (capacity, max_message) = config
        .spsc_geometry()
        .expect("loom models use valid configurations");
    heap_channel(capacity, max_message, config.wait_strategy)
}

fn heap_channel(capacity: u64, max_message: u64, strategy: WaitStrategy) -> (Producer, Consumer) {
    #[cfg(loom)]
    let words = (capacity / 8) as usize;
    let heap = HeapRing {
        ctrl: Box::new(Control::new()),
        data: HeapBytes::zeroed(capacity as usize),
        #[cfg(loom)]
        cells: (0..words)
            .map(|_| loom::cell::UnsafeCell::new(()))
            .collect(),
    };
    // Move the memory to its final owner first: pointers taken before a move of the boxes
    // would be invalidated by it.
    let heap = std::sync::Arc::new(heap);
    let ctrl = NonNull::from(&*heap.ctrl);
    // SAFETY: `data` is at least `capacity` writable bytes, 128-byte aligned, owned by
    // `heap`, which the Arc keeps alive (and in place) as long as any handle.
    let region = unsafe {
        let ptr = heap.data.ptr();
        #[cfg(not(loom))]
        let region = Region::new(ptr, capacity as usize);
        #[cfg(loom)]
        let region = Region::new(
            ptr,
            capacity as usize,
            NonNull::new_unchecked(heap.cells.as_ptr() as *mut loom::cell::UnsafeCell<()>),
        );
        region
    };
    let storage = Storage::Heap { _owner: heap };
    let ring = |storage: Storage| Ring {
        ctrl,
        region,
        capacity,
        max_message,
        storage,
        watch: PeerWatch::new(),
    };
    (
        Producer::new(ring(storage.clone()), strategy),
        Consumer::new(ring(storage), strategy),
    )
}

#[cfg(not(loom))]
fn create_ring(
    name: Option<&str>,
    config: &Config,
    creator: Option<(usize, u32)>,
) -> Result<Ring, OpenError> {
    let (capacity, max_message) = config.spsc_geometry()?;
    let g = Geometry::new::<SpscRules>(capacity, 0, max_message as u32, 2)
        .map_err(|c| OpenError::InvalidConfig(c.to_string()))?;
    // The control block of a fresh object is all zeros, its initial state.
    let seg = crate::storage::create_shm::<SpscRules>(name, &g, config.mode, creator, |_| {})?;
    Ok(shm_ring(seg, &g))
}

/// Creates a named ring without attaching either end: a producer and a consumer attach
/// later with [`Producer::open`] and [`Consumer::open`] (like `mkfifo`). Until the consumer
/// attaches, a producer that fills the ring waits for it.
///
/// # Errors
/// As [`Producer::create`].
///
/// ```
/// use shmring::{spsc, Config};
/// let name = format!("/shmring-doc-mkring-{}", std::process::id());
/// spsc::create(&name, Config::default().capacity(4096))?;
/// let mut tx = spsc::Producer::open(&name)?;
/// let mut rx = spsc::Consumer::open(&name)?;
/// shmring::unlink(&name)?;
/// tx.send(b"hi")?;
/// assert_eq!(&*rx.recv()?, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
pub fn create(name: &str, config: impl std::borrow::Borrow<Config>) -> Result<(), OpenError> {
    create_ring(Some(name), config.borrow(), None).map(drop)
}

#[cfg(not(loom))]
fn shm_ring(seg: std::sync::Arc<crate::segment::Segment>, g: &Geometry) -> Ring {
    let (ctrl, region) = crate::storage::shm_parts::<Control>(&seg, g);
    Ring {
        ctrl,
        region,
        capacity: g.capacity,
        max_message: u64::from(g.max_message),
        storage: Storage::Shm(seg),
        watch: PeerWatch::new(),
    }
}

/// Attaches this process as the endpoint `slot` of an opened ring.
#[cfg(not(loom))]
fn attach(
    (seg, g): (std::sync::Arc<crate::segment::Segment>, Geometry),
    slot: usize,
    role: u32,
    what: &'static str,
) -> Result<Ring, OpenError> {
    if g.endpoint_count != 2 {
        return Err(OpenError::BadGeometry(Corruption::new(
            "an SPSC ring has two endpoints",
            u64::from(g.endpoint_count),
        )));
    }
    let h = header::Header::of(&seg);
    h.attach(slot, role, crate::peer::ProcessId::current())
        .map_err(|state| {
            if state == header::EP_CLOSED {
                OpenError::EndpointClosed(what)
            } else {
                OpenError::EndpointTaken(what)
            }
        })?;
    Ok(shm_ring(seg, &g))
}

/// The result of claiming space for a record.
#[derive(Clone, Copy, Debug)]
struct Claim {
    /// Bytes of padding before the record (0, or up to the end of the region).
    pad: u64,
    /// Region offset of the record header.
    at: u64,
    /// Payload bytes granted.
    len: u64,
}

/// Why space could not be claimed.
#[derive(Clone, Copy, Debug)]
enum NoSpace {
    Full,
    Disconnected,
    Corrupted(Corruption),
}

/// The sending end of an SPSC ring.
///
/// Not `Clone` and not `Sync`; methods take `&mut self` because the producer caches the
/// consumer's index. It may be sent to another thread.
pub struct Producer {
    ring: Ring,
    /// Our own index: bytes written. Ahead of `published` only inside a [`Batch`].
    tail: u64,
    /// Bytes published (equal to the shared `tail`).
    published: u64,
    /// Last value of the consumer's `head` we loaded; at most the real one.
    head_cache: u64,
    /// Set once corruption was found; every later call reports it.
    broken: Option<Corruption>,
    closed: bool,
    strategy: WaitStrategy,
    stats: WaitStats,
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
    fn new(ring: Ring, strategy: WaitStrategy) -> Producer {
        let tail = ring.ctrl().producer.tail.load(Ordering::Acquire);
        let head_cache = ring.ctrl().consumer.head.load(Ordering::Acquire);
        // An opened ring's indices come from shared memory: check them before the first use
        // (positions must be record aligned, and the used bytes within the capacity).
        let broken = (tail % 8 != 0
            || head_cache % 8 != 0
            || head_cache > tail
            || tail - head_cache > ring.capacity)
            .then(|| Corruption::new("producer index out of range", tail));
        Producer {
            ring,
            tail,
            published: tail,
            head_cache,
            broken,
            closed: false,
            strategy,
            stats: WaitStats::default(),
        }
    }

    /// Creates a named ring (exclusively: an existing name is an error) and returns its
    /// producer. The consumer opens it by name with [`Consumer::open`].
    ///
    /// # Errors
    /// [`OpenError`]: invalid name or configuration, `AlreadyExists`, `PermissionDenied`,
    /// `NoSpace`, or an OS error.
    ///
    /// ```
    /// use shmring::{spsc, Config};
    /// let name = format!("/shmring-doc-create-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Config::default().capacity(1 << 16))?;
    /// let mut rx = spsc::Consumer::open(&name)?; // normally in another process
    /// shmring::unlink(&name)?;                   // the name can go once both are attached
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Producer, OpenError> {
        let config = config.borrow();
        let ring = create_ring(Some(name), config, Some((PRODUCER_SLOT, ROLE_PRODUCER)))?;
        Ok(Producer::new(ring, config.wait_strategy))
    }

    /// Opens the producer end of an existing named ring (created by [`Consumer::create`]).
    ///
    /// # Errors
    /// [`OpenError`]: `NotFound`, `PermissionDenied`, a layout mismatch (`NotShmring`,
    /// `UnsupportedVersion`, `WrongKind`, `TooSmall`, `BadGeometry`, `StillInitialising`,
    /// `Poisoned`), or `EndpointTaken` / `EndpointClosed` if a producer already attached.
    ///
    /// ```
    /// use shmring::{spsc, Config};
    /// let name = format!("/shmring-doc-popen-{}", std::process::id());
    /// let mut rx = spsc::Consumer::create(&name, Config::default())?;
    /// let mut tx = spsc::Producer::open(&name)?;
    /// shmring::unlink(&name)?;
    /// assert!(matches!(spsc::Producer::open(&name), Err(shmring::OpenError::NotFound(_))));
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Producer, OpenError> {
        let opened = crate::storage::open_shm::<SpscRules>(name)?;
        let ring = attach(opened, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
        Ok(Producer::new(ring, WaitStrategy::default()))
    }

    /// Attaches as the producer of a ring given by a file descriptor, such as the memfd of an
    /// anonymous ring received over a Unix socket or inherited across `exec`.
    ///
    /// # Errors
    /// As [`Producer::open`].
    #[cfg(not(loom))]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Producer, OpenError> {
        let opened = crate::storage::open_fd::<SpscRules>(fd)?;
        let ring = attach(opened, PRODUCER_SLOT, ROLE_PRODUCER, "producer")?;
        Ok(Producer::new(ring, WaitStrategy::default()))
    }

    /// Creates an anonymous ring on a sealed memfd and returns its producer. Hand the fd
    /// ([`Producer::fd`]) to another process, which attaches with [`Consumer::from_fd`].
    ///
    /// # Errors
    /// As [`Producer::create`].
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use shmring::{spsc, Config};
    /// let mut tx = spsc::Producer::create_anonymous(Config::default())?;
    /// let fd = tx.fd().expect("shared ring").try_clone_to_owned()?;
    /// let mut rx = spsc::Consumer::from_fd(fd)?; // normally in another process
    /// tx.send(b"over a memfd")?;
    /// assert_eq!(&*rx.recv()?, b"over a memfd");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create_anonymous(
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Producer, OpenError> {
        let config = config.borrow();
        let ring = create_ring(None, config, Some((PRODUCER_SLOT, ROLE_PRODUCER)))?;
        Ok(Producer::new(ring, config.wait_strategy))
    }

    /// The file descriptor of the shared-memory object (`None` for heap rings).
    #[cfg(not(loom))]
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ring.storage.fd()
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
        self.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.stats
    }

    /// Whether the consumer has closed or died. It might close right after this returns
    /// `false`. Looks at the consumer's process at most once per 100 ms.
    pub fn is_disconnected(&mut self) -> bool {
        self.ring
            .ctrl()
            .wait
            .consumer_closed
            .load(Ordering::Acquire)
            != 0
            || self.ring.peer_died(CONSUMER_SLOT, consumer_closed)
    }

    /// Tries to claim room for a record with a `len`-byte payload, without waiting.
    #[inline]
    fn try_claim(&mut self, len: u64) -> Result<Claim, NoSpace> {
        if let Some(c) = self.broken {
            return Err(NoSpace::Corrupted(c));
        }
        let ctrl = self.ring.ctrl();
        if ctrl.wait.consumer_closed.load(Ordering::Acquire) != 0 {
            return Err(NoSpace::Disconnected);
        }
        let cap = self.ring.capacity;
        let pos = self.tail & self.ring.mask();
        let rec = record_size(len);
        let to_end = cap - pos;
        let (pad, at) = if rec <= to_end { (0, pos) } else { (to_end, 0) };
        let need = pad + rec;
        #[cfg(not(shmring_mutant = "full_off_by_one"))]
        let fits = |used: u64| need <= cap - used;
        #[cfg(shmring_mutant = "full_off_by_one")]
        let fits = |used: u64| need <= cap - used + 8;
        if !fits(self.tail.wrapping_sub(self.head_cache)) {
            // SYNC POINT: Acquire pairs with the consumer's Release store of `head` in
            // `Consumer::release`: the consumer is done with the bytes we are about to reuse.
            #[cfg(not(shmring_mutant = "relaxed_head"))]
            let head = ctrl.consumer.head.load(Ordering::Acquire);
            #[cfg(shmring_mutant = "relaxed_head")]
            let head = ctrl.consumer.head.load(Ordering::Relaxed);
            let used = self.tail.wrapping_sub(head);
            if head < self.head_cache || used > cap || used % 8 != 0 {
                return Err(NoSpace::Corrupted(
                    self.corrupt(Corruption::new("consumer index out of range", head)),
                ));
            }
            self.head_cache = head;
            if !fits(used) {
                return Err(NoSpace::Full);
            }
        }
        Ok(Claim { pad, at, len })
    }

    /// `try_claim` for the non-blocking calls: a full ring whose consumer died without
    /// closing is reported as disconnected (checked at most once per slice).
    #[inline]
    fn try_claim_once(&mut self, len: usize) -> Result<Claim, ClaimError> {
        let len = self.check_size(len)?;
        match self.try_claim(len) {
            Ok(c) => Ok(c),
            Err(NoSpace::Full) if self.ring.peer_died(CONSUMER_SLOT, consumer_closed) => {
                Err(ClaimError::Disconnected)
            }
            Err(NoSpace::Full) => Err(ClaimError::Full),
            Err(NoSpace::Disconnected) => Err(ClaimError::Disconnected),
            Err(NoSpace::Corrupted(c)) => Err(ClaimError::Corrupted(c)),
        }
    }

    /// Refuses a message larger than the ring's maximum.
    #[inline]
    fn check_size(&self, len: usize) -> Result<u64, ClaimError> {
        if len as u64 > self.ring.max_message {
            return Err(ClaimError::TooLarge {
                len,
                max: self.ring.max_message as usize,
            });
        }
        Ok(len as u64)
    }

    #[cold]
    fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.broken = Some(c);
        self.ring.storage.poison();
        c
    }

    /// Checks the size, then claims room, waiting per the strategy up to `deadline`.
    #[inline]
    fn claim(&mut self, len: usize, deadline: Deadline) -> Result<Claim, ClaimError> {
        let len = self.check_size(len)?;
        let first = match self.try_claim(len) {
            Ok(c) => return Ok(c),
            Err(NoSpace::Full) => deadline,
            Err(NoSpace::Disconnected) => return Err(ClaimError::Disconnected),
            Err(NoSpace::Corrupted(c)) => return Err(ClaimError::Corrupted(c)),
        };
        self.claim_slow(len, first)
    }

    #[cold]
    fn claim_slow(&mut self, len: u64, deadline: Deadline) -> Result<Claim, ClaimError> {
        // Never wait on records the consumer cannot see yet (an unpublished batch).
        self.flush();
        // The wait channel lives in the shared control block, not in `self`.
        let ctrl = self.ring.ctrl;
        // SAFETY: as `Ring::ctrl`: the control block outlives `self.ring.storage`.
        let writable = unsafe { &ctrl.as_ref().wait.writable };
        let storage = self.ring.storage.clone();
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut watch = self.ring.watch;
        let strategy = self.strategy;
        let mut stats = self.stats;
        let result = writable.wait(
            strategy,
            deadline,
            &mut stats,
            || match self.try_claim(len) {
                Ok(c) => Poll::Ready(Ok(c)),
                Err(NoSpace::Full) => Poll::Pending,
                Err(NoSpace::Disconnected) => Poll::Ready(Err(ClaimError::Disconnected)),
                Err(NoSpace::Corrupted(c)) => Poll::Ready(Err(ClaimError::Corrupted(c))),
            },
            || {
                if watch.peer_gone(&storage, CONSUMER_SLOT) {
                    // The consumer died without closing: close for it; the next poll reports
                    // the disconnect.
                    // SAFETY: as above.
                    let w = unsafe { &ctrl.as_ref().wait };
                    w.consumer_closed.store(1, Ordering::Release);
                }
                Poll::Pending
            },
        );
        self.stats = stats;
        self.ring.watch = watch;
        match result {
            Ok(r) => r,
            Err(_) => Err(ClaimError::Timeout),
        }
    }

    /// Publishes a claimed record with a `len`-byte payload (`len <= claim.len`).
    #[inline]
    fn publish(&mut self, claim: Claim, len: u64) {
        self.write_record(claim, len);
        self.flush();
    }

    /// Writes the headers of a claimed record and advances our private tail; the record is
    /// visible to the consumer only after [`Producer::flush`].
    #[inline]
    fn write_record(&mut self, claim: Claim, len: u64) {
        let region = self.ring.region;
        let mask = self.ring.mask();
        if claim.pad != 0 {
            // SAFETY: the padding starts at our tail's position, which is 8-byte aligned and
            // inside free space that `try_claim` found room for.
            unsafe {
                region.write_u64(
                    (self.tail & mask) as usize,
                    PAD | (claim.pad - RECORD_HEADER),
                )
            };
        }
        // SAFETY: `claim.at` is an aligned record position inside the claimed free space.
        unsafe { region.write_u64(claim.at as usize, len) };
        region.track_write(claim.at as usize + 8, len as usize);
        self.tail = self.tail.wrapping_add(claim.pad + record_size(len));
    }

    /// Publishes every record written so far with one Release store, and wakes the consumer
    /// if it sleeps.
    #[inline]
    fn flush(&mut self) {
        if self.tail == self.published {
            return;
        }
        self.published = self.tail;
        let ctrl = self.ring.ctrl();
        // SYNC POINT: Release pairs with the consumer's Acquire load of `tail` in
        // `Consumer::peek`: the records (headers and payloads) are visible before the index.
        #[cfg(not(shmring_mutant = "relaxed_tail"))]
        ctrl.producer.tail.store(self.tail, Ordering::Release);
        #[cfg(shmring_mutant = "relaxed_tail")]
        ctrl.producer.tail.store(self.tail, Ordering::Relaxed);
        ctrl.wait.readable.notify();
    }

    /// Starts a batch: messages sent through it are written at once but published together,
    /// with a single index store and at most one wake-up, when the batch is published or
    /// dropped. Useful for many small messages.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// {
    ///     let mut batch = tx.batch();
    ///     for i in 0u8..10 {
    ///         batch.try_send(&[i]).map_err(std::io::Error::from)?;
    ///     }
    ///     assert!(rx.try_recv().is_err()); // nothing published yet
    ///     batch.publish();
    /// }
    /// let mut got = Vec::new();
    /// rx.drain(usize::MAX, |m| got.push(m[0]))?;
    /// assert_eq!(got, (0..10).collect::<Vec<u8>>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(&mut self) -> Batch<'_> {
        Batch { producer: self }
    }

    /// Sends a message, waiting while the ring is full.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the consumer is gone, [`SendError::TooLarge`] if the
    /// message exceeds [`max_message`](Producer::max_message); both hand the message back.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// tx.send(b"ping")?;
    /// drop(rx);
    /// let err = tx.send(b"lost?").unwrap_err();
    /// assert!(err.is_disconnected());
    /// assert_eq!(err.into_inner(), b"lost?");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send<'m>(&mut self, msg: &'m [u8]) -> Result<(), SendError<&'m [u8]>> {
        match self.claim(msg.len(), Deadline::never()) {
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send(msg)),
        }
    }

    /// Sends a message if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if there is no room right now (the ring might not be full for
    /// long), otherwise as [`send`](Producer::send). The message is handed back.
    ///
    /// ```
    /// use shmring::{spsc, Config, TrySendError};
    /// let (mut tx, _rx) = spsc::channel(&Config::default().capacity(64))?;
    /// tx.try_send(&[1; 24])?; // 32-byte record
    /// tx.try_send(&[2; 24])?; // the ring is now full
    /// assert!(matches!(tx.try_send(&[3; 24]), Err(TrySendError::Full(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        match self.try_claim_once(msg.len()) {
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_try_send(msg)),
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
    /// use shmring::{spsc, Config, SendTimeoutError};
    /// let (mut tx, _rx) = spsc::channel(&Config::default().capacity(32))?;
    /// tx.send(&[0; 8])?;
    /// tx.send(&[0; 8])?;
    /// let e = tx.send_timeout(&[0; 8], Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, SendTimeoutError::Timeout(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout<'m>(
        &mut self,
        msg: &'m [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'m [u8]>> {
        match self.claim(msg.len(), Deadline::after(timeout)) {
            Ok(claim) => {
                self.write_and_publish(claim, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send_timeout(msg)),
        }
    }

    #[inline]
    fn write_and_publish(&mut self, claim: Claim, msg: &[u8]) {
        self.write_payload(claim, msg);
        self.publish(claim, msg.len() as u64);
    }

    #[inline]
    fn write_payload(&mut self, claim: Claim, msg: &[u8]) {
        // SAFETY: the payload range follows the claimed record header, inside the claimed
        // free space, which only the producer touches until it is published.
        let dst = unsafe { self.ring.region.slice_mut(claim.at as usize + 8, msg.len()) };
        crate::sync::region::copy_in(dst, msg);
    }

    /// Reserves room for a message of up to `len` bytes and returns it for writing in place
    /// (zero copy); waits while the ring is full. Nothing is published until
    /// [`WriteGrant::commit`]; dropping the grant publishes nothing.
    ///
    /// The grant's bytes hold whatever the region held before (old messages), not zeros.
    ///
    /// # Errors
    /// As [`send`](Producer::send) (the handed-back value is `()`).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// let mut g = tx.reserve(64)?;
    /// let n = {
    ///     use std::io::Write;
    ///     let mut w = &mut g[..];
    ///     write!(w, "written in place").unwrap();
    ///     64 - w.len()
    /// };
    /// g.commit(n)?;
    /// assert_eq!(&*rx.recv()?, b"written in place");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, SendError<()>> {
        let claim = self
            .claim(len, Deadline::never())
            .map_err(|e| e.into_send(()))?;
        Ok(self.grant(claim))
    }

    /// Reserves room for up to `len` bytes if there is room now.
    ///
    /// # Errors
    /// As [`try_send`](Producer::try_send).
    pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, TrySendError<()>> {
        match self.try_claim_once(len) {
            Ok(claim) => Ok(self.grant(claim)),
            Err(e) => Err(e.into_try_send(())),
        }
    }

    /// Reserves room for up to `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](Producer::send_timeout).
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<WriteGrant<'_>, SendTimeoutError<()>> {
        let claim = self
            .claim(len, Deadline::after(timeout))
            .map_err(|e| e.into_send_timeout(()))?;
        Ok(self.grant(claim))
    }

    fn grant(&mut self, claim: Claim) -> WriteGrant<'_> {
        // SAFETY: the payload range lies in claimed free space (see `try_claim`), exclusively
        // ours until published; the grant borrows `self` mutably, so no second claim can
        // overlap it.
        let buf = unsafe {
            self.ring
                .region
                .slice_mut(claim.at as usize + 8, claim.len as usize)
        };
        WriteGrant {
            producer: self,
            claim,
            buf: NonNull::from(buf),
        }
    }

    /// Closes the producer: the consumer receives what was sent, then `Disconnected`.
    /// Dropping the producer does the same.
    ///
    /// A handle inherited by a forked child is not that endpoint: dropping it in the child
    /// only unmaps the ring (as closing an unused pipe end should not end the parent's
    /// stream); the child must not use it.
    ///
    /// ```
    /// let (tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// tx.close();
    /// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.ring.watch.in_owner_process() {
            // An inherited copy in a forked child: the endpoint belongs to the parent, which
            // is still using it. Only unmap.
            return;
        }
        self.flush();
        let w = &self.ring.ctrl().wait;
        // SYNC POINT: Release after our last publish: a consumer that sees the flag (Acquire)
        // also sees the final tail.
        w.producer_closed.store(1, Ordering::Release);
        w.readable.notify_closed();
        self.ring.storage.detach(PRODUCER_SLOT);
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// Why a claim failed (internal; converted into the public error of each call).
#[derive(Debug)]
enum ClaimError {
    /// No room now (non-blocking calls).
    Full,
    /// Still no room at the deadline.
    Timeout,
    Disconnected,
    TooLarge {
        len: usize,
        max: usize,
    },
    Corrupted(Corruption),
}

impl ClaimError {
    fn into_send<T>(self, msg: T) -> SendError<T> {
        match self {
            // A blocking call without deadline neither gives up on a full ring nor times out:
            // only the other side's departure ends its wait.
            ClaimError::Full | ClaimError::Timeout | ClaimError::Disconnected => {
                SendError::Disconnected(msg)
            }
            ClaimError::TooLarge { len, max } => SendError::TooLarge { msg, len, max },
            ClaimError::Corrupted(what) => SendError::Corrupted { msg, what },
        }
    }

    fn into_try_send<T>(self, msg: T) -> TrySendError<T> {
        match self {
            ClaimError::Full => TrySendError::Full(msg),
            other => other.into_send(msg).into(),
        }
    }

    fn into_send_timeout<T>(self, msg: T) -> SendTimeoutError<T> {
        match self {
            ClaimError::Timeout => SendTimeoutError::Timeout(msg),
            other => other.into_send(msg).into(),
        }
    }
}

/// Room in the ring, reserved for writing a message in place. Derefs to the reserved bytes.
/// Publish with [`commit`](WriteGrant::commit); dropping the grant publishes nothing.
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    claim: Claim,
    buf: NonNull<[u8]>,
}

impl fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.claim.len)
            .finish_non_exhaustive()
    }
}

impl WriteGrant<'_> {
    /// Publishes the first `len` bytes of the grant as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLong`] if `len` exceeds the grant, [`CommitError::Disconnected`] if
    /// the consumer went away meanwhile (nothing is published in either case).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// let mut g = tx.reserve(8)?;
    /// g[..3].copy_from_slice(b"abc");
    /// assert!(g.commit(3).is_ok());
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(self, len: usize) -> Result<(), CommitError> {
        if len as u64 > self.claim.len {
            return Err(CommitError::TooLong {
                len,
                granted: self.claim.len as usize,
            });
        }
        let p = self.producer;
        if p.ring.ctrl().wait.consumer_closed.load(Ordering::Acquire) != 0 {
            return Err(CommitError::Disconnected);
        }
        p.publish(self.claim, len as u64);
        Ok(())
    }

    /// Size of the grant in bytes.
    pub fn len(&self) -> usize {
        self.claim.len as usize
    }

    /// Whether the grant holds no bytes (a reservation of 0).
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the claimed range, exclusively ours while the grant (which borrows
        // the producer mutably) lives.
        unsafe { self.buf.as_ref() }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `deref`; `&mut self` makes the access unique.
        unsafe { self.buf.as_mut() }
    }
}

/// Messages written but not yet published; see [`Producer::batch`]. Dropping the batch
/// publishes what it holds.
pub struct Batch<'a> {
    producer: &'a mut Producer,
}

impl fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field(
                "unpublished_bytes",
                &(self.producer.tail - self.producer.published),
            )
            .finish()
    }
}

impl Batch<'_> {
    /// Writes a message into the batch if there is room now (it is published later).
    ///
    /// # Errors
    /// As [`Producer::try_send`]; on `Full` the messages already in the batch stay pending
    /// (call [`Batch::publish`] or use [`Batch::send`]).
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        let p = &mut *self.producer;
        match p.try_claim_once(msg.len()) {
            Ok(claim) => {
                p.write_payload(claim, msg);
                p.write_record(claim, msg.len() as u64);
                Ok(())
            }
            Err(e) => Err(e.into_try_send(msg)),
        }
    }

    /// Writes a message into the batch; if the ring is full, publishes the batch so far and
    /// waits for room.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub fn send<'m>(&mut self, msg: &'m [u8]) -> Result<(), SendError<&'m [u8]>> {
        let p = &mut *self.producer;
        match p.claim(msg.len(), Deadline::never()) {
            Ok(claim) => {
                p.write_payload(claim, msg);
                p.write_record(claim, msg.len() as u64);
                Ok(())
            }
            Err(e) => Err(e.into_send(msg)),
        }
    }

    /// Publishes the messages written so far.
    pub fn publish(&mut self) {
        self.producer.flush();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.producer.flush();
    }
}

/// Where the next record is, after validation.
#[derive(Clone, Copy, Debug)]
struct Peeked {
    /// Region offset of the payload.
    off: u64,
    /// Payload length.
    len: u64,
    /// Bytes to release (padding + record).
    advance: u64,
}

/// The receiving end of an SPSC ring.
///
/// Not `Clone` and not `Sync`; methods take `&mut self` because the consumer caches the
/// producer's index. It may be sent to another thread.
pub struct Consumer {
    ring: Ring,
    /// Our own index: bytes released (equal to the shared `head`).
    head: u64,
    /// Last value of the producer's `tail` we loaded; at most the real one.
    tail_cache: u64,
    broken: Option<Corruption>,
    closed: bool,
    strategy: WaitStrategy,
    stats: WaitStats,
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
    fn new(ring: Ring, strategy: WaitStrategy) -> Consumer {
        let head = ring.ctrl().consumer.head.load(Ordering::Acquire);
        // Checked before the first use: record positions are 8-byte aligned.
        let broken = (head % 8 != 0).then(|| Corruption::new("consumer index misaligned", head));
        Consumer {
            ring,
            head,
            tail_cache: head,
            broken,
            closed: false,
            strategy,
            stats: WaitStats::default(),
        }
    }

    /// Creates a named ring (exclusively) and returns its consumer; the producer opens it with
    /// [`Producer::open`].
    ///
    /// # Errors
    /// As [`Producer::create`].
    ///
    /// ```
    /// use shmring::{spsc, Config};
    /// let name = format!("/shmring-doc-ccreate-{}", std::process::id());
    /// let rx = spsc::Consumer::create(&name, Config::default())?;
    /// assert!(matches!(
    ///     spsc::Consumer::create(&name, Config::default()),
    ///     Err(shmring::OpenError::AlreadyExists(_))
    /// ));
    /// shmring::unlink(&name)?;
    /// # drop(rx);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Consumer, OpenError> {
        let config = config.borrow();
        let ring = create_ring(Some(name), config, Some((CONSUMER_SLOT, ROLE_CONSUMER)))?;
        Ok(Consumer::new(ring, config.wait_strategy))
    }

    /// Opens the consumer end of an existing named ring (created by [`Producer::create`]).
    ///
    /// # Errors
    /// As [`Producer::open`].
    ///
    /// ```
    /// let missing = format!("/shmring-doc-missing-{}", std::process::id());
    /// match shmring::spsc::Consumer::open(&missing) {
    ///     Err(shmring::OpenError::NotFound(name)) => assert_eq!(name, missing),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Consumer, OpenError> {
        let opened = crate::storage::open_shm::<SpscRules>(name)?;
        let ring = attach(opened, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
        Ok(Consumer::new(ring, WaitStrategy::default()))
    }

    /// Attaches as the consumer of a ring given by a file descriptor (see
    /// [`Producer::create_anonymous`]).
    ///
    /// # Errors
    /// As [`Producer::open`].
    #[cfg(not(loom))]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Consumer, OpenError> {
        let opened = crate::storage::open_fd::<SpscRules>(fd)?;
        let ring = attach(opened, CONSUMER_SLOT, ROLE_CONSUMER, "consumer")?;
        Ok(Consumer::new(ring, WaitStrategy::default()))
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
        self.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    pub fn wait_stats(&self) -> WaitStats {
        self.stats
    }

    /// Finds the next record, if one is published. Validates everything it reads.
    #[inline]
    fn peek(&mut self) -> Result<Option<Peeked>, Corruption> {
        if let Some(c) = self.broken {
            return Err(c);
        }
        if self.head == self.tail_cache {
            // SYNC POINT: Acquire pairs with the producer's Release store of `tail` in
            // `Producer::publish`: the records before `tail` are fully written.
            let tail = self.ring.ctrl().producer.tail.load(Ordering::Acquire);
            let used = tail.wrapping_sub(self.head);
            if tail < self.tail_cache || used > self.ring.capacity || used % 8 != 0 {
                return Err(self.corrupt(Corruption::new("producer index out of range", tail)));
            }
            self.tail_cache = tail;
            if used == 0 {
                return Ok(None);
            }
        }
        let avail = self.tail_cache.wrapping_sub(self.head);
        let cap = self.ring.capacity;
        let region = self.ring.region;
        let mut pos = self.head & self.ring.mask();
        let mut skip = 0;
        // SAFETY: `pos` is 8-byte aligned (indices advance by multiples of 8, checked above)
        // and below capacity; the word is published (avail > 0).
        let mut word = unsafe { region.read_u64(pos as usize) };
        if word & PAD != 0 {
            skip = cap - pos;
            if word != PAD | (skip - RECORD_HEADER) || skip >= avail {
                return Err(self.corrupt(Corruption::new("bad padding record", word)));
            }
            pos = 0;
            // SAFETY: position 0 is aligned and published (avail > skip).
            word = unsafe { region.read_u64(0) };
        }
        if word >> 32 != 0 {
            return Err(self.corrupt(Corruption::new("bad record header", word)));
        }
        let len = word;
        let rec = record_size(len);
        if len > self.ring.max_message || rec > cap - pos || skip + rec > avail {
            return Err(self.corrupt(Corruption::new("record length out of range", len)));
        }
        Ok(Some(Peeked {
            off: pos + RECORD_HEADER,
            len,
            advance: skip + rec,
        }))
    }

    #[cold]
    fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.broken = Some(c);
        self.ring.storage.poison();
        c
    }

    /// `peek`, plus end-of-stream detection when nothing is there.
    #[inline]
    fn poll_record(&mut self) -> Poll<Result<Peeked, RecvError>> {
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
    fn message(&mut self, p: Peeked) -> Message<'_> {
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

    /// Releases `advance` bytes (the record just read and any padding before it).
    #[inline]
    fn release(&mut self, advance: u64) {
        self.head = self.head.wrapping_add(advance);
        self.store_head();
    }

    /// Publishes our `head` to the producer and wakes it if it sleeps.
    #[inline]
    fn store_head(&mut self) {
        let ctrl = self.ring.ctrl();
        // SYNC POINT: Release pairs with the producer's Acquire load of `head` in
        // `Producer::try_claim`: we are done reading before the space is reused.
        ctrl.consumer.head.store(self.head, Ordering::Release);
        ctrl.wait.writable.notify();
    }

    /// Receives the next message, waiting while the ring is empty. The returned guard derefs
    /// to the payload, which stays in the ring (zero copy) until the guard is dropped.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the producer is gone and everything it sent has been
    /// received (end of stream).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
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
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
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
    /// let (_tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e, shmring::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, RecvTimeoutError> {
        let p = self.recv_deadline(Deadline::after(timeout))?;
        Ok(self.message(p))
    }

    #[inline]
    fn recv_deadline(&mut self, deadline: Deadline) -> Result<Peeked, RecvTimeoutError> {
        match self.poll_record() {
            Poll::Ready(r) => return r.map_err(Into::into),
            Poll::Pending => {}
        }
        self.recv_slow(deadline)
    }

    #[cold]
    fn recv_slow(&mut self, deadline: Deadline) -> Result<Peeked, RecvTimeoutError> {
        let ctrl = self.ring.ctrl;
        // SAFETY: as `Ring::ctrl`: the control block outlives `self.ring.storage`.
        let readable = unsafe { &ctrl.as_ref().wait.readable };
        let storage = self.ring.storage.clone();
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut watch = self.ring.watch;
        let strategy = self.strategy;
        let mut stats = self.stats;
        let result = readable.wait(
            strategy,
            deadline,
            &mut stats,
            || self.poll_record(),
            || {
                if watch.peer_gone(&storage, PRODUCER_SLOT) {
                    // The producer died without closing: close for it; the next poll drains
                    // what it published and then reports end of stream.
                    // SAFETY: as above.
                    let w = unsafe { &ctrl.as_ref().wait };
                    w.producer_closed.store(1, Ordering::Release);
                }
                Poll::Pending
            },
        );
        self.stats = stats;
        self.ring.watch = watch;
        match result {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// What a non-blocking receive reports when nothing is there: `Empty`, unless the
    /// producer died without closing (looked up at most once per slice) and the ring is
    /// drained.
    #[cold]
    fn empty_or_ended(&mut self) -> TryRecvError {
        if !self.ring.peer_died(PRODUCER_SLOT, producer_closed) {
            return TryRecvError::Empty;
        }
        // Closed for it now; anything it published before dying is still delivered first.
        match self.poll_record() {
            Poll::Ready(Err(RecvError::Corrupted(c))) => TryRecvError::Corrupted(c),
            Poll::Ready(Err(RecvError::Disconnected)) => TryRecvError::Disconnected,
            _ => TryRecvError::Empty,
        }
    }

    /// Hands up to `max` waiting messages to `f`, in order, without waiting, and releases
    /// their space with a single index store. Returns how many messages were handled.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if no message was waiting, [`TryRecvError::Disconnected`] at
    /// end of stream (only when nothing was handled).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// tx.send(b"a")?;
    /// tx.send(b"bc")?;
    /// let mut total = 0;
    /// assert_eq!(rx.drain(10, |m| total += m.len())?, 2);
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        // Publishes what was consumed even if `f` panics, so neither side waits for space or
        // records that the other has already handed over.
        struct Release<'c> {
            consumer: &'c mut Consumer,
            start: u64,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.consumer.head != self.start {
                    self.consumer.store_head();
                }
            }
        }
        let start = self.head;
        let guard = Release {
            consumer: self,
            start,
        };
        let c = &mut *guard.consumer;
        let mut n = 0;
        let mut outcome = Ok(());
        while n < max {
            match c.poll_record() {
                Poll::Ready(Ok(p)) => {
                    // SAFETY: validated by `peek`; the record stays ours until `store_head`.
                    let data = unsafe { c.ring.region.slice(p.off as usize, p.len as usize) };
                    f(data);
                    c.ring.region.track_read(p.off as usize, p.len as usize);
                    c.head = c.head.wrapping_add(p.advance);
                    n += 1;
                }
                Poll::Ready(Err(e)) => {
                    outcome = Err(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        drop(guard);
        match outcome {
            Err(RecvError::Corrupted(c)) => Err(TryRecvError::Corrupted(c)),
            _ if n > 0 => Ok(n),
            Err(RecvError::Disconnected) => Err(TryRecvError::Disconnected),
            Ok(()) => Err(self.empty_or_ended()),
        }
    }

    /// An iterator that receives messages (copied into `Vec`s) until end of stream.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// for w in ["a", "b", "c"] {
    ///     tx.send(w.as_bytes())?;
    /// }
    /// drop(tx);
    /// let all: Vec<Vec<u8>> = rx.iter().collect();
    /// assert_eq!(all, [b"a", b"b", b"c"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            consumer: self,
            error: None,
        }
    }

    /// Whether the producer has closed or died; messages may still be waiting. Looks at the
    /// producer's process at most once per 100 ms.
    pub fn is_disconnected(&mut self) -> bool {
        self.ring
            .ctrl()
            .wait
            .producer_closed
            .load(Ordering::Acquire)
            != 0
            || self.ring.peer_died(PRODUCER_SLOT, producer_closed)
    }

    /// Closes the consumer: later sends fail with `Disconnected`. Dropping does the same.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::spsc::channel(&shmring::Config::default())?;
    /// rx.close();
    /// assert!(tx.send(b"x").unwrap_err().is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.ring.watch.in_owner_process() {
            // An inherited copy in a forked child (see `Producer::close`): only unmap.
            return;
        }
        let w = &self.ring.ctrl().wait;
        w.consumer_closed.store(1, Ordering::Release);
        w.writable.notify_closed();
        self.ring.storage.detach(CONSUMER_SLOT);
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
/// The bytes are read in place, in memory the producer's process can write. A producer that
/// follows the protocol never touches them until they are released; if the peer is not
/// trusted, copy the message before validating it (a hostile peer could change it between
/// the check and the use).
pub struct Message<'a> {
    consumer: &'a mut Consumer,
    data: NonNull<[u8]>,
    /// Region offset of the payload.
    off: usize,
    advance: u64,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
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

/// Iterator returned by [`Consumer::iter`]. Ends at end of stream, or at corruption (then
/// [`Iter::error`] says what was wrong).
#[derive(Debug)]
pub struct Iter<'a> {
    consumer: &'a mut Consumer,
    error: Option<Corruption>,
}

impl Iter<'_> {
    /// The corruption that ended the iteration, if any.
    pub fn error(&self) -> Option<Corruption> {
        self.error
    }
}

impl Iterator for Iter<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        match self.consumer.recv() {
            Ok(m) => Some(m.to_vec()),
            Err(RecvError::Disconnected) => None,
            Err(RecvError::Corrupted(c)) => {
                self.error = Some(c);
                None
            }
        }
    }
}
