//! In-process micro-benchmarks of the SPSC ring against rtrb and crossbeam's ArrayQueue.
//!
//! - `transfer/*`: real transfers between two threads. A producer thread and the measuring
//!   thread meet at a barrier, then the producer pushes `iters` messages while the measuring
//!   thread pops and checks them; the time runs until the last one arrived. Full and empty
//!   rings are waited on by spinning (`try_*` + `spin_loop`) for every queue, so the
//!   comparison is of the rings, not of their sleeping. Each message carries its sequence
//!   number, which the consumer checks.
//! - `send_recv/*`: one thread sends one message and receives it again: the cost of the two
//!   calls on an uncontended ring, by message size (rtrb's push + pop of `[u8; size]` for
//!   reference).
//! - `reserve_commit/*`: the zero-copy path (reserve, write the header word, commit, then
//!   receive) against `send` of a prepared buffer, by message size.
//!
//! - `mpmc_transfer/*`, `mpmc_send_recv/*`: the MPMC ring (1024 slots) against ArrayQueue
//!   (1024 elements of `[u8; size]`), one producer thread and one consumer thread, and the
//!   single-thread cost of a push and a pop.
//!
//! SPSC rings hold about 64 KiB of messages in every case: the shmring ring has a 64 KiB data
//! region (each record is an 8-byte header plus the payload), rtrb and ArrayQueue hold
//! 65536 / (size + 8) elements of `[u8; size]`.

use std::hint::{black_box, spin_loop};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use shmring::{TryRecvError, WaitStrategy, mpmc, spsc};

const RING_BYTES: usize = 64 * 1024;
/// Slots of the MPMC ring and of ArrayQueue in the MPMC comparison.
const MPMC_SLOTS: usize = 1024;

fn elements_for(size: usize) -> usize {
    RING_BYTES / (size + 8)
}

fn seq_of(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// Runs `produce` on a new thread and `consume` here, both after a barrier; returns the time
/// from the barrier until `consume` returned.
fn two_threads<P, C>(produce: P, consume: C) -> Duration
where
    P: FnOnce() + Send + 'static,
    C: FnOnce(),
{
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let t = std::thread::spawn(move || {
        b.wait();
        produce();
    });
    barrier.wait();
    let start = Instant::now();
    consume();
    let elapsed = start.elapsed();
    t.join().expect("producer thread");
    elapsed
}

fn shmring_transfer<const N: usize>(iters: u64, strategy: Option<WaitStrategy>) -> Duration {
    let config = shmring::spsc::Config::default().capacity_bytes(RING_BYTES);
    let (mut tx, mut rx) = spsc::channel(&config).expect("valid config");
    if let Some(s) = strategy {
        tx.set_wait_strategy(s);
        rx.set_wait_strategy(s);
    }
    two_threads(
        move || {
            let mut msg = [0u8; N];
            for i in 0..iters {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                if strategy.is_some() {
                    tx.send(&msg).expect("consumer alive");
                } else {
                    while tx.try_send(&msg).is_err() {
                        spin_loop();
                    }
                }
            }
        },
        || {
            for i in 0..iters {
                let m = if strategy.is_some() {
                    rx.recv().expect("producer alive")
                } else {
                    loop {
                        match rx.try_recv() {
                            Ok(m) => break m,
                            Err(TryRecvError::Empty) => spin_loop(),
                            Err(e) => panic!("recv: {e}"),
                        }
                    }
                };
                assert_eq!(seq_of(&m), i);
                black_box(&m[..]);
            }
        },
    )
}

fn shmring_batch_transfer<const N: usize>(iters: u64) -> Duration {
    let config = shmring::spsc::Config::default().capacity_bytes(RING_BYTES);
    let (mut tx, mut rx) = spsc::channel(&config).expect("valid config");
    two_threads(
        move || {
            let mut msg = [0u8; N];
            let mut i = 0;
            while i < iters {
                let mut batch = tx.batch();
                let end = (i + 32).min(iters);
                while i < end {
                    msg[..8].copy_from_slice(&i.to_le_bytes());
                    match batch.try_send(&msg) {
                        Ok(()) => i += 1,
                        Err(_) => {
                            batch.publish();
                            spin_loop();
                        }
                    }
                }
                batch.publish();
            }
        },
        || {
            let mut next = 0;
            while next < iters {
                match rx.drain(256, |m| {
                    assert_eq!(seq_of(m), next);
                    next += 1;
                }) {
                    Ok(_) | Err(TryRecvError::Empty) => spin_loop(),
                    Err(e) => panic!("drain: {e}"),
                }
            }
        },
    )
}

fn rtrb_transfer<const N: usize>(iters: u64) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(elements_for(N));
    two_threads(
        move || {
            let mut msg = [0u8; N];
            for i in 0..iters {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                while tx.push(msg).is_err() {
                    spin_loop();
                }
            }
        },
        || {
            for i in 0..iters {
                let m = loop {
                    match rx.pop() {
                        Ok(m) => break m,
                        Err(_) => spin_loop(),
                    }
                };
                assert_eq!(seq_of(&m), i);
                black_box(&m);
            }
        },
    )
}

