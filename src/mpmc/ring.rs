//! The MPMC ring's shared state: the control block, the slots and their sequence words, the
//! claim table; the view of the ring that every handle holds, and how a ring is built on the
//! heap or in shared memory.

use std::ptr::NonNull;

use crate::config::MpmcConfig as Config;
use crate::error::OpenError;
use crate::geometry::{
    Geometry, MAX_ENDPOINTS, MIN_SLOT_SIZE, MPMC_CLAIMS_SIZE, MPMC_CONTROL_SIZE, MpmcRules,
    SLOT_HEADER,
};
use crate::shm::{self, Mapped, ModelRegistry};
use crate::storage::{Presence, ROLE_CONSUMER, ROLE_PRODUCER, Registry, Storage};
use crate::sync::heap::HeapRing;
use crate::sync::region::Region;
use crate::sync::waiter::EventCount;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Flag of a slot's `seq`: the position is done and holds no message.
pub(super) const SKIP: u64 = 1 << 63;
/// Head and tail never reach this (2^62 messages); a larger value was written by a peer.
/// Below it, `index + 1` and `seq + slots` cannot overflow.
pub(super) const MAX_INDEX: u64 = 1 << 62;
/// Rounds a claim loop (`Sender::try_claim`, `Receiver::try_take`, the skip loop after the
/// senders left, a side-word compare-exchange) makes at most before it gives up for now.
/// Each round needs an index or a sequence word to change under it: an honest ring takes a
/// handful (contention between endpoints, a run of skipped positions), while a peer that
/// keeps writing could keep the loop going for ever.
pub(super) const RETRY_BUDGET: u32 = 1 << 12;
/// Bit of a side word: the side is closed for good.
pub(super) const CLOSED: u64 = 1;
/// One attach in a side word (the counter sits above the `CLOSED` bit).
pub(super) const ATTACH: u64 = 2;
/// Claim-record tags (low two bits): which index the position refers to.
pub(super) const TAG_SEND: u64 = 1;
pub(super) const TAG_RECV: u64 = 2;

/// The senders' cache line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct TailLine {
    /// Next position a sender claims. Compare-exchanged by senders (AcqRel: Release so a
    /// waiter that sees the new value also sees the claimer's claim record).
    pub(super) tail: AtomicU64,
}

/// The receivers' cache line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct HeadLine {
    /// Next position a receiver claims. Compare-exchanged by receivers (AcqRel, as `tail`).
    pub(super) head: AtomicU64,
}

/// Rarely written words: the wait channels and the side words.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct WaitLine {
    /// Receivers wait here for messages; senders notify after publishing.
    pub(super) readable: EventCount,
    /// Senders wait here for free slots; receivers notify after releasing.
    pub(super) writable: EventCount,
    /// Senders' side word: `CLOSED` (bit 0) once every sender is gone, above it a counter.
    /// Shared rings: the counter counts attaches (the registry says who is there). Heap
    /// rings: it counts live sender handles.
    pub(super) senders: AtomicU64,
    /// Receivers' side word, as `senders`.
    pub(super) receivers: AtomicU64,
}

/// The MPMC control block (three cache lines). All-zero bytes are not its initial state:
/// the creator sets its own side word (see `create_ring`).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control {
    pub(super) tail: TailLine,
    pub(super) head: HeadLine,
    pub(super) wait: WaitLine,
}

/// One endpoint's claim record, alone on its line (it is written on every claim).
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct ClaimLine {
    /// `position << 2 | TAG_SEND` or `| TAG_RECV`: the position this endpoint is claiming or
    /// holds; 0 when it holds none. Written only by the entry's endpoint (and cleared by the
    /// next endpoint to take the entry).
    pub(super) claim: AtomicU64,
}

/// The header of a slot.
#[repr(C)]
#[derive(Debug)]
pub(super) struct SlotMeta {
    /// The sequence word (see the module docs).
    pub(super) seq: AtomicU64,
    /// Payload length of the message, written before `seq` is published.
    pub(super) len: AtomicU32,
    _reserved: AtomicU32,
}

