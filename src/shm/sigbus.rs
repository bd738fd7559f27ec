//! Surviving `SIGBUS` on shared mappings whose object a peer truncated.
//!
//! A process that can open a named shm object read-write can also `ftruncate` it. Every page
//! of our mapping that now lies past the end of the object raises `SIGBUS` on the next load or
//! store, and the default action kills the process. This module turns that death into a
//! detectable error, in the way a Wayland compositor protects itself against clients that
//! shrink their `wl_shm` pools.
//!
//! # What it does
//!
//! [`install`] puts a process-wide `SIGBUS` handler in place (once; later calls do nothing)
//! and remembers the handler that was there before. [`Guard::register`] records an address
//! range in a fixed table of [`CAPACITY`] entries; dropping the [`Guard`] removes it. When a
//! thread faults with `BUS_ADRERR` (an access past the end of the object behind a mapping) at
//! an address inside a registered range, the handler maps fresh anonymous private memory over
//! the whole range (rounded out to page boundaries) with `MAP_FIXED`, marks the entry
//! poisoned and returns. The faulting instruction is executed again and now succeeds:
//!
//! - loads read zeros, because new anonymous memory is zero-filled (reads map the kernel's
//!   shared zero page, so nothing is allocated until a page is written; the mapping is made
//!   with `MAP_NORESERVE` so that even a large range costs no commit charge up front);
//! - stores go to pages that are private to this process and to this range: the peer, the
//!   object and any other mapping of it (even in this process) never see them. So a poisoned
//!   range can neither corrupt the object for others nor crash us again, but its contents mean
//!   nothing any more. The replacement is permanent: if the peer later grows the object again,
//!   the range keeps showing the private pages.
//!
//! The registry is a static table scanned by the handler with atomic operations only; any
//! thread may fault on any registered range, and several threads may fault at once (one
//! replaces the range; the others return at once and fault again until it is done). A forked
//! child inherits the handler and the table together with the mappings they describe. The
//! handler does only async-signal-safe things: atomic loads, stores and compare-exchanges,
//! `mmap`, `sigaction`, `sigemptyset`, `raise`, and a call of the previous handler. It
//! allocates nothing, takes no lock and preserves `errno`.
//!
//! # What the caller must do
//!
//! Check [`Guard::poisoned`] after each batch of accesses to the range and, if it is set,
//! report the data read in that batch (and the ring as a whole) as corrupt instead of using
//! it. A load that returned a zero from the replacement memory is always followed by a
//! `poisoned()` that returns `true`: the entry is marked before the replacement mapping
//! exists, and the faulting thread (or another one that then reads the new pages) goes
//! through the kernel's lock on the address space after that mark.
//!
//! Drop the guard **before** the range is unmapped, and only after every access to the range
//! by any thread has finished (the same rule as for the unmapping itself). In a struct that
//! owns both, declare the guard field before the map field: fields drop in declaration order.
//! Dropping the guard waits for a handler that is working on the entry in another thread, and
//! after it returns no handler will map over the range again. Unmapping first would open a
//! window in which the address range could be handed to someone else's mapping while our
//! entry still claims it; a `SIGBUS` on that mapping would then be "repaired" by replacing
//! its pages with zeros. With the order above, the munmap of memmap2's `MmapRaw` drop later
//! removes either the original mapping or its anonymous replacement; both are fine.
//!
//! A fault that races with the drop (an access still running in one thread while another
//! drops the guard) breaks that rule. Either the handler took the entry first, and the drop
//! waits until the range is replaced; or the drop freed it first, and the handler finds no
//! entry and passes the fault on, which kills the process as if there had been no guard. In
//! no order does a handler map over a range after the drop has returned: it re-reads the
//! range only once it holds the entry, and a freed entry can no longer be taken for it.
//!
//! Register every guard of a mapping before the first access to it. Guards may overlap (for
//! example one for a header and one for the data of the same mapping: their page-rounded
//! ranges share a page); when a range is replaced, every other active entry overlapping it is
//! marked poisoned too, and a later fault in the rest of such a range is repaired in its turn.
//!
//! # Limits
//!
//! The table has [`CAPACITY`] (1024) entries. When all are taken, `register` returns
//! [`Full`]; the caller decides whether to run unguarded (a truncation then kills the process,
//! as without this module) or to refuse to map.
//!
//! A `SIGBUS` that is not ours (another `si_code`, an address in no active entry, or a failed
//! replacement `mmap`) is passed on. If the previous action was a handler, it is called with
//! the same arguments (honouring its `SA_SIGINFO` flag, but not its `sa_mask`). If it was the
//! default action, the handler restores it and returns: a fault recurs at once and kills the
//! process with `SIGBUS`, as it would have without us; a `SIGBUS` sent by `kill` is raised
//! again. If it was `SIG_IGN`, a sent signal is ignored and a fault kills, as the kernel does
//! for an ignored fault.
//!
//! # Chained handlers that change the action
//!
//! A chained handler may change the `SIGBUS` action. Rust's runtime installs one in every
//! Rust program (it reports stack overflows) which, for any signal that is not an overflow,
//! restores the default action and returns, counting on a fault to recur and kill the
//! process. For a `SIGBUS` sent with `kill` or `sigqueue` nothing recurs: without more, the
//! process would live on with the default action and no guard, and the next truncation would
//! kill it. So when a chained handler returns, our handler looks at the action: if it is no
//! longer ours, what the chained handler put there becomes the action to chain to (as if it
//! had been in place before us) and ours is installed again. The outcome is what the chained
//! handler meant, and the guards stay:
//!
//! - a `SIGBUS` sent by a process to a Rust program is consumed once by the runtime's
//!   handler, and the next one sent kills the process (the default action, now chained to),
//!   as it would without guards; truncations of guarded ranges are survived all along;
//! - a fault in no guarded range recurs on return, comes back to us and is passed on to the
//!   new action, which kills the process with `SIGBUS`;
//! - a previous handler installed with `SA_RESETHAND` is called once, after which the default
//!   action is the one chained to, while ours stays installed.
//!
//! Between the chained handler's change and the re-installation (a few system calls) the
//! chained handler's action is in force: a truncation fault in another thread at that moment
//! kills the process. A chained handler that does not return (it jumps out or exits) leaves
//! its action in place. At most 32 distinct previous actions are recorded over the life of
//! the process; past that, a chained handler's change stays in place, as it would without
//! this module.
//!
//! The handler is installed with `SA_SIGINFO | SA_ONSTACK` and without `SA_NODEFER`.
//! `SA_SIGINFO` gives the fault address; `SA_ONSTACK` runs it on the thread's alternate
//! signal stack when there is one (Rust's runtime gives its threads one), so it works even
//! when the fault happens deep in the stack. Without `SA_NODEFER`, `SIGBUS` stays blocked
//! while the handler runs: nothing in it can fault, and if a chained handler faults, the
//! kernel kills the process at once instead of recursing. Returning and letting the fault
//! recur, rather than raising from inside the handler, keeps the kernel's own fault details
//! for the core dump and debuggers.
//!
//! Code that installs its own `SIGBUS` handler after ours must chain to it, or the guards stop
//! working. The replacement memory is readable and writable even if the original mapping was
//! read-only.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Number of ranges that can be registered at once.
pub(crate) const CAPACITY: usize = 1024;

