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
//! with no message in it (a dropped [`Grant`], or a slot recovered from a dead sender,
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
//! maximum, a head or tail that goes backwards or beyond 2^62, a tail more than `slots`
//! ahead of head (a sender claims `p` only after `p - slots` was released), a side word
//! whose counter cannot count one more attach, are reported as
//! [`Corruption`](crate::Corruption); slot indices are always masked, so no access ever
//! leaves the mapping. No loop runs for as long as a peer likes: a claim loop gives up after
//! a fixed number of rounds (a timed call then looks again until its deadline, a `try_` call
//! reports full or empty), and so do the loop that skips a departed sender's positions and
//! the compare-exchange loops on the side words.
//!
//! # Ends of the stream
//!
//! Every sender and receiver holds an entry in the endpoint registry of the header, with its
//! liveness lock (see "who is alive" below), whose size is fixed at creation ([`Config::endpoints`]); attaching
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
//! and *reaps* the dead ones (marks them closed, then closes their side if it was the last
//! one), exactly as if they had closed. An endpoint killed while attaching may leave its
//! entry taken but not attached; the same check frees it (nothing to close: it never counted
//! itself in its side).
//!
//! Who is alive: each endpoint holds an OFD write lock on its entry's byte of the object,
//! taken before it claims the entry and released after it marks the entry closed; the kernel
//! releases it when the process dies. An entry in use whose byte is free therefore belongs to
//! a dead endpoint, and only that counts as death: no pid is consulted, so peers in other pid
//! namespaces and processes whose main thread exited are alive as long as they hold their
//! locks. A forked child that inherits a handle shares its lock (the endpoint stays alive
//! while either process lives); an `exec` drops the child's share. The inherited copy is
//! not an endpoint of the child: its calls fail there
//! ([`Corruption::is_inherited`](crate::Corruption::is_inherited)), messages and grants it
//! held at the fork stay the parent's, and dropping it only unmaps the ring.
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
//! # Files
//!
//! `ring` holds the control block, the slots and how a ring is built; `sender` and
//! `receiver` the two handles and their half of the algorithm; `handle` what they share;
//! `recovery` the registry, closing and crash recovery; `model` the ring with a model
//! registry that the loom models use (`__model`).
//!
//! Heap rings ([`channel`]) have no registry and no claim table: threads cannot die on their
//! own, and every handle closes on drop (even when its thread unwinds). The loom models
//! check the registry and crash recovery on a heap ring that has both (`model`, whose
//! registry, `shm::ModelRegistry`, runs the registry protocol of shared rings).

mod detached;
pub(crate) mod evented;
mod grant;
mod handle;
#[cfg(feature = "shared_memory")]
pub(crate) mod interop;
mod message;
mod model;
mod receiver;
mod recovery;
mod ring;
mod sender;

/// For the loom models of `loom-tests` only: an in-process ring with an endpoint registry,
/// whose endpoints a model can kill. Not part of the API.
#[doc(hidden)]
pub mod __model {
    pub use super::model::{Peers, channel_with_registry};
}

pub use detached::create;
pub use grant::Grant;
pub use message::{Iter, Message};
pub use receiver::Receiver;
pub use sender::Sender;

pub use crate::geometry::{MAX_ENDPOINTS, MAX_SLOT_SIZE, MAX_SLOTS, MIN_SLOT_SIZE};

pub use crate::config::MpmcConfig as Config;
use crate::error::OpenError;
use handle::Handle;
use ring::Role;

