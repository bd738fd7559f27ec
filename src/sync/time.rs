//! Time for the ring code: deadlines of timed calls (modelled under loom, which has no clock)
//! and the throttle that rate-limits liveness look-ups.

use std::time::{Duration, Instant};

pub(crate) use imp::Deadline;

/// Rate limit of a slow check (a look at a peer's liveness): `due` says yes at most once per
/// interval. Uses the real clock; under loom (which has no clock) it is always due, so that
/// the models of rings with a registry run every peer check they reach (heap rings without
/// a registry have no peers to look at and never ask).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle whose first `due` says yes.
    pub(crate) const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
        }
    }

    /// Whether `interval` has passed since the last yes; if so, starts a new interval.
    pub(crate) fn due(&mut self) -> bool {
        if cfg!(loom) {
            return true;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(not(loom))]
mod imp {
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
mod imp {
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
