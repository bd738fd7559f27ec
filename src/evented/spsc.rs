//! Async SPSC handles: a [`Producer`] or [`Consumer`] that waits in an executor instead of a
//! futex.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::park::Park;
use crate::error::{Corruption, RecvError, SendError, TryRecvError, TrySendError};
use crate::spsc::evented::{Found, Room};
use crate::spsc::{Consumer, Grant, Message, Producer};

/// The receiving end of an SPSC ring, for async code: [`recv`](AsyncConsumer::recv)`.await`
/// waits without blocking the thread, and the handle is a
/// [`Stream`](futures_core::Stream) of owned messages.
///
/// While messages keep coming it spins and yields to the executor briefly, as the blocking
/// `recv` spins, and makes no system call; once it has waited long enough (per the handle's
/// [`WaitStrategy`](crate::WaitStrategy)), it parks: the producer then rings the ring's
/// doorbell (see [`evented`](crate::evented)), and the process's doorbell thread wakes the
/// task. Works on any executor (tokio's current-thread and multi-thread runtimes included),
/// and with several in one process.
///
/// Timeouts come from the runtime: `tokio::time::timeout(d, rx.recv())`. Every future of this
/// type is cancellation safe: see [`recv`](AsyncConsumer::recv).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::evented::{AsyncConsumer, AsyncProducer};
/// let (tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
/// let (mut tx, mut rx) = (AsyncProducer::new(tx)?, AsyncConsumer::new(rx)?);
/// let sender = tokio::spawn(async move {
///     for i in 0u32..100 {
///         tx.send(&i.to_le_bytes()).await.unwrap();
///     }
/// });
/// for i in 0u32..100 {
///     let msg = rx.recv().await?;            // the same guard as `Consumer::recv`
///     assert_eq!(*msg, i.to_le_bytes());
/// }
/// sender.await?;
/// assert_eq!(rx.recv().await.unwrap_err(), shmring::RecvError::Disconnected);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncConsumer {
    rx: Consumer,
    park: Park,
    /// The stream has ended (end of stream, or after yielding corruption).
    ended: bool,
}

impl AsyncConsumer {
    /// How often this handle found nothing to do (`waits`) and parked until the doorbell
    /// (`sleeps`), so far.
    pub fn wait_stats(&self) -> crate::WaitStats {
        self.park.stats
    }

    /// Wraps a consumer, registering it with the process's doorbell dispatcher (started by
    /// the first async handle). Any consumer works: named, anonymous or on the heap.
    ///
    /// # Errors
    /// The system's, if the dispatcher could not be started or the ring's object not
    /// watched (`EMFILE`, `ENOSPC` for too many inotify watches).
    pub fn new(rx: Consumer) -> io::Result<AsyncConsumer> {
        let park = Park::new(rx.announcement(), rx.wait_strategy())?;
        Ok(AsyncConsumer {
            rx,
            park,
            ended: false,
        })
    }

    /// The consumer, for its non-blocking calls (`try_recv`, `drain`, ...).
    pub fn get_mut(&mut self) -> &mut Consumer {
        &mut self.rx
    }

    /// The consumer.
    pub fn get_ref(&self) -> &Consumer {
        &self.rx
    }

    /// The consumer back, for blocking use.
    pub fn into_inner(self) -> Consumer {
        self.rx
    }

