//! Helpers shared by the loom models of shmring in `tests/`.
//!
//! The models are compiled and run only with `RUSTFLAGS="--cfg loom"`; see `README.md` for how
//! to run them and for the list of models and the mutants each one catches.

#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use shmring::WaitStrategy;

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set, so that a bare `cargo test`
/// under `--cfg loom` finishes in seconds rather than exploring without bound.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// The smallest ring: 32 bytes of data region, messages of at most 8 bytes. A record of a
/// 1..=8-byte message takes 16 bytes and an empty message 8, and the producer keeps 8 bytes
/// free after its last record (the terminator), so a 16-byte and an 8-byte record fill it.
pub const CAPACITY: usize = 32;

/// The configuration every SPSC model starts from: the smallest ring, with `strategy`.
pub fn config(strategy: WaitStrategy) -> shmring::spsc::Config {
    shmring::spsc::Config::default()
        .capacity_bytes(CAPACITY)
        .wait_strategy(strategy)
}

/// Slots of the MPMC ring every MPMC model uses (the fewest the ring allows).
pub const SLOTS: usize = 2;

/// The configuration every MPMC model starts from: [`SLOTS`] slots of the smallest size
/// (64 bytes, messages of at most 48), with `strategy`.
pub fn mpmc_config(strategy: WaitStrategy) -> shmring::mpmc::Config {
    shmring::mpmc::Config::default()
        .slots(SLOTS)
        .max_message_bytes(48)
        .wait_strategy(strategy)
}

/// Counts, across all executions of a model, how often something happened (the consumer
/// slept, a timeout fired, ...). It is a std atomic outside the model, so the count survives
/// from one execution to the next and can be checked once the model is done, to show that
/// the model really reached the path it is about.
#[derive(Clone, Debug, Default)]
pub struct Tally(Arc<AtomicUsize>);

impl Tally {
    /// A tally at zero.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Counts one occurrence.
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Occurrences counted so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Explores every interleaving of `f` (within the preemption bound) and prints how many
/// executions that took, so the cost of each model is visible with `--nocapture`.
///
/// Bounds come from loom's environment variables (`LOOM_MAX_PREEMPTIONS`,
/// `LOOM_MAX_BRANCHES`, ...); the preemption bound defaults to [`DEFAULT_PREEMPTIONS`]. With
/// `LOOM_LOG` set, the model runs through `loom::model` instead, which also installs loom's
/// log output (useful together with `LOOM_LOCATION` to read a failing interleaving); that
/// path reads `LOOM_MAX_PREEMPTIONS` itself and applies no fallback, so set it too.
pub fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_bounded(name, None, f);
}

/// As [`model`], with the preemption bound capped at `cap` (when `Some`) whatever
/// `LOOM_MAX_PREEMPTIONS` says: for models with three threads, whose executions grow much
/// faster with the bound than those of two threads. Under `LOOM_LOG` the cap is not applied
/// (see [`model`]).
pub fn model_bounded<F>(name: &str, cap: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let executions = Tally::new();
    let counted = {
        let executions = executions.clone();
        move || {
            executions.hit();
            f();
        }
    };
    let start = Instant::now();
    let bound = if std::env::var_os("LOOM_LOG").is_some() {
        loom::model(counted);
        std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "none".into())
    } else {
        let mut builder = loom::model::Builder::new();
        let bound = builder.preemption_bound.unwrap_or(DEFAULT_PREEMPTIONS);
        let bound = cap.map_or(bound, |cap| bound.min(cap));
        builder.preemption_bound = Some(bound);
        builder.check(counted);
        bound.to_string()
    };
    eprintln!(
        "model {name}: {} executions in {:.2} s (preemption bound {bound})",
        executions.count(),
        start.elapsed().as_secs_f64()
    );
}
