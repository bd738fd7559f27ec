//! Tests of the SIGBUS guard: truncation survived, foreign faults still kill, the table stays
//! consistent under concurrent use.

use super::*;

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::{read_volatile, write_volatile};
use std::sync::atomic::AtomicU64;
use std::sync::{Barrier, Mutex, MutexGuard};

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{MemfdFlags, Mode};
use rustix::shm;

/// The table is process-wide: the tests that count or fill it must not overlap with the
/// others, so every test here holds this lock.
static TABLE_LOCK: Mutex<()> = Mutex::new(());

fn lock_table() -> MutexGuard<'static, ()> {
    TABLE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn page() -> usize {
    rustix::param::page_size()
}

fn occupied_entries() -> usize {
    TABLE
        .iter()
        .filter(|e| e.state.load(Ordering::Acquire) != FREE)
        .count()
}

fn memfd(len: usize) -> OwnedFd {
    let fd = rustix::fs::memfd_create("shmring-sigbus-test", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, len as u64).unwrap();
    fd
}

fn map(fd: impl AsFd, len: usize) -> MmapRaw {
    MmapOptions::new().len(len).map_raw(&fd.as_fd()).unwrap()
}

/// A named shm object, unlinked when dropped (also when the test fails).
struct ShmObject {
    name: String,
    fd: OwnedFd,
}

impl ShmObject {
    fn create(len: usize) -> ShmObject {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "/shmring-sigbus-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = shm::open(
            name.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        let object = ShmObject { name, fd };
        rustix::fs::ftruncate(&object.fd, len as u64).unwrap();
        object
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        let _ = shm::unlink(self.name.as_str());
    }
}

/// Maps 4 pages of `fd`, guards them, has `truncate` cut the object to 0 bytes and checks
/// that accesses to the mapping survive, read zeros, are flagged, and that writes stay
/// private.
fn survive_truncation(fd: &OwnedFd, truncate: impl FnOnce()) {
    let len = 4 * page();
    let map = map(fd, len);
    let base = map.as_mut_ptr();
    // SAFETY: the range is our mapping, which outlives the guard; raw accesses only.
    let guard = unsafe { Guard::register(base, len) }.unwrap();
    let last = base.wrapping_add(3 * page());
    // SAFETY: all accesses are inside the mapping, whose faults the guard handles.
    unsafe {
        for i in 0..4 {
            write_volatile(base.add(i * page()), 0xA0 + i as u8);
        }
        assert_eq!(read_volatile(last), 0xA3);
    }
    assert!(!guard.poisoned());

    truncate();
    // SAFETY: as above.
    unsafe {
        assert_eq!(read_volatile(last), 0, "a load past the end reads zero");
        assert!(guard.poisoned());
        assert_eq!(read_volatile(base), 0, "the whole range was replaced");
        write_volatile(last.add(7), 0x5A);
        assert_eq!(read_volatile(last.add(7)), 0x5A);
    }
    assert!(guard.poisoned(), "poisoned stays set");

    // The store went to private memory: the object, grown back, holds a hole there.
    rustix::fs::ftruncate(fd, len as u64).unwrap();
    let mut byte = [0xFFu8; 8];
    assert_eq!(
        rustix::io::pread(fd, &mut byte, 3 * page() as u64).unwrap(),
        8
    );
    assert_eq!(byte, [0; 8]);

    drop(guard);
    drop(map);
}

#[test]
fn sigbus_truncated_memfd_is_survived_and_poisoned() {
    let _lock = lock_table();
    let fd = memfd(4 * page());
    survive_truncation(&fd, || rustix::fs::ftruncate(&fd, 0).unwrap());
    assert_eq!(occupied_entries(), 0);
}

#[test]
fn sigbus_truncated_shm_object_is_survived_and_poisoned() {
    let _lock = lock_table();
    let object = ShmObject::create(4 * page());
    survive_truncation(&object.fd, || {
        // A peer that opens the object by name and shrinks it.
        let peer = shm::open(object.name.as_str(), shm::OFlags::RDWR, Mode::empty()).unwrap();
        rustix::fs::ftruncate(&peer, 0).unwrap();
    });
    assert_eq!(occupied_entries(), 0);
}