// The layout is a versioned contract between processes (checked in real builds; loom's
// atomics are larger, and loom builds never map a ring).
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    if !crate::sync::MODEL_CHECKING {
        assert!(offset_of!(Control, tail) == 0);
        assert!(offset_of!(Control, head) == 128);
        assert!(offset_of!(Control, wait) == 256);
        assert!(offset_of!(WaitLine, senders) == 16);
        assert!(offset_of!(WaitLine, receivers) == 24);
        assert!(size_of::<Control>() as u64 == MPMC_CONTROL_SIZE);
        assert!(size_of::<ClaimLine>() == 128 && align_of::<ClaimLine>() == 128);
        assert!((MAX_ENDPOINTS * size_of::<ClaimLine>()) as u64 == MPMC_CLAIMS_SIZE);
        assert!(offset_of!(SlotMeta, seq) == 0);
        assert!(offset_of!(SlotMeta, len) == 8);
        assert!(size_of::<SlotMeta>() == SLOT_HEADER);
        assert!(MIN_SLOT_SIZE % 64 == 0);
    }
};

impl Control {
    pub(super) fn new(senders: u64, receivers: u64) -> Control {
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

/// Which side an endpoint is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Sender,
    Receiver,
}

impl Role {
    /// The other side.
    pub(super) fn other(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }

    pub(super) fn side(self, ctrl: &Control) -> &AtomicU64 {
        match self {
            Role::Sender => &ctrl.wait.senders,
            Role::Receiver => &ctrl.wait.receivers,
        }
    }

    /// The channel the *other* side sleeps on (to wake it when this side closes).
    pub(super) fn peers_wait(self, ctrl: &Control) -> &EventCount {
        match self {
            Role::Sender => &ctrl.wait.readable,
            Role::Receiver => &ctrl.wait.writable,
        }
    }

    pub(super) fn code(self) -> u32 {
        match self {
            Role::Sender => ROLE_PRODUCER,
            Role::Receiver => ROLE_CONSUMER,
        }
    }

    pub(super) fn from_code(code: u32) -> Option<Role> {
        match code {
            ROLE_PRODUCER => Some(Role::Sender),
            ROLE_CONSUMER => Some(Role::Receiver),
            _ => None,
        }
    }

    pub(super) fn plural(self) -> &'static str {
        match self {
            Role::Sender => "senders",
            Role::Receiver => "receivers",
        }
    }
}

/// What every handle knows about the ring: where it is and its validated shape.
#[derive(Clone, Debug)]
pub(super) struct Ring {
    pub(super) ctrl: NonNull<Control>,
    /// Slot `i`'s header is at `meta + i * meta_stride`: inside the slot, except under loom
    /// (whose atomics cannot live in plain bytes), where heap rings keep a separate array.
    pub(super) meta: NonNull<u8>,
    pub(super) meta_stride: usize,
    /// The slots; slot `i`'s payload starts at `i * slot_size + SLOT_HEADER`.
    pub(super) region: Region,
    pub(super) slots: u64,
    pub(super) slot_size: u64,
    pub(super) max_message: u64,
    /// The claim table (rings with a registry only), at least `registry_len` lines.
    pub(super) claims: Option<NonNull<ClaimLine>>,
    /// Entries of the endpoint registry that scans look at: the `endpoint_count` validated
    /// when the ring was opened (at most `MAX_ENDPOINTS`), never the peer-writable copy in
    /// the header. 0 for the heap rings of `channel()`, which have no registry.
    pub(super) registry_len: usize,
    pub(super) storage: Storage,
    /// What this process has lent out of a shared mapping (see [`Lent`]); `None` for heap
    /// rings, whose memory only their own handles write.
    pub(super) lent: Option<std::sync::Arc<Lent>>,
}

/// The slots that the handles of this process sharing one mapping have claimed and not yet
/// given back (a grant being written, a message being read).
///
/// A ring whose shared memory is forged (a rewound `tail`, a slot's `seq` set back) can make
/// two handles of one process claim the same slot, and a safe API would then hand out two
/// live references to the same bytes, one of them `&mut`. Every claim of a handle of a
/// mapping that more than one handle uses marks the slot here first and fails as corrupted
/// if it is marked already; publishing, abandoning or releasing clears the mark, just before
/// the store of `seq` that hands the slot to the next claimer (after it, a handle of this
/// process may claim the slot at once and would find it still marked). A mapping
/// used by one handle needs no marks: the handle's `&mut self` and its one outstanding
/// grant or message already rule it out (the second handle can only be made, by
/// `try_clone`, while the first lends nothing out). Handles that open a ring separately map
/// it separately: their references never share addresses.
#[derive(Debug)]
pub(super) struct Lent {
    /// Handles of this process using this mapping.
    pub(super) handles: crate::sync::shared::AtomicUsize,
    /// One mark per slot.
    marks: Box<[crate::sync::shared::AtomicBool]>,
}

