#!/usr/bin/env bash
# The Hypha end-to-end suite (issue 6): start Hypha + moto with the plugin, run the pytest
# suite with real git and the built helper, stop both, whatever happens.
#
# Usage: tests/hypha/run.sh [pytest args]   (after `cargo build`)
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV_FILE=${HYPHA_SERVICES_ENV:-target/hypha-services/env}
trap 'scripts/hypha-services.sh stop "$ENV_FILE"' EXIT
scripts/hypha-services.sh start "$ENV_FILE"
VENV=$(sed -n 's/^HYPHA_TEST_VENV=//p' "$ENV_FILE")
HYPHA_SERVICES_ENV=$ENV_FILE "$VENV/bin/python" -m pytest -p no:cacheprovider tests/hypha "$@"
