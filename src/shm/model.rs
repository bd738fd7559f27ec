//! The endpoint table of the heap rings that the loom models check: the registry protocol
//! of `registry`, the very code that runs on a shared ring's header, on a table of the loom
//! seam's atomics, so that the registry and crash-recovery code of the rings can be
//! model-checked on a heap ring.
//!
//! Only the liveness token differs. A shared ring's is an OFD lock, which loom cannot
//! model; here each entry has a *token word* standing for it: 1 while held. An endpoint
//! takes it before it claims the entry and lets go of it when its handle is dropped after
//! closing; [`ModelRegistry::kill`] lets go of it the way the kernel does when a process
//! dies (SIGKILL): the model thread that plays the dying process makes that store itself,
//! after its last action, and then forgets the handle (a killed process runs no
//! destructor). The kernel takes a spinlock of the file for every lock operation, test
//! included, so each operation sees the latest state of the byte and synchronises with the
//! one before. The model promises only what the protocol needs of it (see `registry`), and
//! so less than the kernel, which cannot hide a bug: every operation on a token word is a
//! read-modify-write (a probe is `fetch_or(0)`), never a plain load, which could read an old
//! "held" for ever; letting go is `Release` and a probe `Acquire`, so a probe that finds the
//! token free sees what its holder did before letting go; a take is `Relaxed`, atomic and
//! nothing more. The kernel orders the operations on all bytes of a file; the model orders
//! only those of one entry.
//!
//! All the model's endpoints are threads of one process: each records this process's pid.
//!
//! The rings reach this registry only through the [`Registry`] trait, like the shared one.
//! It is built by `mpmc::__model::channel_with_registry`, for the loom models and the
//! tests; the normal `channel()` has no registry.

use std::fmt;
use std::sync::Arc;

use super::layout::EP_FREE;
use super::registry::{self, Entry, Liveness, Taker};
use crate::storage::{EndpointStatus, Presence, Refused, Registry};
use crate::sync::{AtomicU32, Ordering};

/// One entry of the table, as a shared ring's (without the pid and start time, which are
/// for display only).
struct ModelEntry {
    state: AtomicU32,
    role: AtomicU32,
}

impl Entry for ModelEntry {
    /// A pid.
    type Owner = u32;

    fn load(&self, order: Ordering) -> u32 {
        self.state.load(order)
    }

    fn store(&self, word: u32, order: Ordering) {
        self.state.store(word, order);
    }

    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.state.compare_exchange(current, new, success, failure)
    }

    fn role(&self, order: Ordering) -> u32 {
        self.role.load(order)
    }

    fn set_role(&self, role: u32, order: Ordering) {
        self.role.store(role, order);
    }

    fn set_owner(&self, _owner: &u32) {}

    fn pid(owner: &u32) -> u32 {
        *owner
    }
}

/// The token words, one per entry: 1 while held.
struct Tokens(Box<[AtomicU32]>);

impl Tokens {
    /// Lets go of entry `slot`'s token (its owner closed, or died).
    fn release(&self, slot: usize) {
        if let Some(t) = self.0.get(slot) {
            // SYNC POINT: Release pairs with the Acquire of `held`: whoever finds the token
            // free sees everything its owner did before letting go.
            t.swap(0, Ordering::Release);
        }
    }
}

impl Liveness for Tokens {
    fn held(&self, slot: usize) -> bool {
        self.0
            .get(slot)
            // SYNC POINT: Acquire pairs with the Release of `release`. A read-modify-write,
            // never a plain load, which could read an old "held" for ever; it continues the
            // release sequence of the store it reads, so a later probe still pairs with it.
            .is_some_and(|t| t.fetch_or(0, Ordering::Acquire) != 0)
    }
}

/// An attacher's hand on the token words.
struct ModelTaker(Arc<Table>);

impl Taker for ModelTaker {
    type Hold = Held;

    fn take(&self, slot: usize) -> bool {
        self.0.tokens.0.get(slot).is_some_and(|t| {
            // Relaxed: a take need only have one winner (see the module docs).
            t.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        })
    }

    fn release(&self, slot: usize) {
        self.0.tokens.release(slot);
    }

    fn hold(self, slot: usize) -> Held {
        Held {
            table: self.0,
            slot,
        }
    }
}

/// An endpoint's hold on its entry's token; lets go when dropped.
struct Held {
    table: Arc<Table>,
    slot: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.table.tokens.release(self.slot);
    }
}

struct Table {
    entries: Box<[ModelEntry]>,
    tokens: Tokens,
    poisoned: AtomicU32,
}

/// An endpoint registry of `len` entries on the heap (cheap to clone: the clones share the
/// table).
#[derive(Clone)]
pub(crate) struct ModelRegistry(Arc<Table>);

impl fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("entries", &self.0.entries.len())
            .finish_non_exhaustive()
    }
}

impl ModelRegistry {
    /// A registry of `len` free entries.
    pub(crate) fn new(len: usize) -> ModelRegistry {
        ModelRegistry(Arc::new(Table {
            entries: (0..len)
                .map(|_| ModelEntry {
                    state: AtomicU32::new(EP_FREE),
                    role: AtomicU32::new(0),
                })
                .collect(),
            tokens: Tokens((0..len).map(|_| AtomicU32::new(0)).collect()),
            poisoned: AtomicU32::new(0),
        }))
    }

