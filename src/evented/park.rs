//! How an async end waits: spin briefly, then yield to the executor a few times, then park
//! (announce itself on the ring's wait channel and leave a waker with the hub).
//!
//! The steps follow the handle's [`WaitStrategy`]: `Adaptive` (the default) spins, yields and
//! parks; `Block` parks at once; `Spin` spins and then yields to the executor for ever (it
//! never parks, so the other side never makes a system call for it, and the executor's other
//! tasks still run).
//!
//! Parking is the eventcount handshake of `sync::doorbell`: the waker is left with the hub
//! first, then the end announces itself (heavy barrier), then the caller looks at the ring
//! once more; only if it still has nothing does the future return `Pending`. A doorbell that
//! comes after the announcement finds the waker. Each wake-up (doorbell, spurious, or the
//! hub's liveness tick) leaves the waker again before the next look. The end stays announced
//! until it makes progress ([`Park::done`]), so a parked end that is woken for nothing costs
//! no new barrier.

use std::io;
use std::task::{Context, Poll};

use super::Announcement;
use super::hub::Registration;
use crate::{WaitStats, WaitStrategy};

/// Looks at the ring made while spinning (each after a short exponential spin) before
/// yielding, with `Adaptive` and `Spin`: about ten microseconds in all.
const SPIN_POLLS: u32 = 12;
/// Times an `Adaptive` end yields to the executor (waking itself) before it parks.
const YIELD_POLLS: u32 = 8;

/// The waiting state of one async end.
pub(crate) struct Park {
    announcement: Announcement,
    registration: Registration,
    pub(crate) strategy: WaitStrategy,
    spins: u32,
    yields: u32,
    /// The waker was left with the hub since the last look at the ring.
    registered: bool,
    /// `waits`: calls that found nothing to do; `sleeps`: times the end parked.
    pub(crate) stats: WaitStats,
}

impl std::fmt::Debug for Park {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Park")
            .field("strategy", &self.strategy)
            .field("parked", &self.announcement.is_armed())
            .finish_non_exhaustive()
    }
}

impl Park {
    pub(crate) fn new(announcement: Announcement, strategy: WaitStrategy) -> io::Result<Park> {
        let registration = Registration::new(announcement.storage())?;
        Ok(Park {
            announcement,
            registration,
            strategy,
            spins: 0,
            yields: 0,
            registered: false,
            stats: WaitStats::default(),
        })
    }

    /// The end made progress: it is not waiting any more (withdraws a parked announcement,
    /// so that the other side stops ringing).
    #[inline(always)]
    pub(crate) fn done(&mut self) {
        if self.spins != 0 || self.announcement.is_armed() {
            self.reset();
        }
    }

    #[cold]
    fn reset(&mut self) {
        self.announcement.disarm();
        self.registration.clear_waker();
        self.spins = 0;
        self.yields = 0;
        self.registered = false;
    }

    /// The end found nothing to do. `Ready` means "look at the ring again now"; `Pending`
    /// that the task will be woken when it is worth looking again.
    pub(crate) fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.announcement.is_armed() {
            if !self.registered {
                // Woken (or polled) since the last look: leave the waker, then look again.
                self.registration.set_waker(cx.waker());
                self.registered = true;
                return Poll::Ready(());
            }
            self.registered = false;
            if !self.announcement.is_covered() {
                // A doorbell may be missed (no heavy barrier in this process): rather than
                // wait for the hub's liveness tick, look again after the executor's next turn.
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        if self.spins == 0 && self.yields == 0 {
            self.stats.waits += 1;
        }
        if self.strategy != WaitStrategy::Block {
            if self.spins < SPIN_POLLS {
                // 2, 4, ... 64 pause instructions between looks.
                for _ in 0..2u32 << self.spins.min(5) {
                    crate::sync::spin_hint();
                }
                self.spins += 1;
                return Poll::Ready(());
            }
            if self.strategy == WaitStrategy::Spin || self.yields < YIELD_POLLS {
                self.yields = self.yields.saturating_add(1);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        // Park: waker first, then the announcement; the caller looks once more.
        self.stats.sleeps += 1;
        self.spins = self.spins.max(1);
        self.registration.set_waker(cx.waker());
        self.registered = true;
        self.announcement.arm();
        Poll::Ready(())
    }
}
