//! A peer can take pages away from under a mapping without shrinking the object: a hole
//! punched in a hugetlbfs memfd (which its seals allow) leaves nothing to fault in once the
//! freed huge page is taken. A ring in such an object is mapped under the `SIGBUS` guard,
//! seals or not, and its handles report the loss instead of dying.
//!
//! The mutant check that shows the test catches the bug it names:
//!
//! ```sh
//! RUSTFLAGS='--cfg shmring_mutant="seal_means_unguarded"' cargo test -p shmring --test mapping
//! ```
//!
//! makes the hugetlbfs victim die of `SIGBUS` (where the machine can give the test a huge
//! page).

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;

use common::{env, spawn_child};
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use shmring::{TryRecvError, spsc};

fn spsc_config() -> spsc::Config {
    spsc::Config::default().capacity_bytes(4096)
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