#[test]
fn sigbus_concurrent_faults_on_one_range_all_survive() {
    let _lock = lock_table();
    let pages = 64;
    let len = pages * page();
    let fd = memfd(len);
    let map = map(&fd, len);
    // SAFETY: our mapping, accessed through raw pointers only, guard dropped first.
    let guard = unsafe { Guard::register(map.as_mut_ptr(), len) }.unwrap();
    rustix::fs::ftruncate(&fd, 0).unwrap();
    let threads = 4;
    let start = Barrier::new(threads);
    let base = map.as_mut_ptr().expose_provenance();
    std::thread::scope(|s| {
        for t in 0..threads {
            let start = &start;
            s.spawn(move || {
                start.wait();
                for i in 0..pages {
                    let p = ((i + t * 17) % pages) * page() + t;
                    let ptr = std::ptr::with_exposed_provenance_mut::<u8>(base + p);
                    // SAFETY: inside the mapping, which outlives the scope; faults are
                    // handled by the guard.
                    assert_eq!(unsafe { read_volatile(ptr) }, 0);
                }
            });
        }
    });
    assert!(guard.poisoned());
    drop(guard);
    drop(map);
}

#[test]
fn sigbus_overlapping_guards_are_all_poisoned() {
    let _lock = lock_table();
    let len = 4 * page();
    let fd = memfd(len);
    let map = map(&fd, len);
    let base = map.as_mut_ptr();
    // SAFETY: both ranges lie in our mapping; raw accesses only; guards dropped first.
    let header = unsafe { Guard::register(base, 100) }.unwrap();
    // SAFETY: as above.
    let data = unsafe { Guard::register(base.wrapping_add(100), len - 100) }.unwrap();
    assert_eq!(header.range(), (base.addr(), page()));
    assert_eq!(data.range(), (base.addr(), len));
    // SAFETY: another guard elsewhere must stay untouched: a range no one accesses.
    let other = unsafe { Guard::register(base.wrapping_add(len), page()) }.unwrap();
    rustix::fs::ftruncate(&fd, 0).unwrap();
    // SAFETY: inside the mapping (only the data guard covers this page).
    assert_eq!(unsafe { read_volatile(base.add(len - 1)) }, 0);
    assert!(data.poisoned());
    assert!(header.poisoned(), "the header's page was replaced too");
    assert!(!other.poisoned());
    drop((header, data, other));
    drop(map);
}

#[test]
fn sigbus_fault_in_rest_of_overlapping_range_is_repaired_too() {
    let _lock = lock_table();
    let len = 4 * page();
    let fd = memfd(len);
    let map = map(&fd, len);
    let base = map.as_mut_ptr();
    // SAFETY: both ranges (pages 0-1 and 1-3) lie in our mapping; raw accesses only;
    // guards dropped first.
    let front = unsafe { Guard::register(base, 2 * page()) }.unwrap();
    // SAFETY: as above.
    let back = unsafe { Guard::register(base.wrapping_add(page()), 3 * page()) }.unwrap();
    rustix::fs::ftruncate(&fd, 0).unwrap();
    // SAFETY: inside the mapping, in `front` only: replaces pages 0-1, taints `back`.
    assert_eq!(unsafe { read_volatile(base) }, 0);
    assert!(front.poisoned() && back.poisoned());
    // SAFETY: inside the mapping, in `back` only, still truncated: must be repaired, not
    // retried for ever because `back` is already flagged.
    assert_eq!(unsafe { read_volatile(base.add(3 * page())) }, 0);
    assert_eq!(TABLE[back.index].state.load(Ordering::Acquire), REPLACED);
    drop((front, back));
    drop(map);
}

