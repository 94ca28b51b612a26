#!/usr/bin/env bash
# Benchmark rows for "only the changed chunks" (issue 22 part 4): a new version of a large
# file pushed, with its first version already on the server, three ways side by side:
#
#   hypha   git-lfs with our agent (`git hypha lfs-agent`): the chunks v1 lacks
#   basic   git-lfs's own `basic` transfer: the whole object, one PUT
#   git     the same two versions as plain git blobs pushed to `git daemon` (no LFS), with
#           git's default core.bigFileThreshold (512 MiB: files above it are never
#           deltified, so a 1 GiB file goes whole, zlib-compressed), and with
#           core.bigFileThreshold=4g on the pushing side, so that git computes its own delta
#
# for three edits of a BENCH_DELTA_MIB file:
#
#   csv-append   a CSV (bench/gen.py's row format) with BENCH_DELTA_ROWS rows appended
#   csv-middle   the same CSV with BENCH_DELTA_ROWS consecutive rows in the middle rewritten
#   bin-1pct     random bytes with 1% rewritten in place: 256 runs of random bytes at random
#                offsets (a fixed seed), each 1/256 of 1% of the file
#
# Each push is a `git push` of the v2 commit to a repository holding the v1 commit (for
# hypha and basic a fresh repository per round, v1 pushed before and not counted, so every
# round's hypha push includes the server indexing v1 once; for git a fresh bare repository
# borrowing v1's objects through alternates). Bytes up are counted by a TCP relay in front
# of each server (bench/relay.py; `serve --public-url` points the presigned URLs at it), so
# they include the API's requests (hypha's chunk list) and git's protocol. Prints a
# Markdown table on stdout; progress on stderr.
#
#   bench/lfs-delta.sh
#
# Environment:
#   BENCH_DELTA_MIB=1024   file size
#   BENCH_DELTA_ROWS=1000  rows appended / rewritten
#   BENCH_RUNS=3           rounds; medians
#   BENCH_GIT_RUNS=RUNS    rounds of the git pushes (their bytes do not vary; each takes
#                          minutes at 1 GiB)
#   BENCH_GIT_DELTA=1      0 leaves out git with core.bigFileThreshold=4g (slow: git reads
#                          both versions into memory and searches for a delta)
#   BENCH_NO_BUILD=1       skip `cargo build --release --bins`
#   BENCH_KEEP=1           keep the scratch directory
#
# git hypha serve runs on local disk with its defaults (parts of 16 MiB above 64 MiB). Disk:
# about 8x the file at a time. Needs git, git-lfs, python3, mawk or awk.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mib=${BENCH_DELTA_MIB:-1024}
rows=${BENCH_DELTA_ROWS:-1000}
runs=${BENCH_RUNS:-3}
git_runs=${BENCH_GIT_RUNS:-$runs}
git_delta=${BENCH_GIT_DELTA:-1}
die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
for tool in git git-lfs python3; do command -v "$tool" >/dev/null || die "needs $tool"; done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $mib =~ ^[1-9][0-9]*$ ]] || die "BENCH_DELTA_MIB must be a positive integer"
[[ $rows =~ ^[1-9][0-9]*$ ]] || die "BENCH_DELTA_ROWS must be a positive integer"
awk=$(command -v mawk || command -v awk)

product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  note "cargo build --release --bins"
  (cd "$root" && cargo build --release --bins -q) >&2 || die "release build failed"
fi
bin=$root/target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-delta.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  # `wait` answers a killed process's status: not an error here (set -e would stop the loop).
  for p in "${pids[@]}"; do { kill "$p" && wait "$p"; } 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$here/env.sh"
bench_git_env "$work" "$bin"
git lfs install --skip-repo >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
relay() { # relay TARGET_PORT NAME: "RELAY_PORT CONTROL_PORT" in $work/relay-NAME.ports
  local f=$work/relay-$2.ports
  python3 "$here/relay.py" "$1" "$f" 2>>"$work/relay-$2.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$f" ] && return
    sleep 0.05
  done
  die "relay $2 did not start: $(cat "$work/relay-$2.log")"
}
up_bytes() { # up_bytes CONTROL_PORT: bytes relayed to the server so far
  local line
  exec 4<>"/dev/tcp/127.0.0.1/$1"
  read -r line <&4
  exec 4<&-
  echo "${line%% *}"
}
now() { python3 -c 'import time; print(time.monotonic())'; }

# git hypha serve behind a relay.
export HYPHA_JWT_SECRET=bench-delta-secret
hport=$(free_port)
relay "$hport" hypha
read -r hrelay hctl <"$work/relay-hypha.ports"
git-hypha serve --root "$work/store" --listen "127.0.0.1:$hport" \
  --public-url "http://127.0.0.1:$hrelay" >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^listening on' "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
grep -q '^listening on' "$work/serve.out" || die "git hypha serve did not start: $(cat "$work/serve.log")"
export HYPHA_TOKEN
HYPHA_TOKEN=$(git hypha token --workspace bench --expires-in 86400)
hurl="http://127.0.0.1:$hrelay/bench"

