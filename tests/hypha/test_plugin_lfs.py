"""Our LFS transfer agent through a real Hypha with the plugin (issue 22), with the real git-lfs.

The plugin serves an LFS endpoint of ours at ``{ws}/git/{alias}/remote/v1/lfs`` (batch, verify,
the parts routes, locks; Hypha checks the caller, its child answers) and names it in ``refs``;
the helper records it as ``remote.<name>.lfsurl``. Hypha's own ``.../info/lfs`` stays as it is
(``basic``), and objects land at Hypha's own key, so Hypha's file endpoint serves them.

The child keeps its default multipart threshold (64 MiB, parts of 16 MiB): the big object is
just above it. One test per concern: each Hypha round trip costs seconds.

These run against a Hypha on moto (tests/hypha/run.sh starts it beside the one on s3s-fs,
``HYPHA_MOTO_ENV``): s3s-fs names a multipart upload's metadata file after the whole key in
base64, and Hypha's LFS keys (``{ws}/artifacts/{uuid}/git/lfs/objects/aa/bb/<oid>``, 135
bytes at least) make that name longer than a file name may be, so no multipart upload can
start there. Real S3 has no such limit.
"""

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_hypha import ROOT, Env, _load_env, _repo_prefix, _s3

MIB = 1024 * 1024
LFS_TYPE = "application/vnd.git-lfs+json"


def _moto_env_file() -> Path:
    return Path(os.environ.get("HYPHA_MOTO_ENV", ROOT / "target/hypha-moto/env"))


def _lfs_env(tmp_path) -> Env:
    path = _moto_env_file()
    if not path.exists():
        pytest.skip(f"{path} missing: HYPHA_TEST_S3=moto scripts/hypha-services.sh start {path}")
    env = Env(tmp_path, _load_env(path))
    env.git("lfs", "install", "--skip-repo")
    return env


def _hypha_log() -> Path:
    """The log Hypha and its plugin's child write (scripts/hypha-services.sh)."""
    return _moto_env_file().parent / "hypha.log"


def _adapters(env: Env, args, cwd) -> str:
    """Runs git with its trace in a file (git-lfs traces presigned URLs, kept out of test
    output) and answers the transfer adapters git-lfs started."""
    trace = env.tmp / "trace.log"
    trace.unlink(missing_ok=True)
    env.run(["git", *args], cwd=cwd, env={"GIT_TRACE": str(trace)})
    lines = trace.read_text(errors="replace").splitlines()
    return " ".join(
        line.split("starting transfer adapter ", 1)[1]
        for line in lines
        if "starting transfer adapter " in line
    )


def _stored(env: Env, alias: str, oid: str) -> bytes:
    """The object at Hypha's own key, ``{ws}/artifacts/{uuid}/git/lfs/objects/aa/bb/<oid>``."""
    prefix = _repo_prefix(env, alias)[: -len(".git/")]
    key = f"{prefix}git/lfs/objects/{oid[:2]}/{oid[2:4]}/{oid}"
    return _s3(env.svc).get_object(Bucket=env.svc["HYPHA_TEST_BUCKET"], Key=key)["Body"].read()


