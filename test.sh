#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, storage conformance, API handler tests
# and the end-to-end tests (real git through the built helper against a real server per test).
# Needs only git and a Rust toolchain; installs git with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v git >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
