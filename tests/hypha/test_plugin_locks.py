"""Git LFS file locks through the plugin, with the real git-lfs (issue 22).

Hypha's own LFS endpoint has no locks API; the plugin registers ``.../info/lfs/locks`` and the
same below its own endpoint, ``.../remote/v1/lfs/locks``, which the helper records (its GETs
ahead of Hypha's ``GET /{page:path}`` fallback), asks Hypha whether the caller may ``commit``
(lock, unlock) or ``read`` (list, verify), and the child keeps the locks beside the LFS objects
(``server::locks``; the two-user rules are tested by tests/e2e/lfs_locks.rs against
``git hypha serve``). One test: each Hypha round trip costs seconds.
"""

import os
import urllib.error
import urllib.request

from test_hypha import Env, _load_env, _repo_prefix, _s3


def _lfs_env(tmp_path) -> Env:
    env = Env(tmp_path, _load_env())
    env.git("lfs", "install", "--skip-repo")
    return env


def test_lfs_locks_through_the_plugin(tmp_path):
    env = _lfs_env(tmp_path)
    alias = env.new_alias()
    env.create(alias)
    repo = env.init("work")
    env.git("lfs", "track", "*.bin", cwd=repo)
    (repo / "m.bin").write_bytes(os.urandom(4096))
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", "lfs", cwd=repo)
    env.git("remote", "add", "origin", env.url(alias), cwd=repo)
    env.git("push", "-q", "-u", "origin", "main", cwd=repo)

    assert "Locked m.bin" in env.out("lfs", "lock", "m.bin", cwd=repo)
    again = env.git("lfs", "lock", "m.bin", cwd=repo, check=False)
    assert again.returncode != 0 and b"already locked by" in again.stderr, again

    # The listing is a GET: answered by the plugin, not by Hypha's page fallback.
    listing = env.out("lfs", "locks", cwd=repo)
    assert listing.startswith("m.bin") and "ID:" in listing, listing
    assert env.out("lfs", "locks", "--verify", cwd=repo).startswith("O m.bin")
    # The record lives beside the LFS objects, in the artifact Hypha decided.
    prefix = _repo_prefix(env, alias)[: -len(".git/")]
    keys = _s3(env.svc).list_objects_v2(
        Bucket=env.svc["HYPHA_TEST_BUCKET"], Prefix=f"{prefix}git/lfs/locks/"
    )
    assert keys.get("KeyCount") == 1, keys

    # A user without a grant on the workspace can neither see nor take it.
    other = env.run(
        ["git", "lfs", "lock", "m.bin"],
        cwd=repo,
        check=False,
        env={"HYPHA_TOKEN": env.svc["HYPHA_TEST_TOKEN2"]},
    )
    assert other.returncode != 0 and b"permission denied" in other.stderr, other

    # Verify needs a caller: anonymous gets a 401 that makes git-lfs ask for credentials.
    lfs_url = env.out("config", "remote.origin.lfsurl", cwd=repo)
    req = urllib.request.Request(f"{lfs_url}/locks/verify", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("anonymous verify answered 2xx")
    except urllib.error.HTTPError as e:
        assert e.code == 401 and e.headers.get("LFS-Authenticate"), (e.code, e.headers)
        assert e.headers.get("Content-Type", "").startswith("application/vnd.git-lfs+json")

    # With lock verification on, one's own lock does not stop a push.
    env.git("config", f"lfs.{lfs_url}.locksverify", "true", cwd=repo)
    (repo / "m.bin").write_bytes(os.urandom(4096))
    env.git("commit", "-q", "-am", "edit", cwd=repo)
    env.git("push", "-q", "origin", "main", cwd=repo)

    assert "Unlocked m.bin" in env.out("lfs", "unlock", "m.bin", cwd=repo)
    assert env.out("lfs", "locks", cwd=repo) == ""
