#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, storage conformance, API handler tests
# and the end-to-end tests (real git through the built helper against a real server per test),
# then the end-to-end tests once more with every server on S3, the tests against a real Hypha
# with the plugin, and both install paths (`pip install .`, ./install.sh).
# Needs git, git-lfs, curl, python3 and a Rust toolchain; installs git, git-lfs and curl with
# apt-get when missing (the LFS tests fail without git-lfs rather than skip), and the S3 test
# servers (s3s-fs, moto) through scripts/s3-services.sh.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in git curl git-lfs; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The suite runs with two gits: the newest on PATH (2.47 under /usr/local on these machines)
# and Debian's own /usr/bin/git (2.39.5, the version Debian 12 and Apple's Xcode ship), which
# apt-get installs when it is missing. HYPHA_TEST_OLD_GIT names another one. Each pass with
# the old git puts a directory holding only a `git` link to it first on PATH, so git, the
# helper's own git runs and the tests' all use it.
OLD_GIT=${HYPHA_TEST_OLD_GIT:-/usr/bin/git}
if [ ! -x "$OLD_GIT" ] && [ "$OLD_GIT" = /usr/bin/git ]; then
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi
OLD_GIT_PATH=$PWD/target/old-git/bin
mkdir -p "$OLD_GIT_PATH"
ln -sf "$OLD_GIT" "$OLD_GIT_PATH/git"
new_git_version=$(git --version)
old_git_version=$("$OLD_GIT" --version)
echo "gits: $new_git_version ($(command -v git)), $old_git_version ($OLD_GIT)"
with_old_git() { PATH="$OLD_GIT_PATH:$PATH" "$@"; }

cargo fmt --all -- --check

# Hypha's venv (pip, about 4 min on a fresh machine, mostly download) installs in the
# background while the Rust code builds and the first passes run; the Hypha pass waits for it.
mkdir -p target/test-logs
VENV_LOG=target/test-logs/hypha-venv.log
scripts/hypha-services.sh install-venv >"$VENV_LOG" 2>&1 &
venv_job=$!

# S3 test servers: s3s-fs checks signatures, expiry and Range; moto applies conditional writes
# atomically. Stopped by process id however this script ends.
S3_ENV=target/s3-services/env
trap 'kill "$venv_job" 2>/dev/null || true; scripts/s3-services.sh stop "$S3_ENV"' EXIT
trap 'exit 130' INT TERM
scripts/s3-services.sh start "$S3_ENV"
set -a
# shellcheck disable=SC1090
. "$S3_ENV"
set +a

cargo clippy --locked --all-targets -- -D warnings

have_nextest() { cargo nextest --version >/dev/null 2>&1; }

# Four tests at a time on two cores: the e2e tests mostly wait on git, servers and disk (a
# 2-thread run kept about one core busy). The S3 pass below took 170 s with 4 threads on a
# loaded machine against 200 s with 2 on an idle one.
THREADS=${HYPHA_TEST_THREADS:-4}

status=0
# Everything, once, with the newest git: the e2e suite on local disk, the conformance suites
# and tests/s3.rs on both S3 servers.
if have_nextest; then
  cargo nextest run --locked --no-fail-fast --test-threads "$THREADS" || status=1
else
  cargo test --locked --no-fail-fast -- --test-threads "$THREADS" || status=1
fi

