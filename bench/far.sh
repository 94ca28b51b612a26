#!/usr/bin/env bash
# Round trips far from the server (issue 25): everyday operations against `git hypha serve`
# (local disk) and `git daemon`, each reached through bench/relay.py adding DELAY ms each way
# to every chunk (pipelined: bandwidth unchanged; a new connection costs one more round trip,
# as TCP's handshake does). The helper's presigned URLs point through the same relay.
#
#   bench/far.sh [OUT.md]        BIN=target/release  FAR_RUNS=3  FAR_RTT="0 50 100"
#                                FAR_S3_RTT="0 40" (empty: no S3 part)  FAR_TAGS=1000
#                                FAR_CSV_MIB=40
#
# Operations: ls-remote, no-op fetch, push and fetch of one commit, clone (a history of 2,000
# small commits); mirror push: `git push --mirror` of that history with 1,500 more refs on it
# (bench/gen.py mirror, as bench/run.sh's) into a new empty remote; edit-push CSV: a push of
# one commit rewriting 3 rows of a FAR_CSV_MIB CSV (bench/gen.py csvbig) that the remote has,
# the same commit to each peer: a thin pack of a few KiB whose base, the whole file, both
# sides read (the helper's local index-pack --fix-thin, the server's completion; git's
# receive-pack unpacks it).
#
# Round trips = (median time at RTT - median time at 0) / RTT, per operation and peer.
# The S3 part: `git hypha serve` on moto (scripts/s3-services.sh), the client next to the
# server, the store behind a relay adding FAR_S3_RTT (presigned URLs cross it too), a
# repository with FAR_TAGS tags; S3 round trips = the same difference / S3 RTT.
# Machines here are noisy: the ratios of medians are what to quote, not one time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN=$(cd "${BIN:-$root/target/release}" && pwd)
RUNS=${FAR_RUNS:-3}
RTTS=${FAR_RTT:-0 50 100}
S3_RTTS=${FAR_S3_RTT-0 40}
TAGS=${FAR_TAGS:-1000}
CSV_MIB=${FAR_CSV_MIB:-40}
out=${1:-}
die() { echo "far: $*" >&2; exit 1; }
note() { echo "far: $*" >&2; }
[ -x "$BIN/git-remote-hypha" ] || die "no $BIN/git-remote-hypha (cargo build --release)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "${s3env:-}" ] || "$root/scripts/s3-services.sh" stop "$s3env" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  [ -n "${FAR_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
# The S3 servers' tools stay in the user's cache, not under the scratch HOME.
export HYPHA_TOOLS_DIR=${HYPHA_TOOLS_DIR:-$HOME/.cache/hypha-git}
# shellcheck source=bench/env.sh
. "$here/env.sh"
bench_git_env "$work" "$BIN"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # wait_port PORT WHAT
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 is not listening on $1"
}
relay() { # relay TARGET_PORT DELAY_MS NAME: starts a relay, its port in $relay_port
  local f=$work/relay-$3.ports
  python3 "$here/relay.py" "$1" "$f" "$2" >/dev/null 2>>"$work/relay-$3.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$f" ] && { relay_port=$(cut -d' ' -f1 "$f"); return; }
    sleep 0.05
  done
  die "relay $3 did not start"
}

remotes=$work/remotes
mkdir -p "$remotes" "$work/store"
dport=$(free_port)
"$(git --exec-path)/git-daemon" --export-all --enable=receive-pack --reuseaddr \
  --base-path="$remotes" --listen=127.0.0.1 --port="$dport" "$remotes" >"$work/daemon.log" 2>&1 &
pids+=($!)
wait_port "$dport" "git daemon"
export HYPHA_JWT_SECRET="far-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

# One server per latency over the same store (used one at a time), each with its relay as the
# public URL so that presigned transfers cross the same link.
declare -A hrelay drelay
for rtt in $RTTS; do
  half=$((rtt / 2))
  hport=$(free_port)
  relay "$hport" "$half" "hypha-$rtt"
  hr=$relay_port
  "$BIN/git-hypha" serve --root "$work/store" --listen "127.0.0.1:$hport" \
    --public-url "http://127.0.0.1:$hr" --auto-gc-packs 0 >"$work/serve-$rtt.out" 2>"$work/serve-$rtt.log" &
  pids+=($!)
  wait_port "$hport" "git hypha serve"
  hrelay[$rtt]=$hr
  relay "$dport" "$half" "daemon-$rtt"
  drelay[$rtt]=$relay_port
