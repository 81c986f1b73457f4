#!/usr/bin/env bash
# `make fuzz`: replays the saved crash inputs (fuzz/regressions/), then runs
# every cargo-fuzz target for FUZZ_SECONDS (default 60) from its seeds
# (fuzz/corpus/<target>) plus what earlier runs found (fuzz/target/corpus/,
# not committed). Prints the executions and coverage each target reached;
# exits 1 if anything crashed (libFuzzer leaves the input in fuzz/artifacts/).
#
#   fuzz/run.sh [TARGET...]      FUZZ_SECONDS=600 fuzz/run.sh classify
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
# Room for a whole config (the demo is 4 KB) or a chat body with headers.
max_len=${FUZZ_MAX_LEN:-8192}
# libFuzzer's instrumentation needs nightly flags; stable rustc accepts them with this.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the core has no `unsafe`, so ASan would only slow the runs.
# cargo-fuzz keeps overflow checks on, so an overflow the release .wasm would
# wrap silently is a crash here.
cargo fuzz build -s none

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
failed=()

for input in fuzz/regressions/*; do
    [ -f "$input" ] || continue
    name=$(basename "$input")
    log=fuzz/target/regression-$name.log
    if cargo fuzz run -s none "${name%%-*}" "$input" >"$log" 2>&1; then
        echo "regression fixed: $input"
    else
        echo "REGRESSION CRASHES: $input: $(grep -m1 -A1 'panicked at' "$log" | tr '\n' ' ')"
        failed+=("$input")
    fi
done

summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/target/corpus/$t"
    log=fuzz/target/$t.log
    echo "fuzzing $t for $seconds s (log: $log)"
    status=0
    cargo fuzz run -s none "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="CRASH $(grep -m1 'panicked at' "$log" || true) -> $(grep -oE 'fuzz/artifacts/[^ ]+' "$log" | tail -n1)"
        failed+=("$t")
    fi
    summary+=("$(printf '%-14s %6s s %12s execs  %-34s %s' "$t" "$seconds" "${execs:-?}" "$cov" "$result")")
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
