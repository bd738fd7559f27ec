#!/usr/bin/env bash
# Proves that the loom models catch real mistakes: builds the loom suite once per mutant of
# the ring code (selected with `--cfg shmring_mutant="NAME"`, see `grep -rn shmring_mutant
# src/`), runs the models that execute the mutated code against it, and fails if any mutant
# survives (every such model passes).
#
# All mutants share one target directory, target/loom-mutants: the mutant's cfg is given to
# the shmring crate alone (mutant-rustc.sh, a rustc wrapper), so loom and the other
# dependencies are built once, and only shmring and the models are rebuilt per mutant.
#
# Each model runs in its own process: a model that finds a deadlock usually aborts its test
# binary (loom panics again while unwinding), which would hide the verdict of the models
# that share the binary. Each mutant also names a model that must be among those that catch
# it, so the table in README.md is checked, not just claimed. A mutant that does not compile
# fails this script; it never counts as caught.
#
# Each mutant also has a scope: the test files (`spsc_*`, `mpmc_*`, `mpmc_registry`, or all)
# whose models run the code it changes. A mutant of spsc.rs cannot change what an MPMC model
# does, nor the reverse, so only the models in scope are built and run; the waiter's mutants
# run against every model, and those of the registry code (which only rings with a registry
# run) against the models of `mpmc_registry.rs`. The mutants of single orderings added by
# the ordering audit (README.md) run against the file of the model that catches them only,
# which bounds what each adds to the check.
#
# Environment: LOOM_MAX_PREEMPTIONS (default 3), MUTANTS (space-separated subset to run),
# MODEL_TIMEOUT (seconds per model run, default 600).
set -euo pipefail

cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
model_timeout="${MODEL_TIMEOUT:-600}"
target=target/loom-mutants
wrapper="$PWD/loom-tests/mutant-rustc.sh"
export RUSTFLAGS="--cfg loom -C debug-assertions"
# Without debug info each mutant builds in about half the time; a verdict needs only the
# panic message (which names its source line), not a symbolised backtrace.
export CARGO_PROFILE_RELEASE_DEBUG=false
unset RUSTC_WORKSPACE_WRAPPER

# mutant -> a model (test file::test name) that must catch it.
declare -A expected=(
    [relaxed_ready]="spsc_fifo::wrap_with_padding_while_reading"
    [ready_before_payload]="spsc_fifo::wrap_with_padding_after_two_releases"
    [release_before_read]="spsc_batch::batch_publish_and_drain_release"
    [relaxed_head]="spsc_fifo::wrap_with_padding_while_reading"
    [no_recheck]="spsc_wakeup::consumer_asleep_on_empty_ring_is_woken_by_send"
    [skip_wake]="spsc_wakeup::producer_asleep_on_full_ring_is_woken_by_release"
    [full_off_by_one]="spsc_wakeup::producer_asleep_on_full_ring_is_woken_by_release"
    [mpmc_relaxed_publish]="mpmc_delivery::two_senders_one_receiver"
    [mpmc_relaxed_take]="mpmc_delivery::two_senders_one_receiver"
    [mpmc_full_off_by_one]="mpmc_delivery::two_senders_one_receiver"
    [mpmc_empty_off_by_one]="mpmc_delivery::one_sender_two_receivers_wrap"
    [mpmc_close_off_by_one]="mpmc_close::clones_gone_while_others_stay_do_not_disconnect"
    [relaxed_close]="spsc_close::consumer_polling_sees_close_after_last_message"
    [mpmc_relaxed_side_close]="mpmc_registry::senders_close_on_two_threads_while_receiver_polls"
    [mpmc_no_close_fence]="mpmc_registry::last_two_senders_close_at_once"
    [mpmc_claimer_unseen]="mpmc_registry::live_slow_sender_keeps_its_slot"
    [mpmc_relaxed_claim_tail]="mpmc_delivery::sender_sees_the_lap_behind_tail"
    [mpmc_relaxed_claim_head]="mpmc_delivery::receiver_sees_the_lap_behind_head"
    [mpmc_relaxed_tail_load]="mpmc_delivery::sender_sees_the_lap_behind_tail"
    [fd_no_recheck]="evented_park::consumer_parked_on_readiness_is_woken_by_send"
    [fd_skip_bell]="evented_park::producer_parked_on_readiness_is_woken_by_release"
    [lazy_release_only]="spsc_wakeup::producer_blocked_on_full_ring_gets_one_released_record"
    [mpmc_relaxed_abandon]="mpmc_zero_copy::dropped_grant_slot_is_rewritten_by_another_thread"
    [mpmc_relaxed_skip_head]="mpmc_delivery::receiver_sees_the_lap_behind_head_after_a_skip"
    [mpmc_relaxed_head_reload]="mpmc_delivery::receiver_sees_the_lap_behind_head_after_a_skip"
    [registry_relaxed_attached]="mpmc_registry::an_entry_seen_attached_shows_its_role"
    [registry_relaxed_scan]="mpmc_registry::an_entry_seen_attached_shows_its_role"
)
# mutant -> the test files whose models run the mutated code (a cargo `--test` pattern).
declare -A scope=(
    [relaxed_ready]="spsc_*"
    [ready_before_payload]="spsc_*"
    [release_before_read]="spsc_*"
    [relaxed_head]="spsc_*"
    [no_recheck]="*"
    [skip_wake]="*"
    [full_off_by_one]="spsc_*"
    [mpmc_relaxed_publish]="mpmc_*"
    [mpmc_relaxed_take]="mpmc_*"
    [mpmc_full_off_by_one]="mpmc_*"
    [mpmc_empty_off_by_one]="mpmc_*"
    [mpmc_close_off_by_one]="mpmc_*"
    [relaxed_close]="spsc_*"
    [mpmc_relaxed_side_close]="mpmc_registry"
    [mpmc_no_close_fence]="mpmc_registry"
    [mpmc_claimer_unseen]="mpmc_registry"
    [mpmc_relaxed_claim_tail]="mpmc_*"
    [mpmc_relaxed_claim_head]="mpmc_*"
    [mpmc_relaxed_tail_load]="mpmc_*"
    [fd_no_recheck]="evented_*"
    [fd_skip_bell]="evented_*"
    [mpmc_relaxed_abandon]="mpmc_zero_copy"
    [mpmc_relaxed_skip_head]="mpmc_delivery"
    [mpmc_relaxed_head_reload]="mpmc_delivery"
    [registry_relaxed_attached]="mpmc_registry"
    [registry_relaxed_scan]="mpmc_registry"
    [lazy_release_only]="spsc_wakeup"
)
all="relaxed_ready ready_before_payload release_before_read relaxed_head no_recheck skip_wake"
all+=" full_off_by_one"
all+=" mpmc_relaxed_publish mpmc_relaxed_take mpmc_full_off_by_one mpmc_empty_off_by_one"
all+=" mpmc_close_off_by_one relaxed_close"
all+=" mpmc_relaxed_side_close mpmc_no_close_fence mpmc_claimer_unseen"
all+=" mpmc_relaxed_claim_tail mpmc_relaxed_claim_head mpmc_relaxed_tail_load"
all+=" fd_no_recheck fd_skip_bell"
all+=" mpmc_relaxed_abandon mpmc_relaxed_skip_head mpmc_relaxed_head_reload"
all+=" registry_relaxed_attached registry_relaxed_scan"
all+=" lazy_release_only"
read -r -a mutants <<<"${MUTANTS:-$all}"

