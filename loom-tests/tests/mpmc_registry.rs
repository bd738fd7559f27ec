//! The endpoint registry and crash recovery of MPMC rings: closing a side when its last
//! endpoint leaves, attaching while it does, and finishing the slots of endpoints that were
//! killed mid-operation.
//!
//! This code runs only for rings with a registry, which `mpmc::channel` does not have: every
//! model here builds its ring with `mpmc::__model::channel_with_registry`, a heap ring with
//! the registry protocol of shared rings on loom's atomics (the same code; only the OFD lock
//! that tells the living from the dead is a word that `Peers::kill_*` lets go of, as the
//! kernel does when a process dies). A killed endpoint's handle is forgotten, never
//! dropped: a killed process runs no destructor. Under loom every peer check a call reaches
//! runs (the throttle is always due).
//!
//! A blocked call on a ring whose peer died is only woken by its sleep slice running out;
//! loom models an untimed sleep as unbounded, so a party that must outlive a dead peer waits
//! with `recv_timeout` / `send_timeout` (a finite deadline expires during the first sleep,
//! after one peer check) or `try_*`, and yields between attempts.

#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use loom_tests::{Tally, model, model_bounded, mpmc_config};
use shmring::mpmc::__model::channel_with_registry;
use shmring::mpmc::{Receiver, Sender};
use shmring::{OpenError, RecvError, RecvTimeoutError, TryRecvError, TrySendError, WaitStrategy};
use std::time::Duration;

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16];
const M2: &[u8] = &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28];
const M3: &[u8] = &[0x31, 0x32, 0x33];

/// Registry entries: the two first endpoints and one more, so every attach finds a free one.
const ENTRIES: usize = 3;

/// A ring with a registry of [`ENTRIES`] entries, blocking waits, and one more sender.
fn ring_with_two_senders() -> (Sender, Sender, Receiver, shmring::mpmc::__model::Peers) {
    let (tx, rx, peers) = channel_with_registry(&mpmc_config(WaitStrategy::Block), ENTRIES)
        .expect("a valid configuration");
    let tx2 = tx.try_clone().expect("a free registry entry");
    (tx, tx2, rx, peers)
}

/// Receives with `try_recv` until end of stream, yielding while the ring is empty (every
/// empty `try_recv` runs the peer check).
fn poll_to_end(rx: &mut Receiver, on_empty: impl Fn(&Receiver)) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match rx.try_recv().map(|m| m.to_vec()) {
            Ok(m) => got.push(m),
            Err(TryRecvError::Empty) => {
                on_empty(rx);
                thread::yield_now();
            }
            Err(TryRecvError::Disconnected) => return got,
            Err(e) => panic!("try_recv failed: {e}"),
        }
    }
}

/// Sends `msg` with `try_send`, yielding while the ring is full (every full `try_send` runs
/// the peer check).
fn send_polling(tx: &mut Sender, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return,
            Err(TrySendError::Full(())) => thread::yield_now(),
            Err(e) => panic!("try_send failed: {e}"),
        }
    }
}

/// Receives with `recv_timeout` until end of stream, yielding after each timeout. Returns the
/// messages, each with the number of waits the receiver had made before it got it.
fn wait_to_end(rx: &mut Receiver) -> Vec<(Vec<u8>, u64)> {
    let mut got = Vec::new();
    loop {
        match rx
            .recv_timeout(Duration::from_millis(1))
            .map(|m| m.to_vec())
        {
            Ok(m) => got.push((m, rx.wait_stats().waits)),
            Err(RecvTimeoutError::Timeout) => thread::yield_now(),
            Err(RecvTimeoutError::Disconnected) => return got,
            Err(e) => panic!("recv_timeout failed: {e}"),
        }
    }
}

