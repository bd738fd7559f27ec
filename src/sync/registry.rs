//! A model of the endpoint registry of shared rings, on this module's atomics, so that the
//! registry and crash-recovery code of the rings can be model-checked on a heap ring.
//!
//! The real registry (`shm/endpoints.rs`) lives in the header page of a shared object, where
//! loom's atomics cannot go, and tells the living from the dead by OFD locks. This one keeps
//! the same table on the heap and runs the same protocol on it, word for word:
//!
//! - an entry's `state` word holds FREE, CLAIMING, TAKING, ATTACHED or CLOSED in its low
//!   8 bits and a generation above them, bumped each time `attach_any` reuses the entry, so
//!   that a compare-exchange on a stale view of a reused entry fails;
//! - attach: take the entry's lock first (skip the entry if someone holds it), then
//!   compare-exchange the entry from free or closed to TAKING, store the role, store
//!   ATTACHED with Release; if the compare-exchange fails, let go of the lock and go on;
//! - close: mark the entry CLOSED (Release), then let go of the lock (dropping the
//!   [`Presence`]);
//! - reap: an entry in use whose lock is free belongs to a dead endpoint; the reaper closes
//!   it with a compare-exchange from the very word it saw.
//!
//! What differs is the lock. Each entry has a *liveness word* standing for the OFD lock on
//! its byte: 1 while held. An endpoint takes it before it claims the entry and lets go of it
//! when its handle is dropped after closing; [`ModelRegistry::kill`] lets go of it the way
//! the kernel does when a process dies (SIGKILL): the model thread that plays the dying
//! process makes that store itself, after its last action, and then forgets the handle (a
//! killed process runs no destructor). The kernel takes a spinlock of the file for every
//! lock operation, test included, so each operation sees the latest state of the byte and
//! synchronises with the one before: every operation on a liveness word is therefore an
//! `AcqRel` read-modify-write (a test is `fetch_or(0)`), never a plain load, which could read
//! an old "held" for ever. The kernel orders the operations on all bytes of a file; the model
//! orders only those of one entry, which promises less, so it cannot hide a bug.
//!
//! Unlike a shared ring's, an entry being taken keeps its generation (a shared ring shows the
//! taker's pid there, for display); no pid is involved in deciding liveness in either.
//!
//! The rings reach this registry only through the [`Registry`] trait, like the real one, so
//! the code that runs against it is the code that runs against shared memory. It is built by
//! `mpmc::__model::channel_with_registry`, for the loom models and the tests; the normal
//! `channel()` has no registry.

use std::fmt;
use std::sync::Arc;

use super::{AtomicU32, Ordering};
use crate::storage::{EndpointStatus, Presence, Refused, Registry};

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
const ATTACHED: u32 = 2;
const CLOSED: u32 = 3;
const TAKING: u32 = 4;
/// Bits of `state` holding the state proper; the rest is the generation.
const STATE_MASK: u32 = 0xff;
/// One step of the generation.
const GENERATION: u32 = 1 << 8;

/// One entry of the table.
struct Entry {
    /// State (low 8 bits) and generation, as a shared ring's entry.
    state: AtomicU32,
    /// Role code, written before ATTACHED is stored with Release.
    role: AtomicU32,
    /// The entry's lock: 1 while its endpoint (or an attacher) holds it.
    lock: AtomicU32,
}

struct Table {
    entries: Box<[Entry]>,
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

/// An endpoint's hold on its entry's lock; lets go when dropped.
struct Held {
    table: Arc<Table>,
    slot: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.table.unlock(self.slot);
    }
}

impl Table {
    fn entry(&self, slot: usize) -> Option<&Entry> {
        self.entries.get(slot)
    }

