#!/usr/bin/env bash
# Benchmark of git-remote-hypha + `git hypha serve` against `git daemon` and `file://`.
#
#   bench/run.sh                 # build release binaries, generate/cached data, 5 rounds, report
#
# Environment:
#   BENCH_RUNS=5        rounds; every operation runs once per peer per round, peers interleaved
#                       (their order rotates each round) so that they share the machine's noise
#   BENCH_DIR=bench/data  cache of generated repositories (+ a copy of each report)
#   BENCH_BIG=1         also the ~500 MiB binary-history dataset (clone and full push only)
#   BENCH_S3=1          also peer hypha-s3: a second `git hypha serve` on S3 (s3s-fs, started
#                       by scripts/s3-services.sh; presigned transfers go to s3s-fs directly)
#   BENCH_DATA=1        the data workflows of issue 13 (bench/data.sh; 0 skips them, `only` runs
#                       nothing else): edit-pushes of a 40 MiB and an 8 MiB CSV, 29 edit-pushes,
#                       then a clone, bytes on the wire counted by a TCP relay
#                       (BENCH_CSV_MIB=8, BENCH_CSV_EDITS=29, BENCH_CSVBIG_MIB=40)
#   BENCH_NO_BUILD=1    skip `cargo build --release --bins` (use target/release as it is)
#   BENCH_KEEP=1        keep the scratch directory (remotes, server log) for inspection
#   BENCH_SHALLOW=1     also bench/shallow.sh (depth-1 clone, blob:none clone, lazy checkout
#                       against git daemon, bytes down through a counting relay), appended
#
# Prints a Markdown report on stdout (progress goes to stderr). Medians only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
runs=${BENCH_RUNS:-5}
data=${BENCH_DIR:-$here/data}
big=${BENCH_BIG:-0}
data_on=${BENCH_DATA:-1}

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, not '$runs'"
for tool in git python3 /usr/bin/time cargo; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

# ---------------------------------------------------------------------------- binaries
# What the binaries were built from (others may commit while this runs).
product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"
[ "${BENCH_NO_BUILD:-0}" = 1 ] && product="$product (BENCH_NO_BUILD: binaries as found)"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  note "cargo build --release --bins"
  (cd "$root" && cargo build --release --bins -q) >&2 || die "release build failed"
fi
bin=$root/target/release
for b in git-remote-hypha git-hypha; do
  [ -x "$bin/$b" ] || die "$bin/$b missing (run cargo build --release --bins)"
done

# ---------------------------------------------------------------------------- scratch + cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/s3/env" ] && HOME=$real_home "$root/scripts/s3-services.sh" stop "$work/s3/env" >/dev/null 2>&1
  if [ "${BENCH_KEEP:-0}" = 1 ]; then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The S3 test servers (BENCH_S3=1) install into and run from the real home, not the bench's.
real_home=$HOME
# A clean git environment and the helper under /usr/bin/time (bench/env.sh).
. "$here/env.sh"
bench_git_env "$work" "$bin"

