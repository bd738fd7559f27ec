//! The SPSC handles' hooks for event loops: a readiness fd per end, and the wait channel and
//! storage that the async handles park on.

use std::io;

use super::{Consumer, Producer};
use crate::evented::{Announcement, Readiness};

impl Consumer {
    /// A descriptor that becomes readable when a message arrives or the producer closes, for
    /// epoll, mio or any event loop; see [`Readiness`] and the [`evented`](crate::evented)
    /// module for the loop that waits on it.
    ///
    /// # Errors
    /// The system's: no inotify instance or eventfd could be made (`EMFILE`, the per-user
    /// inotify limit).
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// let (_tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// let ready = rx.readiness()?;
    /// assert!(ready.as_raw_fd() >= 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn readiness(&self) -> io::Result<Readiness> {
        Readiness::new(self.ring.storage.clone(), &self.ring.ctrl().wait.readable)
    }

    /// The announcement of a parked consumer (for the async handles).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn announcement(&self) -> Announcement {
        Announcement::new(self.ring.storage.clone(), &self.ring.ctrl().wait.readable)
    }
}

impl Producer {
    /// A descriptor that becomes readable when room is released or the consumer closes;
    /// see [`Consumer::readiness`].
    ///
    /// # Errors
    /// As [`Consumer::readiness`].
    pub fn readiness(&self) -> io::Result<Readiness> {
        Readiness::new(self.ring.storage.clone(), &self.ring.ctrl().wait.writable)
    }

    /// The announcement of a parked producer (for the async handles).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn announcement(&self) -> Announcement {
        Announcement::new(self.ring.storage.clone(), &self.ring.ctrl().wait.writable)
    }
}

/// The async handles' non-blocking steps, split so that a future can find a message (or
/// room) in one poll and lend it out in the same poll, without holding a borrow across the
/// polls in which it waits.
#[cfg(all(feature = "tokio", not(loom)))]
mod steps {
    use super::super::consumer::Peeked;
    use super::super::producer::Claim;
    use super::super::{Consumer, Grant, Message, Producer};
    use crate::error::{TryRecvError, TrySendError};
    use crate::sync::waiter::{Poll, WaitStrategy};

    /// A published record, found and validated; nothing is taken until it is lent out.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Found(Peeked);

    /// Room claimed for a record; nothing is published until its grant is committed.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Room(Claim);

    impl Consumer {
        /// `try_recv` without lending the message out yet.
        #[inline]
        pub(crate) fn evented_peek(&mut self) -> Result<Found, TryRecvError> {
            match self.poll_record() {
                Poll::Ready(Ok(p)) => Ok(Found(p)),
                Poll::Ready(Err(e)) => Err(e.into()),
                Poll::Pending => Err(self.empty_or_ended()),
            }
        }

        /// Lends out the record `evented_peek` just found.
        #[inline]
        pub(crate) fn evented_message(&mut self, found: Found) -> Message<'_> {
            self.message(found.0)
        }

        pub(crate) fn wait_strategy(&self) -> WaitStrategy {
            self.ep.strategy
        }
    }

    impl Producer {
        /// `try_reserve` without lending the grant out yet.
        #[inline]
        pub(crate) fn evented_claim(&mut self, len: usize) -> Result<Room, TrySendError<()>> {
            self.try_claim_once(len)
                .map(Room)
                .map_err(|e| e.into_try_send(()))
        }

        /// Lends out the room `evented_claim` just claimed.
        #[inline]
        pub(crate) fn evented_grant(&mut self, room: Room) -> Grant<'_> {
            self.grant(room.0)
        }

        pub(crate) fn wait_strategy(&self) -> WaitStrategy {
            self.ep.strategy
        }
    }
}

#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) use steps::{Found, Room};
