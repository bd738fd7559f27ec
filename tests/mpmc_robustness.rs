//! MPMC handles inherited across fork, hostile indices and registry sizes, and endpoints
//! that die without closing.

mod common;

use common::{RingName, patch, spawn_child};
use shmring::{Config, OpenError, TryRecvError, TrySendError, mpmc};

/// Offset of the header's `endpoint_count` (u32).
const ENDPOINT_COUNT: u64 = 76;

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn mpmc_robust_child() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    let name = common::env("RING");
    match role.as_str() {
        // Attaches a receiver and exits without closing it: the entry stays attached to a
        // dead process.
        "receiver_vanishes" => {
            let rx = mpmc::Receiver::open(&name).unwrap();
            std::mem::forget(rx);
        }
        other => panic!("unknown role {other}"),
    }
}

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

#[test]
fn a_hostile_endpoint_count_does_not_change_the_registry_of_open_handles() {
    let name = RingName::new("mpmc-count");
    let cfg = Config::default().slots(8).slot_size(64).endpoints(3);
    let mut tx = mpmc::Sender::create(name.as_str(), cfg).unwrap();
    // Entry 1: a receiver whose process exits without closing it.
    spawn_child(
        "mpmc_robust_child",
        "receiver_vanishes",
        &[("RING", name.0.clone())],
    )
    .finish();
    // Entry 2: a live receiver. The registry is full now.
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();

    // A peer claims the registry has no entries.
    patch(&name, ENDPOINT_COUNT, &0u32.to_ne_bytes());
    // Reaping still scans the 3 entries validated at open: the dead receiver's entry is
    // reclaimed for a new sender.
    let tx2 = tx.try_clone().expect("dead entry reaped and reused");
    match tx.try_clone() {
        Err(OpenError::RegistryFull { capacity }) => assert_eq!(capacity, 3),
        other => panic!("expected RegistryFull, got {other:?}"),
    }
    // Closing one of two senders must see the other one attached: the side stays open.
    drop(tx2);
    assert!(!rx.is_disconnected());
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Empty)
    ));
    // A live sender's claimed slot is not taken for abandoned by a receiver's peer check.
    let mut g = tx.try_reserve(4).unwrap();
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Empty)
    ));
    g[..4].copy_from_slice(b"kept");
    g.commit(4).unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"kept");

    // A peer claims the registry is larger than it was created.
    patch(&name, ENDPOINT_COUNT, &64u32.to_ne_bytes());
    let tx2 = tx.try_clone().expect("entry 1 is free again");
    match tx.try_clone() {
        Err(OpenError::RegistryFull { capacity }) => assert_eq!(capacity, 3),
        other => panic!("expected RegistryFull, got {other:?}"),
    }
    tx.try_send(b"last").unwrap();
    // The last sender to close still closes the side.
    drop(tx);
    drop(tx2);
    assert_eq!(&*rx.try_recv().unwrap(), b"last");
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Disconnected)
    ));
}
