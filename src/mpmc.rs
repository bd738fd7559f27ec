//! Multi-producer multi-consumer ring of fixed-size slots.
//!
//! Any number of [`Sender`]s and [`Receiver`]s, in any number of processes, share one bounded
//! ring. Both handles are `Clone`: a clone is a new endpoint of the ring, registered on its
//! own. Messages are at most [`Sender::max_message`] bytes (fixed at creation); larger ones
//! are refused with `TooLarge`.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (the algorithm behind crossbeam's `ArrayQueue`).
//! The ring has `slots` slots (a power of two, at least 2) and two positions that only grow:
//! `tail`, the next position a sender will claim, and `head`, the next position a receiver
//! will claim. Position `p` lives in slot `p & (slots - 1)`. Each slot starts with a
//! sequence word `seq` that says which position the slot is ready for:
//!
//! ```text
//!  seq == p              free for the sender of position p
//!  seq == p + 1          holds the message of position p, for the receiver of position p
//!  seq == p + slots      released by that receiver: free for the sender of p + slots
//! ```
//!
//! A sender loads `tail = t`; if `seq(t) == t` it claims the position with a compare-exchange
//! of `tail` from `t` to `t + 1`, writes the length and payload, and publishes with a Release
//! store `seq = t + 1`. If `seq(t)` is behind (the message of `t - slots` is still there) the
//! ring is full. A receiver does the mirror image on `head`: when `seq(h) == h + 1` it claims
//! `h` with a compare-exchange of `head`, reads the message in place (the [`Message`] guard),
//! and on release stores `seq = h + slots`. Contention is only on `tail` (between senders)
//! and `head` (between receivers); a message is handed over by its slot's `seq` alone.
//!
//! Bit 63 of `seq` is the *skip* flag: `seq == (p + 1) | SKIP` marks position `p` as done
//! with no message in it (a dropped [`SendGrant`], or a slot recovered from a dead sender,
//! see below). The receiver that claims it releases it at once and goes on.
//!
//! # Layout
//!
//! ```text
//! control block  tail line (128 B) | head line (128 B) | wait line (128 B):
//!                  readable, writable eventcounts; senders and receivers side words
//!                claim table: 64 lines of 128 B, one per endpoint-registry entry
//! data region    slots x slot_size bytes; each slot (64-byte aligned) is
//!                  seq: u64 | len: u32 | reserved: u32 | payload (slot_size - 16 bytes)
//! ```
//!
//! Every value read from shared memory is checked before it is used: a `seq` outside the
//! few values the algorithm allows for the position at hand, a length above the ring's
//! maximum, a head or tail that goes backwards are reported as [`Corruption`]; slot indices
//! are always masked, so no access ever leaves the mapping.
//!
//! # Ends of the stream
//!
//! Every sender and receiver holds an entry in the endpoint registry of the header (pid and
//! process start time), whose size is fixed at creation ([`Config::endpoints`]); attaching
//! past it is [`OpenError::RegistryFull`]. The wait line holds one *side word* per side: an
//! attach counter and a `CLOSED` bit. An endpoint that leaves marks its entry closed, and if
//! no entry of its side is still attached, sets `CLOSED` (a compare-exchange against the
//! counter, so it cannot race with a new endpoint attaching). `CLOSED` is final: afterwards
//! receivers drain what is left and then get `Disconnected`, senders get `Disconnected`
//! with their message back, and no new endpoint of that side may attach
//! ([`OpenError::EndpointClosed`]). A side that nobody ever attached to (the senders of a
//! ring a receiver just created) is not closed: its receivers wait for senders to come.
//!
//! A process that dies without closing is found by any blocked waiter: once per waiter
//! slice (at most every few hundred milliseconds) it checks the registry's attached entries
//! against `/proc` and *reaps* the dead ones (marks them closed, then closes their side if
//! it was the last one), exactly as if they had closed. An endpoint killed while attaching
//! may leave its entry taken but not attached; the entry then names the attaching process,
//! and the same check frees it (nothing to close: it never counted itself in its side).
//! [`Sender::is_disconnected`] and [`Receiver::is_disconnected`] look at the other side's
//! processes too (rate limited per handle), so a handle that never blocks also learns that
//! its peers died.
//!
//! # Crash recovery: no wedge
//!
//! A sender killed after claiming position `p` but before publishing it leaves `seq == p`
//! forever; every receiver then waits at `p`. A receiver killed while holding the message of
//! `p` leaves `seq == p + 1` forever; after one lap every sender waits at `p + slots`. To
//! tell such an abandoned slot from a slow peer, each registry entry has a *claim record*
//! (its own 128-byte line in the claim table) where its endpoint writes, before every
//! compare-exchange of `tail` (or `head`), the position it is about to claim and whether as
//! sender or receiver. The record is stored before the compare-exchange (which is
//! Release), so anyone who sees the new `tail` (Acquire) also sees the record; it is cleared
//! when a call gives up (full or empty), and otherwise stays until the endpoint's next claim.
//!
//! A blocked waiter that finds `tail > p` with `seq == p` (a claimed, unpublished slot), or
//! `head > p` with `seq == p + 1` at its own position `p + slots` (a claimed, unreleased
//! message), looks for the records naming `p`: the endpoint that claimed `p` wrote one, and
//! endpoints that tried for `p` and lost wrote one too. If none of those endpoints is alive
//! (closed, or its process gone), nobody will ever finish the slot, and the waiter finishes
//! it with a compare-exchange on `seq` from the very value it saw: a dead sender's slot
//! becomes a skip slot (`(p + 1) | SKIP`), a dead receiver's slot becomes free
//! (`p + slots`). The compare-exchange fails harmlessly if the owner did finish after all.
//! A live endpoint never loses a slot: it can only be found dead once it is dead, and an
//! endpoint that closed has finished every claim it made (its grants and guards borrow it).
//! When every sender is gone, any claimed and unpublished slot is abandoned by definition,
//! and receivers skip it at once instead of waiting for the check.
//!
//! The check runs in the slow path only: after each sleep slice of a blocked call (rate
//! limited to once per 50 ms), and when a `try_` call finds the ring full or empty. A ring
//! whose endpoints only ever call `try_send` / `try_recv` is therefore also unstuck.
//!
//! # Delivery guarantee
//!
//! Every published message is delivered to at most one receiver. It is delivered exactly
//! once unless the receiver that claimed it dies before dropping its [`Message`] guard
//! (then the message is lost: the guard was the delivery, and nobody can know whether the
//! dead receiver acted on it). A message whose sender died before publishing it was never
//! sent. Messages of one sender are received in the order it sent them by every receiver
//! (positions grow with each claim, and a receiver's claims grow too); messages of
//! different senders interleave in claim order.
//!
//! Heap rings ([`channel`]) have no registry and no claim table: threads cannot die on their
//! own, and every handle closes on drop (even when its thread unwinds).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use crate::config::Config;
use crate::error::{
    CommitError, Corruption, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::storage::Storage;
use crate::sync::region::{HeapBytes, Region};
use crate::sync::waiter::{EventCount, Poll, WaitStats, WaitStrategy};
use crate::sync::{AtomicU32, AtomicU64, Deadline, Ordering};

#[cfg(not(loom))]
use crate::error::OpenError;
#[cfg(not(loom))]
use crate::header::{EndpointStatus, Geometry, Header, Kind, KindRules};

/// Entries of the endpoint registry at most (and by default).
pub const MAX_ENDPOINTS: usize = 64;
/// Bytes of a slot taken by its header (sequence word and length); the rest is payload.
pub(crate) const SLOT_HEADER: usize = 16;
/// Smallest slot size in bytes (one cache line).
pub const MIN_SLOT_SIZE: usize = 64;
/// Largest slot size in bytes (16 MiB).
pub const MAX_SLOT_SIZE: usize = 1 << 24;
/// Largest number of slots: 2^32 (2^24 on 32-bit targets, whose address space must hold
/// the whole data region).
#[cfg(target_pointer_width = "64")]
pub const MAX_SLOTS: usize = 1 << 32;
/// Largest number of slots: 2^24 on 32-bit targets, whose address space must hold the
/// whole data region (2^32 on 64-bit targets).
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_SLOTS: usize = 1 << 24;
/// Largest data region (slots x slot size): 1 TiB, 1 GiB on 32-bit targets.
#[cfg(target_pointer_width = "64")]
const MAX_DATA: u64 = 1 << 40;
#[cfg(not(target_pointer_width = "64"))]
const MAX_DATA: u64 = 1 << 30;
/// The rules above, as error messages say them.
#[cfg(target_pointer_width = "64")]
const SLOTS_RULE: &str = "slot count must be a power of two in 2 ..= 2^32";
#[cfg(not(target_pointer_width = "64"))]
const SLOTS_RULE: &str = "slot count must be a power of two in 2 ..= 2^24 on 32-bit targets";
#[cfg(target_pointer_width = "64")]
const DATA_RULE: &str = "ring data must not exceed 1 TiB";
#[cfg(not(target_pointer_width = "64"))]
const DATA_RULE: &str = "ring data must not exceed 1 GiB on 32-bit targets";

/// Flag of a slot's `seq`: the position is done and holds no message.
const SKIP: u64 = 1 << 63;
/// Head and tail never reach this (2^62 messages); a larger value was written by a peer.
/// Below it, `index + 1` and `seq + slots` cannot overflow.
const MAX_INDEX: u64 = 1 << 62;
/// Bit of a side word: the side is closed for good.
const CLOSED: u64 = 1;
/// One attach in a side word (the counter sits above the `CLOSED` bit).
const ATTACH: u64 = 2;
/// Claim-record tags (low two bits): which index the position refers to.
const TAG_SEND: u64 = 1;
const TAG_RECV: u64 = 2;
/// Role codes of the registry (the same values as the SPSC producer and consumer).
#[cfg(not(loom))]
const ROLE_SENDER: u32 = crate::header::ROLE_PRODUCER;
#[cfg(not(loom))]
const ROLE_RECEIVER: u32 = crate::header::ROLE_CONSUMER;

/// The senders' cache line.
#[repr(C, align(128))]
#[derive(Debug)]
struct TailLine {
    /// Next position a sender claims. Compare-exchanged by senders (AcqRel: Release so a
    /// waiter that sees the new value also sees the claimer's claim record).
    tail: AtomicU64,
}

/// The receivers' cache line.
#[repr(C, align(128))]
#[derive(Debug)]
struct HeadLine {
    /// Next position a receiver claims. Compare-exchanged by receivers (AcqRel, as `tail`).
    head: AtomicU64,
}

/// Rarely written words: the wait channels and the side words.
#[repr(C, align(128))]
#[derive(Debug)]
struct WaitLine {
    /// Receivers wait here for messages; senders notify after publishing.
    readable: EventCount,
    /// Senders wait here for free slots; receivers notify after releasing.
    writable: EventCount,
    /// Senders' side word: `CLOSED` (bit 0) once every sender is gone, above it a counter.
    /// Shared rings: the counter counts attaches (the registry says who is there). Heap
    /// rings: it counts live sender handles.
    senders: AtomicU64,
    /// Receivers' side word, as `senders`.
    receivers: AtomicU64,
}

/// The MPMC control block (three cache lines). All-zero bytes are not its initial state:
/// the creator sets its own side word (see `create_ring`).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    tail: TailLine,
    head: HeadLine,
    wait: WaitLine,
}

