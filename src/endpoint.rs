//! What every ring handle keeps about itself, whatever the ring kind: the liveness throttle,
//! the fork guard, the poisoned state, and the wait strategy and statistics.
//!
//! # The fork guard
//!
//! `fork` copies every handle of the parent into the child, bit for bit, and the copies map
//! the same shared memory. A copy is not an endpoint of the child: the parent still uses the
//! endpoint, and two processes driving one SPSC end (or one MPMC endpoint's claim record)
//! would overwrite each other's messages. So a copy fails, in the child only, with a
//! [`Corruption`] for which [`Corruption::is_inherited`] holds, on every call that would move
//! data, and writes nothing into the mapping: no claim, no publish, no release, no poison,
//! no closing when dropped (the parent's ring goes on untouched).
//!
//! How a handle knows that it is a copy, without a system call per message: the process
//! keeps a *fork generation*, a word that a `pthread_atfork` child handler increments in
//! every child forked after the first handle was made (the handler is registered then,
//! once). A handle records the generation it was made in; the check at the entry of each
//! call is one relaxed load of the word and a compare. The word only ever changes in a
//! child, before `fork` returns there, while the child has one thread. A child made by a raw
//! `clone` system call, which bypasses the C library's `fork` and its handlers, is not seen.

use std::cell::Cell;
use std::sync::Once;
use std::time::Duration;

use crate::error::Corruption;
use crate::storage::{Presence, Storage};
use crate::sync::Throttle;
use crate::sync::shared::{AtomicU32, Ordering};
use crate::sync::waiter::{SpinBudget, WaitStats, WaitStrategy};

/// This process's fork generation: how many `fork`s lie between the process that first
/// made a handle and this one (incremented in each child, never in a parent). Process-local
/// bookkeeping, never in shared memory and never modelled by loom.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Registers [`forked_child`] with `pthread_atfork`, once per process.
static FORK_HANDLER: Once = Once::new();

/// Runs in every child forked by the C library's `fork`, before `fork` returns there: the
/// handles copied from the parent are from an older generation from now on. Async-signal
/// safe (one atomic add), as a handler running after a multithreaded parent forked must be.
extern "C" fn forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The switch of the mutant check that shows the fork guard is what keeps a forked child's
/// copies off the parent's ring (`tests/fork.rs`): with it, no copy knows it is one.
const fn mutant_no_fork_guard() -> bool {
    cfg!(shmring_mutant = "no_fork_guard")
}

