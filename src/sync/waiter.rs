//! The eventcount: how a side that cannot make progress goes to sleep without ever missing the
//! wake-up, and how the other side avoids a system call when nobody sleeps.
//!
//! ```text
//!  waiter (ring empty / full)               notifier (after publishing progress)
//!  ------------------------------           ------------------------------------
//!  spin briefly, re-checking                store index (Release)
//!  waiters += 1                             light barrier
//!  heavy barrier                            if waiters != 0:
//!  e = epoch (Acquire)                          epoch += 1 (Release)
//!  re-check; if ready: waiters -= 1, done       FUTEX_WAKE(epoch)
//!  FUTEX_WAIT(epoch, e, slice)
//!  waiters -= 1, loop
//! ```
//!
//! Why no wake-up is lost: the two barriers act as two `SeqCst` fences, which are totally
//! ordered. If the waiter's comes first, the notifier's load of `waiters` sees the
//! announcement and it bumps the epoch; the waiter either read the epoch before the bump (then
//! `FUTEX_WAIT` sees a different value and returns, or is already queued and gets woken) or
//! after it (then, by the Release/Acquire pair on the epoch, its re-check sees the published
//! index). If the notifier's comes first, the waiter's re-check sees the published index and it
//! never sleeps. This is the protocol of io_uring's `IORING_SQ_NEED_WAKEUP`, and loom checks it
//! (`loom-tests`). The barriers are asymmetric ([`barrier`](super::barrier)): the notifier's,
//! paid on every message, is a compiler barrier; the waiter's, paid before each sleep, is a
//! `membarrier(2)` system call that stands in for the notifier's fence.
//!
//! Sleeps are cut into slices so the waiter can look at its peer's liveness now and then: a
//! peer that died (SIGKILL) never notifies.

use std::time::Duration;

use super::doorbell::{Doorbell, FD_PARKER};
use super::futex::Futex;
use super::{AtomicU32, Deadline, Ordering, barrier, fence, spin_hint};

/// Longest single sleep; a waiter re-checks its peer's liveness at least this often.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// Longest single sleep when this process may not issue the heavy barrier (see
/// [`barrier::heavy`]): a wake-up can then be missed, and is made up for by re-checking.
const UNCOVERED_SLICE: Duration = Duration::from_millis(1);

/// One wait/notify channel: a futex epoch and a count of announced waiters.
///
/// Both words are only written in the slow path, so they can share a cache line with other
/// rarely written words. Zero-initialised memory is a valid, idle `EventCount`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct EventCount {
    /// Bumped (wrapping) by a notifier that saw an announced waiter; sleepers wait on it.
    epoch: Futex,
    /// Waiters that announced themselves and have not yet left: threads asleep on the futex
    /// in the low 16 bits, ends parked in an event loop in the high 16 bits (one
    /// [`FD_PARKER`] each; see [`doorbell`](super::doorbell)). Written by waiters only. A
    /// waiter killed while asleep leaves it too high, which costs the notifier a needless
    /// `FUTEX_WAKE` or doorbell, never a lost wake-up.
    waiters: AtomicU32,
}

/// How a blocked call waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Poll as tightly as `Spin` for a time budget, then sleep on the futex (the default).
    ///
    /// The budget starts at 50 µs and adapts per handle: a waiter that is woken soon after it
    /// fell asleep (its peer was busy, e.g. copying a large message) doubles it, up to 2 ms;
    /// one that slept longer than that halves it again. So two busy sides do not put each
    /// other to sleep, and an idle side sleeps after at most 2 ms of spinning.
    #[default]
    Adaptive,
    /// Sleep on the futex at once: lowest CPU use, highest wake-up latency.
    Block,
    /// Never sleep: burn a core for the lowest latency. The peer's liveness and any timeout
    /// are still checked periodically.
    Spin,
}

/// What a waiter's poll function reports.
pub(crate) enum Poll<T> {
    /// Done: return this.
    Ready(T),
    /// Not yet.
    Pending,
}

