#!/usr/bin/env bash
# Many pushes stay fast (issue 4, item 5): clone and fetch after 500 single-commit pushes,
# against the same history pushed in one push, before and after `git hypha gc`.
#
#   bench/many-pushes.sh         # release build, cached text dataset, 5 rounds, report
#
# The text history (bench/gen.py text, 2000 commits) goes to remote `many` as main~500 in one
# push, then one push per commit for the last 500 commits: 501 packs. Remote `packed` gets the
# whole history in one push. Each round then times, peers interleaved (order rotated):
#   clone      `git clone --bare -q --no-local` of each remote
#   push       one new commit (not part of the comparison; it makes the fetch below)
#   fetch      `git fetch` of that commit into a mirror clone of each remote
# Before gc, one more fetch goes into a mirror of `many` repacked locally (git's own auto gc,
# off here, would do that), which isolates the remote's pack count from the local one.
# The server runs with its automatic compaction (`serve --auto-gc-packs`, BENCH_AUTO_GC_PACKS):
# it merges small packs in the background while the pushes go on, so "before gc" means before
# the manual `git hypha gc`; the report gives the live pack count the rounds started from.
# BENCH_AUTO_GC_PACKS=0 turns it off (the state before the server compacted by itself).
# Then `git hypha gc` merges the packs of `many`, a new `packed-after` gets the grown history in
# one push, and the same rounds run again; plus a fetch by a clone of `many` made before gc
# (its first fetch sees the merged pack as new).
#
# Environment: BENCH_RUNS=5 (rounds), BENCH_PUSHES=500, BENCH_AUTO_GC_PACKS=20 (server's
# auto-gc threshold, 0 = off), BENCH_DIR=bench/data (dataset cache),
# BENCH_NO_BUILD=1 (binaries as found), BENCH_KEEP=1 (keep scratch dir and server log).
# Prints a Markdown report on stdout (progress on stderr) and saves it in $BENCH_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
runs=${BENCH_RUNS:-5}
pushes=${BENCH_PUSHES:-500}
auto_gc=${BENCH_AUTO_GC_PACKS:-20}
data=${BENCH_DIR:-$here/data}

die() { echo "many-pushes: $*" >&2; exit 1; }
note() { echo "many-pushes: $*" >&2; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$runs'"
[[ $pushes =~ ^[1-9][0-9]*$ ]] || die "BENCH_PUSHES must be a positive integer, not '$pushes'"
[[ $auto_gc =~ ^[0-9]+$ ]] || die "BENCH_AUTO_GC_PACKS must be a number (0 = off), not '$auto_gc'"
for tool in git python3 /usr/bin/time cargo curl; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
  product="$product (BENCH_NO_BUILD: binaries as found)"
else
  note "cargo build --release --bins"
  (cd "$root" && cargo build --release --bins -q) >&2 || die "release build failed"
fi
bin=$root/target/release
for b in git-remote-hypha git-hypha; do
  [ -x "$bin/$b" ] || die "$bin/$b missing (run cargo build --release --bins)"
done

# ---------------------------------------------------------------------------- scratch + cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-many.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A clean git environment and the helper under /usr/bin/time (bench/env.sh).
. "$here/env.sh"
bench_git_env "$work" "$bin"

# ---------------------------------------------------------------------------- data
# The text dataset of run.sh, generated the same way if the cache lacks it.
mkdir -p "$data"
data=$(cd "$data" && pwd)
stamp="v2 $(sha256sum "$here/gen.py" | cut -d' ' -f1) $( (env | grep '^BENCH_TEXT_' || true) | sort | tr '\n' ' ')"
if [ "$(cat "$data/text.git/bench-stamp" 2>/dev/null)" != "$stamp" ]; then
  note "generating the text dataset (cached in $data/text.git)"
  rm -rf "$data/text.git" "$data/text.git.tmp"
  git init -q --bare "$data/text.git.tmp"
  python3 "$here/gen.py" text | git -C "$data/text.git.tmp" -c fastimport.unpackLimit=1 fast-import --quiet \
    || die "generating the text dataset failed"
  git -C "$data/text.git.tmp" symbolic-ref HEAD refs/heads/main
  git -C "$data/text.git.tmp" pack-refs --all
  echo "$stamp" >"$data/text.git.tmp/bench-stamp"
  mv "$data/text.git.tmp" "$data/text.git"
fi
src=$work/src.git
git clone -q --bare "$data/text.git" "$src"
total=$(git -C "$src" rev-list --count main)
[ "$pushes" -lt "$total" ] || die "BENCH_PUSHES=$pushes, but the history has only $total commits"

# ---------------------------------------------------------------------------- server
export HYPHA_JWT_SECRET="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
git-hypha serve --root "$work/store" --listen 127.0.0.1:0 --auto-gc-packs "$auto_gc" \
  >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
hurl=
for _ in $(seq 100); do
  hurl=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1)
  [ -z "$hurl" ] || break
  kill -0 "$server_pid" 2>/dev/null || die "git hypha serve exited: $(cat "$work/serve.log")"
  sleep 0.1
