//! The producer's claim of room: the checks of the consumer's index (shared, and of this
//! process's consumer), the `room_wanted` announcement, and the waiting for room, with the
//! distance a waiting producer keeps from a consumer that is still releasing.

use std::time::Duration;

use super::producer::{Claim, NoSpace, Producer};
use super::ring::{CONSUMER_SLOT, consumer_closed, gap_for, record_size};
use crate::error::{ClaimError, Corruption};
use crate::geometry::RECORD_HEADER;
use crate::sync::waiter::{Poll, WaitStrategy};
use crate::sync::{Deadline, Ordering, weaken};

/// How long a producer waiting for room spins between two looks at the consumer's `head`
/// (see `claim_slow`).
const ROOM_POLL_EVERY: Duration = Duration::from_micros(5);

/// Bytes a waiting producer waits for between itself and a consumer that is still releasing
/// before it resumes (at most an eighth of the ring; see `Producer::keeps_distance`).
const ROOM_DISTANCE: u64 = 4096;

/// Bytes a blocking claim leaves free behind it, as far as it knows, while the consumer
/// hands over every release at once: two cache lines, so that it never writes the line the
/// consumer is reading (see `Producer::keeps_distance`).
const ROOM_NEAR: u64 = 128;

impl Producer {
    /// Tries to claim room for a record with a `len`-byte payload, without waiting.
    #[inline]
    pub(super) fn try_claim(&mut self, len: u64) -> Result<Claim, NoSpace> {
        self.usable()?;
        self.claim_space(len, false)
    }

    /// Whether the ring can take records at all: not corrupted, not a copy inherited by a
    /// forked child, consumer not closed.
    #[inline]
    pub(super) fn usable(&self) -> Result<(), NoSpace> {
        if let Some(c) = self.ep.fault() {
            return Err(NoSpace::Corrupted(c));
        }
        if self
            .ring
            .ctrl()
            .wait
            .consumer_closed
            .load(Ordering::Acquire)
            != 0
        {
            return Err(NoSpace::Disconnected);
        }
        Ok(())
    }

    /// Claims room for a record with a `len`-byte payload, if there is some. Reloads the
    /// consumer's `head` when the cached copy says the ring is full, once when it says the
    /// ring is within a quarter of full (to raise `room_wanted`, see `want_room`), and
    /// with `fresh` always (for a producer that waits).
    #[inline]
    pub(super) fn claim_space(&mut self, len: u64, fresh: bool) -> Result<Claim, NoSpace> {
        let cap = self.ring.capacity;
        let aligned = self.ring.aligned;
        let pos = self.tail & self.ring.mask();
        let (mut pad, mut at) = (0, pos);
        let mut gap = gap_for(pos, len, aligned);
        let mut rec = record_size(len, gap);
        if rec > cap - pos {
            // Does not fit before the end of the region: pad to the end, start again at 0.
            (pad, at) = (cap - pos, 0);
            gap = gap_for(0, len, aligned);
            rec = record_size(len, gap);
        }
        // The record, any padding before it, and the terminator word after it (in free space
        // too: it is where the next record's header goes).
        let need = pad + rec + RECORD_HEADER;
        let slack = if cfg!(shmring_mutant = "full_off_by_one") {
            8
        } else {
            0
        };
        let fits = |used: u64| need <= cap - used + slack;
        // Less than a quarter of the ring left after this claim: from here on, room the
        // consumer keeps back (it stores `head` lazily) matters; see `want_room`.
        let tight = |used: u64| need + cap / 4 > cap - used;
        let cached = self.local_used(self.tail.wrapping_sub(self.head_cache))?;
        if fresh || !fits(cached) || (!self.wants_room && tight(cached)) {
            let used = self.reload_head()?;
            let used = self.local_used(used)?;
            // Never cache more room than a consumer of this process really released.
            self.cache_head(self.tail.wrapping_sub(used));
            self.want_room(tight(used));
            if !fits(used) {
                return Err(NoSpace::Full);
            }
        }
        Ok(Claim { pad, at, len, gap })
    }

    /// Takes `head` as our view of the consumer's index; tells a consumer of this process
    /// how far we may now write (see `shm::LocalEnds`).
    #[inline]
    fn cache_head(&mut self, head: u64) {
        self.head_cache = head;
        if let Some(local) = &self.ring.local {
            local
                .producer
                .set_bound(head.wrapping_add(self.ring.capacity));
        }
    }

