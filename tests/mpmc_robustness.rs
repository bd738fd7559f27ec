//! MPMC handles inherited across fork, and hostile indices.

mod common;

use common::{RingName, patch};
use shmring::{Config, TryRecvError, TrySendError, mpmc};

#[test]
fn dropping_inherited_handles_in_a_forked_child_closes_nothing() {
    let name = RingName::new("mpmc-fork");
    let mut tx =
        mpmc::Sender::create(name.as_str(), Config::default().slots(8).slot_size(64)).unwrap();
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
    common::fork_and_wait(|| {
        // SAFETY: in the forked child these bitwise copies are the child's own (fork copied
        // the memory) and the originals are never used there again; dropping them is what
        // a child closing its inherited handles does.
        let inherited = unsafe { (std::ptr::read(&rx), std::ptr::read(&tx)) };
        drop(inherited);
    });
    assert!(!rx.is_disconnected());
    assert!(!tx.is_disconnected());
    tx.send(b"still here").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"still here");
    // A new sender can still attach: the side was not closed.
    let tx2 = mpmc::Sender::open(name.as_str()).unwrap();
    drop(tx2);
}

#[test]
fn huge_indices_written_by_a_peer_are_corruption_not_a_panic() {
    for offset in [4096u64, 4096 + 128] {
        let name = RingName::new("mpmc-huge");
        let mut tx =
            mpmc::Sender::create(name.as_str(), Config::default().slots(8).slot_size(64)).unwrap();
        let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
        patch(&name, offset, &u64::MAX.to_ne_bytes());
        // Whichever index was hit, neither side panics; the side that reads it reports it.
        let sent = tx.try_send(b"x");
        let got = rx.try_recv().map(|m| m.to_vec());
        let corrupted = matches!(sent, Err(TrySendError::Corrupted { .. }))
            || matches!(got, Err(TryRecvError::Corrupted(_)));
        assert!(corrupted, "offset {offset}: {sent:?} / {got:?}");
    }
}
