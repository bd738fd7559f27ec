//! The typed sending calls, the same on an SPSC producer and an MPMC sender: copies of
//! values and slices, and zeroed values reserved in place.

use std::time::Duration;

use super::{Pod, ReserveError, ValueGrant, ValuesGrant, bytes_for};
use crate::error::{SendError, SendTimeoutError, TrySendError};

/// `len` values of `T` in bytes, or a length no ring accepts (refused as `TooLarge`).
fn reserved_len<T>(count: usize) -> usize {
    bytes_for::<T>(count).unwrap_or(usize::MAX)
}

macro_rules! typed_sender {
    ($kind:ident, $handle:ident) => {
        impl crate::$kind::$handle {
            #[doc = concat!("Sends a copy of `value` (its `size_of::<T>()` bytes) as one message; waits while the ring is full. The receiver gets it back with `read_value::<T>()` or `as_value::<T>()` on the message (see [`typed`](crate::typed)).")]
            ///
            /// # Errors
            #[doc = concat!("As [`send`](Self::send).")]
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_value(&(-7i64))?;
            /// assert_eq!(rx.recv()?.read_value::<i64>()?, -7);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[inline]
            pub fn send_value<T: Pod>(&mut self, value: &T) -> Result<(), SendError> {
                self.send(bytemuck::bytes_of(value))
            }

            /// Sends a copy of `value` if there is room now.
            ///
            /// # Errors
            /// As [`try_send`](Self::try_send).
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.try_send_value(&1u16)?;
            /// assert_eq!(rx.try_recv()?.read_value::<u16>()?, 1);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[inline]
            pub fn try_send_value<T: Pod>(&mut self, value: &T) -> Result<(), TrySendError> {
                self.try_send(bytemuck::bytes_of(value))
            }

            /// Sends a copy of `value`, waiting at most `timeout` for room.
            ///
            /// # Errors
            /// As [`send_timeout`](Self::send_timeout).
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_value_timeout(&[1u8, 2, 3], Duration::from_millis(10))?;
            /// assert_eq!(rx.recv()?.read_value::<[u8; 3]>()?, [1, 2, 3]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn send_value_timeout<T: Pod>(
                &mut self,
                value: &T,
                timeout: Duration,
            ) -> Result<(), SendTimeoutError> {
                self.send_timeout(bytemuck::bytes_of(value), timeout)
            }

            /// Sends a copy of `values` (all of them, `values.len() * size_of::<T>()` bytes)
            /// as one message; waits while the ring is full.
            ///
            /// # Errors
            /// As [`send`](Self::send).
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_values(&[1.0f32, 2.0, 3.0])?;
            /// assert_eq!(rx.recv()?.read_values::<f32>()?, [1.0, 2.0, 3.0]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[inline]
            pub fn send_values<T: Pod>(&mut self, values: &[T]) -> Result<(), SendError> {
                self.send(bytemuck::cast_slice(values))
            }

            /// Sends a copy of `values` as one message if there is room now.
            ///
            /// # Errors
            /// As [`try_send`](Self::try_send).
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.try_send_values(&[9u64, 8])?;
            /// assert_eq!(rx.try_recv()?.as_values::<u64>()?, &[9, 8]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[inline]
            pub fn try_send_values<T: Pod>(&mut self, values: &[T]) -> Result<(), TrySendError> {
                self.try_send(bytemuck::cast_slice(values))
            }

            /// Reserves room for one `T` in the ring, zeroed, to be written in place (zero
            /// copy); waits while the ring is full. Nothing is published until
            /// [`ValueGrant::commit`]; dropping the grant publishes nothing.
            ///
            /// # Errors
            /// [`ReserveError::Send`] as [`reserve`](Self::reserve);
            /// [`ReserveError::Typed`] ([`TypedError::Alignment`](super::TypedError::Alignment))
            /// if the reserved payload is not aligned for `T` (see "Size and alignment" in
            /// [`typed`](crate::typed)): the room is given back unpublished.
            ///
            /// ```
            /// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
            /// #[repr(C)]
            /// struct Tick { seq: u64, price: f64 }
            ///
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// let mut tick = tx.reserve_value::<Tick>()?;
            /// tick.seq = 1;
            /// tick.price = 99.5;
            /// tick.commit()?;
            /// let msg = rx.recv()?;
            /// let tick: &Tick = msg.as_value()?;
            /// assert_eq!((tick.seq, tick.price), (1, 99.5));
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn reserve_value<T: Pod>(
                &mut self,
            ) -> Result<ValueGrant<crate::$kind::Grant<'_>, T>, ReserveError<SendError>> {
                let grant = self.reserve(size_of::<T>()).map_err(ReserveError::Send)?;
                ValueGrant::new(grant).map_err(ReserveError::Typed)
            }

            /// Reserves room for one zeroed `T` if there is room now.
            ///
            /// # Errors
            /// As [`reserve_value`](Self::reserve_value), with the errors of
            /// [`try_reserve`](Self::try_reserve).
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// let mut g = tx.try_reserve_value::<[u16; 2]>()?;
            /// g[1] = 5;
            /// g.commit()?;
            /// assert_eq!(rx.recv()?.as_value::<[u16; 2]>()?, &[0, 5]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn try_reserve_value<T: Pod>(
                &mut self,
            ) -> Result<ValueGrant<crate::$kind::Grant<'_>, T>, ReserveError<TrySendError>> {
                let grant = self
                    .try_reserve(size_of::<T>())
                    .map_err(ReserveError::Send)?;
                ValueGrant::new(grant).map_err(ReserveError::Typed)
            }

            /// Reserves room for `count` values of `T`, zeroed, to be written in place;
            /// waits while the ring is full. [`ValuesGrant::commit`] publishes the first `n`
            /// of them; dropping the grant publishes nothing.
            ///
            /// # Errors
            /// As [`reserve_value`](Self::reserve_value); `count * size_of::<T>()` larger
            /// than the ring's largest message is `TooLarge`.
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// let mut g = tx.reserve_values::<i32>(4)?;
            /// g.copy_from_slice(&[4, 3, 2, 1]);
            /// g.commit(4)?;
            /// assert_eq!(rx.recv()?.as_values::<i32>()?, &[4, 3, 2, 1]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn reserve_values<T: Pod>(
                &mut self,
                count: usize,
            ) -> Result<ValuesGrant<crate::$kind::Grant<'_>, T>, ReserveError<SendError>> {
                let grant = self
                    .reserve(reserved_len::<T>(count))
                    .map_err(ReserveError::Send)?;
                ValuesGrant::new(grant).map_err(ReserveError::Typed)
            }
        }
    };
}

typed_sender!(spsc, Producer);
typed_sender!(mpmc, Sender);
