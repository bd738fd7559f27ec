//! What a ring refuses to trust unless asked to: descriptors that someone else could truncate
//! (anything but a memfd sealed against shrinking).

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::RingName;
use shmring::{OpenError, RecvError, RecvTimeoutError, mpmc, spsc};

/// The bytes of a valid SPSC ring whose producer (this process) is attached and whose
/// consumer slot is free, and the producer itself (kept alive so the copy's producer entry
/// names a live process).
fn spsc_ring_bytes() -> (spsc::Producer, Vec<u8>) {
    let (tx, fd) =
        spsc::Producer::create_anonymous(spsc::Config::default().capacity_bytes(4096)).unwrap();
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    (tx, bytes)
}

fn mpmc_ring_bytes() -> (mpmc::Sender, Vec<u8>) {
    let (tx, fd) = mpmc::Sender::create_anonymous(mpmc::Config::default().slots(4)).unwrap();
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    (tx, bytes)
}

/// A memfd holding `bytes`, with the given seals (none: unsealed).
fn memfd_with(bytes: &[u8], seals: rustix::fs::SealFlags) -> OwnedFd {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(
        "trust-test",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).unwrap();
    let fd = OwnedFd::from(f);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

/// A regular file in the temporary directory, removed on drop (also when the test fails).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn with(tag: &str, bytes: &[u8]) -> (TempFile, OwnedFd) {
        let path = std::env::temp_dir().join(RingName::new(tag).0.trim_start_matches('/'));
        let file = TempFile(path);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&file.0)
            .unwrap();
        f.write_all(bytes).unwrap();
        (file, f.into())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A read-write descriptor of a named object.
fn named_fd(name: &RingName) -> OwnedFd {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.dev_shm_path())
        .unwrap()
        .into()
}

fn assert_untrusted<T: std::fmt::Debug>(r: Result<T, OpenError>, why: &str) {
    match r {
        Err(OpenError::Untrusted { object, reason }) => {
            assert!(object.starts_with("file descriptor"), "{object}");
            assert!(reason.contains(why), "{reason}");
            assert!(
                reason.contains("from_fd_unchecked"),
                "names the way out: {reason}"
            );
        }
        other => panic!("expected Untrusted ({why}), got {other:?}"),
    }
}

#[test]
fn from_fd_refuses_memfds_not_sealed_against_shrinking() {
    use rustix::fs::SealFlags;
    let (_tx, bytes) = spsc_ring_bytes();
    // Unsealed, and sealed against growing only: either can be shrunk.
    for seals in [SealFlags::empty(), SealFlags::GROW] {
        assert_untrusted(
            spsc::Consumer::from_fd(memfd_with(&bytes, seals)),
            "F_SEAL_SHRINK",
        );
    }
    // Sealed against shrinking: accepted.
    let rx = spsc::Consumer::from_fd(memfd_with(&bytes, SealFlags::SHRINK)).unwrap();
    assert_eq!(rx.capacity(), 4096);

    let (_tx, bytes) = mpmc_ring_bytes();
    assert_untrusted(
        mpmc::Receiver::from_fd(memfd_with(&bytes, SealFlags::empty())),
        "F_SEAL_SHRINK",
    );
    assert_untrusted(
        mpmc::Sender::from_fd(memfd_with(&bytes, SealFlags::GROW)),
        "F_SEAL_SHRINK",
    );
    let rx = mpmc::Receiver::from_fd(memfd_with(&bytes, SealFlags::SHRINK)).unwrap();
    assert_eq!(rx.capacity(), 4);
}

#[test]
fn from_fd_refuses_named_objects_and_regular_files() {
    let name = RingName::new("trust-named");
    let _rx = spsc::Consumer::create(name.as_str(), spsc::Config::default()).unwrap();
    // A named object reports no shrink seal (it cannot be sealed).
    assert_untrusted(spsc::Producer::from_fd(named_fd(&name)), "F_SEAL_SHRINK");

    let (_tx, bytes) = spsc_ring_bytes();
    let (_file, fd) = TempFile::with("trust-file", &bytes);
    assert_untrusted(spsc::Consumer::from_fd(fd), "not a memfd");

    let mname = RingName::new("trust-mpmc-named");
    let _mrx = mpmc::Receiver::create(mname.as_str(), mpmc::Config::default()).unwrap();
    assert_untrusted(mpmc::Sender::from_fd(named_fd(&mname)), "F_SEAL_SHRINK");
    let (_mtx, bytes) = mpmc_ring_bytes();
    let (_mfile, fd) = TempFile::with("trust-mpmc-file", &bytes);
    assert_untrusted(mpmc::Receiver::from_fd(fd), "not a memfd");
}

