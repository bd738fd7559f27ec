//! The hostile peer: its own read-write mapping of a round's ring object, and the
//! corruptions it applies there while the victim works: every word a peer can reach, given
//! values no sound ring holds (or that are off by one, a ring, a lap), once or in a loop.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::common::RingName;
use super::{Rng, plan};

// ---- layout of a ring object (version 1), as a hostile peer sees it ----

/// Header fields: (offset, width in bytes).
const HEADER_FIELDS: [(usize, usize); 15] = [
    (0, 8),
    (8, 4),
    (12, 4),
    (16, 4),
    (20, 4),
    (24, 8),
    (32, 4),
    (36, 4),
    (40, 8),
    (48, 8),
    (56, 8),
    (64, 8),
    (72, 4),
    (76, 4),
    (80, 8),
];
/// Endpoint entry `i`: state u32, role u32, pid u32, pad u32, start time u64.
const ENDPOINTS: usize = 128;
const ENDPOINT_SIZE: usize = 24;
/// Control block: the tail line, the head line, the wait line.
const TAIL: usize = 4096;
const HEAD: usize = 4096 + 128;
const WAIT: usize = 4096 + 256;
/// Wait line: readable {epoch u32, waiters u32}, writable {epoch, waiters}, then
/// SPSC: producer_closed u32, consumer_closed u32; MPMC: senders u64, receivers u64.
const READABLE: usize = WAIT;
const WRITABLE: usize = WAIT + 8;
const FLAGS: usize = WAIT + 16;
/// MPMC claim table: one 128-byte line per registry entry, after the control block.
const CLAIMS: usize = 4096 + 384;
/// Header offsets read before scribbling: capacity, slot size, data offset.
const CAPACITY: usize = 24;
const SLOT_SIZE: usize = 32;
const DATA_OFFSET: usize = 48;
/// MPMC sequence-word flag and side-word bits.
const SKIP: u64 = 1 << 63;
const CLOSED: u64 = 1;
const ATTACH: u64 = 2;
/// SPSC padding-record flag.
const PAD: u64 = 1 << 63;

/// This process's own read-write mapping of a ring object.
struct Scribbler {
    map: memmap2::MmapRaw,
}

impl Scribbler {
    fn open(name: &RingName) -> Scribbler {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.dev_shm_path())
            .expect("open the ring object");
        let map = memmap2::MmapOptions::new()
            .map_raw(&f)
            .expect("map the ring object");
        Scribbler { map }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn word64(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len(), "offset {off}");
        // SAFETY: in bounds and 8-byte aligned (checked; the mapping is page aligned), inside
        // a mapping that lives as long as `self`. Another process writes the same memory,
        // hence atomics, which are valid for any bit pattern.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU64>() }
    }

    fn word32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.len(), "offset {off}");
        // SAFETY: as in `word64`, for a 4-byte aligned word.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU32>() }
    }

    fn load64(&self, off: usize) -> u64 {
        self.word64(off).load(Ordering::Acquire)
    }

    fn store64(&self, off: usize, v: u64) {
        self.word64(off).store(v, Ordering::Release);
    }

    fn store32(&self, off: usize, v: u32) {
        self.word32(off).store(v, Ordering::Release);
    }

    fn mutate64(&self, off: usize, rng: &mut Rng, step: u64) {
        let v = nasty64(rng, self.load64(off), step);
        self.store64(off, v);
    }

    fn mutate32(&self, off: usize, rng: &mut Rng) {
        let v = nasty32(rng, self.word32(off).load(Ordering::Acquire));
        self.store32(off, v);
    }
}

/// A value a buggy or hostile peer might leave in a 64-bit word that held `cur`; `step` is
/// the ring's size in index units.
fn nasty64(rng: &mut Rng, cur: u64, step: u64) -> u64 {
    match rng.below(24) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX - 1,
        4 => u64::MAX - 7,
        5 => u64::MAX - 15,
        6 => 1 << 61,
        7 => 1 << 62,
        8 => (1 << 62) - 1,
        9 => 1 << 63,
        10 => cur.wrapping_add(1),
        11 => cur.wrapping_sub(1),
        12 => cur.wrapping_add(8),
        13 => cur.wrapping_sub(8),
        14 => cur.wrapping_add(step),
        15 => cur.wrapping_sub(step),
        16 => cur.wrapping_add(step + 1),
        17 => cur.wrapping_add(step + 8),
        18 => cur.wrapping_add(2 * step),
        19 => cur ^ (1 << rng.below(64)),
        20 => cur | SKIP,
        21 => cur.wrapping_add(1 << 32),
        22 => cur.wrapping_add(rng.below(4 * step + 16)),
        _ => rng.next(),
    }
}

