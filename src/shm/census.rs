//! What is in flight in a ring right now, read from its control block and data region
//! without attaching: the indices, the messages between them, who sleeps, which side closed.
//!
//! Read through the layout contract of each kind (offsets relative to the control block; the
//! rings pin them with `const` asserts):
//!
//! ```text
//!           SPSC                              MPMC
//! +0        tail: u64 (bytes published)       tail: u64 (next position to claim)
//! +128      head: u64 (bytes released)        head: u64 (next position to take)
//! +256      readable {epoch u32, waiters u32}  readable {epoch u32, waiters u32}
//! +264      writable {epoch u32, waiters u32}  writable {epoch u32, waiters u32}
//! +272      producer_closed: u32              senders: u64 (bit 0 CLOSED, attach counter)
//! +276      consumer_closed: u32
//! +280                                        receivers: u64 (as senders)
//! ```
//!
//! SPSC records (layout version 3, `spsc::ring`): an 8-byte header word (`READY`, a gap of up
//! to 56 bytes, the payload length; or a padding record that covers the rest of the region),
//! then the payload padded to 8 bytes. The consumer stores `head` lazily, so the records
//! between `head` and `tail` may include some it has already read. MPMC slots: `seq: u64` then `len: u32`; `seq == p + 1` holds the message of
//! position `p`.
//!
//! The ring's users go on while this reads: the figures are a snapshot of a moving ring, and
//! every word may have been written by a peer that cannot be trusted. Every load is atomic,
//! every value is bounds-checked before it is used (positions are masked, walks are bounded by
//! the ring's size), and whatever no sound ring holds is reported as a [`Corruption`], never
//! acted on.

use std::ptr::NonNull;

use crate::error::Corruption;
use crate::geometry::{Geometry, Kind};
use crate::sync::shared::{AtomicU32, AtomicU64, Ordering};

/// Offsets in the control block, as in the module docs.
const TAIL: u64 = 0;
const HEAD: u64 = 128;
const READABLE_WAITERS: u64 = 260;
const WRITABLE_WAITERS: u64 = 268;
const SPSC_PRODUCER_CLOSED: u64 = 272;
const SPSC_CONSUMER_CLOSED: u64 = 276;
const MPMC_SENDERS: u64 = 272;
const MPMC_RECEIVERS: u64 = 280;
/// Every word read lies in the first 288 bytes of the control block.
const WORDS_END: u64 = 288;

use crate::spsc::ring::{PAD, pad_header, parse_header, record_size};
/// MPMC: flag of a slot's `seq` for a position done without a message.
const SKIP: u64 = 1 << 63;
/// MPMC: the `CLOSED` bit of a side word.
const SIDE_CLOSED: u64 = 1;

/// What a ring's shared counters say at about one moment (see [`RingInfo::traffic`](crate::RingInfo::traffic)).
///
/// SPSC indices count bytes of the data region, MPMC indices count positions (messages);
/// both only grow, so two snapshots give rates. The ring keeps moving while it is read: the
/// figures need not be consistent with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traffic {
    /// Receiving side's index: bytes released (SPSC) or positions taken (MPMC).
    pub head: u64,
    /// Sending side's index: bytes published (SPSC) or positions claimed (MPMC).
    pub tail: u64,
    /// Bytes of the data region in use: records with their headers and padding (SPSC), or
    /// claimed slots times the slot size (MPMC). At most the region's size.
    pub used_bytes: u64,
    /// Messages published and not yet received (`None` if the walk over them met something
    /// no sound ring holds, see `anomaly`).
    pub messages: Option<u64>,
    /// Payload bytes of those messages (`None` as for `messages`).
    pub payload_bytes: Option<u64>,
    /// Receivers (SPSC: the consumer) announced asleep waiting for a message. A waiter
    /// killed in its sleep stays counted.
    pub waiting_receivers: u32,
    /// Senders (SPSC: the producer) announced asleep waiting for room.
    pub waiting_senders: u32,
    /// The sending side closed (SPSC: the producer closed or was found dead; MPMC: every
    /// sender that attached is gone).
    pub senders_closed: bool,
    /// The receiving side closed, as `senders_closed`.
    pub receivers_closed: bool,
    /// The first value found that no sound ring holds, if any.
    pub anomaly: Option<Corruption>,
}

