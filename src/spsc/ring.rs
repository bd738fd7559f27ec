//! The SPSC ring's shared state: the control block, the record format, and the view of the
//! ring that both handles hold; how a ring is built on the heap or in shared memory.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::config::SpscConfig as Config;
use crate::endpoint::EndpointState;
use crate::error::{Corruption, OpenError};
use crate::geometry::{Geometry, RECORD_HEADER, SPSC_CONTROL_SIZE, SpscRules};
use crate::shm::{self, LocalEnds, Mapped};
use crate::storage::{Presence, Storage};
use crate::sync::heap::HeapRing;
use crate::sync::region::Region;
use crate::sync::waiter::EventCount;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Endpoint-table slot of the producer.
pub(super) const PRODUCER_SLOT: usize = 0;
/// Endpoint-table slot of the consumer.
pub(super) const CONSUMER_SLOT: usize = 1;

/// Flag bit of a record header: the record is padding up to the end of the region.
pub(crate) const PAD: u64 = 1 << 63;
/// Flag bit of a record header: the record is published. A header word of 0 is the
/// *terminator* the producer leaves after its last record: nothing there yet.
pub(super) const READY: u64 = 1 << 62;
/// Bits 32..35 of a message header: the gap between header and payload, in 8-byte units.
const GAP_SHIFT: u32 = 32;
const GAP_MASK: u64 = 0x7 << GAP_SHIFT;
/// Bits 0..32 of a message header: the payload length.
const LEN_MASK: u64 = 0xffff_ffff;
/// Payloads of at least this many bytes start on a 64-byte line (when the ring's largest
/// message leaves room for the gap): copying a large payload to or from an address 8 or 16
/// bytes past a line runs several times slower than from a line start.
pub(super) const ALIGN_FROM: u64 = 1024;

/// The header word of a published message record.
#[inline]
pub(super) fn message_header(len: u64, gap: u64) -> u64 {
    READY | ((gap / 8) << GAP_SHIFT) | len
}

/// The header word of a padding record covering `skip` bytes (header included).
#[inline]
pub(crate) fn pad_header(skip: u64) -> u64 {
    PAD | READY | (skip - RECORD_HEADER)
}

/// A message header's payload length and gap, or `None` if the word is no valid message
/// header (unknown flag bits, or not marked ready).
#[inline]
pub(crate) fn parse_header(word: u64) -> Option<(u64, u64)> {
    if word & !(READY | GAP_MASK | LEN_MASK) != 0 || word & READY == 0 {
        return None;
    }
    Some((word & LEN_MASK, ((word & GAP_MASK) >> GAP_SHIFT) * 8))
}

/// The gap that puts the payload of a record whose header is at region offset `at` on a
/// 64-byte line, if the payload is large enough to gain from it and the ring allows it
/// (`aligned`); otherwise 0.
#[inline]
pub(super) fn gap_for(at: u64, len: u64, aligned: bool) -> u64 {
    if aligned && len >= ALIGN_FROM {
        56u64.wrapping_sub(at) & 63
    } else {
        0
    }
}

/// Size of the record holding a `len`-byte payload `gap` bytes after its header.
#[inline]
pub(crate) fn record_size(len: u64, gap: u64) -> u64 {
    RECORD_HEADER + gap + ((len + 7) & !7)
}

/// The producer's cache line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct ProducerLine {
    /// Bytes published so far. Written only by the producer (Release) when it publishes; the
    /// consumer does not read it to receive (it polls each record's ready word), only to
    /// report how full the ring is.
    pub(super) tail: AtomicU64,
}

/// The consumer's cache line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct ConsumerLine {
    /// Bytes released so far. Written only by the consumer (Release), lazily: once a quarter
    /// of the ring was read, at the end of a `drain`, and whenever it finds the ring empty;
    /// read by the producer (Acquire) when its cached copy says the ring is full.
    pub(super) head: AtomicU64,
}

