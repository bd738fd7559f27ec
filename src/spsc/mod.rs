//! Single-producer single-consumer ring of variable-length messages.
//!
//! # Algorithm
//!
//! The data region is `capacity` bytes (a power of two). Two indices count bytes: `tail`
//! (bytes the producer published) and `head` (bytes the consumer released); the position of
//! an index is `index & (capacity - 1)`. Each side keeps its own index in private memory; the
//! producer also keeps a cached copy of the consumer's `head`, which it reloads only when the
//! cache says the ring is full.
//!
//! A message is a record: an 8-byte header word, then (for payloads of 1 KiB and more, when
//! the ring's largest message leaves room) a gap of up to 56 bytes that puts the payload on a
//! 64-byte line, then the payload, padded to 8 bytes. The header word holds the payload
//! length (bits 0..32), the gap in 8-byte units (bits 32..35) and two flags: `READY` (bit 62)
//! and `PAD` (bit 63). Every record is one contiguous slice of the region: when a record does
//! not fit before the end of the region, the producer first writes a *padding record* (`PAD`)
//! that covers the rest of the region and puts the record at position 0. Padding was chosen
//! over mapping the region twice back to back because it works unchanged on the heap (and
//! therefore under loom) and needs no second mapping per process; its cost is that a message
//! may be at most `capacity / 2 - 8` bytes, which guarantees that a record plus padding (plus
//! the terminator, below) always fits in an empty ring.
//!
//! Publishing (layout version 3): the header word is the record's ready word. The consumer
//! polls the word at its own position and never loads the producer's `tail` to receive, so
//! a message costs it one cache-line transfer (the record's), not two (the index's, then the
//! record's). A zero word is the *terminator*: the producer always leaves one after its last
//! record (so it claims 8 bytes more than the record, and a ring holds at most `capacity - 8`
//! bytes of records), which is why stale bytes of an earlier lap are never taken for a
//! record. The producer writes the payload, the terminator after the record, and the headers
//! of everything it publishes at once (a batch), and stores the first of those headers last,
//! with Release; the consumer loads it with Acquire. `tail` is still stored, for
//! `used_bytes` and inspection tools only.
//!
//! Releasing: the consumer stores its `head` with Release (the producer loads it with Acquire
//! before reusing space) lazily: once a quarter of the ring has been read since the last
//! store, at the end of a `drain`, and whenever it finds the ring empty, so that a producer
//! waiting for room is never kept waiting by a consumer with nothing left to read. The
//! consumer's line therefore moves to the producer a few times per lap, not per message.
//! Except while the producer asks for room (layout version 4): once a fresh look at `head`
//! shows the ring within a quarter of full, the producer raises `room_wanted` (a word of the
//! rarely written line), and while it is up the consumer stores `head` on every release, so a
//! producer blocked on a full ring gets the room of a single message that a consumer dropped
//! before it stopped reading (the io_uring need-wakeup pattern: the waiting side announces
//! itself, the other side publishes eagerly only when it sees the announcement). A producer
//! that waits keeps its distance from a consumer that is still releasing (it looks every
//! 5 µs and resumes with 4 KiB of room), so that the two do not share cache lines message
//! after message.
//!
//! Indices count modulo 2^64: every comparison is on a wrapping difference (`tail - head`,
//! the distance an index moved), never on the raw values, so a ring whose indices start near
//! `u64::MAX` (as a peer may leave them) works across the wrap like any other.
//!
//! Everything read from shared memory is checked before use: a header must carry only known
//! bits and be ready, its length must lie within the ring's maximum and its record within the
//! region, a padding record must end exactly at the end of the region, and the consumer's
//! `head` may only move forward from the producer's copy and never past what it published. A
//! violation is reported as [`Corruption`](crate::Corruption) and the handle stops using the
//! ring; nothing is read or written outside the region.
//!
//! Blocking uses two eventcounts (`readable`, `writable`), see `sync::waiter`.
//!
//! # Ends of the stream
//!
//! Like a pipe: when the producer closes (or is dropped, or dies), the consumer receives what
//! is left and then gets `Disconnected`. When the consumer closes (or dies), sends fail with
//! `Disconnected` (the caller still holds its message). A peer that dies without closing is
//! noticed by a blocked waiter within one sleep slice (a few hundred milliseconds at most),
//! by asking the kernel whether the peer still holds its liveness lock (an OFD lock on a byte
//! of the ring's object, which the kernel releases when the process dies; see the `mpmc`
//! module docs, "who is alive").
//!
//! # Files
//!
//! `ring` holds the control block, the record format and how a ring is built; `producer` and
//! `consumer` the two handles, their half of the algorithm and what they lend out (messages
//! and iterators); `claim` the producer's claim of room (the checks of the consumer's index,
//! `room_wanted`, the waiting); `grant` the producer's in-place writing (grants and
//! batches); `bulk` the calls that move many messages at once (`send_many`, `drain`,
//! `recv_many`).

