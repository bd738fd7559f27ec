//! A counting allocator shows that sending and receiving allocate nothing: copying and
//! zero-copy paths, batches, and a blocking call that really goes to sleep on the futex.

#[path = "common/alloc.rs"]
mod alloc;

use alloc::{Counting, allocations_in};
use std::time::Duration;

use shmring::{RecvTimeoutError, WaitStrategy, spsc};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_allocator_counts() {
    // The measurement itself must be able to see an allocation.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn send_and_receive_do_not_allocate() {
    // A shared-memory ring on a memfd, both ends in this thread.
    let (mut tx, fd) =
        spsc::Producer::create_anonymous(shmring::spsc::Config::default().capacity_bytes(1 << 14))
            .unwrap();
    let mut rx = spsc::Consumer::from_fd(fd).unwrap();
    let payload = [0xABu8; 1000];
    let mut seen = 0usize;
    let n = allocations_in(|| {
        for i in 0..10_000usize {
            let len = 1 + i % payload.len();
            match i % 4 {
                0 => tx.send(&payload[..len]).unwrap(),
                1 => tx.try_send(&payload[..len]).unwrap(),
                2 => tx
                    .send_timeout(&payload[..len], Duration::from_secs(1))
                    .unwrap(),
                _ => {
                    let mut g = tx.reserve(len).unwrap();
                    g.copy_from_slice(&payload[..len]);
                    g.commit(len).unwrap();
                }
            }
            let m = match i % 3 {
                0 => rx.recv().unwrap(),
                1 => rx.try_recv().unwrap(),
                _ => rx.recv_timeout(Duration::from_secs(1)).unwrap(),
            };
            assert_eq!(m.len(), len);
            seen += m.len();
        }
        {
            let mut b = tx.batch();
            for _ in 0..8 {
                b.try_send(&payload[..100]).unwrap();
            }
        }
        assert_eq!(rx.drain(100, |m| seen += m.len()).unwrap(), 8);
    });
    assert!(seen > 0);
    assert_eq!(n, 0, "{n} allocations on the send/recv path");
}

#[test]
fn a_blocking_wait_that_sleeps_does_not_allocate() {
    let (mut tx, fd) = spsc::Producer::create_anonymous(
        shmring::spsc::Config::default()
            .capacity_bytes(64)
            .wait_strategy(WaitStrategy::Block),
    )
    .unwrap();
    let mut rx = spsc::Consumer::from_fd(fd).unwrap();
    rx.set_wait_strategy(WaitStrategy::Block);
    let n = allocations_in(|| {
        // Empty ring: announce, sleep on the futex (twice: the 150 ms timeout spans two
        // 100 ms slices, so the peer's liveness is checked in between), time out.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(150)).unwrap_err(),
            RecvTimeoutError::Timeout
        );
        while tx.try_send(&[1; 8]).is_ok() {}
        assert!(
            tx.send_timeout(&[1; 8], Duration::from_millis(150))
                .is_err()
        );
    });
    assert!(rx.wait_stats().sleeps >= 1 && tx.wait_stats().sleeps >= 1);
    assert_eq!(n, 0, "{n} allocations while waiting");
}