/// The last two senders close at once: the spawned one after sending `M1`, the main thread's
/// at the same time. Each marks its entry closed and then looks for the other's; at least
/// one must see both closed and close the side (else the receiver, asleep in `recv` with no
/// one left to wake it, sleeps for ever: loom's deadlock), and neither may close it while
/// the other is attached (else `M1` could be lost to an early end of stream). The receiver
/// gets `M1`, then `Disconnected`.
#[test]
fn last_two_senders_close_at_once() {
    model("last_two_senders_close_at_once", || {
        let (tx, mut tx2, mut rx, _peers) = ring_with_two_senders();
        let sender = thread::spawn(move || {
            tx2.send(M1).unwrap();
            drop(tx2);
        });
        drop(tx);
        assert_eq!(&*rx.recv().unwrap(), M1, "what was sent is drained first");
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        assert!(rx.is_disconnected());
        sender.join().unwrap();
    });
}

/// The two senders close on two threads while the receiver looks once with `try_recv`
/// (which never sleeps), then drains with `recv`: the first sender sends `M1` and closes,
/// the other just closes. The receiver gets `M1` once, then `Disconnected`, never
/// `Disconnected` first.
///
/// The sender that closes the side may be the one that closes last but fenced first: it
/// marks its entry closed, fences, then sees the first sender's entry closed (taking in its
/// writes, `M1` among them, with that Acquire load) and sets `CLOSED`. Its fence came before
/// that load, so only the Release of the side word's compare-exchange passes `M1` on to a
/// receiver that sees `CLOSED`; a receiver that sleeps would be ordered after it by the
/// futex anyway, one that polls is not. The receiver looks only once before it may sleep: a
/// polling loop would yield, and loom lets a thread that yielded read only values newer than
/// those it read before, which hides stale reads. Three threads, bound capped at 2 (the case
/// needs one preemption: the first sender between marking its entry closed and its fence).
/// Catches `mpmc_relaxed_side_close`.
#[test]
fn senders_close_on_two_threads_while_receiver_polls() {
    model_bounded(
        "senders_close_on_two_threads_while_receiver_polls",
        Some(2),
        || {
            let (tx, mut tx2, mut rx, _peers) = ring_with_two_senders();
            let first = thread::spawn(move || {
                tx2.send(M1).unwrap();
                drop(tx2);
            });
            let other = thread::spawn(move || drop(tx));
            let mut got = Vec::new();
            match rx.try_recv().map(|m| m.to_vec()) {
                Ok(m) => got.push(m),
                Err(TryRecvError::Empty) => {}
                Err(e) => panic!("try_recv before M1: {e}"),
            }
            loop {
                match rx.recv().map(|m| m.to_vec()) {
                    Ok(m) => got.push(m),
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv failed: {e}"),
                }
            }
            assert_eq!(got, [M1], "M1 once, before end of stream");
            first.join().unwrap();
            other.join().unwrap();
        },
    );
}

/// A new sender attaches (as `Sender::open` would, from another process) while the last
/// sender closes. Either it attaches and the side stays open (the receiver is not
/// disconnected while it lives, and gets what it sends), or it is refused with
/// `EndpointClosed` and the receiver is at end of stream: never a live sender on a closed
/// side. (`try_clone` cannot race the last close: its own handle keeps the side open.)
/// *Reaches* both outcomes.
#[test]
fn attach_races_the_last_close() {
    let attached = Tally::new();
    let refused = Tally::new();
    let (a, r) = (attached.clone(), refused.clone());
    model("attach_races_the_last_close", move || {
        let (tx, mut rx, peers) = channel_with_registry(&mpmc_config(WaitStrategy::Block), ENTRIES)
            .expect("a valid configuration");
        let opener = thread::spawn(move || match peers.open_sender() {
            Ok(tx2) => Some(tx2),
            Err(OpenError::EndpointClosed(_)) => None,
            Err(e) => panic!("open_sender failed: {e}"),
        });
        drop(tx);
        match opener.join().unwrap() {
            Some(mut tx2) => {
                a.hit();
                assert!(!rx.is_disconnected(), "a live sender on a closed side");
                tx2.send(M1).unwrap();
                assert_eq!(&*rx.recv().unwrap(), M1);
                drop(tx2);
                assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
            }
            None => {
                r.hit();
                assert!(rx.is_disconnected());
                assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
            }
        }
    });
    assert!(attached.count() > 0, "the new sender never attached");
    assert!(refused.count() > 0, "the new sender was never refused");
}