mod bulk;
mod claim;
mod consumer;
pub(crate) mod evented;
mod grant;
#[cfg(feature = "shared_memory")]
pub(crate) mod interop;
mod producer;
pub(crate) mod ring;

pub use consumer::{Consumer, Iter, Message};
pub use grant::{Batch, Grant};
pub use producer::Producer;

pub use crate::geometry::{MAX_CAPACITY, MIN_CAPACITY, max_message_for};

pub use crate::config::SpscConfig as Config;
use crate::error::OpenError;
use ring::Ring;

/// Creates an in-process ring on the heap, for two threads.
///
/// # Errors
/// [`InvalidConfig`](crate::OpenError::InvalidConfig) when the configuration describes no
/// valid ring.
///
/// ```
/// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default().capacity_bytes(4096))?;
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
pub fn channel(config: &Config) -> Result<(Producer, Consumer), OpenError> {
    let (p, c) = Ring::on_heap(config)?;
    Ok((
        Producer::new(p, config.wait_strategy, None),
        Consumer::new(c, config.wait_strategy, None),
    ))
}

/// Creates a named ring without attaching either end: a producer and a consumer attach
/// later with [`Producer::open`] and [`Consumer::open`] (like `mkfifo`). Until the consumer
/// attaches, a producer that fills the ring waits for it.
///
/// # Errors
/// As [`Producer::create`].
///
/// ```
/// use shmring::spsc;
/// let name = format!("/shmring-doc-mkring-{}", std::process::id());
/// spsc::create(&name, shmring::spsc::Config::default().capacity_bytes(4096))?;
/// let mut tx = spsc::Producer::open(&name)?;
/// let mut rx = spsc::Consumer::open(&name)?;
/// shmring::unlink(&name)?;
/// tx.send(b"hi")?;
/// assert_eq!(&*rx.recv()?, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create(name: &str, config: impl std::borrow::Borrow<Config>) -> Result<(), OpenError> {
    Ring::create(Some(name), config.borrow(), None).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Ordering;

    #[test]
    fn iterators_yield_corruption_then_end() {
        let (mut tx, mut rx) = channel(&Config::default().capacity_bytes(64)).unwrap();
        tx.send(b"ok").unwrap();
        let mut it = rx.iter();
        assert_eq!(it.next(), Some(Ok(b"ok".to_vec())));
        // A peer forges a header with an unknown flag where the next record goes.
        // SAFETY: offset 16 is 8-byte aligned and inside the 64-byte region.
        unsafe {
            tx.ring
                .region
                .store_word(16, 1 << 61 | ring::READY, Ordering::Release)
        };
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
        assert!(matches!(rx.try_iter().next(), Some(Err(_))));
        drop(tx);
    }

    /// Both indices left by a peer just below 2^64 (aligned, consistent): the ring works
    /// across the wrap, and nothing overflows (a batch's `Debug` included).
    #[test]
    fn indices_near_the_top_wrap_cleanly() {
        let config = Config::default().capacity_bytes(64);
        let (mut p, mut c) = Ring::on_heap(&config).unwrap();
        let start = u64::MAX - 31;
        p.ctrl().producer.tail.store(start, Ordering::Relaxed);
        p.ctrl().consumer.head.store(start, Ordering::Relaxed);
        // What an opener reads from the control block, once.
        p.start = (start, start);
        c.start = (start, start);
        let mut tx = Producer::new(p, config.wait_strategy, None);
        let mut rx = Consumer::new(c, config.wait_strategy, None);
        for i in 0u8..20 {
            {
                let mut batch = tx.batch();
                batch.try_send(&[i; 5]).unwrap();
                assert!(format!("{batch:?}").contains("unpublished_bytes: 16"));
            }
            assert_eq!(rx.used_bytes(), 16);
            assert_eq!(&*rx.try_recv().unwrap(), &[i; 5]);
        }
        // 20 records of 16 bytes from 2^64 - 32: the indices wrapped.
        assert_eq!(tx.tail, 20 * 16 - 32);
        assert_eq!(rx.try_recv().unwrap_err(), crate::TryRecvError::Empty);
    }

    /// A producer that keeps moving `tail` while `drain` runs (here: over records of the
    /// previous lap) gets at most a ring's worth of messages taken per call.
    #[test]
    fn drain_takes_at_most_one_ring_per_call() {
        let (tx, mut rx) = channel(&Config::default().capacity_bytes(64)).unwrap();
        // A peer forges a ready 8-byte record at every 16 bytes: the ring reads as holding
        // records for ever, round and round.
        for at in (0..64).step_by(16) {
            // SAFETY: 8-byte aligned offsets inside the 64-byte region.
            unsafe {
                tx.ring
                    .region
                    .store_word(at, ring::message_header(8, 0), Ordering::Release)
            };
        }
        let mut seen = 0;
        let n = rx
            .drain(10_000, |m| {
                assert_eq!(m.len(), 8);
                seen += 1;
            })
            .unwrap();
        assert_eq!(n, 4, "one ring's worth of bytes per call");
        assert_eq!(seen, 4);
    }
}
