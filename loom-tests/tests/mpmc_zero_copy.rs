//! Zero-copy ends of the MPMC ring: `reserve` → write in place → `commit`, a grant dropped
//! without `commit` (its slot is skipped, nothing is received from it), and `recv` guards
//! that keep their slot from the senders until dropped.

#![cfg(loom)]

use loom::thread;
use loom_tests::{model, model_bounded, mpmc_config};
use shmring::{RecvError, WaitStrategy, mpmc};

const A: &[u8] = &[0xa0, 0xa1, 0xa2];
const B: &[u8] = &[0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9];
/// Written into a grant that is then dropped: must never be received.
const JUNK: u8 = 0xee;

/// Sender: `A` (3 of 16 reserved bytes) at position 0, a grant dropped uncommitted at
/// position 1, then `B` at position 2, in the slot of `A`: it may claim that slot only once
/// the receiver dropped its guard on `A`. The receiver holds the guard across a scheduling
/// point and checks that the borrowed bytes did not change; its next `recv` skips position 1
/// and returns `B`, then end of stream.
#[test]
fn dropped_grant_is_skipped_and_guard_holds_its_slot() {
    model("dropped_grant_is_skipped_and_guard_holds_its_slot", || {
        let (mut tx, mut rx) =
            mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
        let sender = thread::spawn(move || {
            let mut g = tx.reserve(16).unwrap();
            assert_eq!(g.len(), 16);
            g[..A.len()].copy_from_slice(A);
            g.commit(A.len()).unwrap();
            {
                let mut g = tx.reserve(8).unwrap();
                g.fill(JUNK);
                // Dropped without commit: nothing is published.
            }
            let mut g = tx.reserve(B.len()).unwrap();
            g.copy_from_slice(B);
            g.commit(B.len()).unwrap();
        });
        for want in [A, B] {
            let msg = rx.recv().unwrap();
            assert_eq!(&*msg, want, "the dropped grant left no message");
            // The sender may run here; it must not touch the slot we still borrow.
            thread::yield_now();
            assert_eq!(&*msg, want, "a borrowed slot is stable until released");
        }
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        sender.join().unwrap();
    });
}

/// A grant filled with junk and dropped on one thread is skipped by the main thread, which
/// then claims the next lap of that slot: the skip mark hands the slot over as a publish
/// does. Without its Release the main thread may see the mark but not the dropper's claim of
/// the position before it, and read the ring as corrupted (the slot a lap ahead of `tail`),
/// or write its next message over the junk with no order between the two. The main thread
/// sends and receives `A` and `B` one by one; when the grant took position 0, `B` lands in
/// its slot. The case needs the dropper preempted between its skip mark and its notify (a
/// later notify or wait of the main thread would order it after the junk, as loom models the
/// notifier's barrier). Two threads, bound capped at 2 (8,740 executions; 86,648 at 3).
/// Catches `mpmc_relaxed_abandon`.
#[test]
fn dropped_grant_slot_is_rewritten_by_another_thread() {
    model_bounded(
        "dropped_grant_slot_is_rewritten_by_another_thread",
        Some(2),
        || {
            let (mut tx, mut rx) =
                mpmc::channel(&mpmc_config(WaitStrategy::Block)).expect("a valid configuration");
            let mut tx2 = tx.try_clone().expect("a heap ring clones");
            let dropper = thread::spawn(move || {
                let mut g = tx2.reserve(8).unwrap();
                g.fill(JUNK);
                // Dropped without commit: abandoned.
            });
            for want in [A, B] {
                tx.send(want).unwrap();
                assert_eq!(
                    &*rx.recv().unwrap(),
                    want,
                    "the dropped grant left no message"
                );
            }
            drop(tx);
            assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
            dropper.join().unwrap();
        },
    );
}
