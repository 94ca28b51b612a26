"""End-to-end tests against a real Hypha 0.21.137 with the hypha_git_remote plugin (issue 6).

Real git drives the real git-remote-hypha (target/debug or target/release, first on PATH).
Hypha and moto are started by scripts/hypha-services.sh; tests/hypha/run.sh does that and
points HYPHA_SERVICES_ENV at the env file it wrote.

Every git runs hermetically: HOME in a temp dir, no system config, fixed identity and dates,
no terminal prompts. A failing command prints its argv, directory, status, stdout and stderr
(the token is masked).
"""

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_env(path: "Path | None" = None) -> dict:
    path = path or Path(os.environ.get("HYPHA_SERVICES_ENV", ROOT / "target/hypha-services/env"))
    if not path.exists():
        pytest.skip(f"{path} missing: run scripts/hypha-services.sh start (or tests/hypha/run.sh)")
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def _helper_dir() -> Path:
    for profile in ("debug", "release"):
        d = ROOT / "target" / profile
        if (d / "git-remote-hypha").exists() and (d / "git-hypha").exists():
            return d
    pytest.fail("build first: cargo build (git-remote-hypha and git-hypha in target/debug)")


class Env:
    """A hermetic place to run git with the helper on PATH and a token in HYPHA_TOKEN."""

    def __init__(self, tmp: Path, svc: dict):
        self.tmp = tmp
        self.svc = svc
        self.server = svc["HYPHA_TEST_SERVER"]
        self.ws = svc["HYPHA_TEST_WS"]
        self.token = svc["HYPHA_TEST_TOKEN"]
        home = tmp / "home"
        home.mkdir()
        self.env = {
            "PATH": f"{_helper_dir()}:{os.environ['PATH']}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Tester",
            "GIT_AUTHOR_EMAIL": "tester@example.com",
            "GIT_COMMITTER_NAME": "Tester",
            "GIT_COMMITTER_EMAIL": "tester@example.com",
            "GIT_AUTHOR_DATE": "1700000000 +0000",
            "GIT_COMMITTER_DATE": "1700000000 +0000",
            "HYPHA_TOKEN": self.token,
            "LANG": "C",
        }

    def run(self, args, cwd=None, check=True, env=None, stdin=None):
        e = dict(self.env, **(env or {}))
        cwd = cwd or self.tmp
        p = subprocess.run(args, cwd=cwd, env=e, input=stdin, capture_output=True, timeout=600)
        if check and p.returncode != 0:
            mask = lambda b: b.decode("utf-8", "replace").replace(
                self.token, "<token>"
            )  # noqa: E731
            pytest.fail(
                f"command failed: {[a.replace(self.token, '<token>') for a in args]}\n"
                f"cwd: {cwd}\nstatus: {p.returncode}\nstdout:\n{mask(p.stdout)}\nstderr:\n{mask(p.stderr)}"
            )
        return p

    def git(self, *args, cwd=None, check=True, stdin=None):
        return self.run(["git", *args], cwd=cwd, check=check, stdin=stdin)

    def out(self, *args, cwd=None) -> str:
        return self.git(*args, cwd=cwd).stdout.decode().strip()

    def new_alias(self) -> str:
        return "r" + uuid.uuid4().hex[:10]

    def url(self, alias: str) -> str:
        return f"hypha::{self.server}/{self.ws}/{alias}"

    def smart_url(self, alias: str) -> str:
        host = self.server.split("://", 1)[1]
        return f"http://git:{self.token}@{host}/{self.ws}/git/{alias}"

    def create(self, alias: str) -> None:
        self.run(["git-hypha", "create", self.url(alias)])

    def init(self, name: str) -> Path:
        d = self.tmp / name
        self.git("init", "-q", "-b", "main", str(d))
        return d

    def commit(self, repo: Path, msg: str, file: str = "f.txt") -> str:
        (repo / file).write_text(f"{msg}\n")
        self.git("add", file, cwd=repo)
        self.git("commit", "-q", "-m", msg, cwd=repo)
        return self.out("rev-parse", "HEAD", cwd=repo)

    def remote_refs(self, url: str) -> dict:
        """``git ls-remote`` without HEAD and peeled lines: ref -> oid."""
        refs = {}
        for line in self.out("ls-remote", url).splitlines():
            oid, name = line.split("\t")
            if name.startswith("refs/") and not name.endswith("^{}"):
                refs[name] = oid
        return refs

    def local_refs(self, repo: Path, pattern: str = "refs/") -> dict:
        refs = {}
        for line in self.out(
            "for-each-ref", "--format=%(objectname) %(refname)", pattern, cwd=repo
        ).splitlines():
            oid, name = line.split(" ")
            refs[name] = oid
        return refs

    def api(self, alias: str, route: str, body: dict, token: "str | None" = "default"):
        """POST a remote API v1 route: (status, JSON body)."""
        token = self.token if token == "default" else token
        req = urllib.request.Request(
            f"{self.server}/{self.ws}/git/{alias}/remote/v1/{route}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def test_roundtrip_branches_and_tags(env):
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.commit(src, "one")
    env.git("tag", "-a", "v1", "-m", "release one", cwd=src)
    env.git("tag", "light", cwd=src)
    env.git("checkout", "-q", "-b", "topic/x", cwd=src)
    env.commit(src, "two", "g.txt")
    env.git("checkout", "-q", "main", cwd=src)
    env.commit(src, "three")
    env.git("push", "-q", env.url(alias), "main", "topic/x", "--tags", cwd=src)

    clone = env.tmp / "clone"
    env.git("clone", "-q", env.url(alias), str(clone))
    env.git("fsck", "--strict", "--no-dangling", cwd=clone)
    assert env.remote_refs(env.url(alias)) == {k: v for k, v in env.local_refs(src).items()}
    assert env.local_refs(clone, "refs/tags/") == env.local_refs(src, "refs/tags/")
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)
    assert env.out("rev-parse", "origin/topic/x", cwd=clone) == env.out(
        "rev-parse", "topic/x", cwd=src
    )


