#!/usr/bin/env bash
# Benchmark rows for LFS through a real Hypha with the plugin (issue 22), side by side in one
# run: the plugin's LFS endpoint (our transfer agent: parts, ranges) against Hypha's own
# (git-lfs's `basic`), both reached by `hypha::` clones of one repository:
#   1. one LFS batch request (`download` of a stored object), BENCH_BATCHES times each,
#      alternating: what the plugin's hop to its child costs per LFS request;
#   2. one object of BENCH_HYPHA_MIB pushed, then fetched (`git lfs fetch`) by a fresh clone,
#      BENCH_RUNS rounds, alternating.
# Prints medians and ratios (ours / Hypha's) as Markdown on stdout; progress on stderr.
#
#   bench/lfs-hypha.sh
#
# Starts its own Hypha with the plugin on moto (scripts/hypha-services.sh; s3s-fs cannot start
# multipart uploads at Hypha's LFS key lengths) and stops it. The binaries are target/release's
# if built, else target/debug's (the table says which: a debug child hashes objects at
# opt-level 0, which costs our uploads, whose completion hashes, and not Hypha's).
#
# Environment: BENCH_HYPHA_MIB=96, BENCH_RUNS=3, BENCH_BATCHES=30, BENCH_KEEP=1 keeps the
# scratch directory. Needs git, git-lfs, python3, and the venv scripts/hypha-services.sh makes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mib=${BENCH_HYPHA_MIB:-96}
runs=${BENCH_RUNS:-3}
batches=${BENCH_BATCHES:-30}
die() { echo "bench: $*" >&2; exit 1; }
for tool in git git-lfs python3; do command -v "$tool" >/dev/null || die "needs $tool"; done
for n in "$mib" "$runs" "$batches"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "sizes and counts are positive integers"; done

profile=debug
[[ -x $root/target/release/git-hypha && -x $root/target/release/git-remote-hypha ]] && profile=release
bin=$root/target/$profile
[[ -x $bin/git-hypha ]] || die "build first: cargo build --bins"

