//! The one place that knows about loom.
//!
//! Everything concurrent in the ring code (atomics, fences, the data cells, the futex, the
//! clock used for deadlines and the spin hint) is imported from here. A normal build re-exports
//! `std` and uses the real futex system call; a build with `RUSTFLAGS="--cfg loom"` swaps in
//! loom's model-checked equivalents, so the very same ring code is explored exhaustively by the
//! `loom-tests` crate. No other module imports `core::sync::atomic` or `loom` directly.

pub(crate) mod barrier;
pub(crate) mod futex;
pub(crate) mod region;
pub(crate) mod waiter;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Hint used inside pure spin loops: a CPU pause normally, a scheduler yield under loom (so the
/// model checker can run the other thread instead of exploring an endless loop).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// How many rounds of `Backoff::snooze` a waiter spends before it announces itself and sleeps.
/// Under loom spinning adds only states, never behaviours, so it is skipped.
#[inline]
pub(crate) fn spin_rounds() -> u32 {
    if cfg!(loom) { 0 } else { 12 }
}

pub(crate) use time::Deadline;

#[cfg(not(loom))]
mod time {
    use std::time::{Duration, Instant};

    /// When a timed operation gives up. `None` waits forever.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Deadline(Option<Instant>);

    impl Deadline {
        pub(crate) fn never() -> Self {
            Deadline(None)
        }

        pub(crate) fn after(timeout: Duration) -> Self {
            // A timeout too large to represent is the same as no timeout.
            Deadline(Instant::now().checked_add(timeout))
        }

        /// Time left, `None` for no deadline; zero once it has passed.
        pub(crate) fn remaining(&self) -> Option<Duration> {
            self.0
                .map(|at| at.saturating_duration_since(Instant::now()))
        }

        pub(crate) fn expired(&self) -> bool {
            self.remaining() == Some(Duration::ZERO)
        }
    }
}

#[cfg(loom)]
mod time {
    use std::time::Duration;

    /// loom has no clock. A finite deadline is modelled as one that passes during the first
    /// timed sleep: the futex model returns from a timed wait at once, and the waiter then sees
    /// the deadline as expired. That explores exactly the interleavings in which a timeout
    /// races with a wake-up.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Deadline(bool);

    impl Deadline {
        pub(crate) fn never() -> Self {
            Deadline(false)
        }

        pub(crate) fn after(_timeout: Duration) -> Self {
            Deadline(true)
        }

        pub(crate) fn remaining(&self) -> Option<Duration> {
            if self.0 {
                Some(Duration::from_nanos(1))
            } else {
                None
            }
        }

        pub(crate) fn expired(&self) -> bool {
            self.0
        }
    }
}
