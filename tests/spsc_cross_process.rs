//! SPSC between real processes: bulk transfer with full verification, a tiny ring where both
//! sides block constantly (on one shared CPU), disconnect in both directions, and SIGKILL of
//! either side while the other is blocked.

mod common;

use std::time::Duration;

use common::{ChildProc, RingName, check_msg, env, fill_msg, msg_len, spawn_child};
use shmring::{RecvError, RecvTimeoutError, SendTimeoutError, WaitStrategy, spsc};

const ENTRY: &str = "child_entry";

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    let name = env("RING");
    match role.as_str() {
        "bulk_producer" => bulk_producer(&name),
        "tiny_producer" => tiny_producer(&name),
        "send_then_exit" => {
            let mut tx = spsc::Producer::open(&name).expect("open producer");
            for seq in 0..100u64 {
                let mut buf = vec![0; msg_len(seq, 64)];
                fill_msg(seq, &mut buf);
                tx.send(&buf).expect("send");
            }
            // Dropping the producer closes the stream.
        }
        "recv_one_then_exit" => {
            let mut rx = spsc::Consumer::open(&name).expect("open consumer");
            let m = rx.recv().expect("recv");
            assert_eq!(&*m, b"first");
        }
        "send_then_hang" => {
            let mut tx = spsc::Producer::open(&name).expect("open producer");
            for i in 0..3u8 {
                tx.send(&[i; 16]).expect("send");
            }
            println!("\nSHMRING-CHILD-READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        "open_consumer_then_hang" => {
            let rx = spsc::Consumer::open(&name).expect("open consumer");
            println!("\nSHMRING-CHILD-READY");
            std::thread::sleep(Duration::from_secs(600));
            drop(rx);
        }
        other => panic!("unknown role {other}"),
    }
}

fn bulk_producer(name: &str) {
    let count: u64 = env("COUNT").parse().unwrap();
    let max: usize = env("MAX").parse().unwrap();
    let mut tx = spsc::Producer::open(name).expect("open producer");
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; max];
    for seq in 0..count {
        let len = msg_len(seq, max);
        if seq % 2 == 0 {
            // Copying send.
            fill_msg(seq, &mut buf[..len]);
            crc.update(&buf[..len]);
            tx.send(&buf[..len]).expect("send");
        } else {
            // Zero-copy: reserve the largest size, write in place, commit the real length.
            let mut g = tx.reserve(max).expect("reserve");
            fill_msg(seq, &mut g[..len]);
            crc.update(&g[..len]);
            g.commit(len).expect("commit");
        }
    }
    println!("crc {:08x}", crc.finalize());
    println!("stats {:?}", tx.wait_stats());
}

fn tiny_producer(name: &str) {
    let count: u64 = env("COUNT").parse().unwrap();
    let max: usize = env("MAX").parse().unwrap();
    let cpu: usize = env("CPU").parse().unwrap();
    common::pin_to_cpu(cpu);
    let mut tx = spsc::Producer::open(name).expect("open producer");
    tx.set_wait_strategy(WaitStrategy::Block);
    let mut buf = vec![0u8; max];
    for seq in 0..count {
        let len = msg_len(seq, max);
        fill_msg(seq, &mut buf[..len]);
        tx.send(&buf[..len]).expect("send");
    }
    let s = tx.wait_stats();
    println!("waits {} sleeps {}", s.waits, s.sleeps);
}

fn field(out: &str, key: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != key)
        .nth(1)
        .unwrap_or_else(|| panic!("child output lacks {key}: {out}"))
        .to_owned()
}

#[test]
fn million_random_messages_between_processes() {
    const COUNT: u64 = 1_000_000;
    const MAX: usize = 4096;
    let name = RingName::new("bulk");
    let mut rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(1 << 16),
    )
    .expect("create ring");
    let child = spawn_child(
        ENTRY,
        "bulk_producer",
        &[
            ("RING", name.0.clone()),
            ("COUNT", COUNT.to_string()),
            ("MAX", MAX.to_string()),
        ],
    );
    let mut crc = crc32fast::Hasher::new();
    let mut scratch = Vec::with_capacity(MAX);
    let mut seq = 0u64;
    loop {
        match rx.recv() {
            Ok(m) => {
                assert!(seq < COUNT, "more messages than were sent");
                check_msg(seq, MAX, &m, &mut scratch);
                crc.update(&m);
                seq += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("recv failed after {seq} messages: {e}"),
        }
    }
    let out = child.finish();
    assert_eq!(seq, COUNT, "messages lost");
    assert_eq!(field(&out, "crc"), format!("{:08x}", crc.finalize()));
}