def test_diverged_push_is_rejected_with_fetch_first(env):
    alias = env.new_alias()
    env.create(alias)
    a = env.init("a")
    env.commit(a, "base")
    env.git("push", "-q", env.url(alias), "main", cwd=a)
    b = env.tmp / "b"
    env.git("clone", "-q", env.url(alias), str(b))
    env.commit(a, "from a")
    env.git("push", "-q", env.url(alias), "main", cwd=a)
    env.commit(b, "from b", "other.txt")
    p = env.git("push", "origin", "main", cwd=b, check=False)
    assert p.returncode != 0
    assert b"(fetch first)" in p.stderr, p.stderr.decode()
    assert env.remote_refs(env.url(alias))["refs/heads/main"] == env.out("rev-parse", "HEAD", cwd=a)


def test_atomic(env):
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    first = env.commit(src, "one")
    env.git("branch", "side", cwd=src)
    env.git("push", "-q", "--atomic", env.url(alias), "main", "side", cwd=src)
    assert set(env.remote_refs(env.url(alias))) == {"refs/heads/main", "refs/heads/side"}
    second = env.commit(src, "two")
    env.git("push", "-q", env.url(alias), "main", cwd=src)

    # One stale update in an atomic batch: the server refuses every ref and writes none.
    status, body = env.api(
        alias,
        "update",
        {
            "atomic": True,
            "updates": [
                {"ref": "refs/heads/new", "old": None, "new": second},
                {"ref": "refs/heads/main", "old": first, "new": first},
            ],
        },
    )
    assert status == 200, body
    by_ref = {r["ref"]: r for r in body["results"]}
    assert by_ref["refs/heads/main"]["status"] == "stale"
    assert by_ref["refs/heads/main"]["current"] == second
    assert by_ref["refs/heads/new"]["status"] == "rejected"
    assert "refs/heads/new" not in env.remote_refs(env.url(alias))

    # The same batch without atomic: the valid ref lands.
    status, body = env.api(
        alias,
        "update",
        {
            "updates": [
                {"ref": "refs/heads/new", "old": None, "new": second},
                {"ref": "refs/heads/main", "old": first, "new": first},
            ]
        },
    )
    assert [r["status"] for r in body["results"]] == ["ok", "stale"]
    assert env.remote_refs(env.url(alias))["refs/heads/new"] == second


