//! Error types, one per operation family, shaped like `std::sync::mpsc` and crossbeam-channel:
//! failed sends hand the message back; receive errors distinguish "nothing yet" from "end of
//! stream"; setting up a ring has its own [`OpenError`] that names exactly what is wrong.
//!
//! `Debug` on the generic errors never requires `T: Debug` (the message is not printed).
//!
//! A send of a borrowed slice (`send(&[u8])`) fails with `SendError` (that is,
//! `SendError<()>`): the caller still holds the message, and an error that borrows nothing is
//! `'static`, `Send` and `Sync`, so `?` turns it into a `Box<dyn Error + Send + Sync>`, an
//! `anyhow::Error` or an `io::Error` as it stands.

use std::fmt;
use std::io;

/// What was found wrong in memory that a peer can write. A ring that reports this is not used
/// further by the handle that saw it: no read or write ever goes outside the mapping.
///
/// Also what a handle inherited by a forked child reports on every call that would move data
/// ([`is_inherited`](Corruption::is_inherited)): the ring is sound, but the handle is not an
/// endpoint of this process and does not touch the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What invariant was broken.
    pub what: &'static str,
    /// The offending value.
    pub found: u64,
}

impl Corruption {
    pub(crate) const fn new(what: &'static str, found: u64) -> Self {
        Corruption { what, found }
    }

    /// The corruption of a ring whose shared-memory object was truncated under its mapping,
    /// `len` being the object's size when the truncation was noticed.
    pub(crate) const fn truncated(len: u64) -> Self {
        Corruption::new(TRUNCATED, len)
    }

    /// Whether the ring's shared-memory object was truncated (shrunk by a process that could
    /// open it) under this process's mapping, or lost pages to a hole punched in it (which
    /// only a hugetlbfs object cannot refill). The process survived it (the mapping reads
    /// zeros from then on) and the handle that reports it does not use the ring again;
    /// `found` is the object's size in bytes when it was noticed.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmring::spsc::channel(&shmring::spsc::Config::default())?;
    /// tx.send(b"fine")?;
    /// match rx.recv() {
    ///     Ok(msg) => assert_eq!(&*msg, b"fine"),
    ///     Err(shmring::RecvError::Corrupted(c)) if c.is_truncation() => {
    ///         eprintln!("a peer truncated the ring: {c}");
    ///     }
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_truncation(&self) -> bool {
        self.what == TRUNCATED
    }

    /// What a handle inherited across `fork` reports in the child, `owner` being the pid of
    /// the process whose endpoint it is.
    pub(crate) const fn inherited(owner: u32) -> Self {
        Corruption::new(INHERITED, owner as u64)
    }

    /// Whether the handle that reports this is a copy inherited across `fork`: this process
    /// is a child of the process that made the handle, whose endpoint it is and which may
    /// still be using it. Nothing is wrong with the ring, and the copy leaves it alone: every
    /// call that would move data fails (sending, reserving, committing, receiving, draining,
    /// iterating, `try_clone`), and nothing it does writes to the ring, so the parent's
    /// messages are neither lost nor overwritten: a message or grant it held at the fork
    /// stays the parent's (dropping it releases or abandons nothing, committing it fails
    /// with [`CommitError::Corrupted`]), and its `is_disconnected` only reads the ring's
    /// closed flags (it never looks for dead peers, whose clean-up writes to the ring).
    /// Dropping the copy only unmaps the ring. `found` is the pid of the process that made
    /// the handle.
    ///
    /// The child is told apart by a `pthread_atfork` handler: a child made by a raw `clone`
    /// system call rather than the C library's `fork` is not.
    ///
    /// A child that needs the ring attaches its own endpoint: by name (`open`), or from a
    /// descriptor (`from_fd`) it inherited or was sent.
    ///
    /// ```no_run
    /// let (mut tx, fd) = shmring::spsc::Producer::create_anonymous(shmring::spsc::Config::default())?;
    /// // SAFETY: this program has one thread here.
    /// if unsafe { libc::fork() } == 0 {
    ///     // The child: `tx` is the parent's producer.
    ///     match tx.try_send(b"from the child") {
    ///         Err(shmring::TrySendError::Corrupted { what, .. }) if what.is_inherited() => {}
    ///         other => panic!("{other:?}"),
    ///     }
    ///     let rx = shmring::spsc::Consumer::from_fd(fd)?; // the child's own endpoint
    ///     # drop(rx);
    ///     # // SAFETY: ends the forked child without running the parent's exit handlers.
    ///     # unsafe { libc::_exit(0) };
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_inherited(&self) -> bool {
        self.what == INHERITED
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_inherited() {
            write!(f, "{} (pid {})", self.what, self.found)
        } else {
            write!(f, "{} (found {})", self.what, self.found)
        }
    }
}

