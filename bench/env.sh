# Sourced by bench/run.sh and bench/many-pushes.sh: the clean git environment both measure in.
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