/// The `Adaptive` strategy's spin budget of one handle (see [`WaitStrategy::Adaptive`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinBudget {
    nanos: u32,
}

// Under loom waiters never spin, and the budget only exists.
#[cfg_attr(loom, allow(dead_code))]
impl SpinBudget {
    /// The budget a handle starts with, and the least it falls back to.
    const BASE: u32 = 50_000;
    /// The most a handle spins before it sleeps.
    const MAX: u32 = 2_000_000;
    /// Rounds polled before the clock is first read: a wait this short (the peer is a few
    /// hundred nanoseconds behind) costs no clock read at all.
    const FREE_ROUNDS: u32 = 128;

    pub(crate) const fn new() -> SpinBudget {
        SpinBudget { nanos: Self::BASE }
    }

    fn budget(&self) -> Duration {
        Duration::from_nanos(u64::from(self.nanos))
    }

    /// A sleep just ended with the condition ready after `slept`: a sleep shorter than the
    /// budget means the peer was busy, not idle, and the waiter should have kept spinning.
    fn after_sleep(&mut self, slept: Duration) {
        if slept < self.budget() {
            self.nanos = (self.nanos * 2).min(Self::MAX);
        } else if slept > Duration::from_nanos(u64::from(Self::MAX)) {
            self.nanos = (self.nanos / 2).max(Self::BASE);
        }
    }
}

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget::new()
    }
}

/// Why [`EventCount::wait`] returned without the condition becoming ready.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Statistics of a handle's blocking, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Times a call found the ring full (producer) or empty (consumer) and had to wait.
    pub waits: u64,
    /// Times a waiter announced itself and went to sleep on the futex.
    pub sleeps: u64,
}

impl EventCount {
    /// An idle event count (for heap rings; in shared memory zeroed bytes are the same).
    pub(crate) fn new() -> EventCount {
        EventCount {
            epoch: Futex::new(),
            waiters: AtomicU32::new(0),
        }
    }

    /// Wakes every sleeper after a Release store of a rare state change (close): unlike
    /// [`EventCount::notify`] it does not skip the system call when nobody announced. Ends
    /// parked in an event loop get the doorbell (`bell`) if any announced itself.
    #[cold]
    pub(crate) fn notify_closed<B: Doorbell + ?Sized>(&self, bell: &B) {
        // SYNC POINT: pairs with the heavy barrier of `wait` and of `park_fd`.
        fence(Ordering::SeqCst);
        self.wake();
        if self.waiters.load(Ordering::Relaxed) >= FD_PARKER {
            bell.ring();
        }
    }

    /// Notifies sleepers after progress was published with a Release store: futex sleepers
    /// get a `FUTEX_WAKE`, ends parked in an event loop the doorbell `bell` (see
    /// [`doorbell`](super::doorbell)).
    ///
    /// Fast path: a compiler barrier and one load, no system call unless someone announced a
    /// wait.
    #[inline]
    pub(crate) fn notify<B: Doorbell + ?Sized>(&self, bell: &B) {
        // SYNC POINT: pairs with the heavy barrier in `wait` and in `park_fd` (see the module
        // docs).
        barrier::light();
        #[cfg(not(shmring_mutant = "skip_wake"))]
        {
            let waiters = self.waiters.load(Ordering::Relaxed);
            if waiters != 0 {
                self.wake_announced(waiters, bell);
            }
        }
    }

    /// The slow half of `notify`: wakes whichever kinds of waiter announced themselves.
    #[cold]
    #[inline(never)]
    fn wake_announced<B: Doorbell + ?Sized>(&self, waiters: u32, bell: &B) {
        if waiters % FD_PARKER != 0 {
            self.wake();
        }
        if waiters >= FD_PARKER && !cfg!(shmring_mutant = "fd_skip_bell") {
            bell.ring();
        }
    }