impl std::error::Error for Corruption {}

const TRUNCATED: &str = "shared-memory object truncated under the mapping; bytes left";

const INHERITED: &str =
    "this handle was inherited across fork(); the endpoint belongs to the parent process";

/// How the `Corrupted` variants of the errors print their [`Corruption`]: "ring corrupted:"
/// and what was found, except for an inherited handle, whose ring is sound.
struct Headline<'a>(&'a Corruption);

impl fmt::Display for Headline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_inherited() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "ring corrupted: {}", self.0)
        }
    }
}

macro_rules! debug_without_payload {
    ($ty:ident { $($variant:ident $(($($field:ident),*))? $({ $($named:ident),* })?),* $(,)? }) => {
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                #[allow(unused_variables)]
                match self {
                    $( $ty::$variant $(($($field),*))? $({ $($named,)* .. })? => {
                        let mut d = f.debug_struct(concat!(stringify!($ty), "::", stringify!($variant)));
                        $($( d.field(stringify!($named), $named); )*)?
                        d.finish_non_exhaustive()
                    } )*
                }
            }
        }
    };
}

/// Error of a blocking send: the message is handed back.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum SendError<T = ()> {
    /// The receiving side closed or died: nobody will ever read the message (a broken pipe).
    #[error("sending on a ring whose receiving side is gone")]
    Disconnected(T),
    /// The message is larger than the largest message the ring accepts.
    #[error("message of {len} bytes exceeds the ring's maximum message size of {max} bytes")]
    TooLarge {
        /// The refused message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(what))]
    Corrupted {
        /// The refused message.
        msg: T,
        /// What was wrong.
        what: Corruption,
    },
}
debug_without_payload!(SendError { Disconnected(m), TooLarge { len, max }, Corrupted { what } });

/// Error of a non-blocking send: the message is handed back.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum TrySendError<T = ()> {
    /// No room right now (the ring might not be full for long).
    #[error("sending on a full ring")]
    Full(T),
    /// The receiving side closed or died.
    #[error("sending on a ring whose receiving side is gone")]
    Disconnected(T),
    /// The message is larger than the largest message the ring accepts.
    #[error("message of {len} bytes exceeds the ring's maximum message size of {max} bytes")]
    TooLarge {
        /// The refused message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(what))]
    Corrupted {
        /// The refused message.
        msg: T,
        /// What was wrong.
        what: Corruption,
    },
}
debug_without_payload!(TrySendError { Full(m), Disconnected(m), TooLarge { len, max }, Corrupted { what } });

/// Error of a send with a timeout: the message is handed back.
#[derive(thiserror::Error, PartialEq, Eq)]
pub enum SendTimeoutError<T = ()> {
    /// Still no room when the timeout passed.
    #[error("timed out waiting for room in the ring")]
    Timeout(T),
    /// The receiving side closed or died.
    #[error("sending on a ring whose receiving side is gone")]
    Disconnected(T),
    /// The message is larger than the largest message the ring accepts.
    #[error("message of {len} bytes exceeds the ring's maximum message size of {max} bytes")]
    TooLarge {
        /// The refused message.
        msg: T,
        /// Its length.
        len: usize,
        /// The ring's largest message.
        max: usize,
    },
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(what))]
    Corrupted {
        /// The refused message.
        msg: T,
        /// What was wrong.
        what: Corruption,
    },
}
debug_without_payload!(SendTimeoutError { Timeout(m), Disconnected(m), TooLarge { len, max }, Corrupted { what } });

macro_rules! into_inner {
    ($ty:ident: $($variant:ident),*) => {
        impl<T> $ty<T> {
            /// The message that could not be sent.
            pub fn into_inner(self) -> T {
                match self {
                    $( $ty::$variant(m) => m, )*
                    $ty::TooLarge { msg, .. } | $ty::Corrupted { msg, .. } => msg,
                }
            }

            /// Whether the receiving side is gone.
            pub fn is_disconnected(&self) -> bool {
                matches!(self, $ty::Disconnected(_))
            }
        }
    };
}
into_inner!(SendError: Disconnected);
into_inner!(TrySendError: Full, Disconnected);
into_inner!(SendTimeoutError: Timeout, Disconnected);

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(m) => TrySendError::Disconnected(m),
            SendError::TooLarge { msg, len, max } => TrySendError::TooLarge { msg, len, max },
            SendError::Corrupted { msg, what } => TrySendError::Corrupted { msg, what },
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
            SendError::TooLarge { msg, len, max } => SendTimeoutError::TooLarge { msg, len, max },
            SendError::Corrupted { msg, what } => SendTimeoutError::Corrupted { msg, what },
        }
    }
}