impl Lent {
    pub(super) fn new(slots: u64) -> Lent {
        Lent {
            handles: crate::sync::shared::AtomicUsize::new(0),
            marks: (0..slots)
                .map(|_| crate::sync::shared::AtomicBool::new(false))
                .collect(),
        }
    }

    /// Marks slot `i` lent; `false` if it was lent already (forged shared memory).
    #[inline]
    pub(super) fn lend(&self, i: usize) -> bool {
        if self.handles.load(crate::sync::shared::Ordering::Relaxed) <= 1 {
            return true;
        }
        self.marks
            .get(i)
            .is_some_and(|m| !m.swap(true, crate::sync::shared::Ordering::Acquire))
    }

    /// Clears slot `i`'s mark.
    #[inline]
    pub(super) fn give_back(&self, i: usize) {
        // A load first: a handle alone on its mapping never marks, and then the message
        // costs no write to this line.
        if let Some(m) = self.marks.get(i) {
            if m.load(crate::sync::shared::Ordering::Relaxed) {
                m.store(false, crate::sync::shared::Ordering::Release);
            }
        }
    }
}

impl Ring {
    #[inline]
    pub(super) fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a control block inside memory that `storage` keeps alive
        // for as long as this `Ring`; it holds only atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    #[inline]
    pub(super) fn index(&self, pos: u64) -> usize {
        (pos & (self.slots - 1)) as usize
    }

    #[inline]
    pub(super) fn meta(&self, pos: u64) -> &SlotMeta {
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
    pub(super) fn payload(&self, pos: u64) -> usize {
        self.index(pos) * self.slot_size as usize + SLOT_HEADER
    }

    /// The claim record of registry entry `entry` (rings with a registry).
    #[inline]
    pub(super) fn claim_line(&self, entry: usize) -> Option<&AtomicU64> {
        let base = self.claims?;
        if entry >= self.registry_len {
            return None;
        }
        // SAFETY: the claim table has a line for every registry entry, and `entry` is one:
        // a shared ring's holds MAX_ENDPOINTS (>= registry_len) lines right after the control
        // block, inside the control area the geometry reserves (CONTROL_SIZE); a heap ring's
        // (`on_heap_registered`) is an array of `registry_len` lines that `storage` keeps.
        Some(unsafe { &(*base.as_ptr().add(entry)).claim })
    }

    /// The endpoint registry (shared rings).
    pub(super) fn registry(&self) -> Option<&dyn Registry> {
        self.storage.registry()
    }
}

impl Ring {
    /// Messages claimed by senders and not yet claimed by receivers, at about this moment
    /// (claimed slots still being written included); a peer's forged index reads as a full
    /// ring at most.
    pub(super) fn len(&self) -> usize {
        let head = self.ctrl().head.head.load(Ordering::Acquire);
        let tail = self.ctrl().tail.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.slots) as usize
    }
}

/// A heap ring: the same slots as in shared memory, without registry or claim table.
/// Returns the ring view (both side words count one live handle).
pub(super) fn on_heap(config: &Config) -> Result<Ring, OpenError> {
    let (slots, slot_size, max_message, _) = config.mpmc_geometry()?;
    // `slot_size` is a multiple of 64 (checked by the geometry rules).
    let bytes = slots as usize * slot_size as usize;
    let parts = HeapRing::<Control, SlotMeta>::build(
        Control::new(ATTACH, ATTACH),
        bytes,
        slots as usize,
        slot_size as usize,
        fresh_slot,
    );
    Ok(Ring {
        ctrl: parts.ctrl,
        meta: parts.meta,
        meta_stride: parts.meta_stride,
        region: parts.region,
        slots,
        slot_size: u64::from(slot_size),
        max_message: u64::from(max_message),
        claims: None,
        registry_len: 0,
        storage: parts.storage,
        lent: None,
    })
}

