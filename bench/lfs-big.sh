#!/usr/bin/env bash
# Benchmark rows for big LFS objects (issue 22): one object of BENCH_BIG_MIB up and down
# through our transfer agent (`git hypha lfs-agent`: parallel parts, parallel ranges) and
# through git-lfs's own `basic` transfer, beside each other, against one `git hypha serve`
# (release build; local disk, or S3 when HYPHA_TEST_S3_ENDPOINT and its credentials are
# set, as scripts/s3-services.sh writes them). Then a cut: the push is killed once the
# server holds half of it, and pushed again: the bytes the second push sends, for each
# transfer. Prints a Markdown table on stdout; progress goes to stderr.
#
#   bench/lfs-big.sh
#
# Environment:
#   BENCH_BIG_MIB=1024   object size (basic is left out above 5 GiB: it cannot carry it)
#   BENCH_RUNS=3         rounds of push + pull; medians
#   BENCH_NO_BUILD=1     skip `cargo build --release --bins`
#   BENCH_KEEP=1         keep the scratch directory
#
# The object is written straight into the source's LFS store (no second copy in a work
# tree) and the clone fetches it without a checkout (`git lfs fetch`), so disk use is about
# 3x the object (source, server, clone) plus the parts while a push is in flight. Peak RSS
# is per program over the command's process tree (bench/rss_sample.py: RssAnon, the memory
# the program allocated). Needs git, git-lfs, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mib=${BENCH_BIG_MIB:-1024}
runs=${BENCH_RUNS:-3}
die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
for tool in git git-lfs python3; do command -v "$tool" >/dev/null || die "needs $tool"; done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $mib =~ ^[1-9][0-9]*$ ]] || die "BENCH_BIG_MIB must be a positive integer"

product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  note "cargo build --release --bins"
  (cd "$root" && cargo build --release --bins -q) >&2 || die "release build failed"
fi
bin=$root/target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-big.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$here/env.sh"
bench_git_env "$work" "$bin"
git lfs install --skip-repo >/dev/null

export HYPHA_JWT_SECRET=bench-big-secret
store_args=(--root "$work/store")
store="local disk"
if [ -n "${HYPHA_TEST_S3_ENDPOINT:-}" ]; then
  bucket=bench-big-$$
  mkdir -p "$(dirname "$HYPHA_TEST_S3_DIR")/$bucket"
  store_args=(--s3-endpoint "$HYPHA_TEST_S3_ENDPOINT" --s3-bucket "$bucket" --s3-path-style)
  store="S3 (s3s-fs)"
fi
git-hypha serve "${store_args[@]}" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || die "git hypha serve did not start: $(cat "$work/serve.log")"
export HYPHA_TOKEN
HYPHA_TOKEN=$(git hypha token --workspace bench --expires-in 86400)

note "generating $mib MiB"
src=$work/src
git init -q "$src"
git -C "$src" lfs track '*.bin' >/dev/null
head -c "$((mib * 1024 * 1024))" /dev/urandom >"$work/object"
git -C "$src" lfs pointer --file "$work/object" >"$src/model.bin" 2>/dev/null
oid=$(sed -n 's/^oid sha256://p' "$src/model.bin")
size=$(sed -n 's/^size //p' "$src/model.bin")
mkdir -p "$src/.git/lfs/objects/${oid:0:2}/${oid:2:2}"
mv "$work/object" "$src/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid"
git -C "$src" add -A
git -C "$src" commit -q -m model
git -C "$src" config lfs.transfer.maxretries 0

now() { python3 -c 'import time; print(time.monotonic())'; }
# peak MiB of PROGRAM in an rss_sample.py report
peak() { awk -v p="$1" '$1 == "rss" && $2 == p { print $7 }' "$2" | sort -n | tail -n1; }
# `git -c` arguments that make git-lfs use transfer KIND in direction DIR (upload or
# download): ours as the helper records it, or basic (our agent declared for the other
# direction only: git-lfs then does not offer it; the repository config stays as it is).
use() {
  if [ "$1" = basic ]; then
    local other=download
    [ "$2" = download ] && other=upload
    echo "-c lfs.customtransfer.hypha.direction=$other"
  fi
}
# Point the source at a fresh repository ALIAS (recorded settings follow).
fresh_remote() {
  git hypha create "hypha::$url/bench/$1" 2>/dev/null
  git -C "$src" remote remove origin 2>/dev/null || true
  git -C "$src" remote add origin "hypha::$url/bench/$1"
  git -C "$src" ls-remote origin >/dev/null 2>&1 || true
}
kinds=(hypha)
[ "$mib" -le 5120 ] && kinds+=(basic)
results=$work/results.tsv
: >"$results"
for r in $(seq "$runs"); do
  for kind in "${kinds[@]}"; do
    alias=$kind-$r
    fresh_remote "$alias"
    t0=$(now)
    # shellcheck disable=SC2046
    python3 "$here/rss_sample.py" -- git $(use "$kind" upload) -C "$src" push -q origin main 2>"$work/push.err" ||
      die "push $kind: $(grep -v "^rss" "$work/push.err" | tail -n 5)"
    t1=$(now)
    rm -rf "$work/clone"
    GIT_LFS_SKIP_SMUDGE=1 git clone -q "hypha::$url/bench/$alias" "$work/clone" 2>/dev/null
    t2=$(now)
    # shellcheck disable=SC2046
    python3 "$here/rss_sample.py" -- git $(use "$kind" download) -C "$work/clone" lfs fetch 2>"$work/pull.err" ||
      die "fetch $kind: $(grep -v "^rss" "$work/pull.err" | tail -n 5)"
    t3=$(now)
    [ -f "$work/clone/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid" ] || die "fetch $kind: no object"
    agent_push=$(peak git-hypha "$work/push.err"); agent_pull=$(peak git-hypha "$work/pull.err")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$r" \
      "$(python3 -c "print(f'{$t1-$t0:.2f}')")" "$(python3 -c "print(f'{$t3-$t2:.2f}')")" \
      "${agent_push:--}" "${agent_pull:--}" >>"$results"
    note "round $r $kind: $(tail -n1 "$results" | cut -f3-)"
    rm -rf "$work/clone"
  done