fn array_queue_transfer<const N: usize>(iters: u64) -> Duration {
    let q = Arc::new(ArrayQueue::<[u8; N]>::new(elements_for(N)));
    let p = q.clone();
    two_threads(
        move || {
            let mut msg = [0u8; N];
            for i in 0..iters {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                while p.push(msg).is_err() {
                    spin_loop();
                }
            }
        },
        || {
            for i in 0..iters {
                let m = loop {
                    match q.pop() {
                        Some(m) => break m,
                        None => spin_loop(),
                    }
                };
                assert_eq!(seq_of(&m), i);
                black_box(&m);
            }
        },
    )
}

fn transfer_size<const N: usize>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("transfer/{N}B"));
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("shmring try_send/try_recv", |b| {
        b.iter_custom(|iters| shmring_transfer::<N>(iters, None))
    });
    g.bench_function("shmring send/recv (adaptive)", |b| {
        b.iter_custom(|iters| shmring_transfer::<N>(iters, Some(WaitStrategy::Adaptive)))
    });
    g.bench_function("shmring batch/drain", |b| {
        b.iter_custom(shmring_batch_transfer::<N>)
    });
    g.bench_function("rtrb", |b| b.iter_custom(rtrb_transfer::<N>));
    g.bench_function("crossbeam ArrayQueue", |b| {
        b.iter_custom(array_queue_transfer::<N>)
    });
    g.finish();
}

fn transfer(c: &mut Criterion) {
    transfer_size::<8>(c);
    transfer_size::<64>(c);
    transfer_size::<1024>(c);
}

fn send_recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_recv");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(300));
    for size in [8usize, 64, 1024, 16 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let config = shmring::spsc::Config::default().capacity_bytes(RING_BYTES);
        let (mut tx, mut rx) = spsc::channel(&config).expect("valid config");
        let msg = vec![7u8; size];
        g.bench_with_input(BenchmarkId::new("shmring", size), &size, |b, _| {
            b.iter(|| {
                tx.try_send(black_box(&msg)).expect("room");
                let m = rx.try_recv().expect("a message");
                black_box(&m[..]);
            })
        });
        let mut ex = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("shmring copy out", size), &size, |b, _| {
            b.iter(|| {
                tx.try_send(black_box(&msg)).expect("room");
                let m = rx.try_recv().expect("a message");
                ex.copy_from_slice(&m);
                black_box(&ex);
            })
        });
    }
    rtrb_send_recv::<8>(&mut g);
    rtrb_send_recv::<64>(&mut g);
    rtrb_send_recv::<1024>(&mut g);
    g.finish();
}

fn rtrb_send_recv<const N: usize>(g: &mut criterion::BenchmarkGroup<'_, WallTime>) {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(elements_for(N));
    let msg = [7u8; N];
    g.throughput(Throughput::Bytes(N as u64));
    g.bench_with_input(BenchmarkId::new("rtrb", N), &N, |b, _| {
        b.iter(|| {
            tx.push(black_box(msg)).expect("room");
            let m = rx.pop().expect("a message");
            black_box(&m);
        })
    });
}

