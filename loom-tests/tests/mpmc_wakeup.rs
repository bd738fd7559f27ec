//! No lost wake-up on the MPMC ring: a receiver asleep on an empty ring is woken by a send,
//! a sender asleep on a full ring is woken by a receive.
//!
//! Every handle uses `WaitStrategy::Block`. The side that would wake the sleeper stays open
//! until the end (its handle is handed back through `join`), so a close cannot stand in for
//! a missing wake-up: a lost wake-up leaves every thread asleep, which loom reports as a
//! deadlock. Each model checks, across all executions, that the sleeping path was taken.

#![cfg(loom)]

use loom::thread;
use loom_tests::{Tally, model, model_bounded, mpmc_config};
use shmring::{WaitStrategy, mpmc};

const M1: &[u8] = &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19];
const M2: &[u8] = &[0x21, 0x22, 0x23];
const M3: &[u8] = &[0x31, 0x32, 0x33, 0x34, 0x35];

/// The receiver finds the ring empty and sleeps; each of two sends must wake it.
#[test]
fn receiver_asleep_on_empty_ring_is_woken_by_send() {
    let slept = Tally::new();
    let counter = slept.clone();
    model(
        "receiver_asleep_on_empty_ring_is_woken_by_send",
        move || {
            let (mut tx, mut rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let sender = thread::spawn(move || {
                tx.send(M1).unwrap();
                tx.send(M2).unwrap();
                tx
            });
            assert_eq!(&*rx.recv().unwrap(), M1);
            assert_eq!(&*rx.recv().unwrap(), M2);
            if rx.wait_stats().sleeps > 0 {
                counter.hit();
            }
            drop(sender.join().unwrap());
        },
    );
    assert!(slept.count() > 0, "the receiver never slept");
}

/// The ring starts full (two slots); the sender sleeps in `send(M3)` until a receive
/// releases a slot, and that release must wake it. `M3` then lands in the first slot again.
#[test]
fn sender_asleep_on_full_ring_is_woken_by_recv() {
    let slept = Tally::new();
    let counter = slept.clone();
    model("sender_asleep_on_full_ring_is_woken_by_recv", move || {
        let (mut tx, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let receiver = thread::spawn(move || {
            for want in [M1, M2, M3] {
                assert_eq!(&*rx.recv().unwrap(), want);
            }
            rx
        });
        tx.send(M3).unwrap();
        if tx.wait_stats().sleeps > 0 {
            counter.hit();
        }
        drop(receiver.join().unwrap());
    });
    assert!(slept.count() > 0, "the sender never slept");
}

/// Two receivers (clones) each wait for one message on an empty ring; the main thread sends
/// two. Every wake-up must reach a receiver that can use it: a sleeper woken by a message the
/// other receiver took goes back to sleep and must still be woken by the second send. Three
/// threads, one receive each: the preemption bound is capped at 2.
#[test]
fn two_receivers_asleep_are_both_woken() {
    let both_slept = Tally::new();
    let counter = both_slept.clone();
    model_bounded("two_receivers_asleep_are_both_woken", Some(2), move || {
        let (mut tx, rx1) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let rx2 = rx1.try_clone().unwrap();
        let receivers: Vec<_> = [rx1, rx2]
            .into_iter()
            .map(|mut rx| {
                thread::spawn(move || {
                    let got = rx.recv().unwrap().to_vec();
                    (got, rx.wait_stats().sleeps > 0, rx)
                })
            })
            .collect();
        tx.send(M1).unwrap();
        tx.send(M2).unwrap();
        let mut got = Vec::new();
        let mut sleepers = 0;
        let mut handles = Vec::new();
        for r in receivers {
            let (msg, slept, rx) = r.join().unwrap();
            got.push(msg);
            sleepers += usize::from(slept);
            handles.push(rx);
        }
        got.sort();
        assert_eq!(
            got,
            [M1, M2],
            "each receiver got one message, each message once"
        );
        if sleepers == 2 {
            counter.hit();
        }
        drop(tx);
    });
    assert!(
        both_slept.count() > 0,
        "the two receivers never slept at once"
    );
}
