//! The MPMC handles' hooks for event loops: a readiness fd per end, and the wait channel and
//! storage that the async handles park on.

use std::io;

use super::{Receiver, Sender};
use crate::evented::{Announcement, Readiness};

impl Receiver {
    /// A descriptor that becomes readable when a message arrives or every sender is gone,
    /// for epoll, mio or any event loop; see [`Readiness`] and the
    /// [`evented`](crate::evented) module for the loop that waits on it. Every receiver
    /// parked on the ring is told of every message; the ones that lose the race for it look
    /// and wait again.
    ///
    /// # Errors
    /// The system's: no inotify instance or eventfd could be made (`EMFILE`, the per-user
    /// inotify limit).
    pub fn readiness(&self) -> io::Result<Readiness> {
        let ring = &self.h.ring;
        Readiness::new(ring.storage.clone(), &ring.ctrl().wait.readable)
    }

    /// The announcement of a parked receiver (for the async handles).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn announcement(&self) -> Announcement {
        let ring = &self.h.ring;
        Announcement::new(ring.storage.clone(), &ring.ctrl().wait.readable)
    }
}

impl Sender {
    /// A descriptor that becomes readable when a slot is released or every receiver is
    /// gone; see [`Receiver::readiness`].
    ///
    /// # Errors
    /// As [`Receiver::readiness`].
    pub fn readiness(&self) -> io::Result<Readiness> {
        let ring = &self.h.ring;
        Readiness::new(ring.storage.clone(), &ring.ctrl().wait.writable)
    }

    /// The announcement of a parked sender (for the async handles).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn announcement(&self) -> Announcement {
        let ring = &self.h.ring;
        Announcement::new(ring.storage.clone(), &ring.ctrl().wait.writable)
    }
}

/// The async handles' non-blocking steps, split so that a future can claim a message (or a
/// slot) and lend it out in the same poll, without holding a borrow across the polls in which
/// it waits.
#[cfg(all(feature = "tokio", not(loom)))]
mod steps {
    use super::super::handle::NoSlot;
    use super::super::receiver::Taken;
    use super::super::{Grant, Message, Receiver, Sender};
    use crate::error::{ClaimError, TryRecvError, TrySendError};
    use crate::sync::waiter::WaitStrategy;

    /// A message claimed from the ring. It must be lent out ([`Receiver::evented_message`])
    /// in the same poll: until then nobody else can receive it.
    #[derive(Debug)]
    pub(crate) struct Claimed(Taken);

    /// A slot claimed for a message. It must be lent out ([`Sender::evented_grant`]) in the
    /// same poll: receivers wait for it.
    #[derive(Debug)]
    pub(crate) struct Slot {
        pos: u64,
        len: usize,
    }

    impl Receiver {
        /// `try_recv` without lending the message out yet.
        #[inline]
        pub(crate) fn evented_take(&mut self) -> Result<Claimed, TryRecvError> {
            match self.take_fast() {
                Some(t) => Ok(Claimed(t)),
                None => self.try_recv_slow().map(Claimed),
            }
        }

        /// Lends out the message `evented_take` just claimed.
        #[inline]
        pub(crate) fn evented_message(&mut self, claimed: Claimed) -> Message<'_> {
            self.message(claimed.0)
        }

        pub(crate) fn wait_strategy(&self) -> WaitStrategy {
            self.h.ep.strategy
        }
    }

    impl Sender {
        /// `try_reserve` without lending the grant out yet.
        #[inline]
        pub(crate) fn evented_claim(&mut self, len: usize) -> Result<Slot, TrySendError<()>> {
            self.check_size(len).map_err(|e| e.into_try_send(()))?;
            match self.try_claim() {
                Ok(pos) => Ok(Slot { pos, len }),
                Err(NoSlot::Busy) => Err(self.check_after_busy().into_try_send(())),
                Err(e) => Err(ClaimError::from(e).into_try_send(())),
            }
        }

        /// Lends out the slot `evented_claim` just claimed.
        #[inline]
        pub(crate) fn evented_grant(&mut self, slot: Slot) -> Grant<'_> {
            self.grant(slot.pos, slot.len)
        }

        pub(crate) fn wait_strategy(&self) -> WaitStrategy {
            self.h.ep.strategy
        }
    }
}

#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) use steps::{Claimed, Slot};