fn reserve_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("reserve_commit");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(300));
    for size in [8usize, 64, 1024, 16 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let config = shmring::spsc::Config::default().capacity_bytes(RING_BYTES);
        let (mut tx, mut rx) = spsc::channel(&config).expect("valid config");
        g.bench_with_input(
            BenchmarkId::new("reserve+commit+recv", size),
            &size,
            |b, &n| {
                let mut i = 0u64;
                b.iter(|| {
                    let mut grant = tx.try_reserve(n).expect("room");
                    grant[..8].copy_from_slice(&i.to_le_bytes());
                    grant.commit(n).expect("commit");
                    let m = rx.try_recv().expect("a message");
                    black_box(seq_of(&m));
                    i += 1;
                })
            },
        );
        let msg = vec![7u8; size];
        g.bench_with_input(BenchmarkId::new("send+recv", size), &size, |b, _| {
            b.iter(|| {
                tx.try_send(black_box(&msg)).expect("room");
                let m = rx.try_recv().expect("a message");
                black_box(seq_of(&m));
            })
        });
    }
    g.finish();
}

fn mpmc_config<const N: usize>() -> shmring::mpmc::Config {
    shmring::mpmc::Config::default()
        .slots(MPMC_SLOTS)
        .max_message_bytes((N + 16).div_ceil(64) * 64 - 16)
}

fn mpmc_transfer<const N: usize>(iters: u64) -> Duration {
    let (mut tx, mut rx) = mpmc::channel(&mpmc_config::<N>()).expect("valid config");
    two_threads(
        move || {
            let mut msg = [0u8; N];
            for i in 0..iters {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                while tx.try_send(&msg).is_err() {
                    spin_loop();
                }
            }
        },
        || {
            for i in 0..iters {
                let m = loop {
                    match rx.try_recv() {
                        Ok(m) => break m,
                        Err(TryRecvError::Empty) => spin_loop(),
                        Err(e) => panic!("recv: {e}"),
                    }
                };
                assert_eq!(seq_of(&m), i);
                black_box(&m[..]);
            }
        },
    )
}

fn array_queue_slots_transfer<const N: usize>(iters: u64) -> Duration {
    let q = Arc::new(ArrayQueue::<[u8; N]>::new(MPMC_SLOTS));
    let p = q.clone();
    two_threads(
        move || {
            let mut msg = [0u8; N];
            for i in 0..iters {
                msg[..8].copy_from_slice(&i.to_le_bytes());
                while p.push(msg).is_err() {
                    spin_loop();
                }
            }
        },
        || {
            for i in 0..iters {
                let m = loop {
                    match q.pop() {
                        Some(m) => break m,
                        None => spin_loop(),
                    }
                };
                assert_eq!(seq_of(&m), i);
                black_box(&m);
            }
        },
    )
}

fn mpmc_size<const N: usize>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("mpmc_transfer/{N}B"));
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("shmring mpmc try_send/try_recv", |b| {
        b.iter_custom(mpmc_transfer::<N>)
    });
    g.bench_function("crossbeam ArrayQueue", |b| {
        b.iter_custom(array_queue_slots_transfer::<N>)
    });
    g.finish();

    let mut g = c.benchmark_group("mpmc_send_recv");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(300));
    g.throughput(Throughput::Bytes(N as u64));
    let (mut tx, mut rx) = mpmc::channel(&mpmc_config::<N>()).expect("valid config");
    let msg = [7u8; N];
    g.bench_with_input(BenchmarkId::new("shmring mpmc", N), &N, |b, _| {
        b.iter(|| {
            tx.try_send(black_box(&msg)).expect("room");
            let m = rx.try_recv().expect("a message");
            black_box(&m[..]);
        })
    });
    let q = ArrayQueue::<[u8; N]>::new(MPMC_SLOTS);
    g.bench_with_input(BenchmarkId::new("crossbeam ArrayQueue", N), &N, |b, _| {
        b.iter(|| {
            q.push(black_box(msg)).expect("room");
            black_box(q.pop().expect("a message"));
        })
    });
    g.finish();
}

fn mpmc_benches(c: &mut Criterion) {
    mpmc_size::<8>(c);
    mpmc_size::<64>(c);
    mpmc_size::<1024>(c);
}

criterion_group!(benches, transfer, send_recv, reserve_commit, mpmc_benches);
criterion_main!(benches);
