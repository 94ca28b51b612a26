"""The helper and `git hypha` against a stock Hypha 0.21.137: no plugin, no remote API v1 (issue 16
items 1 and 2).

tests/hypha/run.sh starts that Hypha beside the plugin instance (scripts/hypha-services.sh with
HYPHA_TEST_PLUGIN=none) and points HYPHA_STOCK_ENV at its env file. Every test shares it: one
Hypha start for the module. The helper finds no remote API v1 there and hands each session to
git's own `git remote-http`, so what is checked is what a user meets: git's own smart-HTTP
features (depth, the non-fast-forward hint) and our errors for a missing repository and for
wrong, expired, read-only and missing tokens, none of which may put the token on a command line
(GIT_TRACE shows every child's argv) or in a message.

Fetches are the helper's own there (issue 23: Hypha answers each negotiation round of git's
fetch-pack with a pack): the tests from `test_fetch_` on run each fetch against Hypha and the
same fetch against `git daemon` serving a copy of the same repository, both through a relay
that counts the bytes, and bound Hypha's by a ratio of git daemon's.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from test_hypha import ROOT, Env


@pytest.fixture(scope="module")
def stock():
    path = Path(os.environ.get("HYPHA_STOCK_ENV", ROOT / "target/hypha-stock/env"))
    if not path.exists():
        pytest.skip(f"{path} missing: run tests/hypha/run.sh (it starts a stock Hypha)")
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line
    )


@pytest.fixture
def env(tmp_path, stock):
    return Env(tmp_path, stock)


def mint(secret: str, user: str, workspace: str, permission: str, expires_in: int) -> str:
    """A Hypha HS256 token (the claims hypha.core.auth writes), as tests/e2e/harness/hypha.rs."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    now = int(time.time())
    claims = {
        "iss": "https://amun.ai/",
        "sub": user,
        "aud": "https://amun-ai.eu.auth0.com/api/v2/",
        "iat": now,
        "exp": now + expires_in,
        "scope": f"ws:{workspace}#{permission} wid:{workspace}",
        "gty": "client-credentials",
        "https://amun.ai/roles": [],
        "https://amun.ai/email": None,
    }
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def seeded(env: Env, *flags: str) -> tuple:
    """A repository made by `git hypha create` on the stock server (nothing pushed yet), its
    `git_url` as Hypha's artifact manager answered it, and a local repository with one commit."""
    alias = env.new_alias()
    p = env.run(["git-hypha", "create", *flags, env.url(alias)])
    said = p.stderr.decode()
    assert "no remote API v1 on this server: git uses " in said, said
    git_url = said.rsplit("git uses ", 1)[1].split(")")[0]
    src = env.init("src")
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    env.commit(src, "one")
    return alias, git_url, src


def test_create_url_and_the_whole_round_trip(env):
    alias, git_url, src = seeded(env, "--public")
    # `git hypha url` prints the git_url Hypha's artifact manager gave for the repository.
    p = env.run(["git-hypha", "url", f"{env.ws}/{alias}"], env={"HYPHA_SERVER_URL": env.server})
    assert p.stdout.decode().splitlines() == [env.url(alias), git_url]

    env.git("tag", "-a", "v1", "-m", "release one", cwd=src)
    env.git("tag", "light", cwd=src)
    env.git("branch", "topic", cwd=src)
    env.commit(src, "two")
    p = env.git("push", "-v", "origin", "main", "topic", "--tags", cwd=src)
    assert f"using Hypha's smart HTTP at {git_url}" in p.stderr.decode()

    clone = env.tmp / "clone"
    env.git("clone", "-q", env.url(alias), str(clone))
    env.git("fsck", "--strict", "--no-dangling", cwd=clone)
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)
    assert env.out("rev-parse", "origin/topic", cwd=clone) == env.out("rev-parse", "topic", cwd=src)
    assert env.local_refs(clone, "refs/tags/") == env.local_refs(src, "refs/tags/")

    third = env.commit(src, "three")
    env.git("push", "-q", "origin", "main", ":topic", ":refs/tags/light", cwd=src)
    env.git("fetch", "-q", "--prune", "--prune-tags", "origin", cwd=clone)
    assert env.out("rev-parse", "origin/main", cwd=clone) == third
    assert set(env.local_refs(clone, "refs/remotes/")) == {
        "refs/remotes/origin/HEAD",
        "refs/remotes/origin/main",
    }
    assert set(env.local_refs(clone, "refs/tags/")) == {"refs/tags/v1"}
    # `--public` became Hypha's `permissions: {"*": "r"}`: anyone reads, without a token.
    p = env.run(["git", "ls-remote", env.url(alias)], env={"HYPHA_TOKEN": ""})
    assert f"{third}\trefs/heads/main" in p.stdout.decode()
    # Compaction is ours only: one line that says so, not a bare HTTP status.
    p = env.run(["git-hypha", "gc", env.url(alias)], check=False)
    err = p.stderr.decode()
    assert p.returncode != 0 and "needs remote API v1" in err, err
    assert len([l for l in err.splitlines() if l.startswith("error:")]) == 1, err