/// Creates an in-process MPMC ring on the heap, for threads of one process.
///
/// The ring has [`Config::slots`] slots of [`Config::max_message_bytes`] bytes of payload; both handles can be
/// cloned for more threads.
///
/// # Errors
/// [`InvalidConfig`](crate::OpenError::InvalidConfig) when the configuration describes no
/// valid ring.
///
/// ```
/// use shmring::mpmc;
/// let (tx, mut rx) = mpmc::channel(&shmring::mpmc::Config::default().slots(64))?;
/// let workers: Vec<_> = (0..3u32)
///     .map(|w| {
///         let mut tx = tx.try_clone().unwrap();
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
pub fn channel(config: &Config) -> Result<(Sender, Receiver), OpenError> {
    let ring = ring::on_heap(config)?;
    let strategy = config.wait_strategy;
    Ok((
        Sender {
            h: Handle::new(ring.clone(), Role::Sender, None, strategy, None),
        },
        Receiver {
            h: Handle::new(ring, Role::Receiver, None, strategy, None),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::sync::Ordering;
    use crate::{
        CommitError, OpenError, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError,
        TrySendError,
    };

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

    /// A side word a peer set to the top of the counter: attaching reports corruption
    /// (instead of overflowing) and gives its registry entry back.
    #[test]
    fn forged_side_word_fails_attach_without_overflow() {
        let config = Config::default().slots(4).endpoints(2);
        let (tx, fd) = Sender::create_anonymous(config).unwrap();
        let senders = &tx.h.ring.ctrl().wait.senders;
        senders.store(u64::MAX - 1, Ordering::Relaxed);
        match tx.try_clone() {
            Err(OpenError::Corrupted(c)) => assert_eq!(c.found, u64::MAX - 1),
            other => panic!("expected corruption, got {other:?}"),
        }
        // The entry was given back: with a sound word the one free entry can be taken.
        senders.store(super::ring::ATTACH, Ordering::Relaxed);
        let rx = Receiver::from_fd(fd).unwrap();
        assert!(matches!(
            tx.try_clone(),
            Err(OpenError::RegistryFull { capacity: 2 })
        ));
        drop(rx);
        assert!(tx.try_clone().is_ok());
    }

    /// After every sender left, a `tail` forged a few positions more than a ring ahead of
    /// `head` is corruption, not positions to skip.
    #[test]
    fn forged_tail_after_senders_left_is_corruption() {
        let (mut tx, mut rx) = channel(&Config::default().slots(4)).unwrap();
        tx.send(b"x").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"x");
        let ring = tx.h.ring.clone();
        drop(tx);
        ring.ctrl().tail.tail.store(1 + 4 + 3, Ordering::Release);
        match rx.recv_timeout(Duration::from_millis(10)) {
            Err(RecvTimeoutError::Corrupted(c)) => assert_eq!(c.found, 8),
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Corrupted(_))));
    }

    /// The same with a huge forged `tail`: the call returns (with the corruption) instead of
    /// skipping positions one at a time until it gets there.
    #[test]
    fn huge_forged_tail_after_senders_left_returns() {
        let (tx, mut rx) = channel(&Config::default().slots(4)).unwrap();
        let ring = tx.h.ring.clone();
        drop(tx);
        ring.ctrl().tail.tail.store(1 << 61, Ordering::Release);
        let (done, outcome) = std::sync::mpsc::channel();
        let receiver = std::thread::spawn(move || {
            let r = rx.recv_timeout(Duration::from_millis(10)).map(|m| m.len());
            let _ = done.send(r);
        });
        // A watchdog for the hang this guards against, not a measurement.
        let r = outcome
            .recv_timeout(Duration::from_secs(60))
            .expect("recv_timeout walked the forged positions");
        assert!(matches!(r, Err(RecvTimeoutError::Corrupted(_))), "{r:?}");
        receiver.join().unwrap();
    }

    /// With the senders still there, a `tail` more than a ring ahead of `head` is found by
    /// the recovery check of a receiver or sender that finds nothing to do, which reports it
    /// instead of marking positions abandoned.
    #[test]
    fn recovery_reports_a_tail_more_than_a_ring_ahead() {
        let config = Config::default().slots(4);
        let (mut rx, fd) = Receiver::create_anonymous(config).unwrap();
        let _tx = Sender::from_fd(fd).unwrap();
        let ctrl = rx.h.ring.ctrl();
        ctrl.tail.tail.store(4 + 2, Ordering::Release);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Corrupted(_))));
        // Position 0 was not marked as skipped on the way.
        assert_eq!(rx.h.ring.meta(0).seq.load(Ordering::Acquire), 0);

        let (mut tx, fd) = Sender::create_anonymous(config).unwrap();
        let _rx = Receiver::from_fd(fd).unwrap();
        tx.h.ring.ctrl().tail.tail.store(4 + 2, Ordering::Release);
        assert!(matches!(
            tx.try_send(b"x"),
            Err(TrySendError::Corrupted { .. })
        ));
        assert!(matches!(
            tx.send_timeout(b"x", Duration::from_millis(10)),
            Err(SendTimeoutError::Corrupted { .. })
        ));
    }

    /// A run of skipped positions longer than one claim loop's budget: a `try_recv` gives up
    /// for now, a timed receive crosses all of it and returns the message behind it.
    #[test]
    fn long_skip_runs_are_crossed_in_budgeted_rounds() {
        let slots = 2 * u64::from(super::ring::RETRY_BUDGET);
        let (mut tx, mut rx) = channel(&Config::default().slots(slots as usize)).unwrap();
        for _ in 0..slots - 1 {
            drop(tx.try_reserve(8).unwrap());
        }
        tx.send(b"behind").unwrap();
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        let head = rx.h.ring.ctrl().head.head.load(Ordering::Acquire);
        assert!(head > 0 && head < slots - 1, "{head}");
        let m = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(&*m, b"behind");
    }

    #[test]
    fn iterators_yield_corruption_then_end() {
        let (mut tx, mut rx) = channel(&Config::default().slots(4)).unwrap();
        tx.send(b"ok").unwrap();
        tx.send(b"x").unwrap();
        tx.h.ring.meta(1).seq.store(1 << 40, Ordering::Release);
        let mut it = rx.iter();
        assert_eq!(it.next(), Some(Ok(b"ok".to_vec())));
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
        assert!(matches!(rx.try_iter().next(), Some(Err(_))));
    }
}