done
HYPHA_TOKEN=$("$BIN/git-hypha" token --workspace far --permission rw --expires-in 86400)
export HYPHA_TOKEN

url() { # url PEER RTT [NAME]: remote NAME (default repo) of PEER through the relay of RTT
  case $1 in
    hypha) echo "hypha::http://127.0.0.1:${hrelay[$2]}/far/${3:-repo}" ;;
    daemon) echo "git://127.0.0.1:${drelay[$2]}/${3:-repo}.git" ;;
  esac
}
new_remote() { # new_remote PEER NAME: an empty repository (untimed, at the first RTT)
  case $1 in
    hypha) "$BIN/git-hypha" create "$(url hypha "${RTTS%% *}" "$2")" >/dev/null ;;
    daemon) git init -q --bare "$remotes/$2.git" ;;
  esac
}
refs_on() { # refs_on URL: how many refs the remote lists (no HEAD, no peeled tags)
  git ls-remote "$1" | grep -cv -e '\^{}$' -e $'\tHEAD$' || true
}

# The history: 2,000 commits of small edits to 50 files.
src=$work/src
git init -q "$src"
python3 - "$src" <<'EOF'
import subprocess, sys
out = []
for i in range(2000):
    msg = "commit %d\n" % i
    body = ("file %d line %d\n" % (i % 50, i)) * 20
    out.append("commit refs/heads/main\nmark :%d\n" % (i + 1))
    out.append("committer B <b@example.com> %d +0000\n" % (1700000000 + i))
    out.append("data %d\n%s" % (len(msg), msg))
    if i:
        out.append("from :%d\n" % i)
    out.append("M 644 inline f%02d.txt\ndata %d\n%s\n" % (i % 50, len(body), body))
subprocess.run(["git", "-C", sys.argv[1], "fast-import", "--quiet"],
               input="".join(out).encode(), check=True)
EOF
git -C "$src" reset -q --hard main

git init -q --bare "$remotes/repo.git"
git -C "$src" push -q "$remotes/repo.git" main
new_remote hypha repo
git -C "$src" push -q "$(url hypha "${RTTS%% *}")" main

# The mirror push's source: that history and 1,500 refs on its commits (700 branches, 500
# lightweight and 300 annotated tags), in one pack as a gc'd repository has it.
mirror=$work/mirror.git
git clone -q --bare --no-local "$src" "$mirror"
git -C "$mirror" rev-list --reverse main | python3 "$here/gen.py" mirror \
  | git -C "$mirror" -c fastimport.unpackLimit=1 fast-import --quiet
git -C "$mirror" -c repack.writeBitmaps=false repack -adq
mirror_refs=$(git -C "$mirror" for-each-ref | wc -l)

# The CSV's work tree, on every remote before the rounds; edit_rows commits a new version.
csv=$work/csv
git init -q "$csv"
BENCH_CSVBIG_MIB=$CSV_MIB python3 "$here/gen.py" csvbig | git -C "$csv" fast-import --quiet
git -C "$csv" reset -q --hard main
new_remote daemon csv
new_remote hypha csv
for peer in hypha daemon; do git -C "$csv" push -q "$(url "$peer" "${RTTS%% *}" csv)" main; done
csv_base=$(git -C "$csv" rev-parse main)
edit_rows() { # edit_rows SEED: rewrites 3 rows of data.csv (which, from SEED) and commits
  python3 - "$csv/data.csv" "$1" <<'EOF'
import random, sys
path, seed = sys.argv[1], sys.argv[2]
rows = open(path, "rb").read().split(b"\n")
rng = random.Random(seed)
for _ in range(3):
    i = rng.randrange(1, len(rows) - 1)
    rows[i] = b"%d,2025-%02d-%02dT00:00:00Z,sensor-%03d,%.6f,%.6f,%d" % (
        i, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 999),
        rng.uniform(-90, 90), rng.uniform(-180, 180), rng.randint(0, 10**6))
open(path, "wb").write(b"\n".join(rows))
EOF
  git -C "$csv" commit -qam "edit rows ($1)"
}

