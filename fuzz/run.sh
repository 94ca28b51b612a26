#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 600), one after another, and print a summary
# line per target. Exits non-zero if any target crashed; each crashing input is copied into
# fuzz/regressions/<target>/ (replayed by `cargo test --test fuzz_regressions`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_SANITIZER (address | none; default address), FUZZ_EXTRA (more libFuzzer
# flags). Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); nightly features come from
# RUSTC_BOOTSTRAP=1 on the stable toolchain.
set -uo pipefail

cd "$(dirname "$0")"
fuzz_dir=$(pwd)
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(delta pack_entries thin idx protocol api_json names upload_pack lfs_delta delta_compose)
fi
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

max_len() {
    case $1 in
        delta | delta_compose) echo 8192 ;;
        pack_entries | thin | upload_pack) echo 16384 ;;
        idx) echo 32768 ;;
        protocol | api_json) echo 4096 ;;
        lfs_delta) echo 65536 ;;
        names) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

build_flags=(--sanitizer "$sanitizer" --debug-assertions)
echo "building ${targets[*]} (sanitizer $sanitizer)"
mkdir -p logs
# Without a target, `cargo fuzz build` builds them all (one compile of the dependencies).
if ! cargo fuzz build "${build_flags[@]}" >logs/build.log 2>&1; then
    tail -30 logs/build.log >&2
    exit 2
fi
bin_dir=target/$(rustc -vV | sed -n 's/^host: //p')/release
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    marker=$(mktemp)
    log="logs/$t.log"
    start=$(date +%s)
    # The binaries built above, run directly: `cargo fuzz run` would rebuild whenever src/
    # changed in between (and fail on a half-edited tree).
    "$bin_dir/$t" "corpus/$t" "regressions/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
        -timeout=30 -print_final_stats=1 ${FUZZ_EXTRA:-} >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    cov=$(grep -oE '(DONE|pulse|NEW|REDUCE) +cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)/cov=\1 ft=\2 corpus=\3/')
    crashes=0
    while IFS= read -r -d '' f; do
        crashes=$((crashes + 1))
        cp "$f" "regressions/$t/$(basename "$f")"
        echo "  $t: $(basename "$f") -> fuzz/regressions/$t/" >&2
    done < <(find "artifacts/$t" -type f -newer "$marker" -print0)
    rm -f "$marker"
    if [ "$crashes" -gt 0 ] || { [ "$rc" -ne 0 ] && [ -z "$runs" ]; }; then
        failed=1
    fi
    line="$t: runs=${runs:-?} ${cov:-cov=?} crashes=$crashes exit=$rc time=${elapsed}s log=fuzz/$log"
    summary+=("$line")
    echo "$line"
done

echo
echo "summary (${seconds}s per target, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "crashes found (copied into fuzz/regressions/<target>/): minimize with" \
        "'RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a <target> <input>';" \
        "cargo test --test fuzz_regressions replays them" >&2
fi
exit "$failed"
