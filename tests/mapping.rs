//! What opening a ring maps: exactly the ring its header describes, whatever the size of the
//! object (a peer can grow an object sparsely, at no cost to itself, to terabytes), and under
//! the `SIGBUS` guard whenever a peer can take its pages away, seals or not (a hole punched
//! in a hugetlbfs memfd).
//!
//! The mutant checks that show each test catches the bug it names:
//!
//! ```sh
//! RUSTFLAGS='--cfg shmring_mutant="map_whole_object"' cargo test -p shmring --test mapping
//! RUSTFLAGS='--cfg shmring_mutant="seal_means_unguarded"' cargo test -p shmring --test mapping
//! ```
//!
//! The first fails the address-space tests; the second makes the hugetlbfs victim die of
//! `SIGBUS` (where the machine can give the test a huge page).

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;

use common::{RingName, env, memfd_with, spawn_child};
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use shmring::{TryRecvError, mpmc, spsc};

/// The size peers grow objects to: more than the address space of a 47-bit process holds
/// a hundred times over.
const GROWN: u64 = 2 << 40;
/// Growth of the address space allowed beyond the rings themselves: thread stacks and
/// malloc arenas of the test harness's other threads (each arena reserves 64 MiB).
const SLACK: u64 = 512 << 20;

fn spsc_config() -> spsc::Config {
    spsc::Config::default().capacity_bytes(4096)
}

/// A field of `/proc/self/status` in bytes (`VmSize`, `VmPeak`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    kib * 1024
}

fn vm_size() -> u64 {
    status_bytes("VmSize")
}

fn object_size(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_size as u64
}

/// Grows a named object (sparsely: no memory is used) to `len` bytes.
fn grow(name: &RingName, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.dev_shm_path())
        .unwrap();
    f.set_len(len).unwrap();
}

/// The bytes of a valid SPSC ring whose producer (returned, kept alive) is attached and
/// which holds one message, `b"before"`.
fn spsc_ring_bytes() -> (spsc::Producer, Vec<u8>) {
    let (mut tx, fd) = spsc::Producer::create_anonymous(spsc_config()).unwrap();
    tx.send(b"before").unwrap();
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
    (tx, bytes)
}

/// Runs `open` and checks that it made the address space grow by no more than `real` bytes
/// (the ring) plus [`SLACK`].
fn assert_maps_at_most<T>(what: &str, real: u64, open: impl FnOnce() -> T) -> T {
    let before = vm_size();
    let opened = open();
    let grew = vm_size().saturating_sub(before);
    assert!(
        grew <= real + SLACK,
        "{what}: the address space grew by {grew} bytes for a ring of {real} bytes in an \
         object of {GROWN} bytes"
    );
    opened
}

#[test]
fn opening_an_object_grown_past_its_ring_maps_only_the_ring() {
    // A named ring, grown by a peer after it was created.
    let name = RingName::new("grown");
    let mut tx = spsc::Producer::create(name.as_str(), spsc_config()).unwrap();
    let real = object_size(std::fs::File::open(name.dev_shm_path()).unwrap());
    grow(&name, GROWN);
    let mut rx = assert_maps_at_most("spsc open", real, || {
        spsc::Consumer::open(name.as_str()).unwrap()
    });
    tx.send(b"through a grown object").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"through a grown object");

    // The read-only paths map the ring too, if only for the length of the call.
    let peak = status_bytes("VmPeak");
    let info = shmring::inspect(name.as_str()).unwrap();
    assert_eq!(info.object_len, GROWN, "inspect reports the object's size");
    assert_eq!(info.capacity, 4096);
    assert!(!shmring::is_stale(name.as_str()).unwrap());
    drop((tx, rx));
    assert!(shmring::unlink_if_stale(name.as_str()).unwrap());
    let peaked = status_bytes("VmPeak").saturating_sub(peak);
    assert!(
        peaked <= real + SLACK,
        "inspect, is_stale and unlink_if_stale: the address space peaked {peaked} bytes higher"
    );

    // An MPMC ring.
    let mname = RingName::new("grown-mpmc");
    let mut mrx = mpmc::Receiver::create(mname.as_str(), mpmc::Config::default().slots(8)).unwrap();
    let mreal = object_size(std::fs::File::open(mname.dev_shm_path()).unwrap());
    grow(&mname, GROWN);
    let mut mtx = assert_maps_at_most("mpmc open", mreal, || {
        mpmc::Sender::open(mname.as_str()).unwrap()
    });
    mtx.send(b"mpmc").unwrap();
    assert_eq!(&*mrx.recv().unwrap(), b"mpmc");

    // A memfd sealed against shrinking only (from_fd takes it) and an unsealed one
    // (from_fd_unchecked), each grown through another descriptor.
    let (_tx, bytes) = spsc_ring_bytes();
    let real = bytes.len() as u64;
    let sealed = memfd_with(&bytes, SealFlags::SHRINK);
    rustix::fs::ftruncate(&sealed, GROWN).unwrap();
    let mut rx = assert_maps_at_most("from_fd", real, || spsc::Consumer::from_fd(sealed).unwrap());
    assert_eq!(&*rx.try_recv().unwrap(), b"before");
    let unsealed = memfd_with(&bytes, SealFlags::empty());
    rustix::fs::ftruncate(&unsealed, GROWN).unwrap();
    // SAFETY: a memfd is plain memory.
    let mut rx = assert_maps_at_most("from_fd_unchecked", real, || unsafe {
        spsc::Consumer::from_fd_unchecked(unsealed).unwrap()
    });
    assert_eq!(&*rx.try_recv().unwrap(), b"before");
}