macro_rules! into_io_error {
    ($ty:ident: $($variant:ident => $kind:ident),*) => {
        /// Lets `?` turn a failed send into an [`io::Error`] (the message is dropped):
        /// `Disconnected` becomes `BrokenPipe`, as for a pipe whose reader is gone.
        impl<T> From<$ty<T>> for io::Error {
            fn from(e: $ty<T>) -> io::Error {
                let kind = match &e {
                    $( $ty::$variant(_) => io::ErrorKind::$kind, )*
                    $ty::TooLarge { .. } => io::ErrorKind::InvalidInput,
                    $ty::Corrupted { .. } => io::ErrorKind::InvalidData,
                };
                io::Error::new(kind, e.to_string())
            }
        }
    };
}
into_io_error!(SendError: Disconnected => BrokenPipe);
into_io_error!(TrySendError: Full => WouldBlock, Disconnected => BrokenPipe);
into_io_error!(SendTimeoutError: Timeout => TimedOut, Disconnected => BrokenPipe);

/// Error of a blocking receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The sending side closed or died and every message it sent has been received: end of
    /// stream.
    #[error("receiving on a ring whose sending side is gone and which is empty")]
    Disconnected,
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(.0))]
    Corrupted(Corruption),
}

/// Error of a non-blocking receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    #[error("receiving on an empty ring")]
    Empty,
    /// End of stream.
    #[error("receiving on a ring whose sending side is gone and which is empty")]
    Disconnected,
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(.0))]
    Corrupted(Corruption),
}

/// Error of a receive with a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Still nothing to receive when the timeout passed.
    #[error("timed out waiting on an empty ring")]
    Timeout,
    /// End of stream.
    #[error("receiving on a ring whose sending side is gone and which is empty")]
    Disconnected,
    /// The ring's shared state is corrupted, or this handle is a copy inherited across
    /// `fork` ([`Corruption::is_inherited`]); the handle is not usable.
    #[error("{}", Headline(.0))]
    Corrupted(Corruption),
}

impl TryRecvError {
    /// What an iterator yields for this error before it ends: the corruption, if that is
    /// what ended it (nothing for `Empty` and `Disconnected`, which end it quietly).
    pub(crate) fn corruption(self) -> Option<Corruption> {
        match self {
            TryRecvError::Corrupted(c) => Some(c),
            TryRecvError::Empty | TryRecvError::Disconnected => None,
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Corrupted(c) => TryRecvError::Corrupted(c),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Corrupted(c) => RecvTimeoutError::Corrupted(c),
        }
    }
}

/// Error of [`Grant::commit`](crate::spsc::Grant::commit) and
/// [`mpmc::Grant::commit`](crate::mpmc::Grant::commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// More bytes were committed than the grant holds; nothing was published.
    #[error("cannot commit {len} bytes of a {granted}-byte grant")]
    TooLong {
        /// Bytes asked to commit.
        len: usize,
        /// Size of the grant.
        granted: usize,
    },
    /// The receiving side is gone; the message was not published.
    #[error("receiving side is gone")]
    Disconnected,
    /// The grant was inherited across `fork` with its handle
    /// ([`Corruption::is_inherited`]): the room is the parent's, which may still commit it,
    /// so nothing was published and the room was left alone.
    #[error("{}", Headline(.0))]
    Corrupted(Corruption),
}