    /// `used` (bytes in use as shared memory says), or more if the consumer lives in this
    /// process and has really released less: a forged `head` must not let us write over a
    /// message it has lent out (see `shm::LocalEnds`). One load when it does not.
    #[inline]
    fn local_used(&mut self, used: u64) -> Result<u64, NoSpace> {
        // SYNC POINT: pairs with the heavy barrier of a consumer joining in this process
        // (`Ring::join_locally`): it sees our bound, or we see it here.
        crate::sync::barrier::light();
        let Some(released) = self.ring.local.as_ref().and_then(|l| l.consumer.get()) else {
            return Ok(used);
        };
        let mine = self.tail.wrapping_sub(released);
        if mine > self.ring.capacity {
            return Err(NoSpace::Corrupted(self.corrupt(Corruption::new(
                "consumer of this process out of step with the producer",
                released,
            ))));
        }
        Ok(used.max(mine))
    }

    /// Loads the consumer's `head` into our cache, checks it, and returns the bytes in use.
    #[inline]
    fn reload_head(&mut self) -> Result<u64, NoSpace> {
        // SYNC POINT: Acquire pairs with the consumer's Release store of `head` in
        // `Consumer::store_head`: the consumer is done with the bytes we are about to reuse.
        let order = weaken(cfg!(shmring_mutant = "relaxed_head"), Ordering::Acquire);
        let head = self.ring.ctrl().consumer.head.load(order);
        // Modulo 2^64, `head` may only have moved forward from our cached copy and not
        // past what we published: the used bytes lie between the unpublished ones and
        // the cached count (itself at most the capacity).
        let used = self.tail.wrapping_sub(head);
        if used > self.tail.wrapping_sub(self.head_cache)
            || used < self.tail.wrapping_sub(self.published)
            || used % 8 != 0
        {
            return Err(NoSpace::Corrupted(
                self.corrupt(Corruption::new("consumer index out of range", head)),
            ));
        }
        self.cache_head(head);
        Ok(used)
    }

    /// Sets or clears `room_wanted` (only when that changes it): set while, after a fresh
    /// look at `head`, less than a quarter of the ring (beyond this claim) stays free to us.
    /// While it is set the consumer hands over every byte it releases at once rather than
    /// once per quarter ring, so a producer waiting for room (spinning, asleep, or parked in
    /// an event loop) learns of it at the consumer's release, never a quarter ring later.
    ///
    /// It goes up before the ring is full, not when a claim fails: room the consumer released
    /// while the flag was down stays with it until its next store of `head`, so the flag must
    /// be up before the producer can come to need that room. What remains: a consumer that
    /// stops reading while more than a quarter of the ring is free keeps what it released
    /// since its last store (less than a quarter ring) until it next releases a message or
    /// finds the ring empty; from the moment the ring is within a quarter of full, nothing is
    /// kept back. A plain Relaxed store is enough: the flag guards no data, and a consumer
    /// that misses it for a moment only stores `head` later (at the latest a quarter ring
    /// later, as before the flag existed).
    #[inline]
    fn want_room(&mut self, want: bool) {
        if want != self.wants_room {
            self.want_room_slow(want);
        }
    }

    #[cold]
    fn want_room_slow(&mut self, want: bool) {
        self.wants_room = want;
        let flag = &self.ring.ctrl().wait.room_wanted;
        flag.store(u32::from(want), Ordering::Relaxed);
    }

    /// `try_claim` for the non-blocking calls: a full ring whose consumer died without
    /// closing is reported as disconnected (checked at most once per slice), one whose object
    /// was truncated as corrupted.
    #[inline]
    pub(super) fn try_claim_once(&mut self, len: usize) -> Result<Claim, ClaimError> {
        let len = self.check_size(len)?;
        match self.try_claim(len) {
            Ok(c) => Ok(c),
            Err(NoSpace::Full) => {
                if let Some(c) = self.ep.truncated(&self.ring.storage) {
                    Err(ClaimError::Corrupted(c))
                } else if self
                    .ring
                    .peer_died(&mut self.ep, CONSUMER_SLOT, consumer_closed)
                {
                    Err(ClaimError::Disconnected)
                } else {
                    Err(ClaimError::Full)
                }
            }
            Err(NoSpace::Disconnected) => Err(ClaimError::Disconnected),
            Err(NoSpace::Corrupted(c)) => Err(ClaimError::Corrupted(c)),
        }
    }

    /// Refuses a message larger than the ring's maximum.
    #[inline]
    pub(super) fn check_size(&self, len: usize) -> Result<u64, ClaimError> {
        if len as u64 > self.ring.max_message {
            return Err(ClaimError::TooLarge {
                len,
                max: self.ring.max_message as usize,
            });
        }
        Ok(len as u64)
    }

    #[cold]
    pub(super) fn corrupt(&mut self, c: Corruption) -> Corruption {
        self.ep.corrupt(&self.ring.storage, c)
    }