#[test]
fn sigbus_concurrent_register_and_drop_leave_table_consistent() {
    let _lock = lock_table();
    let threads = 4;
    let rounds = 2000;
    let page = page();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut held = Vec::new();
                for round in 0..rounds {
                    // Never accessed: fake, distinct, page-aligned addresses.
                    let start = (0x1000 + t * 0x1_0000 + round * 8) * page;
                    let n = 1 + (round + t) % 5;
                    for k in 0..n {
                        let base = std::ptr::without_provenance_mut::<u8>(start + k * page);
                        // SAFETY: nothing is mapped or accessed there, so no fault can
                        // occur in the range.
                        let guard = unsafe { Guard::register(base, page - k) }.unwrap();
                        held.push((guard, start + k * page));
                    }
                    for (guard, start) in &held {
                        assert_eq!(guard.range(), (*start, page));
                        assert!(!guard.poisoned());
                    }
                    // Drop in varying orders.
                    if round % 2 == 0 {
                        held.clear();
                    } else {
                        while held.pop().is_some() {}
                    }
                }
            });
        }
    });
    assert_eq!(occupied_entries(), 0, "no entry leaked");

    // All entries can be held at once, then the table is full.
    let base = |i: usize| std::ptr::without_provenance_mut::<u8>((0x2000 + i) * page);
    let all: Vec<Guard> = (0..CAPACITY)
        // SAFETY: fake addresses, never accessed.
        .map(|i| unsafe { Guard::register(base(i), page) }.expect("entry free"))
        .collect();
    assert_eq!(occupied_entries(), CAPACITY);
    // SAFETY: as above.
    let overflow = unsafe { Guard::register(base(CAPACITY), 1) };
    assert_eq!(overflow.unwrap_err(), Full);
    drop(all);
    assert_eq!(occupied_entries(), 0);
    for i in 0..2 * CAPACITY {
        // SAFETY: as above.
        let guard = unsafe { Guard::register(base(i), page) }.expect("entry free");
        assert_eq!(guard.range(), (base(i).addr(), page));
    }
    assert_eq!(occupied_entries(), 0);
    // SAFETY: as above. An empty range never matches.
    let empty = unsafe { Guard::register(base(0), 0) }.unwrap();
    assert_eq!(empty.range().1, 0);
}

/// Forks; the child runs `child` (async-signal-safe code only: the parent has other
/// threads) and `_exit`s with its result. Returns the child's wait status.
fn in_child(child: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: the child only runs `child`, which is async-signal-safe, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // No core dump for the deaths we provoke.
        // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
        let code = child();
        // SAFETY: ends the child without running the parent's destructors or atexit.
        unsafe { libc::_exit(code) };
    }
    // A handler that swallowed the fault would make the child retry it forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is writable.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            0 => {
                // SAFETY: `pid` is our child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: as above.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                panic!("child {pid} still running after 20 s");
            }
            reaped => {
                assert_eq!(reaped, pid, "waitpid failed");
                return status;
            }
        }
    }
}

/// A truncated memfd mapping of one page, not registered anywhere.
fn truncated_foreign_mapping() -> MmapRaw {
    let fd = memfd(page());
    let map = map(&fd, page());
    rustix::fs::ftruncate(&fd, 0).unwrap();
    map
}