/// A heap ring with an endpoint registry of `config.endpoints` entries ([`ModelRegistry`])
/// and a claim table, as a shared ring has: its handles attach, close, reap and recover
/// through the code of shared rings (for the loom models, see `__model`). Nobody is attached
/// yet: both side words are 0, as in a shared ring before its first attach. Returns the ring
/// view and the registry.
pub(super) fn on_heap_registered(config: &Config) -> Result<(Ring, ModelRegistry), OpenError> {
    let (slots, slot_size, max_message, endpoints) = config.mpmc_geometry()?;
    let registry_len = endpoints as usize;
    let registry = ModelRegistry::new(registry_len);
    let bytes = slots as usize * slot_size as usize;
    let parts = HeapRing::<Control, SlotMeta, ClaimLine>::build_registered(
        Control::new(0, 0),
        bytes,
        slots as usize,
        slot_size as usize,
        fresh_slot,
        registry.clone(),
        (0..registry_len).map(|_| ClaimLine {
            claim: AtomicU64::new(0),
        }),
    );
    let ring = Ring {
        ctrl: parts.ctrl,
        meta: parts.meta,
        meta_stride: parts.meta_stride,
        region: parts.region,
        slots,
        slot_size: u64::from(slot_size),
        max_message: u64::from(max_message),
        claims: parts.claims,
        registry_len,
        storage: parts.storage,
        lent: None,
    };
    Ok((ring, registry))
}

/// The header of slot `i` in a new ring: free for position `i`.
fn fresh_slot(i: usize) -> SlotMeta {
    SlotMeta {
        seq: AtomicU64::new(i as u64),
        len: AtomicU32::new(0),
        _reserved: AtomicU32::new(0),
    }
}

/// Builds the ring view of a validated shared mapping.
pub(super) fn in_shm(m: &Mapped) -> Ring {
    let g = m.geometry;
    let ctrl = m.control::<Control>();
    // SAFETY: the geometry was validated against the mapping: the claim table follows the
    // control block inside CONTROL_SIZE bytes before `data_offset`.
    let claims = unsafe {
        NonNull::new_unchecked(
            ctrl.as_ptr()
                .cast::<u8>()
                .add(std::mem::size_of::<Control>())
                .cast::<ClaimLine>(),
        )
    };
    Ring {
        ctrl,
        // The slot headers start the data region, one per slot.
        meta: m.data(),
        meta_stride: g.slot_size as usize,
        region: m.region(),
        slots: g.capacity,
        slot_size: u64::from(g.slot_size),
        max_message: u64::from(g.max_message),
        claims: Some(claims),
        // Validated by `Geometry::new`: 1..=MAX_ENDPOINTS.
        registry_len: (g.endpoint_count as usize).min(MAX_ENDPOINTS),
        storage: m.storage(),
        lent: Some(std::sync::Arc::new(Lent::new(g.capacity))),
    }
}

/// Creates a named (or anonymous) ring in shared memory; the creator takes registry entry 0
/// in `role`. Returns the ring view.
pub(super) fn create<'a>(
    place: impl Into<shm::Place<'a>>,
    config: &Config,
    role: Role,
) -> Result<(Ring, Option<Presence>), OpenError> {
    let g = geometry(config)?;
    let slots = g.capacity;
    let (mapped, presence) =
        shm::create::<MpmcRules>(place, &g, config.mode, Some((0, role.code())), |m| {
            // Nobody else can see the object before it is published: initialise the side word
            // of the creator and every slot's sequence (slot i is free for position i).
            let ring = in_shm(m);
            role.side(ring.ctrl()).store(ATTACH, Ordering::Relaxed);
            for i in 0..slots {
                ring.meta(i).seq.store(i, Ordering::Relaxed);
            }
        })?;
    Ok((in_shm(&mapped), presence))
}

/// The shared-memory layout of a ring made as `config` says.
pub(super) fn geometry(config: &Config) -> Result<Geometry, OpenError> {
    let (slots, slot_size, max_message, endpoints) = config.mpmc_geometry()?;
    Geometry::new::<MpmcRules>(slots, slot_size, max_message, endpoints)
        .map_err(|c| OpenError::InvalidConfig(c.to_string()))
}
