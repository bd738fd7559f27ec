//! The endpoint table in the header page: the registry protocol of `registry` on the
//! header's entries, with an OFD lock for the liveness token. See the module docs of
//! `layout` for the words, and of `registry` for the protocol.
//!
//! # The token: an OFD lock
//!
//! An endpoint holds a write lock on its entry's lock byte ([`endpoint_byte`]) on an open
//! file description of its own ([`OwnLock`]) for as long as its handle lives; the kernel
//! releases it when the handle closes it or the process dies, however it dies. Whether an
//! owner is still there is asked of the kernel through the mapping's own descriptor, which
//! never takes locks ([`lock::probe`]): a free byte under an entry that says it is in use is
//! positive evidence that its owner is gone; a held byte, or any failure to ask, means alive.
//! No pid is involved, so this holds across pid namespaces (a peer in another container) and
//! for a process whose main thread has exited; the pids in the table are for display only.

use std::os::fd::{AsFd, BorrowedFd};

use super::layout::{
    EP_CLAIMING, EP_CLOSED, EP_PID_SHIFT, EP_STATE_MASK, EP_TAKING, Endpoint, Header,
};
use super::lock::{self, LockState, OwnLock, endpoint_byte};
use super::peer::ProcessId;
use super::registry::{self, Entry, Liveness, Taker};
use crate::storage::{EndpointStatus, Refused};
use crate::sync::shared::Ordering;

impl Entry for Endpoint {
    type Owner = ProcessId;

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

    fn set_owner(&self, owner: &ProcessId) {
        self.pid.store(owner.pid, Ordering::Relaxed);
        self.start_time.store(owner.start_time, Ordering::Relaxed);
    }

    fn pid(owner: &ProcessId) -> u32 {
        owner.pid
    }
}

/// A descriptor of the ring's object that belongs to one endpoint alone (see
/// [`lock::reopen`]): the one its liveness lock is held on.
#[derive(Debug)]
pub(crate) struct OwnedDescription(pub(crate) std::os::fd::OwnedFd);

impl Taker for OwnedDescription {
    type Hold = OwnLock;

    fn take(&self, slot: usize) -> bool {
        lock::try_lock(
            self.0.as_fd(),
            endpoint_byte(slot as u32),
            lock::LockKind::Write,
        )
        .unwrap_or(false)
    }

    fn release(&self, slot: usize) {
        let _ = lock::unlock(self.0.as_fd(), endpoint_byte(slot as u32));
    }

    fn hold(self, slot: usize) -> OwnLock {
        OwnLock::adopt(self.0, endpoint_byte(slot as u32))
    }
}

/// The mapping's descriptor, which takes no locks, asking after the endpoints' locks.
struct Probe<'a>(BorrowedFd<'a>);

impl Liveness for Probe<'_> {
    fn held(&self, slot: usize) -> bool {
        owner_present(self.0, slot)
    }
}

impl Header {
    /// What endpoint entry `slot` says now: (state without generation, role, pid, start
    /// time). For an entry being taken (`EP_TAKING`) the pid is the taker's and the start
    /// time 0 (unknown). Unvalidated; for display.
    pub(crate) fn endpoint_snapshot(&self, slot: usize) -> Option<(u32, u32, u32, u64)> {
        let ep = self.endpoints.get(slot)?;
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

    /// Claims endpoint `slot` for `me` on `own`, this endpoint's own description (see
    /// [`registry::attach`]). Fails with `EP_CLOSED` if the entry attached before and was
    /// closed, else `EP_CLAIMING` (taken, or its byte held by a live owner).
    pub(crate) fn attach(
        &self,
        slot: usize,
        role: u32,
        me: ProcessId,
        own: OwnedDescription,
    ) -> Result<OwnLock, u32> {
        registry::attach(&self.endpoints[..], slot, role, &me, own).map_err(|r| match r {
            Refused::Closed => EP_CLOSED,
            _ => EP_CLAIMING,
        })
    }

    /// Claims any entry that is free or closed among the first `registry_len` for `me` in
    /// `role`, on `own`, this endpoint's own description, and returns its index and lock (see
    /// [`registry::attach_any`]). `registry_len` is the registry size the caller validated
    /// when it opened the ring (`Geometry::endpoint_count`), never the `endpoint_count` in
    /// shared memory, which a peer could change after validation. SPSC rings never call
    /// this; their closed entries stay closed.
    pub(crate) fn attach_any(
        &self,
        registry_len: usize,
        role: u32,
        me: ProcessId,
        own: OwnedDescription,
    ) -> Option<(usize, OwnLock)> {
        registry::attach_any(&self.endpoints[..], registry_len, role, &me, own)
    }

    /// The role of endpoint `slot` if it is attached (alive or not: no system call).
    pub(crate) fn attached_role(&self, slot: usize) -> Option<u32> {
        registry::attached_role(&self.endpoints[..], slot)
    }

    /// If endpoint `slot` is in use by an owner that is gone (its lock byte is free, probed
    /// through `probe`, the mapping's descriptor), marks it closed and returns its role if it
    /// was attached (see [`registry::reap_if_dead`]). One system call: slow paths only.
    pub(crate) fn reap_if_dead(&self, slot: usize, probe: BorrowedFd<'_>) -> Option<u32> {
        registry::reap_if_dead(&self.endpoints[..], &Probe(probe), slot)
    }

    /// Marks endpoint `slot` closed. The caller releases its lock after this.
    pub(crate) fn detach(&self, slot: usize) {
        registry::detach(&self.endpoints[..], slot);
    }

    /// Whether the owner of endpoint `slot` is still there, asked through `probe` (the
    /// mapping's descriptor). One system call for an entry in use: slow paths only.
    pub(crate) fn status(&self, slot: usize, probe: BorrowedFd<'_>) -> EndpointStatus {
        registry::status(&self.endpoints[..], &Probe(probe), slot)
    }
}

/// Whether the lock byte of entry `slot` is held: positive evidence of a live owner. A probe
/// that fails says nothing, so it counts as held (alive).
pub(crate) fn owner_present(probe: BorrowedFd<'_>, slot: usize) -> bool {
    !matches!(
        lock::probe(probe, endpoint_byte(slot as u32)),
        Ok(LockState::Free)
    )
}