    /// Finds the next record, waiting (in the executor) while the ring is empty.
    #[inline]
    fn poll_found(&mut self, cx: &mut Context<'_>) -> Poll<Result<Found, RecvError>> {
        loop {
            let err = match self.rx.evented_peek() {
                Ok(found) => {
                    self.park.done();
                    return Poll::Ready(Ok(found));
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

    /// Receives the next message, waiting while the ring is empty; the message is read in
    /// place and released when the guard is dropped, as with [`Consumer::recv`].
    ///
    /// Cancellation safe: the message is taken in the same poll that returns it, so a future
    /// dropped before it completes has taken nothing; the next `recv` gets that message.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] at end of stream, [`RecvError::Corrupted`].
    #[inline]
    pub async fn recv(&mut self) -> Result<Message<'_>, RecvError> {
        let found = poll_fn(|cx| self.poll_found(cx)).await?;
        Ok(self.rx.evented_message(found))
    }

    /// Polls for the next message and hands it to `f` (for poll-based code such as
    /// `AsyncRead` implementations). As cancellation safe as [`recv`](AsyncConsumer::recv).
    ///
    /// # Errors
    /// As [`recv`](AsyncConsumer::recv).
    #[inline]
    pub fn poll_recv_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Poll<Result<T, RecvError>> {
        let found = ready!(self.poll_found(cx))?;
        Poll::Ready(Ok(f(&self.rx.evented_message(found))))
    }
}

/// The messages, copied into `Vec`s, until end of stream. Corruption is yielded as an error
/// (once), then the stream ends, as with [`Consumer::iter`]. Cancellation safe.
impl futures_core::Stream for AsyncConsumer {
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

impl futures_core::FusedStream for AsyncConsumer {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

/// The sending end of an SPSC ring, for async code: [`send`](AsyncProducer::send)`.await`
/// and [`reserve`](AsyncProducer::reserve)`.await` wait for room without blocking the thread.
/// See [`AsyncConsumer`] for how it waits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::evented::{AsyncConsumer, AsyncProducer};
/// let (tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
/// let (mut tx, mut rx) = (AsyncProducer::new(tx)?, AsyncConsumer::new(rx)?);
/// let mut grant = tx.reserve(64).await?;     // zero copy: write in place...
/// grant[..5].copy_from_slice(b"hello");
/// grant.commit(5)?;                           // ...and publish 5 bytes
/// assert_eq!(&*rx.recv().await?, b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncProducer {
    tx: Producer,
    park: Park,
}

impl AsyncProducer {
    /// How often this handle found nothing to do (`waits`) and parked until the doorbell
    /// (`sleeps`), so far.
    pub fn wait_stats(&self) -> crate::WaitStats {
        self.park.stats
    }

    /// Wraps a producer, registering it with the process's doorbell dispatcher.
    ///
    /// # Errors
    /// As [`AsyncConsumer::new`].
    pub fn new(tx: Producer) -> io::Result<AsyncProducer> {
        let park = Park::new(tx.announcement(), tx.wait_strategy())?;
        Ok(AsyncProducer { tx, park })
    }

    /// The producer, for its non-blocking calls (`try_send`, `batch`, ...).
    pub fn get_mut(&mut self) -> &mut Producer {
        &mut self.tx
    }

    /// The producer.
    pub fn get_ref(&self) -> &Producer {
        &self.tx
    }

    /// The producer back, for blocking use.
    pub fn into_inner(self) -> Producer {
        self.tx
    }

    /// Polls for room and sends `msg` once there is some.
    ///
    /// # Errors
    /// As [`send`](AsyncProducer::send).
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

    /// Sends a message, waiting while the ring is full.
    ///
    /// Cancellation safe: the message is written and published in the poll that completes
    /// the future; a future dropped before that sent nothing.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the consumer is gone, [`SendError::TooLarge`],
    /// [`SendError::Corrupted`].
    #[inline]
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        poll_fn(|cx| self.poll_send(cx, msg)).await
    }

    #[inline]
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Result<Room, SendError>> {
        loop {
            let err = match self.tx.evented_claim(len) {
                Ok(room) => {
                    self.park.done();
                    return Poll::Ready(Ok(room));
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

    /// Reserves room for a message of up to `len` bytes, waiting while the ring is full, and
    /// returns it for writing in place, as [`Producer::reserve`].
    ///
    /// Cancellation safe: the room is claimed in the poll that completes the future; a future
    /// dropped before that claimed nothing.
    ///
    /// # Errors
    /// As [`send`](AsyncProducer::send).
    #[inline]
    pub async fn reserve(&mut self, len: usize) -> Result<Grant<'_>, SendError> {
        let room = poll_fn(|cx| self.poll_room(cx, len)).await?;
        Ok(self.tx.evented_grant(room))
    }
}

/// The blocking form of a non-blocking send's error (never `Full`: that one is waited out).
pub(super) fn send_error(e: TrySendError) -> SendError {
    match e {
        TrySendError::Full(()) | TrySendError::Disconnected(()) => SendError::Disconnected(()),
        TrySendError::TooLarge { msg, len, max } => SendError::TooLarge { msg, len, max },
        TrySendError::Corrupted { msg, what } => SendError::Corrupted { msg, what },
    }
}
