//! A counting allocator shows that MPMC sends and receives allocate nothing: copying and
//! zero-copy paths, full and empty rings, and blocking calls that sleep and run the peer
//! check (registry scan, `/proc` lookups) on the way.

#[path = "common/alloc.rs"]
mod alloc;

use alloc::{Counting, allocations_in};
use std::time::Duration;

use shmring::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError, mpmc};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_allocator_counts() {
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn mpmc_send_and_receive_do_not_allocate() {
    // A shared ring on a memfd: both ends here, each with a registry entry and claim record.
    let (mut tx, fd) = mpmc::Sender::create_anonymous(
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(112),
    )
    .unwrap();
    let mut rx = mpmc::Receiver::from_fd(fd).unwrap();
    let payload = [0x5Au8; 100];
    let mut seen = 0usize;
    let n = allocations_in(|| {
        for i in 0..10_000usize {
            if i % 2 == 0 {
                tx.send(&payload).unwrap();
            } else {
                let mut g = tx.reserve(100).unwrap();
                g.copy_from_slice(&payload);
                g.commit(100).unwrap();
            }
            let m = rx.recv().unwrap();
            seen += m.len();
        }
        // Full and empty rings, and the peer check the `try_` calls run then.
        while tx.try_send(&payload).is_ok() {}
        assert!(matches!(tx.try_send(&payload), Err(TrySendError::Full(_))));
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        // Blocking calls that time out: they announce themselves, sleep on the futex, and
        // look at the peers after each slice.
        let e = rx.recv_timeout(Duration::from_millis(120)).unwrap_err();
        assert_eq!(e, RecvTimeoutError::Timeout);
        while tx.try_send(&payload).is_ok() {}
        let e = tx
            .send_timeout(&payload, Duration::from_millis(120))
            .unwrap_err();
        assert!(matches!(e, SendTimeoutError::Timeout(_)));
    });
    assert_eq!(seen, 10_000 * 100);
    assert!(rx.wait_stats().sleeps >= 1 && tx.wait_stats().sleeps >= 1);
    assert_eq!(n, 0, "allocations on the send/receive paths");
}
