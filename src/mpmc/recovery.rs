//! The registry and crash recovery of shared MPMC rings: attaching an endpoint, closing a
//! side when its last endpoint leaves, reaping the endpoints of dead processes, and
//! finishing the slots they left half done (see "Ends of the stream" and "Crash recovery" in
//! the module docs). Heap rings have no registry: every function here is a no-op for them.

use std::time::Duration;

use super::ring::{CLOSED, MAX_INDEX, RETRY_BUDGET, Ring, Role, SKIP, TAG_RECV, TAG_SEND};
use crate::error::Corruption;
use crate::geometry::MAX_ENDPOINTS;
use crate::storage::EndpointStatus;
use crate::sync::{Ordering, Throttle, fence, weaken};

/// Closes `role`'s side if no endpoint of it is attached any more (shared rings). Safe to
/// call any number of times, from anyone. Gives up after [`RETRY_BUDGET`] failed
/// compare-exchanges (a side word that changes that often is a peer's doing; an honest
/// attacher that raced us is attached, and the scan then sees it).
pub(super) fn close_side_if_last(ring: &Ring, role: Role) {
    let Some(h) = ring.registry() else { return };
    // Two last endpoints closing at once each store their CLOSED entry, then scan for the
    // other's: the fence makes sure at least one of them sees both closed (without it,
    // each load may miss the other's store and nobody closes the side).
    if !cfg!(shmring_mutant = "mpmc_no_close_fence") {
        fence(Ordering::SeqCst);
    }
    let ctrl = ring.ctrl();
    let side = role.side(ctrl);
    for _ in 0..RETRY_BUDGET {
        // SYNC POINT: Acquire pairs with the Release compare-exchange of an attacher: if
        // we see its count, we see its ATTACHED entry in the scan below.
        let w = side.load(Ordering::Acquire);
        if w & CLOSED != 0 || w == 0 {
            // Closed already, or nobody of this side ever attached.
            return;
        }
        if (0..ring.registry_len).any(|i| h.attached_role(i) == Some(role.code())) {
            return;
        }
        // SYNC POINT: Release pairs with the Acquire loads of the side word by the other
        // side (`poll_msg`, `try_claim`): every closed endpoint's writes (seen through the
        // Acquire scan above) happen before the side reads as closed. The fence above does
        // not pass them on: it comes before the scan (loom model
        // `senders_close_on_two_threads_while_receiver_polls`). On failure the loop loads the
        // word again with Acquire, so the value read here is not used: Relaxed.
        let order = weaken(
            cfg!(shmring_mutant = "mpmc_relaxed_side_close"),
            Ordering::AcqRel,
        );
        if side
            .compare_exchange(w, w | CLOSED, order, Ordering::Relaxed)
            .is_ok()
        {
            role.peers_wait(ctrl).notify_closed(&ring.storage);
            return;
        }
    }
}

/// Reaps every registry entry whose process died, and closes a side that lost its last
/// endpoint. Also closes a side left open by a reaper that died half-way.
pub(super) fn reap_dead(ring: &Ring) {
    let Some(h) = ring.registry() else { return };
    for i in 0..ring.registry_len {
        if let Some(role) = h.reap_if_dead(i).and_then(Role::from_code) {
            close_side_if_last(ring, role);
        }
    }
    close_side_if_last(ring, Role::Sender);
    close_side_if_last(ring, Role::Receiver);
}

/// Whether `role`'s side is closed, after reaping the dead endpoints of it (shared rings)
/// up to the first live one: a side with a live endpoint is not done, whatever the others
/// are. One system call per entry looked at: slow paths only.
pub(super) fn side_gone(ring: &Ring, role: Role) -> bool {
    let Some(h) = ring.registry() else {
        return false;
    };
    for i in 0..ring.registry_len {
        if h.attached_role(i) != Some(role.code()) {
            continue;
        }
        match h.reap_if_dead(i).and_then(Role::from_code) {
            // The reaper accounts for the departure (the entry may have changed hands
            // since the role was read: close the side of whoever was reaped).
            Some(reaped) => close_side_if_last(ring, reaped),
            // Alive, unless it closed meanwhile.
            None if h.attached_role(i) == Some(role.code()) => return false,
            None => {}
        }
    }
    close_side_if_last(ring, role);
    // Relaxed: the answer is only for `is_disconnected`, which says nothing of what the ring
    // holds; every call that acts on a closed side reads the word again with Acquire
    // (`Handle::peers_closed`).
    role.side(ring.ctrl()).load(Ordering::Relaxed) & CLOSED != 0
}