    /// The process that holds entry `slot` dies: the kernel lets go of its token. Its handle
    /// must never be dropped afterwards (a killed process runs no destructor).
    pub(crate) fn kill(&self, slot: usize) {
        self.0.tokens.release(slot);
    }

    fn taker(&self) -> ModelTaker {
        ModelTaker(self.0.clone())
    }
}

impl Registry for ModelRegistry {
    fn attach(&self, slot: usize, role: u32) -> Result<Presence, Refused> {
        registry::attach(
            &self.0.entries,
            slot,
            role,
            &std::process::id(),
            self.taker(),
        )
        .map(Presence::new)
    }

    fn attach_any(&self, len: usize, role: u32) -> Result<Option<(usize, Presence)>, Refused> {
        let pid = std::process::id();
        Ok(
            registry::attach_any(&self.0.entries, len, role, &pid, self.taker())
                .map(|(slot, held)| (slot, Presence::new(held))),
        )
    }

    fn attached_role(&self, slot: usize) -> Option<u32> {
        registry::attached_role(&self.0.entries, slot)
    }

    fn reap_if_dead(&self, slot: usize) -> Option<u32> {
        registry::reap_if_dead(&self.0.entries, &self.0.tokens, slot)
    }

    fn detach(&self, slot: usize) {
        registry::detach(&self.0.entries, slot);
    }

    fn status(&self, slot: usize) -> EndpointStatus {
        registry::status(&self.0.entries, &self.0.tokens, slot)
    }

    fn poison(&self) {
        self.0.poisoned.store(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shm::layout::{EP_ATTACHED, EP_CLOSED, EP_PID_SHIFT, EP_TAKING};
    use crate::storage::{ROLE_CONSUMER, ROLE_PRODUCER};

    #[test]
    fn attach_close_and_reuse_bump_the_generation() {
        let r = ModelRegistry::new(2);
        let (a, pa) = r.attach_any(2, ROLE_PRODUCER).unwrap().unwrap();
        let (b, pb) = r.attach_any(2, ROLE_CONSUMER).unwrap().unwrap();
        assert_eq!((a, b), (0, 1));
        assert!(r.attach_any(2, ROLE_PRODUCER).unwrap().is_none(), "full");
        assert_eq!(r.attached_role(0), Some(ROLE_PRODUCER));
        assert_eq!(r.status(0), EndpointStatus::Alive);
        // Close, then let go: the entry is closed and can be taken again.
        r.detach(0);
        assert_eq!(r.status(0), EndpointStatus::Gone);
        drop(pa);
        let (c, _pc) = r.attach_any(2, ROLE_CONSUMER).unwrap().unwrap();
        assert_eq!(c, 0);
        assert_eq!(
            r.0.entries[0].state.load(Ordering::Relaxed),
            (2 << 8) | EP_ATTACHED
        );
        assert_eq!(r.attached_role(0), Some(ROLE_CONSUMER));
        drop(pb);
    }

    #[test]
    fn a_killed_endpoint_is_reaped_once_and_only_when_dead() {
        let r = ModelRegistry::new(2);
        let (a, pa) = r.attach_any(2, ROLE_PRODUCER).unwrap().unwrap();
        assert_eq!(r.reap_if_dead(a), None, "alive");
        r.kill(a);
        std::mem::forget(pa);
        assert_eq!(r.status(a), EndpointStatus::Gone);
        assert_eq!(r.attached_role(a), Some(ROLE_PRODUCER), "not reaped yet");
        assert_eq!(r.reap_if_dead(a), Some(ROLE_PRODUCER));
        assert_eq!(r.reap_if_dead(a), None, "exactly one reaper wins");
        assert_eq!(r.attached_role(a), None);
        r.poison();
        assert_eq!(r.0.poisoned.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_taker_killed_before_attaching_is_reclaimed_without_accounting() {
        let r = ModelRegistry::new(1);
        let pid = std::process::id();
        // Killed between taking the entry and attaching: the state word names the taker.
        assert!(r.taker().take(0));
        let ep = &r.0.entries[0];
        ep.state
            .store((pid << EP_PID_SHIFT) | EP_TAKING, Ordering::Relaxed);
        assert!(
            r.attach_any(1, ROLE_PRODUCER).unwrap().is_none(),
            "being taken"
        );
        assert_eq!(r.status(0), EndpointStatus::Alive);
        r.kill(0);
        assert_eq!(r.status(0), EndpointStatus::Gone);
        assert_eq!(r.reap_if_dead(0), None, "nothing to account for");
        assert_eq!(
            ep.state.load(Ordering::Relaxed),
            (pid << EP_PID_SHIFT) | EP_CLOSED
        );
        let (slot, _p) = r.attach_any(1, ROLE_CONSUMER).unwrap().unwrap();
        assert_eq!(slot, 0);
        assert_eq!(r.attached_role(0), Some(ROLE_CONSUMER));
    }

    #[test]
    fn fixed_attach_refuses_taken_and_closed_entries() {
        let r = ModelRegistry::new(1);
        let p = r.attach(0, ROLE_PRODUCER).unwrap();
        assert!(matches!(r.attach(0, ROLE_PRODUCER), Err(Refused::Taken)));
        r.detach(0);
        drop(p);
        assert!(matches!(r.attach(0, ROLE_PRODUCER), Err(Refused::Closed)));
        assert!(matches!(r.attach(1, ROLE_PRODUCER), Err(Refused::Closed)));
    }
}
