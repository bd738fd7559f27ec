//! The on-memory layout of a ring's first page, and the validation every opener runs before
//! anything else touches the mapping.
//!
//! ```text
//! offset  field            type        notes
//! 0       magic            u64         b"SHMRING\0", native endian (a byte-swapped magic
//!                                      means the other side has the other byte order)
//! 8       layout_version   u32         LAYOUT_VERSION
//! 12      kind             u32         1 = SPSC, 2 = MPMC
//! 16      state            u32         0 = initialising, 1 = ready (written last), 2 = poisoned
//! 20      word_bits        u32         pointer width of the creator
//! 24      capacity         u64         bytes (SPSC) or slots (MPMC); a power of two
//! 32      slot_size        u32         MPMC slot stride in bytes; 0 for SPSC
//! 36      max_message      u32         largest message payload in bytes
//! 40      control_offset   u64         start of the control block (one page in)
//! 48      data_offset      u64         start of the data region (page aligned)
//! 56      data_len         u64         bytes of data region
//! 64      total_len        u64         data_offset + data_len
//! 72      creator_pid      u32
//! 76      endpoint_count   u32         entries of the endpoint table in use (<= 64)
//! 80      creator_start    u64         creator's start time (clock ticks since boot)
//! 128     endpoints[64]    24 bytes    {state: u32, role: u32, pid: u32, _: u32, start: u64}
//! 4095    doorbell         u8          reserved: `pwrite` to it rings the doorbell of ends
//!                                      parked in an event loop (`sync::doorbell`); never read
//! ```
//!
//! An endpoint's `state` word holds the state in its low 8 bits and, above them, a generation
//! that MPMC rings bump each time they reuse the entry (SPSC entries are never reused and keep
//! generation 0, so their words are the bare states). While an MPMC attacher takes an entry
//! (state `EP_TAKING`), the high bits hold the attacher's pid instead, so that an entry whose
//! attacher was killed half-way names a process that can be found dead, and is reclaimed.
//!
//! Creation handshake: the object is created with `O_EXCL` and mode 0600, every field is
//! written, and `state = READY` is stored last with Release. An opener waits (bounded) for
//! `READY` with Acquire, then validates every field against the object's real size and keeps
//! its own copy of the geometry: a field that a peer changes later is never read again.

use std::time::{Duration, Instant};

use super::peer::ProcessId;
use super::segment::Segment;
use crate::error::{Corruption, OpenError};
use crate::geometry::{Geometry, HEADER_SIZE, Kind, KindRules, MAGIC, MAX_ENDPOINTS};
use crate::sync::shared::{AtomicU32, AtomicU64, Ordering};

/// Version of the layout described in this module.
pub(crate) const LAYOUT_VERSION: u32 = 4;
/// How long an opener waits for a creator to finish initialising.
pub(crate) const INIT_WAIT: Duration = Duration::from_secs(2);

const STATE_INITIALISING: u32 = 0;
const STATE_READY: u32 = 1;
const STATE_POISONED: u32 = 2;

/// One entry of the endpoint table.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Low 8 bits: `EP_FREE`, `EP_CLAIMING`, `EP_TAKING`, `EP_ATTACHED` or `EP_CLOSED`.
    /// `EP_ATTACHED` is stored with Release after `pid` and `start_time`, so a reader that
    /// sees it (Acquire) sees them. High 24 bits: how many times the entry was taken by
    /// [`Header::attach_any`] (MPMC reuses entries; SPSC never does, so its entries keep
    /// generation 0), so that a compare-exchange on a stale view of a reused entry fails;
    /// in state `EP_TAKING`, the pid of the process taking the entry.
    pub(super) state: AtomicU32,
    pub(super) role: AtomicU32,
    pub(super) pid: AtomicU32,
    _pad: AtomicU32,
    pub(super) start_time: AtomicU64,
}