/// Rarely written words: the wait channels and the closed flags.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct WaitLine {
    /// The consumer waits here for records; the producer notifies after publishing.
    pub(super) readable: EventCount,
    /// The producer waits here for space; the consumer notifies after releasing.
    pub(super) writable: EventCount,
    /// Non-zero once the producer closed (or was found dead). Written with Release after the
    /// producer's last publish.
    pub(super) producer_closed: AtomicU32,
    /// Non-zero once the consumer closed (or was found dead).
    pub(super) consumer_closed: AtomicU32,
    /// Non-zero while the producer wants room handed over at once: it found the ring within
    /// a quarter of full (or full) after reloading `head`. Written only by the producer, in
    /// its slow path; the consumer loads it (Relaxed) on each release and, while it is set,
    /// stores `head` at once instead of once per quarter ring. A word a peer may forge: a
    /// forged value costs stores, never correctness.
    pub(super) room_wanted: AtomicU32,
}

/// The SPSC control block: three cache lines. In shared memory it sits right after the
/// header page; all-zero bytes are its initial state.
#[repr(C)]
#[derive(Debug)]
pub(super) struct Control {
    pub(super) producer: ProducerLine,
    pub(super) consumer: ConsumerLine,
    pub(super) wait: WaitLine,
}

// The layout is a versioned contract between processes (checked in real builds; loom's
// atomics are larger, and loom builds never map a ring).
const _: () = {
    use std::mem::{offset_of, size_of};
    if !crate::sync::MODEL_CHECKING {
        assert!(offset_of!(Control, producer) == 0);
        assert!(offset_of!(Control, consumer) == 128);
        assert!(offset_of!(Control, wait) == 256);
        assert!(size_of::<Control>() as u64 == SPSC_CONTROL_SIZE);
        assert!(size_of::<EventCount>() == 8);
    }
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
                room_wanted: AtomicU32::new(0),
            },
        }
    }
}

/// What both handles know about the ring: where it is and its validated shape.
#[derive(Debug)]
pub(super) struct Ring {
    ctrl: NonNull<Control>,
    pub(super) region: Region,
    pub(super) capacity: u64,
    pub(super) max_message: u64,
    /// Whether large payloads get a gap that puts them on a 64-byte line (the largest
    /// message leaves room for it: see [`Ring::aligns`]).
    pub(super) aligned: bool,
    pub(super) storage: Storage,
    /// The ends of this ring in this process (shared rings), whose own indices bound what a
    /// handle takes from shared memory (see `shm::LocalEnds`).
    pub(super) local: Option<Arc<LocalEnds>>,
    /// The indices a handle starts from (`tail`, `head`): read once from the control block
    /// (a peer may change them between two reads), or given by the other end of this
    /// process (see `join_locally`).
    pub(super) start: (u64, u64),
}

impl Ring {
    #[inline]
    pub(super) fn ctrl(&self) -> &Control {
        // SAFETY: `ctrl` points to a control block inside memory that `storage` keeps alive
        // for as long as this `Ring`; it holds only atomics, valid for any bit pattern.
        unsafe { self.ctrl.as_ref() }
    }

    /// The control block, borrowed from the storage rather than from `self` (for the wait
    /// loops, which poll through `&mut self` while they sleep on a word of it).
    #[inline]
    pub(super) fn ctrl_detached<'a>(&self) -> &'a Control {
        // SAFETY: as `ctrl`; callers keep a clone of `storage` alive for `'a`.
        unsafe { self.ctrl.as_ref() }
    }

    #[inline]
    pub(super) fn mask(&self) -> u64 {
        self.capacity - 1
    }

    /// A ring on the heap, for two threads of this process.
    pub(super) fn on_heap(config: &Config) -> Result<(Ring, Ring), OpenError> {
        let (capacity, max_message) = config.spsc_geometry()?;
        let parts = HeapRing::<Control>::build(Control::new(), capacity as usize, 0, 0, |_| ());
        let ring = |storage: Storage| Ring {
            ctrl: parts.ctrl,
            region: parts.region,
            capacity,
            max_message,
            aligned: Ring::aligns(capacity, max_message),
            storage,
            local: None,
            start: (0, 0),
        };
        Ok((ring(parts.storage.clone()), ring(parts.storage.clone())))
    }