/// One endpoint's claim record, alone on its line (it is written on every claim).
#[repr(C, align(128))]
#[derive(Debug)]
struct ClaimLine {
    /// `position << 2 | TAG_SEND` or `| TAG_RECV`: the position this endpoint is claiming or
    /// holds; 0 when it holds none. Written only by the entry's endpoint (and cleared by the
    /// next endpoint to take the entry).
    claim: AtomicU64,
}

/// The header of a slot.
#[repr(C)]
#[derive(Debug)]
struct SlotMeta {
    /// The sequence word (see the module docs).
    seq: AtomicU64,
    /// Payload length of the message, written before `seq` is published.
    len: AtomicU32,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(Control, tail) == 0);
    assert!(offset_of!(Control, head) == 128);
    assert!(offset_of!(Control, wait) == 256);
    assert!(offset_of!(WaitLine, senders) == 16);
    assert!(offset_of!(WaitLine, receivers) == 24);
    assert!(size_of::<Control>() == 384);
    assert!(size_of::<ClaimLine>() == 128 && align_of::<ClaimLine>() == 128);
    assert!(offset_of!(SlotMeta, seq) == 0);
    assert!(offset_of!(SlotMeta, len) == 8);
    assert!(size_of::<SlotMeta>() == SLOT_HEADER);
    assert!(MIN_SLOT_SIZE % 64 == 0);
};

/// Bytes of the claim table that follows the control block in shared memory.
#[cfg(not(loom))]
const CLAIMS_SIZE: usize = MAX_ENDPOINTS * std::mem::size_of::<ClaimLine>();

impl Control {
    fn new(senders: u64, receivers: u64) -> Control {
        Control {
            tail: TailLine {
                tail: AtomicU64::new(0),
            },
            head: HeadLine {
                head: AtomicU64::new(0),
            },
            wait: WaitLine {
                readable: EventCount::new(),
                writable: EventCount::new(),
                senders: AtomicU64::new(senders),
                receivers: AtomicU64::new(receivers),
            },
        }
    }
}

#[cfg(not(loom))]
pub(crate) struct MpmcRules;

#[cfg(not(loom))]
impl KindRules for MpmcRules {
    const KIND: Kind = Kind::Mpmc;
    const CONTROL_SIZE: u64 = (std::mem::size_of::<Control>() + CLAIMS_SIZE) as u64;

    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption> {
        check_geometry(capacity, slot_size, max_message)?;
        Ok(capacity * u64::from(slot_size))
    }
}

/// Checks an MPMC geometry: slot count, slot size and largest message.
pub(crate) fn check_geometry(
    slots: u64,
    slot_size: u32,
    max_message: u32,
) -> Result<(), Corruption> {
    if !slots.is_power_of_two() || slots < 2 || slots > MAX_SLOTS as u64 {
        return Err(Corruption::new(SLOTS_RULE, slots));
    }
    let size = slot_size as usize;
    if size % 64 != 0 || !(MIN_SLOT_SIZE..=MAX_SLOT_SIZE).contains(&size) {
        return Err(Corruption::new(
            "slot size must be a multiple of 64 in 64 ..= 16 MiB",
            u64::from(slot_size),
        ));
    }
    if max_message as usize > size - SLOT_HEADER {
        return Err(Corruption::new(
            "max message must not exceed the slot payload (slot size - 16)",
            u64::from(max_message),
        ));
    }
    if slots * u64::from(slot_size) > MAX_DATA {
        return Err(Corruption::new(DATA_RULE, slots * u64::from(slot_size)));
    }
    Ok(())
}

/// Which side an endpoint is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Sender,
    Receiver,
}

impl Role {
    /// The other side.
    fn other(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }

    fn side(self, ctrl: &Control) -> &AtomicU64 {
        match self {
            Role::Sender => &ctrl.wait.senders,
            Role::Receiver => &ctrl.wait.receivers,
        }
    }

    /// The channel the *other* side sleeps on (to wake it when this side closes).
    fn peers_wait(self, ctrl: &Control) -> &EventCount {
        match self {
            Role::Sender => &ctrl.wait.readable,
            Role::Receiver => &ctrl.wait.writable,
        }
    }

    #[cfg(not(loom))]
    fn code(self) -> u32 {
        match self {
            Role::Sender => ROLE_SENDER,
            Role::Receiver => ROLE_RECEIVER,
        }
    }

    #[cfg(not(loom))]
    fn from_code(code: u32) -> Option<Role> {
        match code {
            ROLE_SENDER => Some(Role::Sender),
            ROLE_RECEIVER => Some(Role::Receiver),
            _ => None,
        }
    }

    #[cfg(not(loom))]
    fn plural(self) -> &'static str {
        match self {
            Role::Sender => "senders",
            Role::Receiver => "receivers",
        }
    }
}

/// What every handle knows about the ring: where it is and its validated shape.
#[derive(Clone, Debug)]
struct Ring {
    ctrl: NonNull<Control>,
    /// Slot `i`'s header is at `meta + i * meta_stride`: inside the slot, except under loom
    /// (whose atomics cannot live in plain bytes), where heap rings keep a separate array.
    meta: NonNull<u8>,
    meta_stride: usize,
    /// The slots; slot `i`'s payload starts at `i * slot_size + SLOT_HEADER`.
    region: Region,
    slots: u64,
    slot_size: u64,
    max_message: u64,
    /// The claim table (shared rings only).
    claims: Option<NonNull<ClaimLine>>,
    /// Entries of the endpoint registry that scans look at: the `endpoint_count` validated
    /// when the ring was opened (at most `MAX_ENDPOINTS`), never the peer-writable copy in
    /// the header. 0 for heap rings, which have no registry.
    #[cfg(not(loom))]
    registry_len: usize,
    storage: Storage,
}

impl Ring {
    #[inline]
    fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a control block inside memory that `storage` keeps alive
        // for as long as this `Ring`; it holds only atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    #[inline]
    fn index(&self, pos: u64) -> usize {
        (pos & (self.slots - 1)) as usize
    }

    #[inline]
    fn meta(&self, pos: u64) -> &SlotMeta {
        let i = self.index(pos);
        // SAFETY: `i < slots` (masked), and `slots` headers lie at `meta_stride` steps inside
        // memory that `storage` keeps alive: the data region (`slots * slot_size` bytes,
        // validated against the mapping, 64-byte aligned slots) or the heap array (loom). `SlotMeta`
        // holds only atomics, valid for any bit pattern a peer leaves.
        unsafe {
            &*self
                .meta
                .as_ptr()
                .add(i * self.meta_stride)
                .cast::<SlotMeta>()
        }
    }

    /// Region offset of the payload of position `pos`.
    #[inline]
    fn payload(&self, pos: u64) -> usize {
        self.index(pos) * self.slot_size as usize + SLOT_HEADER
    }

    /// The claim record of registry entry `entry` (shared rings).
    #[inline]
    fn claim_line(&self, entry: usize) -> Option<&AtomicU64> {
        let base = self.claims?;
        if entry >= MAX_ENDPOINTS {
            return None;
        }
        // SAFETY: the claim table holds MAX_ENDPOINTS lines right after the control block,
        // inside the control area the geometry reserves (CONTROL_SIZE); `entry` is in range.
        Some(unsafe { &(*base.as_ptr().add(entry)).claim })
    }

    #[cfg(not(loom))]
    fn header(&self) -> Option<&Header> {
        self.storage.header()
    }
}

