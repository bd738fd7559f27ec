//! The endpoint registry protocol: attaching to an entry of the endpoint table, closing it,
//! and reaping the entries of endpoints that died. Written once, generic over where the
//! table lives ([`Entry`]) and over the liveness primitive that tells a live owner from a
//! dead one ([`Liveness`], [`Taker`]):
//!
//! - a shared ring's table is in its header page (`endpoints`), and its liveness primitive
//!   is an OFD lock on one byte of the object per entry, which the kernel releases when the
//!   owner's process dies;
//! - the table of the heap rings that the loom models check (`model`) has the same entries
//!   on the atomics of the loom seam, and a word per entry for the lock, which a model thread
//!   lets go of to play the death of a process.
//!
//! Both run the functions of this module, so the loom models check the code that ships.
//!
//! # Entries
//!
//! An entry's state word holds `EP_FREE`, `EP_CLAIMING`, `EP_TAKING`, `EP_ATTACHED` or
//! `EP_CLOSED` in its low 8 bits (see `layout`) and, above them, a generation that
//! [`attach_any`] bumps each time it reuses the entry, so that a compare-exchange on a stale
//! view of a reused entry fails. While [`attach_any`] takes an entry (`EP_TAKING`), the high
//! bits hold the taker's pid instead, for display.
//!
//! # Who is alive: the entry's token
//!
//! An endpoint holds its entry's token for as long as its handle lives; the token is let go
//! of when the handle drops it or the process dies, however it dies. The token is taken
//! *before* the entry is claimed and let go of only *after* the entry is marked closed, so an
//! entry in use whose token is free can only be one whose owner died:
//!
//! - attach: take the token (skip the entry if someone holds it), then compare-exchange the
//!   entry from free (or closed, for [`attach_any`]) to claimed; if that fails, let go of the
//!   token and go on;
//! - close: mark the entry closed ([`detach`]), then let go of the token (dropping the hold);
//! - a reaper that saw an entry in use and then finds its token free closes it with a
//!   compare-exchange from the very word it saw, which fails if the entry moved on.
//!
//! What the protocol needs of the primitive: taking a token is atomic (one winner), and a
//! probe that finds a token free sees everything its holder did before letting go of it or
//! dying (the reaper passes a dead endpoint's last writes on when it closes its side). The
//! kernel gives that for OFD locks: every lock operation on a file, tests included, takes the
//! file's lock-context spinlock.

use super::layout::{
    EP_ATTACHED, EP_CLAIMING, EP_CLOSED, EP_FREE, EP_GENERATION, EP_PID_SHIFT, EP_STATE_MASK,
    EP_TAKING,
};
use crate::storage::{EndpointStatus, Refused};
use crate::sync::{Ordering, weaken};

/// One entry of an endpoint table: its state word and role word, wherever they live.
pub(crate) trait Entry {
    /// Who attaches, as the entry records it for display.
    type Owner;
    /// Loads the state word.
    fn load(&self, order: Ordering) -> u32;
    /// Stores the state word.
    fn store(&self, word: u32, order: Ordering);
    /// Compare-exchanges the state word.
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// Loads the role word.
    fn role(&self, order: Ordering) -> u32;
    /// Stores the role word.
    fn set_role(&self, role: u32, order: Ordering);
    /// Records `owner` in the entry, for display (published by the store of `EP_ATTACHED`).
    fn set_owner(&self, owner: &Self::Owner);
    /// The pid of `owner`, shown in the state word while it takes an entry.
    fn pid(owner: &Self::Owner) -> u32;
}

/// Asks whether an entry's token is held.
pub(crate) trait Liveness {
    /// Whether entry `slot`'s token is held by anyone: positive evidence of a live owner. A
    /// probe that cannot tell says held.
    fn held(&self, slot: usize) -> bool;
}

/// What an attacher takes an entry's token with.
pub(crate) trait Taker {
    /// A token kept for the life of an endpoint; dropping it lets go.
    type Hold;
    /// Takes entry `slot`'s token if nobody else holds it.
    fn take(&self, slot: usize) -> bool;
    /// Lets go of entry `slot`'s token, just taken (the claim that followed failed).
    fn release(&self, slot: usize);
    /// Keeps entry `slot`'s token, just taken, for as long as the hold lives.
    fn hold(self, slot: usize) -> Self::Hold;
}

