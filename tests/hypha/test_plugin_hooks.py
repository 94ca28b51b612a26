"""Events on push through the Hypha plugin (issue 16 item 4): a push through the plugin fires
the repository's webhook (the plugin's child sends it, the same Rust code as `git hypha serve`),
is a ``git_push`` event that a Hypha service subscribed to receives, and leaves Hypha's record
of the artifact as an API ``commit()`` would (``last_modified``, a ``v0`` version; not
``file_count``, see the plugin's ``record_push``).

The webhook receiver listens on 127.0.0.1, which scripts/hypha-services.sh allows through
HYPHA_WEBHOOK_ALLOW; no other address is ever targeted.
"""

import asyncio
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypha_rpc import connect_to_server


SECRET = "plugin-hook-secret-5d1c"


@pytest.fixture
def receiver():
    """A real HTTP server on loopback that records each POST (headers, body) and answers 200."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((dict((k.lower(), v) for k, v in self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()


def _read_artifact(env, alias: str) -> dict:
    req = urllib.request.Request(
        f"{env.server}/public/services/artifact-manager/read",
        data=json.dumps({"artifact_id": f"{env.ws}/{alias}"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _rw_token(env) -> str:
    """A read-write (not admin) token for the workspace, from Hypha's own generate_token."""
    config = {"expires_in": 3600, "permission": "read_write", "workspace": env.ws}
    req = urllib.request.Request(
        f"{env.server}/{env.ws}/services/ws/generate_token",
        data=json.dumps({"config": config}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_push_through_plugin_fires_webhook_event_and_updates_record(env, receiver):
    target, got = receiver
    alias = env.new_alias()
    env.create(alias)
    add = env.run(["git-hypha", "hook", "add", env.url(alias), target],
                  env={"HYPHA_HOOK_SECRET": SECRET})  # fmt: skip
    assert SECRET.encode() not in add.stdout + add.stderr
    listed = env.run(["git-hypha", "hook", "list", env.url(alias)]).stdout.decode()
    assert target in listed and SECRET not in listed

    # A rw token pushes but does not manage webhooks: that is the workspace admin's.
    refused = env.run(["git-hypha", "hook", "list", env.url(alias)], check=False,
                      env={"HYPHA_TOKEN": _rw_token(env)})  # fmt: skip
    assert refused.returncode != 0 and b"admin" in refused.stderr, refused.stderr

    before = _read_artifact(env, alias)
    src = env.init("src")
    env.commit(src, "one", "a.txt")
    tip = env.commit(src, "two", "b.txt")
    time.sleep(1.1)  # last_modified counts seconds

    async def push_while_subscribed():
        server = await connect_to_server(
            {"server_url": env.server, "token": env.token, "workspace": env.ws}
        )
        try:
            events = asyncio.Queue()
            server.on("git_push", events.put_nowait)
            await server.subscribe(["git_push"])
            await asyncio.to_thread(env.git, "push", "-q", "-o", "ci=1", env.url(alias), "main",
                                    cwd=src)  # fmt: skip
            return await asyncio.wait_for(events.get(), 30)
        finally:
            await server.disconnect()

    message = asyncio.run(push_while_subscribed())
    event = message.get("data", message)
    assert event["artifact_id"] == f"{env.ws}/{alias}"
    assert event["refs"] == [{"ref": "refs/heads/main", "before": None, "after": tip}]
    assert event["push_options"] == ["ci=1"]

    headers, body = _until(lambda: got and got[0], "the webhook delivery")
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == want
    assert "authorization" not in headers
    payload = json.loads(body)
    assert (payload["ref"], payload["after"]) == ("refs/heads/main", tip)
    assert payload["repository"]["full_name"] == f"{env.ws}/{alias}"
    assert payload["pusher"]["name"] == event["pusher"] != "hypha"
    assert payload["push_options"] == ["ci=1"]

    # file_count stays as it was, as after a push through Hypha's own smart HTTP: Hypha's
    # count loads every pack of the repository (see record_push).
    after = _until(
        lambda: (a := _read_artifact(env, alias))["last_modified"] > before["last_modified"]
        and a, "the record update",
    )  # fmt: skip
    assert after["versions"], after
    log = _until(
        lambda: "delivered" in (out := env.run(["git-hypha", "hook", "list", env.url(alias)])
                                .stdout.decode()) and out, "the delivery log")  # fmt: skip
    assert "status 200" in log