/// A heap ring's memory (in-process channels and loom models).
///
/// The slots are laid out as in shared memory: 64-byte aligned, each starting with its
/// header, so a message moves one cache line when it fits one. Under loom the headers live in
/// a separate array instead, as loom's atomics cannot be placed in plain bytes.
struct HeapRing {
    ctrl: Box<Control>,
    #[cfg(loom)]
    meta: Box<[SlotMeta]>,
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
// gives each slot a single owner at a time (the sender that claimed it, then the receiver
// that claimed it); the control block and slot headers are atomics.
unsafe impl Sync for HeapRing {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for HeapRing {}
impl crate::storage::HeapOwner for HeapRing {}

/// Creates an in-process MPMC ring on the heap, for threads of one process.
///
/// The ring has [`Config::slots`] slots of [`Config::slot_size`] bytes; both handles can be
/// cloned for more threads.
///
/// # Errors
/// [`InvalidConfig`](crate::OpenError::InvalidConfig) when the configuration describes no
/// valid ring (under loom the function panics instead, as loom models are test code).
///
/// ```
/// use shmring::{mpmc, Config};
/// let (tx, mut rx) = mpmc::channel(&Config::default().slots(64))?;
/// let workers: Vec<_> = (0..3u32)
///     .map(|w| {
///         let mut tx = tx.clone();
///         std::thread::spawn(move || {
///             for i in 0..100u32 {
///                 tx.send(&(w * 1000 + i).to_le_bytes()).unwrap();
///             }
///         })
///     })
///     .collect();
/// drop(tx);
/// let mut n = 0;
/// while let Ok(msg) = rx.recv() {
///     assert_eq!(msg.len(), 4);
///     n += 1;
/// }
/// assert_eq!(n, 300);
/// for w in workers {
///     w.join().unwrap();
/// }
/// # Ok::<(), shmring::OpenError>(())
/// ```
#[cfg(not(loom))]
pub fn channel(config: &Config) -> Result<(Sender, Receiver), OpenError> {
    let (slots, slot_size, max_message, _) = config.mpmc_geometry()?;
    Ok(heap_channel(
        slots,
        slot_size,
        max_message,
        config.wait_strategy,
    ))
}

/// Creates an in-process MPMC ring on the heap (loom build: the configuration must be
/// valid).
#[cfg(loom)]
pub fn channel(config: &Config) -> (Sender, Receiver) {
    let (slots, slot_size, max_message, _) = config
        .mpmc_geometry()
        .expect("loom models use valid configurations");
    heap_channel(slots, slot_size, max_message, config.wait_strategy)
}

fn heap_channel(
    slots: u64,
    slot_size: u32,
    max_message: u32,
    strategy: WaitStrategy,
) -> (Sender, Receiver) {
    // `slot_size` is a multiple of 64 (checked by the geometry rules).
    let bytes = slots as usize * slot_size as usize;
    #[cfg(loom)]
    let words = bytes / 8;
    let heap = HeapRing {
        ctrl: Box::new(Control::new(ATTACH, ATTACH)),
        #[cfg(loom)]
        meta: (0..slots)
            .map(|_| SlotMeta {
                seq: AtomicU64::new(0),
                len: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            })
            .collect(),
        data: HeapBytes::zeroed(bytes),
        #[cfg(loom)]
        cells: (0..words)
            .map(|_| loom::cell::UnsafeCell::new(()))
            .collect(),
    };
    // Move the memory to its final owner first: pointers taken before a move of the boxes
    // would be invalidated by it.
    let heap = std::sync::Arc::new(heap);
    let ctrl = NonNull::from(&*heap.ctrl);
    let data = heap.data.ptr();
    #[cfg(loom)]
    let (meta, meta_stride) = (
        NonNull::from(&*heap.meta).cast::<u8>(),
        std::mem::size_of::<SlotMeta>(),
    );
    #[cfg(not(loom))]
    let (meta, meta_stride) = (data, slot_size as usize);
    // SAFETY: `data` is at least `bytes` writable bytes, 128-byte aligned, owned by `heap`,
    // which the Arc keeps alive (and in place) as long as any handle.
    let region = unsafe {
        let ptr = data;
        #[cfg(not(loom))]
        let region = Region::new(ptr, bytes);
        #[cfg(loom)]
        let region = Region::new(
            ptr,
            bytes,
            NonNull::new_unchecked(heap.cells.as_ptr() as *mut loom::cell::UnsafeCell<()>),
        );
        region
    };
    let storage = Storage::Heap { _owner: heap };
    let ring = Ring {
        ctrl,
        meta,
        meta_stride,
        region,
        slots,
        slot_size: u64::from(slot_size),
        max_message: u64::from(max_message),
        claims: None,
        #[cfg(not(loom))]
        registry_len: 0,
        storage,
    };
    for i in 0..slots {
        ring.meta(i).seq.store(i, Ordering::Relaxed);
    }
    (
        Sender {
            h: Handle::new(ring.clone(), Role::Sender, None, strategy),
        },
        Receiver {
            h: Handle::new(ring, Role::Receiver, None, strategy),
        },
    )
}

/// Builds the ring view of a validated shared segment.
#[cfg(not(loom))]
fn shm_ring(seg: std::sync::Arc<crate::segment::Segment>, g: &Geometry) -> Ring {
    let (ctrl, region) = crate::storage::shm_parts::<Control>(&seg, g);
    // SAFETY: the geometry was validated against the mapping: the claim table follows the
    // control block inside CONTROL_SIZE bytes before `data_offset`, and the slot headers
    // start the data region (`data_offset < total_len <= len`).
    let (claims, meta) = unsafe {
        let claims = NonNull::new_unchecked(
            ctrl.as_ptr()
                .cast::<u8>()
                .add(std::mem::size_of::<Control>())
                .cast::<ClaimLine>(),
        );
        let meta = NonNull::new_unchecked(seg.ptr().as_ptr().add(g.data_offset as usize));
        (claims, meta)
    };
    Ring {
        ctrl,
        meta,
        meta_stride: g.slot_size as usize,
        region,
        slots: g.capacity,
        slot_size: u64::from(g.slot_size),
        max_message: u64::from(g.max_message),
        claims: Some(claims),
        // Validated by `Geometry::new`: 1..=MAX_ENDPOINTS.
        registry_len: (g.endpoint_count as usize).min(MAX_ENDPOINTS),
        storage: Storage::Shm(seg),
    }
}

/// Creates a named (or anonymous) ring; the creator takes registry entry 0.
#[cfg(not(loom))]
fn create_ring(name: Option<&str>, config: &Config, role: Role) -> Result<Handle, OpenError> {
    let (slots, slot_size, max_message, endpoints) = config.mpmc_geometry()?;
    let g = Geometry::new::<MpmcRules>(slots, slot_size, max_message, endpoints)
        .map_err(|c| OpenError::InvalidConfig(c.to_string()))?;
    let seg = crate::storage::create_shm::<MpmcRules>(
        name,
        &g,
        config.mode,
        Some((0, role.code())),
        |seg| {
            // Nobody else can see the object before it is published: initialise the side
            // word of the creator and every slot's sequence (slot i is free for position i).
            let (ctrl, _) = crate::storage::shm_parts::<Control>(seg, &g);
            // SAFETY: as `Ring::ctrl`: the control block lies in the validated mapping.
            let ctrl = unsafe { ctrl.as_ref() };
            role.side(ctrl).store(ATTACH, Ordering::Relaxed);
            for i in 0..slots {
                // SAFETY: slot `i < slots` starts `i * slot_size` bytes into the data region,
                // which the geometry places inside the mapping; 64-byte aligned.
                let meta = unsafe {
                    &*seg
                        .ptr()
                        .as_ptr()
                        .add(g.data_offset as usize + i as usize * slot_size as usize)
                        .cast::<SlotMeta>()
                };
                meta.seq.store(i, Ordering::Relaxed);
            }
        },
    )?;
    Ok(Handle::new(
        shm_ring(seg, &g),
        role,
        Some(0),
        config.wait_strategy,
    ))
}

/// Attaches a new endpoint of `role` to a shared ring: takes a registry entry (reaping dead
/// entries if the registry is full), clears the entry's claim record, and counts itself in
/// its side word unless the side is closed.
#[cfg(not(loom))]
fn attach(ring: Ring, role: Role, strategy: WaitStrategy) -> Result<Handle, OpenError> {
    let h = ring
        .header()
        .expect("attach is only called for shared rings");
    let me = crate::peer::ProcessId::current();
    let entry = match h.attach_any(ring.registry_len, role.code(), me) {
        Some(e) => e,
        None => {
            reap_dead(&ring);
            h.attach_any(ring.registry_len, role.code(), me)
                .ok_or(OpenError::RegistryFull {
                    capacity: ring.registry_len,
                })?
        }
    };
    if let Some(rec) = ring.claim_line(entry) {
        // The previous owner of the entry (closed or reaped) may have left a record.
        rec.store(0, Ordering::Release);
    }
    let side = role.side(ring.ctrl());
    let mut w = side.load(Ordering::Relaxed);
    loop {
        if w & CLOSED != 0 {
            h.detach(entry);
            return Err(OpenError::EndpointClosed(role.plural()));
        }
        // SYNC POINT: Release (with our entry's ATTACHED before it) pairs with the Acquire
        // load in `close_side_if_last`: a closer that sees this count sees our entry.
        match side.compare_exchange_weak(w, w + ATTACH, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => break,
            Err(cur) => w = cur,
        }
    }
    Ok(Handle::new(ring, role, Some(entry), strategy))
}

/// Closes `role`'s side if no endpoint of it is attached any more (shared rings). Safe to
/// call any number of times, from anyone.
#[cfg(not(loom))]
fn close_side_if_last(ring: &Ring, role: Role) {
    let Some(h) = ring.header() else { return };
    // Two last endpoints closing at once each store their CLOSED entry, then scan for the
    // other's: the fence makes sure at least one of them sees both closed (without it,
    // each load may miss the other's store and nobody closes the side).
    crate::sync::fence(Ordering::SeqCst);
    let ctrl = ring.ctrl();
    let side = role.side(ctrl);
    loop {
        // SYNC POINT: Acquire pairs with the Release compare-exchange of an attacher: if
        // we see its count, we see its ATTACHED entry in the scan below.
        let w = side.load(Ordering::Acquire);
        if w & CLOSED != 0 || w == 0 {
            // Closed already, or nobody of this side ever attached.
            return;
        }
        if (0..ring.registry_len).any(|i| h.attached_role(i) == Some(role.code())) {
            return;
        }
        // SYNC POINT: Release pairs with the Acquire loads of the side word by the other
        // side (`poll_msg`, `try_claim`): every closed endpoint's writes (seen through the
        // Acquire scan above) happen before the side reads as closed.
        if side
            .compare_exchange(w, w | CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            role.peers_wait(ctrl).notify_closed();
            return;
        }
    }
}

/// Reaps every registry entry whose process died, and closes a side that lost its last
/// endpoint. Also closes a side left open by a reaper that died half-way.
#[cfg(not(loom))]
fn reap_dead(ring: &Ring) {
    let Some(h) = ring.header() else { return };
    for i in 0..ring.registry_len {
        if let Some(role) = h.reap_if_dead(i).and_then(Role::from_code) {
            close_side_if_last(ring, role);
        }
    }
    close_side_if_last(ring, Role::Sender);
    close_side_if_last(ring, Role::Receiver);
}

/// Whether `role`'s side is closed, after reaping the dead endpoints of it (shared rings)
/// up to the first live one: a side with a live endpoint is not done, whatever the others
/// are. Looks at `/proc`: slow paths only.
#[cfg(not(loom))]
fn side_gone(ring: &Ring, role: Role) -> bool {
    let Some(h) = ring.header() else { return false };
    for i in 0..ring.registry_len {
        if h.attached_role(i) != Some(role.code()) {
            continue;
        }
        match h.reap_if_dead(i).and_then(Role::from_code) {
            // The reaper accounts for the departure (the entry may have changed hands
            // since the role was read: close the side of whoever was reaped).
            Some(reaped) => close_side_if_last(ring, reaped),
            // Alive, unless it closed meanwhile.
            None if h.attached_role(i) == Some(role.code()) => return false,
            None => {}
        }
    }
    close_side_if_last(ring, role);
    // SYNC POINT: Acquire pairs with the Release that closed the side.
    role.side(ring.ctrl()).load(Ordering::Acquire) & CLOSED != 0
}

/// Whether an endpoint that is still alive recorded a claim on `pos` (with `tag`): the
/// claimer of `pos` is among the endpoints whose record names it.
#[cfg(not(loom))]
fn claimer_alive(ring: &Ring, pos: u64, tag: u64) -> bool {
    let Some(h) = ring.header() else { return true };
    let target = (pos << 2) | tag;
    (0..ring.registry_len).any(|i| {
        // SYNC POINT: Acquire pairs with the Release stores of claim records in
        // `Handle::record`: seeing a later record of the claimer means seeing the slot it
        // finished before (then the recovering compare-exchange fails).
        ring.claim_line(i)
            .is_some_and(|rec| rec.load(Ordering::Acquire) == target)
            // Only an attached endpoint claims slots: an entry mid-attach (perhaps forever,
            // if its attacher was killed) holds at most a stale record of a departed owner.
            && h.attached_role(i).is_some()
            && h.status(i) == EndpointStatus::Alive
    })
}

/// Finishes the slots that dead endpoints left half done (see "Crash recovery" in the module
/// docs). Returns whether it finished one.
#[cfg(not(loom))]
fn recover_abandoned(ring: &Ring) -> bool {
    let ctrl = ring.ctrl();
    let mut done = false;
    // A sender that claimed `head` and never published it.
    // SYNC POINT: Acquire on `head`/`tail` pairs with the claimers' Release
    // compare-exchanges: their claim records (stored before) are visible.
    let h = ctrl.head.head.load(Ordering::Acquire);
    if h >= MAX_INDEX {
        // Written by a peer; the handles report it as corruption.
        return false;
    }
    let meta = ring.meta(h);
    if meta.seq.load(Ordering::Acquire) == h
        && ctrl.tail.tail.load(Ordering::Acquire) > h
        && !claimer_alive(ring, h, TAG_SEND)
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq`.
        && meta
            .seq
            .compare_exchange(h, (h + 1) | SKIP, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        ctrl.wait.readable.notify();
        done = true;
    }
    // A receiver that claimed the previous lap of `tail` and never released it.
    let t = ctrl.tail.tail.load(Ordering::Acquire);
    if t >= ring.slots && t < MAX_INDEX {
        let prev = t - ring.slots;
        let meta = ring.meta(t);
        let s = meta.seq.load(Ordering::Acquire);
        if s & !SKIP == prev + 1
            && ctrl.head.head.load(Ordering::Acquire) > prev
            && !claimer_alive(ring, prev, TAG_RECV)
            // SYNC POINT: Release pairs with the senders' Acquire load of `seq`.
            && meta
                .seq
                .compare_exchange(s, t, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            ctrl.wait.writable.notify();
            done = true;
        }
    }
    done
}

/// When a handle last looked at its peers (rate limit of the slow-path checks).
#[derive(Clone, Copy, Debug, Default)]
struct PeerClock {
    #[cfg(not(loom))]
    last: Option<std::time::Instant>,
}

/// Shortest interval between two peer checks of one handle.
#[cfg(not(loom))]
const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(50);

#[cfg(not(loom))]
impl PeerClock {
    /// Whether `PEER_CHECK_INTERVAL` has passed since the last check; if so, starts a new one.
    fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < PEER_CHECK_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The slow-path peer check: reap dead endpoints, finish abandoned slots. Rate limited;
/// a no-op for heap rings.
fn check_peers(ring: &Ring, clock: &mut PeerClock) {
    #[cfg(not(loom))]
    {
        if ring.claims.is_none() || !clock.due() {
            return;
        }
        reap_dead(ring);
        // A dead process may have left one abandoned slot per handle it had.
        for _ in 0..crate::header::MAX_ENDPOINTS {
            if !recover_abandoned(ring) {
                break;
            }
        }
    }
    #[cfg(loom)]
    let _ = (ring, clock);
}

/// What sender and receiver handles share: the ring, the registry entry, the error state.
#[derive(Debug)]
struct Handle {
    ring: Ring,
    role: Role,
    /// Registry entry (shared rings).
    entry: Option<usize>,
    /// This endpoint's claim record (shared rings).
    record: Option<NonNull<AtomicU64>>,
    /// Set once corruption was found; every later call reports it.
    broken: Option<Corruption>,
    closed: bool,
    strategy: WaitStrategy,
    stats: WaitStats,
    clock: PeerClock,
    /// When `is_disconnected` last looked at the other side's processes: its own rate
    /// limit, in a `Cell` so that it can take `&self` (handles are not `Sync`).
    #[cfg(not(loom))]
    probe_clock: std::cell::Cell<PeerClock>,
    /// The process that attached this endpoint; a copy inherited by a forked child is not
    /// the endpoint and must not close it.
    #[cfg(not(loom))]
    owner_pid: u32,
}

impl Handle {
    fn new(ring: Ring, role: Role, entry: Option<usize>, strategy: WaitStrategy) -> Handle {
        let record = entry.and_then(|e| ring.claim_line(e)).map(NonNull::from);
        Handle {
            ring,
            role,
            entry,
            record,
            broken: None,
            closed: false,
            strategy,
            stats: WaitStats::default(),
            clock: PeerClock::default(),
            #[cfg(not(loom))]
            probe_clock: std::cell::Cell::new(PeerClock::default()),
            #[cfg(not(loom))]
            owner_pid: std::process::id(),
        }
    }

    /// A new endpoint of the same side of the same ring.
    fn try_clone(&self) -> Result<Handle, crate::OpenError> {
        #[cfg(not(loom))]
        if self.entry.is_some() {
            return attach(self.ring.clone(), self.role, self.strategy);
        }
        // Heap ring: count one more live handle (the side cannot be closed: we are in it).
        self.role
            .side(self.ring.ctrl())
            .fetch_add(ATTACH, Ordering::Relaxed);
        Ok(Handle::new(
            self.ring.clone(),
            self.role,
            None,
            self.strategy,
        ))
    }

    /// Records that this endpoint is about to claim `pos` (see "Crash recovery").
    #[inline]
    fn record(&self, pos: u64, tag: u64) {
        if let Some(rec) = self.record {
            // SAFETY: the claim line lies in the mapping that `ring.storage` keeps alive.
            let rec = unsafe { rec.as_ref() };
            // SYNC POINT: Release pairs with the Acquire load in `claimer_alive`; the
            // compare-exchange that follows is Release too, so the record is visible to
            // whoever sees the claim.
            rec.store((pos << 2) | tag, Ordering::Release);
        }
    }

    /// Clears the claim record after a call that claimed nothing.
    #[cold]
    fn clear_record(&self) {
        if let Some(rec) = self.record {
            // SAFETY: as in `record`.
            unsafe { rec.as_ref() }.store(0, Ordering::Release);
        }
    }

    #[cold]
    fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.broken = Some(c);
        self.ring.storage.poison();
        c
    }

    /// Whether the other side has closed for good (or was found dead).
    #[inline]
    fn peers_closed(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release that closed the side.
        self.role
            .other()
            .side(self.ring.ctrl())
            .load(Ordering::Acquire)
            & CLOSED
            != 0
    }

    /// Whether the other side has closed for good or, for shared rings, every endpoint of
    /// it died: then they are reaped, which closes the side. The processes are looked up at
    /// most once per `PEER_CHECK_INTERVAL` per handle, and the look-up stops at the first
    /// live endpoint of the other side (usually one `/proc` read).
    fn peers_gone(&self) -> bool {
        if self.peers_closed() {
            return true;
        }
        #[cfg(not(loom))]
        if self.ring.claims.is_some() {
            let mut clock = self.probe_clock.get();
            let due = clock.due();
            self.probe_clock.set(clock);
            return due && side_gone(&self.ring, self.role.other());
        }
        false
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        #[cfg(not(loom))]
        if std::process::id() != self.owner_pid {
            // An inherited copy in a forked child: the endpoint (its registry entry and
            // claim record) belongs to the parent, which is still using it. Only unmap.
            return;
        }
        self.clear_record();
        #[cfg(not(loom))]
        if let (Some(entry), Some(h)) = (self.entry, self.ring.header()) {
            h.detach(entry);
            close_side_if_last(&self.ring, self.role);
            return;
        }
        // Heap ring: one live handle fewer; the last one closes the side.
        let ctrl = self.ring.ctrl();
        let side = self.role.side(ctrl);
        let mut w = side.load(Ordering::Relaxed);
        loop {
            #[cfg(not(shmring_mutant = "mpmc_close_off_by_one"))]
            let new = if w >> 1 <= 1 { CLOSED } else { w - ATTACH };
            #[cfg(shmring_mutant = "mpmc_close_off_by_one")]
            let new = if w >> 1 <= 2 { CLOSED } else { w - ATTACH };
            // SYNC POINT: Release pairs with the Acquire loads of the side word by the other
            // side: our last publish or release happens before the side reads as closed.
            match side.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if new == CLOSED {
                        self.role.peers_wait(ctrl).notify_closed();
                    }
                    return;
                }
                Err(cur) => w = cur,
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

/// Why a slot could not be claimed right now.
#[derive(Clone, Copy, Debug)]
enum NoSlot {
    /// Full (sender) or empty (receiver).
    Busy,
    Disconnected,
    Corrupted(Corruption),
}

/// Why a claim failed (internal; converted into the public error of each call).
#[derive(Debug)]
enum ClaimError {
    Timeout,
    Disconnected,
    TooLarge { len: usize, max: usize },
    Corrupted(Corruption),
}

impl ClaimError {
    fn into_send<T>(self, msg: T) -> SendError<T> {
        match self {
            // A wait without deadline never times out.
            ClaimError::Timeout | ClaimError::Disconnected => SendError::Disconnected(msg),
            ClaimError::TooLarge { len, max } => SendError::TooLarge { msg, len, max },
            ClaimError::Corrupted(what) => SendError::Corrupted { msg, what },
        }
    }

    fn into_try_send<T>(self, msg: T) -> TrySendError<T> {
        match self {
            ClaimError::Timeout => TrySendError::Full(msg),
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

impl From<NoSlot> for ClaimError {
    fn from(e: NoSlot) -> ClaimError {
        match e {
            NoSlot::Busy => ClaimError::Timeout,
            NoSlot::Disconnected => ClaimError::Disconnected,
            NoSlot::Corrupted(c) => ClaimError::Corrupted(c),
        }
    }
}

/// The sending end of an MPMC ring.
///
/// `Clone` (each clone is a new endpoint, with its own registry entry), `Send`, not `Sync`:
/// methods take `&mut self` because an endpoint holds at most one claimed slot at a time.
pub struct Sender {
    h: Handle,
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

impl Clone for Sender {
    /// A new sender endpoint of the same ring.
    ///
    /// # Panics
    /// If the ring's endpoint registry is full (use [`Sender::try_clone`] to handle that).
    fn clone(&self) -> Sender {
        self.try_clone()
            .unwrap_or_else(|e| panic!("cannot clone mpmc::Sender: {e}"))
    }
}

impl Sender {
    /// A new sender endpoint of the same ring, with its own registry entry.
    ///
    /// # Errors
    /// [`OpenError::RegistryFull`](crate::OpenError::RegistryFull) when every registry
    /// entry is taken by a live endpoint.
    ///
    /// ```
    /// use shmring::{mpmc, Config, OpenError};
    /// let name = format!("/shmring-doc-mpmc-clone-{}", std::process::id());
    /// let tx = mpmc::Sender::create(&name, Config::default().endpoints(2))?;
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
    /// sender of it. Other processes attach with [`Sender::open`] and [`Receiver::open`].
    ///
    /// # Errors
    /// [`OpenError`]: invalid name or configuration, `AlreadyExists`, `PermissionDenied`,
    /// `NoSpace`, or an OS error.
    ///
    /// ```
    /// use shmring::{mpmc, Config};
    /// let name = format!("/shmring-doc-mpmc-create-{}", std::process::id());
    /// let mut tx = mpmc::Sender::create(&name, Config::default().slots(16).slot_size(128))?;
    /// let mut rx = mpmc::Receiver::open(&name)?; // normally in another process
    /// shmring::unlink(&name)?;
    /// tx.send(b"hello")?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// assert_eq!(tx.max_message(), 112);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create(
        name: &str,
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: create_ring(Some(name), config.borrow(), Role::Sender)?,
        })
    }

    /// Creates an anonymous MPMC ring on a sealed memfd and returns a sender of it. Hand the
    /// fd ([`Sender::fd`]) to other processes, which attach with [`Sender::from_fd`] or
    /// [`Receiver::from_fd`].
    ///
    /// # Errors
    /// As [`Sender::create`].
    ///
    /// ```
    /// use shmring::{mpmc, Config};
    /// let mut tx = mpmc::Sender::create_anonymous(Config::default())?;
    /// let fd = tx.fd().expect("shared ring").try_clone_to_owned()?;
    /// let mut rx = mpmc::Receiver::from_fd(fd)?;
    /// tx.send(b"over a memfd")?;
    /// assert_eq!(&*rx.recv()?, b"over a memfd");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create_anonymous(config: impl std::borrow::Borrow<Config>) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: create_ring(None, config.borrow(), Role::Sender)?,
        })
    }

    /// Attaches a new sender to an existing named MPMC ring.
    ///
    /// # Errors
    /// [`OpenError`]: `NotFound`, `PermissionDenied`, a layout mismatch (`NotShmring`,
    /// `UnsupportedVersion`, `WrongKind`, `TooSmall`, `BadGeometry`, `StillInitialising`,
    /// `Poisoned`), `RegistryFull`, or `EndpointClosed` if every sender that was attached
    /// is gone (the senders' side is closed for good).
    ///
    /// ```
    /// use shmring::{mpmc, Config};
    /// let name = format!("/shmring-doc-mpmc-sopen-{}", std::process::id());
    /// let mut rx = mpmc::Receiver::create(&name, Config::default())?;
    /// let mut tx = mpmc::Sender::open(&name)?;
    /// shmring::unlink(&name)?;
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Sender, OpenError> {
        let (seg, g) = crate::storage::open_shm::<MpmcRules>(name)?;
        Ok(Sender {
            h: attach(shm_ring(seg, &g), Role::Sender, WaitStrategy::default())?,
        })
    }

    /// Attaches a new sender to a ring given by a file descriptor (see
    /// [`Sender::create_anonymous`]).
    ///
    /// # Errors
    /// As [`Sender::open`].
    ///
    /// ```
    /// use shmring::{mpmc, Config};
    /// let rx = mpmc::Receiver::create_anonymous(Config::default())?;
    /// let fd = rx.fd().expect("shared ring").try_clone_to_owned()?;
    /// let tx = mpmc::Sender::from_fd(fd)?;
    /// assert!(!tx.is_disconnected());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Sender, OpenError> {
        let (seg, g) = crate::storage::open_fd::<MpmcRules>(fd)?;
        Ok(Sender {
            h: attach(shm_ring(seg, &g), Role::Sender, WaitStrategy::default())?,
        })
    }

    /// The file descriptor of the shared-memory object (`None` for heap rings).
    ///
    /// ```
    /// let (tx, _rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// assert!(tx.fd().is_none());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.h.ring.storage.fd()
    }

    /// Number of slots.
    ///
    /// ```
    /// let (tx, _rx) = shmring::mpmc::channel(&shmring::Config::default().slots(8))?;
    /// assert_eq!(tx.capacity(), 8);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.h.ring.slots as usize
    }

    /// Largest message this ring accepts, in bytes.
    ///
    /// ```
    /// let cfg = shmring::Config::default().slot_size(256);
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
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// tx.set_wait_strategy(shmring::WaitStrategy::Block);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.h.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    ///
    /// ```
    /// let (tx, _rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// assert_eq!(tx.wait_stats().waits, 0);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn wait_stats(&self) -> WaitStats {
        self.h.stats
    }

    /// Whether every receiver has gone (closed, or died). Sends will fail from now on.
    ///
    /// For a shared ring this also looks whether the receivers' processes are still there
    /// (at most once per 50 ms per handle), so it notices receivers killed without closing
    /// even if this sender never blocks; dead ones are reaped, as a blocked call would.
    ///
    /// ```
    /// let (tx, rx) = shmring::mpmc::channel(&shmring::Config::default())?;
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
    fn claim_fast(&mut self) -> Option<u64> {
        if self.h.broken.is_some() || self.h.peers_closed() {
            return None;
        }
        let ring = &self.h.ring;
        let ctrl = ring.ctrl();
        // SYNC POINT: Acquire, as in `try_claim`.
        let t = ctrl.tail.tail.load(Ordering::Acquire);
        // SYNC POINT: Acquire pairs with the Release store of `seq` by the receiver that
        // released the slot, as in `try_claim`. Any `t` is masked to a slot; a `t` out of
        // range is left to `try_claim` to report.
        if t >= MAX_INDEX || ring.meta(t).seq.load(Ordering::Acquire) != t {
            return None;
        }
        self.h.record(t, TAG_SEND);
        // Release: the claim record is visible to whoever sees the new tail.
        ctrl.tail
            .tail
            .compare_exchange(t, t + 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| t)
    }

    /// Tries to claim the slot at `tail`, without waiting. Returns the claimed position.
    fn try_claim(&mut self) -> Result<u64, NoSlot> {
        if let Some(c) = self.h.broken {
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
        // value that would read as out of range (corruption).
        let mut t = ctrl.tail.tail.load(Ordering::Acquire);
        let bad = loop {
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
                // Release: the claim record is visible to whoever sees the new tail.
                match ctrl.tail.tail.compare_exchange_weak(
                    t,
                    t + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok(t),
                    Err(cur) => {
                        t = cur;
                        continue;
                    }
                }
            }
            let sm = s & !SKIP;
            #[cfg(not(shmring_mutant = "mpmc_full_off_by_one"))]
            let full = sm < t && sm + cap >= t;
            #[cfg(shmring_mutant = "mpmc_full_off_by_one")]
            let full = sm < t && sm + cap > t;
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
    fn claim(&mut self, len: usize, deadline: Deadline) -> Result<u64, ClaimError> {
        if len as u64 <= self.h.ring.max_message {
            if let Some(pos) = self.claim_fast() {
                return Ok(pos);
            }
        }
        self.claim_slower(len, deadline)
    }

    /// Refuses a message larger than the ring's maximum.
    fn check_size(&self, len: usize) -> Result<(), ClaimError> {
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
    fn claim_slower(&mut self, len: usize, deadline: Deadline) -> Result<u64, ClaimError> {
        self.check_size(len)?;
        match self.try_claim() {
            Ok(pos) => Ok(pos),
            Err(NoSlot::Busy) => self.claim_slow(deadline),
            Err(e) => Err(e.into()),
        }
    }

    #[cold]
    fn claim_slow(&mut self, deadline: Deadline) -> Result<u64, ClaimError> {
        let ring = self.h.ring.clone();
        let writable = &ring.ctrl().wait.writable;
        let strategy = self.h.strategy;
        let mut stats = self.h.stats;
        let mut clock = self.h.clock;
        let result = writable.wait(
            strategy,
            deadline,
            &mut stats,
            || match self.try_claim() {
                Ok(pos) => Poll::Ready(Ok(pos)),
                Err(NoSlot::Busy) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e.into())),
            },
            || {
                check_peers(&ring, &mut clock);
                Poll::Pending
            },
        );
        self.h.stats = stats;
        self.h.clock = clock;
        match result {
            Ok(r) => r,
            Err(_) => Err(ClaimError::Timeout),
        }
    }

    /// The slow-path peer check after a `try_` call found the ring full.
    #[cold]
    fn check_after_busy(&mut self) {
        check_peers(&self.h.ring, &mut self.h.clock);
    }

    /// Publishes the claimed position `pos` holding `len` payload bytes.
    #[inline]
    fn publish(&mut self, pos: u64, len: usize) {
        let ring = &self.h.ring;
        ring.region.track_write(ring.payload(pos), len);
        let meta = ring.meta(pos);
        meta.len.store(len as u32, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq` in
        // `Receiver::try_take`: the length and payload are visible before the slot reads as
        // full.
        #[cfg(not(shmring_mutant = "mpmc_relaxed_publish"))]
        meta.seq.store(pos + 1, Ordering::Release);
        #[cfg(shmring_mutant = "mpmc_relaxed_publish")]
        meta.seq.store(pos + 1, Ordering::Relaxed);
        ring.ctrl().wait.readable.notify();
    }

    /// Gives up the claimed position `pos`: receivers skip it.
    #[cold]
    fn abandon(&mut self, pos: u64) {
        let ring = &self.h.ring;
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq`.
        ring.meta(pos)
            .seq
            .store((pos + 1) | SKIP, Ordering::Release);
        ring.ctrl().wait.readable.notify();
    }

    #[inline]
    fn write_and_publish(&mut self, pos: u64, msg: &[u8]) {
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
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::Config::default().slot_size(64))?;
    /// tx.send(b"ping")?;
    /// let big = [0u8; 49];
    /// let err = tx.send(&big).unwrap_err();
    /// assert_eq!(err.to_string(), "message of 49 bytes exceeds the ring's maximum message size of 48 bytes");
    /// drop(rx);
    /// let err = tx.send(b"lost?").unwrap_err();
    /// assert!(err.is_disconnected());
    /// assert_eq!(err.into_inner(), b"lost?");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn send<'m>(&mut self, msg: &'m [u8]) -> Result<(), SendError<&'m [u8]>> {
        match self.claim(msg.len(), Deadline::never()) {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send(msg)),
        }
    }

    /// Sends a message if a slot is free now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if no slot is free right now (one might be soon), otherwise
    /// as [`send`](Sender::send). The message is handed back.
    ///
    /// ```
    /// use shmring::{mpmc, Config, TrySendError};
    /// let (mut tx, _rx) = mpmc::channel(&Config::default().slots(2))?;
    /// tx.try_send(b"a")?;
    /// tx.try_send(b"b")?;
    /// assert!(matches!(tx.try_send(b"c"), Err(TrySendError::Full(b"c"))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    pub fn try_send<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
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
    fn try_send_slow<'m>(&mut self, msg: &'m [u8]) -> Result<(), TrySendError<&'m [u8]>> {
        if let Err(e) = self.check_size(msg.len()) {
            return Err(e.into_try_send(msg));
        }
        match self.try_claim() {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(NoSlot::Busy) => {
                self.check_after_busy();
                Err(TrySendError::Full(msg))
            }
            Err(e) => Err(ClaimError::from(e).into_try_send(msg)),
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
    /// use shmring::{mpmc, Config, SendTimeoutError};
    /// let (mut tx, _rx) = mpmc::channel(&Config::default().slots(2))?;
    /// tx.send(b"1")?;
    /// tx.send(b"2")?;
    /// let e = tx.send_timeout(b"3", Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, SendTimeoutError::Timeout(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout<'m>(
        &mut self,
        msg: &'m [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'m [u8]>> {
        match self.claim(msg.len(), Deadline::after(timeout)) {
            Ok(pos) => {
                self.write_and_publish(pos, msg);
                Ok(())
            }
            Err(e) => Err(e.into_send_timeout(msg)),
        }
    }

    /// Claims a slot for a message of up to `len` bytes and returns it for writing in place
    /// (zero copy); waits while the ring is full. Nothing is published until
    /// [`SendGrant::commit`]; dropping the grant publishes nothing (the slot is marked
    /// empty and receivers skip it).
    ///
    /// The grant's bytes hold whatever the slot held before, not zeros. Receivers that reach
    /// the slot wait for the grant: commit it soon.
    ///
    /// # Errors
    /// As [`send`](Sender::send) (the handed-back value is `()`).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let mut g = tx.reserve(16)?;
    /// g[..5].copy_from_slice(b"hello");
    /// g.commit(5)?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendGrant<'_>, SendError<()>> {
        let pos = self
            .claim(len, Deadline::never())
            .map_err(|e| e.into_send(()))?;
        Ok(self.grant(pos, len))
    }

    /// Claims a slot for up to `len` bytes if one is free now.
    ///
    /// # Errors
    /// As [`try_send`](Sender::try_send).
    ///
    /// ```
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::Config::default().slots(2))?;
    /// tx.send(b"a")?;
    /// let g = tx.try_reserve(8)?;
    /// drop(g); // publishes nothing, but the slot is used up until a receiver skips it
    /// assert!(tx.try_reserve(8).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_reserve(&mut self, len: usize) -> Result<SendGrant<'_>, TrySendError<()>> {
        self.check_size(len).map_err(|e| e.into_try_send(()))?;
        match self.try_claim() {
            Ok(pos) => Ok(self.grant(pos, len)),
            Err(NoSlot::Busy) => {
                self.check_after_busy();
                Err(TrySendError::Full(()))
            }
            Err(e) => Err(ClaimError::from(e).into_try_send(())),
        }
    }

    /// Claims a slot for up to `len` bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`send_timeout`](Sender::send_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, _rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let g = tx.reserve_timeout(8, Duration::from_millis(10))?;
    /// g.commit(0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendGrant<'_>, SendTimeoutError<()>> {
        let pos = self
            .claim(len, Deadline::after(timeout))
            .map_err(|e| e.into_send_timeout(()))?;
        Ok(self.grant(pos, len))
    }

    fn grant(&mut self, pos: u64, len: usize) -> SendGrant<'_> {
        let ring = &self.h.ring;
        // SAFETY: the payload of a claimed slot lies in the region (`len <= max_message`) and
        // is ours alone until published; the grant borrows the sender mutably, so no second
        // claim of this endpoint can overlap it.
        let buf = unsafe { ring.region.slice_mut(ring.payload(pos), len) };
        SendGrant {
            buf: NonNull::from(buf),
            sender: self,
            pos,
            done: false,
        }
    }

    /// Closes this sender. When it was the last sender, receivers get what was sent, then
    /// `Disconnected`. Dropping the sender does the same.
    ///
    /// ```
    /// let (tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let tx2 = tx.clone();
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

