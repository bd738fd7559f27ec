//! Zero-copy ends: `reserve` → write in place → `commit`, and `recv` guards that keep their
//! record in the ring until dropped. A grant dropped without `commit` publishes nothing.

#![cfg(loom)]

use loom::thread;
use loom_tests::{config, model};
use shmring::{CommitError, RecvError, WaitStrategy, spsc};

const A: &[u8] = &[0xa0, 0xa1, 0xa2];
const B: &[u8] = &[0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7];
const C: &[u8] = &[0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5];
/// Written into a grant that is then dropped: must never be received.
const JUNK: u8 = 0xee;

/// Producer: a dropped grant, then `A` (3 of 8 reserved bytes) at 0..16, `B` at 16..32 (with
/// its terminator at 0, so only once `A` is released), and `C` at 0..16 again (once `B` is
/// released): the producer may reserve each only after the consumer dropped its guard on the
/// one before. The consumer holds each guard across a scheduling
/// point and checks that the borrowed bytes did not change under it.
#[test]
fn reserve_commit_and_borrow_release() {
    model("reserve_commit_and_borrow_release", || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Adaptive)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            {
                let mut g = tx.reserve(8).unwrap();
                assert_eq!(g.len(), 8);
                g.fill(JUNK);
                // Dropped without commit: nothing is published.
            }
            let mut g = tx.reserve(8).unwrap();
            assert_eq!(g.len(), 8);
            g[..A.len()].copy_from_slice(A);
            g.commit(A.len()).unwrap();

            let mut g = tx.reserve(B.len()).unwrap();
            g.copy_from_slice(B);
            g.commit(B.len()).unwrap();

            let mut g = tx.reserve(C.len()).unwrap();
            g.copy_from_slice(C);
            g.commit(C.len()).unwrap();
        });
        for want in [A, B, C] {
            let msg = rx.recv().unwrap();
            let first_look = msg.to_vec();
            assert_eq!(
                first_look, want,
                "the first message is A: the dropped grant left no trace"
            );
            // The producer may run here; it must not touch a record we still borrow.
            thread::yield_now();
            assert_eq!(&*msg, want, "a borrowed record is stable until released");
        }
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        producer.join().unwrap();
    });
}

/// A grant whose commit is refused (more bytes than it holds) publishes nothing either: the
/// consumer receives only the message committed after it, then end of stream.
#[test]
fn refused_commit_publishes_nothing() {
    model("refused_commit_publishes_nothing", || {
        let (mut tx, mut rx) =
            spsc::channel(&config(WaitStrategy::Adaptive)).expect("a valid configuration");
        let producer = thread::spawn(move || {
            let mut g = tx.reserve(4).unwrap();
            g.fill(JUNK);
            assert_eq!(
                g.commit(5).unwrap_err(),
                CommitError::TooLong { len: 5, granted: 4 }
            );
            let mut g = tx.reserve(A.len()).unwrap();
            g.copy_from_slice(A);
            g.commit(A.len()).unwrap();
        });
        let msg = rx.recv().unwrap();
        assert_eq!(&*msg, A);
        drop(msg);
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
        producer.join().unwrap();
    });
}