/// Entry states (the low byte of `Entry::state`). An entry moves
/// `FREE -> REGISTERING -> ACTIVE`, then between `ACTIVE`, `PINNED` (a handler is examining
/// it; its range cannot change), `FIXING` (a handler is replacing its range), `REPLACED` and
/// `BROKEN`, and back to `FREE` only from `ACTIVE`, `REPLACED` or `BROKEN`, by the guard's drop.
const FREE: u32 = 0;
/// Claimed by `register`, range being written.
const REGISTERING: u32 = 1;
/// Registered, never faulted.
const ACTIVE: u32 = 2;
/// Held for a moment by a handler that checks the range against a fault; not poisoned.
const PINNED: u32 = 3;
/// A handler is mapping over the range; counts as poisoned.
const FIXING: u32 = 4;
/// The range was replaced by anonymous memory.
const REPLACED: u32 = 5;
/// Mapping over the range failed: a fault in it is passed on, not retried.
const BROKEN: u32 = 6;
/// Bits of the state.
const LIFECYCLE: u32 = 0xff;
/// Flag on an `ACTIVE` (or `PINNED`) entry: another entry's range that overlaps this one was
/// replaced, so some of this range's pages were too. The entry is poisoned, but a fault in
/// the rest of its range still has to be repaired.
const TAINTED: u32 = 0x100;

