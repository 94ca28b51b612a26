#!/usr/bin/env bash
# Benchmark row for Git LFS over hypha:: remotes (issue 15): push and clone of a repository
# whose large files are LFS objects, beside the same files as plain git objects, against one
# `git hypha serve` on local disk (release build). Prints a Markdown table and the ratios
# LFS / plain on stdout; progress goes to stderr.
#
#   bench/lfs.sh
#
# Environment:
#   BENCH_LFS_MIB=200    total size of the large files (incompressible, like model weights)
#   BENCH_LFS_FILES=20   how many files share it
#   BENCH_RUNS=3         rounds; each round pushes to a fresh repository and clones it; medians
#   BENCH_NO_BUILD=1     skip `cargo build --release --bins`
#   BENCH_KEEP=1         keep the scratch directory
#
# Bytes are what the server stores for the repository (its .git packs plus, for LFS, the
# objects beside it): every byte of a push goes through a presigned PUT, so stored = sent;
# a clone receives the same amount. Needs git, git-lfs, python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mib=${BENCH_LFS_MIB:-200}
files=${BENCH_LFS_FILES:-20}
runs=${BENCH_RUNS:-3}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
for tool in git git-lfs python3; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  note "cargo build --release --bins"
  (cd "$root" && cargo build --release --bins -q) >&2 || die "release build failed"
fi
bin=$root/target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-lfs.XXXXXX")
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

export HYPHA_JWT_SECRET=bench-lfs-secret
git-hypha serve --root "$work/store" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
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

# The large files, once: incompressible bytes, so git's delta and zlib win nothing either.
note "generating $mib MiB in $files files"
mkdir -p "$work/files"
python3 - "$work/files" "$mib" "$files" <<'EOF'
import os, random, sys
out, mib, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = mib * 1024 * 1024 // n
rng = random.Random(15)
for i in range(n):
    with open(os.path.join(out, f"w{i:03}.bin"), "wb") as f:
        f.write(rng.randbytes(size))
EOF

# source KIND: a work tree with the files committed, as LFS objects or as git blobs.
source_repo() {
  local kind=$1 dir=$work/src-$1
  git init -q "$dir"
  [ "$kind" = lfs ] && git -C "$dir" lfs track '*.bin' >/dev/null
  cp "$work"/files/*.bin "$dir/"
  git -C "$dir" add -A
  git -C "$dir" commit -q -m "weights"
}
source_repo lfs
source_repo plain

stored_bytes() { # bytes the server keeps for repository bench/$1
  du -sb "$work/store/bench/artifacts/$1" | cut -f1
}

results=$work/results.tsv
: >"$results"
now() { python3 -c 'import time; print(time.monotonic())'; }
for r in $(seq "$runs"); do
  for kind in lfs plain; do
    alias=$kind-$r
    git hypha create "hypha::$url/bench/$alias" 2>/dev/null
    git -C "$work/src-$kind" remote remove origin 2>/dev/null || true
    git -C "$work/src-$kind" remote add origin "hypha::$url/bench/$alias"
    # A fresh remote also means git-lfs pushes every object again.
    t0=$(now)
    git -C "$work/src-$kind" push -q origin main 2>"$work/push.err" || die "push $kind: $(cat "$work/push.err")"
    t1=$(now)
    rm -rf "$work/clone"
    git clone -q "hypha::$url/bench/$alias" "$work/clone" 2>"$work/clone.err" || die "clone $kind: $(cat "$work/clone.err")"
    t2=$(now)
    cmp -s "$work/clone/w000.bin" "$work/files/w000.bin" || die "clone $kind: content differs"
    printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$r" \
      "$(python3 -c "print(f'{$t1-$t0:.2f}')")" "$(python3 -c "print(f'{$t2-$t1:.2f}')")" \
      "$(stored_bytes "$alias")" >>"$results"
    note "round $r $kind: $(tail -n1 "$results" | cut -f3-)"
  done
done

python3 - "$results" "$mib" "$files" "$runs" "$product" <<'EOF'
import statistics, sys
path, mib, files, runs, product = sys.argv[1:]
rows = [l.split("\t") for l in open(path).read().splitlines()]
def med(kind, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == kind)
print(f"LFS benchmark ({mib} MiB in {files} incompressible files, {runs} rounds, medians; "
      f"git hypha serve on local disk, release build of {product})\n")
print("| content | push s | clone s | stored MiB |")
print("|---|---:|---:|---:|")
for kind in ("lfs", "plain"):
    print(f"| {kind} | {med(kind, 2):.2f} | {med(kind, 3):.2f} | {med(kind, 4) / 2**20:.1f} |")
print()
for col, name in ((2, "push time"), (3, "clone time"), (4, "stored bytes")):
    print(f"- LFS / plain {name}: {med('lfs', col) / med('plain', col):.2f}")
EOF
