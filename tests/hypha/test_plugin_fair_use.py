"""Issue 24 through a real Hypha with the plugin: the client's ``X-Request-Id`` reaches the
plugin's child and comes back, so that the id a helper prints under ``-v`` is on the child's log
line (in Hypha's log); and the limits and quotas of ``git hypha serve`` apply to requests
through the plugin, set by the operator in ``HYPHA_GIT_SERVE_ARGS``, per Hypha user and per
workspace of the artifact.

The quota test starts a Hypha of its own (scripts/hypha-services.sh, with its own S3 server):
the shared instance runs without quotas, since every test there shares one workspace.
"""

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from test_hypha import ROOT, Env, _load_env


def _hypha_log(svc_env_file: Path) -> str:
    return (svc_env_file.parent / "hypha.log").read_text(errors="replace")


def _services_env() -> Path:
    return Path(os.environ.get("HYPHA_SERVICES_ENV", ROOT / "target/hypha-services/env"))


def _post(env: Env, alias: str, route: str, body: dict, headers: dict):
    req = urllib.request.Request(
        f"{env.server}/{env.ws}/git/{alias}/remote/v1/{route}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.token}"},
    )
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def test_the_request_id_reaches_the_child_and_comes_back(env):
    alias = env.new_alias()
    env.create(alias)
    rid = "pytest-" + uuid.uuid4().hex[:16]
    status, headers, body = _post(env, alias, "refs", {}, {"X-Request-Id": rid})
    assert status == 200, body
    assert {k.lower(): v for k, v in headers.items()}.get("x-request-id") == rid
    # The helper's own id, as `-v` prints it, is on the child's line too.
    src = env.init("src")
    env.commit(src, "one")
    p = env.git("push", "-v", env.url(alias), "main", cwd=src)
    ids = re.findall(r"hypha: update of \S+: 200 \(request id ([0-9A-Za-z_-]+)\)", p.stderr.decode())
    assert ids, p.stderr.decode()
    log = ""
    for _ in range(50):  # the child writes its line once the answer is sent
        log = _hypha_log(_services_env())
        if f"id={ids[0]}" in log and f"id={rid}" in log:
            break
        time.sleep(0.1)
    lines = [l for l in log.splitlines() if f"id={ids[0]}" in l]
    assert any("/remote/v1/update 200" in l for l in lines), lines
    assert any("/remote/v1/refs 200" in l and f"id={rid}" in l for l in log.splitlines())


@pytest.fixture(scope="module")
def quota_svc(tmp_path_factory):
    """A Hypha whose plugin's child runs with a stored-bytes quota of 30,000 bytes and one
    pending upload per workspace."""
    env_file = tmp_path_factory.mktemp("hypha-quota") / "env"
    e = dict(os.environ, HYPHA_GIT_SERVE_ARGS="--quota-stored-bytes 30000 --quota-pending-uploads 1")
    script = ROOT / "scripts/hypha-services.sh"
    subprocess.run([str(script), "start", str(env_file)], env=e, check=True, cwd=ROOT)
    try:
        old = os.environ.get("HYPHA_SERVICES_ENV")
        os.environ["HYPHA_SERVICES_ENV"] = str(env_file)
        try:
            svc = _load_env()
        finally:
            if old is None:
                del os.environ["HYPHA_SERVICES_ENV"]
            else:
                os.environ["HYPHA_SERVICES_ENV"] = old
        yield svc, env_file
    finally:
        subprocess.run([str(script), "stop", str(env_file)], cwd=ROOT, check=False)


def test_quotas_apply_through_the_plugin(tmp_path, quota_svc):
    svc, env_file = quota_svc
    env = Env(tmp_path, svc)
    alias = env.new_alias()
    env.create(alias)
    src = env.init("src")
    (src / "a.bin").write_bytes(os.urandom(10_000))
    env.git("add", "a.bin", cwd=src)
    env.git("commit", "-q", "-m", "a", cwd=src)
    first = env.out("rev-parse", "HEAD", cwd=src)
    env.git("push", "-q", env.url(alias), "main", cwd=src)
    # 25 KB more: past 30,000 bytes for the workspace. Refused at once, nothing moved.
    (src / "b.bin").write_bytes(os.urandom(25_000))
    env.git("add", "b.bin", cwd=src)
    env.git("commit", "-q", "-m", "b", cwd=src)
    p = env.git("push", env.url(alias), "main", cwd=src, check=False)
    err = p.stderr.decode()
    assert p.returncode != 0, err
    assert f"storage quota of 30000 bytes for workspace {env.ws} reached" in err, err
    assert env.remote_refs(env.url(alias)) == {"refs/heads/main": first}
    # Pending uploads: one in flight (handed URLs, never pushed), then another is refused
    # with its own code and status.
    pack = lambda c: {"name": "pack-" + c * 40, "pack_size": 100, "idx_size": 100}  # noqa: E731
    status, _, body = _post(env, alias, "uploads", {"packs": [pack("e")]}, {})
    assert status == 200, body
    status, headers, body = _post(env, alias, "uploads", {"packs": [pack("f")]}, {})
    assert status == 413, body
    assert body["error"] == "quota", body
    assert f"quota of 1 pending uploads for workspace {env.ws} reached" in body["detail"], body
    assert "retry-after" not in {k.lower() for k in headers}
