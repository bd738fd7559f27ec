//! Disconnect counting on the MPMC ring: a side is gone only when its last handle is.
//!
//! Heap rings count live handles per side in the side word (a counter above the `CLOSED`
//! bit); the handle that takes the count to zero sets `CLOSED` and wakes the other side.
//! Receivers then drain what was sent and get `Disconnected`; senders get `Disconnected`
//! with their message handed back. A clone that goes while another handle of its side stays
//! must not disconnect anything.

#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use loom_tests::{Tally, model, mpmc_config};
use shmring::{RecvError, SendError, TryRecvError, WaitStrategy, mpmc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16];
const M2: &[u8] = &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28];
const M3: &[u8] = &[0x31, 0x32, 0x33];

/// Two senders: the clone sends `M1` and goes on its thread while the main thread drops the
/// original and receives. Whichever sender goes last closes the side; the receiver gets `M1`
/// (drained even if the close came first), then `Disconnected`, and stays disconnected.
/// *Reaches*: the receiver slept, and each of the two senders was the last one.
#[test]
fn last_of_two_senders_gone_receiver_drains_then_disconnected() {
    let slept = Tally::new();
    let main_last = Tally::new();
    let clone_last = Tally::new();
    let (s, m, c) = (slept.clone(), main_last.clone(), clone_last.clone());
    model(
        "last_of_two_senders_gone_receiver_drains_then_disconnected",
        move || {
            let (tx, mut rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let mut tx2 = tx.try_clone().unwrap();
            let sender = thread::spawn(move || {
                tx2.send(M1).unwrap();
                drop(tx2);
            });
            drop(tx);
            // Disconnected right after our drop: ours was the last sender.
            if rx.is_disconnected() {
                m.hit();
            } else {
                c.hit();
            }
            assert_eq!(&*rx.recv().unwrap(), M1, "what was sent is drained first");
            assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
            assert!(rx.is_disconnected());
            if rx.wait_stats().sleeps > 0 {
                s.hit();
            }
            sender.join().unwrap();
        },
    );
    assert!(slept.count() > 0, "the receiver never slept");
    assert!(
        main_last.count() > 0,
        "the main thread's sender was never last"
    );
    assert!(clone_last.count() > 0, "the clone was never last");
}

/// Two receivers and a full ring: one receiver is dropped on another thread while the main
/// thread drops the other and sends `M3`, sleeping on the full ring if the last receiver is
/// still there. The send fails with `Disconnected` and hands `M3` back. *Reaches*: the sender
/// slept (woken by the close).
#[test]
fn last_of_two_receivers_gone_blocked_sender_disconnected() {
    let slept = Tally::new();
    let counter = slept.clone();
    model(
        "last_of_two_receivers_gone_blocked_sender_disconnected",
        move || {
            let (mut tx, rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let rx2 = rx.try_clone().unwrap();
            tx.send(M1).unwrap();
            tx.send(M2).unwrap();
            let receiver = thread::spawn(move || drop(rx2));
            drop(rx);
            match tx.send(M3) {
                Err(SendError::Disconnected(())) => {}
                other => panic!("expected Disconnected, got {other:?}"),
            }
            assert!(tx.is_disconnected());
            if tx.wait_stats().sleeps > 0 {
                counter.hit();
            }
            receiver.join().unwrap();
        },
    );
    assert!(slept.count() > 0, "the sender never slept");
}

/// A sender clone and a receiver clone go on another thread while the main thread sends and
/// receives through the handles that stay: nothing is disconnected, ever. Once the main
/// thread's sender goes too, the receiver sees end of stream.
///
/// The leaving thread raises a flag after both drops, which the main thread reads before its
/// checks. The flag is there for loom's sake as much as for the tally: a drop loads and then
/// compare-exchanges its side word, which the main thread only loads, and loom (which keeps
/// one last access per atomic) never sees that as a race, so without the flag it explores a
/// single execution, with the drops last. The flag's store and load are a race it does
/// explore. *Reaches*: the checks ran after both drops.
#[test]
fn clones_gone_while_others_stay_do_not_disconnect() {
    let after_drops = Tally::new();
    let counter = after_drops.clone();
    model(
        "clones_gone_while_others_stay_do_not_disconnect",
        move || {
            let (mut tx, mut rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let (tx2, rx2) = (tx.try_clone().unwrap(), rx.try_clone().unwrap());
            let gone = Arc::new(AtomicBool::new(false));
            let leaver = {
                let gone = gone.clone();
                thread::spawn(move || {
                    drop(tx2);
                    drop(rx2);
                    gone.store(true, Ordering::Release);
                })
            };
            if gone.load(Ordering::Acquire) {
                counter.hit();
            }
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
            tx.send(M1).unwrap();
            assert!(!tx.is_disconnected(), "a receiver is still there");
            assert_eq!(&*rx.recv().unwrap(), M1);
            assert!(!rx.is_disconnected(), "a sender is still there");
            leaver.join().unwrap();
            tx.send(M2).unwrap();
            drop(tx);
            assert_eq!(&*rx.recv().unwrap(), M2);
            assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        },
    );
    assert!(
        after_drops.count() > 0,
        "the checks never ran after the drops"
    );
}
