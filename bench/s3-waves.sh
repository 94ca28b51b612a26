#!/usr/bin/env bash
# The server's requests to S3 for each operation of a user far from it, and how many of them
# wait for one another (issue 25): `git hypha serve` on moto behind bench/relay.py, which
# delays every request DELAY ms each way and logs it and the first bytes of its answer
# (RELAY_LOG, RELAY_LOG_ANSWERS). A request's wave is one more than the highest wave among the
# requests whose answers had reached the server when it went out: the length of the chain of
# answers it may have waited for (an upper bound: a request sent late for another reason
# counts as waiting). Against AWS S3 a wave costs one round trip (the connection is kept);
# moto closes every connection and answers one request at a time, so the relay's timings say
# nothing and only the waves count (requests held back by a concurrency limit wait for an
# answer too, so a limit shows as waves).
#
#   bench/s3-waves.sh               (after `cargo build --release --bins`, or BIN=target/debug)
#   TAGS=1000 DELAY=20 MIRROR=1 CSV_MIB=8 KEEP_LOG=FILE bench/s3-waves.sh
#
# Prints one line per operation (ls-remote, no-op fetch, push of one commit, fetch of one
# commit, clone, mirror push, ls-remote of the mirror, thin push) with requests and waves,
# then each wave's requests.
# The repository holds 20 commits and TAGS tags (two listing pages at 1,000). The mirror push
# is `git push --mirror` of those 20 commits with 1,500 refs on them (bench/gen.py mirror, as
# bench/far.sh's) into a new empty remote (MIRROR=0 leaves it out); the thin push is one
# commit rewriting 3 rows of a CSV_MIB CSV (bench/gen.py csvbig) that the remote has.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
TAGS=${TAGS:-1000}
DELAY=${DELAY:-20}
export PATH=$BIN:$PATH
work=$(mktemp -d /tmp/hypha-s3-waves.XXXXXX)
# shellcheck source=bench/env.sh
. "$root/bench/env.sh"
bench_s3_start "$work"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  if [ -n "${KEEP_LOG:-}" ]; then cp "$RELAY_LOG" "$KEEP_LOG" && cp "$work/serve.log" "$KEEP_LOG.serve"; fi
  bench_s3_stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT
export RELAY_LOG=$work/requests.log RELAY_LOG_ANSWERS=1
python3 "$root/bench/relay.py" "${HYPHA_TEST_MOTO_ENDPOINT##*:}" "$work/ports" "$DELAY" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/ports" ] && break; sleep 0.1; done
read -r relay_port _ <"$work/ports"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HYPHA_JWT_SECRET=s3-waves-secret
HYPHA_TOKEN=$(git-hypha token --workspace far)
export HYPHA_TOKEN
git-hypha serve --root "$work/unused" --listen "127.0.0.1:$port" \
  --s3-endpoint "http://127.0.0.1:$relay_port" --s3-bucket "$HYPHA_TEST_MOTO_BUCKET" \
  --s3-prefix waves --s3-path-style --auto-gc-packs 0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url="hypha::http://127.0.0.1:$port/far/repo"
src=$work/src
git init -q -b main "$src"
for i in $(seq 20); do
  echo "$i" >"$src/f$i.txt"
  git -C "$src" add -A
  git -C "$src" commit -qm "c$i"
done
git-hypha create "$url" >/dev/null 2>&1
MIRROR=${MIRROR:-1}
CSV_MIB=${CSV_MIB:-8}
if [ "$MIRROR" = 1 ]; then
  mirror=$work/mirror.git
  # Before the tags: main and 1,500 refs, as bench/far.sh's.
  git clone -q --bare --no-local "$src" "$mirror"
  git -C "$mirror" rev-list --reverse main | python3 "$root/bench/gen.py" mirror \
    | git -C "$mirror" -c fastimport.unpackLimit=1 fast-import --quiet
  git -C "$mirror" -c repack.writeBitmaps=false repack -adq
  git-hypha create "${url%/repo}/mirror" >/dev/null 2>&1
fi
git -C "$src" push -q "$url" main
for i in $(seq "$TAGS"); do echo "create refs/tags/t$i main"; done | git -C "$src" update-ref --stdin
git -C "$src" push -q "$url" --tags
git clone -q "$url" "$work/w"
git clone -q "$url" "$work/o"
csv=$work/csv
git init -q -b main "$csv"
BENCH_CSVBIG_MIB=$CSV_MIB python3 "$root/bench/gen.py" csvbig | git -C "$csv" fast-import --quiet
git -C "$csv" reset -q --hard main
git-hypha create "${url%/repo}/csv" >/dev/null 2>&1
git -C "$csv" push -q "${url%/repo}/csv" main
python3 - "$csv/data.csv" <<'EOF'
import random, sys
path = sys.argv[1]
rows = open(path, "rb").read().split(b"\n")
rng = random.Random(25)
for _ in range(3):
    i = rng.randrange(1, len(rows) - 1)
    rows[i] = b"%d,2025-01-01T00:00:00Z,sensor-%03d,%.6f" % (i, rng.randint(0, 999), rng.random())
