//! MPMC handles inherited across fork, and hostile indices.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use common::RingName;
use shmring::{Config, TryRecvError, TrySendError, mpmc};

#[test]
fn dropping_inherited_handles_in_a_forked_child_closes_nothing() {
    let name = RingName::new("mpmc-fork");
    let mut tx =
        mpmc::Sender::create(name.as_str(), Config::default().slots(8).slot_size(64)).unwrap();
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
    // SAFETY: the child only drops its copies of the handles (unmapping, no locks) and exits
    // with _exit.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed"),
        0 => {
            drop(std::hint::black_box(rx));
            drop(std::hint::black_box(tx));
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child we just forked.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert_eq!(status, 0);
        }
    }
    assert!(!rx.is_disconnected());
    assert!(!tx.is_disconnected());
    tx.send(b"still here").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"still here");
    // A new sender can still attach: the side was not closed.
    let tx2 = mpmc::Sender::open(name.as_str()).unwrap();
    drop(tx2);
}

/// Offset of the control block's head line (header page, then the tail line).
fn patch(name: &RingName, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
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