/// Claims entry `slot` of `entries` for `owner` in `role`, taking its token with `taker`.
/// Fails if the entry is not free: `Closed` if its endpoint attached before and left (or
/// there is no such entry), else `Taken`.
pub(crate) fn attach<E: Entry, T: Taker>(
    entries: &[E],
    slot: usize,
    role: u32,
    owner: &E::Owner,
    taker: T,
) -> Result<T::Hold, Refused> {
    let ep = entries.get(slot).ok_or(Refused::Closed)?;
    if !taker.take(slot) {
        // Someone holds the token: the entry is in use (or being taken).
        return Err(Refused::Taken);
    }
    // Relaxed: FREE is the entry's initial state, which nothing ever stores again, so there
    // is nothing to acquire with it (the header's ready word published it); on failure the
    // word only picks the error.
    if let Err(word) =
        ep.compare_exchange(EP_FREE, EP_CLAIMING, Ordering::Relaxed, Ordering::Relaxed)
    {
        taker.release(slot);
        return Err(if word & EP_STATE_MASK == EP_CLOSED {
            Refused::Closed
        } else {
            Refused::Taken
        });
    }
    ep.set_owner(owner);
    ep.set_role(role, Ordering::Relaxed);
    // SYNC POINT: Release pairs with the Acquire loads in `status` and `attached_role` (and
    // in `Header::endpoint_snapshot`, for display): who sees ATTACHED sees the role and the
    // owner. (No loom model runs this attach concurrently: SPSC rings and creators use it.
    // The same store in `attach_any` has one.)
    ep.store(EP_ATTACHED, Ordering::Release);
    Ok(taker.hold(slot))
}