/// One registered range: `start` and `len` are page multiples, written only while the entry is
/// `REGISTERING` and published by the `Release` store of `ACTIVE`.
struct Entry {
    state: AtomicU32,
    start: AtomicUsize,
    len: AtomicUsize,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            state: AtomicU32::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// The range as last written. Exact only while the caller holds the entry (owner, pin or
    /// `FIXING`); otherwise a hint that must be confirmed after pinning.
    fn range(&self) -> (usize, usize) {
        (
            self.start.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed),
        )
    }
}

static TABLE: [Entry; CAPACITY] = [const { Entry::new() }; CAPACITY];

/// An action to chain to: `sa_sigaction` (`SIG_DFL`, `SIG_IGN` or a function address) and
/// `sa_flags`. Written once, before `ready` is set, and only read after that, so that a
/// handler never pairs one action's address with another's flags.
struct Recorded {
    action: AtomicUsize,
    flags: AtomicUsize,
    ready: AtomicBool,
}

impl Recorded {
    const fn new(ready: bool) -> Recorded {
        Recorded {
            action: AtomicUsize::new(libc::SIG_DFL),
            flags: AtomicUsize::new(0),
            ready: AtomicBool::new(ready),
        }
    }
}

/// Number of distinct actions that can be recorded over the life of the process.
const RECORDED_SLOTS: usize = 32;

/// Every action recorded so far. Slot 0 is the default action.
static RECORDED: [Recorded; RECORDED_SLOTS] = {
    let mut slots = [const { Recorded::new(false) }; RECORDED_SLOTS];
    slots[0] = Recorded::new(true);
    slots
};
/// Slots of `RECORDED` claimed so far.
static RECORDED_USED: AtomicUsize = AtomicUsize::new(1);
/// The slot of `RECORDED` holding the action that was in place before ours.
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);

static INSTALL: Once = Once::new();

/// `register` found no free entry: all [`CAPACITY`] are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {CAPACITY} SIGBUS guard entries are in use")
    }
}

impl std::error::Error for Full {}

/// Installs the `SIGBUS` handler, once per process; later calls (from any thread) return at
/// once. [`Guard::register`] calls it, so calling it directly is only needed to fix the moment
/// at which the previous handler is recorded.
pub(crate) fn install() {
    INSTALL.call_once(install_now);
}

/// Records the current `SIGBUS` action as the one to chain to and installs ours. Unlike
/// [`install`] this runs every time it is called (tests in forked children use that).
fn install_now() {
    // SAFETY: `sigaction` is a plain C struct for which all-zero bytes are a valid value.
    let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries; `before` is a valid, writable `sigaction`.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut before) };
    assert_eq!(rc, 0, "sigaction(SIGBUS) query failed");
    take_over(&before).expect("sigaction(SIGBUS) install failed");
}

/// Records `before` (the action in place now) as the one to chain to and puts ours in its
/// place. Async-signal-safe: the handler calls it too. Fails, leaving the action in place,
/// when `before` cannot be recorded (all slots hold other actions) or `sigaction` fails.
fn take_over(before: &libc::sigaction) -> Result<(), ()> {
    // The previous action is recorded before ours is in place, so a handler running in another
    // thread right after the switch already finds it.
    let slot = record(before).ok_or(())?;
    PREVIOUS.store(slot, Ordering::Release);

    // SAFETY: all-zero bytes are a valid `sigaction`.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = handler_address();
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `ours.sa_mask` is a valid, writable `sigset_t` (sigemptyset is async-signal-safe).
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    // SAFETY: as above, all-zero bytes are a valid `sigaction`.
    let mut replaced: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `ours` is fully initialised and its handler is an `extern "C"` function with the
    // SA_SIGINFO signature; `replaced` is valid and writable.
    if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut replaced) } != 0 {
        return Err(());
    }
    // Someone else changed the action between the two calls: chain to what we replaced.
    if replaced.sa_sigaction != before.sa_sigaction || replaced.sa_flags != before.sa_flags {
        if let Some(slot) = record(&replaced) {
            PREVIOUS.store(slot, Ordering::Release);
        }
    }
    Ok(())
}

