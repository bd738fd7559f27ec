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

use crate::error::{Corruption, OpenError};
use crate::peer::{Liveness, ProcessId};
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `b"SHMRING\0"` read as a native-endian u64.
pub(crate) const MAGIC: u64 = u64::from_ne_bytes(*b"SHMRING\0");
/// Version of the layout described in this module.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// Size of the header page; the control block starts here.
pub(crate) const HEADER_SIZE: u64 = 4096;
/// Page granularity used for `data_offset`.
pub(crate) const PAGE: u64 = 4096;
/// Entries in the endpoint table.
pub(crate) const MAX_ENDPOINTS: usize = crate::mpmc::MAX_ENDPOINTS;
/// How long an opener waits for a creator to finish initialising.
pub(crate) const INIT_WAIT: Duration = Duration::from_secs(2);

const STATE_INITIALISING: u32 = 0;
const STATE_READY: u32 = 1;
const STATE_POISONED: u32 = 2;

/// Ring kinds stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Spsc = 1,
    Mpmc = 2,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Spsc => "SPSC",
            Kind::Mpmc => "MPMC",
        }
    }

    fn from_raw(v: u32) -> Option<Kind> {
        match v {
            1 => Some(Kind::Spsc),
            2 => Some(Kind::Mpmc),
            _ => None,
        }
    }
}

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
    state: AtomicU32,
    role: AtomicU32,
    pid: AtomicU32,
    _pad: AtomicU32,
    start_time: AtomicU64,
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
const EP_STATE_MASK: u32 = 0xff;
/// One step of the generation in `Endpoint::state`.
const EP_GENERATION: u32 = 1 << 8;
/// Where `EP_TAKING` keeps the taker's pid in `Endpoint::state`.
const EP_PID_SHIFT: u32 = 8;

/// Roles recorded in the endpoint table.
pub(crate) const ROLE_PRODUCER: u32 = 1;
pub(crate) const ROLE_CONSUMER: u32 = 2;

/// What an endpoint entry says about its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointStatus {
    /// Never attached.
    Free,
    /// Attached by a process that is alive (or mid-attach).
    Alive,
    /// Closed, or attached by a process that has died.
    Gone,
}

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
    endpoints: [Endpoint; MAX_ENDPOINTS],
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
};

/// The validated shape of a ring, copied out of the header into the handle's own memory.
/// `total_len`, and so every offset and length in it, fits in a `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) kind: Kind,
    pub(crate) capacity: u64,
    pub(crate) slot_size: u32,
    pub(crate) max_message: u32,
    pub(crate) control_offset: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) total_len: u64,
    pub(crate) endpoint_count: u32,
}

/// Rules a ring kind imposes on a geometry, checked for both creation and opening.
pub(crate) trait KindRules {
    const KIND: Kind;
    /// Size of the control block that sits at `control_offset`.
    const CONTROL_SIZE: u64;
    /// Checks capacity, slot size and max message; returns the data region's length.
    fn data_len(capacity: u64, slot_size: u32, max_message: u32) -> Result<u64, Corruption>;
}

impl Geometry {
    /// Lays out a new ring of kind `R`.
    pub(crate) fn new<R: KindRules>(
        capacity: u64,
        slot_size: u32,
        max_message: u32,
        endpoint_count: u32,
    ) -> Result<Geometry, Corruption> {
        let data_len = R::data_len(capacity, slot_size, max_message)?;
        let control_offset = HEADER_SIZE;
        let data_offset = round_up(control_offset + R::CONTROL_SIZE, PAGE)
            .ok_or(Corruption::new("control block too large", R::CONTROL_SIZE))?;
        let total_len = data_offset
            .checked_add(data_len)
            .ok_or(Corruption::new("ring too large", data_len))?;
        // Every offset and length below `total_len` is then a lossless `usize` too. (The
        // kinds' size limits keep this true on 32-bit targets; this check makes it certain.)
        if usize::try_from(total_len).is_err() {
            return Err(Corruption::new(
                "ring too large for this target's address space",
                total_len,
            ));
        }
        if endpoint_count as usize > MAX_ENDPOINTS || endpoint_count == 0 {
            return Err(Corruption::new(
                "endpoint count must be 1..=64",
                u64::from(endpoint_count),
            ));
        }
        Ok(Geometry {
            kind: R::KIND,
            capacity,
            slot_size,
            max_message,
            control_offset,
            data_offset,
            data_len,
            total_len,
            endpoint_count,
        })
    }