done
[ -n "$hurl" ] || die "git hypha serve did not print its address: $(cat "$work/serve.log")"
HYPHA_TOKEN=$(git hypha token --workspace bench --permission rw --expires-in 86400)
export HYPHA_TOKEN
url() { echo "hypha::$hurl/bench/$1"; }
create() { git hypha create "$(url "$1")" 2>/dev/null || die "git hypha create $(url "$1") failed"; }
live_packs() { # "COUNT BYTES" of the packs the API lists (retired ones are not)
  curl -sf -X POST -H "Authorization: Bearer $HYPHA_TOKEN" -H 'content-type: application/json' \
    -d '{}' "$hurl/bench/git/$1/remote/v1/packs" \
    | python3 -c 'import json, sys; p = json.load(sys.stdin)["packs"]; print(len(p), sum(x["pack_size"] for x in p))'
}
# Waits (at most 10 min) until the auto-gc of $1 is done: nothing logged as running, and at
# most the threshold of live packs or a listing that no longer changes.
settle() {
  local last="" now
  [ "$auto_gc" != 0 ] || return 0
  for _ in $(seq 600); do
    now=$(live_packs "$1")
    if [ "${now%% *}" -le "$auto_gc" ] || [ "$now" = "$last" ]; then echo "$now"; return 0; fi
    last=$now
    sleep 1
  done
  echo "$now"
}
store_packs() { # .pack files in the store (retired ones included until their grace ends)
  find "$work/store/bench/artifacts/$1/.git/objects/pack" -maxdepth 1 -name '*.pack' -printf '%s\n' \
    | awk '{n++; s += $1} END {printf "%d %d\n", n, s}'
}

# ---------------------------------------------------------------------------- measuring
results=$work/results.tsv
failures=$work/failures.txt
: >"$failures"
printf 'phase\top\tpeer\tround\tok\tseconds\trequests\tapi_requests\thelper_rss_kb\troutes\n' >"$results"

# measure PHASE OP PEER ROUND CMD...: wall time of CMD, the helper's peak RSS and the requests
# the server logged meanwhile. A failure is recorded for the report, not fatal.
measure() {
  local phase=$1 op=$2 peer=$3 round=$4 rc=0 before t0 t1 secs reqs api hrss routes
  shift 4
  : >"$work/helper.rss"
  before=$(wc -l <"$work/serve.log")
  t0=$EPOCHREALTIME
  "$@" >"$work/op.out" 2>"$work/op.err" || rc=$?
  t1=$EPOCHREALTIME
  tail -n +"$((before + 1))" "$work/serve.log" >"$work/op.log"
  reqs=$(wc -l <"$work/op.log")
  api=$(grep -c '/remote/v1/' "$work/op.log" || true)
  # e.g. "packs:1 refs:1 GET.pack:501 GET.idx:501"
  routes=$(awk '{ p = $2; if (p ~ /\/remote\/v1\//) { sub(/.*\//, "", p); k = p }
                  else { n = split(p, a, "."); k = $1 "." a[n] } c[k]++ }
                END { for (k in c) printf "%s:%d ", k, c[k] }' "$work/op.log" | xargs -n1 | sort | xargs)
  hrss=$(grep -E '^[0-9]+$' "$work/helper.rss" | sort -n | tail -n1 || true)
  secs=$(python3 -c "print($t1 - $t0)")
  if [ "$rc" != 0 ]; then
    { echo "### $phase / $op / $peer / round $round: exit $rc"; echo '```'; echo "\$ $*";
      tail -n 20 "$work/op.err"; echo '```'; } | tee -a "$failures" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$op" "$peer" "$round" \
    "$([ "$rc" = 0 ] && echo 1 || echo 0)" "$secs" "$reqs" "$api" "${hrss:-0}" "${routes:--}" >>"$results"
  [ "$rc" = 0 ]
}
check() { # check WHAT EXPECTED ACTUAL
  [ "$2" = "$3" ] || { echo "### check failed: $1: expected '$2', got '$3'" | tee -a "$failures" >&2; }
}