# ---------------------------------------------------------------------------- data
# bench/data/<name>.git, rebuilt when gen.py or its knobs change.
mkdir -p "$data"
data=$(cd "$data" && pwd)
dataset() {
  local name=$1 repo=$data/$1.git stamp knobs
  case $name in
    text) knobs=BENCH_TEXT_ ;; tags) knobs=BENCH_TAGS= ;; big) knobs=BENCH_BIG_MIB= ;;
    csv) knobs=BENCH_CSV_ ;; csvbig) knobs=BENCH_CSVBIG_MIB= ;;
    mirror) knobs=BENCH_TEXT_ ;; # the text history, plus refs
  esac
  stamp="v2 $(sha256sum "$here/gen.py" | cut -d' ' -f1) $( (env | grep "^$knobs" || true) | sort | tr '\n' ' ')"
  if [ -d "$repo" ] && [ "$(cat "$repo/bench-stamp" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  note "generating $name dataset (cached in $repo)"
  local t0=$EPOCHREALTIME
  rm -rf "$repo" "$repo.tmp"
  if [ "$name" = mirror ]; then
    # The text history (one pack, copied) and 1,500 refs on its commits.
    git clone -q --bare --no-local "$data/text.git" "$repo.tmp"
    git -C "$repo.tmp" rev-list --reverse main | python3 "$here/gen.py" mirror \
      | git -C "$repo.tmp" -c fastimport.unpackLimit=1 fast-import --quiet || die "generating $name failed"
    # One pack, as a gc'd working repository has (no bitmap: not bare).
    git -C "$repo.tmp" -c repack.writeBitmaps=false repack -adq
  else
    git init -q --bare "$repo.tmp"
    # unpackLimit=1: always one pack, even for the few objects of the tags history.
    python3 "$here/gen.py" "$name" | git -C "$repo.tmp" -c fastimport.unpackLimit=1 fast-import --quiet \
      || die "generating $name failed"
  fi
  git -C "$repo.tmp" symbolic-ref HEAD refs/heads/main
  git -C "$repo.tmp" pack-refs --all
  echo "$stamp" >"$repo.tmp/bench-stamp"
  mv "$repo.tmp" "$repo"
  note "  $name generated in $(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')")s"
}
datasets=(text tags mirror)
[ "$big" = 1 ] && datasets+=(big)
[ "$data_on" = only ] && datasets=()
for ds in "${datasets[@]}"; do dataset "$ds"; done
# The data workflows' histories (bench/data.sh), apart: they are not cloned round by round.
if [ "$data_on" != 0 ]; then
  for ds in csv csvbig; do
    dataset "$ds"
    git clone -q --bare "$data/$ds.git" "$work/src-$ds.git"
  done
fi

# Work copies (hardlinked local clones): the helper keeps state in the repository it runs in,
# and the cache stays untouched.
for ds in "${datasets[@]}"; do
  git clone -q --bare "$data/$ds.git" "$work/src-$ds.git"
done

# ---------------------------------------------------------------------------- peers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
remotes=$work/remotes
mkdir -p "$remotes/daemon" "$remotes/file" "$work/store"

dport=$(free_port)
"$(git --exec-path)/git-daemon" --export-all --enable=receive-pack --informative-errors --reuseaddr \
  --base-path="$remotes" --listen=127.0.0.1 --port="$dport" "$remotes" \
  >"$work/daemon.log" 2>&1 &
pids+=($!)
daemon_pid=$!

export HYPHA_JWT_SECRET="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
# `git-hypha serve` is `git hypha serve` without the git wrapper process in between, so that
# $server_pid is the server itself (its VmHWM is read below).
git-hypha serve --root "$work/store" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
server_pid=$!

hurl=
for _ in $(seq 100); do
  [ -z "$hurl" ] && hurl=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1)
  if [ -n "$hurl" ] && (exec 3<>"/dev/tcp/127.0.0.1/$dport") 2>/dev/null; then break; fi
  kill -0 "$server_pid" 2>/dev/null || die "git hypha serve exited: $(cat "$work/serve.log")"
  kill -0 "$daemon_pid" 2>/dev/null || die "git daemon exited: $(cat "$work/daemon.log")"
  sleep 0.1
done
[ -n "$hurl" ] || die "git hypha serve did not print its address: $(cat "$work/serve.log")"
(exec 3<>"/dev/tcp/127.0.0.1/$dport") 2>/dev/null || die "git daemon not listening on $dport"
HYPHA_TOKEN=$(git hypha token --workspace bench --permission rw --expires-in 86400)
export HYPHA_TOKEN
note "git daemon on git://127.0.0.1:$dport, git hypha serve on $hurl"

peers=(daemon file hypha)
# BENCH_S3=1: the same server on S3 (s3s-fs checks signatures as S3 does), same JWT secret.
s3url= s3_server_pid=
if [ "${BENCH_S3:-0}" = 1 ]; then
  HOME=$real_home "$root/scripts/s3-services.sh" start "$work/s3/env" >&2 \
    || die "S3 test servers did not start"
  set -a
  # shellcheck disable=SC1091
  . "$work/s3/env"
  set +a
  git-hypha serve --root "$work/store-s3" --listen 127.0.0.1:0 --s3-endpoint "$HYPHA_TEST_S3_ENDPOINT" \
    --s3-bucket "$HYPHA_TEST_S3_BUCKET" --s3-prefix bench-s3 --s3-path-style \
    >"$work/serve-s3.out" 2>"$work/serve-s3.log" &
  pids+=($!)
  s3_server_pid=$!
  for _ in $(seq 100); do
    s3url=$(sed -n 's/^listening on //p' "$work/serve-s3.out" | head -n1)
    [ -n "$s3url" ] && break
    kill -0 "$s3_server_pid" 2>/dev/null || die "git hypha serve on S3 exited: $(cat "$work/serve-s3.log")"
    sleep 0.1
  done
  [ -n "$s3url" ] || die "git hypha serve on S3 did not print its address"
  note "git hypha serve on S3 (s3s-fs at $HYPHA_TEST_S3_ENDPOINT) on $s3url"
  peers+=(hypha-s3)
