#!/usr/bin/env bash
# Both install paths as a user on a fresh machine takes them, each into a new place:
#   1. `pip install .` into a new venv: git-remote-hypha and git-hypha in the venv's bin/, the
#      plugin module hypha_git_remote importable (entry point hypha_startup), the manual page
#      found by `man` (no MANPATH) and by `git hypha --help`, a push + clone round trip
#      (scripts/roundtrip.sh) with the installed binaries; then Hypha as an operator runs it:
#      `python -m hypha.server --startup-functions hypha_git_remote:hypha_startup` started by
#      the venv's python, with no PYTHONPATH and no HYPHA_GIT_BIN (scripts/hypha-services.sh
#      with HYPHA_PYTHON), on s3s-fs; the same round trip through it, the plugin's child
#      checked to be the venv's git-hypha, and every process checked gone after the stop;
#   2. ./install.sh into a temporary PREFIX: the same checks but the plugin (it installs none).
#
# INSTALL_TEST_PROFILE=dev (the default) builds the dev profile, reusing the test build's
# target/ (pip through MATURIN_PEP517_ARGS, install.sh through CARGO_PROFILE); =release builds
# what users get (a release build from scratch takes minutes). Hypha itself is not installed
# again: the packages of Hypha's venv (HYPHA_VENV, default ~/.cache/hypha-git/hypha-venv) are
# appended to the new venv's sys.path by a .pth file, after the venv's own site-packages, so
# the plugin module still comes from the wheel. Without that venv the plugin is only checked
# to be installed and to compile, and Hypha is not run. Needs python3 (venv, pip reaching
# PyPI), cargo (crates.io), git, curl and pgrep (Hypha's run).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

