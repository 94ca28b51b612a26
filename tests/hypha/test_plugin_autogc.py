"""Automatic compaction through the plugin (issue 13 item 2, issue 26, docs/design.md §9):
after pushes whose packs hold 4 MiB or more to merge, the plugin's child compacts as ``git hypha
serve`` does after its pushes, and retires the merged packs under Hypha's lease, which it asks
of the plugin (``/_plugin/leases``): without the plugin holding it, nothing is retired. Smaller
pushes leave the packs alone. Clones through the helper and through Hypha's smart HTTP see
every commit.
"""

import os
import time


def _live_packs(env, alias: str) -> list:
    status, body = env.api(alias, "packs", {})
    assert status == 200, body
    return body["packs"]


def test_pushes_of_large_packs_are_compacted_by_the_plugin(env):
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    env.git("remote", "add", "origin", env.url(alias), cwd=src)
    # A small push: nothing due (one pack, far below the byte trigger).
    env.commit(src, "small")
    env.git("push", "-q", "origin", "main", cwd=src)
    # Three pushes of 1.5 MiB that does not compress: after the third, the packs a geometric
    # merge takes hold more than 4 MiB.
    for i in range(3):
        (src / f"blob{i}.bin").write_bytes(os.urandom(1536 << 10))
        env.git("add", f"blob{i}.bin", cwd=src)
        env.git("commit", "-q", "-m", f"blob {i}", cwd=src)
        env.git("push", "-q", "origin", "main", cwd=src)
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