/// A slot claimed by a sender, for writing a message in place. Derefs to the reserved bytes.
/// Publish with [`commit`](SendGrant::commit); dropping the grant publishes nothing.
pub struct SendGrant<'a> {
    sender: &'a mut Sender,
    pos: u64,
    buf: NonNull<[u8]>,
    done: bool,
}

impl fmt::Debug for SendGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGrant")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl SendGrant<'_> {
    /// Publishes the first `len` bytes of the grant as one message.
    ///
    /// # Errors
    /// [`CommitError::TooLong`] if `len` exceeds the grant, [`CommitError::Disconnected`] if
    /// every receiver went away meanwhile. Nothing is published in either case (the slot is
    /// skipped).
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let mut g = tx.reserve(8)?;
    /// g[..3].copy_from_slice(b"abc");
    /// g.commit(3)?;
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit(mut self, len: usize) -> Result<(), CommitError> {
        self.done = true;
        let granted = self.buf.len();
        if len > granted {
            self.sender.abandon(self.pos);
            return Err(CommitError::TooLong { len, granted });
        }
        if self.sender.h.peers_closed() {
            self.sender.abandon(self.pos);
            return Err(CommitError::Disconnected);
        }
        self.sender.publish(self.pos, len);
        Ok(())
    }

    /// Size of the grant in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the grant holds no bytes (a reservation of 0).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Deref for SendGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the claimed slot's payload, ours alone while the grant (which
        // borrows the sender mutably) lives.
        unsafe { self.buf.as_ref() }
    }
}

