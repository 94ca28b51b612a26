"""The plugin's update lock across Hypha workers, and the lease it holds for its child's
compaction (no server needed).

Each Hypha worker has its own asyncio lock per repository; what serialises updates across
workers is the lease in Hypha's Redis. Two `Repo` objects with separate local locks and one
Redis stand for two workers. The Redis is fakeredis, which is what Hypha itself runs on when
started without --redis-uri; a shared real Redis is not available offline.
"""

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hypha-plugin"))

import hypha_git_remote as plugin  # noqa: E402


def _worker(redis, key="git-remote-hypha:lock:01abc"):
    return plugin.Repo(
        manager=None,
        s3_config={"bucket": "b"},
        name="ws/repo",
        prefix="ws/artifacts/01abc/.git/",
        lock=asyncio.Lock(),
        redis=redis,
        lock_key=key,
    )


def test_lease_serialises_two_workers_and_times_out_busy(monkeypatch):
    from fakeredis import aioredis

    async def main():
        redis = aioredis.FakeRedis()
        a, b = _worker(redis), _worker(redis)
        order = []

        async def hold(repo, name, secs):
            await repo._locked()
            order.append(f"{name} in")
            await asyncio.sleep(secs)
            order.append(f"{name} out")
            await repo._unlock()

        await asyncio.gather(hold(a, "a", 0.3), hold(b, "b", 0.0))
        assert order == ["a in", "a out", "b in", "b out"], order
        assert await redis.get(a.lock_key) is None, "the lease is released"

        # A lease that is not released (a dead worker): the other worker answers busy after
        # LOCK_TIMEOUT, and its own local lock is free again.
        monkeypatch.setattr(plugin, "LOCK_TIMEOUT", 0.3)
        await a._locked()
        with pytest.raises(plugin.ApiError) as e:
            await b._locked()
        assert e.value.code == "busy"
        assert not b.lock.locked()
        # An expired lease taken over by b is not deleted by a's late release.
        await redis.set(a.lock_key, "someone-else")
        await a._unlock()
        assert await redis.get(a.lock_key) == b"someone-else"
        assert not a.lock.locked()

    asyncio.run(main())


class _Child:
    """Stands for the child's side of one lease ask: what ``hold_lease`` says to it, and
    whether the lease was held in Redis when it said so (the child's own side, answering only
    when its work is done, is tested in Rust: ``server::leases``, and through a real Hypha by
    test_plugin_autogc.py)."""

    def __init__(self, redis, key):
        self.s3_config = {"bucket": "b", "prefix": "s3/prefix"}
        self.redis, self.key, self.answers = redis, key, []

    async def answer_lease(self, ask_id, answer):
        held_by = await self.redis.get(self.key)
        self.answers.append((ask_id, answer, held_by is not None))


def test_a_lease_ask_of_the_child_is_held_like_an_update(monkeypatch):
    from types import SimpleNamespace

    from fakeredis import aioredis

    async def main():
        redis = aioredis.FakeRedis()
        store = SimpleNamespace(get_redis=lambda: redis, _artifact_manager=None)
        api = plugin.GitRemoteApi(store)
        key = plugin._lease_key("01abc")
        child = _Child(redis, key)
        ask = {"id": 3, "repo": "ws/repo", "prefix": "s3/prefix/01abc/.git/"}
        await api.hold_lease(child, ask)
        assert child.answers == [(3, {"held": True}, True)], "held while the child works"
        assert await redis.get(key) is None, "and ended when the child answered"

        # Another worker holds it (an update): after LOCK_TIMEOUT the child hears why.
        monkeypatch.setattr(plugin, "LOCK_TIMEOUT", 0.2)
        await redis.set(key, "other-worker")
        await api.hold_lease(child, {**ask, "id": 4})
        busy = {"held": False, "detail": "ws/repo is being updated; try again"}
        assert child.answers[1] == (4, busy, True)
        assert await redis.get(key) == b"other-worker", "the other worker's lease is left alone"

        # An ask whose prefix is not a repository's is refused here, without a lease.
        await redis.delete(key)
        await api.hold_lease(child, {**ask, "id": 5, "prefix": "s3/prefix/01abc/"})
        no = {"held": False, "detail": "the lease could not be taken"}
        assert child.answers[2] == (5, no, False)

    asyncio.run(main())


def test_the_artifact_of_a_prefix_is_the_one_the_prefix_was_made_from():
    for s3_prefix in ("", "s3/prefix", "a"):
        prefix = plugin._repo_prefix(s3_prefix, "0f1e-uuid")
        assert plugin._artifact_of(prefix) == "0f1e-uuid", prefix
    for bad in ("", "/.git/", "x/.git", "x/y/"):
        with pytest.raises(ValueError):
            plugin._artifact_of(bad)