/// As [`nasty64`], for a 32-bit word.
fn nasty32(rng: &mut Rng, cur: u32) -> u32 {
    match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => u32::MAX,
        6 => u32::MAX - 1,
        7 => 1 << 31,
        8 => cur.wrapping_add(1),
        9 => cur.wrapping_sub(1),
        10 => cur ^ (1 << rng.below(32)),
        11 => cur.wrapping_add(0x100),
        12 => 0x3F_FFFF,
        _ => rng.next() as u32,
    }
}

/// The shape of the ring being scribbled on, read from its header before any scribbling.
#[derive(Clone, Copy, Debug)]
struct Shape {
    mpmc: bool,
    /// Bytes (SPSC) or slots (MPMC).
    capacity: u64,
    slot_size: usize,
    data: usize,
    victim: u32,
}

impl Shape {
    /// Offset of the slot of position `pos` (MPMC).
    fn slot(&self, pos: u64) -> usize {
        self.data + (pos & (self.capacity - 1)) as usize * self.slot_size
    }
}

/// Applies one corruption; returns its name.
fn corrupt(sc: &Scribbler, s: &Shape, rng: &mut Rng) -> &'static str {
    let step = s.capacity;
    match rng.below(14) {
        0 => {
            let (off, width) = rng.pick(&HEADER_FIELDS);
            if width == 8 {
                sc.mutate64(off, rng, step);
            } else {
                sc.mutate32(off, rng);
            }
            "header"
        }
        1 => {
            let entry = if rng.chance(80) {
                rng.below(4)
            } else {
                rng.below(64)
            } as usize;
            let base = ENDPOINTS + entry * ENDPOINT_SIZE;
            match rng.below(5) {
                // State: any state, with a generation or a taker's pid above it.
                0 => sc.store32(
                    base,
                    rng.pick(&[0, 1, 2, 3, 4, 5, 0xff]) | (nasty32(rng, 0) << 8),
                ),
                1 => sc.mutate32(base + 4, rng),
                2 => sc.store32(
                    base + 8,
                    rng.pick(&[0, 1, s.victim, std::process::id(), u32::MAX, 0x3F_FFFF]),
                ),
                3 => sc.mutate64(base + 16, rng, step),
                _ => sc.mutate32(base, rng),
            }
            "endpoint"
        }
        2 | 3 => {
            sc.mutate64(if rng.chance(50) { TAIL } else { HEAD }, rng, step);
            "index"
        }
        4 => {
            // Both indices at once: consistent near the top of the range, or the tail a few
            // records or slots ahead of the head.
            let head = sc.load64(HEAD);
            if rng.chance(50) {
                let top = (u64::MAX - rng.below(4 * step)) & !7;
                sc.store64(HEAD, top);
                sc.store64(TAIL, top);
            } else {
                let unit = if s.mpmc { 1 } else { 8 };
                sc.store64(
                    TAIL,
                    head.wrapping_add(unit * rng.below(2 * step / unit + 3)),
                );
            }
            "index pair"
        }
        5 => {
            if s.mpmc {
                let side = FLAGS + 8 * rng.below(2) as usize;
                let v = match rng.below(5) {
                    0 => u64::MAX - 1,
                    1 => CLOSED,
                    2 => sc.load64(side) | CLOSED,
                    3 => sc.load64(side).wrapping_add(ATTACH),
                    _ => nasty64(rng, sc.load64(side), 2),
                };
                sc.store64(side, v);
                "side word"
            } else {
                let flag = FLAGS + 4 * rng.below(2) as usize;
                sc.mutate32(flag, rng);
                "closed flag"
            }
        }
        6 => {
            let off = rng.pick(&[READABLE, READABLE + 4, WRITABLE, WRITABLE + 4]);
            sc.mutate32(off, rng);
            "futex word"
        }
        7 | 8 => {
            if s.mpmc {
                let pos = match rng.below(3) {
                    0 => sc.load64(HEAD),
                    1 => sc.load64(TAIL),
                    _ => rng.below(step),
                };
                let slot = s.slot(pos);
                if rng.chance(60) {
                    let v = match rng.below(6) {
                        0 => pos,
                        1 => pos.wrapping_add(1),
                        2 => pos.wrapping_add(1) | SKIP,
                        3 => pos.wrapping_add(step),
                        4 => pos.wrapping_add(step + 1),
                        _ => nasty64(rng, sc.load64(slot), step),
                    };
                    sc.store64(slot, v);
                } else {
                    sc.mutate32(slot + 8, rng);
                }
                "slot"
            } else {
                // A record header at or just after the consumer's position.
                let head = sc.load64(HEAD);
                let pos = (head.wrapping_add(8 * rng.below(4)) & (step - 1) & !7) as usize;
                let to_end = step - pos as u64;
                let v = match rng.below(6) {
                    0 => PAD | (to_end - 8),
                    1 => PAD | rng.below(step),
                    2 => step / 2 - 7,
                    3 => u64::from(u32::MAX),
                    4 => rng.below(step),
                    _ => nasty64(rng, sc.load64(s.data + pos), step),
                };
                sc.store64(s.data + pos, v);
                "record"
            }
        }
        9 => {
            if s.mpmc {
                let entry = rng.below(8) as usize;
                let v = match rng.below(4) {
                    0 => (sc.load64(HEAD) << 2) | 1,
                    1 => (sc.load64(TAIL).wrapping_sub(step) << 2) | 2,
                    2 => u64::MAX,
                    _ => rng.next(),
                };
                sc.store64(CLAIMS + 128 * entry, v);
                "claim record"
            } else {
                sc.mutate64(TAIL, rng, step);
                "index"
            }
        }
        10 => {
            if s.mpmc {
                // Every slot marked as a skipped position from the head on, and the tail a
                // ring ahead: a run of skips as long as the ring (or one past it).
                let head = sc.load64(HEAD);
                for p in head..head.wrapping_add(step).max(head) {
                    sc.store64(s.slot(p), p.wrapping_add(1) | SKIP);
                }
                sc.store64(TAIL, head.wrapping_add(step + rng.below(2)));
                "skip run"
            } else {
                sc.store32(FLAGS, 1);
                sc.store64(TAIL, sc.load64(HEAD).wrapping_add(8 * rng.below(step)));
                "forged end"
            }
        }
        11 => {
            // The known walk: every sender gone and a tail far ahead.
            if s.mpmc {
                sc.store64(FLAGS, sc.load64(FLAGS) | CLOSED);
                let head = sc.load64(HEAD);
                let tail = rng.pick(&[
                    head.wrapping_add(step + 1),
                    1 << 61,
                    (1 << 62) - 1,
                    u64::MAX,
                ]);
                sc.store64(TAIL, tail);
            } else {
                sc.store32(FLAGS, 1);
                sc.store64(TAIL, rng.pick(&[u64::MAX - 7, 1 << 62, 1 << 61]));
            }
            "forged end"
        }
        12 => {
            // A peer that keeps rewriting one word for a few milliseconds.
            let off = match rng.below(4) {
                0 => TAIL,
                1 => HEAD,
                2 if s.mpmc => FLAGS + 8 * rng.below(2) as usize,
                _ if s.mpmc => s.slot(sc.load64(HEAD)),
                _ => s.data + (sc.load64(HEAD) & (step - 1) & !7) as usize,
            };
            let a = sc.load64(off);
            let b = nasty64(rng, a, step);
            let until = Instant::now() + Duration::from_millis(rng.below(5) + 1);
            let mut flip = false;
            while Instant::now() < until {
                flip = !flip;
                sc.store64(
                    off,
                    if flip {
                        b
                    } else {
                        a.wrapping_add(rng.below(3))
                    },
                );
            }
            "hammer"
        }
        _ => {
            // Any word of the object.
            let off = (rng.below(sc.len() as u64) as usize) & !7;
            if rng.chance(50) {
                sc.store64(off, nasty64(rng, sc.load64(off), step));
            } else {
                sc.store64(off, sc.load64(off) ^ (1 << rng.below(64)));
            }
            "random word"
        }
    }
}

/// Scribbles over round `round`'s ring while the victim uses it.
pub fn scribble(name: &RingName, seed: u64, round: u64, victim: u32) -> Vec<&'static str> {
    let sc = Scribbler::open(name);
    let shape = Shape {
        mpmc: plan(seed, round).mpmc,
        capacity: sc.load64(CAPACITY),
        slot_size: sc.word32(SLOT_SIZE).load(Ordering::Acquire) as usize,
        data: sc.load64(DATA_OFFSET) as usize,
        victim,
    };
    assert!(
        shape.capacity.is_power_of_two() && shape.data < sc.len(),
        "{shape:?}"
    );
    let mut rng = Rng::new(seed ^ round.rotate_left(17) ^ 0xBAD_5EED);
    // Let some traffic get going first.
    std::thread::sleep(Duration::from_millis(rng.below(4)));
    let n = if rng.chance(15) { 1 } else { rng.below(6) + 1 };
    let mut applied = Vec::new();
    for _ in 0..n {
        applied.push(corrupt(&sc, &shape, &mut rng));
        std::thread::sleep(Duration::from_millis(rng.below(3)));
    }
    // The victim keeps going a little on whatever is left.
    std::thread::sleep(Duration::from_millis(rng.below(5)));
    applied
}
