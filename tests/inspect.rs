//! `shmring::inspect` reports geometry and endpoints without attaching.

mod common;

use common::RingName;
use shmring::{EndpointState, OpenError, RingKind, mpmc, spsc};

#[test]
fn spsc_geometry_and_endpoints() {
    let name = RingName::new("inspect-spsc");
    let tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(1 << 12),
    )
    .unwrap();
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    drop(rx);
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!(info.kind, RingKind::Spsc);
    assert_eq!(info.capacity, 4096);
    assert_eq!(info.max_message, 4096 / 2 - 8);
    assert_eq!(info.slot_size, 0);
    assert!(info.object_len >= 8192 + 4096);
    let states: Vec<_> = info.endpoints.iter().map(|e| (e.role, e.state)).collect();
    assert_eq!(
        states,
        [
            ("producer", EndpointState::Attached),
            ("consumer", EndpointState::Closed)
        ]
    );
    // Inspecting attached nothing: the producer end is still taken, the ring still works.
    assert!(matches!(
        spsc::Producer::open(name.as_str()),
        Err(OpenError::EndpointTaken(_))
    ));
    drop(tx);
}

#[test]
fn mpmc_geometry_and_endpoints() {
    let name = RingName::new("inspect-mpmc");
    let tx = mpmc::Sender::create(
        name.as_str(),
        shmring::mpmc::Config::default()
            .slots(16)
            .max_message_bytes(112),
    )
    .unwrap();
    let rx = mpmc::Receiver::open(name.as_str()).unwrap();
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!(info.kind, RingKind::Mpmc);
    assert_eq!((info.capacity, info.slot_size), (16, 128));
    let mut roles: Vec<_> = info
        .endpoints
        .iter()
        .filter(|e| e.state == EndpointState::Attached)
        .map(|e| e.role)
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["receiver", "sender"]);
    drop((tx, rx));
}

