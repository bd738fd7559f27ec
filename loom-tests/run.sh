#!/usr/bin/env bash
# Runs the loom models of the ring code, then checks that each mutant of the ring code is
# caught by them (mutants.sh). Exits non-zero on any failure. See README.md.
#
# Environment: LOOM_MAX_PREEMPTIONS (default 3); the other LOOM_* variables pass through.
set -euo pipefail

cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"

start=$(date +%s)
RUSTFLAGS="--cfg loom -C debug-assertions" \
    cargo test -p loom-tests --release --target-dir target/loom
suite=$(($(date +%s) - start))
echo "loom suite passed in ${suite} s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"

start=$(date +%s)
loom-tests/mutants.sh
echo "mutant check passed in $(($(date +%s) - start)) s"