# The e2e suite again with the old git, every server on s3s-fs in a bucket of its own (s3s-fs
# walks a whole bucket on every LIST: one bucket shared by every test made this pass spend
# most of its time listing). Each test thus meets each git once and each backend once within
# CI's time; the Hypha pass below runs the newest git again, through Hypha's S3.
# Left out here, and run with the old git on local disk right after:
# - unusual_ref_names_match_git: its 200-byte ref name makes s3s-fs's metadata file names
#   longer than the file system allows (a limit of the test server, not of S3; the repo
#   conformance suite stores long ref names on moto);
# - a_merge_of_many_copies_of_a_file_keeps_one: a git setting of compaction (one delta-search
#   thread), the same on every backend.
# The multipart tests always run on S3 (s3s-fs behind a fault proxy): they ran above.
echo "e2e suite with the S3 backend (s3s-fs at $HYPHA_TEST_S3_ENDPOINT), $old_git_version"
S3S_DATA=$(dirname "$HYPHA_TEST_S3_DIR")
export HYPHA_E2E_SERVE_ARGS="--s3-endpoint $HYPHA_TEST_S3_ENDPOINT --s3-bucket e2e-{unique} --s3-path-style"
export HYPHA_E2E_STORE_ROOT="$S3S_DATA/e2e-{unique}"
# The one-branch race at CI size (16 clients x 4 rounds) ran above on local disk; on S3 a
# smaller one checks the same code path against the other backend within CI's time.
export HYPHA_E2E_RACE=8x2
ON_DISK_ONLY=(unusual_ref_names_match_git a_merge_of_many_copies_of_a_file_keeps_one cut_lfs_transfers_resume_with_what_is_missing a_cut_pack_download_resumes_where_it_was_cut)
on_disk_filter=$(printf 'test(%s) | ' "${ON_DISK_ONLY[@]}")
on_disk_filter=${on_disk_filter% | }
on_disk_skips=()
for name in "${ON_DISK_ONLY[@]}"; do on_disk_skips+=(--skip "$name"); done
if have_nextest; then
  with_old_git cargo nextest run --locked --no-fail-fast --test e2e --test-threads "$THREADS" \
    -E "not (test(multipart::) | $on_disk_filter)" || status=1
else
  with_old_git cargo test --locked --no-fail-fast --test e2e -- --test-threads "$THREADS" \
    --skip multipart:: "${on_disk_skips[@]}" || status=1
fi
unset HYPHA_E2E_SERVE_ARGS HYPHA_E2E_STORE_ROOT HYPHA_E2E_RACE
echo "the tests left out on S3, $old_git_version, local disk"
if have_nextest; then
  with_old_git cargo nextest run --locked --no-fail-fast --test e2e \
    -E "$on_disk_filter" || status=1
else
  for name in "${ON_DISK_ONLY[@]}"; do
    with_old_git cargo test --locked --no-fail-fast --test e2e -- "$name" || status=1
  done
fi

# Against a real Hypha 0.21.137 (with s3s-fs as its S3) serving remote API v1 through the
# plugin in hypha-plugin/: the pytest tests (interop with Hypha's own smart HTTP, login, gc,
# hostile requests), then the e2e suite once more in Hypha mode (HYPHA_E2E_HYPHA_ENV), less
# the tests that need our own server (the list is in tests/hypha/run.sh). Installs Hypha into a
# cached virtual environment on first use; starts and stops its servers itself.
echo "tests against a real Hypha server (tests/hypha)"
# The passes above built target/debug/git-remote-hypha and git-hypha, which pytest puts on
# PATH. `cargo build --bins` (install.sh, pip's maturin) builds the very same units, so neither
# compiles anything nor relinks these binaries while tests run them (see getrandom in
# Cargo.toml).
if wait "$venv_job"; then
  bash tests/hypha/run.sh || status=1
  # Both install paths as users take them (tests/install/run.sh: `pip install .` into a new
  # venv, Hypha started by that venv's python with the wheel's plugin, then ./install.sh),
  # about 35 s. After the Hypha pass, not beside it: maturin's build relinks
  # target/debug/git-remote-hypha, and a test that ran git at that moment found no helper.
  echo "install paths (tests/install/run.sh)"
  OLD_GIT_PATH=$OLD_GIT_PATH bash tests/install/run.sh || status=1
else
  echo "installing Hypha's venv failed; its log ($VENV_LOG):" >&2
  cat "$VENV_LOG" >&2
  status=1
fi
exit "$status"