    /// Creates a named (or anonymous) ring in shared memory; `creator`, if any, is the
    /// endpoint slot and role this process takes.
    pub(super) fn create<'a>(
        place: impl Into<shm::Place<'a>>,
        config: &Config,
        creator: Option<(usize, u32)>,
    ) -> Result<(Ring, Option<Presence>), OpenError> {
        let g = Ring::geometry(config)?;
        // The control block of a fresh object is all zeros, its initial state.
        let (mapped, presence) = shm::create::<SpscRules>(place, &g, config.mode, creator, |_| {})?;
        let mut ring = Ring::in_shm(&mapped)?;
        if let Some((slot, _)) = creator {
            ring.join_locally(slot, "endpoint")?;
        }
        Ok((ring, presence))
    }

    /// The shared-memory layout of a ring made as `config` says.
    pub(super) fn geometry(config: &Config) -> Result<Geometry, OpenError> {
        let (capacity, max_message) = config.spsc_geometry()?;
        Geometry::new::<SpscRules>(capacity, 0, max_message as u32, 2)
            .map_err(|c| OpenError::InvalidConfig(c.to_string()))
    }

    fn in_shm(m: &Mapped) -> Result<Ring, OpenError> {
        let capacity = m.geometry.capacity;
        let max_message = u64::from(m.geometry.max_message);
        let storage = m.storage();
        // Mutant switch: ends of one process that do not tell each other their progress.
        let local = if cfg!(shmring_mutant = "no_local_ends") {
            None
        } else {
            Some(m.local_ends(crate::endpoint::fork_generation())?)
        };
        let ctrl = m.control();
        // SAFETY: the control block lies inside the validated mapping, which `storage` keeps
        // alive; it holds only atomics, valid for any bit pattern.
        let c: &Control = unsafe { ctrl.as_ref() };
        let start = (
            c.producer.tail.load(Ordering::Acquire),
            c.consumer.head.load(Ordering::Acquire),
        );
        Ok(Ring {
            ctrl,
            region: m.region(),
            capacity,
            max_message,
            aligned: Ring::aligns(capacity, max_message),
            storage,
            local,
            start,
        })
    }

    /// Records in this process's table of local ends that the end in `slot` is here, at the
    /// indices of `start`. If the other end of the ring is in this process too, its own
    /// indices decide: a joining producer takes the consumer's released index as its view of
    /// `head`; a joining consumer or producer whose start from shared memory would let the
    /// two ends' bytes overlap is refused (`Corrupted`: a peer rewrote the indices). A second
    /// end of one role in this process (only a forged endpoint table lets one in) is refused
    /// with `EndpointTaken`.
    fn join_locally(&mut self, slot: usize, what: &'static str) -> Result<(), OpenError> {
        let Some(local) = self.local.clone() else {
            return Ok(());
        };
        let cap = self.capacity;
        let (tail, head) = self.start;
        let out_of_step = |at| {
            OpenError::Corrupted(Corruption::new(
                "index out of step with the other end of this process",
                at,
            ))
        };
        if slot == PRODUCER_SLOT {
            // What we write, from `tail` up to `head + cap`, must lie beyond what the
            // consumer read (`reading`) and within a ring of what it released.
            let head = match local.consumer.both() {
                Some((released, reading)) => {
                    let read = reading.wrapping_sub(released);
                    if read > tail.wrapping_sub(released) || tail.wrapping_sub(released) > cap {
                        return Err(out_of_step(tail));
                    }
                    released
                }
                None => head,
            };
            if !local.producer.join(tail, head.wrapping_add(cap)) {
                return Err(OpenError::EndpointTaken(what));
            }
            self.start.1 = head;
            // The consumer may have joined while we did: look again, after a barrier that
            // pairs with the one in its `peek` (see `Consumer::peek`).
            let _ = crate::sync::barrier::heavy();
            if let Some((released, reading)) = local.consumer.both() {
                let read = reading.wrapping_sub(released);
                if read > tail.wrapping_sub(released) || tail.wrapping_sub(released) > cap {
                    local.producer.leave();
                    return Err(out_of_step(tail));
                }
                self.start.1 = released;
            }
        } else {
            // What we read, from `head` up to what the producer published, must lie within
            // what it may not write over (from `bound - cap` to `published`).
            let in_step = |(published, bound): (u64, u64)| {
                let floor = bound.wrapping_sub(cap);
                head.wrapping_sub(floor) <= published.wrapping_sub(floor)
                    && published.wrapping_sub(floor) <= cap
            };
            if local.producer.both().is_some_and(|p| !in_step(p)) {
                return Err(out_of_step(head));
            }
            if !local.consumer.join(head, head) {
                return Err(OpenError::EndpointTaken(what));
            }
            let _ = crate::sync::barrier::heavy();
            if local.producer.both().is_some_and(|p| !in_step(p)) {
                local.consumer.leave();
                return Err(out_of_step(head));
            }
        }
        Ok(())
    }

    /// The end in `slot` leaves this process's table of local ends.
    pub(super) fn leave_locally(&self, slot: usize) {
        if let Some(local) = &self.local {
            if slot == PRODUCER_SLOT {
                local.producer.leave();
            } else {
                local.consumer.leave();
            }
        }
    }

    /// Whether a ring may put large payloads on a line: every record, with its largest gap
    /// (56 bytes) and padding before it, must still fit in an empty ring with its terminator.
    /// A record of `r` bytes needs at most `2r` (padding is shorter than the record it moves,
    /// and the terminator fits in the slack of 8-byte rounding), so `r <= capacity / 2`:
    /// `8 + 56 + max_message <= capacity / 2`. Both sides derive it from the geometry.
    fn aligns(capacity: u64, max_message: u64) -> bool {
        max_message + RECORD_HEADER + 56 <= capacity / 2
    }

    /// Attaches this process as the endpoint `slot` (with `role`) of an opened ring.
    pub(super) fn attach(
        m: Mapped,
        slot: usize,
        role: u32,
        what: &'static str,
    ) -> Result<(Ring, Presence), OpenError> {
        if m.geometry.endpoint_count != 2 {
            return Err(OpenError::BadGeometry(Corruption::new(
                "an SPSC ring has two endpoints",
                u64::from(m.geometry.endpoint_count),
            )));
        }
        let mut ring = Ring::in_shm(&m)?;
        let registry = ring.storage.registry().ok_or(OpenError::Incompatible(
            "a shared ring without an endpoint table",
        ))?;
        let presence = registry
            .attach(slot, role)
            .map_err(|refused| refused.into_open_error(what))?;
        ring.join_locally(slot, what)?;
        Ok((ring, presence))
    }
}