#[test]
fn inspect_errors() {
    let name = RingName::new("inspect-missing");
    assert!(matches!(
        shmring::inspect(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
    assert!(matches!(
        shmring::inspect("bad"),
        Err(OpenError::InvalidName { .. })
    ));
}

/// The SPSC counters: indices in bytes, records walked (padding at the end of the region
/// included), sides closed.
#[test]
fn spsc_traffic_counts_records_across_the_wrap() {
    let name = RingName::new("inspect-spsc-traffic");
    let config = shmring::spsc::Config::default().capacity_bytes(256);
    let mut tx = spsc::Producer::create(name.as_str(), config).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    // 5 records of 40 bytes (8 + 30 padded to 32), 3 received: position 200 of 256.
    for i in 0..5u8 {
        tx.send(&[i; 30]).unwrap();
    }
    // `drain` gives the space back when it returns (single `recv`s would release lazily).
    assert_eq!(rx.drain(3, |_| ()).unwrap(), 3);
    // A 60-byte message does not fit before the end: a padding record, then it at 0.
    tx.send(&[9; 60]).unwrap();
    let t = shmring::inspect(name.as_str()).unwrap().traffic;
    assert_eq!((t.head, t.tail), (120, 256 + 72));
    assert_eq!(t.used_bytes, 256 + 72 - 120);
    assert_eq!(t.messages, Some(3));
    assert_eq!(t.payload_bytes, Some(30 + 30 + 60));
    assert_eq!(t.anomaly, None);
    assert!(!t.senders_closed && !t.receivers_closed);
    drop(tx);
    let t = shmring::inspect(name.as_str()).unwrap().traffic;
    assert!(t.senders_closed && !t.receivers_closed);
    drop(rx);
}

/// The MPMC counters: positions, published messages (a claimed slot being written is not
/// one yet), closed sides.
#[test]
fn mpmc_traffic_counts_published_slots() {
    let name = RingName::new("inspect-mpmc-traffic");
    mpmc::create(name.as_str(), mpmc::Config::default().slots(8)).unwrap();
    let mut tx = mpmc::Sender::open(name.as_str()).unwrap();
    let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
    for len in [1usize, 2, 3, 4] {
        tx.send(&vec![7; len]).unwrap();
    }
    drop(rx.recv().unwrap());
    let grant = tx.reserve(50).unwrap();
    let info = shmring::inspect(name.as_str()).unwrap();
    let t = info.traffic;
    assert_eq!((t.head, t.tail), (1, 5));
    assert_eq!(t.used_bytes, 4 * u64::from(info.slot_size));
    assert_eq!(t.messages, Some(3));
    assert_eq!(t.payload_bytes, Some(2 + 3 + 4));
    drop(grant);
    drop((tx, rx));
    let t = shmring::inspect(name.as_str()).unwrap().traffic;
    assert!(t.senders_closed && t.receivers_closed);
}

/// A counter forged by a peer is reported, not trusted: no walk past the region.
#[test]
fn forged_indices_are_an_anomaly() {
    let name = RingName::new("inspect-forged");
    let tx = spsc::Producer::create(
        name.as_str(),
        shmring::spsc::Config::default().capacity_bytes(4096),
    )
    .unwrap();
    // The producer's tail (control block at +4096) a whole region and more ahead.
    common::patch(&name, 4096, &(4096u64 * 3).to_ne_bytes());
    let t = shmring::inspect(name.as_str()).unwrap().traffic;
    assert!(t.anomaly.is_some());
    assert_eq!(t.used_bytes, 4096);
    assert_eq!(t.messages, None);
    drop(tx);
}

/// The stale rule: never attached is not stale, a live endpoint is not, everyone gone is;
/// `unlink_if_stale` removes only then.
#[test]
fn stale_needs_someone_who_came_and_went() {
    let name = RingName::new("inspect-stale");
    spsc::create(name.as_str(), shmring::spsc::Config::default()).unwrap();
    assert!(!shmring::inspect(name.as_str()).unwrap().stale);
    assert!(!shmring::is_stale(name.as_str()).unwrap());
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    assert!(!shmring::is_stale(name.as_str()).unwrap());
    assert!(!shmring::unlink_if_stale(name.as_str()).unwrap());
    drop(rx);
    assert!(shmring::inspect(name.as_str()).unwrap().stale);
    assert!(shmring::unlink_if_stale(name.as_str()).unwrap());
    assert!(matches!(
        shmring::is_stale(name.as_str()),
        Err(OpenError::NotFound(_))
    ));
    assert!(matches!(
        shmring::unlink_if_stale(name.as_str()),
        Err(OpenError::NotFound(_))
    ));

    // Senders that sent and left before any receiver came: their messages wait, not stale.
    for kind in [RingKind::Spsc, RingKind::Mpmc] {
        let name = RingName::new("inspect-pending");
        match kind {
            RingKind::Spsc => {
                spsc::create(name.as_str(), shmring::spsc::Config::default()).unwrap();
                let mut tx = spsc::Producer::open(name.as_str()).unwrap();
                tx.send(b"for later").unwrap();
            }
            RingKind::Mpmc => {
                mpmc::create(name.as_str(), mpmc::Config::default()).unwrap();
                let mut tx = mpmc::Sender::open(name.as_str()).unwrap();
                tx.send(b"for later").unwrap();
            }
        }
        assert!(!shmring::is_stale(name.as_str()).unwrap(), "{kind}");
        assert!(!shmring::unlink_if_stale(name.as_str()).unwrap(), "{kind}");
        let info = shmring::inspect(name.as_str()).unwrap();
        assert_eq!(
            (info.stale, info.traffic.messages),
            (false, Some(1)),
            "{kind}"
        );
        // Once a receiver took the message and left, it is.
        match kind {
            RingKind::Spsc => {
                let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
                assert_eq!(&*rx.recv().unwrap(), b"for later");
            }
            RingKind::Mpmc => {
                let mut rx = mpmc::Receiver::open(name.as_str()).unwrap();
                assert_eq!(&*rx.recv().unwrap(), b"for later");
            }
        }
        assert!(shmring::is_stale(name.as_str()).unwrap(), "{kind}");
    }
}

/// Inspecting needs read permission only: a ring made read-only for its owner is still
/// reported (the tests may run as root, for whom permission bits do not apply; the read-only
/// open is what is checked here).
#[test]
fn inspect_opens_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let name = RingName::new("inspect-read-only");
    mpmc::create(name.as_str(), mpmc::Config::default().slots(4)).unwrap();
    std::fs::set_permissions(name.dev_shm_path(), std::fs::Permissions::from_mode(0o400)).unwrap();
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!(info.mode, 0o400);
    assert_eq!(info.uid, rustix_uid());
}

fn rustix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}