fi
url() { # url PEER NAME
  case $1 in
    daemon) echo "git://127.0.0.1:$dport/daemon/$2.git" ;;
    file) echo "file://$remotes/file/$2.git" ;;
    hypha) echo "hypha::$hurl/bench/$2" ;;
    hypha-s3) echo "hypha::$s3url/bench/$2" ;;
  esac
}
new_remote() { # new_remote PEER NAME: an empty repository
  case $1 in
    daemon | file) git init -q --bare "$remotes/$1/$2.git" ;;
    hypha | hypha-s3) git hypha create "$(url "$1" "$2")" >/dev/null || die "git hypha create $(url "$1" "$2") failed" ;;
  esac
}
remote_dir() { # the directory holding a remote's objects
  case $1 in
    daemon | file) echo "$remotes/$1/$2.git" ;;
    hypha) echo "$work/store/bench/artifacts/$2/.git" ;;
    hypha-s3) echo "$HYPHA_TEST_S3_DIR/bench-s3/bench/artifacts/$2/.git" ;;
  esac
}
drop_remote() { rm -rf "$(remote_dir "$1" "$2")"; }
pack_bytes() { # total size of the .pack files of a remote (0 if none)
  local d
  d=$(remote_dir "$1" "$2")/objects/pack
  find "$d" -maxdepth 1 -name '*.pack' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
rotated() { # the peers in round R's order
  local r=$1 i
  for ((i = 0; i < ${#peers[@]}; i++)); do echo "${peers[$(((i + r) % ${#peers[@]}))]}"; done
}

# ---------------------------------------------------------------------------- measuring
results=$work/results.tsv
packs=$work/packs.tsv
failures=$work/failures.txt
: >"$results"
: >"$packs"
: >"$failures"
printf 'op\tpeer\tround\tok\tseconds\tclient_rss_kb\thelper_rss_kb\trequests\tapi_requests\tserver_hwm_kb\troutes\n' >"$results"

# failure TITLE STDERR-FILE CMD...: a failed command for the report, with the head and tail of
# its stderr (a push of 10,000 refs can print 10,000 lines).
failure() {
  local title=$1 err=$2 n
  shift 2
  n=$(grep -vc '^Command exited with non-zero status' "$err" || true)
  {
    echo "### $title"
    echo '```'
    echo "\$ $*"
    if [ "$n" -le 40 ]; then
      grep -v '^Command exited with non-zero status' "$err"
    else
      grep -v '^Command exited with non-zero status' "$err" | head -n 15
      echo "[... $((n - 30)) more lines; $(grep -c '\[rejected\]' "$err" || true) lines say [rejected] ...]"
      grep -v '^Command exited with non-zero status' "$err" | tail -n 15
    fi
    echo '```'
  } | tee -a "$failures" >&2
}

# measure OP PEER ROUND CMD...: time CMD, its peak RSS, the helper's, the server's and the
# requests the server logged meanwhile. A failure is recorded and reported, not fatal.
measure() {
  local op=$1 peer=$2 round=$3 rc=0 before t0 t1 secs reqs api hwm crss hrss routes
  local log=$work/serve.log spid=$server_pid
  [ "$peer" = hypha-s3 ] && log=$work/serve-s3.log spid=$s3_server_pid
  shift 3
  : >"$work/helper.rss"
  echo 5 >"/proc/$spid/clear_refs" 2>/dev/null || true # reset VmHWM
  before=$(wc -l <"$log")
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$work/client.rss" "$@" >"$work/op.out" 2>"$work/op.err" || rc=$?
  t1=$EPOCHREALTIME
  tail -n +"$((before + 1))" "$log" >"$work/op.log"
  reqs=$(wc -l <"$work/op.log")
  api=$(grep -c '/remote/v1/' "$work/op.log" || true)
  # e.g. "refs packs GET.pack" -> "refs:1 packs:1 GET.pack:1"
  routes=$(awk '{ p = $2; if (p ~ /\/remote\/v1\//) { sub(/.*\//, "", p); k = p }
                  else { n = split(p, a, "."); k = $1 "." a[n] } c[k]++ }
                END { for (k in c) printf "%s:%d ", k, c[k] }' "$work/op.log" | xargs -n1 | sort | xargs)
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$spid/status" 2>/dev/null || echo 0)
  crss=$(grep -E '^[0-9]+$' "$work/client.rss" | tail -n1 || true)
  hrss=$(grep -E '^[0-9]+$' "$work/helper.rss" | sort -n | tail -n1 || true)
  secs=$(python3 -c "print($t1 - $t0)")
  if [ "$rc" != 0 ]; then
    failure "$op / $peer / round $round: exit $rc after $(printf '%.1f' "$secs")s" "$work/op.err" "$@"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$peer" "$round" \
    "$([ "$rc" = 0 ] && echo 1 || echo 0)" "$secs" \
    "${crss:-0}" "${hrss:-0}" "$reqs" "$api" "${hwm:-0}" "${routes:--}" >>"$results"
  return 0
}
last_ok() { [ "$(tail -n1 "$results" | cut -f4)" = 1 ]; }
check() { # check WHAT EXPECTED ACTUAL: a correctness check outside the timing
  [ "$2" = "$3" ] || { echo "### check failed: $1: expected '$2', got '$3'" | tee -a "$failures" >&2; }
}

# ---------------------------------------------------------------------------- setup per dataset
# <ds>      : one full push, read by the clone (and ls-remote) rounds
# <ds>-inc  : one full push, then one new commit per round, fetched by a mirror clone per peer
setup_dataset() {
  local ds=$1 peer u
  for peer in "${peers[@]}"; do
    new_remote "$peer" "$ds"
    u=$(url "$peer" "$ds")
    set -- git -C "$work/src-$ds.git" push -q "$u" 'refs/heads/*:refs/heads/*' 'refs/tags/*:refs/tags/*'
    if ! "$@" 2>"$work/setup.err"; then
      # Recorded (it is a product failure), then retried once so that the rest can run.
      failure "setup: push of $ds to $peer failed; retried once" "$work/setup.err" "$@"
      "$@" || die "setup: pushing $ds to $peer failed twice"
    fi
  done
}
setup_inc() {
  local ds=$1 peer
  git clone -q --bare "$work/src-$ds.git" "$work/inc-$ds.git"
  for peer in "${peers[@]}"; do
    new_remote "$peer" "$ds-inc"
    git -C "$work/inc-$ds.git" push -q "$(url "$peer" "$ds-inc")" main || die "setup: pushing $ds-inc to $peer failed"
    git clone -q --mirror "$(url "$peer" "$ds-inc")" "$work/fetch-$peer-$ds.git" \
      || die "setup: mirror clone of $ds-inc from $peer failed"
  done
}
# A new commit on main of inc-<ds>: one line appended to one file, fixed identity and date.
new_commit() {
  local ds=$1 r=$2 repo path blob tree commit
  repo=$work/inc-$ds.git
  path=$(git -C "$repo" ls-tree -r --name-only main | sed -n "$((r * 7 % 300 + 1))p")
  blob=$( { git -C "$repo" cat-file blob "main:$path"; echo "bench round $r"; } | git -C "$repo" hash-object -w --stdin)
  GIT_INDEX_FILE=$work/inc.index git -C "$repo" read-tree main
  GIT_INDEX_FILE=$work/inc.index git -C "$repo" update-index --cacheinfo "100644,$blob,$path"
  tree=$(GIT_INDEX_FILE=$work/inc.index git -C "$repo" write-tree)
  commit=$(GIT_AUTHOR_DATE="1800000000 +0000" GIT_COMMITTER_DATE="1800000000 +0000" \
    git -C "$repo" commit-tree "$tree" -p main -m "bench round $r")
  git -C "$repo" update-ref refs/heads/main "$commit"
  echo "$commit"
}

# ---------------------------------------------------------------------------- rounds
load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load)
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

# BENCH_DATA=only: no text, tags or big rounds (not indented, to keep this diff small).
if [ "$data_on" != only ]; then
for ds in "${datasets[@]}"; do
  [ "$ds" != mirror ] || continue # pushed into new remotes only, round by round
  note "setup: $ds"
  setup_dataset "$ds"
  [ "$ds" != text ] || setup_inc "$ds"
done
text_tip=$(git -C "$work/src-text.git" rev-parse main)
big_tip=
[ "$big" = 1 ] && big_tip=$(git -C "$work/src-big.git" rev-parse main)
tag_refs=$(git -C "$work/src-tags.git" for-each-ref | wc -l)
mirror_refs=$(git -C "$work/src-mirror.git" for-each-ref | wc -l)
declare -A objects
for ds in text ${big_tip:+big}; do
  objects[$ds]=$(git -C "$work/src-$ds.git" rev-list --objects main | wc -l)
done

# Baseline for the full-push pack size: what git pack-objects makes of the same objects.
for ds in text ${big_tip:+big}; do
  printf '%s\tpack-objects\t0\t%s\n' "full push $ds" \
    "$(echo main | git -C "$work/src-$ds.git" pack-objects --revs --stdout --delta-base-offset -q | wc -c)" >>"$packs"
done

for r in $(seq "$runs"); do
  note "round $r/$runs"
  for ds in text ${big_tip:+big}; do
    tip=$text_tip
    [ "$ds" = big ] && tip=$big_tip

    for peer in $(rotated "$r"); do
      rm -rf "$work/clone.git"
      measure "clone $ds" "$peer" "$r" git clone --bare -q --no-local "$(url "$peer" "$ds")" "$work/clone.git"
      if last_ok; then
        check "clone $ds from $peer: main" "$tip" "$(git -C "$work/clone.git" rev-parse main 2>&1)"
        # Every object reachable (rev-list fails on a missing one); full fsck only in round 1.
        check "clone $ds from $peer: objects" "${objects[$ds]}" "$(git -C "$work/clone.git" rev-list --objects main | wc -l)"
        if [ "$r" = 1 ]; then
          git -C "$work/clone.git" fsck --full --no-progress --no-dangling >"$work/fsck.out" 2>&1 \
            || check "fsck of the $ds clone from $peer" "clean" "$(head -c 2000 "$work/fsck.out")"
        fi
      fi
      rm -rf "$work/clone.git"
    done

    for peer in $(rotated "$r"); do
      new_remote "$peer" "push-$ds-$r"
      measure "full push $ds" "$peer" "$r" git -C "$work/src-$ds.git" push -q "$(url "$peer" "push-$ds-$r")" main
      if last_ok; then
        check "full push $ds to $peer" "$tip" "$(git --git-dir="$(remote_dir "$peer" "push-$ds-$r")" rev-parse main 2>&1)"
        printf '%s\t%s\t%s\t%s\n' "full push $ds" "$peer" "$r" "$(pack_bytes "$peer" "push-$ds-$r")" >>"$packs"
      fi
      drop_remote "$peer" "push-$ds-$r"
    done
  done

  # One new commit: push it to each peer, then fetch it from each peer, then fetch again.
  commit=$(new_commit text "$r")
  base=$(git -C "$work/inc-text.git" rev-parse main^)
  for thin in "" --thin; do
    printf '%s\tpack-objects%s\t%s\t%s\n' "push 1 commit" "$thin" "$r" \
      "$(printf '%s\n^%s\n' "$commit" "$base" | git -C "$work/inc-text.git" pack-objects --revs --stdout --delta-base-offset $thin -q | wc -c)" >>"$packs"
  done
  for peer in $(rotated "$r"); do
    before=$(pack_bytes "$peer" text-inc)
    measure "push 1 commit" "$peer" "$r" git -C "$work/inc-text.git" push -q "$(url "$peer" text-inc)" main
    ! last_ok || printf '%s\t%s\t%s\t%s\n' "push 1 commit" "$peer" "$r" "$(($(pack_bytes "$peer" text-inc) - before))" >>"$packs"
  done
  for peer in $(rotated "$r"); do
    measure "fetch 1 commit" "$peer" "$r" git -C "$work/fetch-$peer-text.git" fetch -q
    ! last_ok || check "fetch from $peer" "$commit" "$(git -C "$work/fetch-$peer-text.git" rev-parse main 2>&1)"
  done
  for peer in $(rotated "$r"); do
    measure "no-op fetch" "$peer" "$r" git -C "$work/fetch-$peer-text.git" fetch -q
  done

  for peer in $(rotated "$r"); do
    new_remote "$peer" "push-tags-$r"
    measure "push 10k tags" "$peer" "$r" git -C "$work/src-tags.git" push -q "$(url "$peer" "push-tags-$r")" \
      'refs/heads/*:refs/heads/*' 'refs/tags/*:refs/tags/*'
    ! last_ok || check "push 10k tags to $peer: refs" "$tag_refs" \
      "$(git --git-dir="$(remote_dir "$peer" "push-tags-$r")" for-each-ref | wc -l)"
    drop_remote "$peer" "push-tags-$r"
  done

  # Issue 16 item 6: `git push --mirror` of a 1,500-ref, 2,000-commit repository into a new remote.
  for peer in $(rotated "$r"); do
    new_remote "$peer" "push-mirror-$r"
    measure "mirror push 1.5k refs" "$peer" "$r" git -C "$work/src-mirror.git" push -q --mirror \
      "$(url "$peer" "push-mirror-$r")"
    ! last_ok || check "mirror push to $peer: refs" "$mirror_refs" \
      "$(git --git-dir="$(remote_dir "$peer" "push-mirror-$r")" for-each-ref | wc -l)"
    drop_remote "$peer" "push-mirror-$r"
  done

  for peer in $(rotated "$r"); do
    measure "ls-remote 10k tags" "$peer" "$r" git ls-remote "$(url "$peer" tags)"
    ! last_ok || check "ls-remote of tags from $peer: refs listed" "$tag_refs" \
      "$(grep -c -v 'HEAD$' "$work/op.out" || true)"
  done
done
fi

if [ "$data_on" != 0 ]; then
  note "data workflows (bench/data.sh)"
  . "$here/data.sh"
  data_workflows
fi

# ---------------------------------------------------------------------------- report
packed() { awk -F'\t' -v op="full push $1" '$1 == op && $2 == "pack-objects" {printf "%.1f MiB", $4 / 1048576; exit}' "$packs"; }
{
  echo "started=$started"
  echo "finished=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "nproc=$(nproc)"
  echo "git=$(git --version)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "load_before=$load_before"
  echo "load_after=$(load)"
  echo "runs=$runs"
  echo "product=$product"
  [ "$data_on" = 0 ] || echo "csv=$(git -C "$work/src-csv.git" rev-list --count main) commits of a $(git -C "$work/src-csv.git" cat-file -s main:data.csv)-byte data.csv; csvbig: $(git -C "$work/src-csvbig.git" cat-file -s main:data.csv) bytes"
  [ "$data_on" = only ] || echo "text=$(git -C "$work/src-text.git" rev-list --count main) commits, $(git -C "$work/src-text.git" ls-tree -r main | wc -l) files, $(packed text) packed"
  [ "$data_on" = only ] || echo "tags=$tag_refs refs"
  [ "$data_on" = only ] || echo "mirror=$mirror_refs refs on the text history ($(git -C "$work/src-mirror.git" rev-list --all | wc -l) commits)"
  [ "$big" = 1 ] && echo "big=$(git -C "$work/src-big.git" rev-list --count main) commits, $(packed big) packed"
  true
} >"$work/meta.txt"

report=$data/report-$(date -u '+%Y%m%dT%H%M%SZ').md
{
  if [ "$data_on" = only ]; then
    sed 's/^/    /' "$work/meta.txt"
    cat "$failures"
  else
    python3 "$here/report.py" "$work/meta.txt" "$results" "$packs" "$failures"
  fi
  if [ "$data_on" != 0 ]; then
    python3 "$here/data_report.py" "$work/data.tsv" "$work/data-autogc.txt"
  fi
} | tee "$report"
if [ "${BENCH_SHALLOW:-0}" = 1 ]; then
  note "shallow and partial clones (bench/shallow.sh)"
  { echo; echo '## Shallow and partial clones (bench/shallow.sh 10)'; echo; echo '```';
    BIN=$bin "$here/shallow.sh" 10 2>/dev/null; echo '```'; } | tee -a "$report"
fi
note "report saved to $report"