# New commit N on main of $src: one line appended to one file, fixed identity and date.
new_commit() { # every step checked: it runs where `set -e` does not apply
  local n=$1 path blob tree commit
  path=$(git -C "$src" ls-tree -r --name-only main | sed -n "$((n * 7 % 300 + 1))p")
  [ -n "$path" ] || return 1
  blob=$( { git -C "$src" cat-file blob "main:$path" && echo "many-pushes commit $n"; } | git -C "$src" hash-object -w --stdin) || return 1
  GIT_INDEX_FILE=$work/new.index git -C "$src" read-tree main || return 1
  GIT_INDEX_FILE=$work/new.index git -C "$src" update-index --cacheinfo "100644,$blob,$path" || return 1
  tree=$(GIT_INDEX_FILE=$work/new.index git -C "$src" write-tree) || return 1
  commit=$(GIT_AUTHOR_DATE="1800000000 +0000" GIT_COMMITTER_DATE="1800000000 +0000" \
    git -C "$src" commit-tree "$tree" -p main -m "many-pushes commit $n") || return 1
  git -C "$src" update-ref refs/heads/main "$commit" || return 1
  echo "$commit"
}

# ---------------------------------------------------------------------------- setup
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

create many
git -C "$src" push -q "$(url many)" "main~$pushes:refs/heads/main" || die "first push to many failed"
note "$pushes single-commit pushes to $(url many)"
i=0
for c in $(git -C "$src" rev-list --reverse "main~$pushes..main"); do
  i=$((i + 1))
  measure setup "single-commit push" many "$i" git -C "$src" push -q "$(url many)" "$c:refs/heads/main" \
    || die "push $i of $pushes failed: $(tail -n 5 "$work/op.err")"
  [ $((i % 50)) != 0 ] || note "  $i pushes"
done
create packed
git -C "$src" push -q "$(url packed)" main || die "push to packed failed"
read -r many_packs many_bytes < <(store_packs many)
read -r packed_packs packed_bytes < <(store_packs packed)
settle_t0=$EPOCHREALTIME
read -r many_live many_live_bytes < <(settle many)
settle_secs=$(python3 -c "print(round($EPOCHREALTIME - $settle_t0, 1))")

