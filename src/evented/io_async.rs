//! Async byte streams over rings: `AsyncWrite` for the async sending ends and
//! [`AsyncByteReader`] (`AsyncRead`) for the async receiving ends, as [`crate::io`] does for
//! blocking code, so that `tokio::io::copy` moves bytes between a ring and a socket.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmring::evented::{AsyncByteReader, AsyncConsumer, AsyncProducer};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let (tx, rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
//! let mut tx = AsyncProducer::new(tx)?;
//! let writer = tokio::spawn(async move {
//!     tx.write_all(&[7u8; 100_000]).await.unwrap();
//!     // dropping the producer ends the stream
//! });
//! let mut all = Vec::new();
//! AsyncByteReader::new(AsyncConsumer::new(rx)?).read_to_end(&mut all).await?;
//! assert_eq!(all, vec![7u8; 100_000]);
//! writer.await?;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{AsyncConsumer, AsyncProducer, AsyncReceiver, AsyncSender};
use crate::error::RecvError;
use crate::io::stream_error;

/// An async receiving end that an [`AsyncByteReader`] can read from: [`AsyncConsumer`] or
/// [`AsyncReceiver`].
pub trait AsyncRecvEnd: sealed::Sealed + Unpin {
    /// Polls for the next message and hands it to `f`.
    ///
    /// # Errors
    /// As the end's `recv`.
    fn poll_recv_bytes(
        &mut self,
        cx: &mut Context<'_>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Poll<Result<(), RecvError>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::AsyncConsumer {}
    impl Sealed for super::AsyncReceiver {}
}

impl AsyncRecvEnd for AsyncConsumer {
    fn poll_recv_bytes(
        &mut self,
        cx: &mut Context<'_>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Poll<Result<(), RecvError>> {
        self.poll_recv_with(cx, f)
    }
}

impl AsyncRecvEnd for AsyncReceiver {
    fn poll_recv_bytes(
        &mut self,
        cx: &mut Context<'_>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Poll<Result<(), RecvError>> {
        self.poll_recv_with(cx, f)
    }
}

/// The bytes of the messages an async receiving end gets, as a `tokio::io::AsyncRead` (see
/// the module docs). Cancellation safe: a `read` future dropped before it completes took no
/// message.
#[derive(Debug)]
pub struct AsyncByteReader<C> {
    end: C,
    rest: Vec<u8>,
    at: usize,
}

impl<C: AsyncRecvEnd> AsyncByteReader<C> {
    /// Reads the messages of `end` as one stream of bytes.
    pub fn new(end: C) -> AsyncByteReader<C> {
        AsyncByteReader {
            end,
            rest: Vec::new(),
            at: 0,
        }
    }

    /// The receiving end back; bytes read from the ring but not yet from this reader are lost.
    pub fn into_inner(self) -> C {
        self.end
    }
}

impl<C: AsyncRecvEnd> AsyncRead for AsyncByteReader<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.at < this.rest.len() {
                let n = (this.rest.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.rest[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            let (rest, mut n) = (&mut this.rest, 0);
            let got = this.end.poll_recv_bytes(cx, &mut |msg| {
                let take = msg.len().min(buf.remaining());
                buf.put_slice(&msg[..take]);
                rest.clear();
                rest.extend_from_slice(&msg[take..]);
                n = take;
            });
            match ready!(got) {
                Ok(()) => {
                    this.at = 0;
                    if n > 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                // End of stream: nothing put in `buf`.
                Err(e) => return Poll::Ready(stream_error(e)),
            }
        }
    }
}

/// Each write sends one message of up to `max_message` bytes, waiting (in the executor) while
/// the ring is full; flushing does nothing (every message is published when written), and
/// neither does shutting down: drop the handle to end the stream. `BrokenPipe` once the
/// consumer is gone. Cancellation safe.
impl AsyncWrite for AsyncProducer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(this.get_ref().max_message());
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send(cx, &buf[..n]))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// As for [`AsyncProducer`]; with several receivers the stream is split between them at
/// message boundaries.
impl AsyncWrite for AsyncSender {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(this.get_ref().max_message());
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_send(cx, &buf[..n]))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
