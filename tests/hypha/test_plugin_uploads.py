"""Upload marks in the plugin, through a real Hypha: a pack uploaded through `uploads` stays
hidden from `packs` until an `update` names it, and `compact` deletes it once its upload has
been pending longer than the grace period (a pusher that died between upload and update).
Mirrors src/repo/uploads.rs; same keys and bodies.
"""

import subprocess
import time
import urllib.request


from test_hypha import Env, _repo_prefix, _s3, _stored_packs


def make_pack(env: Env, repo, revs: str) -> tuple:
    """(name, pack bytes, idx bytes) of the objects git's ``revs`` select, made by git."""
    out = env.tmp / "packs"
    out.mkdir(exist_ok=True)
    p = subprocess.run(
        ["git", "pack-objects", "-q", "--revs", str(out / "p")],
        cwd=repo,
        env=env.env,
        input=revs.encode(),
        capture_output=True,
        check=True,
    )
    checksum = p.stdout.decode().strip()
    base = out / f"p-{checksum}"
    return (
        f"pack-{checksum}",
        base.with_suffix(".pack").read_bytes(),
        base.with_suffix(".idx").read_bytes(),
    )


def upload(env: Env, alias: str, pack: tuple) -> None:
    """What a push does before its update: ask for URLs, PUT the idx, then the pack."""
    name, pack_bytes, idx_bytes = pack
    status, body = env.api(
        alias,
        "uploads",
        {"packs": [{"name": name, "pack_size": len(pack_bytes), "idx_size": len(idx_bytes)}]},
    )
    assert status == 200, body
    (spec,) = body["uploads"]
    for what, data in (("idx", idx_bytes), ("pack", pack_bytes)):
        req = urllib.request.Request(
            spec[what]["url"], data=data, method="PUT", headers=spec[what]["headers"]
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200


def listed(env: Env, alias: str) -> set:
    status, body = env.api(alias, "packs", {})
    assert status == 200, body
    return {p["name"] for p in body["packs"]}


def test_uploaded_pack_is_hidden_until_an_update_names_it_and_abandoned_ones_are_compacted(
    env, svc
):
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    first = env.commit(src, "one")
    env.git("push", "-q", env.url(alias), "main", cwd=src)
    prefix = _repo_prefix(env, alias)
    marks = prefix + "hypha-remote/uploads/"

    def marked() -> set:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=marks).get("Contents", [])
        return {o["Key"][len(marks) :] for o in listing}

    (pushed,) = listed(env, alias)
    assert marked() == set(), "the helper's push named its pack: no mark left"

    # A pusher that dies between upload and update: its pack is stored but not listed.
    second = env.commit(src, "two")
    orphan = make_pack(env, src, f"{second}\n^{first}\n")
    before = time.time()
    upload(env, alias, orphan)
    assert orphan[0] in _stored_packs(s3, bucket, prefix)
    assert marked() == {orphan[0]}
    at = int(s3.get_object(Bucket=bucket, Key=marks + orphan[0])["Body"].read().decode())
    assert int(before) <= at <= time.time(), "the mark holds its unix time"
    assert listed(env, alias) == {pushed}

    # An update that writes no ref (stale) does not make it visible either: it deletes it at
    # once (that push is over; pushed again, the pack goes up again).
    status, body = env.api(
        alias,
        "update",
        {
            "updates": [{"ref": "refs/heads/main", "old": second, "new": second}],
            "packs": [orphan[0]],
        },
    )
    assert status == 200 and body["results"][0]["status"] == "stale", body
    assert listed(env, alias) == {pushed}
    assert orphan[0] not in _stored_packs(s3, bucket, prefix)
    assert marked() == set()

    # The dying pusher again: this upload stays until compaction removes it.
    upload(env, alias, orphan)
    at = int(s3.get_object(Bucket=bucket, Key=marks + orphan[0])["Body"].read().decode())

    # A pack that an update names is listed from then on.
    third = env.commit(src, "three", "g.txt")
    named = make_pack(env, src, f"{third}\n^{first}\n")
    upload(env, alias, named)
    assert listed(env, alias) == {pushed}
    status, body = env.api(
        alias,
        "update",
        {"updates": [{"ref": "refs/heads/main", "old": first, "new": third}], "packs": [named[0]]},
    )
    assert status == 200 and body["results"][0]["status"] == "ok", body
    assert listed(env, alias) == {pushed, named[0]}
    assert marked() == {orphan[0]}

    # compact keeps a pending upload within the grace period...
    status, body = env.api(alias, "compact", {"pack": named[0], "retire": []})
    assert status == 200 and body["deleted"] == [], body
    assert orphan[0] in _stored_packs(s3, bucket, prefix)
    # ...and deletes it (pack, idx, mark) once the mark is older than that.
    s3.put_object(
        Bucket=bucket, Key=marks + orphan[0], Body=f"{at - body['grace_secs']}\n".encode()
    )
    status, body = env.api(alias, "compact", {"pack": named[0], "retire": []})
    assert status == 200 and body["deleted"] == [orphan[0]], body
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "objects/pack/").get("Contents", [])
    assert not [o["Key"] for o in listing if orphan[0] in o["Key"]]
    assert marked() == set()
    assert _stored_packs(s3, bucket, prefix) == {pushed, named[0]}

    # The repository is whole: a clone through the helper and through Hypha's smart HTTP.
    for url, name in ((env.url(alias), "helper"), (env.smart_url(alias), "smart")):
        d = env.tmp / name
        env.git("clone", "-q", url, str(d))
        env.git("fsck", "--strict", "--no-dangling", cwd=d)
        assert env.out("rev-parse", "HEAD", cwd=d) == third


def test_an_update_naming_a_purged_upload_is_refused_and_writes_nothing(env, svc):
    s3, bucket = _s3(svc), svc["HYPHA_TEST_BUCKET"]
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    first = env.commit(src, "one")
    env.git("push", "-q", env.url(alias), "main", cwd=src)
    prefix = _repo_prefix(env, alias)
    (pushed,) = listed(env, alias)
    second = env.commit(src, "two")
    late = make_pack(env, src, f"{second}\n^{first}\n")
    upload(env, alias, late)
    # The pusher stalls past the grace period; a compaction deletes its upload.
    s3.put_object(Bucket=bucket, Key=prefix + "hypha-remote/uploads/" + late[0], Body=b"0\n")
    status, body = env.api(alias, "compact", {"pack": pushed, "retire": []})
    assert status == 200 and body["deleted"] == [late[0]], body
    status, body = env.api(
        alias,
        "update",
        {"updates": [{"ref": "refs/heads/main", "old": first, "new": second}], "packs": [late[0]]},
    )
    assert status == 422 and "is not complete" in body["detail"], body
    assert env.remote_refs(env.url(alias)) == {"refs/heads/main": first}
