#!/usr/bin/env bash
# Shallow clones (issue 14): VERSIONS versions of an 8 MiB CSV (a few lines edited in each, one
# push per version) on `git hypha serve` (local disk), then `git clone --depth 1` through the
# helper and through git daemon on the same history. Prints bytes down (helper: idx files plus
# range reads, from its -v note; daemon: the received pack) and the time of each clone.
#
# Usage: bench/shallow.sh [VERSIONS]   (binaries from $BIN, default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${1:-10}
BIN=$(cd "${BIN:-target/debug}" && pwd)
WORK=$(mktemp -d "${SHALLOW_BENCH_DIR:-/tmp}/hypha-shallow-bench-XXXX")
export PATH=$BIN:$PATH GIT_CONFIG_NOSYSTEM=1 HOME=$WORK HYPHA_JWT_SECRET=shallow-bench-secret-shallow-bench
git config --global user.name a && git config --global user.email a@b
"$BIN/git-hypha" serve --root "$WORK/srv" --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
spid=$!
dpid=
trap 'kill $spid ${dpid:+$dpid}; [ -n "${SHALLOW_BENCH_KEEP:-}" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$WORK/serve.out" | head -1)
export HYPHA_TOKEN=$("$BIN/git-hypha" token --workspace ws --permission rw)
"$BIN/git-hypha" create "hypha::$url/ws/d" >/dev/null
repo=$WORK/repo && git init -q "$repo"
python3 - "$repo/data.csv" <<'PY'
import random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    n = i = 0
    while n < 8 << 20:
        line = f"{i},{random.randint(0, 10**9)},{random.random():.6f},name{random.randint(0, 99999)}\n"
        f.write(line); n += len(line); i += 1
PY
git init -q --bare "$WORK/daemon/d.git"
for v in $(seq "$versions"); do
  sed -i "$((v * 1000))s/.*/$v,edited,line,here/" "$repo/data.csv"
  git -C "$repo" add data.csv && git -C "$repo" commit -q -m "v$v"
  git -C "$repo" push -q "hypha::$url/ws/d" HEAD:refs/heads/main
done
git -C "$repo" push -q "$WORK/daemon/d.git" HEAD:refs/heads/main
git -C "$WORK/daemon/d.git" symbolic-ref HEAD refs/heads/main && git -C "$WORK/daemon/d.git" repack -adq
stored=$(find "$WORK/srv" -name '*.pack' -printf '%s\n' | awk '{s+=$1} END {print s}')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git daemon --export-all --base-path="$WORK/daemon" --listen=127.0.0.1 --port="$port" --reuseaddr &
dpid=$!
sleep 0.5
t0=$(date +%s.%N)
note=$(git clone -v --depth 1 "hypha::$url/ws/d" "$WORK/hc" 2>&1 | grep 'shallow fetch')
t1=$(date +%s.%N)
git clone -q --depth 1 "git://127.0.0.1:$port/d.git" "$WORK/dc"
t2=$(date +%s.%N)
hypha=$(echo "$note" | sed -n 's/.*objects, \([0-9]*\) bytes by range.*/\1/p')
daemon=$(find "$WORK/dc/.git/objects/pack" -name '*.pack' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "versions=$versions stored_packs_bytes=$stored"
echo "depth1 hypha_bytes=$hypha time=$(echo "$t1 - $t0" | bc)s"
echo "depth1 daemon_bytes=$daemon time=$(echo "$t2 - $t1" | bc)s ratio=$(echo "scale=2; $hypha / $daemon" | bc)"
git -C "$WORK/hc" fsck --no-dangling >/dev/null && echo "fsck ok, commits=$(git -C "$WORK/hc" rev-list --count HEAD)"