pub(crate) const EP_FREE: u32 = 0;
pub(crate) const EP_CLAIMING: u32 = 1;
pub(crate) const EP_ATTACHED: u32 = 2;
pub(crate) const EP_CLOSED: u32 = 3;
/// Being taken by [`Header::attach_any`] (MPMC): like `EP_CLAIMING`, but the high 24 bits
/// hold the taker's pid (pids are below 2^22 on Linux), written by the very
/// compare-exchange that takes the entry. Whoever finds that process dead can reclaim the
/// entry ([`Header::reap_if_dead`]): the taker will never write it again. (With
/// `EP_CLAIMING` on a reused entry, the `pid` field may still name the previous owner, so a
/// dead value there proves nothing.)
pub(crate) const EP_TAKING: u32 = 4;
/// Bits of `Endpoint::state` holding the state proper; the rest is the generation.
pub(super) const EP_STATE_MASK: u32 = 0xff;
/// One step of the generation in `Endpoint::state`.
pub(super) const EP_GENERATION: u32 = 1 << 8;
/// Where `EP_TAKING` keeps the taker's pid in `Endpoint::state`.
pub(super) const EP_PID_SHIFT: u32 = 8;

/// The header page.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    magic: AtomicU64,
    layout_version: AtomicU32,
    kind: AtomicU32,
    state: AtomicU32,
    word_bits: AtomicU32,
    capacity: AtomicU64,
    slot_size: AtomicU32,
    max_message: AtomicU32,
    control_offset: AtomicU64,
    data_offset: AtomicU64,
    data_len: AtomicU64,
    total_len: AtomicU64,
    creator_pid: AtomicU32,
    endpoint_count: AtomicU32,
    creator_start: AtomicU64,
    _reserved: [AtomicU64; 5],
    pub(super) endpoints: [Endpoint; MAX_ENDPOINTS],
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, layout_version) == 8);
    assert!(offset_of!(Header, kind) == 12);
    assert!(offset_of!(Header, state) == 16);
    assert!(offset_of!(Header, word_bits) == 20);
    assert!(offset_of!(Header, capacity) == 24);
    assert!(offset_of!(Header, slot_size) == 32);
    assert!(offset_of!(Header, max_message) == 36);
    assert!(offset_of!(Header, control_offset) == 40);
    assert!(offset_of!(Header, data_offset) == 48);
    assert!(offset_of!(Header, data_len) == 56);
    assert!(offset_of!(Header, total_len) == 64);
    assert!(offset_of!(Header, creator_pid) == 72);
    assert!(offset_of!(Header, endpoint_count) == 76);
    assert!(offset_of!(Header, creator_start) == 80);
    assert!(offset_of!(Header, endpoints) == 128);
    assert!(size_of::<Endpoint>() == 24);
    assert!(size_of::<Header>() as u64 <= HEADER_SIZE);
    assert!(size_of::<Header>() as u64 <= crate::sync::doorbell::DOORBELL_OFFSET);
};

impl Header {
    /// The header at the start of a segment.
    pub(crate) fn of(seg: &Segment) -> &Header {
        // SAFETY: every segment is at least HEADER_SIZE bytes (checked at creation and when
        // opening), page aligned, and `Header` holds only atomics and integers, for which any
        // bit pattern (including one a peer writes) is valid.
        unsafe { &*seg.ptr().as_ptr().cast::<Header>() }
    }

    /// Writes a new ring's header; `publish` must follow once the ring is initialised.
    pub(crate) fn init(&self, g: &Geometry, creator: ProcessId) {
        let r = Ordering::Relaxed;
        self.magic.store(MAGIC, r);
        self.layout_version.store(LAYOUT_VERSION, r);
        self.kind.store(g.kind as u32, r);
        self.word_bits.store(usize::BITS, r);
        self.capacity.store(g.capacity, r);
        self.slot_size.store(g.slot_size, r);
        self.max_message.store(g.max_message, r);
        self.control_offset.store(g.control_offset, r);
        self.data_offset.store(g.data_offset, r);
        self.data_len.store(g.data_len, r);
        self.total_len.store(g.total_len, r);
        self.creator_pid.store(creator.pid, r);
        self.endpoint_count.store(g.endpoint_count, r);
        self.creator_start.store(creator.start_time, r);
    }

