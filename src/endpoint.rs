//! What every ring handle keeps about itself, whatever the ring kind: the liveness throttle,
//! the fork guard, the poisoned state, and the wait strategy and statistics.

use std::cell::Cell;
use std::time::Duration;

use crate::error::Corruption;
use crate::storage::{Presence, Storage};
use crate::sync::Throttle;
use crate::sync::waiter::{SpinBudget, WaitStats, WaitStrategy};

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
    /// Set once corruption was found; every later call reports it.
    pub(crate) broken: Option<Corruption>,
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

    /// Records corruption found in the ring: this handle reports it from now on, and the
    /// ring is poisoned for later openers. If the ring's object was truncated under the
    /// mapping, that is what was found (the memory read zeros), and what is reported.
    #[cold]
    pub(crate) fn corrupt(&mut self, storage: &Storage, c: Corruption) -> Corruption {
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
    /// shared rings.
    pub(crate) fn peer_gone(&mut self, storage: &Storage, slot: usize) -> bool {
        storage.is_shared() && self.throttle.due() && storage.endpoint_gone(slot)
    }

    /// Whether `is_disconnected` may look at the peers' processes now (throttled
    /// separately from the blocked calls, through `&self`).
    pub(crate) fn probe_due(&self) -> bool {
        let mut t = self.probe.get();
        let due = t.due();
        self.probe.set(t);
        due
    }

    /// Called by every close: whether this is the first close of an endpoint that this
    /// process attached, which must then tell its peers. A copy inherited by a forked child
    /// is not the endpoint (the parent still uses it): dropping it only unmaps the ring, as
    /// closing an unused pipe end in a child must not end the parent's stream.
    pub(crate) fn begin_close(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        std::process::id() == self.owner_pid
    }
}