#[test]
fn a_hundred_rings_grown_to_terabytes_are_open_at_once() {
    const RINGS: usize = 100;
    let names: Vec<RingName> = (0..RINGS).map(|_| RingName::new("grown-many")).collect();
    let producers: Vec<spsc::Producer> = names
        .iter()
        .map(|n| spsc::Producer::create(n.as_str(), spsc_config()).unwrap())
        .collect();
    let real = object_size(std::fs::File::open(names[0].dev_shm_path()).unwrap());
    for n in &names {
        grow(n, GROWN);
    }
    let before = vm_size();
    let consumers: Vec<spsc::Consumer> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            spsc::Consumer::open(n.as_str())
                .unwrap_or_else(|e| panic!("opening grown ring {i} of {RINGS}: {e}"))
        })
        .collect();
    let grew = vm_size().saturating_sub(before);
    assert!(
        grew <= RINGS as u64 * real + SLACK,
        "{RINGS} rings of {real} bytes grew the address space by {grew} bytes"
    );
    for (mut tx, mut rx) in producers.into_iter().zip(consumers) {
        tx.send(b"alive").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"alive");
    }
}

// ---- hugetlbfs: a hole punched in a sealed memfd ----

const ENTRY: &str = "hugetlb_entry";
const SKIP: &str = "SKIP:";

/// Dispatcher run in child processes; does nothing unless started by `spawn_child`.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn hugetlb_entry() {
    let Ok(role) = std::env::var(common::ROLE_VAR) else {
        return;
    };
    assert_eq!(role, "punched", "unknown role");
    // No core dump if a build without the guard lets the fault kill us.
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and changes nothing else.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    let cap: u64 = env("MAX_PAGES").parse().unwrap();
    match punched_hugetlb_ring(cap) {
        Ok(outcome) => println!("\nOUTCOME {outcome}"),
        Err(reason) => println!("\n{SKIP} {reason}"),
    }
}