impl Ring {
    /// For calls that found nothing to do: whether the peer in `slot` died without closing
    /// (looked up at most once per throttle interval). If so, closes the ring for it by
    /// setting `closed_flag`, as the peer would have.
    #[cold]
    pub(super) fn peer_died(
        &self,
        ep: &mut EndpointState,
        slot: usize,
        closed_flag: fn(&Control) -> &AtomicU32,
    ) -> bool {
        if !ep.peer_gone(&self.storage, slot) {
            return false;
        }
        closed_flag(self.ctrl()).store(1, Ordering::Release);
        true
    }

    /// `is_disconnected`: whether `closed_flag` is set, or (throttled, through `&self`) the
    /// peer in `slot` died without closing, which then sets it.
    pub(super) fn peer_closed(
        &self,
        ep: &EndpointState,
        slot: usize,
        closed_flag: fn(&Control) -> &AtomicU32,
    ) -> bool {
        let flag = closed_flag(self.ctrl());
        if flag.load(Ordering::Acquire) != 0 {
            return true;
        }
        if self.storage.is_shared() && ep.probe_due() && self.storage.endpoint_gone(slot) {
            flag.store(1, Ordering::Release);
            return true;
        }
        false
    }
}

impl Ring {
    /// Bytes in use (published and not released) at about this moment, counted from `head`
    /// (the shared one, or the consumer's own); a peer's forged index reads as a full ring at
    /// most.
    pub(super) fn used_bytes(&self, head: Option<u64>) -> usize {
        let head = head.unwrap_or_else(|| self.ctrl().consumer.head.load(Ordering::Acquire));
        let tail = self.ctrl().producer.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.capacity) as usize
    }
}

pub(super) fn consumer_closed(c: &Control) -> &AtomicU32 {
    &c.wait.consumer_closed
}

pub(super) fn producer_closed(c: &Control) -> &AtomicU32 {
    &c.wait.producer_closed
}