open(path, "wb").write(b"\n".join(rows))
EOF
git -C "$csv" commit -qam "edit rows"
mark() { echo "=== $*" >>"$RELAY_LOG"; }
mark ls-remote
# From a clone: the helper of a session outside a repository (or in a linked worktree,
# whose objects it does not see) takes itself for a clone and has the listing carry packs.
git -C "$work/w" ls-remote "$url" >/dev/null
mark no-op fetch
git -C "$work/w" fetch -q origin
echo x >>"$work/w/f1.txt"
git -C "$work/w" commit -qam one
mark push 1 commit
git -C "$work/w" push -q origin main
mark fetch 1 commit
git -C "$work/o" fetch -q origin
mark clone
git clone -q "$url" "$work/c"
if [ "$MIRROR" = 1 ]; then
  mark mirror push
  git -C "$mirror" push -q --mirror "${url%/repo}/mirror"
fi
if [ "$MIRROR" = 1 ]; then
  mark ls-remote of the mirror
  want=$(git -C "$mirror" for-each-ref | wc -l)
  got=$(git -C "$work/w" ls-remote "${url%/repo}/mirror" 'refs/*' | grep -vc '\^{}$' || true)
  [ "$want" = "$got" ] || { echo "s3-waves: the mirror push left $got refs of $want" >&2; exit 1; }
fi
mark thin push
git -C "$csv" push -q "${url%/repo}/csv" main
mark end
python3 - "$RELAY_LOG" "$DELAY" <<'PY'
import re, sys
from collections import defaultdict, deque
log, delay = sys.argv[1], float(sys.argv[2])
ops, op = {}, None
for line in open(log):
    if line.startswith("=== "):
        op = line[4:].strip()
        ops.setdefault(op, [])
    elif op and op != "end":
        ms, conn, rest = line.split(" ", 2)
        ops[op].append((float(ms), conn, rest.strip()))
order = [o for o in ops if o != "end"]


def waves(events):
    """Each request's wave: 1 + the highest wave among the requests whose answer had reached
    the server when it went out (an answer reaches the server `delay` after the relay saw
    it). Answers pair with their connection's requests in order."""
    reqs, pending = [], defaultdict(deque)
    for ms, conn, what in sorted(events, key=lambda e: e[0]):
        if what == "ANSWER":
            if pending[conn]:
                reqs[pending[conn].popleft()][2] = ms + delay
        else:
            pending[conn].append(len(reqs))
            reqs.append([ms, what, float("inf"), 0])
    by_answer = sorted(range(len(reqs)), key=lambda i: reqs[i][2])
    seen, best = 0, 0
    for r in reqs:  # in order of sending
        while seen < len(by_answer) and reqs[by_answer[seen]][2] <= r[0]:
            best = max(best, reqs[by_answer[seen]][3])
            seen += 1
        r[3] = best + 1
    grouped = defaultdict(list)
    for sent, what, _, wave in reqs:
        grouped[wave].append((sent, what))
    return [grouped[w] for w in sorted(grouped)]


print(f"{'operation':<24} {'S3 requests':>11} {'waves':>6}")
detail = []
for o in order:
    ws = waves(ops[o])
    print(f"{o:<24} {sum(map(len, ws)):>11} {len(ws):>6}")
    detail.append((o, ws))
for o, ws in detail:
    print(f"\n{o}:")
    for i, w in enumerate(ws, 1):
        names = []
        for _, what in w:
            method, path = what.split(" ", 1)
            path = re.sub(r"\?.*x-id=\w+.*$", "", path)
            m = re.search(r"list-type=2.*?prefix=([^&]*)", path)
            if m:
                path = "LIST " + m.group(1).replace("%2F", "/").split(".git/", 1)[-1] + ("(next page)" if "continuation-token" in what or "start-after" in what else "")
                method = ""
            else:
                path = path.split("/.git/", 1)[-1] if "/.git/" in path else path.rsplit("/", 1)[-1]
            names.append((method + " " + path).strip())
        # Many requests of one kind (a ref each) print once with their count.
        counts = {}
        for n in names:
            method, _, path = n.rpartition(" ")
            if path.startswith("refs/") and len(w) > 6:
                n = (method + " refs/*").strip()
            counts[n] = counts.get(n, 0) + 1
        print(f"  {i:>2}. " + ", ".join(n if c == 1 else f"{n} x{c}" for n, c in counts.items()))
PY