/// Whether an endpoint that is still alive recorded a claim on `pos` (with `tag`): the
/// claimer of `pos` is among the endpoints whose record names it.
pub(super) fn claimer_alive(ring: &Ring, pos: u64, tag: u64) -> bool {
    let Some(h) = ring.registry() else {
        return true;
    };
    if cfg!(shmring_mutant = "mpmc_claimer_unseen") {
        return false;
    }
    let target = (pos << 2) | tag;
    (0..ring.registry_len).any(|i| {
        // SYNC POINT: Acquire pairs with the Release stores of claim records in
        // `Handle::record`: seeing a later record of the claimer means seeing the slot it
        // finished before (then the recovering compare-exchange fails). (In loom a
        // compare-exchange reads the store that ran last, so no model misses this.)
        ring.claim_line(i)
            .is_some_and(|rec| rec.load(Ordering::Acquire) == target)
            // Only an attached endpoint claims slots: an entry mid-attach (perhaps forever,
            // if its attacher was killed) holds at most a stale record of a departed owner.
            && h.attached_role(i).is_some()
            && h.status(i) == EndpointStatus::Alive
    })
}

/// Finishes the slots that dead endpoints left half done (see "Crash recovery" in the module
/// docs). Returns whether it finished one, or the corruption it found in `head` and `tail`
/// (then it changes nothing).
pub(super) fn recover_abandoned(ring: &Ring) -> Result<bool, Corruption> {
    let ctrl = ring.ctrl();
    let mut done = false;
    // SYNC POINT: Acquire on `tail` pairs with the claimers' Release compare-exchanges:
    // their claim records (stored before) are visible.
    // `tail` first: a sender claims `p` only once the slot's previous lap `p - slots` was
    // released, so `tail <= head + slots` at every moment, and `head` (which only grows)
    // read afterwards is at least what it was then (the claimer of `t - 1` saw that release
    // with Acquire, and we see its claim). More than that is a peer's forgery, which the
    // loops below must not walk one position at a time. `head` itself is Relaxed: it only
    // names the position to look at, and the compare-exchanges below act only on the very
    // `seq` they saw, each after its claimer was found gone (whose last writes the
    // registry's reads pass on: its token's probe, its closed entry, its later record).
    let t = ctrl.tail.tail.load(Ordering::Acquire);
    let h = ctrl.head.head.load(Ordering::Relaxed);
    if h >= MAX_INDEX || t >= MAX_INDEX {
        return Err(Corruption::new("ring index out of range", h.max(t)));
    }
    if t > h && t - h > ring.slots {
        return Err(Corruption::new("tail more than a ring ahead of head", t));
    }
    // A sender that claimed `head` and never published it (`t > h`: the claim happened
    // before we read `tail`, and `seq` read afterwards still says unpublished).
    // Relaxed load of `seq`: it only spares the registry scan when the slot is not at `h`;
    // the compare-exchange decides.
    let meta = ring.meta(h);
    if t > h
        && meta.seq.load(Ordering::Relaxed) == h
        && !claimer_alive(ring, h, TAG_SEND)
        // SYNC POINT: Release pairs with the receivers' Acquire load of `seq`: the dead
        // claimer's writes to the slot (seen through `claimer_alive`) happen before the
        // receiver that skips the position releases it to the sender of the next lap.
        // Nothing is acquired: the value replaced was read by the claimer before its claim.
        // (The fences of `check_peers` release what this thread's own probes saw; this
        // Release is for a claimer another thread reaped. No loom model has that case.)
        && meta
            .seq
            .compare_exchange(h, (h + 1) | SKIP, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    {
        ctrl.wait.readable.notify(&ring.storage);
        done = true;
    }
    // A receiver that claimed the previous lap of `tail` and never released it.
    if t >= ring.slots {
        let prev = t - ring.slots;
        let meta = ring.meta(t);
        let s = meta.seq.load(Ordering::Acquire);
        if s & !SKIP == prev + 1
            && ctrl.head.head.load(Ordering::Acquire) > prev
            && !claimer_alive(ring, prev, TAG_RECV)
            // SYNC POINT: Release pairs with the senders' Acquire load of `seq`: the dead
            // receiver's reads of the message (seen through `claimer_alive`) happen before
            // the sender of the next lap writes the slot. Nothing is acquired: the message's
            // sender is ordered before the dead receiver, and so before us. (As for the skip
            // mark above, no loom model has the case that needs it.)
            && meta
                .seq
                .compare_exchange(s, t, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            ctrl.wait.writable.notify(&ring.storage);
            done = true;
        }
    }
    Ok(done)
}

/// Shortest interval between two peer checks of one handle.
pub(super) const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The slow-path peer check: reap dead endpoints, finish abandoned slots (rate limited; not
/// for heap rings), and see whether the object was truncated under the mapping. Fails with
/// the corruption found (the caller records it).
pub(super) fn check_peers(ring: &Ring, clock: &mut Throttle) -> Result<(), Corruption> {
    if ring.claims.is_some() && clock.due() {
        reap_dead(ring);
        // A dead process may have left one abandoned slot per handle it had.
        for _ in 0..MAX_ENDPOINTS {
            if !recover_abandoned(ring)? {
                break;
            }
        }
    }
    // Last: the peer check may be the access that finds the object truncated.
    match ring.storage.truncation() {
        Some(c) => Err(c),
        None => Ok(()),
    }
}
