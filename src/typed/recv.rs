//! The typed reading calls, the same on an SPSC and an MPMC message: views in place (size
//! and alignment checked) and volatile copies out.

use super::{Pod, TypedError, check};

macro_rules! typed_message {
    ($kind:ident) => {
        impl crate::$kind::Message<'_> {
            /// The message, in place, as a `&T`: it must be exactly `size_of::<T>()` bytes
            /// at an address aligned for `T` (see "Size and alignment" in
            /// [`typed`](crate::typed)).
            ///
            /// The bytes stay in the ring, where a peer that breaks the protocol could still
            /// write them: with a peer you do not trust, use
            /// [`read_value`](Self::read_value).
            ///
            /// # Errors
            /// [`TypedError::Size`] or [`TypedError::Alignment`].
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_value(&0x1122_3344u32)?;
            /// tx.send(b"abc")?;
            /// assert_eq!(*rx.recv()?.as_value::<u32>()?, 0x1122_3344);
            /// assert!(matches!(
            ///     rx.recv()?.as_value::<u32>(),
            ///     Err(shmring::typed::TypedError::Size { len: 3, size: 4, .. })
            /// ));
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn as_value<T: Pod>(&self) -> Result<&T, TypedError> {
                check::<T>(self, false, true)?;
                Ok(bytemuck::from_bytes(self))
            }

            /// The message, in place, as a `&[T]`: its length must be a whole multiple of
            /// `size_of::<T>()` and its address aligned for `T`.
            ///
            /// # Errors
            /// [`TypedError::Size`] or [`TypedError::Alignment`].
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_values(&[3u16, 1, 4, 1, 5])?;
            /// let msg = rx.recv()?;
            /// let digits: &[u16] = msg.as_values()?;
            /// assert_eq!(digits.iter().sum::<u16>(), 14);
            /// assert!(msg.as_values::<u32>().is_err()); // 10 bytes are not whole u32s
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn as_values<T: Pod>(&self) -> Result<&[T], TypedError> {
                check::<T>(self, true, true)?;
                Ok(bytemuck::cast_slice(self))
            }

            /// A copy of the message as a `T`, taken with volatile reads (see "Reading a
            /// message from a peer you do not trust" on this type): a snapshot that a peer
            /// can no longer change, at any alignment. The message must be exactly
            /// `size_of::<T>()` bytes.
            ///
            /// # Errors
            /// [`TypedError::Size`].
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_value(&u128::MAX)?; // aligned to 16: copy it out whatever the ring does
            /// assert_eq!(rx.recv()?.read_value::<u128>()?, u128::MAX);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn read_value<T: Pod>(&self) -> Result<T, TypedError> {
                check::<T>(self, false, false)?;
                let mut value = T::zeroed();
                self.copy_to(bytemuck::bytes_of_mut(&mut value));
                Ok(value)
            }

            /// A copy of the message as a `Vec<T>`, taken with volatile reads (see
            /// [`read_value`](Self::read_value)). Its length must be a whole multiple of
            /// `size_of::<T>()`.
            ///
            /// # Errors
            /// [`TypedError::Size`].
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = shmring::", stringify!($kind), "::channel(&shmring::", stringify!($kind), "::Config::default())?;")]
            /// tx.send_values(&[[1u8, 2], [3, 4]])?;
            /// assert_eq!(rx.recv()?.read_values::<[u8; 2]>()?, vec![[1, 2], [3, 4]]);
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn read_values<T: Pod>(&self) -> Result<Vec<T>, TypedError> {
                check::<T>(self, true, false)?;
                let mut values = vec![T::zeroed(); self.len() / size_of::<T>()];
                self.copy_to(bytemuck::cast_slice_mut(&mut values));
                Ok(values)
            }
        }
    };
}

typed_message!(spsc);
typed_message!(mpmc);
