#!/usr/bin/env bash
# Round trips far from the server (issue 25): everyday operations against `git hypha serve`
# (local disk) and `git daemon`, each reached through bench/relay.py adding DELAY ms each way
# to every chunk (pipelined: bandwidth unchanged; a new connection costs one more round trip,
# as TCP's handshake does). The helper's presigned URLs point through the same relay.
#
#   bench/far.sh [OUT.md]        BIN=target/release  FAR_RUNS=3  FAR_RTT="0 100"
#
# Round trips = (median time at RTT - median time at 0) / RTT, per operation and peer.
# Machines here are noisy: the ratios of medians are what to quote, not one time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
RUNS=${FAR_RUNS:-3}
RTTS=${FAR_RTT:-0 100}
out=${1:-}
die() { echo "far: $*" >&2; exit 1; }
note() { echo "far: $*" >&2; }
[ -x "$BIN/git-remote-hypha" ] || die "no $BIN/git-remote-hypha (cargo build --release)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${FAR_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/env.sh
. "$here/env.sh"
bench_git_env "$work" "$BIN"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # wait_port PORT WHAT
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 is not listening on $1"
}
relay() { # relay TARGET_PORT DELAY_MS NAME: starts a relay, its port in $relay_port
  local f=$work/relay-$3.ports
  python3 "$here/relay.py" "$1" "$f" "$2" >/dev/null 2>>"$work/relay-$3.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$f" ] && { relay_port=$(cut -d' ' -f1 "$f"); return; }
    sleep 0.05
  done
  die "relay $3 did not start"
}

remotes=$work/remotes
mkdir -p "$remotes" "$work/store"
dport=$(free_port)
"$(git --exec-path)/git-daemon" --export-all --enable=receive-pack --reuseaddr \
  --base-path="$remotes" --listen=127.0.0.1 --port="$dport" "$remotes" >"$work/daemon.log" 2>&1 &
pids+=($!)
wait_port "$dport" "git daemon"
export HYPHA_JWT_SECRET="far-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

# One server per latency over the same store (used one at a time), each with its relay as the
# public URL so that presigned transfers cross the same link.
declare -A hrelay drelay
for rtt in $RTTS; do
  half=$((rtt / 2))
  hport=$(free_port)
  relay "$hport" "$half" "hypha-$rtt"
  hr=$relay_port
  "$BIN/git-hypha" serve --root "$work/store" --listen "127.0.0.1:$hport" \
    --public-url "http://127.0.0.1:$hr" --auto-gc-packs 0 >"$work/serve-$rtt.out" 2>"$work/serve-$rtt.log" &
  pids+=($!)
  wait_port "$hport" "git hypha serve"
  hrelay[$rtt]=$hr
  relay "$dport" "$half" "daemon-$rtt"
  drelay[$rtt]=$relay_port
done
HYPHA_TOKEN=$("$BIN/git-hypha" token --workspace far --permission rw --expires-in 86400)
export HYPHA_TOKEN

url() { # url PEER RTT
  case $1 in
    hypha) echo "hypha::http://127.0.0.1:${hrelay[$2]}/far/repo" ;;
    daemon) echo "git://127.0.0.1:${drelay[$2]}/repo.git" ;;
  esac
}

# The history: 2,000 commits of small edits to 50 files.
src=$work/src
git init -q "$src"
python3 - "$src" <<'EOF'
import subprocess, sys
out = []
for i in range(2000):
    msg = "commit %d\n" % i
    body = ("file %d line %d\n" % (i % 50, i)) * 20
    out.append("commit refs/heads/main\nmark :%d\n" % (i + 1))
    out.append("committer B <b@example.com> %d +0000\n" % (1700000000 + i))
    out.append("data %d\n%s" % (len(msg), msg))
    if i:
        out.append("from :%d\n" % i)
    out.append("M 644 inline f%02d.txt\ndata %d\n%s\n" % (i % 50, len(body), body))
subprocess.run(["git", "-C", sys.argv[1], "fast-import", "--quiet"],
               input="".join(out).encode(), check=True)
EOF
git -C "$src" reset -q --hard main

git init -q --bare "$remotes/repo.git"
git -C "$src" push -q "$remotes/repo.git" main
"$BIN/git-hypha" create "hypha::http://127.0.0.1:${hrelay[${RTTS%% *}]}/far/repo" >/dev/null
git -C "$src" push -q "$(url hypha "${RTTS%% *}")" main

now() { date +%s.%N; }
results=$work/results.tsv
: >"$results"
timed() { # timed OP PEER RTT CMD...: one measured run
  local op=$1 peer=$2 rtt=$3 t0 t1
  shift 3
  t0=$(now)
  "$@" >/dev/null 2>"$work/last.err" || die "$op $peer $rtt failed: $(cat "$work/last.err")"
  t1=$(now)
  printf '%s\t%s\t%s\t%s\n' "$op" "$peer" "$rtt" "$(echo "$t1 - $t0" | bc)" >>"$results"
}

for run in $(seq "$RUNS"); do
  for rtt in $RTTS; do
    for peer in hypha daemon; do
      u=$(url "$peer" "$rtt")
      w=$work/w-$peer-$rtt-$run
      o=$work/o-$peer-$rtt-$run
      rm -rf "$w" "$o"
      timed clone "$peer" "$rtt" git clone -q "$u" "$w"
      git clone -q "$u" "$o"
      timed ls-remote "$peer" "$rtt" git ls-remote "$u"
      timed "no-op fetch" "$peer" "$rtt" git -C "$w" fetch -q origin
      echo "$run $rtt" >>"$w/f00.txt"
      git -C "$w" commit -qam "far $run $rtt"
      timed "push 1 commit" "$peer" "$rtt" git -C "$w" push -q origin main
      timed "fetch 1 commit" "$peer" "$rtt" git -C "$o" fetch -q origin
      rm -rf "$w" "$o"
    done
  done
done

python3 - "$results" "$RTTS" "$out" <<'EOF'
import statistics, sys
from collections import defaultdict
path, rtts, out = sys.argv[1], [int(r) for r in sys.argv[2].split()], sys.argv[3]
t = defaultdict(list)
for line in open(path):
    op, peer, rtt, secs = line.rstrip("\n").split("\t")
    t[(op, peer, int(rtt))].append(float(secs))
ops = ["ls-remote", "no-op fetch", "push 1 commit", "fetch 1 commit", "clone"]
base = rtts[0]
lines = ["| operation | " + " | ".join(
    f"{p} {r} ms" for r in rtts for p in ("hypha", "daemon")) + " | hypha/daemon at %d ms |" % rtts[-1]]
lines.append("|---|" + "---:|" * (2 * len(rtts) + 1))
for op in ops:
    cells = []
    for r in rtts:
        for p in ("hypha", "daemon"):
            m = statistics.median(t[(op, p, r)])
            cell = "%.2f s" % m
            if r != base:
                rt = (m - statistics.median(t[(op, p, base)])) / (r / 1000)
                cell += " (%.1f RT)" % rt
            cells.append(cell)
    last = rtts[-1]
    ratio = statistics.median(t[(op, "hypha", last)]) / statistics.median(t[(op, "daemon", last)])
    lines.append(f"| {op} | " + " | ".join(cells) + " | %.2fx |" % ratio)
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
EOF
