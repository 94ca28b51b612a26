"""Presigned URLs behind Hypha's S3 proxy (no server needed): every answer hands out Hypha's
public address, `refs` included, which has carried the pack listing (with its URLs) since
issue 25. A list of the routes that carry URLs left `refs` out once, and fetches through a
Hypha whose S3 only its proxy reaches got URLs of the internal S3 address: there is no list
now."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hypha-plugin"))

import hypha_git_remote as plugin  # noqa: E402

S3 = "http://10.0.0.5:9000"


def _repo():
    manager = SimpleNamespace(store=SimpleNamespace(public_base_url="https://hypha.example"))
    return plugin.Repo(
        manager=manager,
        s3_config={"endpoint_url": S3, "public_endpoint_url": "x", "bucket": "b"},
        name="ws/repo",
        prefix="ws/artifacts/01abc/.git/",
        lock=None,
        redis=None,
        lock_key="k",
    )


def test_the_refs_listing_hands_out_public_urls():
    # Every answer is passed through, whichever route: no list of routes to forget one in.
    assert not hasattr(plugin, "URL_ROUTES")
    oid = "0123456789abcdef0123456789abcdef01234567"
    answer = {
        "refs": {"refs/heads/main": oid},
        "head": "refs/heads/main",
        "packs": {
            "packs": [
                {
                    "name": "pack-" + oid,
                    "pack_url": f"{S3}/b/ws/artifacts/01abc/.git/objects/pack/pack-{oid}.pack?X=1",
                    "idx_url": f"{S3}/b/ws/artifacts/01abc/.git/objects/pack/pack-{oid}.idx?X=2",
                    "pack_size": 10,
                    # A clone's listing carries small packs (base64): not a URL, left as it is.
                    "inline": "UEFDSw==",
                }
            ],
            "expires_at": 1,
        },
    }
    out = plugin._public_urls(_repo(), answer)
    pack = out["packs"]["packs"][0]
    assert pack["pack_url"].startswith("https://hypha.example/s3/b/ws/artifacts/01abc/"), pack
    assert pack["idx_url"].startswith("https://hypha.example/s3/b/"), pack
    assert out["refs"] == {"refs/heads/main": oid} and out["head"] == "refs/heads/main"
    assert pack["pack_size"] == 10 and out["packs"]["expires_at"] == 1
    assert pack["inline"] == "UEFDSw=="


def test_without_a_proxy_answers_pass_unchanged():
    repo = _repo()
    repo.s3_config = {"endpoint_url": S3, "bucket": "b"}
    answer = {"url": f"{S3}/b/key?X=1", "n": [1, "x"]}
    assert plugin._public_urls(repo, answer) is answer
