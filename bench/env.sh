# Sourced by benchmarks: the clean git environment bench/run.sh and bench/many-pushes.sh
# measure in, and the S3 test servers (cold-listing.sh, s3-waves.sh).
#
#   bench_git_env WORK BIN
#
# HOME becomes WORK/home with no user or system config, a fixed identity and no background
# gc; a `git-remote-hypha` wrapper in WORK/wrap runs BIN/git-remote-hypha under
# /usr/bin/time so that its peak RSS (and that of the `git pack-objects` it runs) lands in
# $BENCH_HELPER_RSS; BIN comes next on PATH for `git hypha`.
bench_git_env() {
  local work=$1 bin=$2
  export HOME=$work/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LC_ALL=C
  unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
  mkdir -p "$HOME"
  git config --global user.name "Bench Committer"
  git config --global user.email "bench-committer@example.com"
  git config --global init.defaultBranch main
  git config --global gc.auto 0
  git config --global maintenance.auto false
  git config --global receive.autogc false
  git config --global advice.detachedHead false

  mkdir -p "$work/wrap"
  cat >"$work/wrap/git-remote-hypha" <<EOF
#!/bin/sh
exec /usr/bin/time -f '%M' -a -o "\${BENCH_HELPER_RSS:-/dev/null}" "$bin/git-remote-hypha" "\$@"
EOF
  chmod +x "$work/wrap/git-remote-hypha"
  export PATH="$work/wrap:$bin:$PATH"
  export BENCH_HELPER_RSS=$work/helper.rss
}

# For benchmarks against moto and s3s-fs (scripts/s3-services.sh):
#
#   bench_s3_start WORK   starts both, their state in WORK/s3 and their log in WORK/s3.log,
#                         and exports their settings (HYPHA_TEST_MOTO_ENDPOINT, ...)
#   bench_s3_stop WORK    stops them (for the caller's EXIT trap)
bench_s3_services() { echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/s3-services.sh"; }
bench_s3_start() {
  "$(bench_s3_services)" start "$1/s3/env" >"$1/s3.log" 2>&1
  set -a
  # shellcheck disable=SC1091
  . "$1/s3/env"
  set +a
}
bench_s3_stop() { "$(bench_s3_services)" stop "$1/s3/env" >/dev/null 2>&1 || true; }
