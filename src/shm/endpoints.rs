//! The endpoint table in the header page: one entry per attached handle (SPSC: entry 0 is the
//! producer, entry 1 the consumer; MPMC: any entry, reused after its endpoint left), with the
//! attach, detach and reaping protocol on it. See the module docs of `layout` for the words.

use super::layout::{
    EP_ATTACHED, EP_CLAIMING, EP_CLOSED, EP_FREE, EP_GENERATION, EP_PID_SHIFT, EP_STATE_MASK,
    EP_TAKING, Endpoint, Header,
};
use super::peer::{Liveness, ProcessId};
use crate::storage::EndpointStatus;
use crate::sync::shared::Ordering;

impl Header {
    /// What endpoint entry `slot` says now: (state without generation, role, pid, start
    /// time). For an entry being taken (`EP_TAKING`) the pid is the taker's and the start
    /// time 0 (unknown). Unvalidated; for display.
    pub(crate) fn endpoint_snapshot(&self, slot: usize) -> Option<(u32, u32, u32, u64)> {
        let ep = self.endpoint(slot)?;
        let word = ep.state.load(Ordering::Acquire);
        let state = word & EP_STATE_MASK;
        if state == EP_TAKING {
            return Some((state, 0, word >> EP_PID_SHIFT, 0));
        }
        Some((
            state,
            ep.role.load(Ordering::Relaxed),
            ep.pid.load(Ordering::Relaxed),
            ep.start_time.load(Ordering::Relaxed),
        ))
    }

    /// Entry `slot` of the table. Bounded by the table's real size only, never by the
    /// `endpoint_count` in shared memory, which a peer could change after validation.
    fn endpoint(&self, slot: usize) -> Option<&Endpoint> {
        self.endpoints.get(slot)
    }

