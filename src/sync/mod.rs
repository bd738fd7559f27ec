//! The one place that knows about loom.
//!
//! Everything concurrent in the ring code (atomics, fences, the data cells, the futex, the
//! clock used for deadlines and the spin hint) is imported from here. A normal build re-exports
//! `std` and uses the real futex system call; a build with `RUSTFLAGS="--cfg loom"` swaps in
//! loom's model-checked equivalents, so the very same ring code is explored exhaustively by the
//! `loom-tests` crate. No other module imports `core::sync::atomic` or `loom` directly.

pub(crate) mod barrier;
pub(crate) mod doorbell;
pub(crate) mod futex;
pub(crate) mod heap;
pub(crate) mod region;
pub(crate) mod time;
pub(crate) mod waiter;

pub(crate) use time::{Deadline, Throttle};

/// Items compiled only for event loops: with the `tokio` feature, and not in a model-checking
/// build (loom has no file descriptors to poll). The one place outside this module that would
/// otherwise name loom: `cfg_tokio! { mod hub; }`.
#[allow(unused_macros)]
macro_rules! cfg_tokio {
    ($($item:item)*) => {
        $(
            #[cfg(all(feature = "tokio", not(loom)))]
            #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
            $item
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use cfg_tokio;

/// Items compiled only outside model-checking builds (`cfg_real! { ... }`): what needs real
/// memory, file descriptors or a clock.
#[allow(unused_macros)]
macro_rules! cfg_real {
    ($($item:item)*) => {
        $(
            #[cfg(not(loom))]
            $item
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use cfg_real;

/// Items compiled only for the model checker and the crate's own unit tests (`cfg_model! { ... }`).
#[allow(unused_macros)]
macro_rules! cfg_model {
    ($($item:item)*) => {
        $(
            #[cfg(any(loom, test))]
            $item
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use cfg_model;

/// Whether this build is a loom model-checking build (`--cfg loom`). Shared-memory rings
/// refuse to be created in one: loom's atomics cannot live in a mapping.
pub(crate) const MODEL_CHECKING: bool = cfg!(loom);

/// Atomics for words that no loom model covers: those in memory other processes write (the
/// header page and its endpoint table), and this process's bookkeeping of shared mappings.
/// Always the real ones, whose layout is the plain integer's, so that they can be placed in a
/// mapping in every build.
pub(crate) mod shared {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

/// The mutant switches of `loom-tests/mutants.sh`: each returns the weakened ordering when
/// the build was made with `--cfg shmring_mutant="NAME"` for its mutant, and the correct one
/// otherwise (a constant either way, so a normal build pays nothing). A call site names its
/// mutant in one line: `weaken(cfg!(shmring_mutant = "relaxed_tail"), Ordering::Release)`.
#[inline(always)]
pub(crate) const fn weaken(mutant: bool, correct: Ordering) -> Ordering {
    if mutant { Ordering::Relaxed } else { correct }
}

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Spins (CPU pauses) for about `d`, to poll a word less tightly than a bare spin loop does;
/// nothing under loom (where a pause adds only states, and there is no clock).
#[inline]
pub(crate) fn pause_for(d: std::time::Duration) {
    #[cfg(not(loom))]
    {
        let until = std::time::Instant::now() + d;
        loop {
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            if std::time::Instant::now() >= until {
                break;
            }
        }
    }
    #[cfg(loom)]
    let _ = d;
}

/// Hint used inside pure spin loops: a CPU pause normally, a scheduler yield under loom (so the
/// model checker can run the other thread instead of exploring an endless loop).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