/// Error of creating or opening a ring. Each case names what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name breaks the POSIX shared-memory name rules.
    #[error("invalid shared-memory name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The configuration cannot describe a ring.
    #[error("invalid ring configuration: {0}")]
    InvalidConfig(String),
    /// No shared-memory object has this name.
    #[error("no shared-memory object named {0:?}")]
    NotFound(String),
    /// Creating: an object with this name already exists (rings are created with `O_EXCL`).
    #[error("a shared-memory object named {0:?} already exists")]
    AlreadyExists(String),
    /// The object's permissions do not allow this process to open it read-write.
    #[error("permission denied opening {0:?}")]
    PermissionDenied(String),
    /// `/dev/shm` (or the memfd's memory) is full: the ring's memory could not be reserved.
    #[error("not enough shared memory to reserve {bytes} bytes")]
    NoSpace {
        /// Bytes that were asked for.
        bytes: u64,
    },
    /// The object does not start with the shmring magic: not a shmring ring.
    #[error("not a shmring object (bad magic)")]
    NotShmring,
    /// The object is a ring of another layout version.
    #[error("unsupported layout version {found} (this library reads version {expected})")]
    UnsupportedVersion {
        /// Version in the object.
        found: u32,
        /// Version this library reads.
        expected: u32,
    },
    /// The object is a ring of another kind (SPSC vs MPMC).
    #[error("wrong ring kind: object is {found}, expected {expected}")]
    WrongKind {
        /// Kind in the object.
        found: &'static str,
        /// Kind asked for.
        expected: &'static str,
    },
    /// The object was created on a machine with another pointer width or word layout.
    #[error("incompatible layout: {0}")]
    Incompatible(&'static str),
    /// The object is smaller than its header says the ring needs (truncated).
    #[error("object is {actual} bytes, smaller than the {needed} bytes its geometry needs")]
    TooSmall {
        /// Real size (fstat).
        actual: u64,
        /// Size the header's geometry needs.
        needed: u64,
    },
    /// The header's geometry is impossible.
    #[error("bad ring geometry: {0}")]
    BadGeometry(Corruption),
    /// The creator has not finished initialising the ring within the bounded wait (or died
    /// while doing so).
    #[error("ring is still initialising after {0:?}")]
    StillInitialising(std::time::Duration),
    /// The ring's creator stopped (died) before it finished initialising the ring: the
    /// object is half made and will never be ready.
    #[error("ring was abandoned by its creator before it was ready")]
    Abandoned,
    /// A participant found the ring corrupted and marked it unusable.
    #[error("ring was marked poisoned")]
    Poisoned,
    /// Attaching found a word of the ring's shared state that no sound ring holds (a peer
    /// wrote it); nothing was attached. Also what `try_clone` of a handle inherited across
    /// `fork` reports in the child ([`Corruption::is_inherited`]).
    #[error("{}", Headline(.0))]
    Corrupted(Corruption),
    /// The endpoint asked for (producer or consumer of an SPSC ring) is already attached.
    #[error("the ring's {0} is already attached")]
    EndpointTaken(&'static str),
    /// The endpoint asked for was attached before and has closed; an SPSC end cannot be
    /// reopened (like a pipe's). For an MPMC ring: every sender (or every receiver) has
    /// gone, which is final, so no new one may attach.
    #[error("the ring's {0} closed for good")]
    EndpointClosed(&'static str),
    /// Every entry of an MPMC ring's endpoint registry is held by a live sender or receiver;
    /// the registry's size was fixed when the ring was created
    /// ([`mpmc::Config::endpoints`](crate::mpmc::Config::endpoints)).
    #[error("the ring's endpoint registry is full ({capacity} entries, all attached)")]
    RegistryFull {
        /// Entries in the registry.
        capacity: usize,
    },
    /// The object is not one this process trusts by default (see the call's documentation
    /// for why, and for the way to opt in): for example a descriptor that is not a memfd
    /// sealed against shrinking.
    #[error("refusing {object}: {reason}")]
    Untrusted {
        /// The name of the object, or which descriptor.
        object: String,
        /// What makes it untrusted.
        reason: String,
    },
    /// Every entry of this process's `SIGBUS` guard table is in use, so the object could not
    /// be mapped safely. A named object, or any object whose pages a peer can take away
    /// (anything but a tmpfs memfd sealed against shrinking: a hugetlbfs memfd loses pages to
    /// a punched hole whatever its seals), is only ever mapped under a guard that survives
    /// the loss; each mapped ring takes one entry until its last handle is dropped.
    #[error("all {limit} SIGBUS guard entries of this process are in use: too many rings mapped")]
    TooManyMappings {
        /// Entries in the guard table.
        limit: usize,
    },
    /// Any other operating-system error, with its errno.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a claim of room failed, in either ring (internal; converted into the public error of
/// each call).
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// No room now (non-blocking calls).
    Full,
    /// Still no room at the deadline.
    Timeout,
    Disconnected,
    TooLarge {
        len: usize,
        max: usize,
    },
    Corrupted(Corruption),
}

impl ClaimError {
    pub(crate) fn into_send<T>(self, msg: T) -> SendError<T> {
        match self {
            // A blocking call without deadline neither gives up on a full ring nor times out:
            // only the other side's departure ends its wait.
            ClaimError::Full | ClaimError::Timeout | ClaimError::Disconnected => {
                SendError::Disconnected(msg)
            }
            ClaimError::TooLarge { len, max } => SendError::TooLarge { msg, len, max },
            ClaimError::Corrupted(what) => SendError::Corrupted { msg, what },
        }
    }

    pub(crate) fn into_try_send<T>(self, msg: T) -> TrySendError<T> {
        match self {
            ClaimError::Full => TrySendError::Full(msg),
            other => other.into_send(msg).into(),
        }
    }

    pub(crate) fn into_send_timeout<T>(self, msg: T) -> SendTimeoutError<T> {
        match self {
            ClaimError::Timeout => SendTimeoutError::Timeout(msg),
            other => other.into_send(msg).into(),
        }
    }
}