    /// Size of the object to create: `total_len` rounded up to a page.
    pub(crate) fn object_len(&self) -> u64 {
        round_up(self.total_len, PAGE).unwrap_or(self.total_len)
    }
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    Some(v.checked_add(to - 1)? / to * to)
}

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

    /// What endpoint entry `slot` says now: (state without generation, role, pid, start
    /// time). For an entry being taken (`EP_TAKING`) the pid is the taker's and the start
    /// time 0 (unknown). Unvalidated; for display.
    pub(crate) fn endpoint_snapshot(&self, slot: usize) -> Option<(u32, u32, u32, u64)> {
        let ep = self.endpoint(slot)?;
        let word = ep.state.load(Ordering::Acquire);
        let state = word & EP_STATE_MASK;
        if state == EP_TAKING {
            return Some((state, 0, word >> EP_PID_SHIFT, 0));
        }
        Some((
            state,
            ep.role.load(Ordering::Relaxed),
            ep.pid.load(Ordering::Relaxed),
            ep.start_time.load(Ordering::Relaxed),
        ))
    }

    /// Marks the ring poisoned (a participant found it corrupted); later opens fail.
    pub(crate) fn poison(&self) {
        self.state.store(STATE_POISONED, Ordering::Relaxed);
    }

    /// Validates a mapped segment as a ring of kind `R` and returns its geometry.
    pub(crate) fn validate<R: KindRules>(seg: &Segment) -> Result<Geometry, OpenError> {
        let h = Header::of(seg);
        let started = Instant::now();
        loop {
            let state = h.state.load(Ordering::Acquire);
            let magic = h.magic.load(Ordering::Relaxed);
            match (magic, state) {
                (MAGIC, STATE_READY) => break,
                (MAGIC, STATE_POISONED) => return Err(OpenError::Poisoned),
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
        if expected.total_len > seg.len() {
            return Err(OpenError::TooSmall {
                actual: seg.len(),
                needed: expected.total_len,
            });
        }
        Ok(expected)
    }

    /// Entry `slot` of the table. Bounded by the table's real size only, never by the
    /// `endpoint_count` in shared memory, which a peer could change after validation.
    fn endpoint(&self, slot: usize) -> Option<&Endpoint> {
        self.endpoints.get(slot)
    }

    /// Claims endpoint `slot` for `me`. Fails with the slot's current state if it is not free.
    pub(crate) fn attach(&self, slot: usize, role: u32, me: ProcessId) -> Result<(), u32> {
        let ep = self.endpoint(slot).ok_or(EP_CLOSED)?;
        ep.state
            .compare_exchange(EP_FREE, EP_CLAIMING, Ordering::Acquire, Ordering::Acquire)?;
        // The pid first: an attacher that dies right here is found dead by `status`.
        ep.pid.store(me.pid, Ordering::Relaxed);
        ep.start_time.store(me.start_time, Ordering::Relaxed);
        ep.role.store(role, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `status`.
        ep.state.store(EP_ATTACHED, Ordering::Release);
        Ok(())
    }

    /// Claims any entry that is free or closed (an MPMC ring reuses the entries of endpoints
    /// that left) for `me` in `role`, and returns its index; `None` if every entry is taken
    /// (attached, or mid-attach). Entries of dead processes are not taken here: they must be
    /// reaped first ([`Header::reap_if_dead`]), so that whoever reaps them accounts for them.
    ///
    /// Only the first `registry_len` entries are looked at: the registry size the caller
    /// validated when it opened the ring (`Geometry::endpoint_count`), never the
    /// `endpoint_count` in shared memory, which a peer could change after validation.
    ///
    /// SPSC rings never call this; their closed entries stay closed.
    pub(crate) fn attach_any(
        &self,
        registry_len: usize,
        role: u32,
        me: ProcessId,
    ) -> Option<usize> {
        for (slot, ep) in self.endpoints.iter().enumerate().take(registry_len) {
            let word = ep.state.load(Ordering::Relaxed);
            let state = word & EP_STATE_MASK;
            if state != EP_FREE && state != EP_CLOSED {
                continue;
            }
            let generation = (word & !EP_STATE_MASK).wrapping_add(EP_GENERATION);
            // Take the entry with our pid in it, so that if we are killed before it is
            // attached, whoever finds us dead can reclaim it. (A pid too large for the word,
            // impossible on Linux, falls back to an entry that is never reclaimed.)
            let taking = if me.pid <= u32::MAX >> EP_PID_SHIFT {
                (me.pid << EP_PID_SHIFT) | EP_TAKING
            } else {
                generation | EP_CLAIMING
            };
            if ep
                .state
                .compare_exchange(word, taking, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            ep.pid.store(me.pid, Ordering::Relaxed);
            ep.start_time.store(me.start_time, Ordering::Relaxed);
            ep.role.store(role, Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire loads in `status`, `attached_role`
            // and `reap_if_dead`: who sees ATTACHED sees the role and the process identity.
            ep.state.store(generation | EP_ATTACHED, Ordering::Release);
            return Some(slot);
        }
        None
    }

    /// The role of endpoint `slot` if it is attached (alive or not: no `/proc` lookup, so
    /// this is cheap enough for a scan of the table).
    pub(crate) fn attached_role(&self, slot: usize) -> Option<u32> {
        let ep = self.endpoint(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED in `attach` /
        // `attach_any` (role visible) and of CLOSED in `detach` (the closer's last writes
        // to the ring visible).
        if ep.state.load(Ordering::Acquire) & EP_STATE_MASK == EP_ATTACHED {
            Some(ep.role.load(Ordering::Relaxed))
        } else {
            None
        }
    }

    /// If endpoint `slot` is attached by a process that has died, marks it closed and returns
    /// its role. Exactly one caller wins a given entry (compare-exchange), so the caller that
    /// gets `Some` is the one to account for the departure. Looks at `/proc`: slow paths only.
    ///
    /// An entry that a process took ([`Header::attach_any`]) and died before attaching is
    /// marked closed too, so it can be taken again; that returns `None`, as there is
    /// nothing to account for: its endpoint never counted itself in its side.
    pub(crate) fn reap_if_dead(&self, slot: usize) -> Option<u32> {
        let ep = self.endpoint(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED (pid, start time and
        // role visible).
        let word = ep.state.load(Ordering::Acquire);
        if word & EP_STATE_MASK == EP_TAKING {
            let taker = ProcessId {
                pid: word >> EP_PID_SHIFT,
                // Unknown: the pid alone decides (a reused pid keeps the entry, for now).
                start_time: 0,
            };
            if taker.liveness() == Liveness::Dead {
                // Fails if the entry moved on meanwhile; the high bits (the dead taker's
                // pid) serve as its generation from now on.
                let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
                let _ =
                    ep.state
                        .compare_exchange(word, closed, Ordering::Relaxed, Ordering::Relaxed);
            }
            return None;
        }
        if word & EP_STATE_MASK != EP_ATTACHED {
            return None;
        }
        let role = ep.role.load(Ordering::Relaxed);
        let id = ProcessId {
            pid: ep.pid.load(Ordering::Relaxed),
            start_time: ep.start_time.load(Ordering::Relaxed),
        };
        if id.liveness() == Liveness::Alive {
            return None;
        }
        // The generation in `word` makes this fail if the entry was closed and taken again
        // since we read the identity.
        let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
        ep.state
            .compare_exchange(word, closed, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| role)
    }

    /// Marks endpoint `slot` closed.
    pub(crate) fn detach(&self, slot: usize) {
        if let Some(ep) = self.endpoint(slot) {
            // Only the owner of an attached entry writes it (a reaper takes only entries of
            // dead owners), so the generation read here is still current.
            let generation = ep.state.load(Ordering::Relaxed) & !EP_STATE_MASK;
            // SYNC POINT: Release pairs with the Acquire loads in `status` and
            // `attached_role`: the endpoint's last writes to the ring happen before it is
            // seen closed.
            ep.state.store(generation | EP_CLOSED, Ordering::Release);
        }
    }

    /// Whether the owner of endpoint `slot` is still there. Looks at `/proc` for attached
    /// entries, so call it only from slow paths.
    pub(crate) fn status(&self, slot: usize) -> EndpointStatus {
        let Some(ep) = self.endpoint(slot) else {
            return EndpointStatus::Gone;
        };
        let word = ep.state.load(Ordering::Acquire);
        match word & EP_STATE_MASK {
            EP_FREE => EndpointStatus::Free,
            EP_CLAIMING => {
                // Mid-attach. An entry that was never used before (generation 0: every SPSC
                // entry) holds either 0 or the attacher's own pid, written first; if that
                // process died mid-attach, the entry is gone. (Its start time may not be
                // written yet, so only the pid is checked.) A reused entry may still hold
                // the previous owner's pid, so it counts as alive until attached.
                let pid = ep.pid.load(Ordering::Relaxed);
                if word & !EP_STATE_MASK == 0 && pid != 0 {
                    let id = ProcessId { pid, start_time: 0 };
                    if id.liveness() == Liveness::Dead {
                        return EndpointStatus::Gone;
                    }
                }
                EndpointStatus::Alive
            }
            EP_TAKING => {
                let taker = ProcessId {
                    pid: word >> EP_PID_SHIFT,
                    start_time: 0,
                };
                match taker.liveness() {
                    Liveness::Alive => EndpointStatus::Alive,
                    Liveness::Dead => EndpointStatus::Gone,
                }
            }
            EP_ATTACHED => {
                let id = ProcessId {
                    pid: ep.pid.load(Ordering::Relaxed),
                    start_time: ep.start_time.load(Ordering::Relaxed),
                };
                match id.liveness() {
                    Liveness::Alive => EndpointStatus::Alive,
                    Liveness::Dead => EndpointStatus::Gone,
                }
            }
            _ => EndpointStatus::Gone,
        }
    }
}
