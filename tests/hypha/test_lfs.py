"""Git LFS interop with Hypha's own LFS endpoint (issue 15, item 3), with the real git-lfs.

Content pushed through `hypha::` (the helper records Hypha's LFS URL for git-lfs) is served by
Hypha's LFS endpoint to a plain `git clone http://.../{ws}/git/{alias}`, and the reverse: one
storage, at Hypha's `{ws}/artifacts/{uuid}/git/lfs/objects/aa/bb/oid`. The plugin holds no
LFS code: the endpoint is Hypha's. git-lfs is required (test.sh installs it); no skip.
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


def test_lfs_pushed_through_helper_clones_through_hypha_smart_http(lfs_env):
    env = lfs_env
    alias = env.new_alias()
    env.create(alias)
    data = os.urandom(200 * 1024)
    src = _lfs_repo(env, "src", {"weights.bin": data})
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    env.git("push", "-q", "origin", "main", cwd=src)
    assert _stored(env, alias, data) == data

    clone = env.tmp / "smart"
    env.git("clone", "-q", env.smart_url(alias), str(clone))
    assert (clone / "weights.bin").read_bytes() == data


def test_lfs_pushed_through_hypha_smart_http_clones_through_helper(lfs_env):
    env = lfs_env
    alias = env.new_alias()
    env.create(alias)
    data = os.urandom(200 * 1024)
    src = _lfs_repo(env, "src", {"data.bin": data})
    env.git("remote", "add", "origin", env.smart_url(alias), cwd=src)
    env.git("push", "-q", "origin", "main", cwd=src)
    assert _stored(env, alias, data) == data

    clone = env.tmp / "helper"
    env.git("clone", "-q", env.url(alias), str(clone))
    assert (clone / "data.bin").read_bytes() == data
    # And back: the helper's push of new content is served by Hypha's endpoint.
    more = os.urandom(100 * 1024)
    (clone / "more.bin").write_bytes(more)
    env.git("add", "more.bin", cwd=clone)
    env.git("commit", "-q", "-m", "more", cwd=clone)
    env.git("push", "-q", cwd=clone)
    env.git("pull", "-q", "--ff-only", "origin", "main", cwd=src)
    assert (src / "more.bin").read_bytes() == more
