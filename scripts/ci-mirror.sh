#!/usr/bin/env bash
# Mirror every ref of one repository into another, from a CI job: a repository into Hypha, or
# Hypha back out (README "Mirroring from CI"; tests/e2e/mirror.rs runs this file as it is).
#
#   scripts/ci-mirror.sh FROM_URL TO_URL
#   e.g. FROM_URL=https://github.com/org/repo.git  TO_URL=hypha::https://hypha.example/ws/repo
#
# Branches, tags and notes go across; refs deleted at FROM are deleted at TO. The token comes
# from HYPHA_TOKEN (a CI secret). The job never waits for an answer: with no usable token it
# fails with a clear error and a non-zero exit. MIRROR_DIR keeps the mirror between runs.
set -euo pipefail
from=$1 to=$2
dir=${MIRROR_DIR:-mirror.git}

export GIT_TERMINAL_PROMPT=0 # git never asks for a user name or password on a terminal
export GCM_INTERACTIVE=never # nor does Git Credential Manager, where it is installed
exec </dev/null              # and nothing can wait for input

if [[ ! -d $dir ]]; then
  git clone --quiet --mirror "$from" "$dir" # fetches refs/* (heads, tags, notes) as they are
else
  git -C "$dir" remote set-url origin "$from"
  git -C "$dir" fetch --quiet --prune origin # deleted at FROM: deleted here too
fi
git -C "$dir" push --quiet --mirror "$to" # creates, moves (forced) and deletes refs at TO