# git daemon behind a relay.
dport=$(free_port)
mkdir -p "$work/daemon"
git daemon --reuseaddr --base-path="$work/daemon" --export-all --enable=receive-pack \
  --listen=127.0.0.1 --port="$dport" "$work/daemon" 2>>"$work/daemon.log" &
pids+=($!)
relay "$dport" daemon
read -r drelay dctl <"$work/relay-daemon.ports"
sleep 0.5

# The versions. CSV rows as bench/gen.py writes them, from awk's generator with a fixed seed.
csv_rows() { # csv_rows FIRST_ID COUNT SEED
  "$awk" -v first="$1" -v n="$2" -v seed="$3" 'BEGIN { srand(seed); for (i = first; i < first + n; i++)
    printf "%d,2024-%02d-%02dT%02d:%02d:%02dZ,sensor-%03d,%.6f,%.6f,%d\n", i, 1 + int(rand() * 12),
      1 + int(rand() * 28), int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 1000),
      rand() * 180 - 90, rand() * 360 - 180, int(rand() * 1000000) }'
}
make_csv() { # make_csv OUT: about $mib MiB
  { echo "id,time,sensor,lat,lon,count"
    "$awk" -v target=$((mib * 1024 * 1024)) 'BEGIN { srand(1); s = 0; for (i = 1; s < target; i++) {
      l = sprintf("%d,2024-%02d-%02dT%02d:%02d:%02dZ,sensor-%03d,%.6f,%.6f,%d\n", i, 1 + int(rand() * 12),
        1 + int(rand() * 28), int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 1000),
        rand() * 180 - 90, rand() * 360 - 180, int(rand() * 1000000)); printf "%s", l; s += length(l) } }'
  } >"$1"
}
make_versions() { # make_versions CASE V1 V2
  case $1 in
    csv-append)
      [ -f "$work/csv.v1" ] || make_csv "$work/csv.v1"
      cp "$work/csv.v1" "$2"
      cp "$work/csv.v1" "$3"
      local last
      last=$(($(wc -l <"$2") - 1))
      csv_rows "$((last + 1))" "$rows" 2 >>"$3"
      ;;
    csv-middle)
      [ -f "$work/csv.v1" ] || make_csv "$work/csv.v1"
      mv "$work/csv.v1" "$2"
      local lines from
      lines=$(wc -l <"$2")
      from=$((lines / 2))
      csv_rows "$from" "$rows" 3 >"$work/middle.rows"
      { head -n "$from" "$2"; cat "$work/middle.rows"; tail -n +"$((from + rows + 1))" "$2"; } >"$3"
      ;;
    bin-1pct)
      head -c "$((mib * 1024 * 1024))" /dev/urandom >"$2"
      cp "$2" "$3"
      python3 - "$3" <<'EOF'
import os, random, sys
path = sys.argv[1]
size = os.path.getsize(path)
runs, total = 256, size // 100
run = total // runs
rng = random.Random(4)
# 256 non-overlapping slots: one run at a random offset within each 256th of the file.
with open(path, "r+b") as f:
    slot = size // runs
    for i in range(runs):
        f.seek(i * slot + rng.randrange(0, slot - run))
        f.write(rng.randbytes(run))
EOF
      ;;
  esac
}

results=$work/results.tsv
: >"$results"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; note "$*"; }