    /// Marks the ring ready: the last write of creation.
    pub(crate) fn publish(&self) {
        // SYNC POINT: Release pairs with the Acquire load in `validate`: an opener that sees
        // READY sees every field written by `init` and the initialised control block.
        self.state.store(STATE_READY, Ordering::Release);
    }

    /// The kind word, unvalidated (to pick the rules to validate with).
    pub(crate) fn raw_kind(&self) -> Option<Kind> {
        Kind::from_raw(self.kind.load(Ordering::Relaxed))
    }

    /// Marks the ring poisoned (a participant found it corrupted); later opens fail.
    pub(crate) fn poison(&self) {
        self.state.store(STATE_POISONED, Ordering::Relaxed);
    }

    /// Validates a mapped segment (at least its header page) as a ring of kind `R` and
    /// returns its geometry, whose `total_len` the object holds
    /// ([`Segment::extent`]).
    /// `creator_busy` says whether a header still all zeros may yet be written by its creator
    /// (worth waiting for) or belongs to a stray object (`NotShmring` at once).
    pub(crate) fn validate<R: KindRules>(
        seg: &Segment,
        creator_busy: impl Fn() -> bool,
    ) -> Result<Geometry, OpenError> {
        let h = Header::of(seg);
        let started = Instant::now();
        loop {
            let state = h.state.load(Ordering::Acquire);
            let magic = h.magic.load(Ordering::Relaxed);
            match (magic, state) {
                (MAGIC, STATE_READY) => break,
                (MAGIC, STATE_POISONED) => return Err(OpenError::Poisoned),
                (0 | MAGIC, STATE_INITIALISING) if !creator_busy() => {
                    // The creator lets go of its lock only after publishing: if it did so
                    // between our read and the probe, the header now says ready.
                    let now = (
                        h.magic.load(Ordering::Relaxed),
                        h.state.load(Ordering::Acquire),
                    );
                    match now {
                        (MAGIC, STATE_READY) => continue,
                        (0, STATE_INITIALISING) => return Err(OpenError::NotShmring),
                        (MAGIC, STATE_INITIALISING) => return Err(OpenError::Abandoned),
                        // Changed otherwise: look again from the top.
                        _ => continue,
                    }
                }
                (MAGIC | 0, STATE_INITIALISING) => {
                    if started.elapsed() >= INIT_WAIT {
                        return Err(OpenError::StillInitialising(INIT_WAIT));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                (m, _) if m == MAGIC.swap_bytes() => {
                    return Err(OpenError::Incompatible("created with the other byte order"));
                }
                (MAGIC, s) => {
                    return Err(OpenError::BadGeometry(Corruption::new(
                        "unknown state",
                        u64::from(s),
                    )));
                }
                _ => return Err(OpenError::NotShmring),
            }
        }
        let r = Ordering::Relaxed;
        let version = h.layout_version.load(r);
        if version != LAYOUT_VERSION {
            return Err(OpenError::UnsupportedVersion {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let kind = h.kind.load(r);
        if kind != R::KIND as u32 {
            return Err(OpenError::WrongKind {
                found: Kind::from_raw(kind).map_or("unknown", Kind::name),
                expected: R::KIND.name(),
            });
        }
        if h.word_bits.load(r) != usize::BITS {
            return Err(OpenError::Incompatible(
                "created with another pointer width",
            ));
        }
        let expected = Geometry::new::<R>(
            h.capacity.load(r),
            h.slot_size.load(r),
            h.max_message.load(r),
            h.endpoint_count.load(r),
        )
        .map_err(OpenError::BadGeometry)?;
        let stored = Geometry {
            control_offset: h.control_offset.load(r),
            data_offset: h.data_offset.load(r),
            data_len: h.data_len.load(r),
            total_len: h.total_len.load(r),
            ..expected
        };
        if stored != expected {
            return Err(OpenError::BadGeometry(Corruption::new(
                "offsets do not match the capacity",
                stored.total_len,
            )));
        }
        // Checked against the object (the mapping may hold only the header page so far).
        if expected.total_len > seg.extent() {
            return Err(OpenError::TooSmall {
                actual: seg.extent(),
                needed: expected.total_len,
            });
        }
        Ok(expected)
    }
}
