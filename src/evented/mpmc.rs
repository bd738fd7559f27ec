//! Async MPMC handles: a [`Sender`] or [`Receiver`] that waits in an executor instead of a
//! futex.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::park::Park;
use super::spsc::send_error;
use crate::error::{Corruption, RecvError, SendError, TryRecvError, TrySendError};
use crate::mpmc::evented::{Claimed, Slot};
use crate::mpmc::{Grant, Message, Receiver, Sender};

/// A receiving end of an MPMC ring, for async code; see
/// [`AsyncConsumer`](super::AsyncConsumer) for how it waits. Each receiver (clone it with
/// `Receiver::try_clone` first) gets its own async handle.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::evented::{AsyncReceiver, AsyncSender};
/// let (tx, rx) = shmring::mpmc::channel(&shmring::mpmc::Config::default())?;
/// let (mut tx, mut rx) = (AsyncSender::new(tx)?, AsyncReceiver::new(rx)?);
/// tx.send(b"job").await?;
/// assert_eq!(&*rx.recv().await?, b"job");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncReceiver {
    rx: Receiver,
    park: Park,
    ended: bool,
}

impl AsyncReceiver {
    /// How often this handle found nothing to do (`waits`) and parked until the doorbell
    /// (`sleeps`), so far.
    pub fn wait_stats(&self) -> crate::WaitStats {
        self.park.stats
    }

    /// Wraps a receiver, registering it with the process's doorbell dispatcher.
    ///
    /// # Errors
    /// As [`AsyncConsumer::new`](super::AsyncConsumer::new).
    pub fn new(rx: Receiver) -> io::Result<AsyncReceiver> {
        let park = Park::new(rx.announcement(), rx.wait_strategy())?;
        Ok(AsyncReceiver {
            rx,
            park,
            ended: false,
        })
    }

    /// The receiver, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut Receiver {
        &mut self.rx
    }

    /// The receiver.
    pub fn get_ref(&self) -> &Receiver {
        &self.rx
    }

    /// The receiver back, for blocking use.
    pub fn into_inner(self) -> Receiver {
        self.rx
    }

    /// Claims the next message, waiting (in the executor) while the ring is empty. The claim
    /// must be lent out in the same poll.
    #[inline]
    fn poll_claimed(&mut self, cx: &mut Context<'_>) -> Poll<Result<Claimed, RecvError>> {
        loop {
            let err = match self.rx.evented_take() {
                Ok(claimed) => {
                    self.park.done();
                    return Poll::Ready(Ok(claimed));
                }
                Err(TryRecvError::Empty) => {
                    ready!(self.park.poll_wait(cx));
                    continue;
                }
                Err(TryRecvError::Disconnected) => RecvError::Disconnected,
                Err(TryRecvError::Corrupted(c)) => RecvError::Corrupted(c),
            };
            self.park.done();
            return Poll::Ready(Err(err));
        }
    }

    /// Receives the next message, waiting while the ring is empty (a guard over the slot,
    /// released on drop, as [`Receiver::recv`]).
    ///
    /// Cancellation safe: the message is claimed in the same poll that returns it; a future
    /// dropped before it completes has claimed nothing.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once every sender is gone and the ring is drained,
    /// [`RecvError::Corrupted`].
    #[inline]
    pub async fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        let claimed = poll_fn(|cx| self.poll_claimed(cx)).await?;
        Ok(self.rx.evented_message(claimed))
    }

    /// Polls for the next message and hands it to `f`. As cancellation safe as
    /// [`recv`](AsyncReceiver::recv).
    ///
    /// # Errors
    /// As [`recv`](AsyncReceiver::recv).
    #[inline]
    pub fn poll_recv_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Poll<Result<T, RecvError>> {
        let claimed = ready!(self.poll_claimed(cx))?;
        Poll::Ready(Ok(f(&self.rx.evented_message(claimed))))
    }
}

/// The messages, copied into `Vec`s, until every sender is gone and the ring is drained.
/// Corruption is yielded once, then the stream ends. Cancellation safe.
impl futures_core::Stream for AsyncReceiver {
    type Item = Result<Vec<u8>, Corruption>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(this.poll_recv_with(cx, <[u8]>::to_vec)) {
            Ok(v) => Poll::Ready(Some(Ok(v))),
            Err(e) => {
                this.ended = true;
                Poll::Ready(match e {
                    RecvError::Disconnected => None,
                    RecvError::Corrupted(c) => Some(Err(c)),
                })
            }
        }
    }
}

impl futures_core::FusedStream for AsyncReceiver {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// A sending end of an MPMC ring, for async code; see [`AsyncProducer`](super::AsyncProducer).
#[derive(Debug)]
pub struct AsyncSender {
    tx: Sender,
    park: Park,
}

impl AsyncSender {
    /// How often this handle found nothing to do (`waits`) and parked until the doorbell
    /// (`sleeps`), so far.
    pub fn wait_stats(&self) -> crate::WaitStats {
        self.park.stats
    }

    /// Wraps a sender, registering it with the process's doorbell dispatcher.
    ///
    /// # Errors
    /// As [`AsyncConsumer::new`](super::AsyncConsumer::new).
    pub fn new(tx: Sender) -> io::Result<AsyncSender> {
        let park = Park::new(tx.announcement(), tx.wait_strategy())?;
        Ok(AsyncSender { tx, park })
    }

    /// The sender, for its non-blocking calls.
    pub fn get_mut(&mut self) -> &mut Sender {
        &mut self.tx
    }

    /// The sender.
    pub fn get_ref(&self) -> &Sender {
        &self.tx
    }

    /// The sender back, for blocking use.
    pub fn into_inner(self) -> Sender {
        self.tx
    }

    /// Polls for a free slot and sends `msg` once there is one.
    ///
    /// # Errors
    /// As [`send`](AsyncSender::send).
    #[inline]
    pub fn poll_send(&mut self, cx: &mut Context<'_>, msg: &[u8]) -> Poll<Result<(), SendError>> {
        loop {
            let err = match self.tx.try_send(msg) {
                Ok(()) => {
                    self.park.done();
                    return Poll::Ready(Ok(()));
                }
                Err(TrySendError::Full(())) => {
                    ready!(self.park.poll_wait(cx));
                    continue;
                }
                Err(e) => send_error(e),
            };
            self.park.done();
            return Poll::Ready(Err(err));
        }
    }

    /// Sends a message, waiting while the ring is full. Cancellation safe, as
    /// [`AsyncProducer::send`](super::AsyncProducer::send).
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if every receiver is gone, [`SendError::TooLarge`],
    /// [`SendError::Corrupted`].
    #[inline]
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        poll_fn(|cx| self.poll_send(cx, msg)).await
    }

    #[inline]
    fn poll_slot(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<Slot, SendError>> {
        loop {
            let err = match self.tx.evented_claim(len) {
                Ok(slot) => {
                    self.park.done();
                    return Poll::Ready(Ok(slot));
                }
                Err(TrySendError::Full(())) => {
                    ready!(self.park.poll_wait(cx));
                    continue;
                }
                Err(e) => send_error(e),
            };
            self.park.done();
            return Poll::Ready(Err(err));
        }
    }

    /// Claims a slot for up to `len` bytes, waiting while the ring is full, for writing in
    /// place ([`Sender::reserve`]). Cancellation safe: the slot is claimed in the poll that
    /// completes the future.
    ///
    /// # Errors
    /// As [`send`](AsyncSender::send).
    #[inline]
    pub async fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError> {
        let slot = poll_fn(|cx| self.poll_slot(cx, len)).await?;
        Ok(self.tx.evented_grant(slot))
    }
}