impl DerefMut for SendGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `deref`; `&mut self` makes the access unique.
        unsafe { self.buf.as_mut() }
    }
}

impl Drop for SendGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.sender.abandon(self.pos);
        }
    }
}

/// A claimed message: its position and validated length.
#[derive(Clone, Copy, Debug)]
struct Taken {
    pos: u64,
    len: usize,
}

/// The receiving end of an MPMC ring.
///
/// `Clone` (each clone is a new endpoint, with its own registry entry), `Send`, not `Sync`:
/// methods take `&mut self` because an endpoint holds at most one message at a time.
pub struct Receiver {
    h: Handle,
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

impl Clone for Receiver {
    /// A new receiver endpoint of the same ring.
    ///
    /// # Panics
    /// If the ring's endpoint registry is full (use [`Receiver::try_clone`] to handle that).
    fn clone(&self) -> Receiver {
        self.try_clone()
            .unwrap_or_else(|e| panic!("cannot clone mpmc::Receiver: {e}"))
    }
}

impl Receiver {
    /// A new receiver endpoint of the same ring, with its own registry entry.
    ///
    /// # Errors
    /// [`OpenError::RegistryFull`](crate::OpenError::RegistryFull) when every registry
    /// entry is taken by a live endpoint.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::Config::default())?;
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
    /// As [`Sender::create`].
    ///
    /// ```
    /// use shmring::{mpmc, Config};
    /// let name = format!("/shmring-doc-mpmc-rcreate-{}", std::process::id());
    /// let rx = mpmc::Receiver::create(&name, Config::default())?;
    /// assert!(matches!(
    ///     mpmc::Receiver::create(&name, Config::default()),
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
    ) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: create_ring(Some(name), config.borrow(), Role::Receiver)?,
        })
    }

    /// Creates an anonymous MPMC ring on a sealed memfd and returns a receiver of it.
    ///
    /// # Errors
    /// As [`Sender::create`].
    ///
    /// ```
    /// let rx = shmring::mpmc::Receiver::create_anonymous(shmring::Config::default())?;
    /// assert!(rx.fd().is_some());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn create_anonymous(
        config: impl std::borrow::Borrow<Config>,
    ) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: create_ring(None, config.borrow(), Role::Receiver)?,
        })
    }

    /// Attaches a new receiver to an existing named MPMC ring.
    ///
    /// # Errors
    /// As [`Sender::open`] (`EndpointClosed` if every receiver that was attached is gone).
    ///
    /// ```
    /// let missing = format!("/shmring-doc-mpmc-missing-{}", std::process::id());
    /// match shmring::mpmc::Receiver::open(&missing) {
    ///     Err(shmring::OpenError::NotFound(name)) => assert_eq!(name, missing),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// ```
    #[cfg(not(loom))]
    pub fn open(name: &str) -> Result<Receiver, OpenError> {
        let (seg, g) = crate::storage::open_shm::<MpmcRules>(name)?;
        Ok(Receiver {
            h: attach(shm_ring(seg, &g), Role::Receiver, WaitStrategy::default())?,
        })
    }

    /// Attaches a new receiver to a ring given by a file descriptor.
    ///
    /// # Errors
    /// As [`Sender::open`].
    ///
    /// ```
    /// let mut tx = shmring::mpmc::Sender::create_anonymous(shmring::Config::default())?;
    /// let fd = tx.fd().expect("shared ring").try_clone_to_owned()?;
    /// let mut rx = shmring::mpmc::Receiver::from_fd(fd)?;
    /// tx.send(b"x")?;
    /// assert_eq!(&*rx.recv()?, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(not(loom))]
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Receiver, OpenError> {
        let (seg, g) = crate::storage::open_fd::<MpmcRules>(fd)?;
        Ok(Receiver {
            h: attach(shm_ring(seg, &g), Role::Receiver, WaitStrategy::default())?,
        })
    }

    /// The file descriptor of the shared-memory object (`None` for heap rings).
    ///
    /// ```
    /// let (_tx, rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// assert!(rx.fd().is_none());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.h.ring.storage.fd()
    }

    /// Number of slots.
    ///
    /// ```
    /// let (_tx, rx) = shmring::mpmc::channel(&shmring::Config::default().slots(4))?;
    /// assert_eq!(rx.capacity(), 4);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.h.ring.slots as usize
    }

    /// Largest message this ring accepts, in bytes.
    ///
    /// ```
    /// let (_tx, rx) = shmring::mpmc::channel(&shmring::Config::default().max_message(100))?;
    /// assert_eq!(rx.max_message(), 100);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.h.ring.max_message as usize
    }

    /// How blocked calls wait.
    ///
    /// ```
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// rx.set_wait_strategy(shmring::WaitStrategy::Spin);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.h.strategy = strategy;
    }

    /// How often this handle had to wait and sleep so far.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let _ = rx.recv_timeout(Duration::from_millis(1));
    /// assert_eq!(rx.wait_stats().waits, 1);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn wait_stats(&self) -> WaitStats {
        self.h.stats
    }

    /// Whether every sender has gone (closed, or died). Messages may still be waiting.
    ///
    /// For a shared ring this also looks whether the senders' processes are still there (at
    /// most once per 50 ms per handle), so it notices senders killed without closing even if
    /// this receiver never blocks; dead ones are reaped, as a blocked call would.
    ///
    /// ```
    /// let (tx, rx) = shmring::mpmc::channel(&shmring::Config::default())?;
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
    fn take_fast(&mut self) -> Option<Taken> {
        if self.h.broken.is_some() {
            return None;
        }
        let ring = &self.h.ring;
        let ctrl = ring.ctrl();
        // SYNC POINT: Acquire, as in `try_take`.
        let h = ctrl.head.head.load(Ordering::Acquire);
        if h >= MAX_INDEX {
            return None;
        }
        let meta = ring.meta(h);
        // SYNC POINT: Acquire pairs with the sender's Release store of `seq` in
        // `Sender::publish`: the length and payload are visible.
        #[cfg(not(shmring_mutant = "mpmc_relaxed_take"))]
        let s = meta.seq.load(Ordering::Acquire);
        #[cfg(shmring_mutant = "mpmc_relaxed_take")]
        let s = meta.seq.load(Ordering::Relaxed);
        if s != h + 1 {
            return None;
        }
        self.h.record(h, TAG_RECV);
        // Release: the claim record is visible to whoever sees the new head.
        if ctrl
            .head
            .head
            .compare_exchange(h, h + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let len = meta.len.load(Ordering::Relaxed);
        if u64::from(len) > ring.max_message {
            self.bad_length(h, len);
            return None;
        }
        Some(Taken {
            pos: h,
            len: len as usize,
        })
    }

    /// We claimed `pos` but its length is out of range: let the ring go on without us and
    /// remember the corruption (every later call reports it).
    #[cold]
    fn bad_length(&mut self, pos: u64, len: u32) -> Corruption {
        self.release(pos);
        self.h.corrupt(Corruption::new(
            "message length out of range",
            u64::from(len),
        ))
    }

    /// Tries to claim the message at `head`, without waiting.
    fn try_take(&mut self) -> Result<Taken, NoSlot> {
        if let Some(c) = self.h.broken {
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
        let bad = loop {
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
            #[cfg(not(shmring_mutant = "mpmc_relaxed_take"))]
            let s = meta.seq.load(Ordering::Acquire);
            #[cfg(shmring_mutant = "mpmc_relaxed_take")]
            let s = meta.seq.load(Ordering::Relaxed);
            let sm = s & !SKIP;
            if sm == h + 1 {
                self.h.record(h, TAG_RECV);
                recorded = true;
                // Release: the claim record is visible to whoever sees the new head.
                if let Err(cur) = ctrl.head.head.compare_exchange_weak(
                    h,
                    h + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    h = cur;
                    continue;
                }
                if s & SKIP != 0 {
                    // Nothing in it: release it and look further.
                    self.release(h);
                    h = ctrl.head.head.load(Ordering::Acquire);
                    continue;
                }
                let len = meta.len.load(Ordering::Relaxed);
                if u64::from(len) > ring.max_message {
                    return Err(NoSlot::Corrupted(self.bad_length(h, len)));
                }
                return Ok(Taken {
                    pos: h,
                    len: len as usize,
                });
            }
            #[cfg(not(shmring_mutant = "mpmc_empty_off_by_one"))]
            let empty = sm <= h && sm + cap > h;
            #[cfg(shmring_mutant = "mpmc_empty_off_by_one")]
            let empty = sm <= h && sm + cap > h + 1;
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
                // `seq` we saw, so a reload shows a newer head.
                let now = ctrl.head.head.load(Ordering::Acquire);
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

    /// `try_take`, plus end-of-stream detection when the ring is empty.
    fn poll_msg(&mut self) -> Poll<Result<Taken, RecvError>> {
        match self.try_take() {
            Ok(t) => return Poll::Ready(Ok(t)),
            Err(NoSlot::Corrupted(c)) => return Poll::Ready(Err(RecvError::Corrupted(c))),
            Err(_) => {}
        }
        if !self.h.peers_closed() {
            return Poll::Pending;
        }
        // Every sender is gone, after its last publish: look again, and skip positions that a
        // departed sender claimed but never published.
        loop {
            match self.try_take() {
                Ok(t) => return Poll::Ready(Ok(t)),
                Err(NoSlot::Corrupted(c)) => return Poll::Ready(Err(RecvError::Corrupted(c))),
                Err(_) => {}
            }
            let ring = &self.h.ring;
            let ctrl = ring.ctrl();
            // SYNC POINT: Acquire pairs with the senders' Release compare-exchanges of `tail`.
            let h = ctrl.head.head.load(Ordering::Acquire);
            let t = ctrl.tail.tail.load(Ordering::Acquire);
            if t == h {
                return Poll::Ready(Err(RecvError::Disconnected));
            }
            if t < h {
                let c = self.h.corrupt(Corruption::new("tail behind head", t));
                return Poll::Ready(Err(RecvError::Corrupted(c)));
            }
            // SYNC POINT: Release pairs with the receivers' Acquire load of `seq`.
            match ring.meta(h).seq.compare_exchange(
                h,
                (h + 1) | SKIP,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => ring.ctrl().wait.readable.notify(),
                Err(cur) if cur & !SKIP <= h && ctrl.head.head.load(Ordering::Acquire) == h => {
                    // Claimed (t > h) yet neither published nor free for its sender.
                    let c = self.h.corrupt(Corruption::new(
                        "slot sequence out of range for the head",
                        cur,
                    ));
                    return Poll::Ready(Err(RecvError::Corrupted(c)));
                }
                Err(_) => {}
            }
        }
    }

    /// Releases position `pos` to the senders of the next lap.
    #[inline]
    fn release(&self, pos: u64) {
        let ring = &self.h.ring;
        // SYNC POINT: Release pairs with the senders' Acquire load of `seq` in
        // `Sender::try_claim`: we are done reading before the slot is rewritten.
        ring.meta(pos)
            .seq
            .store(pos + ring.slots, Ordering::Release);
        ring.ctrl().wait.writable.notify();
    }

    #[inline]
    fn message(&mut self, t: Taken) -> Message<'_> {
        let ring = &self.h.ring;
        let off = ring.payload(t.pos);
        // SAFETY: the payload of a claimed message lies in the region (index masked, length
        // checked against max_message <= slot_size - 16); it was published to us and no one
        // writes the slot until we release it, which happens when the guard (borrowing the
        // receiver mutably) drops.
        let data = unsafe { ring.region.slice(off, t.len) };
        Message {
            data: NonNull::from(data),
            receiver: self,
            pos: t.pos,
        }
    }

    /// Receives the next message, waiting while the ring is empty. The returned guard derefs
    /// to the payload, which stays in its slot (zero copy) until the guard is dropped.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once every sender is gone and everything they sent has
    /// been received (end of stream); [`RecvError::Corrupted`].
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
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
            Ok(t) => Ok(self.message(t)),
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
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// assert_eq!(rx.try_recv().unwrap_err(), shmring::TryRecvError::Empty);
    /// tx.send(b"now")?;
    /// assert_eq!(&*rx.try_recv()?, b"now");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<Message<'_>, TryRecvError> {
        let t = match self.take_fast() {
            Some(t) => t,
            None => self.try_recv_slow()?,
        };
        Ok(self.message(t))
    }

    #[cold]
    #[inline(never)]
    fn try_recv_slow(&mut self) -> Result<Taken, TryRecvError> {
        match self.poll_msg() {
            Poll::Ready(r) => r.map_err(Into::into),
            Poll::Pending => {
                check_peers(&self.h.ring, &mut self.h.clock);
                Err(TryRecvError::Empty)
            }
        }
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if nothing arrived in time, otherwise as
    /// [`recv`](Receiver::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert_eq!(e, shmring::RecvTimeoutError::Timeout);
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, RecvTimeoutError> {
        let t = self.recv_deadline(Deadline::after(timeout))?;
        Ok(self.message(t))
    }

    #[inline]
    fn recv_deadline(&mut self, deadline: Deadline) -> Result<Taken, RecvTimeoutError> {
        match self.take_fast() {
            Some(t) => Ok(t),
            None => self.recv_deadline_slow(deadline),
        }
    }

    #[cold]
    #[inline(never)]
    fn recv_deadline_slow(&mut self, deadline: Deadline) -> Result<Taken, RecvTimeoutError> {
        match self.poll_msg() {
            Poll::Ready(r) => r.map_err(Into::into),
            Poll::Pending => self.recv_slow(deadline),
        }
    }

    #[cold]
    fn recv_slow(&mut self, deadline: Deadline) -> Result<Taken, RecvTimeoutError> {
        let ring = self.h.ring.clone();
        let readable = &ring.ctrl().wait.readable;
        let strategy = self.h.strategy;
        let mut stats = self.h.stats;
        let mut clock = self.h.clock;
        let result = readable.wait(
            strategy,
            deadline,
            &mut stats,
            || self.poll_msg(),
            || {
                check_peers(&ring, &mut clock);
                Poll::Pending
            },
        );
        self.h.stats = stats;
        self.h.clock = clock;
        match result {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// An iterator that receives messages (copied into `Vec`s) until end of stream.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
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
            receiver: self,
            error: None,
        }
    }

    /// Closes this receiver. When it was the last receiver, sends fail with `Disconnected`
    /// from then on. Dropping the receiver does the same.
    ///
    /// ```
    /// let (mut tx, rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// rx.close();
    /// assert!(tx.send(b"x").unwrap_err().is_disconnected());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn close(mut self) {
        self.h.close();
    }
}

/// A received message, still in its slot. Derefs to its payload; the slot is released to
/// the senders when the guard is dropped.
pub struct Message<'a> {
    receiver: &'a mut Receiver,
    pos: u64,
    data: NonNull<[u8]>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len()).finish()
    }
}