    /// Announces an end that is about to wait for its readiness fd (an event loop), then
    /// issues the heavy barrier. The caller must look at the ring once more before it waits:
    /// a notifier that published before the barrier may not have seen the announcement.
    /// Returns whether the barrier covered every notifier (see [`barrier::heavy`]); if not, a
    /// doorbell may be missed and the caller should look again soon.
    #[cold]
    pub(crate) fn park_fd(&self) -> bool {
        self.waiters.fetch_add(FD_PARKER, Ordering::Relaxed);
        barrier::heavy()
    }

    /// Withdraws an announcement of [`EventCount::park_fd`].
    #[cold]
    pub(crate) fn unpark_fd(&self) {
        self.waiters.fetch_sub(FD_PARKER, Ordering::Relaxed);
    }

    /// Bumps the epoch and wakes every sleeper, whether or not one announced itself (used for
    /// rare events such as close, where a spare system call does not matter).
    #[cold]
    pub(crate) fn wake(&self) {
        // SYNC POINT: Release pairs with the Acquire epoch load in `wait`.
        self.epoch.fetch_add(1, Ordering::Release);
        self.epoch.wake_all();
    }

    /// Waits until `poll` returns `Ready`, the deadline passes, or `on_slice` returns `Ready`.
    ///
    /// `on_slice` (e.g. a liveness check) runs after every sleep, every thousand rounds of
    /// spinning and once more when the deadline passes; it is called often, so it must
    /// throttle its own expensive work (the rings look at `/proc` at most once per slice per
    /// handle).
    ///
    /// `poll` must be a pure check of shared state (it may run many times). Before giving up on
    /// a deadline `poll` runs once more, so a ready condition is never reported as a timeout.
    pub(crate) fn wait<T>(
        &self,
        strategy: WaitStrategy,
        deadline: Deadline,
        stats: &mut WaitStats,
        spin: &mut SpinBudget,
        mut poll: impl FnMut() -> Poll<T>,
        on_slice: impl FnMut() -> Poll<T>,
    ) -> Result<T, TimedOut> {
        self.wait_choosy(strategy, deadline, stats, spin, |_| poll(), on_slice)
    }

    /// [`EventCount::wait`] for a waiter that may turn down a ready condition while it is
    /// awake: `poll(settle)` may answer `Pending` although the condition holds (a producer
    /// that would rather wait a moment for more room, say) when `settle` is false. With
    /// `settle` true (the waiter announced itself and is about to sleep, or its deadline
    /// passed) it must answer from shared state alone, as `wait`'s `poll` always does:
    /// otherwise a notification that came before the announcement would be lost.
    pub(crate) fn wait_choosy<T>(
        &self,
        strategy: WaitStrategy,
        deadline: Deadline,
        stats: &mut WaitStats,
        spin: &mut SpinBudget,
        mut poll: impl FnMut(bool) -> Poll<T>,
        mut on_slice: impl FnMut() -> Poll<T>,
    ) -> Result<T, TimedOut> {
        if let Poll::Ready(v) = poll(false) {
            return Ok(v);
        }
        stats.waits += 1;
        // A zero timeout (`try`-like use of a timed call) gives up at once: no spinning.
        if deadline.remaining().is_some_and(|left| left.is_zero()) {
            return expire(|| poll(true), on_slice);
        }
        if strategy == WaitStrategy::Spin {
            return spin_until(deadline, poll, on_slice);
        }
        // Under loom spinning adds only states, never behaviours: `spin_for` is a no-op there.
        if strategy == WaitStrategy::Adaptive {
            if let Poll::Ready(v) = spin_for(spin.budget(), || poll(false)) {
                return Ok(v);
            }
        }
        #[cfg(not(loom))]
        let parked = std::time::Instant::now();
        loop {
            // Announce, then re-check: see the module docs for why the barrier is needed.
            self.waiters.fetch_add(1, Ordering::Relaxed);
            let covered = barrier::heavy();
            // SYNC POINT: Acquire pairs with the Release bump in `wake`.
            let epoch = self.epoch.load(Ordering::Acquire);
            #[cfg(not(shmring_mutant = "no_recheck"))]
            if let Poll::Ready(v) = poll(true) {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                return Ok(v);
            }
            let longest = if covered { SLICE } else { UNCOVERED_SLICE };
            let slice = match deadline.remaining() {
                None => longest,
                Some(left) if left.is_zero() => {
                    self.waiters.fetch_sub(1, Ordering::Relaxed);
                    return expire(|| poll(true), on_slice);
                }
                Some(left) => left.min(longest),
            };
            stats.sleeps += 1;
            // Under loom an untimed sleep is modelled as unbounded: slices exist only to look
            // at process liveness, which heap rings do not have.
            #[cfg(loom)]
            let slice = deadline.remaining().map(|_| slice);
            #[cfg(not(loom))]
            let slice = Some(slice);
            self.epoch.wait(epoch, slice);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if let Poll::Ready(v) = poll(false) {
                #[cfg(not(loom))]
                if strategy == WaitStrategy::Adaptive {
                    spin.after_sleep(parked.elapsed());
                }
                return Ok(v);
            }
            if let Poll::Ready(v) = on_slice() {
                return Ok(v);
            }
            if deadline.expired() {
                return expire(|| poll(true), on_slice);
            }
        }
    }
}