def test_permissions(env, svc):
    alias = env.new_alias()
    env.create(alias)
    status, body = env.api(alias, "refs", {}, token=None)
    assert (status, body["error"]) == (401, "unauthenticated")
    status, body = env.api(alias, "refs", {}, token=svc["HYPHA_TEST_TOKEN2"])
    assert (status, body["error"]) == (403, "forbidden")
    status, body = env.api(alias, "info", {})
    assert status == 200 and body["can_write"] and body["default_branch"] == "main"
    status, body = env.api("missing-" + alias, "refs", {})
    assert (status, body["error"]) == (404, "not_found")
    status, body = env.api(
        alias, "update", {"updates": [{"ref": "refs/heads/a.lock", "old": None, "new": "0" * 40}]}
    )
    assert (status, body["error"]) == (422, "invalid")


def test_refs_for_push_says_whether_hypha_lets_the_caller_write(env, svc):
    """The child sees reads as `read`; before a push the plugin answers Hypha's `can_write`."""
    alias = env.new_alias()
    env.run(["git-hypha", "create", "--public", env.url(alias)])
    for token, can_write in ((env.token, True), (svc["HYPHA_TEST_TOKEN2"], False), (None, False)):
        status, body = env.api(alias, "refs", {"for_push": True}, token=token)
        assert status == 200 and body["can_write"] is can_write, (token is None, body)
        status, body = env.api(alias, "refs", {}, token=token)
        assert status == 200 and "can_write" not in body


def test_helper_push_clones_through_hypha_smart_http(env):
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    for i in range(5):
        env.commit(src, f"c{i}", f"f{i % 2}.txt")
    env.git("tag", "-a", "v1", "-m", "v1", cwd=src)
    env.git("branch", "dev", "HEAD~2", cwd=src)
    env.git("push", "-q", env.url(alias), "main", "dev", "v1", cwd=src)
    # A second push: Hypha must read several packs, one of them written by the helper later.
    env.commit(src, "c5")
    env.git("push", "-q", env.url(alias), "main", cwd=src)

    clone = env.tmp / "smart"
    env.git("clone", "-q", env.smart_url(alias), str(clone))
    env.git("fsck", "--strict", "--no-dangling", cwd=clone)
    assert env.remote_refs(env.smart_url(alias)) == env.local_refs(src)
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)


def test_thin_edit_push_clones_through_hypha_smart_http(env):
    """A one-line edit goes up thin and the server completes it: Hypha's own reader (dulwich,
    which resolves delta bases only inside one pack) serves the result."""
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    text = "".join(f"{i},{i * 7919 % 100003},row {i}\n" for i in range(3000))
    (src / "data.csv").write_text(text)
    env.git("add", "data.csv", cwd=src)
    env.git("commit", "-q", "-m", "data", cwd=src)
    env.git("push", "-q", env.url(alias), "main", cwd=src)
    edited = text.replace("\n77,", "\n77,edited", 1)
    (src / "data.csv").write_text(edited)
    env.git("commit", "-q", "-am", "edit", cwd=src)
    out = env.run(["git", "-C", str(src), "push", "-v", env.url(alias), "main"])
    # Inline in the update (a small push, issue 25) or uploaded: thin either way.
    assert b"uploaded thin pack" in out.stderr or b"sending thin pack" in out.stderr, out.stderr

    clone = env.tmp / "smart"
    env.git("clone", "-q", env.smart_url(alias), str(clone))
    env.git("fsck", "--strict", "--no-dangling", cwd=clone)
    assert (clone / "data.csv").read_text() == edited
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)


