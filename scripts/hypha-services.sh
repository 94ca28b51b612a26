#!/usr/bin/env bash
# A real Hypha server (PyPI hypha 0.21.137) with the git-remote-hypha plugin, for the tests in
# tests/hypha and the e2e suite in Hypha mode (issue 6). Offline apart from PyPI and crates.io;
# see HYPHA.md §6.
#
# Usage: scripts/hypha-services.sh start|stop [ENV_FILE]
#        scripts/hypha-services.sh install-venv   (only the venv below; test.sh runs it in the
#                                                  background while it builds)
#
# Hypha's S3 is s3s-fs by default (HYPHA_TEST_S3=s3s-fs): it checks SigV4 signatures and expiry
# of the presigned URLs the plugin hands out, and keeps every key as a file, so tests can look
# at (and damage) what is stored. HYPHA_TEST_S3=moto runs Hypha on moto instead (conditional
# writes applied atomically; no signature checks, nothing on disk).
#
# start installs what is missing into a venv ($HYPHA_VENV, default
# $HYPHA_TOOLS_DIR/hypha-venv, HYPHA_TOOLS_DIR defaulting to ~/.cache/hypha-git) and s3s-fs
# (as scripts/s3-services.sh does), starts the S3 server and Hypha on free 127.0.0.1 ports with
# `--startup-functions hypha_git_remote:hypha_startup` (hypha-plugin/ on PYTHONPATH), mints
# tokens with the server's JWT secret, and writes ENV_FILE (default target/hypha-services/env)
# for `set -a; . ENV_FILE; set +a`:
#   HYPHA_TEST_SERVER      http://127.0.0.1:PORT
#   HYPHA_TEST_JWT_SECRET  Hypha's JWT_SECRET (the e2e harness mints Hypha tokens with it)
#   HYPHA_TEST_WS          workspace of user 1; HYPHA_TEST_TOKEN its admin token
#   HYPHA_TEST_WS2         workspace of user 2; HYPHA_TEST_TOKEN2 (no grant on HYPHA_TEST_WS)
#   HYPHA_TEST_S3_URL      Hypha's S3 endpoint; HYPHA_TEST_BUCKET its bucket;
#   HYPHA_TEST_S3_KEY, HYPHA_TEST_S3_SECRET  its credentials
#   HYPHA_TEST_STORE_DIR   s3s-fs only: the directory holding the bucket's objects
#   HYPHA_TEST_VENV        the venv (its python runs the pytest suite)
#   HYPHA_PID, S3_PID
# stop kills exactly those two process ids.
#
# HYPHA_TEST_PLUGIN=none starts a stock Hypha instead: no startup function, so no remote API
# v1, only Hypha's own smart HTTP (issue 16: the helper's fallback, `git hypha create` and
# `login` against any Hypha). tests/hypha/run.sh starts one beside the plugin instance.
#
# The plugin's child `git hypha serve --plugin` is $HYPHA_GIT_BIN, by default the one in
# target/debug (target/release if only that is built). HYPHA_PYTHON=/path/to/python runs
# Hypha with that Python instead, as an operator who pip-installed our wheel does
# (tests/install/run.sh): the plugin module and git-hypha then come from that Python's
# environment alone, so neither PYTHONPATH nor HYPHA_GIT_BIN is passed to Hypha (the plugin
# finds git-hypha beside sys.executable). That environment must import hypha.
set -euo pipefail

cd "$(dirname "$0")/.."
ACTION=${1:-}
ENV_FILE=${2:-target/hypha-services/env}
STATE_DIR=$(dirname "$ENV_FILE")
TOOLS=${HYPHA_TOOLS_DIR:-$HOME/.cache/hypha-git}
VENV=${HYPHA_VENV:-$TOOLS/hypha-venv}
PY=$VENV/bin/python
S3S_FS=$TOOLS/s3s-fs/bin/s3s-fs
S3S_FS_VERSION=0.14.1 # as scripts/s3-services.sh
S3_KIND=${HYPHA_TEST_S3:-s3s-fs}
PLUGIN=${HYPHA_TEST_PLUGIN:-hypha_git_remote}
BUCKET=hypha-ws
# Pins from HYPHA.md §6: newer sqlmodel breaks the server's startup.
PACKAGES=("hypha[s3]==0.21.137" "moto[server]==5.2.5" "sqlmodel==0.0.24" "sqlalchemy<2.1" "pytest")