def _lfs_post(url: str, body: dict, token=None):
    """(status, headers, JSON or None) of one LFS request, with ``Basic git:<token>``."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", LFS_TYPE)
    req.add_header("Accept", LFS_TYPE)
    if token:
        basic = base64.b64encode(f"git:{token}".encode()).decode()
        req.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return r.status, r.headers, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        data = e.read()
        return e.code, e.headers, json.loads(data) if data else None


def test_big_lfs_objects_go_through_our_agent_in_parts(tmp_path):
    env = _lfs_env(tmp_path)
    alias = env.new_alias()
    env.run(["git-hypha", "create", "--public", env.url(alias)])
    repo = env.init("work")
    env.git("lfs", "track", "*.bin", cwd=repo)
    big = os.urandom(64 * MIB + 4099)
    small = os.urandom(4096)
    (repo / "model.bin").write_bytes(big)
    (repo / "small.bin").write_bytes(small)
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", "big files", cwd=repo)
    env.git("remote", "add", "origin", env.url(alias), cwd=repo)
    log_start = _hypha_log().stat().st_size

    assert _adapters(env, ["push", "-u", "origin", "main"], repo) == '"hypha"'
    ours = f"{env.server}/{env.ws}/git/{alias}/remote/v1/lfs"
    assert env.out("config", "remote.origin.lfsurl", cwd=repo) == ours
    oid = hashlib.sha256(big).hexdigest()
    with _hypha_log().open("rb") as f:
        f.seek(log_start)
        log = f.read().decode(errors="replace")
    # The child's access log: the big object went up in parts (5 of 16 MiB) and was assembled.
    assert "lfs multipart started" in log and " parts=5 " in log, log[-4000:]
    assert f"/info/lfs/objects/parts/{oid}/complete 200" in log, log[-4000:]
    assert _stored(env, alias, oid) == big
    assert _stored(env, alias, hashlib.sha256(small).hexdigest()) == small

    # A fresh clone's checkout gets both through the agent (the big one in ranges).
    clone = env.tmp / "clone"
    assert _adapters(env, ["clone", env.url(alias), str(clone)], env.tmp) == '"hypha"'
    assert (clone / "model.bin").read_bytes() == big
    assert (clone / "small.bin").read_bytes() == small

    # Hypha's own file endpoint dereferences the pointer and serves the same bytes.
    req = urllib.request.Request(
        f"{env.server}/{env.ws}/artifacts/{alias}/files/model.bin?version=main",
        headers={"Authorization": f"Bearer {env.token}"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        assert hashlib.sha256(r.read()).hexdigest() == oid

    # A reader (user 2 has no grant on the workspace; the repository is public) may download
    # through our endpoint, but neither upload nor send parts; anonymous gets git-lfs's 401.
    reader = env.svc["HYPHA_TEST_TOKEN2"]
    spec = {"oid": "ab" * 32, "size": 70 * MIB}
    upload = {"operation": "upload", "transfers": ["hypha", "basic"], "objects": [spec]}
    status, headers, body = _lfs_post(f"{ours}/objects/batch", upload, reader)
    assert status == 403 and "permission denied" in body["message"], (status, body)
    assert headers.get("Content-Type", "").startswith(LFS_TYPE)
    status, _, body = _lfs_post(f"{ours}/objects/parts/{spec['oid']}", {"size": spec["size"]}, reader)
    assert status == 403 and "permission denied" in body["message"], (status, body)
    status, headers, body = _lfs_post(f"{ours}/objects/batch", upload)
    assert status == 401 and headers.get("LFS-Authenticate"), (status, headers, body)
    download = {"operation": "download", "transfers": ["hypha", "basic"]}
    download["objects"] = [{"oid": oid, "size": len(big)}]
    status, _, body = _lfs_post(f"{ours}/objects/batch", download, reader)
    assert status == 200 and body["transfer"] == "hypha", (status, body)
    assert "download" in body["objects"][0]["actions"], body
    # Anonymous on the public repository: Hypha grants read, and the child, told the caller
    # has no name, applies the same table as standalone: download and list the locks (at our
    # endpoint and Hypha's), but no lock verify, which splits locks by owner.
    status, _, body = _lfs_post(f"{ours}/objects/batch", download)
    assert status == 200 and "download" in body["objects"][0]["actions"], (status, body)
    hyphas = f"{env.server}/{env.ws}/git/{alias}/info/lfs"
    for endpoint in (ours, hyphas):
        with urllib.request.urlopen(f"{endpoint}/locks", timeout=60) as r:
            assert r.status == 200 and json.loads(r.read()) == {"locks": []}, endpoint
        status, headers, body = _lfs_post(f"{endpoint}/locks/verify", {})
        assert status == 401 and headers.get("LFS-Authenticate"), (status, headers, body)
    # A path parameter goes to the child whole (quoted, not cut at its "?"), which refuses it.
    status, _, body = _lfs_post(f"{ours}/objects/verify/..%3Fx%23y", spec, env.token)
    assert status == 422 and "names ..?x#y in its path" in body["message"], (status, body)
    # Hostile requests get one git-lfs error each, before the child is asked.
    status, headers, body = _lfs_post(
        f"{ours}/objects/batch", {"operation": "delete", "objects": []}, env.token
    )
    assert status == 422 and "operation" in body["message"], (status, body)
    assert headers.get("Content-Type", "").startswith(LFS_TYPE)
    huge = {"operation": "upload", "objects": [spec] * 20000}  # about 1.8 MB
    status, _, body = _lfs_post(f"{ours}/objects/batch", huge, env.token)
    assert status == 422 and "larger than" in body["message"], (status, body)
    # And a reader's git-lfs push of a new object fails, changing nothing.
    other = env.tmp / "other"
    env.run(["git", "clone", "-q", env.url(alias), str(other)], env={"HYPHA_TOKEN": reader})
    (other / "more.bin").write_bytes(os.urandom(2048))
    env.git("add", "more.bin", cwd=other)
    env.git("commit", "-q", "-m", "more", cwd=other)
    pushed = env.run(
        ["git", "lfs", "push", "origin", "main"], cwd=other, check=False,
        env={"HYPHA_TOKEN": reader},
    )  # fmt: skip
    assert pushed.returncode != 0, pushed


def test_an_old_style_lfs_remote_still_works(tmp_path):
    """A clone recorded with Hypha's endpoint by an older helper moves to ours on its next
    fetch; one whose user set Hypha's endpoint by hand keeps it, and git-lfs uses ``basic``
    there, into the same store."""
    env = _lfs_env(tmp_path)
    alias = env.new_alias()
    env.create(alias)
    repo = env.init("work")
    env.git("lfs", "track", "*.bin", cwd=repo)
    first = os.urandom(8192)
    (repo / "a.bin").write_bytes(first)
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", "a", cwd=repo)
    env.git("remote", "add", "origin", env.url(alias), cwd=repo)
    env.git("push", "-q", "-u", "origin", "main", cwd=repo)
    hyphas = f"{env.server}/{env.ws}/git/{alias}.git/info/lfs"
    ours = f"{env.server}/{env.ws}/git/{alias}/remote/v1/lfs"

    # As an older helper left it: lfsurl and hyphaLfsUrl both Hypha's.
    for key in ("remote.origin.lfsurl", "remote.origin.hyphaLfsUrl"):
        env.git("config", key, hyphas, cwd=repo)
    env.git("fetch", "-q", "origin", cwd=repo)
    assert env.out("config", "remote.origin.lfsurl", cwd=repo) == ours

    # Set by hand to Hypha's endpoint: kept, and Hypha answers basic.
    env.git("config", "--unset", "remote.origin.hyphaLfsUrl", cwd=repo)
    env.git("config", "remote.origin.lfsurl", hyphas, cwd=repo)
    second = os.urandom(8192)
    (repo / "b.bin").write_bytes(second)
    env.git("add", "b.bin", cwd=repo)
    env.git("commit", "-q", "-m", "b", cwd=repo)
    assert _adapters(env, ["push", "origin", "main"], repo) == '"basic"'
    assert env.out("config", "remote.origin.lfsurl", cwd=repo) == hyphas
    assert _stored(env, alias, hashlib.sha256(second).hexdigest()) == second

    # A fresh clone reads both through ours (an object Hypha stored is checked once, then served).
    clone = env.tmp / "clone"
    assert _adapters(env, ["clone", env.url(alias), str(clone)], env.tmp) == '"hypha"'
    assert (clone / "a.bin").read_bytes() == first
    assert (clone / "b.bin").read_bytes() == second
