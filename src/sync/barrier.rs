//! The asymmetric barrier pair that lets a notifier skip its `SeqCst` fence.
//!
//! The eventcount (see [`waiter`](super::waiter)) is a Dekker pattern: the notifier stores
//! progress and then loads the waiter count, the waiter stores its announcement and then loads
//! the progress, and each side needs a full barrier between its store and its load. The
//! notifier runs on every message and the waiter only before it sleeps, so the cost is moved
//! to the waiter, as `liburcu` and the kernel's own users of `membarrier(2)` do:
//!
//! - [`light`], on the notifier's path, is only a compiler barrier once this process has
//!   registered with `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` (and a full fence until then,
//!   or for good if registration fails);
//! - [`heavy`], on the waiter's path, is a full fence plus
//!   `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes every thread of every
//!   registered process that is running on a CPU execute a full barrier before it returns
//!   (threads not on a CPU passed one when they were switched out).
//!
//! Why this is enough: take a notifier whose `light` is a compiler barrier (so its process is
//! registered) and the point at which the waiter's `membarrier` interrupted it. If that point
//! comes after the notifier's progress store, the store is visible when `membarrier` returns
//! and the waiter's re-check sees it. If it comes before, the notifier's load of the waiter
//! count executes after the barrier, so after the waiter's announcement became visible, and
//! the notifier wakes it. A notifier in a process that could not register uses a full fence,
//! which pairs with the waiter's own fence as before.
//!
//! Registration survives `fork` (the child shares the parent's registered state, as does the
//! flag below) and `exec` clears both. Under loom both barriers are read-modify-writes of one
//! location (see the model below), which give the pair's guarantee and nothing more.

#[cfg(not(loom))]
mod imp {
    use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

    use rustix::io::Errno;
    use rustix::thread::{MembarrierCommand, membarrier};

    const UNKNOWN: u8 = 0;
    const LIGHT: u8 = 1;
    const FULL: u8 = 2;

    /// Whether this process is registered for global expedited barriers.
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// The notifier's half: a compiler barrier in a registered process, else a full fence.
    #[inline]
    pub(crate) fn light() {
        if STATE.load(Ordering::Relaxed) == LIGHT {
            compiler_fence(Ordering::SeqCst);
        } else {
            full_and_register();
        }
    }

    #[cold]
    fn full_and_register() {
        fence(Ordering::SeqCst);
        register();
    }

    /// Registers this process once (a notifier keeps using full fences until this returns).
    /// Returns whether `light` is a compiler barrier from now on.
    pub(super) fn register() -> bool {
        match STATE.load(Ordering::Relaxed) {
            LIGHT => return true,
            FULL => return false,
            _ => {}
        }
        // Registering twice is harmless, so racing first callers need no lock.
        let state = match membarrier(MembarrierCommand::RegisterGlobalExpedited) {
            Ok(()) => LIGHT,
            Err(_) => FULL,
        };
        // Relaxed is enough: the kernel has recorded the registration before the system
        // call returned, and a thread that reads LIGHT reads a store made after that.
        STATE.store(state, Ordering::Relaxed);
        state == LIGHT
    }

    /// The waiter's half: a full fence, then a barrier on every registered process.
    ///
    /// Returns `false` when the system call failed and a registered notifier may be left
    /// uncovered: the caller must then not sleep for long, as a wake-up may be missed. An
    /// error code alone cannot tell "the kernel lacks the command" from "this process may not
    /// use it": a seccomp filter answers `ENOSYS`, `EPERM` or `EINVAL` as it was written to,
    /// while a peer process outside the filter registered and pays only compiler barriers.
    /// So a failure counts as covered only if the kernel itself says it has no
    /// `GLOBAL_EXPEDITED` (asked once, see [`refusal_covered`]).
    pub(crate) fn heavy() -> bool {
        fence(Ordering::SeqCst);
        match membarrier(MembarrierCommand::GlobalExpedited) {
            Ok(()) => true,
            Err(_) => refusal_covered(),
        }
    }

    const QUERY_UNKNOWN: u8 = 0;
    const QUERY_COVERED: u8 = 1;
    const QUERY_UNCOVERED: u8 = 2;

    /// The cached answer of [`covered_after_refusal`] for this kernel and process.
    static QUERY: AtomicU8 = AtomicU8::new(QUERY_UNKNOWN);

    /// Whether a refused `GLOBAL_EXPEDITED` still leaves every notifier covered, from the
    /// kernel's answer to `MEMBARRIER_CMD_QUERY`, asked once per process (racing first callers
    /// both ask; the answer is the same).
    #[cold]
    fn refusal_covered() -> bool {
        match QUERY.load(Ordering::Relaxed) {
            QUERY_COVERED => return true,
            QUERY_UNCOVERED => return false,
            _ => {}
        }
        let covered = covered_after_refusal(query());
        let state = if covered {
            QUERY_COVERED
        } else {
            QUERY_UNCOVERED
        };
        QUERY.store(state, Ordering::Relaxed);
        covered
    }