def test_depth_and_git_own_non_fast_forward_hint(env):
    alias, _, src = seeded(env)
    env.commit(src, "two")
    env.commit(src, "three")
    env.git("push", "-q", "origin", "main", cwd=src)
    shallow = env.tmp / "shallow"
    env.git("clone", "-q", "--depth", "1", env.url(alias), str(shallow))
    assert env.out("rev-list", "--count", "HEAD", cwd=shallow) == "1"
    assert (shallow / ".git" / "shallow").exists()

    env.git("reset", "-q", "--hard", "HEAD~1", cwd=src)
    env.commit(src, "diverged", "other.txt")
    p = env.git("push", "origin", "main", cwd=src, check=False)
    err = p.stderr.decode()
    assert p.returncode != 0
    assert "[rejected]" in err and "(non-fast-forward)" in err, err
    assert "hint: Updates were rejected because the tip of your current branch is behind" in err


def test_tokens_give_clear_errors_and_stay_off_command_lines(env, stock):
    alias, _, src = seeded(env)
    env.git("push", "-q", "origin", "main", cwd=src)
    secret = stock["HYPHA_TEST_JWT_SECRET"]
    reader = mint(secret, "git-reader", env.ws, "r", 3600)
    url = env.url(alias)

    def git(*args, token, cwd=src):
        # Closed stdin and no terminal prompt: a CI job; GIT_TRACE logs every child's argv.
        return env.run(
            ["git", *args],
            cwd=cwd,
            env={"HYPHA_TOKEN": token, "GIT_TRACE": "1"},
            check=False,
            stdin=b"",
        )

    def fails_with(p, *words):
        err = p.stderr.decode()
        assert p.returncode != 0, err
        for word in words:
            assert word in err, err
        for token in (env.token, reader):
            assert token not in err

    p = git("ls-remote", url, token=env.token)
    assert p.returncode == 0 and env.token not in p.stderr.decode()
    assert "remote-http" in p.stderr.decode()  # the handoff, traced with its argv

    fails_with(git("ls-remote", url, token="not-a-token"), "authentication failed", "rejected")
    expired = mint(secret, "git-tester", env.ws, "a", -60)
    fails_with(git("ls-remote", url, token=expired), "authentication failed", "expired at")
    fails_with(git("push", url, "main", token=""), "no token found", "git hypha login")
    fails_with(git("ls-remote", env.url("missing-" + alias), token=env.token), "not found")

    # A read-only token reads, and is refused a push even when there is nothing to send.
    clone = env.tmp / "reader"
    p = git("clone", "-q", url, str(clone), token=reader, cwd=env.tmp)
    assert p.returncode == 0, p.stderr.decode()
    fails_with(git("push", url, "main", token=reader), "permission denied", "can read but not push")
    env.commit(src, "more")
    fails_with(git("push", url, "main", token=reader), "permission denied")


