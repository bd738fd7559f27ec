//! Every way opening a ring can go wrong gives its own typed error: never a panic, never a
//! crash, never a re-initialised ring.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use common::{RingName, patch};
use shmring::{OpenError, spsc};

/// Creates a raw shared-memory object (not a ring) with the given contents.
fn raw_object(name: &RingName, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(name.dev_shm_path())
        .expect("create raw object");
    f.write_all(bytes).unwrap();
}

/// A valid SPSC ring whose creator handle is dropped (so the consumer end is free).
fn valid_ring(tag: &str) -> RingName {
    let name = RingName::new(tag);
    let tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    drop(tx);
    name
}

#[test]
fn missing_name_is_not_found() {
    let name = RingName::new("missing");
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::NotFound(n)) => assert_eq!(n, name.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn existing_name_is_already_exists_and_the_ring_is_untouched() {
    let name = RingName::new("exists");
    let mut tx = spsc::Producer::create(name.as_str(), shmring::spsc::Config::default()).unwrap();
    tx.send(b"kept").unwrap();
    assert!(matches!(
        spsc::Producer::create(name.as_str(), shmring::spsc::Config::default()),
        Err(OpenError::AlreadyExists(_))
    ));
    assert!(matches!(
        spsc::Consumer::create(name.as_str(), shmring::spsc::Config::default()),
        Err(OpenError::AlreadyExists(_))
    ));
    // The failed creates did not re-initialise it.
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"kept");
}

#[test]
fn invalid_names_are_refused_with_the_rule() {
    let long = format!("/{}", "x".repeat(255));
    for (bad, rule) in [
        ("noslash", "start with '/'"),
        ("/", "at least one character"),
        ("/a/b", "'/'"),
        ("/.", "\".\""),
        ("/..", "\"..\""),
        ("/nul\0", "NUL"),
        (long.as_str(), "255"),
    ] {
        match spsc::Consumer::open(bad) {
            Err(OpenError::InvalidName { name, reason }) => {
                assert_eq!(name, bad);
                assert!(reason.contains(rule), "{bad:?}: {reason}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn invalid_configs_are_refused() {
    let name = RingName::new("cfg");
    for cfg in [
        shmring::spsc::Config::default().capacity_bytes(1000),
        shmring::spsc::Config::default().capacity_bytes(16),
        shmring::spsc::Config::default()
            .capacity_bytes(4096)
            .max_message_bytes(4096),
        shmring::spsc::Config::default()
            .capacity_bytes(4096)
            .max_message_bytes(0),
        shmring::spsc::Config::default().mode(0o10000),
    ] {
        match spsc::Producer::create(name.as_str(), cfg) {
            Err(OpenError::InvalidConfig(msg)) => assert!(!msg.is_empty()),
            other => panic!("{cfg:?}: {other:?}"),
        }
    }
    // Nothing was left behind.
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
}

#[test]
fn garbage_is_not_a_ring() {
    let name = RingName::new("garbage");
    raw_object(&name, &[0xA5; 16384]);
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::NotShmring)
    ));
    let small = RingName::new("garbage-small");
    raw_object(&small, b"hello, world");
    assert!(matches!(
        spsc::Consumer::open(small.as_str()),
        Err(OpenError::NotShmring)
    ));
}

/// Holds the creation lock (an OFD write lock on byte 2^40) of the object `name` on a
/// description of its own, as a creator at work does, until the result is dropped.
fn hold_creation_lock(name: &RingName) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.dev_shm_path())
        .unwrap();
    // SAFETY: `fl` is a plain struct, zeroed and then filled in; `f` is open.
    let r = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        #[allow(clippy::unnecessary_cast)] // `off_t` is i64 on 64-bit targets only
        {
            fl.l_start = (1i64 << 40) as libc::off_t;
        }
        fl.l_len = 1;
        libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl)
    };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
    f
}

#[test]
fn an_empty_object_whose_creator_is_at_work_is_waited_for() {
    // Its creator holds the creation lock: it may be about to size it, so the opener waits
    // (bounded), and says so.
    let name = RingName::new("empty");
    raw_object(&name, &[]);
    let _creator = hold_creation_lock(&name);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    let waited = started.elapsed();
    assert!(matches!(r, Err(OpenError::StillInitialising(_))), "{r:?}");
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
}

