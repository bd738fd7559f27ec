#!/usr/bin/env bash
# rustc wrapper used by mutants.sh: compiles the `shmring` crate with
# `--cfg shmring_mutant="$SHMRING_MUTANT"` and every other crate unchanged, so that all
# mutants share one build of loom and the other dependencies.
set -euo pipefail

rustc=$1
shift
prev=
for arg in "$@"; do
    if [[ $prev == --crate-name && $arg == shmring && -n ${SHMRING_MUTANT:-} ]]; then
        exec "$rustc" "$@" --cfg "shmring_mutant=\"$SHMRING_MUTANT\""
    fi
    prev=$arg
done
exec "$rustc" "$@"
