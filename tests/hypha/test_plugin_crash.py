"""The plugin's commit record: atomic updates survive a worker that dies mid-way.

These drive the plugin's ``Repo`` directly (no Hypha routes in between) against Hypha's own S3
server (s3s-fs from scripts/hypha-services.sh, HYPHA_SERVICES_ENV), each test under a fresh
key prefix, with fakeredis for the lease as in test_plugin_lock.py. A worker "dies" when the
test raises ``Died`` (a BaseException, so no roll-back or error handler of the plugin runs)
from its S3 put or delete: what it wrote before stays, nothing after happens.

The interop tests run the real ``git hypha serve`` (target/debug) on the same bucket: a record
left by the plugin is finished by the Rust server, and a record written by the Rust server is
read and built on by the plugin.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "hypha-plugin"))

import hypha_git_remote as plugin  # noqa: E402
from test_hypha import _helper_dir, _load_env, _s3  # noqa: E402

A, B, C = "a" * 40, "b" * 40, "c" * 40


class Died(BaseException):
    """The worker was killed here."""


@pytest.fixture(scope="module")
def svc():
    return _load_env()


@contextlib.asynccontextmanager
async def repos(svc, prefix: str):
    """make() -> a new Repo on ``prefix`` (another worker: own local lock, shared Redis)."""
    from fakeredis import aioredis

    config = {
        "bucket": svc["HYPHA_TEST_BUCKET"],
        "endpoint_url": svc["HYPHA_TEST_S3_URL"],
        "access_key_id": svc["HYPHA_TEST_S3_KEY"],
        "secret_access_key": svc["HYPHA_TEST_S3_SECRET"],
    }
    redis = aioredis.FakeRedis()
    # The plugin's own SigV4 client factory, used here for all operations.
    async with plugin._presign_client(config) as s3:

        def make():
            return plugin.Repo(
                manager=None,
                s3_config=config,
                name="ws/crash",
                prefix=prefix,
                lock=asyncio.Lock(),
                redis=redis,
                lock_key=f"git-remote-hypha:lock:{prefix}",
                s3=s3,
            )

        make.redis = redis
        yield make


def dies_at(repo, *, ref_writes: int = -1, record_writes: int = -1):
    """Make ``repo`` die before its ``ref_writes``+1-th ref write (puts and deletes under
    refs/), or before its ``record_writes``+1-th write of the commit record."""
    counts = {"refs": 0, "record": 0}
    limits = {"refs": ref_writes, "record": record_writes}
    real_put, real_delete = repo.put, repo.delete

    def check(rel: str):
        kind = "refs" if rel.startswith("refs/") else "record" if rel == plugin.RECORD_REL else None
        if kind is None:
            return
        if counts[kind] == limits[kind]:
            raise Died(f"killed before {kind} write {counts[kind] + 1}")
        counts[kind] += 1

    async def put(rel, body, **kw):
        check(rel)
        return await real_put(rel, body, **kw)

    async def delete(rel, if_match=None):
        check(rel)
        return await real_delete(rel, if_match)

    repo.put, repo.delete = put, delete
    return counts


async def hold_dead_lease(make, repo):
    """The dead worker's lease outlives it (until it expires): set it as a dead worker would
    have left it (the test's ``finally`` released it when Died passed through)."""
    await make.redis.set(repo.lock_key, "dead-worker", px=plugin.LOCK_LEASE_MS)


def raw(svc, key: str):
    s3 = _s3(svc)
    try:
        return s3.get_object(Bucket=svc["HYPHA_TEST_BUCKET"], Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


BEFORE = {"refs/heads/main": A, "refs/heads/topic": A, "refs/heads/gone": A}
BATCH = [
    {"ref": "refs/heads/main", "old": A, "new": B},
    {"ref": "refs/heads/topic", "old": A, "new": B},
    {"ref": "refs/heads/gone", "old": A, "new": None},
    {"ref": "refs/tags/new", "old": None, "new": B},
]
AFTER = {"refs/heads/main": B, "refs/heads/topic": B, "refs/tags/new": B}


async def seed(repo):
    res = await repo.update(
        {"updates": [{"ref": r, "old": None, "new": o} for r, o in BEFORE.items()]}
    )
    assert all(r["status"] == "ok" for r in res["results"]), res


async def compact_with_a_real_pack(repo, pack_dir: Path):
    """compact needs one complete pack: upload the one git made for this test."""
    pack = next(pack_dir.glob("pack-*.pack"))
    name = pack.stem
    await repo.put(f"objects/pack/{name}.idx", pack.with_suffix(".idx").read_bytes())
    await repo.put(f"objects/pack/{name}.pack", pack.read_bytes())
    return await repo.compact({"pack": name, "retire": []})


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(d))
    run = lambda *a: subprocess.run(
        ["git", *a], cwd=d, env=env, check=True, capture_output=True
    )  # noqa: E731
    run("init", "-q")
    (d / "f").write_text("x\n")
    run("add", "f")
    run("-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", "x")
    run("repack", "-a", "-d", "-q")
    return d / ".git/objects/pack"


# When the worker dies: before its commit record (ref_writes -1); after 0..3 of its 4 ref
# writes; after all 4, before marking the record finished (4). And who finishes the update.
FINISHERS = ("update", "compact", "reader")
CASES = [(n, FINISHERS[(n + 1) % 3]) for n in range(-1, len(BATCH) + 1)]


@pytest.mark.parametrize("ref_writes,finisher", CASES)
def test_atomic_update_killed_after_n_ref_writes_is_all_or_nothing(
    svc, pack_dir, ref_writes, finisher
):
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            dying = make()
            if ref_writes < 0:
                counts = dies_at(dying, record_writes=0)
            elif ref_writes < len(BATCH):
                counts = dies_at(dying, ref_writes=ref_writes)
            else:
                counts = dies_at(dying, record_writes=1)
            with pytest.raises(Died):
                await dying.update({"atomic": True, "updates": BATCH})
            committed = ref_writes >= 0
            assert counts["refs"] == max(ref_writes, 0), "died exactly there"
            stored = await make().stored_refs()
            # What the ref objects hold: the first ref_writes refs of the batch are written.
            torn = dict(BEFORE)
            for u in BATCH[: max(ref_writes, 0)]:
                plugin.overlay({"updates": [u]}, torn)
            assert stored == torn

            # The dead worker's lease has not expired yet: readers see the committed update
            # (or none of it) but leave the objects to whoever takes the lease.
            await hold_dead_lease(make, dying)
            expected = AFTER if committed else BEFORE
            assert await make().refs() == expected
            assert await make().stored_refs() == torn

            # Lease expired; the next holder of the lease finishes the update.
            await make.redis.delete(dying.lock_key)
            nxt = make()
            if finisher == "update":
                res = await nxt.update(
                    {"updates": [{"ref": "refs/heads/other", "old": None, "new": C}]}
                )
                assert res["results"][0]["status"] == "ok", res
                expected = dict(expected, **{"refs/heads/other": C})
            elif finisher == "compact":
                await compact_with_a_real_pack(nxt, pack_dir)
            else:
                assert await nxt.refs() == expected
            assert await make().stored_refs() == expected, "the ref objects (Hypha's view) agree"
            record = await make().read_record()
            if committed:
                assert record.record["generation"] == 1 and not record.unfinished
            else:
                assert record is None, "nothing was committed"

            # And the next atomic update builds on it.
            res = await make().update(
                {
                    "atomic": True,
                    "updates": [
                        {"ref": "refs/heads/main", "old": expected["refs/heads/main"], "new": C},
                        {"ref": "refs/heads/x", "old": None, "new": C},
                    ],
                }
            )
            assert [r["status"] for r in res["results"]] == ["ok", "ok"], res
            record = await make().read_record()
            assert (record.generation, record.unfinished) == (2 if committed else 1, False)

    asyncio.run(main())


def test_atomic_update_killed_in_its_roll_back_is_rolled_forward(svc):
    """A ref of the batch moved by an outside writer makes the update roll back; dying during
    the roll-back leaves the record unfinished, and the update is finished instead (all refs,
    except the one the outside writer holds), as journal.rs promises."""
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            dying = make()
            real_put = dying.put
            state = {"ref_puts": 0}

            async def put(rel, body, **kw):
                if rel.startswith("refs/"):
                    state["ref_puts"] += 1
                    if state["ref_puts"] == 2:
                        # Hypha's own receive-pack moves topic right before we write it.
                        await real_put("refs/heads/topic", f"{C}\n".encode())
                    if state["ref_puts"] == 3:
                        raise Died("killed in the roll-back")
                return await real_put(rel, body, **kw)

            dying.put = put
            with pytest.raises(Died):
                await dying.update({"atomic": True, "updates": BATCH})
            assert (await make().read_record()).unfinished
            # The record promises its new values; the first reader sees them (as with the
            # Rust server) and, no lease being held, finishes the update. The outside writer's
            # topic stands: from then on every reader sees it.
            assert await make().refs() == AFTER
            finished = dict(AFTER, **{"refs/heads/topic": C})
            assert await make().stored_refs() == finished
            assert await make().refs() == finished
            assert not (await make().read_record()).unfinished

    asyncio.run(main())


def test_failed_atomic_update_finishes_its_record_so_nothing_is_rolled_forward(svc):
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            repo = make()
            real_put = repo.put

            async def put(rel, body, **kw):
                if rel == "refs/heads/topic":
                    await real_put(rel, f"{C}\n".encode())  # an outside writer wins the race
                return await real_put(rel, body, **kw)

            repo.put = put
            res = await repo.update({"atomic": True, "updates": BATCH})
            assert [r["status"] for r in res["results"]] == [
                "rejected",
                "stale",
                "rejected",
                "rejected",
            ]
            assert res["results"][1]["current"] == C
            want = dict(BEFORE, **{"refs/heads/topic": C})
            assert await make().stored_refs() == want
            record = await make().read_record()
            assert (record.generation, record.unfinished) == (1, False)
            assert await make().refs() == want

    asyncio.run(main())


def test_reader_repeats_a_read_that_a_whole_update_slipped_into(svc):
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            reader, writer = make(), make()
            reads = []

            async def read():
                refs = await reader.stored_refs()
                if not reads:
                    # main was read before the update, topic after it.
                    res = await writer.update({"atomic": True, "updates": BATCH})
                    assert all(r["status"] == "ok" for r in res["results"]), res
                    refs["refs/heads/topic"] = (await reader.read_ref("refs/heads/topic")).oid
                reads.append(refs)
                return refs

            refs, overlaid = await reader.consistent_refs(read)
            assert len(reads) == 2, "the torn read was repeated"
            assert not overlaid
            assert refs == AFTER

    asyncio.run(main())


def test_unreadable_or_newer_record_is_refused_and_changes_nothing(svc):
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            for body, says in (
                (b"{not json", "unreadable commit record of ws/crash"),
                (b'{"version":2,"generation":1,"committed_at":0,"updates":[]}', "has version 2"),
                (
                    b'{"version":1,"generation":1,"committed_at":0,"updates":[{"ref":"HEAD"}]}',
                    "valid ref",
                ),
            ):
                s3.put_object(Bucket=bucket, Key=prefix + plugin.RECORD_REL, Body=body)
                for call in (make().refs(), make().update({"atomic": True, "updates": BATCH})):
                    with pytest.raises(plugin.ApiError) as e:
                        await call
                    assert says in e.value.detail, e.value.detail
                assert await make().stored_refs() == BEFORE
                assert raw(svc, prefix + plugin.RECORD_REL) == body

    asyncio.run(main())


# -- interop with the Rust server ------------------------------------------------------------


def rust_record(generation: int, updates: list) -> bytes:
    """What serde_json writes for journal::Record (src/storage/repo/journal.rs), as a literal:
    fields in declaration order, `ref` renamed, None as null, no whitespace."""
    parts = ",".join(
        '{"ref":"%s","old":%s,"new":%s}' % (u["ref"], json.dumps(u["old"]), json.dumps(u["new"]))
        for u in updates
    )
    return (
        '{"version":1,"generation":%d,"committed_at":1700000000,"updates":[%s]}'
        % (generation, parts)
    ).encode()


def test_record_in_rust_bytes_is_honoured_by_the_plugin(svc):
    prefix = f"plugin-crash/{uuid.uuid4().hex}/.git/"
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]

    async def main():
        async with repos(svc, prefix) as make:
            await seed(make())
            s3.put_object(Bucket=bucket, Key=prefix + plugin.RECORD_REL, Body=rust_record(7, BATCH))
            assert await make().refs() == AFTER
            assert await make().stored_refs() == AFTER, "the reader rolled it forward"
            assert raw(svc, prefix + plugin.RECORD_REL) == rust_record(7, []), "same bytes"
            await make().update(
                {
                    "atomic": True,
                    "updates": [
                        {"ref": "refs/heads/main", "old": B, "new": C},
                        {"ref": "refs/heads/topic", "old": B, "new": C},
                    ],
                }
            )
            assert (await make().read_record()).generation == 8

    asyncio.run(main())