#[test]
fn sigbus_fault_outside_registered_ranges_kills() {
    let _lock = lock_table();
    install();
    let len = 2 * page();
    let guarded_fd = memfd(len);
    let guarded = map(&guarded_fd, len);
    // SAFETY: our mapping, raw accesses only, guard dropped first.
    let guard = unsafe { Guard::register(guarded.as_mut_ptr(), len) }.unwrap();
    rustix::fs::ftruncate(&guarded_fd, 0).unwrap();
    let foreign = truncated_foreign_mapping();
    let (guarded_ptr, foreign_ptr) = (guarded.as_mut_ptr(), foreign.as_mut_ptr());

    let status = in_child(|| {
        // SAFETY: inside the guarded mapping: survived.
        if unsafe { read_volatile(guarded_ptr.add(page())) } != 0 || !guard.poisoned() {
            return 3;
        }
        // SAFETY: a mapped address; the fault must kill the process.
        unsafe { read_volatile(foreign_ptr) };
        0
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "child should die of SIGBUS, wait status {status:#x}"
    );
    assert!(!guard.poisoned(), "the parent's mapping was not touched");
    drop(guard);
}

static FOREIGN_TARGET: AtomicUsize = AtomicUsize::new(0);
static FOREIGN_CALLS: AtomicUsize = AtomicUsize::new(0);
static FOREIGN_ADDR: AtomicUsize = AtomicUsize::new(0);

/// Survives a fault on `FOREIGN_TARGET` the way its owner would, and counts its calls.
fn foreign_repair() {
    FOREIGN_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: replaces the one page of the test's own foreign mapping.
    unsafe {
        libc::mmap(
            FOREIGN_TARGET.load(Ordering::SeqCst) as *mut c_void,
            page(),
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
}

extern "C" fn foreign_siginfo_handler(_: c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel's siginfo for a fault, passed on unchanged.
    FOREIGN_ADDR.store(unsafe { (*info).si_addr() }.addr(), Ordering::SeqCst);
    foreign_repair();
}

extern "C" fn foreign_plain_handler(_: c_int) {
    foreign_repair();
}

/// In a child: installs `previous`, then ours on top of it (as a fresh process would),
/// and checks that a foreign fault goes to `previous` while a guarded one does not.
fn check_chaining(previous: usize, flags: c_int, expect_addr: bool) {
    let _lock = lock_table();
    let len = page();
    let guarded_fd = memfd(len);
    let guarded = map(&guarded_fd, len);
    // SAFETY: our mapping, raw accesses only, guard dropped first.
    let guard = unsafe { Guard::register(guarded.as_mut_ptr(), len) }.unwrap();
    rustix::fs::ftruncate(&guarded_fd, 0).unwrap();
    let foreign = truncated_foreign_mapping();
    let (guarded_ptr, foreign_ptr) = (guarded.as_mut_ptr(), foreign.as_mut_ptr());

    let status = in_child(|| {
        FOREIGN_TARGET.store(foreign_ptr.addr(), Ordering::SeqCst);
        // SAFETY: all-zero bytes are a valid `sigaction`.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = previous;
        action.sa_flags = flags;
        // SAFETY: `previous` has the signature `flags` announce.
        if unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) } != 0 {
            return 2;
        }
        install_now();
        // SAFETY: guarded: handled by us, not by the previous handler.
        if unsafe { read_volatile(guarded_ptr) } != 0 || !guard.poisoned() {
            return 3;
        }
        if FOREIGN_CALLS.load(Ordering::SeqCst) != 0 {
            return 4;
        }
        // SAFETY: mapped; the previous handler repairs it.
        if unsafe { read_volatile(foreign_ptr) } != 0 {
            return 5;
        }
        if FOREIGN_CALLS.load(Ordering::SeqCst) != 1 {
            return 6;
        }
        if expect_addr && FOREIGN_ADDR.load(Ordering::SeqCst) != foreign_ptr.addr() {
            return 7;
        }
        0
    });
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed, wait status {status:#x}"
    );
    drop(guard);
}

#[test]
fn sigbus_foreign_fault_chains_to_previous_siginfo_handler() {
    let handler = foreign_siginfo_handler as extern "C" fn(c_int, *mut libc::siginfo_t, _);
    check_chaining(handler as usize, libc::SA_SIGINFO, true);
}

#[test]
fn sigbus_foreign_fault_chains_to_previous_plain_handler() {
    let handler = foreign_plain_handler as extern "C" fn(c_int);
    check_chaining(handler as usize, 0, false);
}

static SENT_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Does what the stack-overflow handler of Rust's runtime does with a signal that is not an
/// overflow: restores the default action and returns.
extern "C" fn resetting_handler(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    SENT_CALLS.fetch_add(1, Ordering::SeqCst);
    reset_to_default();
}

extern "C" fn counting_handler(_: c_int) {
    SENT_CALLS.fetch_add(1, Ordering::SeqCst);
}

/// In a child: installs `earlier`, then ours on top of it, sends itself `SIGBUS` with
/// `kill`, and checks that `earlier` saw it, that a truncation fault in a guarded range is
/// still survived afterwards and that the action in force is ours. The child then sends
/// itself a second `SIGBUS`, which the default action left behind by `earlier` (directly,
/// or through `SA_RESETHAND`) must turn into the child's death.
fn check_sent_sigbus_keeps_guard(earlier: usize, flags: c_int) {
    let _lock = lock_table();
    let len = page();
    let guarded_fd = memfd(len);
    let guarded = map(&guarded_fd, len);
    // SAFETY: our mapping, raw accesses only, guard dropped first.
    let guard = unsafe { Guard::register(guarded.as_mut_ptr(), len) }.unwrap();
    let guarded_ptr = guarded.as_mut_ptr();

    let status = in_child(|| {
        // SAFETY: all-zero bytes are a valid `sigaction`.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = earlier;
        action.sa_flags = flags;
        // SAFETY: `earlier` has the signature `flags` announce.
        if unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) } != 0 {
            return 2;
        }
        install_now();
        // SAFETY: kill and getpid take and return plain integers. The signal is delivered to
        // this thread before kill returns.
        if unsafe { libc::kill(libc::getpid(), libc::SIGBUS) } != 0 {
            return 3;
        }
        if SENT_CALLS.load(Ordering::SeqCst) != 1 {
            return 4;
        }
        // SAFETY: all-zero bytes are a valid `sigaction`.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null `act` only queries; `now` is writable.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) } != 0
            || now.sa_sigaction != handler_address()
        {
            return 5;
        }
        if rustix::fs::ftruncate(&guarded_fd, 0).is_err() {
            return 6;
        }
        // SAFETY: inside the guarded mapping: the fault is survived.
        if unsafe { read_volatile(guarded_ptr) } != 0 || !guard.poisoned() {
            return 7;
        }
        if previous() != (libc::SIG_DFL, 0) {
            return 8;
        }
        // SAFETY: as above; the default action kills us here.
        unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
        9
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "child should survive the first SIGBUS and the truncation and die of the second, \
         wait status {status:#x}"
    );
    assert!(!guard.poisoned(), "the parent's mapping was not touched");
    drop(guard);
}

