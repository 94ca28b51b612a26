"""The helper and `git hypha` against a stock Hypha 0.21.137: no plugin, no remote API v1 (issue 16
items 1 and 2).

tests/hypha/run.sh starts that Hypha beside the plugin instance (scripts/hypha-services.sh with
HYPHA_TEST_PLUGIN=none) and points HYPHA_STOCK_ENV at its env file. Every test shares it: one
Hypha start for the module. The helper finds no remote API v1 there and hands each session to
git's own `git remote-http`, so what is checked is what a user meets: git's own smart-HTTP
features (depth, the non-fast-forward hint) and our errors for a missing repository and for
wrong, expired, read-only and missing tokens, none of which may put the token on a command line
(GIT_TRACE shows every child's argv) or in a message.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
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
