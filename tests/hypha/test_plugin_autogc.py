"""Automatic compaction through the plugin (issue 13 item 2, issue 26, docs/design.md §9):
after pushes whose packs hold 4 MiB or more to merge, the plugin's child compacts as ``git hypha
serve`` does after its pushes, and retires the merged packs under Hypha's lease, which it asks
of the plugin (``/_plugin/leases``): without the plugin holding it, nothing is retired. Smaller
pushes leave the packs alone. Clones through the helper and through Hypha's smart HTTP see
every commit.
"""

import os
import shutil
import signal
import subprocess
import time


def _live_packs(env, alias: str) -> list:
    status, body = env.api(alias, "packs", {})
    assert status == 200, body
    return body["packs"]


def _repository(env) -> tuple:
    """A new repository with one small commit pushed: (alias, the source clone)."""
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    env.commit(src, "small")
    env.git("push", "-q", "origin", "main", cwd=src)
    return alias, src


def _commit_random(env, src, name: str, size: int = 1536 << 10, push: bool = True) -> None:
    """Commit ``size`` bytes that do not compress as file ``name`` (and push ``main``)."""
    (src / name).write_bytes(os.urandom(size))
    env.git("add", name, cwd=src)
    env.git("commit", "-q", "-m", name, cwd=src)
    if push:
        env.git("push", "-q", "origin", "main", cwd=src)


def test_pushes_of_large_packs_are_compacted_by_the_plugin(env):
    # A small push: nothing due (one pack, far below the byte trigger).
    alias, src = _repository(env)
    # Three pushes of 1.5 MiB that does not compress: after the third, the packs a geometric
    # merge takes hold more than 4 MiB.
    for i in range(3):
        _commit_random(env, src, f"blob{i}.bin")
        if i < 2:
            assert len(_live_packs(env, alias)) == i + 2, "not due yet: every pack stays"
    deadline = time.monotonic() + 60
    while len(packs := _live_packs(env, alias)) > 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(packs) <= 2, f"no compaction after the byte trigger: {packs}"
    assert sum(p["pack_size"] for p in packs) > 3 * (1536 << 10), packs

    tip = env.out("rev-parse", "HEAD", cwd=src)
    for url, name in ((env.url(alias), "helper"), (env.smart_url(alias), "smart")):
        d = env.tmp / name
        env.git("clone", "-q", url, str(d))
        env.git("fsck", "--strict", "--no-dangling", cwd=d)
        assert env.out("rev-parse", "HEAD", cwd=d) == tip


def test_pushes_racing_the_childs_compaction_are_not_lost(env):
    """Pushes that land while the child merges and retires (under the lease it asks the plugin
    for) lose nothing: every branch is listed at its tip and every object is there, through
    the helper and through Hypha's smart HTTP."""
    alias, src = _repository(env)
    for i in range(2):
        _commit_random(env, src, f"blob{i}.bin")
    # Four branches, each pushed from a copy of its own, right after the push that makes the
    # compaction due: they race its merge and its retirement.
    copies = []
    for b in range(4):
        env.git("checkout", "-q", "-b", f"b{b}", "main", cwd=src)
        _commit_random(env, src, f"side{b}.bin", 200 << 10, push=False)
        copies.append(env.tmp / f"copy{b}")
        shutil.copytree(src, copies[-1])
    env.git("checkout", "-q", "main", cwd=src)
    _commit_random(env, src, "blob2.bin")
    pushes = [
        subprocess.Popen(["git", "push", "-q", "origin", f"b{b}"], cwd=copy, env=env.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        for b, copy in enumerate(copies)
    ]
    for p in pushes:
        err = p.communicate(timeout=300)[1].decode()
        assert p.returncode == 0, err.replace(env.token, "<token>")

    # The compaction ran (the byte trigger: 4.5 MiB to merge), and the last push may have
    # started another: wait until the packs settle.
    deadline, last, still = time.monotonic() + 90, None, 0
    while time.monotonic() < deadline and still < 3:
        packs = sorted(p["name"] for p in _live_packs(env, alias))
        still = still + 1 if packs == last else 0
        last = packs
        time.sleep(1.0)
    assert len(last) < 8, f"8 pushes, and no compaction: {last}"

    want = env.local_refs(src, "refs/heads/")
    assert env.remote_refs(env.url(alias)) == want
    for url, name in ((env.url(alias), "helper"), (env.smart_url(alias), "smart")):
        d = env.tmp / name
        env.git("clone", "-q", "--mirror", url, str(d))
        env.git("fsck", "--strict", "--no-dangling", cwd=d)
        assert env.local_refs(d, "refs/heads/") == want, name
        for b in range(4):
            env.git("cat-file", "-e", f"b{b}:side{b}.bin", cwd=d)


def test_a_child_started_again_still_compacts_under_the_lease(env, svc):
    """The plugin polls each child it starts for lease asks: after its child was killed, the
    new child's compaction still gets the lease and retires what it merged."""
    from test_plugin_child import children

    alias, src = _repository(env)
    for pid in children(svc):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while children(svc) and time.monotonic() < deadline:
        time.sleep(0.1)
    for i in range(3):  # the first push starts a new child
        _commit_random(env, src, f"blob{i}.bin")
    assert children(svc), "no new child"
    deadline = time.monotonic() + 60
    while len(packs := _live_packs(env, alias)) > 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(packs) <= 2, f"the new child did not compact: {packs}"
    d = env.tmp / "clone"
    env.git("clone", "-q", env.url(alias), str(d))
    env.git("fsck", "--strict", "--no-dangling", cwd=d)
    assert env.out("rev-parse", "HEAD", cwd=d) == env.out("rev-parse", "HEAD", cwd=src)