#[test]
fn a_half_made_ring_whose_creator_is_gone_is_abandoned_at_once() {
    // The magic is written but the ring never became ready, and nobody holds the creation
    // lock: its creator died while initialising.
    let name = RingName::new("abandoned");
    let mut bytes = vec![0u8; 16384];
    bytes[..8].copy_from_slice(b"SHMRING\0");
    raw_object(&name, &bytes);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    let took = started.elapsed();
    assert!(matches!(r, Err(OpenError::Abandoned)), "{r:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // While a creator holds the lock, the same bytes are waited for.
    let _creator = hold_creation_lock(&name);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    assert!(matches!(r, Err(OpenError::StillInitialising(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn a_stray_empty_object_is_too_small_at_once() {
    let name = RingName::new("stray-empty");
    raw_object(&name, &[]);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    let took = started.elapsed();
    println!("stray empty object answered in {took:?}");
    match r {
        Err(OpenError::TooSmall { actual, needed }) => {
            assert_eq!(actual, 0);
            assert_eq!(needed, 4096);
        }
        other => panic!("{other:?}"),
    }
    // Generous: the answer needs only the short grace for a creator between creating the
    // object and locking it (20 ms), well under 200 ms on a quiet machine.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let started = Instant::now();
    assert!(matches!(
        shmring::mpmc::Sender::open(name.as_str()),
        Err(OpenError::TooSmall { actual: 0, .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_stray_all_zero_object_is_not_a_ring_at_once() {
    let name = RingName::new("stray-zeros");
    raw_object(&name, &[0; 16384]);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    let took = started.elapsed();
    println!("stray all-zero object answered in {took:?}");
    assert!(matches!(r, Err(OpenError::NotShmring)), "{r:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let started = Instant::now();
    assert!(matches!(
        shmring::mpmc::Receiver::open(name.as_str()),
        Err(OpenError::NotShmring)
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn an_all_zero_object_whose_creator_is_at_work_is_waited_for() {
    // A creator that has sized the object but not yet written its header looks like this
    // (and holds the creation lock).
    let name = RingName::new("fresh-zeros");
    raw_object(&name, &[0; 16384]);
    let _creator = hold_creation_lock(&name);
    let started = Instant::now();
    let r = spsc::Consumer::open(name.as_str());
    let waited = started.elapsed();
    assert!(matches!(r, Err(OpenError::StillInitialising(_))), "{r:?}");
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
}

#[test]
fn header_stuck_in_initialising_state_is_reported() {
    let name = valid_ring("stuck");
    patch(&name, 16, &0u32.to_ne_bytes()); // state = initialising
    // Nobody holds the creation lock: abandoned, at once.
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::Abandoned)
    ));
    // A creator still at work: waited for, then reported as still initialising.
    let _creator = hold_creation_lock(&name);
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::StillInitialising(_))
    ));
}

#[test]
fn truncated_ring_is_too_small() {
    let name = valid_ring("trunc");
    let f = OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .unwrap();
    f.set_len(8192 + 1024).unwrap(); // header + control page + part of the 4 KiB data
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::TooSmall { actual, needed }) => {
            assert_eq!(actual, 8192 + 1024);
            assert_eq!(needed, 8192 + 4096);
        }
        other => panic!("{other:?}"),
    }
    f.set_len(100).unwrap(); // smaller than the header, magic intact
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::TooSmall { actual: 100, .. })
    ));
}

#[test]
fn other_layout_version_is_unsupported() {
    let name = valid_ring("version");
    patch(&name, 8, &7u32.to_ne_bytes());
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::UnsupportedVersion { found, expected }) => {
            assert_eq!((found, expected), (7, 4));
        }
        other => panic!("{other:?}"),
    }
    // A version-1 ring (liveness from pids) is refused too: its peers would hold no locks
    // and be taken for dead; and a version-2 ring, whose producer would publish through
    // `tail` while this consumer polls each record's ready word; and a version-3 ring, whose
    // consumer would not hand room over at once to a producer that asked for it.
    for old in [1u32, 2, 3] {
        patch(&name, 8, &old.to_ne_bytes());
        match spsc::Consumer::open(name.as_str()) {
            Err(OpenError::UnsupportedVersion { found, expected }) => {
                assert_eq!((found, expected), (old, 4));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn other_kind_is_wrong_kind() {
    let name = valid_ring("kind");
    patch(&name, 12, &2u32.to_ne_bytes());
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::WrongKind { found, expected }) => {
            assert_eq!((found, expected), ("MPMC", "SPSC"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_byte_order_or_pointer_width_is_incompatible() {
    let name = valid_ring("endian");
    patch(
        &name,
        0,
        &u64::from_ne_bytes(*b"SHMRING\0").swap_bytes().to_ne_bytes(),
    );
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::Incompatible(_))
    ));
    let name = valid_ring("width");
    patch(&name, 20, &16u32.to_ne_bytes());
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::Incompatible(_))
    ));
}

#[test]
fn impossible_geometry_is_bad_geometry() {
    let name = valid_ring("geom");
    patch(&name, 24, &3000u64.to_ne_bytes()); // capacity not a power of two
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::BadGeometry(_))
    ));
    let name = valid_ring("geom2");
    patch(&name, 48, &4096u64.to_ne_bytes()); // data offset overlapping the control block
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::BadGeometry(_))
    ));
    let name = valid_ring("geom3");
    patch(&name, 36, &u32::MAX.to_ne_bytes()); // max message larger than the ring allows
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::BadGeometry(_))
    ));
}