#[test]
fn from_fd_unchecked_accepts_them_all() {
    // A named object: the consumer attaches through a descriptor and reads what the
    // producer sends by name.
    let name = RingName::new("unchecked-named");
    let mut tx = spsc::Producer::create(name.as_str(), spsc::Config::default()).unwrap();
    // SAFETY: a POSIX shared-memory object is plain memory.
    let mut rx = unsafe { spsc::Consumer::from_fd_unchecked(named_fd(&name)) }.unwrap();
    tx.send(b"through a named object's fd").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"through a named object's fd");

    // An unsealed memfd and a regular file holding a ring.
    let (_tx, bytes) = spsc_ring_bytes();
    let memfd = memfd_with(&bytes, rustix::fs::SealFlags::empty());
    // SAFETY: a memfd is plain memory.
    let rx = unsafe { spsc::Consumer::from_fd_unchecked(memfd) }.unwrap();
    assert_eq!(rx.capacity(), 4096);
    let (_file, fd) = TempFile::with("unchecked-file", &bytes);
    // SAFETY: a regular file in the temporary directory maps as plain memory.
    let rx = unsafe { spsc::Consumer::from_fd_unchecked(fd) }.unwrap();
    assert_eq!(rx.capacity(), 4096);

    // MPMC: both handles.
    let mname = RingName::new("unchecked-mpmc");
    let mut mrx = mpmc::Receiver::create(mname.as_str(), mpmc::Config::default()).unwrap();
    // SAFETY: a POSIX shared-memory object is plain memory.
    let mut mtx = unsafe { mpmc::Sender::from_fd_unchecked(named_fd(&mname)) }.unwrap();
    mtx.send(b"mpmc").unwrap();
    assert_eq!(&*mrx.recv().unwrap(), b"mpmc");
    // SAFETY: as above.
    let mut mrx2 = unsafe { mpmc::Receiver::from_fd_unchecked(named_fd(&mname)) }.unwrap();
    mtx.send(b"again").unwrap();
    assert_eq!(&*mrx2.recv().unwrap(), b"again");
    drop(mrx);
    let (_ptx, pbytes) = spsc_ring_bytes();
    let pfd = memfd_with(&pbytes, rustix::fs::SealFlags::empty());
    // The copy's producer entry is taken (by this process): attaching a second one is
    // refused, so the checks past the seal ran.
    // SAFETY: a memfd is plain memory.
    assert!(matches!(
        unsafe { spsc::Producer::from_fd_unchecked(pfd) },
        Err(OpenError::EndpointTaken("producer"))
    ));
}

/// The reason the unchecked path is safe: what it maps unsealed is guarded, so a peer's
/// truncation is reported, not fatal.
#[test]
#[cfg_attr(
    shmring_mutant = "no_sigbus_guard",
    ignore = "without the guard the truncation kills this process"
)]
fn from_fd_unchecked_survives_truncation_of_an_unsealed_memfd() {
    let (_tx, bytes) = spsc_ring_bytes();
    let memfd = memfd_with(&bytes, rustix::fs::SealFlags::empty());
    let peer = memfd.try_clone().unwrap();
    // SAFETY: a memfd is plain memory.
    let mut rx = unsafe { spsc::Consumer::from_fd_unchecked(memfd) }.unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)).unwrap_err(),
        RecvTimeoutError::Timeout
    );
    rustix::fs::ftruncate(&peer, 0).unwrap();
    match rx.recv() {
        Err(RecvError::Corrupted(c)) => assert!(c.is_truncation(), "{c}"),
        other => panic!("expected a truncation, got {:?}", other.map(|m| m.len())),
    }
}