@contextlib.contextmanager
def rust_server(svc, s3_prefix: str):
    """`git hypha serve` on Hypha's bucket under ``s3_prefix``: (url, admin token)."""
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=svc["HYPHA_TEST_S3_KEY"],
        AWS_SECRET_ACCESS_KEY=svc["HYPHA_TEST_S3_SECRET"],
        AWS_REGION="us-east-1",
    )
    proc = subprocess.Popen(
        [
            str(_helper_dir() / "git-hypha"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3-endpoint",
            svc["HYPHA_TEST_S3_URL"],
            "--s3-bucket",
            svc["HYPHA_TEST_BUCKET"],
            "--s3-prefix",
            s3_prefix,
            "--s3-path-style",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = proc.stdout.readline().decode().strip().removeprefix("listening on ")
        token = proc.stdout.readline().decode().strip().removeprefix("admin token: ")
        assert url.startswith("http://") and token, "git hypha serve did not start"
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def call(url: str, token: str, route: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{url}/ws/git/repo/remote/v1/{route}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_rust_server_and_plugin_finish_each_others_records(svc):
    """One bucket, both servers: each one's record is read, finished and built on by the other."""
    s3_prefix = f"plugin-interop-{uuid.uuid4().hex[:12]}"
    prefix = f"{s3_prefix}/ws/artifacts/repo/.git/"  # where the Rust server keeps ws/repo

    async def main(url, token):
        async with repos(svc, prefix) as make:
            call(url, token, "create", {})
            await seed(make())
            # The plugin dies after one ref write; the Rust server's reader sees the whole
            # update and finishes it.
            dying = make()
            dies_at(dying, ref_writes=1)
            with pytest.raises(Died):
                await dying.update({"atomic": True, "updates": BATCH})
            assert call(url, token, "refs", {})["refs"] == AFTER
            assert await make().stored_refs() == AFTER
            rust_bytes = raw(svc, prefix + plugin.RECORD_REL)
            assert (
                json.loads(rust_bytes)["updates"] == []
                and json.loads(rust_bytes)["generation"] == 1
            )

            # The Rust server commits an atomic update (generation 2, its own bytes)...
            res = call(
                url,
                token,
                "update",
                {
                    "atomic": True,
                    "updates": [
                        {"ref": "refs/heads/main", "old": B, "new": C},
                        {"ref": "refs/heads/topic", "old": B, "new": C},
                    ],
                },
            )
            assert [r["status"] for r in res["results"]] == ["ok", "ok"], res
            rust_bytes = raw(svc, prefix + plugin.RECORD_REL)
            record = await make().read_record()
            assert record.generation == 2
            # ...in exactly the bytes the plugin writes for the same record.
            assert plugin.record_bytes(record.record) == rust_bytes
            # The plugin's next commit builds on the Rust server's record.
            res = await make().update(
                {
                    "atomic": True,
                    "updates": [
                        {"ref": "refs/heads/main", "old": C, "new": A},
                        {"ref": "refs/tags/new", "old": B, "new": None},
                    ],
                }
            )
            assert [r["status"] for r in res["results"]] == ["ok", "ok"], res
            assert (await make().read_record()).generation == 3
            assert call(url, token, "refs", {})["refs"] == {
                "refs/heads/main": A,
                "refs/heads/topic": C,
            }

    with rust_server(svc, s3_prefix) as (url, token):
        asyncio.run(main(url, token))