now() { date +%s.%N; }
results=$work/results.tsv
: >"$results"
timed() { # timed OP PEER RTT CMD...: one measured run
  local op=$1 peer=$2 rtt=$3 t0 t1
  shift 3
  t0=$(now)
  "$@" >/dev/null 2>"$work/last.err" || die "$op $peer $rtt failed: $(cat "$work/last.err")"
  t1=$(now)
  printf '%s\t%s\t%s\t%s\n' "$op" "$peer" "$rtt" "$(echo "$t1 - $t0" | bc)" >>"$results"
}

for run in $(seq "$RUNS"); do
  for rtt in $RTTS; do
    for peer in hypha daemon; do
      u=$(url "$peer" "$rtt")
      w=$work/w-$peer-$rtt-$run
      o=$work/o-$peer-$rtt-$run
      rm -rf "$w" "$o"
      timed clone "$peer" "$rtt" git clone -q "$u" "$w"
      git clone -q "$u" "$o"
      timed ls-remote "$peer" "$rtt" git ls-remote "$u"
      timed "no-op fetch" "$peer" "$rtt" git -C "$w" fetch -q origin
      echo "$run $rtt" >>"$w/f00.txt"
      git -C "$w" commit -qam "far $run $rtt"
      timed "push 1 commit" "$peer" "$rtt" git -C "$w" push -q origin main
      timed "fetch 1 commit" "$peer" "$rtt" git -C "$o" fetch -q origin
      rm -rf "$w" "$o"
      new_remote "$peer" "mirror-$rtt-$run"
      u=$(url "$peer" "$rtt" "mirror-$rtt-$run")
      timed "mirror push" "$peer" "$rtt" git -C "$mirror" push -q --mirror "$u"
      [ "$(refs_on "$u")" = "$mirror_refs" ] || die "mirror push to $peer at $rtt ms: $(refs_on "$u") refs"
    done
    edit_rows "$run $rtt"
    for peer in hypha daemon; do
      timed "edit-push CSV" "$peer" "$rtt" git -C "$csv" push -q "$(url "$peer" "$rtt" csv)" main
    done
  done
done