    /// Claims endpoint `slot` for `me`. Fails with the slot's current state if it is not free.
    pub(crate) fn attach(&self, slot: usize, role: u32, me: ProcessId) -> Result<(), u32> {
        let ep = self.endpoint(slot).ok_or(EP_CLOSED)?;
        ep.state
            .compare_exchange(EP_FREE, EP_CLAIMING, Ordering::Acquire, Ordering::Acquire)?;
        // The pid first: an attacher that dies right here is found dead by `status`.
        ep.pid.store(me.pid, Ordering::Relaxed);
        ep.start_time.store(me.start_time, Ordering::Relaxed);
        ep.role.store(role, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `status`.
        ep.state.store(EP_ATTACHED, Ordering::Release);
        Ok(())
    }

    /// Claims any entry that is free or closed (an MPMC ring reuses the entries of endpoints
    /// that left) for `me` in `role`, and returns its index; `None` if every entry is taken
    /// (attached, or mid-attach). Entries of dead processes are not taken here: they must be
    /// reaped first ([`Header::reap_if_dead`]), so that whoever reaps them accounts for them.
    ///
    /// Only the first `registry_len` entries are looked at: the registry size the caller
    /// validated when it opened the ring (`Geometry::endpoint_count`), never the
    /// `endpoint_count` in shared memory, which a peer could change after validation.
    ///
    /// SPSC rings never call this; their closed entries stay closed.
    pub(crate) fn attach_any(
        &self,
        registry_len: usize,
        role: u32,
        me: ProcessId,
    ) -> Option<usize> {
        for (slot, ep) in self.endpoints.iter().enumerate().take(registry_len) {
            let word = ep.state.load(Ordering::Relaxed);
            let state = word & EP_STATE_MASK;
            if state != EP_FREE && state != EP_CLOSED {
                continue;
            }
            let generation = (word & !EP_STATE_MASK).wrapping_add(EP_GENERATION);
            // Take the entry with our pid in it, so that if we are killed before it is
            // attached, whoever finds us dead can reclaim it. (A pid too large for the word,
            // impossible on Linux, falls back to an entry that is never reclaimed.)
            let taking = if me.pid <= u32::MAX >> EP_PID_SHIFT {
                (me.pid << EP_PID_SHIFT) | EP_TAKING
            } else {
                generation | EP_CLAIMING
            };
            if ep
                .state
                .compare_exchange(word, taking, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            ep.pid.store(me.pid, Ordering::Relaxed);
            ep.start_time.store(me.start_time, Ordering::Relaxed);
            ep.role.store(role, Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire loads in `status`, `attached_role`
            // and `reap_if_dead`: who sees ATTACHED sees the role and the process identity.
            ep.state.store(generation | EP_ATTACHED, Ordering::Release);
            return Some(slot);
        }
        None
    }

    /// The role of endpoint `slot` if it is attached (alive or not: no `/proc` lookup, so
    /// this is cheap enough for a scan of the table).
    pub(crate) fn attached_role(&self, slot: usize) -> Option<u32> {
        let ep = self.endpoint(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED in `attach` /
        // `attach_any` (role visible) and of CLOSED in `detach` (the closer's last writes
        // to the ring visible).
        if ep.state.load(Ordering::Acquire) & EP_STATE_MASK == EP_ATTACHED {
            Some(ep.role.load(Ordering::Relaxed))
        } else {
            None
        }
    }

    /// If endpoint `slot` is attached by a process that has died, marks it closed and returns
    /// its role. Exactly one caller wins a given entry (compare-exchange), so the caller that
    /// gets `Some` is the one to account for the departure. Looks at `/proc`: slow paths only.
    ///
    /// An entry that a process took ([`Header::attach_any`]) and died before attaching is
    /// marked closed too, so it can be taken again; that returns `None`, as there is
    /// nothing to account for: its endpoint never counted itself in its side.
    pub(crate) fn reap_if_dead(&self, slot: usize) -> Option<u32> {
        let ep = self.endpoint(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED (pid, start time and
        // role visible).
        let word = ep.state.load(Ordering::Acquire);
        if word & EP_STATE_MASK == EP_TAKING {
            let taker = ProcessId {
                pid: word >> EP_PID_SHIFT,
                // Unknown: the pid alone decides (a reused pid keeps the entry, for now).
                start_time: 0,
            };
            if taker.liveness() == Liveness::Dead {
                // Fails if the entry moved on meanwhile; the high bits (the dead taker's
                // pid) serve as its generation from now on.
                let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
                let _ =
                    ep.state
                        .compare_exchange(word, closed, Ordering::Relaxed, Ordering::Relaxed);
            }
            return None;
        }
        if word & EP_STATE_MASK != EP_ATTACHED {
            return None;
        }
        let role = ep.role.load(Ordering::Relaxed);
        let id = ProcessId {
            pid: ep.pid.load(Ordering::Relaxed),
            start_time: ep.start_time.load(Ordering::Relaxed),
        };
        if id.liveness() == Liveness::Alive {
            return None;
        }
        // The generation in `word` makes this fail if the entry was closed and taken again
        // since we read the identity.
        let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
        ep.state
            .compare_exchange(word, closed, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| role)
    }

    /// Marks endpoint `slot` closed.
    pub(crate) fn detach(&self, slot: usize) {
        if let Some(ep) = self.endpoint(slot) {
            // Only the owner of an attached entry writes it (a reaper takes only entries of
            // dead owners), so the generation read here is still current.
            let generation = ep.state.load(Ordering::Relaxed) & !EP_STATE_MASK;
            // SYNC POINT: Release pairs with the Acquire loads in `status` and
            // `attached_role`: the endpoint's last writes to the ring happen before it is
            // seen closed.
            ep.state.store(generation | EP_CLOSED, Ordering::Release);
        }
    }

    /// Whether the owner of endpoint `slot` is still there. Looks at `/proc` for attached
    /// entries, so call it only from slow paths.
    pub(crate) fn status(&self, slot: usize) -> EndpointStatus {
        let Some(ep) = self.endpoint(slot) else {
            return EndpointStatus::Gone;
        };
        let word = ep.state.load(Ordering::Acquire);
        match word & EP_STATE_MASK {
            EP_FREE => EndpointStatus::Free,
            EP_CLAIMING => {
                // Mid-attach. An entry that was never used before (generation 0: every SPSC
                // entry) holds either 0 or the attacher's own pid, written first; if that
                // process died mid-attach, the entry is gone. (Its start time may not be
                // written yet, so only the pid is checked.) A reused entry may still hold
                // the previous owner's pid, so it counts as alive until attached.
                let pid = ep.pid.load(Ordering::Relaxed);
                if word & !EP_STATE_MASK == 0 && pid != 0 {
                    let id = ProcessId { pid, start_time: 0 };
                    if id.liveness() == Liveness::Dead {
                        return EndpointStatus::Gone;
                    }
                }
                EndpointStatus::Alive
            }
            EP_TAKING => {
                let taker = ProcessId {
                    pid: word >> EP_PID_SHIFT,
                    start_time: 0,
                };
                match taker.liveness() {
                    Liveness::Alive => EndpointStatus::Alive,
                    Liveness::Dead => EndpointStatus::Gone,
                }
            }
            EP_ATTACHED => {
                let id = ProcessId {
                    pid: ep.pid.load(Ordering::Relaxed),
                    start_time: ep.start_time.load(Ordering::Relaxed),
                };
                match id.liveness() {
                    Liveness::Alive => EndpointStatus::Alive,
                    Liveness::Dead => EndpointStatus::Gone,
                }
            }
            _ => EndpointStatus::Gone,
        }
    }
}