/// Claims any entry among the first `len` of `entries` that is free or closed (an MPMC ring
/// reuses the entries of endpoints that left) for `owner` in `role`, taking its token with
/// `taker`, and returns its index and hold; `None` if every entry is taken (attached, or
/// mid-attach). Entries of dead endpoints are not taken here: they must be reaped first
/// ([`reap_if_dead`]), so that whoever reaps them accounts for them.
///
/// `len` is the registry size the caller validated, never a count a peer can change.
pub(crate) fn attach_any<E: Entry, T: Taker>(
    entries: &[E],
    len: usize,
    role: u32,
    owner: &E::Owner,
    taker: T,
) -> Option<(usize, T::Hold)> {
    for (slot, ep) in entries.iter().enumerate().take(len) {
        let word = ep.load(Ordering::Relaxed);
        let state = word & EP_STATE_MASK;
        if state != EP_FREE && state != EP_CLOSED {
            continue;
        }
        // The token first: held by someone else means the entry is being taken (or its
        // closing owner has not let go yet).
        if !taker.take(slot) {
            continue;
        }
        let generation = (word & !EP_STATE_MASK).wrapping_add(EP_GENERATION);
        // The taker's pid in the word, for display while the entry is being taken. (A pid
        // too large for the word, impossible on Linux, shows as the generation.)
        let pid = E::pid(owner);
        let taking = if pid <= u32::MAX >> EP_PID_SHIFT {
            (pid << EP_PID_SHIFT) | EP_TAKING
        } else {
            generation | EP_CLAIMING
        };
        // SYNC POINT: Acquire pairs with the Release that closed the entry (`detach`, or a
        // reaper's): the writes below, and the clearing of the entry's claim record that
        // follows, are ordered after those of the owner that left. (Taking the token orders
        // them too, for OFD locks; loom cannot show a store ordered before an earlier one.)
        if ep
            .compare_exchange(word, taking, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            taker.release(slot);
            continue;
        }
        ep.set_owner(owner);
        ep.set_role(role, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire loads in `status` and `attached_role`
        // (and in `Header::endpoint_snapshot`, for display): who sees ATTACHED sees the role
        // and the owner (loom model `an_entry_seen_attached_shows_its_role`).
        let order = weaken(
            cfg!(shmring_mutant = "registry_relaxed_attached"),
            Ordering::Release,
        );
        ep.store(generation | EP_ATTACHED, order);
        return Some((slot, taker.hold(slot)));
    }
    None
}

/// The role of entry `slot` if it is attached (alive or not: no probe, so this is cheap
/// enough for a scan of the table).
pub(crate) fn attached_role<E: Entry>(entries: &[E], slot: usize) -> Option<u32> {
    let ep = entries.get(slot)?;
    // SYNC POINT: Acquire pairs with the Release store of ATTACHED in `attach` /
    // `attach_any` (role visible, loom model `an_entry_seen_attached_shows_its_role`) and of
    // CLOSED in `detach` and `reap_if_dead` (the closer's last writes to the ring visible).
    let order = weaken(
        cfg!(shmring_mutant = "registry_relaxed_scan"),
        Ordering::Acquire,
    );
    if ep.load(order) & EP_STATE_MASK == EP_ATTACHED {
        Some(ep.role(Ordering::Relaxed))
    } else {
        None
    }
}

/// If entry `slot` is in use by an owner that is gone (its token is free), marks it closed
/// and returns its role if it was attached. Exactly one caller wins a given entry
/// (compare-exchange), so the caller that gets `Some` is the one to account for the
/// departure.
///
/// An entry whose taker ([`attach_any`]) died before attaching is marked closed too, so it
/// can be taken again; that returns `None`, as there is nothing to account for: its endpoint
/// never counted itself in its side.
pub(crate) fn reap_if_dead<E: Entry>(
    entries: &[E],
    live: &impl Liveness,
    slot: usize,
) -> Option<u32> {
    let ep = entries.get(slot)?;
    // Relaxed: the word is only compared, and the compare-exchange from it below fails if
    // the entry moved on.
    let word = ep.load(Ordering::Relaxed);
    let state = word & EP_STATE_MASK;
    if !matches!(state, EP_TAKING | EP_CLAIMING | EP_ATTACHED) {
        return None;
    }
    if live.held(slot) {
        return None;
    }
    // After the probe, which found the token free and so sees everything its owner did
    // before letting go of it (its role included): Relaxed. If the entry was taken again
    // since `word` was read, the compare-exchange fails and the role is not used.
    let role = ep.role(Ordering::Relaxed);
    // The generation in `word` makes this fail if the entry was closed and taken again
    // since we read it.
    let closed = (word & !EP_STATE_MASK) | EP_CLOSED;
    // SYNC POINT: Release pairs with the Acquire loads of the state word (`attached_role`,
    // `status`): whoever sees the entry closed sees what the probe saw, the dead owner's
    // last writes to the ring among them, before it closes the owner's side. Nothing is
    // acquired: the probe did that. (No loom model can miss this Release: every caller
    // that wins an attached entry fences in `close_side_if_last` right after, with no
    // atomic access between for loom to preempt at, and loom orders all SeqCst fences one
    // after the other with their full history, which C11 does not: a fence after a store
    // does not release it.)
    let won = ep
        .compare_exchange(word, closed, Ordering::Release, Ordering::Relaxed)
        .is_ok();
    (won && state == EP_ATTACHED).then_some(role)
}

/// Marks entry `slot` closed. Its owner lets go of its token after this.
pub(crate) fn detach<E: Entry>(entries: &[E], slot: usize) {
    if let Some(ep) = entries.get(slot) {
        // Only the owner of an attached entry writes it (a reaper takes only entries of dead
        // owners), so the generation read here is still current.
        let generation = ep.load(Ordering::Relaxed) & !EP_STATE_MASK;
        // SYNC POINT: Release pairs with the Acquire loads in `status` and `attached_role`:
        // the endpoint's last writes to the ring happen before it is seen closed.
        ep.store(generation | EP_CLOSED, Ordering::Release);
    }
}

/// Whether the owner of entry `slot` is still there.
pub(crate) fn status<E: Entry>(entries: &[E], live: &impl Liveness, slot: usize) -> EndpointStatus {
    let Some(ep) = entries.get(slot) else {
        return EndpointStatus::Gone;
    };
    // SYNC POINT: Acquire pairs with the Release store of CLOSED in `detach`: an SPSC end
    // that finds its peer closed drains what the peer published before (no SPSC loom model
    // has a registry).
    let word = ep.load(Ordering::Acquire);
    match word & EP_STATE_MASK {
        EP_FREE => EndpointStatus::Free,
        EP_CLAIMING | EP_TAKING | EP_ATTACHED if live.held(slot) => EndpointStatus::Alive,
        _ => EndpointStatus::Gone,
    }
}