# The S3 part: one server per S3 latency over the same bucket prefix.
declare -A s3url
if [ -n "$S3_RTTS" ]; then
  s3env=$work/s3/env
  "$root/scripts/s3-services.sh" start "$s3env" >"$work/s3.log" 2>&1 || die "S3 servers: $(tail -3 "$work/s3.log")"
  set -a
  # shellcheck disable=SC1090
  . "$s3env"
  set +a
  moto_port=${HYPHA_TEST_MOTO_ENDPOINT##*:}
  for rtt in $S3_RTTS; do
    relay "$moto_port" "$((rtt / 2))" "s3-$rtt"
    sport=$(free_port)
    "$BIN/git-hypha" serve --root "$work/unused" --listen "127.0.0.1:$sport" \
      --s3-endpoint "http://127.0.0.1:$relay_port" --s3-bucket "$HYPHA_TEST_MOTO_BUCKET" \
      --s3-prefix far --s3-path-style --auto-gc-packs 0 >"$work/serve-s3-$rtt.out" 2>"$work/serve-s3-$rtt.log" &
    pids+=($!)
    wait_port "$sport" "git hypha serve on S3"
    s3url[$rtt]="hypha::http://127.0.0.1:$sport/far"
  done
  first=${S3_RTTS%% *}
  "$BIN/git-hypha" create "${s3url[$first]}/s3repo" >/dev/null
  git -C "$src" push -q "${s3url[$first]}/s3repo" main
  # The S3 CSV starts from the first version, on a branch of its own: with the local rounds'
  # versions the first push's pack would pass the multipart threshold (64 MiB), and moto
  # 5.2.5 answers ListParts with a root element the SDK refuses (ListPartsResponse).
  git -C "$csv" checkout -q -b s3 "$csv_base"
  "$BIN/git-hypha" create "${s3url[$first]}/s3csv" >/dev/null
  git -C "$csv" push -q "${s3url[$first]}/s3csv" s3:main
  for i in $(seq "$TAGS"); do echo "create refs/tags/t$i main"; done | git -C "$src" update-ref --stdin
  git -C "$src" push -q "${s3url[$first]}/s3repo" --tags
  for run in $(seq "$RUNS"); do
    for rtt in $S3_RTTS; do
      u=${s3url[$rtt]}/s3repo
      w=$work/s3w-$rtt-$run
      o=$work/s3o-$rtt-$run
      rm -rf "$w" "$o"
      timed "S3 clone" hypha "$rtt" git clone -q "$u" "$w"
      git clone -q "$u" "$o"
      timed "S3 ls-remote" hypha "$rtt" git ls-remote "$u"
      timed "S3 no-op fetch" hypha "$rtt" git -C "$w" fetch -q origin
      echo "$run $rtt" >>"$w/f00.txt"
      git -C "$w" commit -qam "s3 $run $rtt"
      timed "S3 push 1 commit" hypha "$rtt" git -C "$w" push -q origin main
      timed "S3 fetch 1 commit" hypha "$rtt" git -C "$o" fetch -q origin
      rm -rf "$w" "$o"
      u=${s3url[$rtt]}/s3mirror-$rtt-$run
      "$BIN/git-hypha" create "$u" >/dev/null
      timed "S3 mirror push" hypha "$rtt" git -C "$mirror" push -q --mirror "$u"
      [ "$(refs_on "$u")" = "$mirror_refs" ] || die "mirror push on S3 at $rtt ms: $(refs_on "$u") refs"
      edit_rows "s3 $run $rtt"
      timed "S3 edit-push CSV" hypha "$rtt" git -C "$csv" push -q "${s3url[$rtt]}/s3csv" s3:main
    done
  done
fi

python3 - "$results" "$RTTS" "$out" "$mirror_refs" "$CSV_MIB" <<'EOF'
import statistics, sys
from collections import defaultdict
path, rtts, out = sys.argv[1], [int(r) for r in sys.argv[2].split()], sys.argv[3]
names = {"mirror push": "mirror push (%s refs)" % f"{int(sys.argv[4]):,}",
         "edit-push CSV": "edit-push of a %s MiB CSV (3 rows)" % sys.argv[5]}
t = defaultdict(list)
for line in open(path):
    op, peer, rtt, secs = line.rstrip("\n").split("\t")
    t[(op, peer, int(rtt))].append(float(secs))
ops = ["ls-remote", "no-op fetch", "push 1 commit", "fetch 1 commit", "clone", "mirror push",
       "edit-push CSV"]
base = rtts[0]
lines = ["| operation | " + " | ".join(
    f"{p} {r} ms" for r in rtts for p in ("hypha", "daemon")) + " | hypha/daemon at %d ms |" % rtts[-1]]
lines.append("|---|" + "---:|" * (2 * len(rtts) + 1))
for op in ops:
    cells = []
    for r in rtts:
        for p in ("hypha", "daemon"):
            m = statistics.median(t[(op, p, r)])
            cell = "%.2f s" % m
            if r != base:
                rt = (m - statistics.median(t[(op, p, base)])) / (r / 1000)
                cell += " (%.1f RT)" % rt
            cells.append(cell)
    last = rtts[-1]
    ratio = statistics.median(t[(op, "hypha", last)]) / statistics.median(t[(op, "daemon", last)])
    lines.append(f"| {names.get(op, op)} | " + " | ".join(cells) + " | %.2fx |" % ratio)
s3 = sorted({r for (op, p, r) in t if op.startswith("S3 ")})
if s3:
    lines.append("")
    lines.append("| operation (client next to the server) | " + " | ".join(
        f"S3 RTT {r} ms" for r in s3) + " |")
    lines.append("|---|" + "---:|" * len(s3))
    for op in ["S3 ls-remote", "S3 no-op fetch", "S3 push 1 commit", "S3 fetch 1 commit", "S3 clone",
               "S3 mirror push", "S3 edit-push CSV"]:
        cells = []
        for r in s3:
            m = statistics.median(t[(op, "hypha", r)])
            cell = "%.2f s" % m
            if r != s3[0]:
                rt = (m - statistics.median(t[(op, "hypha", s3[0])])) / (r / 1000)
                cell += " (%.1f S3 RT)" % rt
            cells.append(cell)
        lines.append(f"| {names.get(op[3:], op[3:])} | " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
EOF
