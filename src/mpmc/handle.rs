//! What a sender and a receiver share: the ring view, the registry entry and claim record,
//! and the endpoint state; closing an endpoint; the internal claim errors.

use std::ptr::NonNull;

use super::recovery::{PEER_CHECK_INTERVAL, close_side_if_last, reap_dead, side_gone};
use super::ring::{ATTACH, CLOSED, RETRY_BUDGET, Ring, Role};
use crate::config::MpmcConfig as Config;
use crate::endpoint::EndpointState;
use crate::error::{ClaimError, Corruption, OpenError};
use crate::shm::Mapped;
use crate::storage::Presence;
use crate::sync::waiter::WaitStrategy;
use crate::sync::{AtomicU64, Ordering};

/// What sender and receiver handles share: the ring, the registry entry, the error state.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) ring: Ring,
    pub(super) role: Role,
    /// Registry entry (shared rings).
    pub(super) entry: Option<usize>,
    /// This endpoint's claim record (shared rings).
    pub(super) record: Option<NonNull<AtomicU64>>,
    /// Liveness throttles, fork guard, corruption, wait strategy and statistics.
    pub(super) ep: EndpointState,
}

impl Handle {
    /// Creates a shared ring whose first endpoint (registry entry 0) is this one.
    pub(super) fn create<'a>(
        place: impl Into<crate::shm::Place<'a>>,
        config: &Config,
        role: Role,
    ) -> Result<Handle, OpenError> {
        let (ring, presence) = super::ring::create(place, config, role)?;
        Ok(Handle::new(
            ring,
            role,
            Some(0),
            config.wait_strategy,
            presence,
        ))
    }

    /// Attaches a new endpoint of `role` to an opened shared ring.
    pub(super) fn attach(m: Mapped, role: Role) -> Result<Handle, OpenError> {
        attach(super::ring::in_shm(&m), role, WaitStrategy::default())
    }

    pub(super) fn new(
        ring: Ring,
        role: Role,
        entry: Option<usize>,
        strategy: WaitStrategy,
        presence: Option<Presence>,
    ) -> Handle {
        let record = entry.and_then(|e| ring.claim_line(e)).map(NonNull::from);
        if let Some(lent) = &ring.lent {
            lent.handles
                .fetch_add(1, crate::sync::shared::Ordering::Relaxed);
        }
        Handle {
            ring,
            role,
            entry,
            record,
            ep: EndpointState::new(strategy, PEER_CHECK_INTERVAL).with_presence(presence),
        }
    }

    /// Marks the slot of the just-claimed position `pos` as lent out by this process (see
    /// `Lent`). Fails, recording the corruption, if another handle of this process holds it:
    /// only forged shared memory can make two claims meet there.
    #[inline]
    pub(super) fn lend(&mut self, pos: u64) -> Result<(), Corruption> {
        match &self.ring.lent {
            Some(lent) if !lent.lend(self.ring.index(pos)) => Err(self.corrupt(Corruption::new(
                "a slot claimed twice in this process (forged tail or sequence)",
                pos,
            ))),
            _ => Ok(()),
        }
    }

    /// Gives back the slot of position `pos` (published, abandoned or released).
    #[inline]
    pub(super) fn give_back(&self, pos: u64) {
        if let Some(lent) = &self.ring.lent {
            lent.give_back(self.ring.index(pos));
        }
    }

    /// A new endpoint of the same side of the same ring. Refused for a copy inherited by a
    /// forked child: the mapping's record of lent slots is the parent's (it could refuse
    /// the clone's claims and poison the ring); the child attaches by name or descriptor.
    pub(super) fn try_clone(&self) -> Result<Handle, crate::OpenError> {
        if self.ep.inherited() {
            return Err(OpenError::Corrupted(self.ep.inherited_error()));
        }
        if self.entry.is_some() {
            return attach(self.ring.clone(), self.role, self.ep.strategy);
        }
        // Heap ring: count one more live handle (the side cannot be closed: we are in it).
        self.role
            .side(self.ring.ctrl())
            .fetch_add(ATTACH, Ordering::Relaxed);
        Ok(Handle::new(
            self.ring.clone(),
            self.role,
            None,
            self.ep.strategy,
            None,
        ))
    }

    /// Records that this endpoint is about to claim `pos` (see "Crash recovery").
    #[inline]
    pub(super) fn record(&self, pos: u64, tag: u64) {
        if let Some(rec) = self.record {
            // SAFETY: the claim line lies in the mapping that `ring.storage` keeps alive.
            let rec = unsafe { rec.as_ref() };
            // SYNC POINT: Release pairs with the Acquire load in `claimer_alive`; the
            // compare-exchange that follows is Release too, so the record is visible to
            // whoever sees the claim.
            rec.store((pos << 2) | tag, Ordering::Release);
        }
    }

    /// Clears the claim record after a call that claimed nothing.
    #[cold]
    pub(super) fn clear_record(&self) {
        if let Some(rec) = self.record {
            // SAFETY: as in `record`.
            unsafe { rec.as_ref() }.store(0, Ordering::Release);
        }
    }

    #[cold]
    pub(super) fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.ep.corrupt(&self.ring.storage, c)
    }

    /// Whether the other side has closed for good (or was found dead).
    #[inline]
    pub(super) fn peers_closed(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release that closed the side.
        self.role
            .other()
            .side(self.ring.ctrl())
            .load(Ordering::Acquire)
            & CLOSED
            != 0
    }

    /// Whether the other side has closed for good or, for shared rings, every endpoint of
    /// it died: then they are reaped, which closes the side. The processes are looked up at
    /// most once per `PEER_CHECK_INTERVAL` per handle, and the look-up stops at the first
    /// live endpoint of the other side (usually one lock probe).
    pub(super) fn peers_gone(&self) -> bool {
        if self.peers_closed() {
            return true;
        }
        self.ring.claims.is_some()
            && self.ep.probe_due()
            && side_gone(&self.ring, self.role.other())
    }

    pub(super) fn close(&mut self) {
        if !self.ep.begin_close() {
            // Closed already, or an inherited copy in a forked child: the endpoint (its
            // registry entry and claim record) belongs to the parent. Only unmap.
            return;
        }
        self.clear_record();
        if let (Some(entry), Some(h)) = (self.entry, self.ring.registry()) {
            h.detach(entry);
            self.ep.end_presence();
            close_side_if_last(&self.ring, self.role);
            return;
        }
        // Heap ring: one live handle fewer; the last one closes the side.
        let ctrl = self.ring.ctrl();
        let side = self.role.side(ctrl);
        let mut w = side.load(Ordering::Relaxed);
        loop {
            let last = if cfg!(shmring_mutant = "mpmc_close_off_by_one") {
                2
            } else {
                1
            };
            let new = if w >> 1 <= last { CLOSED } else { w - ATTACH };
            // SYNC POINT: Release pairs with the Acquire loads of the side word by the other
            // side: our last publish or release happens before the side reads as closed.
            match side.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if new == CLOSED {
                        self.role.peers_wait(ctrl).notify_closed(&self.ring.storage);
                    }
                    return;
                }
                Err(cur) => w = cur,
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
        if let Some(lent) = &self.ring.lent {
            lent.handles
                .fetch_sub(1, crate::sync::shared::Ordering::Relaxed);
        }
    }
}

