#!/usr/bin/env bash
# Push and clone round trip against `git hypha serve` on its embedded local-disk store, with the
# installed binaries (first on PATH). Prints each step; exits non-zero if anything differs.
# ROUNDTRIP_REMOTE=hypha::http://HOST:PORT/WS/ALIAS (with HYPHA_TOKEN in the environment) takes
# that server instead of starting one, e.g. Hypha with the plugin (tests/install/run.sh).
set -euo pipefail

work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "== $(git --version) ($(command -v git))"
export HYPHA_JWT_SECRET="roundtrip-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
export GIT_CONFIG_NOSYSTEM=1 HOME="$work/home"
mkdir -p "$HOME"
git config --global user.name "Round Trip"
git config --global user.email "roundtrip@example.com"
git config --global init.defaultBranch main

if [ -n "${ROUNDTRIP_REMOTE:-}" ]; then
  : "${HYPHA_TOKEN:?ROUNDTRIP_REMOTE needs HYPHA_TOKEN}"
  remote=$ROUNDTRIP_REMOTE
else
  echo "== git hypha serve --root $work/store --listen 127.0.0.1:0"
  git hypha serve --root "$work/store" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on //p' "$work/serve.out" | head -n1)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server did not start:"; cat "$work/serve.log"; exit 1; }
  echo "   $url"

  HYPHA_TOKEN=$(git hypha token --workspace demo --permission rw)
  export HYPHA_TOKEN
  remote="hypha::$url/demo/roundtrip"
fi
echo "== git hypha create $remote"
git hypha create "$remote"

echo "== make a repository: 3 branches, tags, 50 commits"
git init -q "$work/src"
cd "$work/src"
for i in $(seq 50); do
  echo "line $i" >>file.txt
  git add file.txt
  git commit -qm "commit $i"
done
git tag v1
git tag -a v2 -m "annotated"
git branch topic HEAD~10
git branch feature HEAD~20

echo "== git push --all && git push --tags"
git remote add origin "$remote"
git push -q origin --all
git push -q origin --tags

echo "== git clone"
git clone -q --mirror "$remote" "$work/clone.git"
git -C "$work/clone.git" fsck --full --no-progress
if diff <(git for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags) \
        <(git -C "$work/clone.git" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags); then
  echo "round trip OK: $(git for-each-ref refs/heads refs/tags | wc -l) refs identical, fsck clean"
else
  echo "round trip FAILED: refs differ"; exit 1
fi
