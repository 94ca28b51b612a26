#!/usr/bin/env bash
# Round trips far from the server through a real Hypha with the plugin (issue 25: "the Hypha
# plugin path with the same numbers"), next to `git hypha serve` on local disk, in one run.
#
# Hypha 0.21.137 with hypha_git_remote (scripts/hypha-services.sh, its S3 on s3s-fs) and a
# `git hypha serve --root` each sit behind bench/relay.py, which delays every chunk DELAY ms
# each way and logs every request (RELAY_LOG). The helper's presigned transfers go where the
# server points them: `git hypha serve` hands out its own `/_store` URLs (--public-url is its
# relay, so they cross the same relay), the plugin hands out s3s-fs's URLs, which a client
# fetches from Hypha's S3 directly. Those are relayed too, by a third relay acting as the
# client's HTTP proxy (`http_proxy`, with the S3 endpoint at 127.0.0.1 and the servers named
# `localhost`, which NO_PROXY exempts): a proxied request keeps its Host header, so the
# SigV4 signature still holds. The three relays log into one file on one clock (RELAY_EPOCH).
#
# For each path, RUNS times (the paths interleaved), on a new repository of COMMITS commits:
# ls-remote, no-op fetch, push of one commit, fetch of that commit into another clone, clone.
# Requests that reach a relay within GAP ms of each other went out together (one "wave"); a
# wave waits for the answers of the one before, so each wave is one round trip of the client's. A new connection costs one more
# round trip in the relay, as TCP's handshake does: the table counts connections apart from
# waves (times at DELAY include both). Nothing is relayed between Hypha, its plugin's child
# and s3s-fs: the server's own S3 requests are bench/s3-waves.sh's subject.
#
#   bench/far-hypha.sh [OUT.md]     BIN=target/debug (round trips do not depend on the build)
#                                   DELAY=100 GAP=60 COMMITS=20 RUNS=3
#
# Everything it starts (Hypha, s3s-fs, the server, the relays) is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN=$(cd "${BIN:-$root/target/debug}" && pwd)
DELAY=${DELAY:-100}
GAP=${GAP:-60}
COMMITS=${COMMITS:-20}
RUNS=${RUNS:-3}
out=${1:-}
[[ -z $out || $out == /* ]] || out=$PWD/$out
die() { echo "far-hypha: $*" >&2; exit 1; }
note() { echo "far-hypha: $*" >&2; }
{ [ -x "$BIN/git-remote-hypha" ] && [ -x "$BIN/git-hypha" ]; } || die "no helper in $BIN (cargo build --bins)"

# Hypha's venv and s3s-fs stay in the user's cache, not under the scratch HOME.
export HYPHA_TOOLS_DIR=${HYPHA_TOOLS_DIR:-$HOME/.cache/hypha-git}
work=$(mktemp -d /tmp/far-hypha.XXXXXX)
hypha_env=$work/hypha/env
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$root/scripts/hypha-services.sh" stop "$hypha_env" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${FAR_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note "starting Hypha with the plugin (its child: $BIN/git-hypha)"
HYPHA_GIT_BIN=$BIN/git-hypha "$root/scripts/hypha-services.sh" start "$hypha_env" \
  >"$work/hypha-start.log" 2>&1 || die "Hypha did not start: $(tail -5 "$work/hypha-start.log")"
svc() { sed -n "s/^$1=//p" "$hypha_env"; }
hypha_port=$(svc HYPHA_TEST_SERVER)
hypha_port=${hypha_port##*:}
s3_port=$(svc HYPHA_TEST_S3_URL)
s3_port=${s3_port##*:}
hypha_ws=$(svc HYPHA_TEST_WS)
hypha_token=$(svc HYPHA_TEST_TOKEN)

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
export RELAY_LOG=$work/requests.log RELAY_EPOCH
RELAY_EPOCH=$(date +%s.%N)
relay() { # relay TARGET_PORT NAME: starts a relay, its port in $relay_port
  local f=$work/relay-$2.ports
  python3 "$here/relay.py" "$1" "$f" "$DELAY" >/dev/null 2>>"$work/relay-$2.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$f" ] && { relay_port=$(cut -d' ' -f1 "$f"); return; }
    sleep 0.05
  done
  die "relay $2 did not start"
}
relay "$hypha_port" hypha
hypha_relay=$relay_port
relay "$s3_port" s3
s3_relay=$relay_port
serve_port=$(free_port)
relay "$serve_port" serve
serve_relay=$relay_port
serve_secret="far-hypha-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
HYPHA_JWT_SECRET=$serve_secret "$BIN/git-hypha" serve --root "$work/store" \
  --listen "127.0.0.1:$serve_port" --public-url "http://localhost:$serve_relay" \
  >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
wait_port "$serve_port" "git hypha serve"
serve_token=$(HYPHA_JWT_SECRET=$serve_secret "$BIN/git-hypha" token --workspace far --permission rw)

# The history both get: COMMITS commits, each a new small file.
src=$work/src
git init -q -b main "$src"
for i in $(seq "$COMMITS"); do
  echo "line $i" >"$src/f$i.txt"
  git -C "$src" add -A
  git -C "$src" commit -qm "c$i"
done

times=$work/times.tsv
: >"$times"
mark() { echo "=== $*" >>"$RELAY_LOG"; }
now() { date +%s.%N; }
timed() { # timed PATH OP RUN CMD...: one logged and timed run
  local path=$1 op=$2 run=$3 t0 t1
  shift 3
  mark "$path|$op|$run"
  t0=$(now)
  "$@" >/dev/null 2>"$work/last.err" || die "$op ($path) failed: $(cat "$work/last.err")"
  t1=$(now)
  mark end
  printf '%s\t%s\t%s\t%s\n' "$path" "$op" "$run" "$(echo "$t1 - $t0" | bc)" >>"$times"
}
ops() { # ops PATH URL RUN: the everyday operations on a new repository, after an unlogged setup
  local path=$1 url=$2 run=$3 d=$work/$1-$3
  mkdir -p "$d"
  mark "$path|setup|$run"
  "$BIN/git-hypha" create "$url" >/dev/null 2>"$work/last.err" || die "create ($path): $(cat "$work/last.err")"
  git -C "$src" push -q "$url" main 2>"$work/last.err" || die "push ($path): $(cat "$work/last.err")"
  git clone -q "$url" "$d/w"
  git clone -q "$url" "$d/o"
  mark end
  timed "$path" "ls-remote" "$run" git ls-remote "$url"
  timed "$path" "no-op fetch" "$run" git -C "$d/w" fetch -q origin
  echo "far $path $run" >>"$d/w/f1.txt"
  git -C "$d/w" commit -qam "far $path $run"
  timed "$path" "push 1 commit" "$run" git -C "$d/w" push -q origin main
  timed "$path" "fetch 1 commit" "$run" git -C "$d/o" fetch -q origin
  timed "$path" "clone" "$run" git clone -q "$url" "$d/c"
  [ "$(git -C "$d/c" rev-parse HEAD)" = "$(git -C "$d/w" rev-parse HEAD)" ] || die "$path: the clone is not at the pushed commit"
  rm -rf "$d"
}

for run in $(seq "$RUNS"); do
  note "run $run of $RUNS: git hypha serve (local disk) through a ${DELAY} ms relay each way"
  HYPHA_TOKEN=$serve_token ops serve "hypha::http://localhost:$serve_relay/far/repo$run" "$run"
  note "run $run of $RUNS: Hypha with the plugin through a ${DELAY} ms relay each way, its S3 through another"
  HYPHA_TOKEN=$hypha_token http_proxy=http://127.0.0.1:$s3_relay HTTP_PROXY=http://127.0.0.1:$s3_relay \
    no_proxy=localhost NO_PROXY=localhost \
    ops hypha "hypha::http://localhost:$hypha_relay/$hypha_ws/repo$run" "$run"
done

python3 - "$RELAY_LOG" "$times" "$GAP" "$DELAY" "$COMMITS" "$RUNS" "$out" <<'PY'
import re, statistics, sys
from collections import defaultdict
log, times, gap, delay, commits, runs, out = sys.argv[1:8]
gap, delay, runs = float(gap), int(delay), int(runs)
sections, cur = defaultdict(list), None
for line in open(log):
    if line.startswith("=== "):
        cur = None if line[4:].strip() == "end" else tuple(line[4:].strip().split("|"))
    elif cur:
        ms, conn, rest = line.split(" ", 2)
        sections[cur].append((float(ms), conn, rest.strip()))
secs = defaultdict(list)
for line in open(times):
    path, op, run, s = line.rstrip("\n").split("\t")
    secs[(path, op)].append(float(s))

def name(what):
    """(kind, short name) of a logged request 'METHOD TARGET'."""
    method, target = what.split(" ", 1)
    key = re.sub(r"[?].*$", "", target).rsplit("/", 1)[-1][:17]
    if target.startswith("http://"):  # through the proxy: Hypha's S3 (s3s-fs), presigned
        return "s3", f"{method} S3 {key}"
    if "/_store/" in target:  # git hypha serve's own presigned URLs
        return "store", f"{method} /_store {key}"
    m = re.search(r"/remote/v1/([\w-]+)", target)
    if m:
        return "api", m.group(1)
    return "other", f"{method} {re.sub(r'[?].*$', '', target)}"

def waves(reqs):
    w = []
    for r in sorted(reqs):
        if not w or r[0] - w[-1][-1][0] > gap:
            w.append([])
        w[-1].append(r)
    return w

def span(values):
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"

ops = ["ls-remote", "no-op fetch", "push 1 commit", "fetch 1 commit", "clone"]
paths = [("serve", "`git hypha serve`"), ("hypha", "Hypha+plugin")]
label = {"api": "API", "store": "/_store", "s3": "S3", "other": "other"}
inside, between = [0.0], []  # the largest gap inside a wave, the gaps between waves
for reqs in sections.values():
    w = waves(reqs)
    for wave in w:
        inside += [b[0] - a[0] for a, b in zip(wave, wave[1:])]
    between += [b[0][0] - a[-1][0] for a, b in zip(w, w[1:])]
rows = ["| operation | `git hypha serve` waves | Hypha+plugin waves | requests, serve | "
        "requests, Hypha+plugin | connections, serve / Hypha | time at %d ms, serve / Hypha |"
        % (2 * delay), "|---|---:|---:|---|---|---:|---:|"]
detail = []
for op in ops:
    w_cells, r_cells, c_cells, t_cells = [], [], [], []
    for path, title in paths:
        nw, napi, nreq, kinds_seen, nconn = [], [], [], set(), []
        for run in range(1, runs + 1):
            reqs = sections.get((path, op, str(run)), [])
            w = waves(reqs)
            nw.append(len(w))
            napi.append(len(waves([r for r in reqs if name(r[2])[0] == "api"])))
            kinds = defaultdict(int)
            for r in reqs:
                kinds[name(r[2])[0]] += 1
            kinds_seen.add(" + ".join(f"{n} {label[k]}" for k, n in sorted(kinds.items())))
            nreq.append(len(reqs))
            # Each relay numbers its own connections; the S3 one is the proxy.
            nconn.append(len({(name(r[2])[0] == "s3", r[1]) for r in reqs}))
            detail.append((title, op, run, w))
        cell = span(nw)
        if napi != nw:
            cell += f" ({span(napi)} API)"
        w_cells.append(cell)
        r_cells.append(f"{span(nreq)} ({' / '.join(sorted(kinds_seen))})")
        c_cells.append(span(nconn))
        t_cells.append("%.2f s" % statistics.median(secs[(path, op)]))
    rows.append(f"| {op} | {w_cells[0]} | {w_cells[1]} | {r_cells[0]} | {r_cells[1]} | "
                f"{c_cells[0]} / {c_cells[1]} | {t_cells[0]} / {t_cells[1]} |")
text = [f"Round trip {2 * delay} ms (each relay delays {delay} ms each way); a wave is the requests "
        f"within {gap:g} ms of each other; a new repository of {commits} commits per run, {runs} "
        "runs (waves and requests as min-max over the runs, times as medians); the push and the "
        "fetch move one commit. Connections: new TCP connections through the relays (each costs "
        "one more round trip there, as a handshake does).", "",
        f"Check of the wave rule over every logged command: the largest gap inside a wave "
        f"{max(inside):.0f} ms, the smallest between waves {min(between, default=0):.0f} ms.", ""]
text += rows + ["", "Each wave's requests, run 1 (the other runs differ only if the table shows a range):", ""]
for title, op, run, w in detail:
    if run != 1:
        continue
    text.append(f"- {title}, {op}: " + "; ".join(
        f"{i}. " + ", ".join(name(r[2])[1] for r in wave) for i, wave in enumerate(w, 1)))
text = "\n".join(text) + "\n"
print(text)
if out:
    open(out, "w").write(text)
PY