profile=${INSTALL_TEST_PROFILE:-dev}
hypha_venv=${HYPHA_VENV:-$HOME/.cache/hypha-git/hypha-venv}
work=$(mktemp -d)
hypha_env=$work/hypha-services/env
# Hypha and its S3 server are stopped by process id (hypha-services.sh stop) however this ends.
cleanup() {
  if [ -f "$hypha_env" ]; then scripts/hypha-services.sh stop "$hypha_env" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
# Runs "$@" with its output in $work/<log>, shown only when it fails; prints the time taken.
timed() {
  local log=$work/$1 start=$SECONDS
  shift
  "$@" >"$log" 2>&1 || { cat "$log"; fail "$*"; }
  echo "   ($((SECONDS - start)) s) $(tail -n1 "$log")"
}

# The binaries resolve in $1 (first on PATH), and man finds their pages under $1/../share/man
# from PATH alone, as a login shell with $1 on PATH would.
check_installed() {
  local bin=$1 prefix
  prefix=$(dirname "$bin")
  for b in git-remote-hypha git-hypha; do
    [ "$(PATH="$bin:$PATH" command -v "$b")" = "$bin/$b" ] || fail "$b does not resolve to $bin/$b"
  done
  PATH="$bin:$PATH" git hypha --version >/dev/null || fail "git hypha --version"
  for page in git-hypha git-remote-hypha git-hypha-serve; do
    [ -f "$prefix/share/man/man1/$page.1" ] || fail "$prefix/share/man/man1/$page.1 is missing"
  done
  if command -v man >/dev/null 2>&1; then
    local found
    found=$(env -u MANPATH PATH="$bin:/usr/local/bin:/usr/bin:/bin" man -w git-hypha) ||
      fail "man -w git-hypha finds no page with $bin on PATH"
    [ "$found" = "$prefix/share/man/man1/git-hypha.1" ] || fail "man -w git-hypha: $found"
    # git runs `man git-hypha` for `git hypha --help`.
    env -u MANPATH PATH="$bin:$PATH" MANPAGER=cat GIT_PAGER=cat MANWIDTH=80 \
      git hypha --help 2>&1 | grep -q "git-hypha - " || fail "git hypha --help shows no manual page"
    echo "   man -w git-hypha: $found"
  else
    echo "   man is not installed: checked the page files only"
  fi
}

step "pip install . into a new venv (profile $profile)"
python3 -m venv "$work/venv"
pip_env=()
[ "$profile" = release ] || pip_env=(MATURIN_PEP517_ARGS="--profile $profile")
# --no-cache-dir: a dev wheel carries debug info (~150 MB); nothing to keep between runs.
timed pip.log env "${pip_env[@]}" "$work/venv/bin/pip" install --no-cache-dir "$repo"
check_installed "$work/venv/bin"
module=$("$work/venv/bin/python" -c 'import importlib.util as u; print(u.find_spec("hypha_git_remote").origin)')
[ "$module" = "$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/hypha_git_remote.py" ] ||
  fail "hypha_git_remote is not installed in the venv: $module"
have_hypha=
if [ -x "$hypha_venv/bin/python" ]; then
  have_hypha=1
  pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
  [ "$(pyver "$work/venv/bin/python")" = "$(pyver "$hypha_venv/bin/python")" ] ||
    fail "Hypha's venv ($hypha_venv) has another Python version than python3: its packages do not fit"
  hypha_site=$("$hypha_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  # A .pth line is appended to sys.path after the venv's own site-packages.
  echo "$hypha_site" >"$(dirname "$module")/hypha-venv-packages.pth"
  env -u PYTHONPATH "$work/venv/bin/python" -c '
import sys, hypha, hypha_git_remote
assert hypha_git_remote.__file__ == sys.argv[1], hypha_git_remote.__file__
assert callable(hypha_git_remote.hypha_startup)
' "$module" || fail "import hypha_git_remote (with Hypha's packages from $hypha_site)"
  echo "   hypha_git_remote:hypha_startup imports from the wheel (Hypha's packages from $hypha_venv)"
else
  "$work/venv/bin/python" -m py_compile "$module" || fail "hypha_git_remote does not compile"
  grep -q "def hypha_startup" "$module" || fail "hypha_git_remote has no hypha_startup"
  echo "   no Hypha venv at $hypha_venv: checked that hypha_git_remote is installed and compiles"
fi
step "round trip with the venv's binaries"
timed roundtrip-pip.log env PATH="$work/venv/bin:$PATH" scripts/roundtrip.sh

# True once none of the process ids "$@" exists (waits up to 10 s).
gone() {
  for _ in $(seq 100); do
    local alive=
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  return 1
}

if [ -n "$have_hypha" ]; then
  step "Hypha started by the venv's python: plugin and git-hypha from the wheel"
  timed hypha-start.log env HYPHA_PYTHON="$work/venv/bin/python" \
    scripts/hypha-services.sh start "$hypha_env"
  value() { sed -n "s/^$1=//p" "$hypha_env"; }
  hypha_pid=$(value HYPHA_PID)
  s3_pid=$(value S3_PID)
  # The token goes through the environment, never a command line.
  (
    HYPHA_TOKEN=$(value HYPHA_TEST_TOKEN)
    ROUNDTRIP_REMOTE="hypha::$(value HYPHA_TEST_SERVER)/$(value HYPHA_TEST_WS)/roundtrip"
    export HYPHA_TOKEN ROUNDTRIP_REMOTE
    timed roundtrip-hypha.log env PATH="$work/venv/bin:$PATH" scripts/roundtrip.sh
  )
  # The plugin started its `git hypha serve --plugin` child on the first request; with neither
  # PYTHONPATH nor HYPHA_GIT_BIN it must be the git-hypha the wheel put beside the venv's python.
  children=$(pgrep -P "$hypha_pid" -f "serve --plugin") ||
    fail "Hypha (pid $hypha_pid) has no git hypha serve --plugin child; its log: $(tail -20 "$work/hypha-services/hypha.log")"
  for child in $children; do
    exe=$(readlink -f "/proc/$child/exe")
    [ "$exe" = "$(readlink -f "$work/venv/bin/git-hypha")" ] ||
      fail "the plugin's child (pid $child) runs $exe, not the venv's git-hypha"
  done
  echo "   the plugin's child (pid $(echo $children)) runs $exe"
  scripts/hypha-services.sh stop "$hypha_env"
  # shellcheck disable=SC2086 # one word per process id
  gone "$hypha_pid" "$s3_pid" $children ||
    fail "still running after the stop: $(ps -o pid=,args= -p "$hypha_pid,$s3_pid,$(echo $children | tr ' ' ,)")"
  echo "   stopped: Hypha, s3s-fs and the plugin's child"
fi

step "./install.sh into PREFIX=$work/prefix (profile $profile)"
timed install.log env PREFIX="$work/prefix" CARGO_PROFILE="$profile" ./install.sh
check_installed "$work/prefix/bin"
step "round trip with the installed binaries"
timed roundtrip-sh.log env PATH="$work/prefix/bin:$PATH" scripts/roundtrip.sh
# OLD_GIT_PATH (test.sh): a directory whose `git` is an older git (Debian's 2.39.5); the same
# round trip with it first on PATH, as a Debian 12 or macOS user runs it.
if [ -n "${OLD_GIT_PATH:-}" ]; then
  step "round trip with $("$OLD_GIT_PATH/git" --version)"
  timed roundtrip-old-git.log env PATH="$work/prefix/bin:$OLD_GIT_PATH:$PATH" scripts/roundtrip.sh
fi

echo "install tests passed (pip install . and ./install.sh, profile $profile)"