#[test]
fn capacities_past_the_address_space_are_refused_not_truncated() {
    // The largest ring takes at most a quarter of this target's address space (1 TiB, or
    // 1 GiB on 32-bit targets).
    const { assert!(spsc::MAX_CAPACITY <= 1 << (usize::BITS - 2)) };
    // Capacities whose low bits would make a small ring if cut to 32 bits, or that no
    // address space holds: refused whatever the target.
    for capacity in [1u64 << 32, (1 << 32) | 4096, 1 << 41, 1 << 63] {
        let name = valid_ring("geom-wide");
        patch(&name, 24, &capacity.to_ne_bytes());
        match spsc::Consumer::open(name.as_str()) {
            Err(OpenError::BadGeometry(_) | OpenError::TooSmall { .. }) => {}
            other => panic!("capacity {capacity:#x}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn poisoned_ring_is_refused() {
    let name = valid_ring("poison");
    patch(&name, 16, &2u32.to_ne_bytes());
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::Poisoned)
    ));
}

#[test]
fn each_end_attaches_once() {
    let name = RingName::new("ends");
    let tx = spsc::Producer::create(name.as_str(), shmring::spsc::Config::default()).unwrap();
    assert!(matches!(
        spsc::Producer::open(name.as_str()),
        Err(OpenError::EndpointTaken("producer"))
    ));
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::EndpointTaken("consumer"))
    ));
    drop(rx);
    // Like a pipe, a closed end stays closed.
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::EndpointClosed("consumer"))
    ));
    drop(tx);
}

#[test]
fn permission_denied_is_reported() {
    let name = RingName::new("perm");
    let tx = spsc::Producer::create(name.as_str(), shmring::spsc::Config::default().mode(0o600))
        .unwrap();
    if rustix::process::geteuid().is_root() {
        // Root ignores file modes; try as an unprivileged user in a child process.
        let child = common::spawn_child(
            "perm_child_entry",
            "open_as_nobody",
            &[("RING", name.0.clone())],
        );
        let out = child.finish();
        assert!(out.contains("permission denied"), "child said: {out}");
    } else {
        // Not root: a mode-000 object is off limits.
        let locked = RingName::new("perm0");
        let _t = spsc::Producer::create(
            locked.as_str(),
            shmring::spsc::Config::default().mode(0o000),
        )
        .unwrap();
        assert!(matches!(
            spsc::Consumer::open(locked.as_str()),
            Err(OpenError::PermissionDenied(_))
        ));
    }
    drop(tx);
}

