#!/usr/bin/env bash
# Build git-remote-hypha in release mode and install both binaries on the user's PATH, and
# their manual pages where `man` finds them (man-db looks in <dir>/../share/man for every
# <dir> on PATH). Safe to run twice. Installs into ${PREFIX:-$HOME/.local}/bin unless
# INSTALL_DIR is set, the pages into $PREFIX/share/man/man1 (with only INSTALL_DIR set:
# $INSTALL_DIR/../share/man/man1). CARGO_PROFILE=dev builds the dev profile instead (tests).
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
if [ -n "${PREFIX:-}" ] || [ -z "${INSTALL_DIR:-}" ]; then
  man_dir="${PREFIX:-$HOME/.local}/share/man/man1"
else
  man_dir="$(dirname "$INSTALL_DIR")/share/man/man1"
fi
profile="${CARGO_PROFILE:-release}"
cargo build --profile "$profile" --locked --bins
# cargo names the dev profile's directory "debug"
case "$profile" in dev) out=debug ;; *) out=$profile ;; esac
out="${CARGO_TARGET_DIR:-target}/$out"
mkdir -p "$bin_dir" "$man_dir"
for b in git-remote-hypha git-hypha; do
  # install to a temporary name, then rename: a running copy is never overwritten in place
  install -m 0755 "$out/$b" "$bin_dir/.$b.new"
  mv -f "$bin_dir/.$b.new" "$bin_dir/$b"
done
install -m 0644 man/*.1 "$man_dir/"
echo "installed git-remote-hypha and git-hypha into $bin_dir, their manual pages into $man_dir"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "note: add $bin_dir to PATH (export PATH=\"$bin_dir:\$PATH\")" ;;
esac
