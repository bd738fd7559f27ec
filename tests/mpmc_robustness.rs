//! MPMC handles inherited across fork, hostile indices and registry sizes, and endpoints
//! that die without closing.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{RingName, patch, spawn_child};
use shmring::{EndpointState, OpenError, TryRecvError, TrySendError, mpmc};

/// Offset of the header's `endpoint_count` (u32).
const ENDPOINT_COUNT: u64 = 76;
/// What a child prints once it is attached.
const READY: &str = "SHMRING-CHILD-READY";

/// Starts a child in `role` on ring `name`, waits until it is attached, and SIGKILLs it.
fn kill_when_ready(name: &RingName, role: &str) {
    use std::io::BufRead;
    let mut child = spawn_child("mpmc_robust_child", role, &[("RING", name.0.clone())]);
    let out = child.0.as_mut().unwrap().stdout.as_mut().unwrap();
    let ready = std::io::BufReader::new(out)
        .lines()
        .any(|l| l.unwrap().contains(READY));
    assert!(ready, "child {role} did not attach");
    child.kill();
    child.reap();
}

/// Polls `cond` (which may look at `/proc` at most every 50 ms) for up to 5 seconds.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

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
        // Attaches, says so, and waits to be killed.
        "receiver_then_hang" => {
            let _rx = mpmc::Receiver::open(&name).unwrap();
            println!("\n{READY}");
            std::thread::sleep(Duration::from_secs(600));
        }
        "send_one_then_hang" => {
            let mut tx = mpmc::Sender::open(&name).unwrap();
            tx.send(b"one").unwrap();
            println!("\n{READY}");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn dropping_inherited_handles_in_a_forked_child_closes_nothing() {
    let name = RingName::new("mpmc-fork");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48),
    )
    .unwrap();
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
        let mut tx = mpmc::Sender::create(
            name.as_str(),
            shmring::mpmc::Config::default()
                .slots(8)
                .max_message_bytes(48),
        )
        .unwrap();
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
    let cfg = shmring::mpmc::Config::default()
        .slots(8)
        .max_message_bytes(48)
        .endpoints(3);
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

/// Offset of endpoint entry `i` in the header: {state: u32, role: u32, pid: u32, _: u32,
/// start: u64}.
fn entry_offset(i: usize) -> usize {
    128 + 24 * i
}
/// Entry states (low 8 bits of the state word) and the sender role.
const EP_ATTACHED: u32 = 2;
const EP_TAKING: u32 = 4;
const ROLE_SENDER: u32 = 1;

/// The ring's object mapped read-write into this process, as any peer maps it.
fn map_object(name: &RingName) -> memmap2::MmapMut {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.dev_shm_path())
        .expect("open object");
    // SAFETY: a shared mapping of the ring object; it is only accessed through atomics
    // below, as the ring's own processes do.
    unsafe { memmap2::MmapMut::map_mut(&f) }.expect("map object")
}

/// The word at `offset` of a mapping.
fn word_at(map: &memmap2::MmapMut, offset: usize) -> &AtomicU32 {
    assert!(offset + 4 <= map.len() && offset % 4 == 0);
    // SAFETY: in bounds and 4-byte aligned (checked above; the mapping is page aligned);
    // the header's words are atomics in every process that maps the ring.
    unsafe { &*map.as_ptr().add(offset).cast::<AtomicU32>() }
}

/// Takes entry `slot`'s liveness lock (an OFD write lock on byte 2^40 + 1 + slot) on a new
/// open file description of the object at `path`, as an attaching endpoint does. Only
/// async-signal-safe calls: usable in a forked child. The description stays open (and the
/// lock held) until the process exits.
fn hold_entry_lock(path: &std::ffi::CStr, slot: i64) -> bool {
    // SAFETY: `path` is a valid C string; open and fcntl are async-signal-safe; `fl` is a
    // plain struct, zero-initialised and then filled in.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        #[allow(clippy::unnecessary_cast)] // `off_t` is i64 on 64-bit targets only
        {
            fl.l_start = ((1i64 << 40) + 1 + slot) as libc::off_t;
        }
        fl.l_len = 1;
        libc::fcntl(fd, libc::F_OFD_SETLK, &fl) == 0
    }
}

fn entry_state(name: &RingName, slot: usize) -> Option<EndpointState> {
    shmring::inspect(name.as_str())
        .unwrap()
        .endpoints
        .iter()
        .find(|e| e.slot == slot)
        .map(|e| e.state)
}