for case in csv-append csv-middle bin-1pct; do
  note "$case: generating ($mib MiB)"
  v1=$work/$case.v1 v2=$work/$case.v2
  make_versions "$case" "$v1" "$v2"
  size2=$(stat -c %s "$v2")

  # git: the versions as blobs; v1 pushed once to a base repository.
  g=$work/g-$case
  git init -q "$g"
  c1=$(git -C "$g" commit-tree -m v1 "$(printf '100644 blob %s\tdata\n' "$(git -C "$g" hash-object -w "$v1")" | git -C "$g" mktree)")
  c2=$(git -C "$g" commit-tree -p "$c1" -m v2 "$(printf '100644 blob %s\tdata\n' "$(git -C "$g" hash-object -w "$v2")" | git -C "$g" mktree)")
  git init -q --bare "$work/daemon/base-$case.git"
  git -C "$g" push -q "git://127.0.0.1:$dport/base-$case.git" "$c1:refs/heads/main"
  kinds=(git)
  [ "$git_delta" = 1 ] && kinds+=(git-delta)

  # LFS: pointers committed, the objects placed in .git/lfs/objects (no second copy).
  s=$work/s-$case
  git init -q "$s"
  git -C "$s" config lfs.transfer.maxretries 0
  git -C "$s" lfs track data >/dev/null
  for v in 1 2; do
    f=$work/$case.v$v
    git -C "$s" lfs pointer --file "$f" >"$s/data" 2>/dev/null
    oid=$(sed -n 's/^oid sha256://p' "$s/data")
    mkdir -p "$s/.git/lfs/objects/${oid:0:2}/${oid:2:2}"
    mv "$f" "$s/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid"
    git -C "$s" add -A
    git -C "$s" commit -q -m "v$v"
  done
  oid2=$oid
  lc1=$(git -C "$s" rev-parse HEAD~1)

  for r in $(seq "$runs"); do
    [ "$r" -le "$git_runs" ] || kinds=()
    for kind in "${kinds[@]}"; do
      repo=$case-$kind-$r.git
      git init -q --bare "$work/daemon/$repo"
      echo "$work/daemon/base-$case.git/objects" >"$work/daemon/$repo/objects/info/alternates"
      git -C "$work/daemon/$repo" update-ref refs/heads/main "$c1"
      threshold=()
      [ "$kind" = git-delta ] && threshold=(-c core.bigFileThreshold=4g)
      b0=$(up_bytes "$dctl"); t0=$(now)
      git "${threshold[@]}" -C "$g" push -q "git://127.0.0.1:$drelay/$repo" "$c2:refs/heads/main" 2>"$work/push.err" ||
        die "git push ($kind): $(tail -n 3 "$work/push.err")"
      t1=$(now); b1=$(up_bytes "$dctl")
      record "$case" "$kind" "$r" "$((b1 - b0))" "$(python3 -c "print(f'{$t1-$t0:.2f}')")"
      rm -rf "${work:?}/daemon/$repo"
    done
    for kind in hypha basic; do
      alias=$case-$kind-$r
      git hypha create "hypha::$hurl/$alias" >/dev/null 2>&1
      git -C "$s" remote remove origin 2>/dev/null || true
      git -C "$s" remote add origin "hypha::$hurl/$alias"
      use=()
      # basic: our agent declared for downloads only, so git-lfs does not offer it to upload.
      [ "$kind" = basic ] && use=(-c lfs.customtransfer.hypha.direction=download)
      git "${use[@]}" -C "$s" push -q origin "$lc1:refs/heads/main" >/dev/null 2>"$work/push.err" ||
        die "push v1 ($kind): $(tail -n 3 "$work/push.err")"
      b0=$(up_bytes "$hctl"); t0=$(now)
      git "${use[@]}" -C "$s" push -q origin main >/dev/null 2>"$work/push.err" ||
        die "push v2 ($kind): $(tail -n 3 "$work/push.err")"
      t1=$(now); b1=$(up_bytes "$hctl")
      record "$case" "$kind" "$r" "$((b1 - b0))" "$(python3 -c "print(f'{$t1-$t0:.2f}')")"
      if [ "$kind" = hypha ]; then
        grep -q "lfs delta planned $oid2" "$work/serve.log" || die "$case: no delta plan for v2 (see $work/serve.log)"
      fi
      find "$work/store" -depth -path "*$alias*" -delete 2>/dev/null || true
    done
  done
  plan=$(grep "lfs delta planned $oid2" "$work/serve.log" | tail -n1 | grep -o 'reused=.*')
  printf '%s\t%s\t%s\n' "$case" "$size2" "$plan" >>"$work/sizes.tsv"
  rm -rf "$g" "$s" "${work:?}/daemon/base-$case.git"
done

python3 - "$results" "$work/sizes.tsv" "$mib" "$rows" "$runs" "$product" <<'EOF'
import statistics, sys
path, sizes_path, mib, rows, runs, product = sys.argv[1:]
data = [l.split("\t") for l in open(path).read().splitlines()]
sizes = {l.split("\t")[0]: l.split("\t")[1:] for l in open(sizes_path).read().splitlines()}
def med(case, kind, col):
    vals = [float(r[col]) for r in data if r[0] == case and r[1] == kind]
    return statistics.median(vals) if vals else None
print(f"Only the changed chunks: v2 of a {mib} MiB file pushed over v1 ({runs} rounds, medians; "
      f"git hypha serve on local disk and git daemon, each behind a byte-counting relay on "
      f"loopback; release build of {product})\n")
print("| edit | v2 bytes | transfer | bytes up | push s | bytes vs basic | time vs basic |")
print("|---|---:|---|---:|---:|---:|---:|")
labels = {"hypha": "hypha (changed chunks)", "basic": "git-lfs basic (whole object)",
          "git": "git daemon, bigFileThreshold 512m (default)",
          "git-delta": "git daemon, bigFileThreshold 4g (git's delta)"}
cases = {"csv-append": f"CSV, {rows} rows appended", "csv-middle": f"CSV, {rows} rows rewritten in the middle",
         "bin-1pct": "binary, 1% rewritten (256 runs)"}
for case, name in cases.items():
    if case not in sizes:
        continue
    size = int(sizes[case][0])
    basic_b, basic_t = med(case, "basic", 3), med(case, "basic", 4)
    for kind in ("hypha", "basic", "git", "git-delta"):
        b, t = med(case, kind, 3), med(case, kind, 4)
        if b is None:
            continue
        print(f"| {name} | {size:,} | {labels[kind]} | {int(b):,} | {t:.2f} | "
              f"{b / basic_b:.4f} | {t / basic_t:.2f} |")
print()
for case, (size, plan) in sizes.items():
    print(f"- {case}: the server's plan for v2: {plan}")
EOF