/// Why a slot could not be claimed right now.
#[derive(Clone, Copy, Debug)]
pub(super) enum NoSlot {
    /// Full (sender) or empty (receiver).
    Busy,
    /// The claim loop used up its [`RETRY_BUDGET`] (contention, or a peer moving the
    /// index under it): nothing claimed, look again (a blocked call does, until its
    /// deadline; a `try_` call reports full or empty).
    Again,
    Disconnected,
    Corrupted(Corruption),
}

impl From<NoSlot> for ClaimError {
    fn from(e: NoSlot) -> ClaimError {
        match e {
            NoSlot::Busy | NoSlot::Again => ClaimError::Full,
            NoSlot::Disconnected => ClaimError::Disconnected,
            NoSlot::Corrupted(c) => ClaimError::Corrupted(c),
        }
    }
}

/// Attaches a new endpoint of `role` to a ring with a registry (a shared ring, or the model
/// ring of `__model`): takes a registry entry (reaping dead
/// entries if the registry is full), clears the entry's claim record, and counts itself in
/// its side word unless the side is closed.
///
/// The side word is peer-writable: a counter that cannot take one more attach, or a word that
/// keeps changing under the compare-exchange, is reported as corruption (and the entry given
/// back) rather than overflowed or retried for ever.
pub(super) fn attach(ring: Ring, role: Role, strategy: WaitStrategy) -> Result<Handle, OpenError> {
    let h = ring.registry().ok_or(OpenError::Incompatible(
        "a shared ring without an endpoint table",
    ))?;
    let refused = |r: crate::storage::Refused| r.into_open_error(role.plural());
    let (entry, presence) = match h
        .attach_any(ring.registry_len, role.code())
        .map_err(refused)?
    {
        Some(e) => e,
        None => {
            reap_dead(&ring);
            h.attach_any(ring.registry_len, role.code())
                .map_err(refused)?
                .ok_or(OpenError::RegistryFull {
                    capacity: ring.registry_len,
                })?
        }
    };
    if let Some(rec) = ring.claim_line(entry) {
        // The previous owner of the entry (closed or reaped) may have left a record.
        rec.store(0, Ordering::Release);
    }
    let side = role.side(ring.ctrl());
    let mut w = side.load(Ordering::Relaxed);
    for _ in 0..RETRY_BUDGET {
        if w & CLOSED != 0 {
            h.detach(entry);
            return Err(OpenError::EndpointClosed(role.plural()));
        }
        // The counter counts every attach ever made: 2^63 of them is no real ring.
        let Some(new) = w.checked_add(ATTACH) else {
            break;
        };
        // SYNC POINT: Release (with our entry's ATTACHED before it) pairs with the Acquire
        // load in `close_side_if_last`: a closer that sees this count sees our entry.
        match side.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                return Ok(Handle::new(
                    ring,
                    role,
                    Some(entry),
                    strategy,
                    Some(presence),
                ));
            }
            Err(cur) => w = cur,
        }
    }
    h.detach(entry);
    Err(OpenError::Corrupted(Corruption::new(
        "side word out of range or changing without end",
        w,
    )))
}
