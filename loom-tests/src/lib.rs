//! Loom models of shmring live in `tests/`.