work=$(mktemp -d "${TMPDIR:-/tmp}/hypha-bench-lfs-hypha.XXXXXX")
env_file=$work/hypha/env
cleanup() {
  HYPHA_TEST_S3=moto "$root/scripts/hypha-services.sh" stop "$env_file" >&2 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/hypha"
HYPHA_TEST_S3=moto HYPHA_GIT_BIN=$bin/git-hypha "$root/scripts/hypha-services.sh" start "$env_file" >&2
venv=$(sed -n 's/^HYPHA_TEST_VENV=//p' "$env_file")
product="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"

"$venv/bin/python" - "$env_file" "$work" "$bin" "$mib" "$runs" "$batches" "$profile" "$product" <<'EOF'
import base64, json, os, statistics, subprocess, sys, time, urllib.request, uuid

env_file, work, bin_dir, mib, runs, batches, profile, product = sys.argv[1:]
mib, runs, batches = int(mib), int(runs), int(batches)
svc = dict(l.split("=", 1) for l in open(env_file).read().splitlines() if "=" in l)
server, ws, token = svc["HYPHA_TEST_SERVER"], svc["HYPHA_TEST_WS"], svc["HYPHA_TEST_TOKEN"]
home = os.path.join(work, "home")
os.makedirs(home)
env = {
    "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0", "HYPHA_TOKEN": token, "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com",
}

def note(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)

def run(*args, cwd=work, extra=None):
    p = subprocess.run(args, cwd=cwd, env=dict(env, **(extra or {})), capture_output=True)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").replace(token, "<token>")
        sys.exit(f"bench: {args[:3]} failed in {cwd}:\n{err}")
    return p.stdout.decode().strip()

def timed(*args, cwd=work, extra=None):
    t = time.monotonic()
    run(*args, cwd=cwd, extra=extra)
    return time.monotonic() - t

def basic(repo):
    """Hypha's endpoint set by hand, as an older helper recorded it (with credentials at once:
    Hypha answers an anonymous download of a private repository 403, not 401)."""
    run("git", "config", "remote.origin.lfsurl", hyphas, cwd=repo)
    run("git", "config", f"lfs.{hyphas}.access", "basic", cwd=repo)

run("git", "lfs", "install", "--skip-repo")
alias = "bench" + uuid.uuid4().hex[:8]
url = f"hypha::{server}/{ws}/{alias}"
run("git-hypha", "create", url)
hyphas = f"{server}/{ws}/git/{alias}.git/info/lfs"
ours = f"{server}/{ws}/git/{alias}/remote/v1/lfs"

# One source; each round pushes a new object by each transfer.
src = os.path.join(work, "src")
run("git", "init", "-q", "-b", "main", src)
run("git", "lfs", "track", "*.bin", cwd=src)
run("git", "remote", "add", "origin", url, cwd=src)
rows = {"ours": {"push": [], "fetch": []}, "basic": {"push": [], "fetch": []}}
oids = []
for r in range(runs):
    for kind in ("ours", "basic") if r % 2 == 0 else ("basic", "ours"):
        name = f"{kind}-{r}.bin"
        with open(os.path.join(src, name), "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        run("git", "add", name, cwd=src)
        run("git", "commit", "-q", "-m", name, cwd=src)
        # The helper records ours at the push's listing (none recorded); Hypha's, set by
        # hand, it leaves alone.
        subprocess.run(["git", "config", "--unset-all", "remote.origin.lfsurl"], cwd=src, env=env)
        if kind == "basic":
            basic(src)
        rows[kind]["push"].append(timed("git", "push", "-q", "origin", "main", cwd=src))
        lfsurl = run("git", "config", "remote.origin.lfsurl", cwd=src)
        assert lfsurl == (ours if kind == "ours" else hyphas), (kind, lfsurl)
        note(f"round {r + 1}: pushed {name}")
    for kind in ("ours", "basic") if r % 2 == 0 else ("basic", "ours"):
        clone = os.path.join(work, f"clone-{kind}-{r}")
        run("git", "clone", "-q", url, clone, extra={"GIT_LFS_SKIP_SMUDGE": "1"})
        if kind == "basic":
            basic(clone)
        rows[kind]["fetch"].append(
            timed("git", "lfs", "fetch", "origin", "main", "-I", f"{kind}-{r}.bin", cwd=clone)
        )
        subprocess.run(["rm", "-rf", clone])
        note(f"round {r + 1}: fetched by {kind}")

# Batch latency: a download batch of one stored object, at each endpoint.
oid = run("git", "lfs", "ls-files", "-l", cwd=src).split()[0]
size = os.path.getsize(os.path.join(src, ".git/lfs/objects", oid[:2], oid[2:4], oid))
body = json.dumps({"operation": "download", "transfers": ["hypha", "basic"],
                   "objects": [{"oid": oid, "size": size}]}).encode()
auth = "Basic " + base64.b64encode(f"git:{token}".encode()).decode()
lat = {"ours": [], "basic": []}
for i in range(batches):
    for kind in ("ours", "basic") if i % 2 == 0 else ("basic", "ours"):
        base = ours if kind == "ours" else hyphas
        req = urllib.request.Request(f"{base}/objects/batch", data=body, method="POST", headers={
            "Content-Type": "application/vnd.git-lfs+json", "Authorization": auth})
        t = time.monotonic()
        with urllib.request.urlopen(req, timeout=60) as res:
            answer = json.loads(res.read())
        lat[kind].append(time.monotonic() - t)
        assert "download" in answer["objects"][0]["actions"], answer

med = statistics.median
print(f"LFS through Hypha 0.21.137 with the plugin (moto), {product}, {profile} build; "
      f"one {mib} MiB object per round, {runs} rounds, {batches} batches; medians\n")
print("| operation | plugin's endpoint (our agent) | Hypha's endpoint (basic) | ours / Hypha's |")
print("|---|---:|---:|---:|")
for op in ("push", "fetch"):
    a, b = med(rows["ours"][op]), med(rows["basic"][op])
    print(f"| {op} {mib} MiB | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |")
a, b = med(lat["ours"]), med(lat["basic"])
print(f"| one download batch | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {a / b:.2f}x |")
EOF
