#!/usr/bin/env bash
# The server's requests to S3 for each operation of a user far from it, and how many of them
# wait for one another (issue 25): `git hypha serve` on moto behind bench/relay.py, which
# delays every request DELAY ms each way and logs it (RELAY_LOG). Requests that reach the
# relay within GAP ms of each other went out together (one "wave"); a wave waits for the
# answers of the one before. Against AWS S3 a wave costs one round trip (the connection is
# kept); moto closes every connection, so the relay's timings double and only the waves count.
#
#   bench/s3-waves.sh               (after `cargo build --release --bins`, or BIN=target/debug)
#   TAGS=1000 DELAY=20 GAP=15 bench/s3-waves.sh
#
# Prints one line per operation (ls-remote, no-op fetch, push of one commit, fetch of one
# commit) with requests and waves, then each wave's requests. The repository holds 20 commits
# and TAGS tags (two listing pages at 1,000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
TAGS=${TAGS:-1000}
DELAY=${DELAY:-20}
GAP=${GAP:-15}
export PATH=$BIN:$PATH
work=$(mktemp -d /tmp/hypha-s3-waves.XXXXXX)
env_file=$work/s3/env
"$root/scripts/s3-services.sh" start "$env_file" >"$work/s3.log" 2>&1
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  "$root/scripts/s3-services.sh" stop "$env_file" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
export RELAY_LOG=$work/requests.log
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
git -C "$src" push -q "$url" main
for i in $(seq "$TAGS"); do echo "create refs/tags/t$i main"; done | git -C "$src" update-ref --stdin
git -C "$src" push -q "$url" --tags
git clone -q "$url" "$work/w"
git clone -q "$url" "$work/o"
mark() { echo "=== $*" >>"$RELAY_LOG"; }
mark ls-remote
git ls-remote "$url" >/dev/null
mark no-op fetch
git -C "$work/w" fetch -q origin
echo x >>"$work/w/f1.txt"
git -C "$work/w" commit -qam one
mark push 1 commit
git -C "$work/w" push -q origin main
mark fetch 1 commit
git -C "$work/o" fetch -q origin
mark end
python3 - "$RELAY_LOG" "$GAP" <<'PY'
import re, sys
log, gap = sys.argv[1], float(sys.argv[2])
ops, op = {}, None
for line in open(log):
    if line.startswith("=== "):
        op = line[4:].strip()
        ops.setdefault(op, [])
    elif op and op != "end" and (op in ops):
        ms, _conn, rest = line.split(" ", 2)
        ops[op].append((float(ms), rest.strip()))
order = [o for o in ops if o != "end"]
print(f"{'operation':<16} {'S3 requests':>11} {'waves':>6}")
detail = []
for o in order:
    reqs = sorted(ops[o])
    waves = []
    for ms, what in reqs:
        if not waves or ms - waves[-1][-1][0] > gap:
            waves.append([])
        waves[-1].append((ms, what))
    print(f"{o:<16} {len(reqs):>11} {len(waves):>6}")
    detail.append((o, waves))
for o, waves in detail:
    print(f"\n{o}:")
    for i, w in enumerate(waves, 1):
        names = []
        for _, what in w:
            method, path = what.split(" ", 1)
            path = re.sub(r"\?.*x-id=\w+.*$", "", path)
            m = re.search(r"list-type=2.*?prefix=([^&]*)", path)
            if m:
                path = "LIST " + m.group(1).replace("%2F", "/").split(".git/", 1)[-1] + ("(next page)" if "continuation-token" in what else "")
                method = ""
            else:
                path = path.split("/.git/", 1)[-1] if "/.git/" in path else path.rsplit("/", 1)[-1]
            names.append((method + " " + path).strip())
        print(f"  {i:>2}. " + ", ".join(names))
PY
