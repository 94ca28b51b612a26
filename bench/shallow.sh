#!/usr/bin/env bash
# Shallow and partial clones (issue 14): VERSIONS versions of an 8 MiB CSV (a few lines edited
# in each, one push per version) on `git hypha serve` (local disk) and in a bare repository
# served by git daemon; then, through each, `git clone --depth 1`, `git clone
# --filter=blob:none` (with its checkout) and a lazy checkout of the oldest version in that
# partial clone. Bytes down are counted by a TCP relay in front of each server
# (bench/relay.py; the helper's presigned store URLs point at the relay too, through
# `serve --public-url`), so both sides are counted the same way.
#
# Usage: bench/shallow.sh [VERSIONS]   (binaries from $BIN, default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${1:-10}
BIN=$(cd "${BIN:-target/debug}" && pwd)
RELAY=$PWD/bench/relay.py
WORK=$(mktemp -d "${SHALLOW_BENCH_DIR:-/tmp}/hypha-shallow-bench-XXXX")
export PATH=$BIN:$PATH GIT_CONFIG_NOSYSTEM=1 HOME=$WORK HYPHA_JWT_SECRET=shallow-bench-secret-shallow-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; [ -n "${SHALLOW_BENCH_KEEP:-}" ] || rm -rf "$WORK"' EXIT
# relay TARGET_PORT NAME: bench/relay.py in front of TARGET_PORT; "RELAY CONTROL" ports in NAME.ports.
relay() {
  python3 "$RELAY" "$1" "$WORK/$2.ports" & pids+=($!)
  for _ in $(seq 100); do [ -s "$WORK/$2.ports" ] && return; sleep 0.05; done
  echo "relay $2 did not start" >&2; exit 1
}
sport=$(free_port) dport=$(free_port)
relay "$sport" hypha; read -r hrelay hctl <"$WORK/hypha.ports"
relay "$dport" daemon; read -r drelay dctl <"$WORK/daemon.ports"
"$BIN/git-hypha" serve --root "$WORK/srv" --listen "127.0.0.1:$sport" \
  --public-url "http://127.0.0.1:$hrelay" >"$WORK/serve.out" 2>"$WORK/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$hrelay
# bytes NAME CONTROL_PORT: bytes down through that relay since the last call (its control port
# answers "UP DOWN" so far; the last total is kept in NAME.last, as this runs in a subshell).
bytes() {
  local up down prev
  exec 4<>"/dev/tcp/127.0.0.1/$2"; read -r up down <&4; exec 4<&-
  prev=$(cat "$WORK/$1.last" 2>/dev/null || echo 0)
  echo "$down" >"$WORK/$1.last"
  echo $((down - prev))
}
export HYPHA_TOKEN=$("$BIN/git-hypha" token --workspace ws --permission rw)
"$BIN/git-hypha" create "hypha::$url/ws/d" >/dev/null
git config --global user.name a && git config --global user.email a@b
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
git -C "$WORK/daemon/d.git" config uploadpack.allowFilter true
git -C "$WORK/daemon/d.git" config uploadpack.allowAnySHA1InWant true
stored=$(find "$WORK/srv" -name '*.pack' -printf '%s\n' | awk '{s+=$1} END {print s}')
git daemon --export-all --base-path="$WORK/daemon" --listen=127.0.0.1 --port="$dport" --reuseaddr &
pids+=($!)
sleep 0.5
bytes hypha "$hctl" >/dev/null; bytes daemon "$dctl" >/dev/null
echo "versions=$versions stored_packs_bytes=$stored (debug or release: $BIN)"
echo "workflow hypha_bytes daemon_bytes ratio hypha_s daemon_s"
# row NAME HYPHA_CMD DAEMON_CMD: run both, print bytes down and seconds.
row() {
  local t0 t1 t2 hb db
  t0=$(date +%s.%N); eval "$2"; t1=$(date +%s.%N); hb=$(bytes hypha "$hctl")
  eval "$3"; t2=$(date +%s.%N); db=$(bytes daemon "$dctl")
  printf '%s %s %s %s %.1f %.1f\n' "$1" "$hb" "$db" "$(echo "scale=2; $hb / $db" | bc)" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
}
H=hypha::$url/ws/d D=git://127.0.0.1:$drelay/d.git
row depth1-clone "git clone -q --depth 1 $H $WORK/h1" "git clone -q --depth 1 $D $WORK/d1"
row blobnone-clone "git clone -q --filter=blob:none $H $WORK/h2" "git clone -q --filter=blob:none $D $WORK/d2"
row lazy-checkout "git -C $WORK/h2 checkout -q HEAD~$((versions - 1))" "git -C $WORK/d2 checkout -q HEAD~$((versions - 1))"
for r in h1 h2; do git -C "$WORK/$r" fsck --no-dangling >/dev/null; done
echo "fsck ok; depth-1 clone has $(git -C "$WORK/h1" rev-list --count HEAD) commit"