#[test]
fn sigbus_sent_signal_to_a_handler_that_resets_keeps_the_guard() {
    let handler = resetting_handler as extern "C" fn(c_int, *mut libc::siginfo_t, _);
    check_sent_sigbus_keeps_guard(handler as usize, libc::SA_SIGINFO | libc::SA_ONSTACK);
}

#[test]
fn sigbus_sent_signal_to_a_resethand_handler_keeps_the_guard() {
    let handler = counting_handler as extern "C" fn(c_int);
    check_sent_sigbus_keeps_guard(handler as usize, libc::SA_RESETHAND);
}

#[test]
fn sigbus_full_table_refuses_to_map_a_truncatable_object() {
    use crate::error::OpenError;
    use crate::shm::segment::Segment;

    let _lock = lock_table();
    let page = page();
    let base = |i: usize| std::ptr::without_provenance_mut::<u8>((0x3000 + i) * page);
    let all: Vec<Guard> = (0..CAPACITY - occupied_entries())
        // SAFETY: fake addresses, never accessed.
        .map(|i| unsafe { Guard::register(base(i), page) }.expect("entry free"))
        .collect();
    let name = format!("/shmring-sigbus-full-{}", std::process::id());
    match Segment::create(&name, 3 * page as u64, 0o600) {
        Err(OpenError::TooManyMappings { limit }) => assert_eq!(limit, CAPACITY),
        other => panic!("expected TooManyMappings, got {other:?}"),
    }
    // The half-made object was removed.
    assert_eq!(shm::unlink(name.as_str()), Err(rustix::io::Errno::NOENT));
    // A sealed memfd cannot shrink: it needs no guard, and maps.
    let sealed = Segment::create_anonymous(3 * page as u64).expect("sealed memfd");
    assert!(!sealed.poisoned());
    drop(all);
    // With a free entry the named object maps, guarded.
    let seg = Segment::create(&name, 3 * page as u64, 0o600).expect("create");
    let _ = shm::unlink(name.as_str());
    assert_eq!(occupied_entries(), 1);
    drop(seg);
    assert_eq!(occupied_entries(), 0);
}
