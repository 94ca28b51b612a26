#!/usr/bin/env bash
# Local S3 servers for the tests of the S3 backend (issue 3):
#
#   s3s-fs  (crates.io)  checks SigV4 signatures, presigned-URL expiry and Range;
#                        its conditional writes are check-then-write, not atomic.
#   moto    (PyPI)       applies conditional writes atomically when served one request at a
#                        time (scripts/moto_server.py; the refs race test);
#                        it checks no signatures.
#
# Usage: scripts/s3-services.sh start|stop [ENV_FILE]
#        scripts/s3-services.sh install        (only install what is missing)
#
# start installs what is missing (s3s-fs with cargo, moto[server] into a venv), starts both
# on free 127.0.0.1 ports, creates the bucket on each, and writes ENV_FILE (default
# target/s3-services/env) for `set -a; . ENV_FILE; set +a`:
#   HYPHA_TEST_S3_ENDPOINT, HYPHA_TEST_S3_BUCKET, HYPHA_TEST_S3_DIR (s3s-fs; the directory
#   holding the bucket's objects), HYPHA_TEST_MOTO_ENDPOINT, HYPHA_TEST_MOTO_BUCKET,
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, S3S_FS_PID, MOTO_PID.
# stop kills exactly those two process ids and removes the data directory.
#
# Tools go to $HYPHA_TOOLS_DIR (default ~/.cache/hypha-git), so a machine that ran this once
# starts in a second.
set -euo pipefail

cd "$(dirname "$0")/.."
ACTION=${1:-}
ENV_FILE=${2:-target/s3-services/env}
STATE_DIR=$(dirname "$ENV_FILE")
TOOLS=${HYPHA_TOOLS_DIR:-$HOME/.cache/hypha-git}
S3S_FS=$TOOLS/s3s-fs/bin/s3s-fs
VENV=$TOOLS/venv
MOTO=$VENV/bin/moto_server
BUCKET=hypha-test
S3S_FS_VERSION=0.14.1 # newer versions need a newer rustc
MOTO_VERSION=5.2.5

log() { echo "s3-services: $*" >&2; }

install_tools() {
  if [[ ! -x $S3S_FS ]]; then
    log "installing s3s-fs $S3S_FS_VERSION (about 1.5 min)"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary \
      --root "$TOOLS/s3s-fs" --quiet
  fi
  if [[ ! -x $MOTO ]]; then
    log "installing moto[server] $MOTO_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID NAME LOG: until URL answers at all (any HTTP status), or the process died.
wait_http() {
  local url=$1 pid=$2 name=$3 logfile=$4
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null --max-time 1 "$url"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited at startup; its log:"
      cat "$logfile" >&2
      return 1
    fi
    sleep 0.1
  done
  log "$name did not answer at $url within 30 s; its log:"
  cat "$logfile" >&2
  return 1
}

start() {
  if [[ -f $ENV_FILE ]]; then
    log "$ENV_FILE exists: stopping what it names first"
    stop
  fi
  install_tools
  mkdir -p "$STATE_DIR"
  local data=$STATE_DIR/s3s-fs-data
  rm -rf "$data"
  # s3s-fs keeps a bucket as a directory of the same name.
  mkdir -p "$data/$BUCKET"

  local key=hypha-test-key
  local secret
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')

  local s3s_port moto_port
  s3s_port=$(free_port)
  "$S3S_FS" --host 127.0.0.1 --port "$s3s_port" --access-key "$key" --secret-key "$secret" \
    "$data" >"$STATE_DIR/s3s-fs.log" 2>&1 &
  local s3s_pid=$!
  moto_port=$(free_port)
  # One request at a time: moto's own server threads would break its conditional writes.
  "$VENV/bin/python" scripts/moto_server.py 127.0.0.1 "$moto_port" >"$STATE_DIR/moto.log" 2>&1 &
  local moto_pid=$!

  # Written before waiting, so that `stop` finds the pids even if startup fails.
  {
    echo "HYPHA_TEST_S3_ENDPOINT=http://127.0.0.1:$s3s_port"
    echo "HYPHA_TEST_S3_BUCKET=$BUCKET"
    echo "HYPHA_TEST_S3_DIR=$(cd "$data/$BUCKET" && pwd)"
    echo "HYPHA_TEST_MOTO_ENDPOINT=http://127.0.0.1:$moto_port"
    echo "HYPHA_TEST_MOTO_BUCKET=$BUCKET"
    echo "AWS_ACCESS_KEY_ID=$key"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
    echo "AWS_REGION=us-east-1"
    echo "S3S_FS_PID=$s3s_pid"
    echo "MOTO_PID=$moto_pid"
  } >"$ENV_FILE"

  wait_http "http://127.0.0.1:$s3s_port/" "$s3s_pid" s3s-fs "$STATE_DIR/s3s-fs.log"
  wait_http "http://127.0.0.1:$moto_port/" "$moto_pid" moto "$STATE_DIR/moto.log"
  # moto checks no signatures: a plain PUT creates the bucket.
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:$moto_port/$BUCKET"
  log "s3s-fs on 127.0.0.1:$s3s_port (pid $s3s_pid), moto on 127.0.0.1:$moto_port (pid $moto_pid); env in $ENV_FILE"
}

stop() {
  if [[ ! -f $ENV_FILE ]]; then
    log "no $ENV_FILE: nothing to stop"
    return 0
  fi
  local pid
  for var in S3S_FS_PID MOTO_PID; do
    pid=$(sed -n "s/^$var=//p" "$ENV_FILE")
    if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
      # Wait (at most 5 s) so that the port is free when this returns.
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$STATE_DIR/s3s-fs-data"
  rm -f "$ENV_FILE"
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  install) install_tools ;;
  *)
    echo "usage: $0 start|stop [ENV_FILE] | install" >&2
    exit 2
    ;;
esac