/// In the child: a ring in a hugetlbfs memfd sealed against resizing, opened with
/// `from_fd`; then a peer punches a hole over all of it and takes the freed huge page (and
/// every other free one, up to `cap`). The next `try_recv` must report the lost pages, not
/// die. `Err` is a reason to skip.
fn punched_hugetlb_ring(cap: u64) -> Result<String, String> {
    let (_tx, bytes) = spsc_ring_bytes();
    let fd = rustix::fs::memfd_create(
        "mapping-test-huge",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB,
    )
    .map_err(|e| format!("memfd_create(MFD_HUGETLB): {e}"))?;
    let huge = rustix::fs::fstatfs(&fd).unwrap().f_bsize as u64;
    rustix::fs::ftruncate(&fd, huge).unwrap();
    rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, huge)
        .map_err(|e| format!("no free huge page for the ring: {e}"))?;
    {
        // hugetlbfs has no write(2): fill the ring in through a mapping.
        let mut options = memmap2::MmapOptions::new();
        options.len(huge as usize);
        // SAFETY: the memfd is this function's alone until it is sealed and handed over, and
        // nothing changes its size meanwhile.
        let mut map = unsafe { options.map_mut(&fd) }
            .map_err(|e| format!("mapping a hugetlbfs memfd: {e}"))?;
        map[..bytes.len()].copy_from_slice(&bytes);
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)
        .map_err(|e| format!("sealing a hugetlbfs memfd: {e}"))?;
    let peer = fd.try_clone().unwrap();
    let mut rx = spsc::Consumer::from_fd(fd).expect("from_fd accepts a sealed memfd");
    assert_eq!(&*rx.try_recv().unwrap(), b"before");

    // The peer: the seals allow a punched hole, which returns the huge page to the pool.
    rustix::fs::fallocate(
        &peer,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        0,
        huge,
    )
    .expect("punching a hole in a sealed hugetlbfs memfd");
    // ... and takes every free huge page, so that none is left to fault in.
    let thief = rustix::fs::memfd_create("mapping-test-thief", MemfdFlags::HUGETLB).unwrap();
    let mut taken = 0;
    loop {
        if taken == cap {
            return Err(format!(
                "more than {cap} huge pages free: cannot empty the pool"
            ));
        }
        match rustix::fs::fallocate(&thief, FallocateFlags::empty(), taken * huge, huge) {
            Ok(()) => taken += 1,
            Err(rustix::io::Errno::NOSPC | rustix::io::Errno::NOMEM) => break,
            Err(e) => return Err(format!("taking huge pages: {e}")),
        }
    }

    match rx.try_recv() {
        Err(TryRecvError::Corrupted(c)) if c.is_truncation() => Ok(c.to_string()),
        other => panic!(
            "expected the lost pages to be reported, got {:?}",
            other.map(|m| m.to_vec())
        ),
    }
}

/// `/proc/meminfo`'s `HugePages_Free` (of the default huge page size).
fn free_huge_pages() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("HugePages_Free:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The huge page pool grown for a test and set back to its size on drop (also when the test
/// fails).
struct HugePool(Option<String>);

impl HugePool {
    /// Makes sure one huge page is free, growing the pool by one page if none is. `Err` is
    /// a reason to skip.
    fn with_one_free() -> Result<HugePool, String> {
        match free_huge_pages() {
            None => return Err("no HugePages_Free in /proc/meminfo".to_owned()),
            Some(n) if n >= 1 => return Ok(HugePool(None)),
            Some(_) => {}
        }
        let was = std::fs::read_to_string(NR_HUGEPAGES)
            .map_err(|e| format!("reading {NR_HUGEPAGES}: {e}"))?;
        let pages: u64 = was
            .trim()
            .parse()
            .map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
        let pool = HugePool(Some(was));
        std::fs::write(NR_HUGEPAGES, format!("{}\n", pages + 1))
            .map_err(|e| format!("growing the huge page pool (needs root): {e}"))?;
        if free_huge_pages() < Some(1) {
            return Err("the kernel found no memory for a huge page".to_owned());
        }
        Ok(pool)
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        if let Some(was) = self.0.take() {
            if let Err(e) = std::fs::write(NR_HUGEPAGES, &was) {
                eprintln!("could not set {NR_HUGEPAGES} back to {}: {e}", was.trim());
            }
        }
    }
}

#[test]
fn a_hole_punched_in_a_sealed_hugetlbfs_memfd_is_reported_not_fatal() {
    let pool = match HugePool::with_one_free() {
        Ok(pool) => pool,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    // Enough to empty the pool made above; a larger one is someone else's, and skips.
    let cap = free_huge_pages().unwrap_or(0) + 8;
    let mut child = spawn_child(ENTRY, "punched", &[("MAX_PAGES", cap.to_string())]);
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    drop(pool);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.signal(),
        Some(libc::SIGBUS),
        "the receiver was killed by SIGBUS: the hole was not survived\nstderr:\n{stderr}"
    );
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    if let Some(line) = stdout.lines().find(|l| l.starts_with(SKIP)) {
        println!("skipped: {}", &line[SKIP.len()..]);
        return;
    }
    assert!(
        stdout.contains("OUTCOME shared-memory object truncated"),
        "{stdout}"
    );
}