status=0
for m in "${mutants[@]}"; do
    if [[ -z "${expected[$m]+x}" ]]; then
        echo "mutants.sh: unknown mutant '$m'" >&2
        exit 2
    fi
    dir="$target/$m"
    mkdir -p "$dir"
    echo "=== mutant $m (models in tests/${scope[$m]}.rs)"
    # Cargo cannot see the wrapper's extra flag, so make it rebuild shmring (and with it the
    # models) for this mutant.
    cargo clean -p shmring --release --target-dir "$target" >"$dir/build.log" 2>&1
    if ! SHMRING_MUTANT="$m" RUSTC_WRAPPER="$wrapper" \
        cargo test -p loom-tests --release --target-dir "$target" --test "${scope[$m]}" --no-run \
        >>"$dir/build.log" 2>&1; then
        echo "mutant $m: build failed (see $dir/build.log)"
        tail -n 20 "$dir/build.log"
        status=1
        continue
    fi
    # "  Executable tests/spsc_fifo.rs (target/.../spsc_fifo-0123abcd)"
    mapfile -t bins < <(sed -n 's/^ *Executable tests\/\(.*\)\.rs (\(.*\))$/\1 \2/p' \
        "$dir/build.log")
    if [[ ${#bins[@]} -eq 0 ]]; then
        echo "mutant $m: no test binaries found (see $dir/build.log)"
        status=1
        continue
    fi
    start=$(date +%s)
    caught=()
    passed=0
    for entry in "${bins[@]}"; do
        file=${entry%% *}
        exe=${entry#* }
        mapfile -t tests < <("$exe" --list --format terse 2>/dev/null | sed -n 's/: test$//p')
        for t in "${tests[@]}"; do
            log="$dir/$file.$t.log"
            # In a subshell that outlives the model, so that the shell's note about a model
            # killed by a signal goes to the log, not to the terminal.
            rc=0
            (
                timeout "$model_timeout" "$exe" --exact "$t" --nocapture
                exit $?
            ) >"$log" 2>&1 || rc=$?
            if [[ $rc -eq 0 ]]; then
                passed=$((passed + 1))
                continue
            fi
            if [[ $rc -eq 124 ]]; then
                why="timed out after ${model_timeout} s"
            else
                # The line after the first panic says how the model failed.
                why=$(grep -m1 -A1 "panicked at" "$log" | sed -n 2p)
                why=${why:-exit status $rc}
            fi
            caught+=("$file::$t")
            echo "    caught by $file::$t: $why"
        done
    done
    elapsed=$(($(date +%s) - start))
    if [[ ${#caught[@]} -eq 0 ]]; then
        echo "mutant $m: SURVIVED: all $passed models passed (logs in $dir)"
        status=1
    else
        echo "mutant $m: caught by ${#caught[@]} models, $passed passed (${elapsed} s)"
        if ! printf '%s\n' "${caught[@]}" | grep -qxF "${expected[$m]}"; then
            echo "mutant $m: expected ${expected[$m]} to catch it, but it passed"
            status=1
        fi
    fi
done

if [[ $status -ne 0 ]]; then
    echo "mutants.sh: FAILED"
else
    echo "mutants.sh: every mutant was caught"
fi
exit $status