#[test]
#[ignore = "runs only as a child process of permission_denied_is_reported"]
fn perm_child_entry() {
    if std::env::var(common::ROLE_VAR).is_err() {
        return;
    }
    let name = common::env("RING");
    // SAFETY: plain system calls on integers; this child process is single-threaded apart
    // from the test harness and exits right after.
    let rc = unsafe { (libc::setgid(65534), libc::setuid(65534)) };
    assert_eq!(rc, (0, 0), "cannot drop privileges");
    match spsc::Consumer::open(&name) {
        Err(OpenError::PermissionDenied(n)) => {
            assert_eq!(n, name);
            println!("permission denied");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn corrupted_indices_are_errors_not_crashes() {
    let name = RingName::new("corrupt");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    tx.send(b"ok").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"ok");
    // A hostile peer writes a header with an unknown flag where the next record goes (the
    // data region starts at 8192; "ok" took the first 16 bytes).
    patch(&name, 8192 + 16, &(1u64 << 61 | 1 << 62).to_ne_bytes());
    match rx.try_recv() {
        Err(shmring::TryRecvError::Corrupted(c)) => assert!(c.what.contains("record header")),
        other => panic!("{other:?}"),
    }
    // Once corrupted, the handle stays failed, and new opens are refused.
    assert!(matches!(
        rx.try_recv(),
        Err(shmring::TryRecvError::Corrupted(_))
    ));
    assert!(matches!(
        spsc::Consumer::open(name.as_str()),
        Err(OpenError::Poisoned)
    ));

    // A record header claiming a huge length.
    let name = RingName::new("corrupt2");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    tx.send(b"12345678").unwrap();
    // Ready, with a length beyond the ring's largest message.
    patch(&name, 8192, &(1u64 << 62 | 0x00FF_FFFF).to_ne_bytes());
    match rx.try_recv() {
        Err(shmring::TryRecvError::Corrupted(c)) => assert!(c.what.contains("length")),
        other => panic!("{other:?}"),
    }

    // A consumer index moved backwards.
    let name = RingName::new("corrupt3");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(64),
    )
    .unwrap();
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    while tx.try_send(&[1; 8]).is_ok() {}
    patch(&name, 4096 + 128, &u64::MAX.to_ne_bytes());
    assert!(matches!(
        tx.try_send(&[1; 8]),
        Err(shmring::TrySendError::Corrupted { .. })
    ));
    drop(rx);
}

#[test]
fn misaligned_indices_found_when_attaching_are_errors() {
    // Producer index not on a record boundary: the producer refuses to write at it.
    let name = RingName::new("misalign-tail");
    let rx = spsc::Consumer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    patch(&name, 4096, &3u64.to_ne_bytes());
    let mut tx = spsc::Producer::open(name.as_str()).unwrap();
    assert!(matches!(
        tx.try_send(b"x"),
        Err(shmring::TrySendError::Corrupted { .. })
    ));
    drop(rx);

    // Consumer index not on a record boundary: the consumer refuses to read at it.
    let name = RingName::new("misalign-head");
    let mut tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    patch(&name, 4096 + 128, &5u64.to_ne_bytes());
    // In this process the producer's own index already says the consumer's is out of step:
    // refused at once. (In another process, the first receive finds it misaligned.)
    match spsc::Consumer::open(name.as_str()) {
        Err(OpenError::Corrupted(_)) => {}
        Ok(mut rx) => {
            let _ = tx.try_send(b"x");
            assert!(matches!(
                rx.try_recv(),
                Err(shmring::TryRecvError::Corrupted(_))
            ));
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn an_opener_racing_a_creator_never_calls_the_ring_garbage() {
    // Whatever point of the creation the opener lands on (no object yet, empty, unwritten
    // header, ready), it either waits or succeeds; never NotShmring, TooSmall or Abandoned.
    for round in 0..100 {
        let name = RingName::new(&format!("race-{round}"));
        let opener = {
            let name = name.as_str().to_owned();
            // Spins on `open` (no sleep between tries) to land inside the creation.
            std::thread::spawn(move || {
                let started = Instant::now();
                loop {
                    match spsc::Consumer::open(&name) {
                        Err(OpenError::NotFound(_))
                            if started.elapsed() < Duration::from_secs(5) =>
                        {
                            std::hint::spin_loop()
                        }
                        r => return r,
                    }
                }
            })
        };
        let tx =
            spsc::Producer::create(name.as_str(), spsc::Config::default().capacity_bytes(4096))
                .unwrap();
        match opener.join().unwrap() {
            Ok(_rx) => {}
            Err(e) => panic!("round {round}: opener got {e:?}"),
        }
        drop(tx);
    }
}
