#!/usr/bin/env bash
# Peak memory of the hostile-writer tests (issue 21): each test of the rows below runs in its
# own process under nextest, with `/usr/bin/time` as cargo's target runner, so the peak
# resident size it reports covers the test, the `git hypha serve` it started (killed and
# waited for by the harness) and every git it ran. Prints one line per test, largest last,
# and fails if any is at or above LIMIT_MB (default 300, the issue's bound).
#
#   bench/hostile-memory.sh            (needs cargo-nextest and /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mb=${LIMIT_MB:-300}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# One filter per row of issue 21's table, in its order.
rows=(
  'test(thin::tests::hostile) | test(entries::tests)'   # a 715-byte delta that built 4 GiB
  'test(stored_packs_are_never_replaced)'                # uploads under a live pack's name
  'test(an_idx_that_lies_retires_nothing) | test(checks_packs_before_writing_refs)' # lying idx
  'test(server::tests::lfs) | test(lfs_garbage)'         # LFS verify, garbage, batches
  'test(very_dense) | test(dense_data)'                  # zlib bombs in thin and inline packs
  'test(staged_uploads_are_bounded)'                     # staging that fills the disk
  'test(an_idx_fits_its_pack) | test(inline_packs_are_bounded)' # idx larger than its pack
  'test(auth::tests)'                                    # nbf / iat
  'test(fuzzed_requests) | test(hostile_bodies)'         # every other hostile body
)
filter=$(IFS='|'; echo "${rows[*]}")
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="/usr/bin/time -a -o $out -f %M|%C" \
  cargo nextest run --no-fail-fast -E "$filter" >&2
# Lines: "<KiB>|<binary> --exact <test> --nocapture"; listing runs (--list) are left out.
grep -v -- '--list' "$out" |
  sed -E 's/^([0-9]+)\|.* --exact ([^ ]+).*/\1 \2/' |
  sort -n |
  awk -v limit="$limit_mb" '
    { printf "%7.1f MB  %s\n", $1 / 1024, $2; if ($1 / 1024 >= limit) over = 1 }
    END { if (over) { print "at or above " limit " MB" > "/dev/stderr"; exit 1 } }'