log() { echo "hypha-services: $*" >&2; }

install_tools() {
  if [[ $S3_KIND == s3s-fs && ! -x $S3S_FS ]]; then
    log "installing s3s-fs $S3S_FS_VERSION (about 1.5 min)"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary \
      --root "$TOOLS/s3s-fs" --quiet
  fi
  install_venv
}

install_venv() {
  if [[ -x $PY ]] && "$PY" -c 'import hypha, moto, pytest' 2>/dev/null; then
    return 0
  fi
  log "installing hypha 0.21.137, moto and pytest into $VENV (about 4 min)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID NAME LOG SECONDS: until URL answers at all, or the process died.
wait_http() {
  local url=$1 pid=$2 name=$3 logfile=$4 secs=$5
  for _ in $(seq 1 $((secs * 10))); do
    if curl -s -o /dev/null --max-time 1 "$url"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited at startup; the end of its log:"
      tail -50 "$logfile" >&2
      return 1
    fi
    sleep 0.1
  done
  log "$name did not answer at $url within $secs s; the end of its log:"
  tail -50 "$logfile" >&2
  return 1
}

start() {
  if [[ -f $ENV_FILE ]]; then
    log "$ENV_FILE exists: stopping what it names first"
    stop
  fi
  # The database, the logs and the store live in the env file's directory: a second Hypha
  # there would share them (its plugin then refuses its own child's lease asks).
  local other pid
  for other in "$STATE_DIR"/*; do
    [[ -f $other && ! $other -ef $ENV_FILE && $(head -c 10 "$other") == HYPHA_PID= ]] || continue
    pid=$(sed -n 's/^HYPHA_PID=//p' "$other")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      log "$other names a running Hypha (pid $pid) that keeps its state in $STATE_DIR: give $ENV_FILE a directory of its own"
      exit 1
    fi
  done
  install_tools
  mkdir -p "$STATE_DIR"
  local secret s3_port port s3_pid store_dir=""
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  local key=hypha-test s3_secret
  s3_secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
  s3_port=$(free_port)
  case $S3_KIND in
    s3s-fs)
      # s3s-fs keeps a bucket as a directory of the same name, each key as a file below it.
      rm -rf "$STATE_DIR/s3-data"
      mkdir -p "$STATE_DIR/s3-data/$BUCKET"
      store_dir=$(cd "$STATE_DIR/s3-data/$BUCKET" && pwd)
      "$S3S_FS" --host 127.0.0.1 --port "$s3_port" --access-key "$key" --secret-key "$s3_secret" \
        "$STATE_DIR/s3-data" >"$STATE_DIR/s3.log" 2>&1 &
      ;;
    moto)
      "$VENV/bin/python" scripts/moto_server.py 127.0.0.1 "$s3_port" >"$STATE_DIR/s3.log" 2>&1 &
      ;;
    *)
      log "HYPHA_TEST_S3 must be s3s-fs or moto, not $S3_KIND"
      return 2
      ;;
  esac
  s3_pid=$!
  port=$(free_port)
  # A fresh SQLite file per start, so no state leaks between runs.
  rm -f "$STATE_DIR/hypha.db"
  local hypha_py=$PY plugin_args=()
  [[ $PLUGIN == none ]] || plugin_args=(--startup-functions "$PLUGIN:hypha_startup")
  if [[ -n ${HYPHA_PYTHON:-} ]]; then
    # Absolute, since Hypha starts in $STATE_DIR; not resolved, so sys.executable stays in
    # the environment's bin/ where the wheel put git-hypha.
    hypha_py=$(cd "$(dirname "$HYPHA_PYTHON")" && pwd)/$(basename "$HYPHA_PYTHON")
  fi
  (
    cd "$STATE_DIR"
    export JWT_SECRET=$secret
    # The webhook tests (tests/hypha/test_plugin_hooks.py) send to a receiver on loopback,
    # which the plugin's child refuses unless the operator allows it.
    export HYPHA_WEBHOOK_ALLOW=${HYPHA_WEBHOOK_ALLOW:-127.0.0.1}
    if [[ -n ${HYPHA_PYTHON:-} ]]; then
      unset PYTHONPATH HYPHA_GIT_BIN
    else
      export PYTHONPATH=$OLDPWD/hypha-plugin${PYTHONPATH:+:$PYTHONPATH}
      # The plugin runs `git hypha serve --plugin` as its child: the one built here, as the
      # tests use target/debug's helper (release if only that is built).
      bin_dir=$OLDPWD/target/debug
      [[ -x $bin_dir/git-hypha || ! -x $OLDPWD/target/release/git-hypha ]] || bin_dir=$OLDPWD/target/release
      export HYPHA_GIT_BIN=${HYPHA_GIT_BIN:-$bin_dir/git-hypha}
    fi
    exec "$hypha_py" -m hypha.server --host 127.0.0.1 --port "$port" \
      --database-uri "sqlite+aiosqlite:///$PWD/hypha.db" \
      --enable-s3 --endpoint-url "http://127.0.0.1:$s3_port" \
      --access-key-id "$key" --secret-access-key "$s3_secret" --region-name us-east-1 \
      --workspace-bucket "$BUCKET" --public-base-url "http://127.0.0.1:$port" \
      ${plugin_args[@]+"${plugin_args[@]}"}
  ) >"$STATE_DIR/hypha.log" 2>&1 &
  local hypha_pid=$!
  {
    echo "HYPHA_PID=$hypha_pid"
    echo "S3_PID=$s3_pid"
  } >"$ENV_FILE"
  chmod 600 "$ENV_FILE" # it gets the JWT secret and tokens

  wait_http "http://127.0.0.1:$s3_port/" "$s3_pid" "$S3_KIND" "$STATE_DIR/s3.log" 30
  wait_http "http://127.0.0.1:$port/health/readiness" "$hypha_pid" hypha "$STATE_DIR/hypha.log" 120

  # Tokens signed with the server's secret (HYPHA.md §6). `current_workspace` makes them
  # workspace-scoped, which artifact creation needs.
  local tokens
  tokens=$(JWT_SECRET=$secret "$PY" - <<'EOF'
import asyncio
from hypha.core import UserInfo, UserPermission
from hypha.core.auth import create_scope, generate_auth_token

async def mint(uid):
    ws = f"ws-user-{uid}"
    user = UserInfo(id=uid, is_anonymous=False, email=f"{uid}@example.com", parent=None,
                    roles=[], scope=create_scope(workspaces={ws: UserPermission.admin},
                                                 current_workspace=ws), expires_at=None)
    return ws, await generate_auth_token(user, 18000)

async def main():
    for i, uid in enumerate(["git-tester", "git-other"]):
        ws, tok = await mint(uid)
        suffix = "" if i == 0 else "2"
        print(f"HYPHA_TEST_WS{suffix}={ws}")
        print(f"HYPHA_TEST_TOKEN{suffix}={tok}")

asyncio.run(main())
EOF
  )
  {
    echo "HYPHA_TEST_SERVER=http://127.0.0.1:$port"
    echo "HYPHA_TEST_JWT_SECRET=$secret"
    echo "$tokens"
    echo "HYPHA_TEST_S3_URL=http://127.0.0.1:$s3_port"
    echo "HYPHA_TEST_S3_KEY=$key"
    echo "HYPHA_TEST_S3_SECRET=$s3_secret"
    echo "HYPHA_TEST_BUCKET=$BUCKET"
    echo "HYPHA_TEST_STORE_DIR=$store_dir"
    echo "HYPHA_TEST_VENV=$VENV"
  } >>"$ENV_FILE"
  chmod 600 "$ENV_FILE"
  log "hypha on 127.0.0.1:$port (pid $hypha_pid), $S3_KIND on 127.0.0.1:$s3_port (pid $s3_pid); env in $ENV_FILE"
}

stop() {
  if [[ ! -f $ENV_FILE ]]; then
    log "no $ENV_FILE: nothing to stop"
    return 0
  fi
  local pid
  for var in HYPHA_PID S3_PID; do
    pid=$(sed -n "s/^$var=//p" "$ENV_FILE")
    if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$STATE_DIR/s3-data"
  rm -f "$ENV_FILE" "$STATE_DIR/hypha.db"
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  install-venv) install_venv ;;
  *)
    echo "usage: $0 start|stop [ENV_FILE] | install-venv" >&2
    exit 2
    ;;
esac
