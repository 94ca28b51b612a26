#!/usr/bin/env bash
# Round trips far from the server (issue 25): everyday operations against `git hypha serve`
# (local disk) and `git daemon`, each reached through bench/relay.py adding DELAY ms each way
# to every chunk (pipelined: bandwidth unchanged; a new connection costs one more round trip,
# as TCP's handshake does). The helper's presigned URLs point through the same relay.
#
#   bench/far.sh [OUT.md]        BIN=target/release  FAR_RUNS=3  FAR_RTT="0 100"
#                                FAR_S3_RTT="0 40" (empty: no S3 part)  FAR_TAGS=1000
#
# Round trips = (median time at RTT - median time at 0) / RTT, per operation and peer.
# The S3 part: `git hypha serve` on moto (scripts/s3-services.sh), the client next to the
# server, the store behind a relay adding FAR_S3_RTT (presigned URLs cross it too), a
# repository with FAR_TAGS tags; S3 round trips = the same difference / S3 RTT.
# Machines here are noisy: the ratios of medians are what to quote, not one time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
RUNS=${FAR_RUNS:-3}
RTTS=${FAR_RTT:-0 100}
S3_RTTS=${FAR_S3_RTT-0 40}
TAGS=${FAR_TAGS:-1000}
out=${1:-}
die() { echo "far: $*" >&2; exit 1; }
note() { echo "far: $*" >&2; }
[ -x "$BIN/git-remote-hypha" ] || die "no $BIN/git-remote-hypha (cargo build --release)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "${s3env:-}" ] || "$root/scripts/s3-services.sh" stop "$s3env" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  [ -n "${FAR_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
# The S3 servers' tools stay in the user's cache, not under the scratch HOME.
export HYPHA_TOOLS_DIR=${HYPHA_TOOLS_DIR:-$HOME/.cache/hypha-git}
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

# The S3 part: one server per S3 latency over the same bucket prefix.
declare -A s3url
if [ -n "$S3_RTTS" ]; then
  s3env=$work/s3/env
  "$root/scripts/s3-services.sh" start "$s3env" >"$work/s3.log" 2>&1 || die "S3 servers: $(tail -3 "$work/s3.log")"
  set -a
  # shellcheck disable=SC1090
  . "$s3env"
  set +a
  moto_port=${HYPHA_TEST_MOTO_ENDPOINT##*:}
  for rtt in $S3_RTTS; do
    relay "$moto_port" "$((rtt / 2))" "s3-$rtt"
    sport=$(free_port)
    "$BIN/git-hypha" serve --root "$work/unused" --listen "127.0.0.1:$sport" \
      --s3-endpoint "http://127.0.0.1:$relay_port" --s3-bucket "$HYPHA_TEST_MOTO_BUCKET" \
      --s3-prefix far --s3-path-style --auto-gc-packs 0 >"$work/serve-s3-$rtt.out" 2>"$work/serve-s3-$rtt.log" &
    pids+=($!)
    wait_port "$sport" "git hypha serve on S3"
    s3url[$rtt]="hypha::http://127.0.0.1:$sport/far/s3repo"
  done
  first=${S3_RTTS%% *}
  "$BIN/git-hypha" create "${s3url[$first]}" >/dev/null
  git -C "$src" push -q "${s3url[$first]}" main
  for i in $(seq "$TAGS"); do echo "create refs/tags/t$i main"; done | git -C "$src" update-ref --stdin
  git -C "$src" push -q "${s3url[$first]}" --tags
  for run in $(seq "$RUNS"); do
    for rtt in $S3_RTTS; do
      u=${s3url[$rtt]}
      w=$work/s3w-$rtt-$run
      o=$work/s3o-$rtt-$run
      rm -rf "$w" "$o"
      git clone -q "$u" "$w"
      git clone -q "$u" "$o"
      timed "S3 ls-remote" hypha "$rtt" git ls-remote "$u"
      timed "S3 no-op fetch" hypha "$rtt" git -C "$w" fetch -q origin
      echo "$run $rtt" >>"$w/f00.txt"
      git -C "$w" commit -qam "s3 $run $rtt"
      timed "S3 push 1 commit" hypha "$rtt" git -C "$w" push -q origin main
      timed "S3 fetch 1 commit" hypha "$rtt" git -C "$o" fetch -q origin
      rm -rf "$w" "$o"
    done
  done
fi

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
s3 = sorted({r for (op, p, r) in t if op.startswith("S3 ")})
if s3:
    lines.append("")
    lines.append("| operation (client next to the server) | " + " | ".join(
        f"S3 RTT {r} ms" for r in s3) + " |")
    lines.append("|---|" + "---:|" * len(s3))
    for op in ["S3 ls-remote", "S3 no-op fetch", "S3 push 1 commit", "S3 fetch 1 commit"]:
        cells = []
        for r in s3:
            m = statistics.median(t[(op, "hypha", r)])
            cell = "%.2f s" % m
            if r != s3[0]:
                rt = (m - statistics.median(t[(op, "hypha", s3[0])])) / (r / 1000)
                cell += " (%.1f S3 RT)" % rt
            cells.append(cell)
        lines.append(f"| {op[3:]} | " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
EOF