def test_login_stores_a_token_the_fallback_uses(env):
    alias, _, src = seeded(env)
    e = dict(env.env)
    del e["HYPHA_TOKEN"]
    login = subprocess.Popen(
        ["git-hypha", "login", env.server, "--timeout", "60"],
        cwd=env.tmp,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    key = None
    for raw in login.stderr:
        line = raw.decode().strip()
        if "key=" in line:
            key = line.split("key=", 1)[1].split("&")[0]
            break
    assert key, "git hypha login printed no login URL"
    req = urllib.request.Request(
        f"{env.server}/public/services/hypha-login/report",
        data=json.dumps({"key": key, "token": env.token}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    rest = login.stderr.read().decode()
    assert login.wait(timeout=60) == 0, rest
    assert env.token not in rest

    # No HYPHA_TOKEN, no credential helper: the stored login reaches git's smart HTTP.
    env.run(["git", "push", "-q", "origin", "main"], cwd=src, env={"HYPHA_TOKEN": ""})
    p = env.run(["git", "ls-remote", env.url(alias)], env={"HYPHA_TOKEN": ""})
    head = env.out("rev-parse", "HEAD", cwd=src)
    assert f"{head}\trefs/heads/main" in p.stdout.decode()


class Relay:
    """A TCP relay on 127.0.0.1 in front of `target` that counts the bytes each way."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.sent = 0
        self.received = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for a, b, field in ((client, server, "sent"), (server, client, "received")):
                threading.Thread(target=self._pipe, args=(a, b, field), daemon=True).start()

    def _pipe(self, a, b, field):
        try:
            while data := a.recv(65536):
                with self.lock:
                    setattr(self, field, getattr(self, field) + len(data))
                b.sendall(data)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def take(self) -> tuple:
        """(sent, received) since the last call."""
        with self.lock:
            out = (self.sent, self.received)
            self.sent = self.received = 0
        return out

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`git daemon` over a directory of bare repositories, behind a counting relay: the
    reference every fetch from Hypha is held against."""
    root = tmp_path_factory.mktemp("daemon")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={root}", "--export-all",
         "--listen=127.0.0.1", f"--port={port}"],
        env={"PATH": os.environ["PATH"], "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1"},
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    relay = Relay("127.0.0.1", port)
    yield root, relay
    relay.close()
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def hypha_relay(env):
    host, port = env.server.split("://", 1)[1].split(":")
    relay = Relay(host, int(port))
    yield relay
    relay.close()


def history(env, path: Path, n: int, start: int = 1, branch: str = "main") -> None:
    """`n` commits on `branch` (after what it holds), two files, one of them changed by each,
    written by `git fast-import` (2000 commits in about a second)."""
    lines = []
    for i in range(start, start + n):
        lines.append(
            f"commit refs/heads/{branch}\ncommitter T <t@e> {1700000000 + i} +0000\n"
            f"data {len(f'c{i}')}\nc{i}\n"
        )
        if i == start and start > 1:
            lines.append(f"from refs/heads/{branch}^0\n")
        blob = f"{i}\n"
        lines.append(f"M 100644 inline n{i % 2}.txt\ndata {len(blob)}\n{blob}\n")
    env.git("fast-import", "--quiet", cwd=path, stdin="".join(lines).encode())
    env.git("reset", "-q", "--hard", cwd=path)


class Pair:
    """One repository on the stock Hypha and its copy in `git daemon`'s directory, each behind
    a counting relay: `fetch` runs the same command in a clone of each."""

    def __init__(self, env, daemon, hypha_relay, src: Path):
        self.env, self.src = env, src
        root, self.daemon_relay = daemon
        self.hypha_relay = hypha_relay
        alias = env.new_alias()
        env.run(["git-hypha", "create", env.url(alias)])
        self.hypha_url = f"hypha::http://127.0.0.1:{hypha_relay.port}/{env.ws}/{alias}"
        self.bare = root / f"{alias}.git"
        env.git("clone", "-q", "--bare", "--no-local", str(src), str(self.bare))
        self.daemon_url = f"git://127.0.0.1:{self.daemon_relay.port}/{alias}.git"
        self.push("--all")

    def push(self, *args):
        self.env.git("push", "-q", self.hypha_url, *args, cwd=self.src)
        self.env.git("push", "-q", str(self.bare), *args, cwd=self.src)

    def clone(self, name: str, *args) -> tuple:
        a, b = self.env.tmp / f"{name}-hypha", self.env.tmp / f"{name}-daemon"
        self.env.git("clone", "-q", *args, self.hypha_url, str(a))
        self.env.git("clone", "-q", *args, self.daemon_url, str(b))
        return a, b

    def fetch(self, a: Path, b: Path, *args, git="git") -> tuple:
        """The same command in both clones: (Hypha's stderr, (sent, received) bytes of each)."""
        self.hypha_relay.take()
        p = self.env.run([git, *args], cwd=a)
        hypha = self.hypha_relay.take()
        self.daemon_relay.take()
        self.env.run([git, *args], cwd=b)
        daemon = self.daemon_relay.take()
        return p.stderr.decode(), hypha, daemon


def remote_refs(env, repo: Path) -> dict:
    return env.local_refs(repo, "refs/remotes/")


def assert_few_bytes(said: str, hypha: tuple, daemon: tuple, ratio: float, requests: int = 4):
    """Hypha's answer, received through the helper and git remote-http (the API probe, the
    permission check, info/refs, upload-pack: HTTP headers on each), within `ratio` of git
    daemon's plus 2 KiB of headers; what was sent within 1.5 KiB a request of git daemon's
    (the token rides in each request's headers, the haves in the upload-pack ones)."""
    note = f"hypha {hypha}, git daemon {daemon} (sent, received)\n{said}"
    assert hypha[1] <= ratio * daemon[1] + 2048, note
    assert hypha[0] <= daemon[0] + 1536 * requests, note
    print(note)


@pytest.mark.parametrize("n", [10, 100, 2000])
def test_fetch_of_one_pushed_commit_takes_few_bytes(env, daemon, hypha_relay, n):
    """The issue's case: a clone, one commit pushed from elsewhere, `git fetch`: stock git
    fails there once the history holds 16 commits (`expected ACK/NAK, got '?PACK'`)."""
    src = env.init("src")
    history(env, src, n)
    pair = Pair(env, daemon, hypha_relay, src)
    a, b = pair.clone("clone")
    assert env.out("rev-list", "--count", "HEAD", cwd=a) == str(n)
    new = env.commit(src, "pushed elsewhere", "n0.txt")
    pair.push("main")
    said, hypha, git_daemon = pair.fetch(a, b, "fetch", "-v")
    assert env.out("rev-parse", "origin/main", cwd=a) == new
    assert remote_refs(env, a) == remote_refs(env, b)
    env.git("fsck", "--no-dangling", cwd=a)
    # One request, and only the new commit's snapshot: commit, tree, two blobs.
    assert "fetched 4 objects" in said and "in 1 request" in said, said
    assert_few_bytes(said, hypha, git_daemon, 3)


def test_fetch_of_several_branches_and_pull(env, daemon, hypha_relay):
    """Several branches move at once: new commits on two, a branch started 20 commits back, an
    amended tip, a deleted branch; then `git pull --rebase` over a local commit."""
    src = env.init("src")
    history(env, src, 100)
    for i, back in enumerate([0, 3, 9, 17, 40]):
        env.git("branch", f"b{i}", f"main~{back}", cwd=src)
    pair = Pair(env, daemon, hypha_relay, src)
    a, b = pair.clone("clone")
    env.commit(src, "main moves", "n0.txt")
    for branch in ["b1", "b2"]:
        env.git("checkout", "-q", branch, cwd=src)
        env.commit(src, f"{branch} moves", "n1.txt")
    env.git("checkout", "-q", "-b", "fresh", "main~20", cwd=src)
    env.commit(src, "fresh branch", "n2.txt")
    env.git("checkout", "-q", "b3", cwd=src)
    env.git("commit", "-q", "--amend", "-m", "amended", cwd=src)
    env.git("checkout", "-q", "main", cwd=src)
    env.git("branch", "-D", "b4", cwd=src)
    pair.push("--prune", "+refs/heads/*:refs/heads/*")

    said, hypha, git_daemon = pair.fetch(a, b, "fetch", "-v", "--prune")
    assert remote_refs(env, a) == remote_refs(env, b)
    assert "refs/remotes/origin/b4" not in remote_refs(env, a)
    env.git("fsck", "--no-dangling", cwd=a)
    assert "in 1 request" in said, said
    assert_few_bytes(said, hypha, git_daemon, 4)

    # A local commit, then `git pull --rebase` over one more pushed commit.
    env.commit(a, "local work", "local.txt")
    upstream = env.commit(src, "main moves again", "n0.txt")
    pair.push("main")
    env.git("pull", "-q", "--rebase", cwd=a)
    assert env.out("rev-parse", "HEAD~1", cwd=a) == upstream
    assert env.out("log", "-1", "--format=%s", cwd=a) == "local work"


def test_fetch_pull_and_unshallow_after_a_shallow_clone(env, daemon, hypha_relay):
    """`git clone --depth 1`, then fetch and pull what was pushed since, then `--unshallow`
    (which Hypha alone cannot do: it never says `unshallow`). The fetch and the pull with
    Debian's git 2.39 where it is installed (the rest of the module runs git 2.47)."""
    old_git = "/usr/bin/git" if Path("/usr/bin/git").exists() else "git"
    src = env.init("src")
    history(env, src, 100)
    pair = Pair(env, daemon, hypha_relay, src)
    a, b = pair.clone("shallow", "--depth", "1")
    assert env.out("rev-list", "--count", "HEAD", cwd=a) == "1"
    new = env.commit(src, "pushed elsewhere", "n0.txt")
    pair.push("main")
    said, hypha, git_daemon = pair.fetch(a, b, "fetch", "-v", git=old_git)
    assert env.out("rev-parse", "origin/main", cwd=a) == new
    assert (a / ".git" / "shallow").read_text() == (b / ".git" / "shallow").read_text()
    assert_few_bytes(said, hypha, git_daemon, 3)
    env.run([old_git, "pull", "-q", "--ff-only"], cwd=a)
    assert env.out("rev-parse", "HEAD", cwd=a) == new
    assert env.out("rev-list", "--count", "HEAD", cwd=a) == "2"

    env.git("fetch", "-q", "--unshallow", cwd=a)
    assert not (a / ".git" / "shallow").exists()
    assert env.out("rev-list", "--count", "HEAD", cwd=a) == "101"
    env.git("fsck", "--no-dangling", cwd=a)


def test_fetch_of_a_long_new_history_in_steps(env, daemon, hypha_relay):
    """1000 new commits at once: Hypha's walk recurses once per commit and fails (HTTP 500)
    past about 950, so the helper takes 900 through `deepen` and the rest with its haves,
    and receives the new commits only, none of the 100 it had."""
    src = env.init("src")
    history(env, src, 100)
    pair = Pair(env, daemon, hypha_relay, src)
    a, b = pair.clone("clone")
    old = env.out("rev-parse", "main", cwd=src)
    history(env, src, 1000, start=101)
    pair.push("main")
    said, hypha, git_daemon = pair.fetch(a, b, "fetch", "-v")
    assert env.out("rev-parse", "origin/main", cwd=a) == env.out("rev-parse", "main", cwd=src)
    env.git("fsck", "--no-dangling", cwd=a)
    assert "900 commits at a time" in said, said
    # What git daemon sends, object for object (each new commit changes one of two files):
    # the first new commit's unchanged blob is the only extra.
    new_objects = len(env.out("rev-list", "--objects", "main", "--not", old, cwd=src).splitlines())
    got = int(re.search(r"fetched (\d+) objects", said).group(1))
    assert new_objects <= got <= new_objects + 2, said
    assert_few_bytes(said, hypha, git_daemon, 4, requests=6)
