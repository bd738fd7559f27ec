//! The endpoint table in the header page: one entry per attached handle (SPSC: entry 0 is the
//! producer, entry 1 the consumer; MPMC: any entry, reused after its endpoint left), with the
//! attach, detach and reaping protocol on it. See the module docs of `layout` for the words.
//!
//! # Who is alive: the entry's lock
//!
//! An endpoint holds a write lock on its entry's lock byte ([`endpoint_byte`]) on an open
//! file description of its own ([`OwnLock`]) for as long as its handle lives; the kernel
//! releases it when the handle closes it or the process dies, however it dies. Whether an
//! owner is still there is asked of the kernel through the mapping's own descriptor, which
//! never takes locks ([`lock::probe`]): a free byte under an entry that says it is in use is
//! positive evidence that its owner is gone; a held byte, or any failure to ask, means alive.
//! No pid is involved, so this holds across pid namespaces (a peer in another container) and
//! for a process whose main thread has exited; the pids in the table are for display only.
//!
//! The lock is taken *before* the entry is claimed and released only *after* the entry is
//! marked closed, so an entry in use whose byte is free can only be one whose owner died:
//!
//! - attach: lock the byte (skip the entry if someone holds it), then compare-exchange the
//!   entry from free or closed to claimed; if that fails, unlock and go on;
//! - close: mark the entry closed, then unlock (dropping the [`OwnLock`]);
//! - a reaper that saw an entry in use and then finds its byte free closes it with a
//!   compare-exchange from the very word it saw (which fails if the entry moved on).

use super::layout::{
    EP_ATTACHED, EP_CLAIMING, EP_CLOSED, EP_FREE, EP_GENERATION, EP_PID_SHIFT, EP_STATE_MASK,
    EP_TAKING, Endpoint, Header,
};
use std::os::fd::BorrowedFd;