/// The deadline passed: one last look at the peers (so that a short timeout used in a loop
/// still notices a dead peer; callers throttle their own lookups) and at the condition.
fn expire<T>(
    mut poll: impl FnMut() -> Poll<T>,
    mut on_slice: impl FnMut() -> Poll<T>,
) -> Result<T, TimedOut> {
    if let Poll::Ready(v) = on_slice() {
        return Ok(v);
    }
    final_poll(&mut poll)
}

fn final_poll<T>(mut poll: impl FnMut() -> Poll<T>) -> Result<T, TimedOut> {
    match poll() {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(TimedOut),
    }
}

/// The spinning phase of `Adaptive`: polls as tightly as `Spin` until `budget` has passed,
/// reading the clock once every 64 rounds (and not at all for the first rounds).
#[cfg(not(loom))]
fn spin_for<T>(budget: Duration, mut poll: impl FnMut() -> Poll<T>) -> Poll<T> {
    let mut until = None;
    let mut rounds: u32 = 0;
    loop {
        spin_hint();
        if let Poll::Ready(v) = poll() {
            return Poll::Ready(v);
        }
        rounds = rounds.wrapping_add(1);
        if rounds < SpinBudget::FREE_ROUNDS || rounds % 64 != 0 {
            continue;
        }
        let now = std::time::Instant::now();
        match until {
            None => until = Some(now + budget),
            Some(t) if now >= t => return Poll::Pending,
            Some(_) => {}
        }
    }
}

#[cfg(loom)]
fn spin_for<T>(_budget: Duration, _poll: impl FnMut() -> Poll<T>) -> Poll<T> {
    Poll::Pending
}

/// The `Spin` strategy: poll forever, looking at the clock and at the peers (`on_slice`,
/// self-throttled) every thousand rounds.
fn spin_until<T>(
    deadline: Deadline,
    mut poll: impl FnMut(bool) -> Poll<T>,
    mut on_slice: impl FnMut() -> Poll<T>,
) -> Result<T, TimedOut> {
    let mut rounds: u32 = 0;
    loop {
        spin_hint();
        if let Poll::Ready(v) = poll(false) {
            return Ok(v);
        }
        rounds = rounds.wrapping_add(1);
        if rounds % 1024 != 0 && !cfg!(loom) {
            continue;
        }
        if let Poll::Ready(v) = on_slice() {
            return Ok(v);
        }
        if deadline.expired() {
            return expire(|| poll(true), on_slice);
        }
    }
}
