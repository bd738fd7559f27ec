//! What a ring refuses to trust unless asked to: descriptors that someone else could truncate
//! (anything but a memfd sealed against shrinking), names that are symbolic links, objects
//! that other users own or may write.

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::{RingName, memfd_with};
use shmring::{OpenError, OpenOptions, RecvError, RecvTimeoutError, mpmc, spsc};

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
/// Holds endpoint entry `slot`'s liveness lock (an OFD write lock on byte 2^40 + 1 + slot) on a
/// new open file description of `object`, as a live endpoint of that ring does; the lock lasts
/// as long as the returned descriptor. (A copy of a ring's bytes carries its endpoint table
/// but none of its locks: without this, its endpoints read as dead.)
fn hold_entry_lock(object: &OwnedFd, slot: u64) -> OwnedFd {
    use std::os::fd::AsRawFd;
    let own: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", object.as_raw_fd()))
        .unwrap()
        .into();
    // SAFETY: `fl` is a plain struct, zeroed and then filled in; `own` is an open descriptor.
    let r = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        #[allow(clippy::unnecessary_cast)] // `off_t` is i64 on 64-bit targets only
        {
            fl.l_start = ((1i64 << 40) + 1 + slot as i64) as libc::off_t;
        }
        fl.l_len = 1;
        libc::fcntl(own.as_raw_fd(), libc::F_OFD_SETLK, &fl)
    };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
    own
}

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
    // The copy's producer (entry 0) is alive as far as the consumer can tell.
    let _producer = hold_entry_lock(&memfd, 0);
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

// ---- Opening by name: symbolic links and other users' objects ----

fn assert_untrusted_name<T: std::fmt::Debug>(r: Result<T, OpenError>, name: &RingName, why: &str) {
    match r {
        Err(OpenError::Untrusted { object, reason }) => {
            assert_eq!(object, format!("{:?}", name.0));
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("expected Untrusted ({why}), got {other:?}"),
    }
}

fn set_mode(name: &RingName, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(name.dev_shm_path(), std::fs::Permissions::from_mode(mode)).unwrap();
}

fn allow_others() -> OpenOptions {
    OpenOptions::default().allow_other_users(true)
}

#[test]
fn a_symbolic_link_in_dev_shm_is_refused() {
    let target = RingName::new("link-target");
    let _tx = spsc::Producer::create(target.as_str(), spsc::Config::default()).unwrap();
    let link = RingName::new("link");
    std::os::unix::fs::symlink(target.dev_shm_path(), link.dev_shm_path()).unwrap();
    assert_untrusted_name(spsc::Consumer::open(link.as_str()), &link, "symbolic link");
    // Trusting other users does not make a link acceptable.
    assert_untrusted_name(
        spsc::Consumer::open_with(link.as_str(), allow_others()),
        &link,
        "symbolic link",
    );
    // The target itself opens.
    spsc::Consumer::open(target.as_str()).unwrap();

    let mtarget = RingName::new("mlink-target");
    let _mrx = mpmc::Receiver::create(mtarget.as_str(), mpmc::Config::default()).unwrap();
    let mlink = RingName::new("mlink");
    std::os::unix::fs::symlink(mtarget.dev_shm_path(), mlink.dev_shm_path()).unwrap();
    assert_untrusted_name(mpmc::Sender::open(mlink.as_str()), &mlink, "symbolic link");
    assert_untrusted_name(
        mpmc::Receiver::open_timeout(mlink.as_str(), Duration::from_millis(50)),
        &mlink,
        "symbolic link",
    );
    // Creating through a dangling link is refused too (O_EXCL), and creates nothing.
    let dangling = RingName::new("dangling");
    let nowhere = RingName::new("nowhere");
    std::os::unix::fs::symlink(nowhere.dev_shm_path(), dangling.dev_shm_path()).unwrap();
    assert!(matches!(
        spsc::Producer::create(dangling.as_str(), spsc::Config::default()),
        Err(OpenError::AlreadyExists(_))
    ));
    assert!(!std::path::Path::new(&nowhere.dev_shm_path()).exists());
}

#[test]
fn an_object_writable_by_group_or_others_is_refused_unless_allowed() {
    let name = RingName::new("mode");
    let _tx = spsc::Producer::create(name.as_str(), spsc::Config::default()).unwrap();
    for mode in [0o622, 0o620, 0o602, 0o666] {
        set_mode(&name, mode);
        assert_untrusted_name(
            spsc::Consumer::open(name.as_str()),
            &name,
            &format!("mode {mode:04o}"),
        );
    }
    // Readable by others is fine; only write access matters.
    set_mode(&name, 0o644);
    drop(spsc::Consumer::open(name.as_str()).unwrap());

    let name = RingName::new("mode-allowed");
    let mut tx2 = spsc::Producer::create(name.as_str(), spsc::Config::default()).unwrap();
    set_mode(&name, 0o622);
    let mut rx = spsc::Consumer::open_with(name.as_str(), allow_others()).unwrap();
    tx2.send(b"allowed").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"allowed");

    let mname = RingName::new("mmode");
    let _mrx = mpmc::Receiver::create(mname.as_str(), mpmc::Config::default()).unwrap();
    set_mode(&mname, 0o660);
    assert_untrusted_name(mpmc::Sender::open(mname.as_str()), &mname, "mode 0660");
    drop(mpmc::Sender::open_with(mname.as_str(), allow_others()).unwrap());
}

#[test]
fn an_object_owned_by_another_user_is_refused_unless_allowed() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: changing an object's owner needs root");
        return;
    }
    let name = RingName::new("owner");
    let mut rx = spsc::Consumer::create(name.as_str(), spsc::Config::default()).unwrap();
    set_mode(&name, 0o666);
    std::os::unix::fs::chown(name.dev_shm_path(), Some(65534), Some(65534)).unwrap();
    assert_untrusted_name(
        spsc::Producer::open(name.as_str()),
        &name,
        "owned by uid 65534",
    );
    let mut tx = spsc::Producer::open_with(name.as_str(), allow_others()).unwrap();
    tx.send(b"from a foreign object").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"from a foreign object");
    // A report attaches nothing and writes nothing: it looks at other users' rings.
    assert_eq!(shmring::inspect(name.as_str()).unwrap().endpoints.len(), 2);

    let mname = RingName::new("mowner");
    let _mtx = mpmc::Sender::create(mname.as_str(), mpmc::Config::default()).unwrap();
    std::os::unix::fs::chown(mname.dev_shm_path(), Some(65534), None).unwrap();
    // Mode 0600, but not ours.
    assert_untrusted_name(
        mpmc::Receiver::open(mname.as_str()),
        &mname,
        "owned by uid 65534",
    );
    drop(mpmc::Receiver::open_with(mname.as_str(), allow_others()).unwrap());
}

#[test]
fn an_object_that_is_not_a_regular_file_is_refused() {
    let name = RingName::new("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        name.dev_shm_path().as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    assert_untrusted_name(
        spsc::Consumer::open(name.as_str()),
        &name,
        "not a regular file",
    );
    assert_untrusted_name(
        mpmc::Receiver::open_with(name.as_str(), allow_others()),
        &name,
        "not a regular file",
    );
}
