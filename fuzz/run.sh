#!/usr/bin/env bash
# Builds every fuzz target of sigway and runs each for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 30 s, every target)
#
# CI runs `fuzz/run.sh 10` (a smoke run); a long run is `fuzz/run.sh 600`.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Runs on the stable
# toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address and
# the sanitizer-coverage passes), which RUSTC_BOOTSTRAP=1 lets a stable
# rustc accept; the AddressSanitizer runtime ships with stable's rust-std.
#
# Each target starts from its committed seeds (fuzz/corpus/<target>, read
# only) and the inputs earlier runs found (fuzz/corpus-run/<target>,
# git-ignored). A crash, a broken invariant (a panic), a leak, a timeout
# (10 s for one input) or going over 2 GB stops the target; its input is
# kept in fuzz/artifacts/<target>/ and the script fails at the end. One
# line per target: executions, coverage (edges), features, corpus size.
set -euo pipefail

seconds="${1:-30}"
shift || true
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
# The machine is shared (latency is measured on it): build and run niced.
nice="nice -n 19"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "building ${#targets[@]} fuzz targets"
mkdir -p artifacts
$nice cargo fuzz build -O --debug-assertions >/dev/null 2>artifacts/build.log || {
    cat artifacts/build.log >&2
    echo "fuzz/run.sh: build failed" >&2
    exit 1
}

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "corpus-run/$target" "artifacts/$target"
    log="artifacts/$target/last-run.log"
    status=0
    $nice cargo fuzz run -O --debug-assertions "$target" \
        "corpus-run/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
    corpus="$(find "corpus-run/$target" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then
        verdict=ok
    else
        verdict="FAILED (exit $status, see fuzz/$log and fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
    printf '%-26s %6ss  execs %10s  cov %6s  ft %6s  corpus %5s  %s\n' \
        "$target" "$seconds" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$verdict"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz/run.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    for target in "${failed[@]}"; do
        grep -E -m5 'panicked|ERROR|SUMMARY|Test unit written' "artifacts/$target/last-run.log" >&2 || true
    done
    exit 1
fi
echo "fuzz/run.sh: every target ran ${seconds}s without a crash"
