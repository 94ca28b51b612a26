#!/usr/bin/env bash
# Build git-remote-hypha in release mode and install both binaries on the user's PATH.
# Safe to run twice. Installs into ${PREFIX:-$HOME/.local}/bin unless INSTALL_DIR is set.
set -euo pipefail
cd "$(dirname "$0")"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need git; then
  echo "install.sh: git not found; installing it with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq git >/dev/null
fi
if ! need cargo; then
  echo "install.sh: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

bin_dir="${INSTALL_DIR:-${PREFIX:-$HOME/.local}/bin}"
cargo build --release --locked --bins
mkdir -p "$bin_dir"
for b in git-remote-hypha git-hypha; do
  # install to a temporary name, then rename: a running copy is never overwritten in place
  install -m 0755 "target/release/$b" "$bin_dir/.$b.new"
  mv -f "$bin_dir/.$b.new" "$bin_dir/$b"
done
echo "installed git-remote-hypha and git-hypha into $bin_dir"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "note: add $bin_dir to PATH (export PATH=\"$bin_dir:\$PATH\")" ;;
esac