#[test]
fn tiny_ring_blocks_both_sides_on_one_cpu() {
    const COUNT: u64 = 100_000;
    const MAX: usize = 24; // capacity 64: at most 4 records of 16 bytes
    let name = RingName::new("tiny");
    let mut rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default()
            .capacity_bytes(64)
            .wait_strategy(WaitStrategy::Block),
    )
    .expect("create ring");
    // Both processes share one CPU, so neither can make progress by spinning.
    let cpu = 0;
    let pinned = common::pin_to_cpu(cpu);
    let child = spawn_child(
        ENTRY,
        "tiny_producer",
        &[
            ("RING", name.0.clone()),
            ("COUNT", COUNT.to_string()),
            ("MAX", MAX.to_string()),
            ("CPU", cpu.to_string()),
        ],
    );
    let mut scratch = Vec::new();
    let mut seq = 0u64;
    while let Ok(m) = rx.recv() {
        check_msg(seq, MAX, &m, &mut scratch);
        seq += 1;
    }
    let out = child.finish();
    assert_eq!(seq, COUNT);
    let producer_waits: u64 = field(&out, "waits").parse().unwrap();
    let consumer_waits = rx.wait_stats().waits;
    eprintln!(
        "pinned={pinned} producer waits={producer_waits} consumer waits={consumer_waits} \
         consumer sleeps={}",
        rx.wait_stats().sleeps
    );
    // 100,000 messages through a ring that holds at most 4: both sides must have found it
    // full/empty many times over.
    assert!(
        producer_waits >= 1000,
        "producer waited only {producer_waits} times"
    );
    assert!(
        consumer_waits >= 1000,
        "consumer waited only {consumer_waits} times"
    );
    // Restore this thread's affinity for later tests in the same thread pool.
    let mut all = rustix::thread::CpuSet::new();
    for c in 0..rustix::thread::CpuSet::MAX_CPU {
        all.set(c);
    }
    let _ = rustix::thread::sched_setaffinity(None, &all);
}

#[test]
fn producer_exit_is_end_of_stream_after_draining() {
    let name = RingName::new("eos");
    // Room for all 100 messages (at most 72-byte records), so the producer never waits.
    let mut rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(1 << 14),
    )
    .unwrap();
    let child = spawn_child(ENTRY, "send_then_exit", &[("RING", name.0.clone())]);
    child.finish();
    // The producer is gone; everything it sent is still delivered, then end of stream.
    let mut scratch = Vec::new();
    for seq in 0..100 {
        let m = rx.recv().expect("queued message");
        check_msg(seq, 64, &m, &mut scratch);
    }
    assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
    assert!(rx.is_disconnected());
}

#[test]
fn consumer_exit_is_broken_pipe_with_message_handed_back() {
    let name = RingName::new("epipe");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(1 << 12),
    )
    .unwrap();
    let child = spawn_child(ENTRY, "recv_one_then_exit", &[("RING", name.0.clone())]);
    tx.send(b"first").unwrap();
    child.finish();
    let msg = b"second".to_vec();
    match tx.send(&msg) {
        Err(shmring::SendError::Disconnected(())) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(tx.is_disconnected());
}

/// Waits until the child printed a line on stdout (it is then past its setup).
fn wait_ready(child: &mut ChildProc) {
    use std::io::BufRead;
    let out = child.0.as_mut().unwrap().stdout.as_mut().unwrap();
    // The test harness prints its own lines first.
    for line in std::io::BufReader::new(out).lines() {
        if line.expect("child stdout").contains("SHMRING-CHILD-READY") {
            return;
        }
    }
    panic!("child exited before it was ready");
}

/// Kills `child` from another thread after a short delay, while this thread is blocked.
fn kill_later(pid: u32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // Only the child this test started, by its pid.
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    })
}

#[test]
fn killed_producer_is_noticed_by_blocked_consumer() {
    let name = RingName::new("killp");
    let mut rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(1 << 12),
    )
    .unwrap();
    let mut child = spawn_child(ENTRY, "send_then_hang", &[("RING", name.0.clone())]);
    wait_ready(&mut child);
    for i in 0..3u8 {
        assert_eq!(&*rx.recv().unwrap(), &[i; 16]);
    }
    let killer = kill_later(child.pid());
    // Blocked on an empty ring when the producer is killed; the limit only guards against a
    // hang (liveness is checked every 100 ms of sleep).
    let r = rx.recv_timeout(Duration::from_secs(20));
    killer.join().unwrap();
    assert_eq!(r.unwrap_err(), RecvTimeoutError::Disconnected);
    child.reap();
}

#[test]
fn killed_consumer_is_noticed_by_blocked_producer() {
    let name = RingName::new("killc");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(64),
    )
    .unwrap();
    let mut child = spawn_child(
        ENTRY,
        "open_consumer_then_hang",
        &[("RING", name.0.clone())],
    );
    wait_ready(&mut child);
    // Fill the ring; the consumer never reads.
    while tx.try_send(&[7; 16]).is_ok() {}
    let killer = kill_later(child.pid());
    let msg = [9u8; 16];
    let r = tx.send_timeout(&msg, Duration::from_secs(20));
    killer.join().unwrap();
    match r {
        Err(SendTimeoutError::Disconnected(())) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    child.reap();
}