use super::lock::{self, LockState, OwnLock, endpoint_byte};
use super::peer::ProcessId;
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

    /// Claims endpoint `slot` for `me` on `own`, this endpoint's own description (see the
    /// module docs). Fails with the slot's current state if it is not free (or its byte is
    /// held by a live owner: `EP_CLAIMING` then).
    pub(crate) fn attach(
        &self,
        slot: usize,
        role: u32,
        me: ProcessId,
        own: OwnedDescription,
    ) -> Result<OwnLock, u32> {
        let ep = self.endpoint(slot).ok_or(EP_CLOSED)?;
        let byte = endpoint_byte(slot as u32);
        let lock = match OwnLock::on(own.0, byte) {
            Ok(Some(lock)) => lock,
            // Someone holds the byte: the entry is in use (or being taken).
            Ok(None) | Err(_) => return Err(EP_CLAIMING),
        };
        ep.state
            .compare_exchange(EP_FREE, EP_CLAIMING, Ordering::Acquire, Ordering::Acquire)?;
        ep.pid.store(me.pid, Ordering::Relaxed);
        ep.start_time.store(me.start_time, Ordering::Relaxed);
        ep.role.store(role, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `status`.
        ep.state.store(EP_ATTACHED, Ordering::Release);
        Ok(lock)
    }

    /// Claims any entry that is free or closed (an MPMC ring reuses the entries of endpoints
    /// that left) for `me` in `role`, on `own`, this endpoint's own description, and returns
    /// its index and lock; `None` if every entry is taken (attached, or mid-attach). Entries
    /// of dead processes are not taken here: they must be reaped first
    /// ([`Header::reap_if_dead`]), so that whoever reaps them accounts for them.
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
        own: OwnedDescription,
    ) -> Option<(usize, OwnLock)> {
        let fd = own.0;
        for (slot, ep) in self.endpoints.iter().enumerate().take(registry_len) {
            let word = ep.state.load(Ordering::Relaxed);
            let state = word & EP_STATE_MASK;
            if state != EP_FREE && state != EP_CLOSED {
                continue;
            }
            let byte = endpoint_byte(slot as u32);
            // The lock first: held by someone else means the entry is being taken (or its
            // closing owner has not let go yet).
            if !lock::try_lock(std::os::fd::AsFd::as_fd(&fd), byte, lock::LockKind::Write)
                .unwrap_or(false)
            {
                continue;
            }
            let generation = (word & !EP_STATE_MASK).wrapping_add(EP_GENERATION);
            // The taker's pid in the word, for display while the entry is being taken. (A
            // pid too large for the word, impossible on Linux, shows as 0.)
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
                let _ = lock::unlock(std::os::fd::AsFd::as_fd(&fd), byte);
                continue;
            }
            ep.pid.store(me.pid, Ordering::Relaxed);
            ep.start_time.store(me.start_time, Ordering::Relaxed);
            ep.role.store(role, Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire loads in `status`, `attached_role`
            // and `reap_if_dead`: who sees ATTACHED sees the role and the process identity.
            ep.state.store(generation | EP_ATTACHED, Ordering::Release);
            return Some((slot, OwnLock::adopt(fd, byte)));
        }
        None
    }

    /// The role of endpoint `slot` if it is attached (alive or not: no system call, so this
    /// is cheap enough for a scan of the table).
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

    /// If endpoint `slot` is in use by an owner that is gone (its lock byte is free, probed
    /// through `probe`, the mapping's descriptor), marks it closed and returns its role if it
    /// was attached. Exactly one caller wins a given entry (compare-exchange), so the caller
    /// that gets `Some` is the one to account for the departure. One system call: slow paths
    /// only.
    ///
    /// An entry whose taker ([`Header::attach_any`]) died before attaching is marked closed
    /// too, so it can be taken again; that returns `None`, as there is nothing to account
    /// for: its endpoint never counted itself in its side.
    pub(crate) fn reap_if_dead(&self, slot: usize, probe: BorrowedFd<'_>) -> Option<u32> {
        let ep = self.endpoint(slot)?;
        // SYNC POINT: Acquire pairs with the Release store of ATTACHED (role visible).
        let word = ep.state.load(Ordering::Acquire);
        let state = word & EP_STATE_MASK;
        if !matches!(state, EP_TAKING | EP_CLAIMING | EP_ATTACHED) {
            return None;
        }
        let role = ep.role.load(Ordering::Relaxed);
        if owner_present(probe, slot) {
            return None;
        }
        // The generation in `word` makes this fail if the entry was closed and taken again
        // since we read it.
        let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
        let won = ep
            .state
            .compare_exchange(word, closed, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        (won && state == EP_ATTACHED).then_some(role)
    }

    /// Marks endpoint `slot` closed. The caller releases its lock after this.
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

    /// Whether the owner of endpoint `slot` is still there, asked through `probe` (the
    /// mapping's descriptor). One system call for an entry in use: slow paths only.
    pub(crate) fn status(&self, slot: usize, probe: BorrowedFd<'_>) -> EndpointStatus {
        let Some(ep) = self.endpoint(slot) else {
            return EndpointStatus::Gone;
        };
        let word = ep.state.load(Ordering::Acquire);
        match word & EP_STATE_MASK {
            EP_FREE => EndpointStatus::Free,
            EP_CLAIMING | EP_TAKING | EP_ATTACHED if owner_present(probe, slot) => {
                EndpointStatus::Alive
            }
            _ => EndpointStatus::Gone,
        }
    }
}

/// A descriptor of the ring's object that belongs to one endpoint alone (see
/// [`lock::reopen`]): the one its liveness lock is held on.
#[derive(Debug)]
pub(crate) struct OwnedDescription(pub(crate) std::os::fd::OwnedFd);

/// Whether the lock byte of entry `slot` is held: positive evidence of a live owner. A probe
/// that fails says nothing, so it counts as held (alive).
pub(crate) fn owner_present(probe: BorrowedFd<'_>, slot: usize) -> bool {
    !matches!(
        lock::probe(probe, endpoint_byte(slot as u32)),
        Ok(LockState::Free)
    )
}