/// The current fork generation, with the handler registered (call when making a handle).
pub(crate) fn fork_generation() -> u32 {
    FORK_HANDLER.call_once(|| {
        // SAFETY: `forked_child` is an `extern "C" fn()` of this module, which only adds to
        // an atomic of this module; glibc drops the handlers of a shared object when it is
        // unloaded, so the pointer never outlives the code.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        // ENOMEM is its only error: without the handler a forked child could not tell its
        // copies apart, so this is treated as the allocation failure it is, as every
        // allocation of the handle would be: the process aborts (no unwinding panic).
        if rc != 0 {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<[usize; 4]>());
        }
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// State shared by the handles of both ring kinds (one per handle).
#[derive(Debug)]
pub(crate) struct EndpointState {
    /// Rate limit of the peer checks made by blocked and non-blocking calls.
    pub(crate) throttle: Throttle,
    /// Rate limit of `is_disconnected`, which takes `&self` (handles are not `Sync`).
    probe: Cell<Throttle>,
    /// The process that attached this handle; a copy inherited by a forked child is not
    /// that endpoint and must not close it.
    owner_pid: u32,
    /// The fork generation this handle was made in; any other means a copy inherited by a
    /// forked child (see "The fork guard").
    generation: u32,
    /// Set once corruption was found; every later call reports it (read through `fault`).
    broken: Option<Corruption>,
    /// Set by the first close.
    closed: bool,
    /// How blocked calls wait.
    pub(crate) strategy: WaitStrategy,
    /// How often this handle had to wait and sleep.
    pub(crate) stats: WaitStats,
    /// How long the `Adaptive` strategy spins before it sleeps.
    pub(crate) spin: SpinBudget,
    /// For an endpoint of a shared ring: its hold on its entry of the endpoint table, which
    /// tells peers it is alive. Released by `end_presence`, after the entry is marked closed.
    presence: Option<Presence>,
}

impl EndpointState {
    /// The state of a handle attached now, in this process; `interval` is the shortest time
    /// between two looks at the peers' liveness.
    pub(crate) fn new(strategy: WaitStrategy, interval: Duration) -> EndpointState {
        EndpointState {
            throttle: Throttle::new(interval),
            probe: Cell::new(Throttle::new(interval)),
            owner_pid: std::process::id(),
            generation: fork_generation(),
            broken: None,
            closed: false,
            strategy,
            stats: WaitStats::default(),
            spin: SpinBudget::new(),
            presence: None,
        }
    }

    /// The same state, holding the endpoint's presence in the endpoint table.
    pub(crate) fn with_presence(mut self, presence: Option<Presence>) -> EndpointState {
        self.presence = presence;
        self
    }

    /// Lets go of the endpoint's entry (call after marking it closed): peers now see this
    /// endpoint gone.
    pub(crate) fn end_presence(&mut self) {
        self.presence = None;
    }

    /// The same state, already broken by `c` (corruption found while attaching).
    pub(crate) fn with_broken(mut self, c: Option<Corruption>) -> EndpointState {
        self.broken = c;
        self
    }

    /// Whether this handle is a copy inherited by a forked child: one relaxed load and a
    /// compare (see "The fork guard").
    #[inline]
    pub(crate) fn inherited(&self) -> bool {
        !mutant_no_fork_guard() && FORK_GENERATION.load(Ordering::Relaxed) != self.generation
    }

    /// What an inherited copy reports: the handle's endpoint belongs to process
    /// `owner_pid`.
    #[cold]
    pub(crate) fn inherited_error(&self) -> Corruption {
        Corruption::inherited(self.owner_pid)
    }

    /// Whether a call that moves data must stop at its entry: the handle is broken, or it
    /// is an inherited copy. The check of every such call; [`fault`](Self::fault) says why.
    #[inline]
    pub(crate) fn stopped(&self) -> bool {
        self.broken.is_some() || self.inherited()
    }

    /// What a call that moves data reports at its entry, if it must stop: the handle was
    /// inherited by a forked child (whatever else is true), or the corruption it found
    /// before. `None` for a sound handle of this process.
    #[inline]
    pub(crate) fn fault(&self) -> Option<Corruption> {
        if self.stopped() {
            return Some(self.fault_slow());
        }
        None
    }

    #[cold]
    fn fault_slow(&self) -> Corruption {
        match self.broken {
            Some(c) if !self.inherited() => c,
            _ => self.inherited_error(),
        }
    }

    /// Records corruption found in the ring: this handle reports it from now on, and the
    /// ring is poisoned for later openers. If the ring's object was truncated under the
    /// mapping, that is what was found (the memory read zeros), and what is reported.
    ///
    /// An inherited copy records and poisons nothing (the ring is the parent's): it reports
    /// that it is inherited. The calls check [`fault`](Self::fault) before they read the
    /// ring, so this only backs that up.
    #[cold]
    pub(crate) fn corrupt(&mut self, storage: &Storage, c: Corruption) -> Corruption {
        if self.inherited() {
            return self.inherited_error();
        }
        let c = storage.truncation().unwrap_or(c);
        self.broken = Some(c);
        storage.poison();
        c
    }

    /// For the slow paths (after a wait, or when a non-blocking call found nothing to do):
    /// whether the ring's object was truncated under the mapping. If so the handle is broken
    /// from now on, as after any corruption, and this returns what to report. After a
    /// truncation the ring reads zeros, which look like an empty ring with live peers: this
    /// is what turns that into an error instead of a wait that never ends.
    #[cold]
    pub(crate) fn truncated(&mut self, storage: &Storage) -> Option<Corruption> {
        let c = storage.truncation()?;
        self.broken = Some(c);
        Some(c)
    }

    /// Whether the owner of endpoint `slot` is known to be gone; looks (throttled) only for
    /// shared rings, and never from an inherited copy (as `probe_due`).
    pub(crate) fn peer_gone(&mut self, storage: &Storage, slot: usize) -> bool {
        storage.is_shared()
            && !self.inherited()
            && self.throttle.due()
            && storage.endpoint_gone(slot)
    }

    /// Whether `is_disconnected` may look at the peers' processes now (throttled
    /// separately from the blocked calls, through `&self`). Never for an inherited copy: a
    /// peer found dead would be closed or reaped for it, a write into the parent's ring, so
    /// the copy answers from the closed flags alone.
    pub(crate) fn probe_due(&self) -> bool {
        if self.inherited() {
            return false;
        }
        let mut t = self.probe.get();
        let due = t.due();
        self.probe.set(t);
        due
    }

    /// Called by every close: whether this is the first close of an endpoint that this
    /// process attached, which must then tell its peers. A copy inherited by a forked child
    /// is not the endpoint (the parent still uses it): dropping it only unmaps the ring, as
    /// closing an unused pipe end in a child must not end the parent's stream. (Decided by
    /// pid, which also covers a child made without the `fork` handler running.)
    pub(crate) fn begin_close(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        std::process::id() == self.owner_pid
    }
}