/// A read-only view of a mapped ring: its control block and data region.
pub(super) struct View<'a> {
    /// Start of the control block.
    control: NonNull<u8>,
    /// Start of the data region.
    data: NonNull<u8>,
    /// The validated geometry: every offset and length in it lies inside the mapping.
    geometry: &'a Geometry,
}

impl<'a> View<'a> {
    /// The view of a mapped segment whose geometry `g` was validated against it.
    pub(super) fn of(seg: &'a super::segment::Segment, geometry: &'a Geometry) -> View<'a> {
        let at = |off: u64| {
            debug_assert!(off < seg.len());
            // SAFETY: `off` is an offset of a geometry validated against this mapping (below
            // its length), so the result points inside it.
            unsafe { seg.ptr().add(off as usize) }
        };
        View {
            control: at(geometry.control_offset),
            data: at(geometry.data_offset),
            geometry,
        }
    }

    /// MPMC: whether any receiver ever attached (the receivers' side word counts attaches).
    pub(super) fn mpmc_receivers_came(&self) -> bool {
        self.u64_at(MPMC_RECEIVERS) != 0
    }

    fn u64_at(&self, off: u64) -> u64 {
        debug_assert!(off % 8 == 0 && off + 8 <= WORDS_END);
        // SAFETY: `off + 8 <= WORDS_END <= CONTROL_SIZE` of either kind, inside the control
        // block that the validated geometry places in the mapping (page aligned, so `off`, a
        // multiple of 8, is aligned); the mapping outlives the view. Atomics are valid for
        // any bit pattern a peer leaves, and a load writes nothing (the mapping may be
        // read-only).
        let word = unsafe { &*self.control.as_ptr().add(off as usize).cast::<AtomicU64>() };
        word.load(Ordering::Acquire)
    }

    fn u32_at(&self, off: u64) -> u32 {
        debug_assert!(off % 4 == 0 && off + 4 <= WORDS_END);
        // SAFETY: as `u64_at`, for a 4-byte word at a multiple of 4.
        let word = unsafe { &*self.control.as_ptr().add(off as usize).cast::<AtomicU32>() };
        word.load(Ordering::Relaxed)
    }

    /// The 8-byte word at data-region offset `off`, or `None` if it does not lie inside.
    fn data_u64(&self, off: u64) -> Option<u64> {
        if off % 8 != 0 || off.checked_add(8)? > self.geometry.data_len {
            return None;
        }
        // SAFETY: `off + 8 <= data_len`, inside the data region the validated geometry places
        // in the mapping; `off` is a multiple of 8 and the region is page aligned; atomics
        // accept any bit pattern; the load writes nothing.
        let word = unsafe { &*self.data.as_ptr().add(off as usize).cast::<AtomicU64>() };
        Some(word.load(Ordering::Acquire))
    }

    /// The 4-byte word at data-region offset `off`, or `None` if it does not lie inside.
    fn data_u32(&self, off: u64) -> Option<u32> {
        if off % 4 != 0 || off.checked_add(4)? > self.geometry.data_len {
            return None;
        }
        // SAFETY: as `data_u64`, for a 4-byte word at a multiple of 4.
        let word = unsafe { &*self.data.as_ptr().add(off as usize).cast::<AtomicU32>() };
        Some(word.load(Ordering::Relaxed))
    }

    /// Reads the counters of a ring of the geometry's kind.
    pub(super) fn traffic(&self) -> Traffic {
        let mut t = Traffic {
            // Tail before head: a head read after the tail is never legitimately ahead.
            tail: self.u64_at(TAIL),
            head: self.u64_at(HEAD),
            used_bytes: 0,
            messages: None,
            payload_bytes: None,
            waiting_receivers: self.u32_at(READABLE_WAITERS),
            waiting_senders: self.u32_at(WRITABLE_WAITERS),
            senders_closed: false,
            receivers_closed: false,
            anomaly: None,
        };
        match self.geometry.kind {
            Kind::Spsc => self.spsc(&mut t),
            Kind::Mpmc => self.mpmc(&mut t),
        }
        t
    }

    fn spsc(&self, t: &mut Traffic) {
        t.senders_closed = self.u32_at(SPSC_PRODUCER_CLOSED) != 0;
        t.receivers_closed = self.u32_at(SPSC_CONSUMER_CLOSED) != 0;
        let cap = self.geometry.capacity;
        let used = t.tail.wrapping_sub(t.head);
        if used > cap || used % 8 != 0 || t.head % 8 != 0 {
            t.used_bytes = used.min(cap);
            t.anomaly = Some(Corruption::new("tail - head is not a run of records", used));
            return;
        }
        t.used_bytes = used;
        match self.spsc_records(t.head & (cap - 1), used) {
            Ok((messages, payload)) => {
                t.messages = Some(messages);
                t.payload_bytes = Some(payload);
            }
            Err(c) => t.anomaly = Some(c),
        }
    }

    /// Walks the records in `used` bytes from region position `pos`: (messages, payload
    /// bytes). At most `capacity / 8` steps, each checked as the consumer checks a record.
    fn spsc_records(&self, mut pos: u64, used: u64) -> Result<(u64, u64), Corruption> {
        let cap = self.geometry.capacity;
        let max = u64::from(self.geometry.max_message);
        let (mut left, mut messages, mut payload) = (used, 0u64, 0u64);
        while left > 0 {
            let word = self
                .data_u64(pos)
                .ok_or(Corruption::new("record outside the region", pos))?;
            if word & PAD != 0 {
                let skip = cap - pos;
                if word != pad_header(skip) || skip >= left {
                    return Err(Corruption::new("bad padding record", word));
                }
                left -= skip;
                pos = 0;
                continue;
            }
            let Some((len, gap)) = parse_header(word) else {
                return Err(Corruption::new("bad record header", word));
            };
            if len > max {
                return Err(Corruption::new("record length out of range", word));
            }
            let rec = record_size(len, gap);
            if rec > cap - pos || rec > left {
                return Err(Corruption::new("record beyond the published bytes", word));
            }
            left -= rec;
            messages += 1;
            payload += len;
            pos = (pos + rec) & (cap - 1);
        }
        Ok((messages, payload))
    }

    fn mpmc(&self, t: &mut Traffic) {
        let senders = self.u64_at(MPMC_SENDERS);
        let receivers = self.u64_at(MPMC_RECEIVERS);
        t.senders_closed = senders & SIDE_CLOSED != 0;
        t.receivers_closed = receivers & SIDE_CLOSED != 0;
        let slots = self.geometry.capacity;
        let slot_size = u64::from(self.geometry.slot_size);
        let claimed = t.tail.wrapping_sub(t.head);
        if t.head > t.tail || claimed > slots {
            t.used_bytes = claimed.min(slots) * slot_size;
            t.anomaly = Some(Corruption::new("tail - head beyond the slots", claimed));
            return;
        }
        t.used_bytes = claimed * slot_size;
        let max = u64::from(self.geometry.max_message);
        let (mut messages, mut payload) = (0u64, 0u64);
        for p in t.head..t.tail {
            let slot = (p & (slots - 1)) * slot_size;
            let (Some(seq), Some(len)) = (self.data_u64(slot), self.data_u32(slot + 8)) else {
                t.anomaly = Some(Corruption::new("slot outside the region", slot));
                return;
            };
            // Published and not yet taken; a slot being written (`seq == p`), skipped or
            // already taken again by now does not count.
            if seq & SKIP == 0 && seq == p.wrapping_add(1) {
                if u64::from(len) > max {
                    t.anomaly = Some(Corruption::new("message length out of range", len.into()));
                    return;
                }
                messages += 1;
                payload += u64::from(len);
            }
        }
        t.messages = Some(messages);
        t.payload_bytes = Some(payload);
    }
}
