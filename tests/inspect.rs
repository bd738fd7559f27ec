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