    /// Checks the size, then claims room, waiting per the strategy up to `deadline`.
    #[inline]
    pub(super) fn claim(&mut self, len: usize, deadline: Deadline) -> Result<Claim, ClaimError> {
        let len = self.check_size(len)?;
        let first = match self.try_claim(len) {
            Ok(c) if self.keeps_distance(c, ROOM_NEAR) => return Ok(c),
            // Room, but up to the line the consumer may be reading: see `claim_slow`.
            Ok(_) | Err(NoSpace::Full) => deadline,
            Err(NoSpace::Disconnected) => return Err(ClaimError::Disconnected),
            Err(NoSpace::Corrupted(c)) => return Err(ClaimError::Corrupted(c)),
        };
        self.claim_slow(len, first)
    }

    /// Whether `claim` leaves `gap` bytes free between the producer and the consumer (as far
    /// as our cached `head` says), or the consumer is not handing room over at once anyway
    /// (`room_wanted` is down: it then releases a quarter ring at a time).
    ///
    /// While the ring is nearly full the consumer stores `head` on every release. A producer
    /// that took each released record at once would write the cache line the consumer is
    /// reading (small records share lines), message after message, and both would crawl.
    /// So a blocking claim takes room only up to two lines short of the consumer
    /// ([`ROOM_NEAR`]); short of that it waits in `claim_slow` until a stretch of the ring
    /// ([`ROOM_DISTANCE`]) is free, or the consumer stops releasing, or it is about to sleep,
    /// and then fills that stretch without looking again. The non-blocking calls take any
    /// room there is. `Block` waiters do not keep the distance: they have no spinning phase
    /// to wait in.
    #[inline]
    fn keeps_distance(&self, claim: Claim, gap: u64) -> bool {
        let cap = self.ring.capacity;
        let after = self
            .tail
            .wrapping_sub(self.head_cache)
            .saturating_add(claim.need());
        !self.wants_room
            || self.ep.strategy == WaitStrategy::Block
            || after.saturating_add(gap.min(cap / 8)) <= cap
    }

    #[cold]
    pub(super) fn claim_slow(&mut self, len: u64, deadline: Deadline) -> Result<Claim, ClaimError> {
        // Never wait on records the consumer cannot see yet (an unpublished batch).
        self.flush();
        // The wait channel lives in the control block, which `storage` keeps alive.
        let ctrl = self.ring.ctrl_detached();
        let writable = &ctrl.wait.writable;
        let storage = self.ring.storage.clone();
        let strategy = self.ep.strategy;
        let mut stats = self.ep.stats;
        let mut spin = self.ep.spin;
        // Copied out (and back) so the liveness lookups stay throttled across calls.
        let mut throttle = self.ep.throttle;
        let mut first = true;
        let result = writable.wait_choosy(
            strategy,
            deadline,
            &mut stats,
            &mut spin,
            |settle| {
                // While we ask for room the consumer stores `head` on every release; a poll
                // that reloads it between each two of them would take its line from the
                // consumer every message, and a busy consumer would crawl (measured: a third
                // of its speed at 8-byte messages). Looking every five microseconds lets it
                // release many per look, and a consumer that stopped is still found out
                // within two looks.
                if !first {
                    crate::sync::pause_for(ROOM_POLL_EVERY);
                }
                first = false;
                let last = self.head_cache;
                match self.usable().and_then(|()| self.claim_space(len, true)) {
                    // Room, and either a stretch of the ring to spare behind the consumer,
                    // or a consumer that stopped releasing (`head` as at our last look), or
                    // we are about to sleep: take it. Writing right behind a consumer that
                    // is still reading would share cache lines with it, message after
                    // message.
                    Ok(c)
                        if settle
                            || self.keeps_distance(c, ROOM_DISTANCE)
                            || self.head_cache == last =>
                    {
                        Poll::Ready(Ok(c))
                    }
                    Ok(_) | Err(NoSpace::Full) => Poll::Pending,
                    Err(NoSpace::Disconnected) => Poll::Ready(Err(ClaimError::Disconnected)),
                    Err(NoSpace::Corrupted(c)) => Poll::Ready(Err(ClaimError::Corrupted(c))),
                }
            },
            || {
                if throttle.due() && storage.endpoint_gone(CONSUMER_SLOT) {
                    // The consumer died without closing: close for it; the next poll reports
                    // the disconnect.
                    ctrl.wait.consumer_closed.store(1, Ordering::Release);
                }
                // Last: the look at the peer may be the access that finds a truncation.
                match storage.truncation() {
                    Some(c) => Poll::Ready(Err(ClaimError::Corrupted(c))),
                    None => Poll::Pending,
                }
            },
        );
        self.ep.stats = stats;
        self.ep.spin = spin;
        self.ep.throttle = throttle;
        if let Some(c) = self.ep.truncated(&storage) {
            return Err(ClaimError::Corrupted(c));
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(ClaimError::Timeout),
        }
    }
}
