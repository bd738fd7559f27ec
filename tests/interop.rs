//! Rings inside a `shared_memory::Shmem` (feature `shared_memory`): both kinds move messages
//! between mappings and processes, mappings too small or already holding a ring are refused,
//! a peer killed in another process is noticed, and truncation is survived.

#![cfg(feature = "shared_memory")]

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{RingName, env, spawn_child};
use shared_memory::{Shmem, ShmemConf};
use shmring::{OpenError, RecvTimeoutError, interop, mpmc, spsc};

const ENTRY: &str = "child_entry";

/// A new `Shmem` of `len` bytes under a unique name (removed by the `RingName` on drop, and
/// by the `Shmem` itself, its owner).
fn create(name: &RingName, len: usize) -> Shmem {
    ShmemConf::new()
        .os_id(name.as_str())
        .size(len)
        .create()
        .expect("create Shmem")
}

fn open(name: &str) -> Shmem {
    ShmemConf::new().os_id(name).open().expect("open Shmem")
}

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    let name = env("RING");
    match role.as_str() {
        "send_then_hang" => {
            let mut tx = spsc::Producer::open_in(open(&name)).expect("open_in");
            for i in 0..3u8 {
                tx.send(&[i; 16]).expect("send");
            }
            println!("ready");
            std::thread::sleep(Duration::from_secs(120));
        }
        "mpmc_sender" => {
            let mut tx = mpmc::Sender::open_in(open(&name)).expect("open_in");
            for i in 0..1000u32 {
                tx.send(&i.to_le_bytes()).expect("send");
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn spsc_ring_in_a_shmem_moves_messages_between_two_mappings() {
    let name = RingName::new("interop-spsc");
    let config = spsc::Config::default().capacity_bytes(4096);
    let len = interop::spsc_mapping_len(&config).unwrap();
    let mut tx = spsc::Producer::create_in(create(&name, len), config).unwrap();
    let mut rx = spsc::Consumer::open_in(open(name.as_str())).unwrap();
    // The ring is an ordinary shmring object: the inspector reads it by name.
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!(info.capacity, 4096);
    let sender = std::thread::spawn(move || {
        for i in 0..100_000u64 {
            tx.send(&i.to_le_bytes()[..(i % 8 + 1) as usize]).unwrap();
        }
    });
    for i in 0..100_000u64 {
        let msg = rx.recv().unwrap();
        assert_eq!(&*msg, &i.to_le_bytes()[..(i % 8 + 1) as usize]);
    }
    sender.join().unwrap();
    assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
    // The producer's Shmem, the owner, removed the name when the producer was dropped.
    assert!(!std::path::Path::new(&name.dev_shm_path()).exists());
}

#[test]
fn mpmc_ring_in_a_shmem_serves_a_sender_in_another_process() {
    let name = RingName::new("interop-mpmc");
    let config = mpmc::Config::default().slots(16);
    let len = interop::mpmc_mapping_len(&config).unwrap();
    let mut rx = mpmc::Receiver::create_in(create(&name, len), config).unwrap();
    let child = spawn_child(ENTRY, "mpmc_sender", &[("RING", name.0.clone())]);
    for i in 0..1000u32 {
        let msg = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(&*msg, &i.to_le_bytes());
    }
    // The child's sender closed the sending side when it exited.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap_err(),
        RecvTimeoutError::Disconnected
    );
    child.finish();
}

#[test]
fn a_mapping_too_small_for_the_ring_is_refused() {
    let name = RingName::new("interop-small");
    let config = spsc::Config::default().capacity_bytes(1 << 16);
    let len = interop::spsc_mapping_len(&config).unwrap();
    match spsc::Producer::create_in(create(&name, len - 4096), config) {
        Err(OpenError::TooSmall { actual, needed }) => {
            assert_eq!((actual, needed), ((len - 4096) as u64, len as u64));
        }
        other => panic!("{other:?}"),
    }
    // A mapping smaller than the header page is refused before anything in it is read.
    let name = RingName::new("interop-tiny");
    let tiny = create(&name, 100);
    match spsc::Consumer::open_in(open(name.as_str())) {
        Err(OpenError::TooSmall { actual, needed }) => assert_eq!((actual, needed), (100, 4096)),
        other => panic!("{other:?}"),
    }
    drop(tiny);
    // Opening a mapping that holds no ring says so at once.
    let name = RingName::new("interop-empty");
    let shmem = create(&name, 1 << 16);
    assert!(matches!(
        spsc::Consumer::open_in(open(name.as_str())),
        Err(OpenError::NotShmring)
    ));
    drop(shmem);
}

#[test]
fn a_mapping_that_holds_a_ring_is_not_created_again_nor_opened_as_the_other_kind() {
    let name = RingName::new("interop-twice");
    let config = spsc::Config::default().capacity_bytes(4096);
    let len = interop::spsc_mapping_len(&config).unwrap();
    let tx = spsc::Producer::create_in(create(&name, len), config).unwrap();
    assert!(matches!(
        spsc::Consumer::create_in(open(name.as_str()), config),
        Err(OpenError::AlreadyExists(_))
    ));
    assert!(matches!(
        mpmc::Receiver::open_in(open(name.as_str())),
        Err(OpenError::WrongKind { .. })
    ));
    // The consumer end is still free.
    let mut rx = spsc::Consumer::open_in(open(name.as_str())).unwrap();
    let mut tx = tx;
    tx.send(b"still fine").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"still fine");
}

#[test]
fn a_producer_killed_in_another_process_is_noticed() {
    let name = RingName::new("interop-kill");
    let config = spsc::Config::default().capacity_bytes(4096);
    let len = interop::spsc_mapping_len(&config).unwrap();
    let mut rx = spsc::Consumer::create_in(create(&name, len), config).unwrap();
    let mut child = spawn_child(ENTRY, "send_then_hang", &[("RING", name.0.clone())]);
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    // The harness prints its own lines first, and "test child_entry ... " before ours.
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("ready"));
    assert!(ready, "the child ended before it was ready");
    for i in 0..3u8 {
        assert_eq!(&*rx.recv().unwrap(), &[i; 16]);
    }
    child.kill();
    // The child held its liveness lock on the object it opened by the Shmem's name; the
    // kernel released it. The limit only guards against a hang.
    let r = rx.recv_timeout(Duration::from_secs(20));
    assert_eq!(r.unwrap_err(), RecvTimeoutError::Disconnected);
    child.reap();
}

#[test]
fn truncating_the_shmem_object_is_survived_and_reported() {
    let name = RingName::new("interop-trunc");
    let config = spsc::Config::default().capacity_bytes(4096);
    let len = interop::spsc_mapping_len(&config).unwrap();
    let mut tx = spsc::Producer::create_in(create(&name, len), config).unwrap();
    let mut rx = spsc::Consumer::open_in(open(name.as_str())).unwrap();
    tx.send(b"before").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"before");
    std::fs::OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .unwrap()
        .set_len(0)
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(5)) {
        Err(RecvTimeoutError::Corrupted(c)) => assert!(c.is_truncation(), "{c}"),
        other => panic!("{other:?}"),
    }
}