def test_smart_http_push_then_helper_clone_fetch_push(env):
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.commit(src, "one")
    env.git("tag", "v1", cwd=src)
    env.commit(src, "two")
    env.git("push", "-q", env.smart_url(alias), "main", "v1", cwd=src)

    clone = env.tmp / "helper"
    env.git("clone", "-q", env.url(alias), str(clone))
    env.git("fsck", "--strict", "--no-dangling", cwd=clone)
    assert env.local_refs(clone, "refs/tags/") == env.local_refs(src, "refs/tags/")
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)

    # Hypha's smart HTTP takes another push; the helper fetches it.
    third = env.commit(src, "three")
    env.git("push", "-q", env.smart_url(alias), "main", cwd=src)
    env.git("pull", "-q", "--ff-only", cwd=clone)
    assert env.out("rev-parse", "HEAD", cwd=clone) == third

    # The helper pushes on top; smart HTTP serves it.
    fourth = env.commit(clone, "four", "h.txt")
    env.git("push", "-q", "origin", "main", cwd=clone)
    env.git("pull", "-q", "--ff-only", env.smart_url(alias), "main", cwd=src)
    assert env.out("rev-parse", "HEAD", cwd=src) == fourth
    env.git("fsck", "--strict", "--no-dangling", cwd=src)
    assert env.remote_refs(env.smart_url(alias)) == env.remote_refs(env.url(alias))


def test_long_history_clones_through_helper(env):
    """Hypha's own clone recurses per commit and fails past ~950; the helper moves packs."""
    n = 2100
    alias = env.new_alias()
    env.create(alias)
    src = env.init("long")
    lines = []
    for i in range(1, n + 1):
        lines.append(
            f"commit refs/heads/main\nmark :{i}\ncommitter T <t@e> {1700000000 + i} +0000\n"
            f"data {len(f'c{i}')}\nc{i}\n"
        )
        if i > 1:
            lines.append(f"from :{i - 1}\n")
        blob = f"{i}\n"
        lines.append(f"M 100644 inline n.txt\ndata {len(blob)}\n{blob}\n")
    env.git("fast-import", "--quiet", cwd=src, stdin="".join(lines).encode())
    env.git("push", "-q", env.url(alias), "main", cwd=src)

    clone = env.tmp / "long-clone"
    env.git("clone", "-q", env.url(alias), str(clone))
    assert env.out("rev-list", "--count", "HEAD", cwd=clone) == str(n)
    env.git("fsck", "--no-dangling", cwd=clone)
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "main", cwd=src)