#[test]
fn an_entry_taken_by_an_attacher_killed_before_attaching_is_reclaimed() {
    let name = RingName::new("mpmc-taker");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48)
            .endpoints(2),
    )
    .unwrap();
    let map = map_object(&name);
    let state = word_at(&map, entry_offset(1));
    assert_eq!(state.load(Ordering::Acquire), 0, "entry 1 starts free");
    // A child takes entry 1 the way `attach_any` does (the entry's liveness lock on a
    // description of its own, then one compare-exchange that puts its pid in the state
    // word), then stops there, as if killed right after.
    let path = std::ffi::CString::new(format!("/dev/shm{}", name.as_str())).unwrap();
    let mut child = common::procs::Forked::start(|| {
        // SAFETY: getpid is async-signal-safe.
        let pid = unsafe { libc::getpid() } as u32;
        if hold_entry_lock(&path, 1)
            && state
                .compare_exchange(
                    0,
                    (pid << 8) | EP_TAKING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            loop {
                // SAFETY: async-signal-safe; sleeps until the parent kills us.
                unsafe { libc::pause() };
            }
        }
    });
    let taking = child.pid() << 8 | EP_TAKING;
    let start = Instant::now();
    while state.load(Ordering::Acquire) != taking {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child never took entry 1"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // While the taker lives, its entry is not taken from it.
    assert_eq!(entry_state(&name, 1), Some(EndpointState::Attaching));
    match mpmc::Receiver::open(name.as_str()) {
        Err(OpenError::RegistryFull { capacity }) => assert_eq!(capacity, 2),
        other => panic!("expected RegistryFull, got {other:?}"),
    }
    assert_eq!(state.load(Ordering::Acquire), taking);

    // Killed half-way: the entry names a dead process and is reclaimed by the next attach.
    child.kill_and_reap();
    assert_eq!(entry_state(&name, 1), Some(EndpointState::Dead));
    let mut rx = mpmc::Receiver::open(name.as_str()).expect("dead taker's entry reclaimed");
    assert_eq!(entry_state(&name, 1), Some(EndpointState::Attached));
    assert_eq!(state.load(Ordering::Acquire) & 0xff, EP_ATTACHED);

    // The ring works, and the receivers' side still closes with its last receiver.
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"after");
    drop(rx);
    assert!(tx.is_disconnected());
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Disconnected(_))
    ));
}

#[test]
fn an_attacher_killed_before_counting_itself_is_reaped_and_the_side_stays_consistent() {
    let name = RingName::new("mpmc-uncounted");
    let mut rx = mpmc::Receiver::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48)
            .endpoints(2),
    )
    .unwrap();
    let map = map_object(&name);
    let off = entry_offset(1);
    let (state, role, pid) = (
        word_at(&map, off),
        word_at(&map, off + 4),
        word_at(&map, off + 8),
    );
    // A child attaches as a sender the way `attach_any` does (entry taken, identity
    // written, ATTACHED at generation 1) and exits before counting itself in the senders'
    // side word, the step `attach` does next.
    common::fork_and_wait(|| {
        // SAFETY: getpid is async-signal-safe.
        let me = unsafe { libc::getpid() } as u32;
        if state
            .compare_exchange(
                0,
                (me << 8) | EP_TAKING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            pid.store(me, Ordering::Relaxed);
            role.store(ROLE_SENDER, Ordering::Relaxed);
            state.store((1 << 8) | EP_ATTACHED, Ordering::Release);
        }
    });
    assert_eq!(state.load(Ordering::Acquire), (1 << 8) | EP_ATTACHED);
    assert_eq!(entry_state(&name, 1), Some(EndpointState::Dead));

    // The receiver's peer check reaps the entry. No sender ever counted itself, so the
    // senders' side is not closed: the receiver keeps waiting for senders.
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Empty)
    ));
    assert_eq!(entry_state(&name, 1), Some(EndpointState::Closed));
    assert!(!rx.is_disconnected());

    // The entry is free for a real sender, whose close then ends the stream.
    let mut tx = mpmc::Sender::open(name.as_str()).expect("entry reused");
    tx.send(b"one").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"one");
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Disconnected)
    ));
}

#[test]
fn slot_counts_past_the_address_space_are_refused_not_truncated() {
    // The most slots of the smallest size take at most a quarter of this target's address
    // space (2^32 slots, or 2^24 on 32-bit targets).
    let bytes = mpmc::MAX_SLOTS.checked_mul(mpmc::MIN_SLOT_SIZE);
    assert!(bytes.is_some_and(|b| b <= 1 << (usize::BITS - 2)));
    // Slot counts whose low bits would make a small ring if cut to 32 bits, or that no
    // address space holds: refused whatever the target.
    for slots in [1u64 << 32, (1 << 32) | 8, 1 << 33, 1 << 62] {
        let name = RingName::new("mpmc-wide");
        let tx = mpmc::Sender::create(
            name.as_str(),
            shmring::mpmc::Config::default()
                .slots(8)
                .max_message_bytes(48),
        )
        .unwrap();
        patch(&name, 24, &slots.to_ne_bytes());
        match mpmc::Receiver::open(name.as_str()) {
            Err(OpenError::BadGeometry(_) | OpenError::TooSmall { .. }) => {}
            other => panic!("{slots:#x} slots: expected an error, got {other:?}"),
        }
        drop(tx);
    }
}