    /// `membarrier(MEMBARRIER_CMD_QUERY, 0)`: the commands the kernel supports, or the error.
    /// (rustix's `membarrier_query` turns an error into an empty set, which would read as
    /// "the kernel has none".)
    pub(super) fn query() -> Result<u32, Errno> {
        // SAFETY: MEMBARRIER_CMD_QUERY with flags 0 takes no pointers and changes nothing.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0) };
        if r < 0 {
            Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        } else {
            Ok(r as u32)
        }
    }

    /// The decision: after a refused `GLOBAL_EXPEDITED`, notifiers are covered only if the
    /// kernel answered the query and has no `GLOBAL_EXPEDITED` (nor its registration): then no
    /// process can have registered, and every notifier pays a full fence, which pairs with
    /// the waiter's own. If the query failed too, or the kernel has the command (so the
    /// refusal came from a filter on this process), a peer may have registered: uncovered.
    /// (A filter that fakes a successful query with an empty set cannot be told from an old
    /// kernel; such a filter fakes the barrier's success as well.)
    pub(super) fn covered_after_refusal(query: Result<u32, Errno>) -> bool {
        let global = (libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED
            | libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) as u32;
        match query {
            Ok(commands) => commands & global == 0,
            Err(_) => false,
        }
    }
}

/// The loom model of the pair. Both halves are read-modify-writes of one location, which
/// are totally ordered: whichever of a notifier's `light` and a waiter's `heavy` comes second
/// reads the first and synchronizes with it, so either the waiter sees the notifier's
/// progress or the notifier sees the waiter's announcement, which is all the real pair
/// promises. A `fence(SeqCst)` in `light` would promise more than a compiler barrier does:
/// it would order the notifier's earlier stores before *every* later store of its thread for
/// any acquiring reader, and so hide a missing Release elsewhere (the producer's close flag,
/// say, which follows a publish and its `light`). The RMW model orders them only for a
/// thread that itself touches the barrier location afterwards.
#[cfg(loom)]
mod imp {
    use super::super::{AtomicU32, Ordering, fence};

    loom::lazy_static! {
        static ref BARRIER: AtomicU32 = AtomicU32::new(0);
    }

    #[inline]
    pub(crate) fn light() {
        BARRIER.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn heavy() -> bool {
        fence(Ordering::SeqCst);
        BARRIER.fetch_add(1, Ordering::SeqCst);
        true
    }
}

pub(crate) use imp::{heavy, light};

#[cfg(all(test, not(loom)))]
mod tests {
    use rustix::io::Errno;
    use rustix::thread::{MembarrierCommand, membarrier_query};

    use super::imp::covered_after_refusal;

    #[test]
    fn a_refused_barrier_is_covered_only_when_the_kernel_lacks_the_command() {
        let global = libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED as u32;
        let register = libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED as u32;
        let private = (libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED
            | libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) as u32;
        let plain = libc::MEMBARRIER_CMD_GLOBAL as u32;
        // The kernel answered and has no global expedited barrier (Linux 4.3 to 4.15): nobody
        // can have registered.
        assert!(covered_after_refusal(Ok(0)));
        assert!(covered_after_refusal(Ok(plain)));
        assert!(covered_after_refusal(Ok(plain | private)));
        // The kernel has it, so the refusal was aimed at this process (seccomp): a peer may
        // have registered.
        assert!(!covered_after_refusal(Ok(global | register)));
        assert!(!covered_after_refusal(Ok(plain
            | global
            | register
            | private)));
        assert!(!covered_after_refusal(Ok(register)));
        // The query was refused as well: whatever the errno, nothing is known.
        for e in [Errno::NOSYS, Errno::INVAL, Errno::PERM, Errno::ACCESS] {
            assert!(!covered_after_refusal(Err(e)), "{e:?}");
        }
    }

    #[test]
    fn the_query_reports_what_rustix_reports() {
        match super::imp::query() {
            Ok(commands) => assert_eq!(commands, membarrier_query().bits()),
            Err(_) => assert!(membarrier_query().is_empty()),
        }
    }

    #[test]
    fn a_notifier_registers_and_then_pays_only_a_compiler_barrier() {
        // The first light barrier registers the process (the heap channel's notify does
        // exactly this on the first send).
        super::light();
        let registered = super::imp::register();
        assert_eq!(
            super::imp::register(),
            registered,
            "the outcome is remembered"
        );
        let supported = membarrier_query()
            .contains_command(MembarrierCommand::RegisterGlobalExpedited)
            && membarrier_query().contains_command(MembarrierCommand::GlobalExpedited);
        if supported {
            assert!(
                registered,
                "the kernel offers the barrier but registration failed"
            );
            assert!(super::heavy(), "a registered process can issue the barrier");
        } else {
            assert!(!registered);
        }
    }
}