/// A sender is killed between claiming a slot and publishing it (`reserve`, then its grant
/// and handle are forgotten), while the main thread sends `M1`, closes its own sender and
/// receives with `recv_timeout`. The receiver's peer check finds the claimer dead, reaps it
/// (closing the senders' side, as it was the last), and skips its slot: the receiver gets
/// `M1`, then `Disconnected`. *Reaches* the dead claim lying before `M1` (the receiver
/// waited before it got `M1`).
#[test]
fn sender_killed_between_claim_and_publish() {
    let skipped = Tally::new();
    let counter = skipped.clone();
    model("sender_killed_between_claim_and_publish", move || {
        let (mut tx, mut tx2, mut rx, peers) = ring_with_two_senders();
        let doomed = thread::spawn(move || {
            let grant = tx2.reserve(8).unwrap();
            std::mem::forget(grant);
            peers.kill_sender(tx2);
        });
        tx.send(M1).unwrap();
        drop(tx);
        let got = wait_to_end(&mut rx);
        assert_eq!(got.len(), 1, "exactly M1: {got:?}");
        assert_eq!(got[0].0, M1);
        if got[0].1 > 0 {
            counter.hit();
        }
        doomed.join().unwrap();
    });
    assert!(skipped.count() > 0, "the dead claim never came before M1");
}

/// A live sender that is slow to publish is never taken for a dead one: while the spawned
/// sender claims and publishes `M2`, the receiver polls with `try_recv`, running the peer
/// check (reaping, finishing abandoned slots) each time it finds nothing. It gets `M2`
/// exactly once, then `Disconnected`. The check sees the claim in `tail` and must then see
/// the claimer's record, stored before it; catches `mpmc_relaxed_claim_tail`. *Reaches* a
/// check that ran while the claim was pending.
#[test]
fn live_slow_sender_keeps_its_slot() {
    let pending = Tally::new();
    let counter = pending.clone();
    model("live_slow_sender_keeps_its_slot", move || {
        let (tx, mut tx2, mut rx, _peers) = ring_with_two_senders();
        let sender = thread::spawn(move || {
            tx2.send(M2).unwrap();
            drop(tx2);
        });
        drop(tx);
        let got = poll_to_end(&mut rx, |rx| {
            // Something claimed and not received, yet `try_recv` found nothing.
            if !rx.is_empty() {
                counter.hit();
            }
        });
        assert_eq!(got, [M2], "M2 once, before end of stream");
        sender.join().unwrap();
    });
    assert!(
        pending.count() > 0,
        "no check ran while the claim was pending"
    );
}

/// A receiver is killed while it holds `M1` (its guard and handle are forgotten). The
/// sender, which has filled the ring with `M2` behind it, needs that slot for `M3`: its peer
/// check finds the holder dead and frees the slot. The other receiver gets `M2` and `M3`,
/// then `Disconnected`; `M1` is lost with its receiver (the delivery guarantee).
#[test]
fn receiver_killed_holding_a_message() {
    model("receiver_killed_holding_a_message", || {
        let (mut tx, mut rx, peers) =
            channel_with_registry(&mpmc_config(WaitStrategy::Block), ENTRIES)
                .expect("a valid configuration");
        let mut rx2 = rx.try_clone().unwrap();
        let doomed = thread::spawn(move || {
            let m = rx2.recv().unwrap();
            assert_eq!(&*m, M1);
            std::mem::forget(m);
            peers.kill_receiver(rx2);
        });
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        send_polling(&mut tx, M3);
        drop(tx);
        let got: Vec<Vec<u8>> = wait_to_end(&mut rx).into_iter().map(|(m, _)| m).collect();
        assert_eq!(got, [M2, M3]);
        doomed.join().unwrap();
    });
}