impl Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the payload is published to us and not released while the guard lives.
        unsafe { self.data.as_ref() }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        let r = &mut *self.receiver;
        // Marks the end of our read for loom's race detector.
        r.h.ring
            .region
            .track_read(r.h.ring.payload(self.pos), self.data.len());
        r.release(self.pos);
    }
}

/// Iterator returned by [`Receiver::iter`]. Ends at end of stream, or at corruption (then
/// [`Iter::error`] says what was wrong).
#[derive(Debug)]
pub struct Iter<'a> {
    receiver: &'a mut Receiver,
    error: Option<Corruption>,
}

impl Iter<'_> {
    /// The corruption that ended the iteration, if any.
    ///
    /// ```
    /// let (tx, mut rx) = shmring::mpmc::channel(&shmring::Config::default())?;
    /// drop(tx);
    /// let mut it = rx.iter();
    /// assert!(it.next().is_none());
    /// assert!(it.error().is_none());
    /// # Ok::<(), shmring::OpenError>(())
    /// ```
    pub fn error(&self) -> Option<Corruption> {
        self.error
    }
}

impl Iterator for Iter<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        match self.receiver.recv() {
            Ok(m) => Some(m.to_vec()),
            Err(RecvError::Disconnected) => None,
            Err(RecvError::Corrupted(c)) => {
                self.error = Some(c);
                None
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn geometry_rules() {
        assert!(check_geometry(2, 64, 48).is_ok());
        assert!(check_geometry(1, 64, 48).is_err());
        assert!(check_geometry(3, 64, 48).is_err());
        assert!(check_geometry(4, 96, 48).is_err());
        assert!(check_geometry(4, 64, 49).is_err());
        assert!(check_geometry(4, 32, 16).is_err());
    }

    #[test]
    fn bogus_sequence_is_corruption_not_a_hang() {
        let (mut tx, mut rx) = channel(&Config::default().slots(4)).unwrap();
        tx.send(b"x").unwrap();
        // A peer scribbles a sequence far in the future over slot 0.
        tx.h.ring.meta(0).seq.store(1 << 40, Ordering::Release);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Corrupted(_))));
        // And a length beyond the slot.
        let (mut tx, mut rx) = channel(&Config::default().slots(4)).unwrap();
        tx.send(b"x").unwrap();
        tx.h.ring.meta(0).len.store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(rx.recv(), Err(RecvError::Corrupted(_))));
    }

    #[test]
    fn dropped_grant_is_skipped() {
        let (mut tx, mut rx) = channel(&Config::default().slots(2)).unwrap();
        for round in 0..5u8 {
            drop(tx.reserve(8).unwrap());
            tx.send(&[round]).unwrap();
            assert_eq!(&*rx.recv().unwrap(), &[round]);
        }
        let g = tx.reserve(4).unwrap();
        assert!(matches!(
            g.commit(5),
            Err(CommitError::TooLong { len: 5, granted: 4 })
        ));
        drop(tx);
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
    }
}
