#!/usr/bin/env bash
# The first ref listing after a server starts (repo::ref_snapshot): `git hypha serve` on moto
# with a repository of TAGS tags, stopped and started again before each `git ls-remote`;
# prints, per start, the store requests the listing cost (the server's own
# hypha_store_requests_total, from --metrics-listen) and its time. The push of TAGS refs
# writes the ref snapshot (since 2026-12-08; before, the first start after the push read every
# ref and wrote it), and every start reads the snapshot instead of the refs.
#
#   bench/cold-listing.sh           (after `cargo build --release --bins`, or BIN=target/debug)
#   TAGS=10000 STARTS=3 bench/cold-listing.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
TAGS=${TAGS:-1000}
STARTS=${STARTS:-3}
export PATH=$BIN:$PATH
work=$(mktemp -d /tmp/hypha-cold-listing.XXXXXX)
# shellcheck source=bench/env.sh
. "$root/bench/env.sh"
bench_s3_start "$work"
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  bench_s3_stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT
export HYPHA_JWT_SECRET=cold-listing-bench-secret-0123456789
export HYPHA_TOKEN
HYPHA_TOKEN=$(git-hypha token --workspace ws --permission a)
export GIT_CONFIG_NOSYSTEM=1 HOME=$work
git config --global user.name bench && git config --global user.email bench@example.com

start() {
  git-hypha serve --listen 127.0.0.1:0 --s3-endpoint "$HYPHA_TEST_MOTO_ENDPOINT" \
    --s3-bucket "$HYPHA_TEST_MOTO_BUCKET" --s3-path-style --metrics-listen 127.0.0.1:0 \
    >"$work/out" 2>>"$work/serve.log" &
  pid=$!
  for _ in $(seq 300); do grep -q "^metrics on" "$work/out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^listening on //p' "$work/out")
  metrics=$(sed -n 's/^metrics on //p' "$work/out")
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
requests() { curl -s "$metrics" | awk '/^hypha_store_requests_total/ {n += $2} END {print n + 0}'; }

start
git-hypha create "hypha::$url/ws/cold" >/dev/null
git init -q -b main "$work/src"
git -C "$work/src" commit -q --allow-empty -m one
head=$(git -C "$work/src" rev-parse HEAD)
seq "$TAGS" | awk -v h="$head" '{print "create refs/tags/t" $1 " " h}' | git -C "$work/src" update-ref --stdin
git -C "$work/src" push -q "hypha::$url/ws/cold" main 'refs/tags/*:refs/tags/*'
sleep 1 # the push writes the ref snapshot after its answer
stop
for n in $(seq "$STARTS"); do
  start
  before=$(requests)
  t0=$(date +%s%N)
  listed=$(git ls-remote "hypha::$url/ws/cold" | wc -l)
  t1=$(date +%s%N)
  after=$(requests)
  printf 'start %d: ls-remote of %d refs, %d store requests, %d ms\n' \
    "$n" "$listed" "$((after - before))" "$(((t1 - t0) / 1000000))"
  # The snapshot is written after the answer.
  sleep 1
  stop
done
