#!/usr/bin/env bash
# Thin pushes (docs/design.md §15): one-line edit of a generated CSV of MIB MiB, pushed through
# the helper to `git hypha serve` on local disk. Prints the bytes the push uploaded (thin pack
# size from the server's access log; the PUTs), the client's peak RSS (/usr/bin/time -v over
# git, pack-objects, index-pack and the helper), the server's VmHWM before and after, and the
# time. Extra arguments go to git as options (e.g. -c core.bigFileThreshold=1g).
#
# Usage: bench/thin-push.sh MIB [git options]   (binaries from $BIN, default target/debug)
set -uo pipefail
cd "$(dirname "$0")/.."
mib=$1; shift
BIN=$(cd "${BIN:-target/debug}" && pwd)
WORK=${THIN_BENCH_DIR:-/tmp/hypha-thin-bench}
export PATH=$BIN:$PATH GIT_CONFIG_NOSYSTEM=1 HOME=$WORK HYPHA_JWT_SECRET=thin-bench-secret-thin-bench-secret
mkdir -p "$WORK"
repo=$WORK/repo$mib
if [ ! -d "$repo" ]; then
  git init -q "$repo"
  python3 - "$repo/data.csv" "$mib" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
random.seed(7)
with open(path, "w") as f:
    n = i = 0
    while n < mib << 20:
        line = f"{i},{random.randint(0, 10**9)},{random.random():.6f},name{random.randint(0, 99999)},{'abcdefgh'[i % 8] * 5}\n"
        f.write(line); n += len(line); i += 1
PY
  git -C "$repo" add data.csv && git -C "$repo" -c user.name=a -c user.email=a@b commit -q -m base
  sed -i '1000s/.*/999,edited,line,here,x/' "$repo/data.csv"
  git -C "$repo" -c user.name=a -c user.email=a@b commit -qam edit
fi
W=$(mktemp -d "$WORK/run-XXXX")
"$BIN/git-hypha" serve --root "$W/srv" --listen 127.0.0.1:0 >"$W/serve.out" 2>"$W/serve.err" &
spid=$!
trap 'kill $spid; rm -rf "$W"' EXIT
for _ in $(seq 100); do grep -q listening "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$W/serve.out" | head -1)
export HYPHA_TOKEN=$("$BIN/git-hypha" token --workspace ws --permission rw)
"$BIN/git-hypha" create "hypha::$url/ws/d" >/dev/null
git -C "$repo" "$@" push -q "hypha::$url/ws/d" HEAD~1:refs/heads/main
before=$(awk '/VmHWM/ {print $2}' /proc/$spid/status)
out=$( { /usr/bin/time -v git -C "$repo" "$@" push -v "hypha::$url/ws/d" HEAD:refs/heads/main; } 2>&1 )
after=$(awk '/VmHWM/ {print $2}' /proc/$spid/status)
echo "file=${mib}MiB git-options=[$*]"
echo "time=$(echo "$out" | awk '/Elapsed/ {print $8}') client_peak_rss_kb=$(echo "$out" | awk '/Maximum resident/ {print $6}') server_vmhwm_kb=$before->$after"
grep -E 'fix-thin|^PUT' "$W/serve.err" | tail -4
echo "$out" | grep -E '^(hypha|error|fatal)'
