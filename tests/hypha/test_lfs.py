"""Git LFS interop with Hypha's own LFS endpoint (issue 15, item 3), with the real git-lfs.

Content pushed through `hypha::` (the helper records the plugin's LFS endpoint for git-lfs,
issue 22) is served by Hypha's own LFS endpoint to a plain `git clone
http://.../{ws}/git/{alias}`, and the reverse: one storage, at Hypha's
`{ws}/artifacts/{uuid}/git/lfs/objects/aa/bb/oid`. git-lfs is required (test.sh installs it);
no skip.
"""

import hashlib
import os

import pytest

from test_hypha import Env, _load_env, _repo_prefix, _s3


@pytest.fixture
def lfs_env(tmp_path):
    env = Env(tmp_path, _load_env())
    env.git("lfs", "install", "--skip-repo")
    return env


def _lfs_repo(env, name: str, files: dict) -> "os.PathLike":
    repo = env.init(name)
    env.git("lfs", "track", "*.bin", cwd=repo)
    for file, data in files.items():
        (repo / file).write_bytes(data)
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", "lfs files", cwd=repo)
    return repo


def _stored(env, alias: str, data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    prefix = _repo_prefix(env, alias)[: -len(".git/")]
    key = f"{prefix}git/lfs/objects/{oid[:2]}/{oid[2:4]}/{oid}"
    return _s3(env.svc).get_object(Bucket=env.svc["HYPHA_TEST_BUCKET"], Key=key)["Body"].read()


def test_lfs_interop_between_helper_and_hypha_smart_http(lfs_env):
    """One repository, both directions (one test: each Hypha round trip costs seconds)."""
    env = lfs_env
    alias = env.new_alias()
    env.create(alias)
    data = os.urandom(200 * 1024)
    src = _lfs_repo(env, "src", {"weights.bin": data})
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    env.git("push", "-q", "-u", "origin", "main", cwd=src)
    assert _stored(env, alias, data) == data

    # Pushed through hypha::, cloned by plain git + git-lfs from Hypha's own endpoints.
    smart = env.tmp / "smart"
    env.git("clone", "-q", env.smart_url(alias), str(smart))
    assert (smart / "weights.bin").read_bytes() == data

    # Pushed through Hypha's smart HTTP + LFS endpoint, cloned through hypha::.
    more = os.urandom(100 * 1024)
    (smart / "more.bin").write_bytes(more)
    env.git("add", "more.bin", cwd=smart)
    env.git("commit", "-q", "-m", "more", cwd=smart)
    env.git("push", "-q", "origin", "main", cwd=smart)
    assert _stored(env, alias, more) == more
    clone = env.tmp / "helper"
    env.git("clone", "-q", env.url(alias), str(clone))
    assert (clone / "more.bin").read_bytes() == more
    assert (clone / "weights.bin").read_bytes() == data
