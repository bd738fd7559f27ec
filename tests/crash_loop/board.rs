//! What the crash-loop children report, in shared memory that outlives them: one slot per
//! child, written with atomics before and after every step, so that whatever a child had
//! reported when it was killed is still there for the test to read after reaping it. Also
//! the random numbers (a small xorshift: the runs are reproducible from a printed seed).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::Mode;
use rustix::shm;

use super::common::RingName;

/// Word indexes of a slot. What the child is doing: one of the phases below.
pub(crate) const PHASE: usize = 0;
/// The child's thread id (the one that uses the ring), for `/proc/<pid>/task/<tid>/wchan`.
pub(crate) const TID: usize = 1;
/// SPSC producer: messages published and reported (each after its send returned);
/// SPSC consumer: messages received and released.
pub(crate) const COUNT: usize = 2;
/// Messages received out of order, twice, or with wrong contents.
pub(crate) const VIOLATIONS: usize = 3;
/// MPMC: the handle generation in use (each child opens, uses and closes handles in turn).
pub(crate) const GEN: usize = 4;
/// MPMC: generations closed normally.
pub(crate) const CLOSED_GENS: usize = 5;
/// MPMC receiver: entries in the log.
pub(crate) const LOG_LEN: usize = 6;
/// Written by the test: 1 + the phase it aims a kill at (0: none). A child entering that
/// phase waits (at most a second) for `SEEN` before it goes on into the call, so that the
/// kill, up to 50 µs after `SEEN`, lands inside a call as short as an attach (~40 µs).
pub(crate) const AIM: usize = 7;
/// Written by the test: it has seen the aimed phase.
pub(crate) const SEEN: usize = 8;
/// MPMC sender: messages published and reported, per generation.
pub(crate) const COMMITTED: usize = 16;
/// Generations a child goes through at most.
pub(crate) const MAX_GENS: usize = 64;
/// MPMC receiver: the log of received messages, `uid << 32 | seq`, each written before its
/// message is released.
pub(crate) const LOG: usize = COMMITTED + MAX_GENS;
/// Entries of a receiver's log.
pub(crate) const LOG_CAP: usize = 1 << 16;
const SLOT_WORDS: usize = LOG + LOG_CAP;

/// What a child is doing (the `PHASE` word; 0 until its code runs).
pub(crate) const ATTACH: u64 = 1;
pub(crate) const SEND: u64 = 2;
pub(crate) const RESERVE: u64 = 3;
pub(crate) const COMMIT: u64 = 4;
pub(crate) const BATCH: u64 = 5;
pub(crate) const RECV: u64 = 6;
pub(crate) const HOLD: u64 = 7;
pub(crate) const IDLE: u64 = 8;
pub(crate) const CLOSE: u64 = 9;
pub(crate) const CLOSED: u64 = 10;
/// Names of the phases, for the report.
pub(crate) const PHASES: [&str; 11] = [
    "starting (before main)",
    "attaching (open)",
    "send",
    "reserve",
    "commit",
    "batch",
    "receive",
    "holding a message",
    "idle",
    "closing",
    "closed",
];

/// A named shared-memory object of `slots` slots; the creator unlinks it on drop (also when
/// the test fails).
pub(crate) struct Board {
    name: String,
    /// The creator's hold on the name.
    _owned: Option<RingName>,
    map: memmap2::MmapRaw,
    slots: usize,
    _fd: OwnedFd,
}

impl Board {
    /// Creates a board named after this process, `test` and a counter.
    pub(crate) fn create(test: &str, slots: usize) -> Board {
        // Unlinked when `owned` is dropped, even if sizing or mapping fails.
        let owned = RingName::new(test);
        let fd = shm::open(
            owned.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .expect("create board");
        rustix::fs::ftruncate(&fd, (slots * SLOT_WORDS * 8) as u64).expect("size board");
        Board::map(owned.0.clone(), Some(owned), fd, slots)
    }

    /// Opens the board of the test that started this child.
    pub(crate) fn open(name: &str) -> Board {
        let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).expect("open board");
        let len = rustix::fs::fstat(&fd).expect("fstat board").st_size as usize;
        Board::map(name.to_string(), None, fd, len / (SLOT_WORDS * 8))
    }

    fn map(name: String, owned: Option<RingName>, fd: OwnedFd, slots: usize) -> Board {
        let map = memmap2::MmapOptions::new()
            .len(slots * SLOT_WORDS * 8)
            .map_raw(&fd)
            .expect("map board");
        Board {
            name,
            _owned: owned,
            map,
            slots,
            _fd: fd,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Slot `i`.
    pub(crate) fn slot(&self, i: usize) -> Slot<'_> {
        assert!(i < self.slots, "slot {i} of {}", self.slots);
        // SAFETY: the mapping is `slots * SLOT_WORDS` words long, page aligned, shared and
        // lives as long as `self`; every process touches it only through atomics.
        let words = unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().cast::<AtomicU64>().add(i * SLOT_WORDS),
                SLOT_WORDS,
            )
        };
        Slot(words)
    }
}

/// One child's slot.
#[derive(Clone, Copy)]
pub(crate) struct Slot<'a>(&'a [AtomicU64]);

impl Slot<'_> {
    pub(crate) fn get(&self, word: usize) -> u64 {
        self.0[word].load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, word: usize, v: u64) {
        self.0[word].store(v, Ordering::Release);
    }

    pub(crate) fn add(&self, word: usize, v: u64) {
        self.0[word].fetch_add(v, Ordering::AcqRel);
    }

    /// Zeroes the header and the used part of the log, for a new child.
    pub(crate) fn reset(&self) {
        let used = self.get(LOG_LEN) as usize;
        for w in &self.0[..LOG + used.min(LOG_CAP)] {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// Appends to the log; false if it is full.
    pub(crate) fn log(&self, entry: u64) -> bool {
        let n = self.get(LOG_LEN) as usize;
        if n == LOG_CAP {
            return false;
        }
        self.0[LOG + n].store(entry, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `logged`: the entry is written
        // before it is counted, so a child killed in between only loses the entry.
        self.set(LOG_LEN, n as u64 + 1);
        true
    }

    /// The log's entries.
    pub(crate) fn logged(&self) -> impl Iterator<Item = u64> + '_ {
        let n = (self.get(LOG_LEN) as usize).min(LOG_CAP);
        self.0[LOG..LOG + n]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
    }
}

/// xorshift64* (Vigna): small, fast, good enough to pick delays and operations.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> XorShift {
        XorShift(super::common::mix(seed) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the bias is negligible for the small `n` used here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