done

# The cut: kill the push once the server has taken half the object, push again, and count
# what the second push sent (parts logged by the server; a basic PUT is the whole object).
cut_results=$work/cut.tsv
: >"$cut_results"
cut_kinds=("${kinds[@]}")
# The cut watches the store's files fill up: local disk only.
[ "$store" = "local disk" ] || cut_kinds=()
for kind in "${cut_kinds[@]}"; do
  alias=cut-$kind
  fresh_remote "$alias"
  # shellcheck disable=SC2046
  git $(use "$kind" upload) -C "$src" push -q origin main 2>/dev/null &
  push=$!
  half=$((size / 2))
  while kill -0 "$push" 2>/dev/null; do
    got=$(python3 - "$work/store" "$alias" "$oid" <<'EOF'
import os, sys
store, alias, oid = sys.argv[1:]
total = 0
for base, _, files in os.walk(store):
    if ".hypha-multipart" in base or ".hypha-tmp" in base:
        total += sum(os.path.getsize(os.path.join(base, f)) for f in files
                     if os.path.exists(os.path.join(base, f)))
print(total)
EOF
)
    if [ "$got" -ge "$half" ]; then
      pkill -f "git-lfs pre-push" 2>/dev/null || true
      pkill -f "hypha lfs-agent" 2>/dev/null || true
      kill "$push" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  wait "$push" 2>/dev/null || true
  before=$(wc -l <"$work/serve.log")
  # shellcheck disable=SC2046
  git $(use "$kind" upload) -C "$src" push -q origin main 2>"$work/cut.err" || die "push after cut ($kind): $(tail -n 3 "$work/cut.err")"
  parts=$(tail -n +"$((before + 1))" "$work/serve.log" | grep -c 'PUT /_store/.hypha-multipart/' || true)
  whole=$(tail -n +"$((before + 1))" "$work/serve.log" | grep -c "PUT /_store/.*/$oid " || true)
  printf '%s\t%s\t%s\n' "$kind" "$parts" "$whole" >>"$cut_results"
  note "cut $kind: second push sent $parts parts, $whole whole objects"
done

python3 - "$results" "$cut_results" "$mib" "$runs" "$product" "$store" <<'EOF'
import statistics, sys
path, cut_path, mib, runs, product, store = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines()]
def med(kind, col):
    vals = [float(r[col]) for r in rows if r[0] == kind and r[col] != "-"]
    return statistics.median(vals) if vals else None
print(f"Big LFS object ({mib} MiB, incompressible; {runs} rounds, medians; git hypha serve on "
      f"{store}, release build of {product})\n")
print("| transfer | push s | fetch s | agent peak MiB (push / fetch) |")
print("|---|---:|---:|---:|")
kinds = [k for k in ("hypha", "basic") if any(r[0] == k for r in rows)]
for k in kinds:
    mem = " / ".join("-" if v is None else f"{v:.0f}" for v in (med(k, 4), med(k, 5)))
    print(f"| {k} | {med(k, 2):.2f} | {med(k, 3):.2f} | {mem} |")
if "basic" in kinds:
    print()
    print(f"- hypha / basic push time: {med('hypha', 2) / med('basic', 2):.2f}")
    print(f"- hypha / basic fetch time: {med('hypha', 3) / med('basic', 3):.2f}")
part = 16 * 2**20
print()
print("Cut at half the object, pushed again: what the second push sent")
print()
print("| transfer | parts sent | whole-object PUTs | about MiB sent |")
print("|---|---:|---:|---:|")
for line in open(cut_path).read().splitlines():
    k, parts, whole = line.split("\t")
    sent = int(parts) * part / 2**20 + int(whole) * int(mib)
    print(f"| {k} | {parts} | {whole} | {min(sent, int(mib)):.0f} of {mib} |")
EOF