/// A live receiver that holds `M1` across a scheduling point is never taken for a dead one:
/// the sender, wanting its slot for `M3`, polls with `try_send`, running the peer check each
/// time the ring is full. The slot is rewritten only after the receiver dropped its guard
/// (else loom reports the sender's write racing the receiver's read). The check sees the
/// claim in `head` and must then see the receiver's record, stored before it; catches
/// `mpmc_relaxed_claim_head`.
#[test]
fn live_slow_receiver_keeps_its_slot() {
    model("live_slow_receiver_keeps_its_slot", || {
        let (mut tx, mut rx, _peers) =
            channel_with_registry(&mpmc_config(WaitStrategy::Block), ENTRIES)
                .expect("a valid configuration");
        let mut rx2 = rx.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let m = rx2.recv().unwrap();
            thread::yield_now();
            assert_eq!(&*m, M1);
            drop(m);
            drop(rx2);
        });
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        send_polling(&mut tx, M3);
        drop(tx);
        let got: Vec<Vec<u8>> = wait_to_end(&mut rx).into_iter().map(|(m, _)| m).collect();
        assert_eq!(got, [M2, M3]);
        reader.join().unwrap();
    });
}

/// A sender sends `M1` and is killed; a receiver on its thread (as if in another process)
/// asks `is_disconnected`, which reaps it, while the main thread drops the last live sender
/// and then looks with `try_recv`: it gets `M1`, never end of stream first. The main
/// thread's close may find the dead sender's entry already closed by the reaper and close
/// the side itself, with no order to the dead sender but through that entry: the reaper's
/// compare-exchange must pass on what its probe saw, `M1` among it. The case needs the
/// reaper preempted between that compare-exchange and the fence of its own side close. (The
/// dead sender holds entry 0, so that `is_disconnected`, which stops at the first live
/// sender, reaches it.) Catches `registry_relaxed_reap`.
#[test]
fn reaped_sender_is_seen_closed_by_the_last_close() {
    model("reaped_sender_is_seen_closed_by_the_last_close", || {
        let (mut tx, mut rx, peers) = channel_with_registry(&mpmc_config(WaitStrategy::Block), 4)
            .expect("a valid configuration");
        let tx2 = tx.try_clone().expect("a free registry entry");
        let rx2 = rx.try_clone().expect("a free registry entry");
        let doomed = thread::spawn(move || {
            tx.send(M1).unwrap();
            peers.kill_sender(tx);
            let _ = rx2.is_disconnected();
        });
        drop(tx2);
        let got = poll_to_end(&mut rx, |_| {});
        assert_eq!(got, [M1], "M1, then end of stream");
        doomed.join().unwrap();
    });
}

/// A receiver attaches on its thread while the main thread scans the registry, as the ring
/// does when it closes a side or looks for live peers: an entry seen attached shows its
/// owner's role, never the role an earlier owner left or none (the store of ATTACHED
/// publishes the role, and the scan's load of it acquires). Both threads first bump a
/// `Relaxed` counter, which orders nothing but makes loom explore the opener going first.
/// Catches `registry_relaxed_attached` and `registry_relaxed_scan`.
#[test]
fn an_entry_seen_attached_shows_its_role() {
    model("an_entry_seen_attached_shows_its_role", || {
        let (tx, rx, peers) = channel_with_registry(&mpmc_config(WaitStrategy::Block), ENTRIES)
            .expect("a valid configuration");
        let turns = Arc::new(AtomicUsize::new(0));
        let opener = {
            let (peers, turns) = (peers.clone(), turns.clone());
            thread::spawn(move || {
                turns.fetch_add(1, Ordering::Relaxed);
                peers.open_receiver().unwrap()
            })
        };
        turns.fetch_add(1, Ordering::Relaxed);
        let roles = peers.attached_roles();
        assert!(
            roles.iter().flatten().all(|&role| role != "unknown"),
            "an attached entry without its role: {roles:?}"
        );
        drop(opener.join().unwrap());
        drop((tx, rx));
    });
}