fn handler_address() -> usize {
    on_sigbus as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize
}

/// The slot of `RECORDED` that holds `action` (its handler and flags), filling a new one if
/// none does yet; `None` when all slots hold other actions. Lock-free and async-signal-safe.
fn record(action: &libc::sigaction) -> Option<usize> {
    // Chaining to ourselves (install_now run twice) would recurse: treat it as the default.
    let (handler, flags) = if action.sa_sigaction == handler_address() {
        (libc::SIG_DFL, 0)
    } else {
        (action.sa_sigaction, action.sa_flags as usize)
    };
    record_pair(handler, flags)
}

fn record_pair(handler: usize, flags: usize) -> Option<usize> {
    // Flags do not matter for the default action and for ignoring.
    let flags = if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        0
    } else {
        flags
    };
    let used = RECORDED_USED.load(Ordering::Acquire).min(RECORDED_SLOTS);
    let found = RECORDED[..used].iter().position(|slot| {
        slot.ready.load(Ordering::Acquire)
            && slot.action.load(Ordering::Relaxed) == handler
            && slot.flags.load(Ordering::Relaxed) == flags
    });
    if found.is_some() {
        return found;
    }
    // Two racing calls for the same action may fill a slot each; that only uses one more.
    let index = RECORDED_USED
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used < RECORDED_SLOTS).then_some(used + 1)
        })
        .ok()?;
    let slot = &RECORDED[index];
    slot.action.store(handler, Ordering::Relaxed);
    slot.flags.store(flags, Ordering::Relaxed);
    slot.ready.store(true, Ordering::Release);
    Some(index)
}

/// The action to chain to: its handler (or `SIG_DFL`, `SIG_IGN`) and flags.
fn previous() -> (usize, usize) {
    let slot = &RECORDED[PREVIOUS.load(Ordering::Acquire)];
    (
        slot.action.load(Ordering::Relaxed),
        slot.flags.load(Ordering::Relaxed),
    )
}

/// A registered range. While it lives, a `SIGBUS` inside the range replaces the range with
/// zero-filled private memory instead of killing the process; [`Guard::poisoned`] tells
/// whether that happened. Dropping it unregisters the range; see the module documentation for
/// the required order (drop the guard, then unmap).
#[derive(Debug)]
pub(crate) struct Guard {
    index: usize,
}

impl Guard {
    /// Registers `len` bytes from `base` (rounded out to whole pages), installing the handler
    /// first if needed. An empty range is accepted and never matches a fault.
    ///
    /// # Errors
    /// [`Full`] when all [`CAPACITY`] entries are in use.
    ///
    /// # Panics
    /// If the range wraps around the end of the address space.
    ///
    /// # Safety
    /// The page-rounded range must lie inside mappings owned by the caller, which stay mapped
    /// until the guard is dropped, and every access to it must be made through raw pointers
    /// (no references) by code that checks [`Guard::poisoned`] afterwards: after a fault in the
    /// range its contents are replaced by zeros behind the back of any such access.
    pub(crate) unsafe fn register(base: *mut u8, len: usize) -> Result<Guard, Full> {
        install();
        let (start, len) = if len == 0 {
            (0, 0)
        } else {
            let page = rustix::param::page_size();
            let addr = base.addr();
            let end = addr
                .checked_add(len)
                .and_then(|end| end.checked_next_multiple_of(page))
                .expect("guarded range wraps around the address space");
            let start = addr - addr % page;
            (start, end - start)
        };
        for (index, entry) in TABLE.iter().enumerate() {
            if entry.state.load(Ordering::Relaxed) == FREE
                && entry
                    .state
                    .compare_exchange(FREE, REGISTERING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                entry.start.store(start, Ordering::Relaxed);
                entry.len.store(len, Ordering::Relaxed);
                entry.state.store(ACTIVE, Ordering::Release);
                return Ok(Guard { index });
            }
        }
        Err(Full)
    }

