"""The plugin's update lock across Hypha workers (no server needed).

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
