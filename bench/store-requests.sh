#!/usr/bin/env bash
# Store requests per operation, from the server's own counters (issue 24): `git hypha serve
# --metrics-listen`, scraped before and after each operation of bench/s3-waves.sh (ls-remote,
# no-op fetch, push of one commit, fetch of one commit, clone), the deltas of
# hypha_store_requests_total by operation. Where s3-waves.sh counts requests at a relay in
# front of moto (and the waves they make), this counts them at the server, on any store.
#
#   bench/store-requests.sh                    (after `cargo build --release --bins`, or BIN=target/debug)
#   STORE=s3 TAGS=1000 bench/store-requests.sh (moto, started by scripts/s3-services.sh)
#   SERVE_ARGS="--quota-stored-bytes 1000000000" bench/store-requests.sh   (more serve flags:
#                                                what the limits and quotas cost, issue 24)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
TAGS=${TAGS:-1000}
STORE=${STORE:-disk}
export PATH=$BIN:$PATH
work=$(mktemp -d /tmp/hypha-store-requests.XXXXXX)
pids=()
env_file=$work/s3/env
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  if [ "$STORE" = s3 ]; then "$root/scripts/s3-services.sh" stop "$env_file" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
store_args=(--root "$work/store")
if [ "$STORE" = s3 ]; then
  "$root/scripts/s3-services.sh" start "$env_file" >"$work/s3.log" 2>&1
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
  store_args=(--s3-endpoint "$HYPHA_TEST_MOTO_ENDPOINT" --s3-bucket "$HYPHA_TEST_MOTO_BUCKET"
    --s3-prefix "requests-$$" --s3-path-style)
fi
export HYPHA_JWT_SECRET=store-requests-secret
HYPHA_TOKEN=$(git-hypha token --workspace bench)
export HYPHA_TOKEN
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
git-hypha serve "${store_args[@]}" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --auto-gc-packs 0 ${SERVE_ARGS:-} >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^metrics on' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^listening on //p' "$work/serve.out")
metrics=$(sed -n 's/^metrics on //p' "$work/serve.out")
url="hypha::$api/bench/repo"
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

# The scrape once two in a row agree (work after an answer, such as the webhooks' read).
scrape() {
  local last now
  last=$(curl -fsS "$metrics" | grep '^hypha_store_requests_total' || true)
  while :; do
    sleep 0.3
    now=$(curl -fsS "$metrics" | grep '^hypha_store_requests_total' || true)
    [ "$now" = "$last" ] && break
    last=$now
  done
  printf '%s\n' "$now"
}
: >"$work/deltas"
measure() {
  local name=$1
  shift
  scrape >"$work/before"
  "$@"
  scrape >"$work/after"
  python3 - "$name" "$work/before" "$work/after" >>"$work/deltas" <<'PY'
import re, sys
name, before, after = sys.argv[1:]
def read(path):
    out = {}
    for line in open(path):
        m = re.match(r'hypha_store_requests_total\{operation="(\w+)"\} (\d+)', line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
b, a = read(before), read(after)
print(name + "\t" + " ".join(f"{op}={a[op] - b.get(op, 0)}" for op in sorted(a) if a[op] != b.get(op, 0)))
PY
}
measure "ls-remote" git ls-remote "$url" >/dev/null
measure "no-op fetch" git -C "$work/w" fetch -q origin
echo x >>"$work/w/f1.txt"
git -C "$work/w" commit -qam one
measure "push 1 commit" git -C "$work/w" push -q origin main
measure "fetch 1 commit" git -C "$work/o" fetch -q origin
measure "clone" git clone -q "$url" "$work/c"

echo "store requests per operation ($STORE, $TAGS tags${SERVE_ARGS:+, $SERVE_ARGS}), from hypha_store_requests_total:"
python3 - "$work/deltas" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
ops = ["GET", "HEAD", "LIST", "PUT", "DELETE"]
print(f"| operation | {' | '.join(ops)} | all |")
print("|---|" + "---:|" * (len(ops) + 1))
for name, counts in rows:
    c = dict(kv.split("=") for kv in counts.split()) if counts else {}
    total = sum(int(v) for v in c.values())
    print(f"| {name} | " + " | ".join(c.get(op, "0") for op in ops) + f" | {total} |")
PY
