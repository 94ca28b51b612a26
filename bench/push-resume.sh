#!/usr/bin/env bash
# Issue 22 part 3: what a push cut part way costs the next push. One file of SIZE_MIB MiB of
# random data (a pack of as many MiB, in 5 MiB parts), pushed to `git hypha serve` (local
# disk): the push is killed (SIGKILL of its process group) once CUT_PARTS parts are stored,
# then pushed again. Side by side, in each of RUNS rounds:
#   resumed   the push after the cut (takes the kept pack, sends only the missing parts)
#   full      a push of the same commit to a fresh repository (what a cut push cost before)
#   daemon    git push of the same commit to `git daemon` (receive-pack), the peer
# Prints the medians, the ratios of medians, and the parts the resumed pushes sent.
#
#   BIN=target/debug SIZE_MIB=60 CUT_PARTS=6 RUNS=3 bench/push-resume.sh
set -euo pipefail
BIN=$(cd "${BIN:-target/debug}" && pwd)
SIZE_MIB=${SIZE_MIB:-60} CUT_PARTS=${CUT_PARTS:-6} RUNS=${RUNS:-3}
work=$(mktemp -d /tmp/push-resume.XXXXXX)
. "$(dirname "$0")/env.sh"
bench_git_env "$work" "$BIN"
export HYPHA_JWT_SECRET=bench-secret-bench-secret-bench-secret
# Packs are kept for the next push from 64 MiB on; the default size here is below that.
export HYPHA_RESUME_MIN_BYTES=1000000
root=$work/store
git-hypha serve --root "$root" --listen 127.0.0.1:0 --inline-max 0 \
  --multipart-threshold 5242880 --multipart-part-size 5242880 >"$work/serve.out" 2>"$work/serve.log" &
serve=$!
mkdir -p "$work/daemon"
git daemon --reuseaddr --listen=127.0.0.1 --port=0 --base-path="$work/daemon" --export-all \
  --enable=receive-pack "$work/daemon" 2>/dev/null &
daemon=$!
trap 'kill $serve $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(head -1 "$work/serve.out" | sed 's/.*listening on //')
export HYPHA_TOKEN=$(git-hypha token --workspace ws --permission a)
# git daemon with --port=0 does not say its port: take a free one instead.
kill $daemon; wait $daemon 2>/dev/null || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$work/daemon" --export-all \
  --enable=receive-pack "$work/daemon" 2>/dev/null &
daemon=$!
sleep 0.5

src=$work/src
git init -q "$src"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$src/big.bin"
git -C "$src" add big.bin && git -C "$src" commit -qm big
now() { date +%s.%N; }
declare -a resumed full peer sent
for run in $(seq "$RUNS"); do
  # Cut, then resume.
  git-hypha create "hypha::$url/ws/cut$run" >/dev/null 2>&1
  rm -rf "$src/.git/hypha/push"
  parts() { { find "$root/.hypha-multipart" -name 'part-*' 2>/dev/null || true; } | wc -l; }
  before=$(parts)
  setsid git -C "$src" push -q "hypha::$url/ws/cut$run" main 2>/dev/null &
  pusher=$!
  until [ $(( $(parts) - before )) -ge "$CUT_PARTS" ]; do
    kill -0 $pusher 2>/dev/null || { echo "the push ended before $CUT_PARTS parts" >&2; exit 1; }
    sleep 0.05
  done
  kill -9 -- -$pusher; wait $pusher 2>/dev/null || true
  t0=$(now); git -C "$src" push -q "hypha::$url/ws/cut$run" main; t1=$(now)
  resumed+=("$(echo "$t1 - $t0" | bc)")
  sent+=("$(grep -o "multipart resumed [^ ]* upload=[^ ]* parts=[0-9]* stored=[0-9]*" "$work/serve.log" | tail -1 | sed 's/.*parts=/parts=/')")
  # The same push from scratch.
  git-hypha create "hypha::$url/ws/full$run" >/dev/null 2>&1
  t0=$(now); git -C "$src" push -q "hypha::$url/ws/full$run" main; t1=$(now)
  full+=("$(echo "$t1 - $t0" | bc)")
  # The peer.
  git init -q --bare "$work/daemon/r$run.git"
  t0=$(now); git -C "$src" push -q "git://127.0.0.1:$port/r$run.git" main; t1=$(now)
  peer+=("$(echo "$t1 - $t0" | bc)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
r=$(median "${resumed[@]}") f=$(median "${full[@]}") p=$(median "${peer[@]}")
echo "push of a ${SIZE_MIB} MiB pack in 5 MiB parts, cut after $CUT_PARTS parts, $RUNS runs (seconds)"
printf '%-8s median %6.2f  runs %s\n' resumed "$r" "${resumed[*]}" full "$f" "${full[*]}" daemon "$p" "${peer[*]}"
echo "ratio resumed/full $(echo "scale=2; $r / $f" | bc)x, resumed/daemon $(echo "scale=2; $r / $p" | bc)x"
echo "resumed pushes sent: ${sent[*]}"
