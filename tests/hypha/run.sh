#!/usr/bin/env bash
# The tests against a real Hypha 0.21.137 with the plugin (issue 6): start Hypha (on s3s-fs)
# once, a stock Hypha without the plugin beside it (issue 16: the helper's smart-HTTP
# fallback) and one with the plugin on moto (issue 22: LFS in parts), run the pytest suite (interop with Hypha's smart HTTP, login, the 2100-commit clone),
# then the core end-to-end suite (tests/e2e) in Hypha mode, and stop both servers whatever
# happens.
#
# Usage: tests/hypha/run.sh [pytest args]   (after `cargo build --bins`)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV_FILE=${HYPHA_SERVICES_ENV:-target/hypha-services/env}
[[ $ENV_FILE == /* ]] || ENV_FILE=$PWD/$ENV_FILE
# A stock Hypha (no plugin, issue 16) for tests/hypha/test_stock.py, started beside the plugin
# instance (the two starts overlap) and stopped as soon as pytest is done.
STOCK_ENV=${HYPHA_STOCK_ENV:-target/hypha-stock/env}
[[ $STOCK_ENV == /* ]] || STOCK_ENV=$PWD/$STOCK_ENV
# And one with the plugin on moto for tests/hypha/test_plugin_lfs.py (issue 22): our LFS
# transfer's parts are S3 multipart uploads at Hypha's LFS keys, which s3s-fs cannot start
# (it names an upload's metadata file after the whole key, past the file name limit).
MOTO_ENV=${HYPHA_MOTO_ENV:-target/hypha-moto/env}
[[ $MOTO_ENV == /* ]] || MOTO_ENV=$PWD/$MOTO_ENV
stop_side() {
  HYPHA_TEST_PLUGIN=none scripts/hypha-services.sh stop "$STOCK_ENV"
  HYPHA_TEST_S3=moto scripts/hypha-services.sh stop "$MOTO_ENV"
}
trap 'stop_side; scripts/hypha-services.sh stop "$ENV_FILE"' EXIT
trap 'exit 130' INT TERM
HYPHA_TEST_PLUGIN=none scripts/hypha-services.sh start "$STOCK_ENV" &
stock_start=$!
HYPHA_TEST_S3=moto scripts/hypha-services.sh start "$MOTO_ENV" &
moto_start=$!
scripts/hypha-services.sh start "$ENV_FILE"
wait "$stock_start"
wait "$moto_start"
VENV=$(sed -n 's/^HYPHA_TEST_VENV=//p' "$ENV_FILE")

status=0
HYPHA_SERVICES_ENV=$ENV_FILE HYPHA_STOCK_ENV=$STOCK_ENV HYPHA_MOTO_ENV=$MOTO_ENV \
  "$VENV/bin/python" -m pytest -p no:cacheprovider --durations=8 tests/hypha "$@" || status=1
stop_side

# The e2e suite in Hypha mode (tests/e2e/harness/hypha.rs): every test gets its own Hypha
# workspaces and Hypha tokens, and creates repositories through the plugin. Left out, here
# and only here, are the tests that need what only `git hypha serve` has (the harness panics
# if any other test asks for it). One line per group: name substring, then why.
EXCLUDED=(
  "crash::                       SIGKILLs our server or routes presigned transfers through the fault proxy (serve --public-url)"
  "faults::                      the fault proxy needs serve --public-url to see transfers; faults.rs keys that on HYPHA_E2E_SERVE_ARGS"
  "hostile::hostile_             raw requests at literal /ws/ paths, diffed against our server's store root (pytest covers the plugin)"
  "hostile::fuzzed_requests      raw requests at literal /ws/ paths, checked against our server's store root (pytest covers the plugin)"
  "hostile::update_to_an_object raw requests at literal /ws/ paths, diffed against our server's store root (the rule is the Rust core's: repo::conformance runs it on every backend)"
  "hostile::short_upload         sends a short body to our server's /_store presigned URL"
  "hostile::stored_packs         raw uploads requests at literal /ws/ paths (the rule is the Rust core's: repo::conformance runs it on every backend)"
  "tls::                         needs serve --public-url pointing at a TLS front or a proxy (Hypha's public URL is its own)"
  "permissions::presigned_urls   checks our server's /_store URLs; S3's own URLs are checked by s3s-fs"
  "gc::gc_merges_packs           needs serve --gc-grace-secs 0; the plugin's grace period is fixed (70 min)"
  "lfs::lfs_gc_deletes_objects   needs serve --gc-grace-secs 0; the plugin's grace period is fixed (70 min) (lfs::lfs_gc_keeps_unreachable_objects runs here: the plugin's lfs-prune)"
  "autogc::                      needs serve --auto-gc-packs/--auto-gc-bytes per test (inside Hypha the child takes them once, from HYPHA_GIT_SERVE_ARGS; test_plugin_autogc.py) and lists packs at literal /ws/ paths"
  "refs::unusual_ref_names       a 200-byte ref name exceeds s3s-fs's file name limit (as in test.sh's s3s-fs run)"
  "mirror::mirror_into_         the CI recipe's round trip (13 s against Hypha); its commands are refs::mirror_push_and_repeat's helper path, run here, and it runs on local disk and S3"
  "hooks::                       needs serve --webhook-allow (or its absence); the plugin's hooks are tested by tests/hypha/test_plugin_hooks.py"
  "thin::server_without_thin     needs serve --no-thin-packs (a plugin without fix-thin answers 404: the helper's same fallback)"
  "thin::one_line_edit_uploads   needs serve --inline-max 0 for presigned thin uploads (thin::one_line_edit_goes_inline runs here)"
  "thin::an_edit_with_very_dense needs serve --inline-max 0 for fix-thin (inline::dense_data runs here)"
  "inline::a_server_without      needs serve --inline-max 0"
  "inline::a_clone_from_a_server needs serve --inline-max 0 (inline::a_clone_takes_small_packs runs here)"
  "inline::a_clone_asks_for_a   holds an idx GET in the fault proxy (serve --public-url); the clone's order of requests is the helper's"
  "multipart::                   needs serve --multipart-threshold and a fault proxy as S3 endpoint (the plugin's child keeps the 64 MiB default)"
  "shallow::shallow_since_      16 s against Hypha; the cut is the helper's walk over the same packs listing and range reads shallow::depth_deepen_ runs here, and it runs on local disk and S3"
  "hostile::malformed_protocol  the helper's parsing of what git sends (100 s against Hypha); no request reaches a server"
  "force::                       the helper's lease and fast-forward rules (120 s against Hypha); the server's compare-and-swap they end in is the Rust core's, run here by refs:: and concurrency::"
  "options::                     the helper's options (progress, dry-run, verbosity, ...; 95 s against Hypha); lifecycle:: covers the same requests"
  "corruption::                  the helper's checks of what it downloads (105 s against Hypha); which store held the damaged bytes does not matter"
  "history::                     the helper's pack building and indexing over long histories and big files; the plugin passes presigned URLs as for any pack"
  "progress::                    the helper's progress output"
  "limits::                      needs serve --rate-limit-token/--rate-limit-address (the plugin's child takes them from HYPHA_GIT_SERVE_ARGS; its token limit is unit-tested in server::tests::limits)"
  "lfs_parts::                   the tests set serve --multipart-threshold and use the fault proxy; through the plugin the parts are multipart uploads s3s-fs cannot start at Hypha's key lengths (tests/hypha/test_plugin_lfs.py runs the agent through the plugin, on moto)"
  "lfs_delta::                   the tests set serve --multipart-threshold and read our server's log and store; through the plugin the delta is a multipart upload s3s-fs cannot start at Hypha's key lengths"
  "lfs_locks::                   two users with write on one workspace (mint_as needs our server); the plugin's locks are tested by tests/hypha/test_plugin_locks.py"
  "metrics::                     needs serve --metrics-listen and our server's store root (the request id through the plugin: test_plugin_fair_use.py)"
  "fair_use::                    needs serve --byte-limit-*/--quota-* (the plugin's child takes them from HYPHA_GIT_SERVE_ARGS: test_plugin_fair_use.py starts a Hypha with quotas)"
)
filter="" skips=()
for line in "${EXCLUDED[@]}"; do
  name=${line%% *}
  filter+="${filter:+ | }test($name)"
  skips+=(--skip "$name")
done
echo "e2e suite against Hypha (without: ${#EXCLUDED[@]} groups, see tests/hypha/run.sh)"
export HYPHA_E2E_HYPHA_ENV=$ENV_FILE
# The one-branch race at full size runs on local disk (test.sh); here a smaller one checks the
# plugin's compare-and-swap within CI's time (each round waits on Hypha: 8x2 took 128 s).
export HYPHA_E2E_RACE=${HYPHA_E2E_RACE:-4x2}
# Four at a time on two cores: these tests mostly wait for Hypha (measured: 338 s against 489 s
# with two at a time, on a loaded 2-core machine).
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --test e2e --test-threads 4 -E "not ($filter)" \
    || status=1
else
  cargo test --locked --no-fail-fast --test e2e -- --test-threads 4 "${skips[@]}" || status=1
fi
exit "$status"