#[test]
fn is_disconnected_notices_receivers_killed_without_closing() {
    let name = RingName::new("mpmc-isdisc-rx");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48),
    )
    .unwrap();
    let rx = mpmc::Receiver::open(name.as_str()).unwrap();
    kill_when_ready(&name, "receiver_then_hang");
    // One receiver is dead, one alive: not disconnected, however often we look.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert!(!tx.is_disconnected());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Both gone, the live one by closing, the other one by dying: noticed (within the
    // look-up interval) without any blocking call.
    drop(rx);
    assert!(
        eventually(|| tx.is_disconnected()),
        "a killed receiver was never noticed by is_disconnected"
    );
    match tx.try_send(b"x") {
        Err(TrySendError::Disconnected(())) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }

    // The only receiver killed.
    let name = RingName::new("mpmc-isdisc-rx2");
    let tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48),
    )
    .unwrap();
    kill_when_ready(&name, "receiver_then_hang");
    assert!(
        eventually(|| tx.is_disconnected()),
        "a killed receiver was never noticed by is_disconnected"
    );
}

#[test]
fn is_disconnected_notices_a_sender_killed_without_closing() {
    let name = RingName::new("mpmc-isdisc-tx");
    let mut rx = mpmc::Receiver::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(8)
            .max_message_bytes(48),
    )
    .unwrap();
    kill_when_ready(&name, "send_one_then_hang");
    assert!(
        eventually(|| rx.is_disconnected()),
        "a killed sender was never noticed by is_disconnected"
    );
    // What it sent is still delivered, then end of stream.
    assert_eq!(&*rx.try_recv().unwrap(), b"one");
    assert!(matches!(
        rx.try_recv().map(|m| m.to_vec()),
        Err(TryRecvError::Disconnected)
    ));
}

/// The 64-bit word at `offset` of a mapping.
fn dword_at(map: &memmap2::MmapMut, offset: usize) -> &std::sync::atomic::AtomicU64 {
    assert!(offset + 8 <= map.len() && offset % 8 == 0);
    // SAFETY: in bounds and 8-byte aligned (checked above; the mapping is page aligned); the
    // control block's words are atomics in every process that maps the ring.
    unsafe {
        &*map
            .as_ptr()
            .add(offset)
            .cast::<std::sync::atomic::AtomicU64>()
    }
}

/// Offset of the MPMC control block's `tail` (the control block follows the header page).
const TAIL: usize = 4096;
/// Offset of the MPMC control block's `head`.
const HEAD: usize = 4096 + 128;

#[test]
fn a_rewound_tail_never_lends_one_slot_twice_in_a_process() {
    let name = RingName::new("mpmc-rewound");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(2)
            .max_message_bytes(48),
    )
    .unwrap();
    let mut tx2 = tx.try_clone().unwrap();
    let map = map_object(&name);
    let tail = dword_at(&map, TAIL);

    // tx holds a grant on position 0's slot; a peer rewinds `tail` to 0, so that slot reads
    // as free for position 0 again (its `seq` still says so: it is claimed, unpublished).
    let mut g = tx.reserve(8).unwrap();
    g.copy_from_slice(b"original");
    assert_eq!(tail.load(Ordering::Acquire), 1);
    tail.store(0, Ordering::Release);

    // The clone shares the mapping: claiming the slot again would alias the grant.
    match tx2.try_reserve(8) {
        Err(TrySendError::Corrupted { what, .. }) => {
            assert!(what.what.contains("claimed twice"), "{what}")
        }
        other => panic!("expected Corrupted, got {:?}", other.map(|g| g.len())),
    }
    assert_eq!(&g[..], b"original", "the grant's bytes are untouched");
    drop(g);
}

#[test]
fn a_rewound_head_never_lends_one_message_twice_in_a_process() {
    let name = RingName::new("mpmc-rewound-head");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(2)
            .max_message_bytes(48),
    )
    .unwrap();
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
    let mut rx2 = rx.try_clone().unwrap();
    let map = map_object(&name);
    let head = dword_at(&map, HEAD);
    tx.send(b"once").unwrap();
    let m = rx.recv().unwrap();
    assert_eq!(head.load(Ordering::Acquire), 1);
    // A peer rewinds `head`: the held message's slot reads as published for position 0.
    head.store(0, Ordering::Release);
    assert!(matches!(rx2.try_recv(), Err(TryRecvError::Corrupted(_))));
    assert_eq!(&*m, b"once");
}

#[test]
fn separately_opened_handles_and_lone_handles_are_not_refused() {
    // Two senders of one process that opened the ring separately map it separately; one
    // handle alone never lends a slot twice. Both keep working normally.
    let name = RingName::new("mpmc-separate");
    let mut tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(4)
            .max_message_bytes(48),
    )
    .unwrap();
    let mut tx2 = mpmc::Sender::open(name.as_str()).unwrap();
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
    let mut rx2 = rx.try_clone().unwrap();
    for round in 0..20u8 {
        tx.send(&[round]).unwrap();
        tx2.send(&[round]).unwrap();
        assert_eq!(&*rx.recv().unwrap(), &[round]);
        assert_eq!(&*rx2.recv().unwrap(), &[round]);
    }
}
