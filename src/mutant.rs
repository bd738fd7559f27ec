//! The mutant switches of `loom-tests/mutants.sh`, all in one place.
//!
//! Each constant is `true` only in a build made with `--cfg shmring_mutant="NAME"`, which plants
//! the bug of that name; `mutants.sh` builds each one and checks that a model or test catches
//! it. In every other build each constant is `false` and each helper returns the correct value,
//! so a call site names its mutant in one line and a normal build pays nothing:
//! `let slack = mutant::pick(mutant::FULL_OFF_BY_ONE, 0, 8);`.

use crate::sync::Ordering;

/// `wrong` in the build of the mutant, `right` in every other.
#[allow(dead_code)]
#[inline(always)]
pub(crate) fn pick<T>(mutant: bool, wrong: T, right: T) -> T {
    if mutant { wrong } else { right }
}

/// `Relaxed` in the build of the mutant, the correct ordering in every other.
#[allow(dead_code)]
#[inline(always)]
pub(crate) const fn weaken(mutant: bool, correct: Ordering) -> Ordering {
    if mutant { Ordering::Relaxed } else { correct }
}

/// The mutant `fd_no_recheck` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const FD_NO_RECHECK: bool = cfg!(shmring_mutant = "fd_no_recheck");

/// The mutant `fd_skip_bell` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const FD_SKIP_BELL: bool = cfg!(shmring_mutant = "fd_skip_bell");

/// The mutant `full_off_by_one` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const FULL_OFF_BY_ONE: bool = cfg!(shmring_mutant = "full_off_by_one");

/// The mutant `lazy_release_only` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const LAZY_RELEASE_ONLY: bool = cfg!(shmring_mutant = "lazy_release_only");

/// The mutant `map_whole_object` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MAP_WHOLE_OBJECT: bool = cfg!(shmring_mutant = "map_whole_object");

/// The mutant `mpmc_claimer_unseen` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_CLAIMER_UNSEEN: bool = cfg!(shmring_mutant = "mpmc_claimer_unseen");

/// The mutant `mpmc_close_off_by_one` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_CLOSE_OFF_BY_ONE: bool = cfg!(shmring_mutant = "mpmc_close_off_by_one");

/// The mutant `mpmc_empty_off_by_one` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_EMPTY_OFF_BY_ONE: bool = cfg!(shmring_mutant = "mpmc_empty_off_by_one");

/// The mutant `mpmc_full_off_by_one` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_FULL_OFF_BY_ONE: bool = cfg!(shmring_mutant = "mpmc_full_off_by_one");

/// The mutant `mpmc_no_close_fence` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_NO_CLOSE_FENCE: bool = cfg!(shmring_mutant = "mpmc_no_close_fence");

/// The mutant `mpmc_relaxed_abandon` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_ABANDON: bool = cfg!(shmring_mutant = "mpmc_relaxed_abandon");

/// The mutant `mpmc_relaxed_claim_head` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_CLAIM_HEAD: bool = cfg!(shmring_mutant = "mpmc_relaxed_claim_head");

/// The mutant `mpmc_relaxed_claim_tail` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_CLAIM_TAIL: bool = cfg!(shmring_mutant = "mpmc_relaxed_claim_tail");

/// The mutant `mpmc_relaxed_head_reload` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_HEAD_RELOAD: bool = cfg!(shmring_mutant = "mpmc_relaxed_head_reload");

/// The mutant `mpmc_relaxed_publish` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_PUBLISH: bool = cfg!(shmring_mutant = "mpmc_relaxed_publish");

/// The mutant `mpmc_relaxed_side_close` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_SIDE_CLOSE: bool = cfg!(shmring_mutant = "mpmc_relaxed_side_close");

/// The mutant `mpmc_relaxed_skip_head` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_SKIP_HEAD: bool = cfg!(shmring_mutant = "mpmc_relaxed_skip_head");

/// The mutant `mpmc_relaxed_tail_load` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_TAIL_LOAD: bool = cfg!(shmring_mutant = "mpmc_relaxed_tail_load");

/// The mutant `mpmc_relaxed_take` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const MPMC_RELAXED_TAKE: bool = cfg!(shmring_mutant = "mpmc_relaxed_take");

/// The mutant `no_fork_guard` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const NO_FORK_GUARD: bool = cfg!(shmring_mutant = "no_fork_guard");

/// The mutant `no_local_ends` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const NO_LOCAL_ENDS: bool = cfg!(shmring_mutant = "no_local_ends");

/// The mutant `no_recheck` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const NO_RECHECK: bool = cfg!(shmring_mutant = "no_recheck");

/// The mutant `no_sigbus_guard` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const NO_SIGBUS_GUARD: bool = cfg!(shmring_mutant = "no_sigbus_guard");

/// The mutant `ready_before_payload` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const READY_BEFORE_PAYLOAD: bool = cfg!(shmring_mutant = "ready_before_payload");

/// The mutant `registry_relaxed_attached` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const REGISTRY_RELAXED_ATTACHED: bool =
    cfg!(shmring_mutant = "registry_relaxed_attached");

/// The mutant `registry_relaxed_scan` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const REGISTRY_RELAXED_SCAN: bool = cfg!(shmring_mutant = "registry_relaxed_scan");

/// The mutant `relaxed_close` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const RELAXED_CLOSE: bool = cfg!(shmring_mutant = "relaxed_close");

/// The mutant `relaxed_head` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const RELAXED_HEAD: bool = cfg!(shmring_mutant = "relaxed_head");

/// The mutant `relaxed_ready` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const RELAXED_READY: bool = cfg!(shmring_mutant = "relaxed_ready");

/// The mutant `relaxed_tail` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const RELAXED_TAIL: bool = cfg!(shmring_mutant = "relaxed_tail");

/// The mutant `release_before_read` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const RELEASE_BEFORE_READ: bool = cfg!(shmring_mutant = "release_before_read");

/// The mutant `seal_means_unguarded` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const SEAL_MEANS_UNGUARDED: bool = cfg!(shmring_mutant = "seal_means_unguarded");

/// The mutant `skip_wake` (see `loom-tests/mutants.sh`).
#[allow(dead_code)]
pub(crate) const SKIP_WAKE: bool = cfg!(shmring_mutant = "skip_wake");
