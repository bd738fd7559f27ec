//! A 32-bit futex word: `wait(expected, timeout)` sleeps only while the word still holds
//! `expected` (compare and sleep are one atomic step), `wake_all()` wakes every sleeper.
//!
//! Normally this is Linux `futex(2)` through rustix, *without* `FUTEX_PRIVATE_FLAG`: the word
//! lives in memory shared between processes, and a private futex would key the wait queue on
//! this process's address space, so a waker in another process would never find the sleeper.
//! Under loom it is modelled by a loom `Mutex` + `Condvar` that keeps the same
//! compare-then-sleep atomicity: the comparison and the start of the sleep happen under the
//! mutex, and a wake takes the mutex, so a change made before a wake is never missed.

use std::time::Duration;

use super::{AtomicU32, Ordering};

/// A futex word. In a normal build it is exactly an `AtomicU32` (it sits in shared memory).
#[cfg(not(loom))]
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct Futex {
    word: AtomicU32,
}

#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Futex {
    word: AtomicU32,
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

impl Futex {
    /// A futex word holding 0.
    pub(crate) fn new() -> Futex {
        Futex {
            word: AtomicU32::new(0),
            #[cfg(loom)]
            lock: loom::sync::Mutex::new(()),
            #[cfg(loom)]
            cond: loom::sync::Condvar::new(),
        }
    }

    /// Reads the word.
    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> u32 {
        self.word.load(order)
    }

    /// Adds to the word (wrapping).
    #[inline]
    pub(crate) fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
        self.word.fetch_add(v, order)
    }

    /// `futex(&word, FUTEX_WAIT, expected, timeout)`: sleeps unless the word differs from
    /// `expected`, until woken, until `timeout` passes, or spuriously.
    ///
    /// Returns nothing on purpose: every outcome (woken, `EAGAIN` because the word changed,
    /// `EINTR`, `ETIMEDOUT`, a spurious return) means the same to the caller, "check again".
    ///
    /// See [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html).
    #[cfg(not(loom))]
    pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
        use rustix::thread::futex;
        let ts = timeout.map(|d| futex::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        // Errors are deliberately ignored: EAGAIN, EINTR and ETIMEDOUT all mean "re-check";
        // EFAULT/EINVAL cannot happen for a valid, aligned `&AtomicU32`.
        let _ = futex::wait(&self.word, futex::Flags::empty(), expected, ts.as_ref());
    }

    /// `futex(&word, FUTEX_WAKE, INT_MAX)`: wakes every thread (in any process) asleep on the
    /// word.
    #[cfg(not(loom))]
    pub(crate) fn wake_all(&self) {
        use rustix::thread::futex;
        let _ = futex::wake(&self.word, futex::Flags::empty(), i32::MAX as u32);
    }

    /// Model of `FUTEX_WAIT`: the compare and the sleep are atomic with respect to
    /// [`Futex::wake_all`] because both hold `lock`. A timed wait returns at once (loom has
    /// no clock; see `sync::Deadline`).
    #[cfg(loom)]
    pub(crate) fn wait(&self, expected: u32, timeout: Option<Duration>) {
        let guard = self.lock.lock().unwrap();
        if self.word.load(Ordering::SeqCst) != expected {
            return;
        }
        if timeout.is_some() {
            return;
        }
        drop(self.cond.wait(guard).unwrap());
    }

    /// Model of `FUTEX_WAKE`.
    #[cfg(loom)]
    pub(crate) fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}