    /// Takes entry `slot`'s lock if nobody holds it.
    fn try_lock(&self, slot: usize) -> bool {
        self.entry(slot).is_some_and(|e| {
            // SYNC POINT: AcqRel, as every operation on the lock (see the module docs).
            e.lock
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Lets go of entry `slot`'s lock (its owner closed, or died).
    fn unlock(&self, slot: usize) {
        if let Some(e) = self.entry(slot) {
            // SYNC POINT: AcqRel pairs with the read-modify-writes of `try_lock` and `held`:
            // whoever finds the lock free sees everything its owner did before letting go.
            e.lock.swap(0, Ordering::AcqRel);
        }
    }

    /// Whether entry `slot`'s lock is held: the probe of a shared ring.
    fn held(&self, slot: usize) -> bool {
        self.entry(slot)
            .is_some_and(|e| e.lock.fetch_or(0, Ordering::AcqRel) != 0)
    }

    fn presence(self: &Arc<Table>, slot: usize) -> Presence {
        Presence::new(Held {
            table: self.clone(),
            slot,
        })
    }
}

impl ModelRegistry {
    /// A registry of `len` free entries.
    pub(crate) fn new(len: usize) -> ModelRegistry {
        ModelRegistry(Arc::new(Table {
            entries: (0..len)
                .map(|_| Entry {
                    state: AtomicU32::new(FREE),
                    role: AtomicU32::new(0),
                    lock: AtomicU32::new(0),
                })
                .collect(),
            poisoned: AtomicU32::new(0),
        }))
    }

    /// The process that holds entry `slot` dies: the kernel lets go of its lock. Its handle
    /// must never be dropped afterwards (a killed process runs no destructor).
    pub(crate) fn kill(&self, slot: usize) {
        self.0.unlock(slot);
    }
}

impl Registry for ModelRegistry {
    fn attach(&self, slot: usize, role: u32) -> Result<Presence, Refused> {
        let ep = self.0.entry(slot).ok_or(Refused::Closed)?;
        if !self.0.try_lock(slot) {
            return Err(Refused::Taken);
        }
        if let Err(word) =
            ep.state
                .compare_exchange(FREE, CLAIMING, Ordering::Acquire, Ordering::Acquire)
        {
            self.0.unlock(slot);
            return Err(if word & STATE_MASK == CLOSED {
                Refused::Closed
            } else {
                Refused::Taken
            });
        }
        ep.role.store(role, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire loads in `status`, `attached_role` and
        // `reap_if_dead`: who sees ATTACHED sees the role.
        ep.state.store(ATTACHED, Ordering::Release);
        Ok(self.0.presence(slot))
    }

    fn attach_any(&self, len: usize, role: u32) -> Result<Option<(usize, Presence)>, Refused> {
        for (slot, ep) in self.0.entries.iter().enumerate().take(len) {
            let word = ep.state.load(Ordering::Relaxed);
            let state = word & STATE_MASK;
            if state != FREE && state != CLOSED {
                continue;
            }
            // The lock first: held by someone else means the entry is being taken (or its
            // closing owner has not let go yet).
            if !self.0.try_lock(slot) {
                continue;
            }
            let generation = (word & !STATE_MASK).wrapping_add(GENERATION);
            if ep
                .state
                .compare_exchange(
                    word,
                    generation | TAKING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                self.0.unlock(slot);
                continue;
            }
            ep.role.store(role, Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire loads in `status`, `attached_role`
            // and `reap_if_dead`: who sees ATTACHED sees the role.
            ep.state.store(generation | ATTACHED, Ordering::Release);
            return Ok(Some((slot, self.0.presence(slot))));
        }
        Ok(None)
    }

    fn attached_role(&self, slot: usize) -> Option<u32> {
        let ep = self.0.entry(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED (role visible) and of
        // CLOSED in `detach` (the closer's last writes to the ring visible).
        if ep.state.load(Ordering::Acquire) & STATE_MASK == ATTACHED {
            Some(ep.role.load(Ordering::Relaxed))
        } else {
            None
        }
    }

    fn reap_if_dead(&self, slot: usize) -> Option<u32> {
        let ep = self.0.entry(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED (role visible).
        let word = ep.state.load(Ordering::Acquire);
        let state = word & STATE_MASK;
        if !matches!(state, TAKING | CLAIMING | ATTACHED) {
            return None;
        }
        let role = ep.role.load(Ordering::Relaxed);
        if self.0.held(slot) {
            return None;
        }
        // The generation in `word` makes this fail if the entry was closed and taken again
        // since we read it.
        let closed = (word & !STATE_MASK) | CLOSED;
        let won = ep
            .state
            .compare_exchange(word, closed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        (won && state == ATTACHED).then_some(role)
    }

    fn detach(&self, slot: usize) {
        if let Some(ep) = self.0.entry(slot) {
            // Only the owner of an attached entry writes it (a reaper takes only entries of
            // dead owners), so the generation read here is still current.
            let generation = ep.state.load(Ordering::Relaxed) & !STATE_MASK;
            // SYNC POINT: Release pairs with the Acquire loads in `status` and
            // `attached_role`: the endpoint's last writes to the ring happen before it is
            // seen closed.
            ep.state.store(generation | CLOSED, Ordering::Release);
        }
    }

    fn status(&self, slot: usize) -> EndpointStatus {
        let Some(ep) = self.0.entry(slot) else {
            return EndpointStatus::Gone;
        };
        let word = ep.state.load(Ordering::Acquire);
        match word & STATE_MASK {
            FREE => EndpointStatus::Free,
            CLAIMING | TAKING | ATTACHED if self.0.held(slot) => EndpointStatus::Alive,
            _ => EndpointStatus::Gone,
        }
    }

    fn poison(&self) {
        self.0.poisoned.store(1, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
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
            (2 << 8) | ATTACHED
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
