//! Async handles between real processes: a million checked messages, a parked consumer woken
//! by a producer in another process, a peer SIGKILLed while a `recv` is pending, and 100 rings
//! served by one current-thread runtime.

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::{ChildProc, RingName, check_msg, env, fill_msg, msg_len, spawn_child};
use shmring::evented::{AsyncConsumer, AsyncProducer};
use shmring::{RecvError, WaitStrategy, spsc};

const ENTRY: &str = "child_entry";

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match role.as_str() {
        "async_producer" => rt.block_on(async_producer()),
        "send_late" => rt.block_on(send_late()),
        "open_then_hang" => {
            let tx = spsc::Producer::open(&env("RING")).expect("open producer");
            ready();
            std::thread::sleep(Duration::from_secs(600));
            drop(tx);
        }
        "many_producers" => many_producers(),
        other => panic!("unknown role {other}"),
    }
}

fn ready() {
    use std::io::Write;
    println!("\nSHMRING-CHILD-READY");
    std::io::stdout().flush().unwrap();
}

/// Waits for the child's ready line.
fn wait_ready(child: &mut ChildProc) {
    let out = child.0.as_mut().unwrap().stdout.as_mut().unwrap();
    for line in std::io::BufReader::new(out).lines() {
        if line.expect("child stdout").contains("SHMRING-CHILD-READY") {
            return;
        }
    }
    panic!("child exited before it was ready");
}

const MILLION: u64 = 1_000_000;
const MAX: usize = 100;

async fn async_producer() {
    let tx = spsc::Producer::open(&env("RING")).expect("open producer");
    let mut tx = AsyncProducer::new(tx).expect("async producer");
    let mut buf = [0u8; MAX];
    for seq in 0..MILLION {
        let b = &mut buf[..msg_len(seq, MAX)];
        fill_msg(seq, b);
        tx.send(b).await.expect("send");
    }
    // Dropping the producer ends the stream.
}

#[test]
fn a_million_checked_messages_between_async_ends_in_two_processes() {
    let name = RingName::new("async-million");
    // A small ring, so that both sides fill, empty and park often.
    let rx = spsc::Consumer::create(name.as_str(), spsc::Config::default().capacity_bytes(4096))
        .unwrap();
    let child = spawn_child(ENTRY, "async_producer", &[("RING", name.0.clone())]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (n, stats) = rt.block_on(async {
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let mut scratch = Vec::new();
        let mut n = 0u64;
        loop {
            match rx.recv().await {
                Ok(m) => check_msg(n, MAX, &m, &mut scratch),
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("message {n}: {e}"),
            }
            n += 1;
        }
        (n, rx.wait_stats())
    });
    child.finish();
    assert_eq!(n, MILLION);
    eprintln!("consumer: {stats:?}");
}

async fn send_late() {
    let tx = spsc::Producer::open(&env("RING")).expect("open producer");
    let mut tx = AsyncProducer::new(tx).expect("async producer");
    ready();
    // Long enough for the consumer to park.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(b"from another process").await.expect("send");
    // Keep the producer open: the consumer must be woken by the message, not by a close.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[test]
fn a_parked_async_consumer_is_woken_by_a_producer_in_another_process() {
    for strategy in [WaitStrategy::Block, WaitStrategy::Adaptive] {
        let name = RingName::new("async-woken");
        let mut rx = spsc::Consumer::create(name.as_str(), spsc::Config::default()).unwrap();
        rx.set_wait_strategy(strategy);
        let mut child = spawn_child(ENTRY, "send_late", &[("RING", name.0.clone())]);
        wait_ready(&mut child);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stats = rt.block_on(async {
            let mut rx = AsyncConsumer::new(rx).unwrap();
            let m = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("the message arrives")
                .unwrap();
            assert_eq!(&*m, b"from another process");
            drop(m);
            rx.wait_stats()
        });
        assert!(stats.sleeps >= 1, "{strategy:?}: never parked: {stats:?}");
        let mut child = child;
        child.kill();
        child.reap();
    }
}

#[test]
fn a_peer_killed_while_recv_is_pending_is_disconnected_within_a_second() {
    let name = RingName::new("async-kill");
    let rx = spsc::Consumer::create(name.as_str(), spsc::Config::default()).unwrap();
    let mut child = spawn_child(ENTRY, "open_then_hang", &[("RING", name.0.clone())]);
    wait_ready(&mut child);
    let pid = child.pid();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (result, noticed, stats) = rt.block_on(async {
        let mut rx = AsyncConsumer::new(rx).unwrap();
        let recv = async {
            let r = rx.recv().await.map(|m| m.to_vec());
            (r, Instant::now())
        };
        let kill = async {
            // Long enough for `recv` to park.
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Only the child this test started, by its pid.
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            Instant::now()
        };
        let ((result, at), killed) = tokio::join!(recv, kill);
        (
            result,
            at.saturating_duration_since(killed),
            rx.wait_stats(),
        )
    });
    child.reap();
    assert_eq!(result, Err(RecvError::Disconnected));
    assert!(stats.sleeps >= 1, "recv never parked: {stats:?}");
    assert!(
        noticed < Duration::from_secs(1),
        "the kill was noticed after {noticed:?}"
    );
}

const RINGS: usize = 100;
const PER_RING: u64 = 200;

fn many_producers() {
    let base = env("RING");
    let mut txs: Vec<spsc::Producer> = (0..RINGS)
        .map(|i| spsc::Producer::open(&format!("{base}-{i}")).expect("open producer"))
        .collect();
    let mut buf = [0u8; 32];
    for seq in 0..PER_RING {
        for tx in &mut txs {
            let b = &mut buf[..msg_len(seq, 32)];
            fill_msg(seq, b);
            tx.send(b).expect("send");
        }
        // Now and then a pause long enough for every consumer to park.
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_hundred_rings_on_one_current_thread_runtime_all_progress() {
    let base = RingName::new("async-hundred");
    let names: Vec<RingName> = (0..RINGS)
        .map(|i| RingName(format!("{}-{i}", base.0)))
        .collect();
    let rxs: Vec<spsc::Consumer> = names
        .iter()
        .map(|n| spsc::Consumer::create(n.as_str(), spsc::Config::default().capacity_bytes(1024)))
        .collect::<Result<_, _>>()
        .unwrap();
    let child = spawn_child(ENTRY, "many_producers", &[("RING", base.0.clone())]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts = rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        let tasks: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                local.spawn_local(async move {
                    let mut rx = AsyncConsumer::new(rx).unwrap();
                    let mut scratch = Vec::new();
                    let mut n = 0u64;
                    while let Ok(m) = rx.recv().await {
                        check_msg(n, 32, &m, &mut scratch);
                        n += 1;
                    }
                    (n, rx.wait_stats())
                })
            })
            .collect();
        local
            .run_until(async move {
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            })
            .await
    });
    child.finish();
    let parked = counts.iter().filter(|(_, s)| s.sleeps > 0).count();
    for (i, (n, _)) in counts.iter().enumerate() {
        assert_eq!(*n, PER_RING, "ring {i}");
    }
    assert!(parked > 0, "no consumer ever parked");
}