# rounds PHASE A B FIRST: clone, push one commit, fetch it; peers A and B interleaved; the new
# commits are numbered from FIRST.
rounds() {
  local phase=$1 a=$2 b=$3 first=$4 r peer order tip objects commit
  for peer in "$a" "$b"; do
    git clone -q --mirror "$(url "$peer")" "$work/mirror-$peer.git" || die "mirror clone of $peer failed"
  done
  if [ "$phase" = "before gc" ]; then
    # The mirror of `many` holds its 501 packs, and git looks objects up pack by pack; git's
    # own auto gc (off here) would repack it. This one is repacked, so that the fetch from the
    # many-pack remote is timed without the local pack count.
    cp -a "$work/mirror-$a.git" "$work/repacked-$a.git"
    git -C "$work/repacked-$a.git" repack -a -d -q || die "repacking the mirror of $a failed"
  fi
  for r in $(seq "$runs"); do
    note "$phase: round $r/$runs"
    order="$a $b"
    [ $((r % 2)) = 1 ] || order="$b $a"
    tip=$(git -C "$src" rev-parse main)
    objects=$(git -C "$src" rev-list --objects main | wc -l)
    for peer in $order; do
      rm -rf "$work/clone.git"
      if measure "$phase" clone "$peer" "$r" git clone --bare -q --no-local "$(url "$peer")" "$work/clone.git"; then
        check "$phase: clone of $peer: main" "$tip" "$(git -C "$work/clone.git" rev-parse main 2>&1)"
        check "$phase: clone of $peer: objects" "$objects" "$(git -C "$work/clone.git" rev-list --objects main | wc -l)"
        if [ "$r" = 1 ]; then
          git -C "$work/clone.git" fsck --full --no-progress --no-dangling >"$work/fsck.out" 2>&1 \
            || check "$phase: fsck of the clone of $peer" clean "$(head -c 2000 "$work/fsck.out")"
        fi
      fi
      rm -rf "$work/clone.git"
    done
    commit=$(new_commit "$((first + r))") || die "making new commit $((first + r)) failed"
    for peer in $order; do
      measure "$phase" "push 1 commit" "$peer" "$r" git -C "$src" push -q "$(url "$peer")" main || true
    done
    for peer in $order; do
      if measure "$phase" "fetch 1 commit" "$peer" "$r" git -C "$work/mirror-$peer.git" fetch -q; then
        check "$phase: fetch from $peer" "$commit" "$(git -C "$work/mirror-$peer.git" rev-parse main 2>&1)"
      fi
    done
    if [ "$phase" = "before gc" ]; then
      if measure "$phase" "fetch 1 commit, local clone repacked" "$a" "$r" git -C "$work/repacked-$a.git" fetch -q; then
        check "$phase: fetch into the repacked mirror of $a" "$commit" "$(git -C "$work/repacked-$a.git" rev-parse main 2>&1)"
      fi
    fi
    if [ "$phase" = "after gc" ]; then
      # A clone of `many` made before gc, fetching for the first time since.
      rm -rf "$work/stale.git"
      cp -a "$work/stale-pristine.git" "$work/stale.git"
      if measure "$phase" "fetch 1 commit, clone from before gc" many "$r" git -C "$work/stale.git" fetch -q; then
        check "$phase: fetch by a clone from before gc" "$commit" "$(git -C "$work/stale.git" rev-parse main 2>&1)"
      fi
    fi
  done
}

rounds "before gc" many packed 0
read -r many_live_end many_live_end_bytes < <(live_packs many)
# The server's peak RSS so far: the pushes and every auto-gc it ran in process (downloads and
# gix indexing; its `git pack-objects` children are not counted here).
server_hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)
cp -a "$work/mirror-many.git" "$work/stale-pristine.git"
rm -rf "$work/mirror-many.git"

note "git hypha gc $(url many)"
measure gc "git hypha gc" many 1 git hypha gc "$(url many)" || die "git hypha gc failed: $(tail -n 5 "$work/op.err")"
gc_said=$(tail -n1 "$work/op.err")
read -r gc_packs gc_bytes < <(store_packs many)

create packed-after
git -C "$src" push -q "$(url packed-after)" main || die "push to packed-after failed"
rounds "after gc" many packed-after "$runs"

# ---------------------------------------------------------------------------- report
{
  echo "started=$started"
  echo "finished=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "load_before=$load_before"
  echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git=$(git --version)"
  echo "product=$product"
  echo "runs=$runs"
  echo "pushes=$pushes"
  echo "history=$total"
  echo "many_store=$many_packs $many_bytes"
  echo "packed_store=$packed_packs $packed_bytes"
  echo "gc_store=$gc_packs $gc_bytes"
  echo "gc_said=$gc_said"
  echo "auto_gc=$auto_gc"
  echo "many_live=$many_live $many_live_bytes $settle_secs"
  echo "many_live_end=$many_live_end $many_live_end_bytes"
  echo "server_hwm_kb=$server_hwm_kb"
  # One line per compaction: "auto-gc bench/many: merged M of N packs ... (Tms)".
  echo "auto_gc_runs=$(grep -c '^auto-gc bench/many: merged' "$work/serve.log" || true)"
  echo "auto_gc_ms=$(sed -n 's/^auto-gc bench\/many: merged .*(\([0-9]*\)ms)$/\1/p' "$work/serve.log" | awk '{s += $1} END {print s + 0}')"
  echo "auto_gc_failed=$(grep -c '^auto-gc .* failed' "$work/serve.log" || true)"
} >"$work/meta.txt"
report=$data/many-pushes-$(date -u '+%Y%m%dT%H%M%SZ').md
python3 "$here/many_report.py" "$work/meta.txt" "$results" "$failures" | tee "$report"
note "report saved to $report"