    /// Whether a fault in the range (or in an overlapping guarded range) was survived or is
    /// being repaired right now: from then on (some of) the range reads zeros and writes to it
    /// reach no one else. Never goes back to `false`.
    pub(crate) fn poisoned(&self) -> bool {
        let state = TABLE[self.index].state.load(Ordering::Acquire);
        state & TAINTED != 0 || matches!(state & LIFECYCLE, FIXING | REPLACED | BROKEN)
    }

    /// The registered, page-rounded range `(start, len)`.
    #[cfg(test)]
    fn range(&self) -> (usize, usize) {
        TABLE[self.index].range()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let entry = &TABLE[self.index];
        loop {
            let state = entry.state.load(Ordering::Acquire);
            match state & LIFECYCLE {
                ACTIVE | REPLACED | BROKEN => {
                    // AcqRel: after this no handler can pin the entry for our range, and a
                    // handler that had pinned it released it before (its store is acquired).
                    if entry
                        .state
                        .compare_exchange(state, FREE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                // A handler in another thread holds the entry for a few instructions (PINNED)
                // or for one mmap call (FIXING); it never waits for us.
                PINNED | FIXING => std::thread::yield_now(),
                _ => unreachable!("SIGBUS guard entry {} in state {state:#x}", self.index),
            }
        }
    }
}

/// Which `si_code`s are faults of the interrupted instruction, which recur when the handler
/// returns (as opposed to signals sent by a process or reported asynchronously).
fn is_synchronous_fault(code: c_int) -> bool {
    matches!(
        code,
        libc::BUS_ADRALN | libc::BUS_ADRERR | libc::BUS_OBJERR | libc::BUS_MCEERR_AR
    )
}

extern "C" fn on_sigbus(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let errno = errno_location();
    // SAFETY: `errno_location` returns the calling thread's errno, valid for the thread's life.
    let saved_errno = unsafe { *errno };
    let code = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        unsafe { (*info).si_code }
    };
    let recovered = code == libc::BUS_ADRERR && {
        // SAFETY: for a kernel-generated BUS_ADRERR the sigfault member (si_addr) is the one
        // filled in.
        let addr = unsafe { (*info).si_addr() }.addr();
        recover(addr)
    };
    if !recovered {
        chain(sig, info, context, code);
    }
    // SAFETY: as above.
    unsafe { *errno = saved_errno };
}

/// Handles a fault at `addr`. Returns `true` when the access should simply be retried: the
/// range was replaced now, or is being or has been replaced by another thread, or the entry
/// changed under us (the retry faults again if needed and is judged afresh).
fn recover(addr: usize) -> bool {
    for entry in TABLE.iter() {
        let state = entry.state.load(Ordering::Acquire);
        let lifecycle = state & LIFECYCLE;
        if !matches!(lifecycle, ACTIVE | PINNED | FIXING | REPLACED) {
            continue;
        }
        let (start, len) = entry.range();
        if addr.wrapping_sub(start) >= len {
            continue;
        }
        if lifecycle != ACTIVE {
            // Replaced (a fault that raced with the replacement) or in another handler's
            // hands for a moment: retry.
            return true;
        }
        let pinned = PINNED | (state & TAINTED);
        if entry
            .state
            .compare_exchange(state, pinned, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return true;
        }
        // Pinned: the range is now the exact one of the current registration, and no one
        // else changes the state until we store it.
        let (start, len) = entry.range();
        if addr.wrapping_sub(start) >= len {
            // A stale reading: the entry was re-registered for another range.
            entry.state.store(state, Ordering::Release);
            continue;
        }
        // Marked before the replacement exists, so whoever reads its zeros sees the mark.
        entry.state.store(FIXING, Ordering::SeqCst);
        poison_overlapping(entry, start, len);
        // SAFETY: the range lies inside mappings of the guard's owner, which stay mapped until
        // the guard is dropped, and the drop waits while the entry is FIXING; so this replaces
        // only pages of that owner (the `register` contract), whose accesses check `poisoned`.
        let mapped = unsafe {
            libc::mmap(
                start as *mut c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        // Poisoned either way: the range's object was truncated under it.
        if mapped == libc::MAP_FAILED {
            entry.state.store(BROKEN, Ordering::Release);
            return false;
        }
        entry.state.store(REPLACED, Ordering::Release);
        return true;
    }
    false
}

/// Marks every other active entry whose range overlaps `[start, start + len)` tainted: part
/// of it is about to be replaced.
fn poison_overlapping(fixing: &Entry, start: usize, len: usize) {
    let overlaps =
        |(s, l): (usize, usize)| l != 0 && s < start.wrapping_add(len) && start < s.wrapping_add(l);
    for entry in TABLE.iter() {
        if std::ptr::eq(entry, fixing) {
            continue;
        }
        loop {
            let state = entry.state.load(Ordering::Acquire);
            match state {
                ACTIVE if overlaps(entry.range()) => {
                    if entry
                        .state
                        .compare_exchange(ACTIVE, PINNED, Ordering::Acquire, Ordering::Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    let verdict = if overlaps(entry.range()) {
                        ACTIVE | TAINTED
                    } else {
                        ACTIVE
                    };
                    entry.state.store(verdict, Ordering::Release);
                    break;
                }
                // Another handler is checking this entry; it holds it only for a few
                // instructions and never waits while doing so.
                PINNED => std::hint::spin_loop(),
                // Free, being registered, not overlapping, already tainted, or already being
                // replaced.
                _ => break,
            }
        }
    }
}

/// Passes a `SIGBUS` that is not ours to the previous action.
fn chain(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void, code: c_int) {
    let (action, flags) = previous();
    if action == libc::SIG_DFL || action == libc::SIG_IGN {
        let synchronous = is_synchronous_fault(code);
        if action == libc::SIG_IGN && !synchronous {
            return;
        }
        reset_to_default();
        if !synchronous {
            // SIGBUS is blocked while we run: delivered, with the default action, on return.
            // SAFETY: `raise` is async-signal-safe and has no memory preconditions.
            unsafe { libc::raise(libc::SIGBUS) };
        }
        // A fault recurs when we return and, with the default action, kills the process.
        return;
    }
    if flags & libc::SA_RESETHAND as usize != 0 {
        // The kernel would restore the default action on entry to the handler: that becomes
        // the action we chain to, and ours stays in place.
        if let Some(slot) = record_pair(libc::SIG_DFL, 0) {
            PREVIOUS.store(slot, Ordering::Release);
        }
    }
    if flags & libc::SA_SIGINFO as usize != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its address is a
        // handler of this signature, and it is called with the arguments the kernel gave us.
        let handler = unsafe {
            std::mem::transmute::<usize, extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)>(
                action,
            )
        };
        handler(sig, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the address is a plain `void (*)(int)` handler.
        let handler = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(action) };
        handler(sig);
    }
    reinstate();
}

/// After a chained handler returned: if it replaced our action (Rust's runtime handler, for
/// one, restores the default one and returns), what it put there becomes the action we chain
/// to and ours is put back. A fault that the handler meant to be fatal recurs on return, comes
/// back to us and is passed on to that action, which kills the process as intended.
fn reinstate() {
    // SAFETY: all-zero bytes are a valid `sigaction`.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries (async-signal-safe); `current` is valid and writable.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) } != 0 {
        return;
    }
    if current.sa_sigaction != handler_address() {
        // On failure the handler's choice stays in place, guards or not.
        let _ = take_over(&current);
    }
}

/// Restores the default `SIGBUS` action (async-signal-safe).
fn reset_to_default() {
    // SAFETY: all-zero bytes are a valid `sigaction`: SIG_DFL, no flags, empty mask.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `default` is a valid `sigaction`; a null `oldact` is allowed.
    unsafe { libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut()) };
}

fn errno_location() -> *mut c_int {
    #[cfg(target_os = "android")]
    // SAFETY: `__errno` has no preconditions and is async-signal-safe.
    let location = unsafe { libc::__errno() };
    #[cfg(not(target_os = "android"))]
    // SAFETY: `__errno_location` has no preconditions and is async-signal-safe.
    let location = unsafe { libc::__errno_location() };
    location
}

#[cfg(test)]
#[path = "sigbus_tests.rs"]
mod tests;