def test_login_logout_and_stored_token(env):
    """`git hypha login` through Hypha's login service, completed via its report endpoint."""
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.commit(src, "one")
    env.git("push", "-q", env.url(alias), "main", cwd=src)

    e = dict(env.env)
    del e["HYPHA_TOKEN"]
    login = subprocess.Popen(
        ["git-hypha", "login", env.server, "--timeout", "60"],
        cwd=env.tmp,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    login_url = None
    for raw in login.stderr:
        line = raw.decode().strip()
        if "key=" in line:
            login_url = line
            break
    assert login_url, "git hypha login printed no login URL"
    key = login_url.split("key=", 1)[1].split("&")[0]
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
    assert env.token not in rest and env.token not in login_url
    stored = Path(e["XDG_CONFIG_HOME"]) / "git-hypha" / "logins.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text()) == {env.server + "/": env.token}

    # No HYPHA_TOKEN, no credential helper: the helper falls back to the stored login.
    clone = env.tmp / "clone"
    env.run(["git", "clone", "-q", env.url(alias), str(clone)], env={"HYPHA_TOKEN": ""})
    assert env.out("rev-parse", "HEAD", cwd=clone) == env.out("rev-parse", "HEAD", cwd=src)

    env.run(["git-hypha", "logout", env.server], env={"HYPHA_TOKEN": ""})
    assert json.loads(stored.read_text()) == {}
    p = env.run(
        ["git", "clone", "-q", env.url(alias), str(env.tmp / "c2")],
        env={"HYPHA_TOKEN": ""},
        check=False,
    )
    assert p.returncode != 0


def test_url_prints_both_clone_urls(env):
    p = env.run(["git-hypha", "url", f"{env.ws}/some-repo"], env={"HYPHA_SERVER_URL": env.server})
    assert p.stdout.decode().splitlines() == [
        f"hypha::{env.server}/{env.ws}/some-repo",
        f"{env.server}/{env.ws}/git/some-repo",
    ]


def _s3(svc):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=svc["HYPHA_TEST_S3_URL"],
        aws_access_key_id=svc["HYPHA_TEST_S3_KEY"],
        aws_secret_access_key=svc["HYPHA_TEST_S3_SECRET"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _repo_prefix(env, alias: str) -> str:
    """`{ws}/artifacts/{uuid}/.git/`: Hypha's artifact manager knows the UUID."""
    req = urllib.request.Request(
        f"{env.server}/public/services/artifact-manager/read",
        data=json.dumps({"artifact_id": f"{env.ws}/{alias}"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        uuid_ = json.loads(r.read())["_id"]
    return f"{env.ws}/artifacts/{uuid_}/.git/"


def _stored_packs(s3, bucket: str, prefix: str) -> set:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "objects/pack/")
    return {
        o["Key"].rsplit("/", 1)[1][: -len(".pack")]
        for o in listing.get("Contents", [])
        if o["Key"].endswith(".pack")
    }


def test_gc_compacts_and_deletes_retired_packs_after_grace(env, svc):
    """`git hypha gc` through the plugin's compact route; Hypha's smart HTTP reads throughout.

    The plugin keeps retired packs for 70 minutes; the test ages the retirement marks (S3 objects
    holding the retirement time) instead of waiting, then the next gc deletes those packs.
    """
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    for i in range(5):
        env.commit(src, f"c{i}", f"f{i}.txt")
        env.git("push", "-q", "origin", "main", cwd=src)
    prefix = _repo_prefix(env, alias)
    originals = _stored_packs(s3, bucket, prefix)
    assert len(originals) == 5, originals

    p = env.run(["git-hypha", "gc", env.url(alias)])
    assert b"merged 5 packs" in p.stderr, p.stderr.decode()
    after_gc = _stored_packs(s3, bucket, prefix)
    assert originals < after_gc and len(after_gc) == 6, "retired packs stay during the grace"
    status, body = env.api(alias, "packs", {})
    assert status == 200 and len(body["packs"]) == 1, body

    # Hypha's own readers list every *.pack (retired ones too, still complete): clone works.
    smart = env.tmp / "smart"
    env.git("clone", "-q", env.smart_url(alias), str(smart))
    env.git("fsck", "--strict", "--no-dangling", cwd=smart)
    assert env.out("rev-parse", "HEAD", cwd=smart) == env.out("rev-parse", "HEAD", cwd=src)

    # Age the retirement marks past the grace period.
    marks = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "hypha-remote/retired/")
    names = [o["Key"] for o in marks.get("Contents", [])]
    assert sorted(n.rsplit("/", 1)[1] for n in names) == sorted(originals)
    for key in names:
        s3.put_object(Bucket=bucket, Key=key, Body=b"0\n")  # retired at the epoch
    p = env.run(["git-hypha", "gc", env.url(alias)])
    assert b"deleted 5 retired earlier" in p.stderr, p.stderr.decode()
    assert _stored_packs(s3, bucket, prefix) == after_gc - originals
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "hypha-remote/").get("Contents")

    for url, name in ((env.smart_url(alias), "smart2"), (env.url(alias), "helper")):
        d = env.tmp / name
        env.git("clone", "-q", url, str(d))
        env.git("fsck", "--strict", "--no-dangling", cwd=d)
        assert env.out("rev-parse", "HEAD", cwd=d) == env.out("rev-parse", "HEAD", cwd=src)


def _tree(s3, bucket: str, prefix: str) -> dict:
    """Every key under prefix -> (size, last modified); s3s-fs lists no ETag."""
    out, token = {}, None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        out.update({o["Key"]: (o["Size"], o.get("LastModified")) for o in page.get("Contents", [])})
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


def test_hostile_requests_are_refused_and_write_nothing(env, svc):
    """The plugin's input checks (the e2e hostile tests cover them on our own server only)."""
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    head = env.commit(src, "one")
    env.git("push", "-q", env.url(alias), "main", cwd=src)
    hexid = "0123456789abcdef0123456789abcdef01234567"
    before = _tree(s3, bucket, env.ws + "/")

    def update(ref, old=None, new=hexid, **extra):
        return {"updates": [{"ref": ref, "old": old, "new": new}], **extra}

    cases = [
        ("update", update("refs/heads/a..b")),
        ("update", update("refs/heads/x.lock")),
        ("update", update("refs/heads/.hidden")),
        ("update", update("refs/heads/sp ace")),
        ("update", update("refs/heads/tab\tbed")),
        ("update", update("refs/heads/ctl\x01")),
        ("update", update("refs/heads/star*")),
        ("update", update("refs/heads/a/")),
        ("update", update("refs/heads//a")),
        ("update", update("refs/heads/@{x}")),
        ("update", update("HEAD")),
        ("update", update("refs/x")),
        ("update", update("heads/main")),
        ("update", update("refs/heads/" + "a" * 600)),
        ("update", update("refs/heads/n", new="XYZ")),
        ("update", update("refs/heads/n", new=hexid.upper())),
        ("update", update("refs/heads/n", old="1234")),
        ("update", {"updates": "refs/heads/main"}),
        ("update", {"updates": [{"ref": 7, "new": hexid}]}),
        ("update", {"updates": [update("refs/heads/d")["updates"][0]] * 2}),
        ("update", update("refs/heads/n", packs=["pack-zz"])),
        ("update", update("refs/heads/n", packs=["pack-" + hexid])),
        ("update", update("refs/heads/n", set_head_if_missing="refs/heads/a..b")),
        ("uploads", {"packs": [{"name": "../../x", "pack_size": 1, "idx_size": 1}]}),
        ("uploads", {"packs": [{"name": "pack-" + hexid, "pack_size": 0, "idx_size": 1}]}),
        ("uploads", {"packs": [{"name": "pack-" + hexid, "pack_size": -5, "idx_size": 1}]}),
        ("uploads", {"packs": [{"name": "pack-" + hexid, "pack_size": 2**63, "idx_size": 1}]}),
        ("uploads", {"packs": "pack-" + hexid}),
        ("compact", {"pack": "pack-" + hexid, "retire": []}),
        ("compact", {"pack": "nope", "retire": []}),
        ("head", {"symref": "refs/heads/../x"}),
        ("nosuchroute", {}),
    ]
    for route, body in cases:
        status, answer = env.api(alias, route, body)
        assert 400 <= status < 500, (route, body, status, answer)
        assert set(answer) == {"error", "detail"} and env.token not in answer["detail"], answer
    # Bodies that are not JSON objects.
    for raw in (b"not json", b"[1, 2]", b'"text"', b"{", b"\xff\xfe"):
        req = urllib.request.Request(
            f"{env.server}/{env.ws}/git/{alias}/remote/v1/update",
            data=raw,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 422, raw
    # Repository names that are not one path segment of safe characters.
    for bad in ("..", ".git", ".hidden", "-dash", "a..b", "a%2fb", "a%5cb", "%00", "a" * 200):
        status, answer = env.api(bad, "create", {})
        assert 400 <= status < 500, (bad, status, answer)
    # A default branch git would refuse: the server's own words (`git hypha names`), before
    # Hypha is asked to create anything.
    status, answer = env.api(env.new_alias(), "create", {"default_branch": "a..b"})
    assert status == 422, (status, answer)
    assert answer["detail"].startswith('invalid ref "refs/heads/a..b"'), answer
    status, answer = env.api("a.b..c", "info", {})
    assert status == 422 and answer["detail"] == 'invalid repository name "a.b..c"', answer
    assert _tree(s3, bucket, env.ws + "/") == before, "nothing was written"
    assert env.remote_refs(env.url(alias)) == {"refs/heads/main": head}
