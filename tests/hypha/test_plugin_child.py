"""The plugin's child dies, Hypha and the rules do not: an atomic push through Hypha whose
``git hypha serve --plugin`` child is SIGKILLed mid-way lands all or nothing, Hypha keeps
serving, and the next request (a new child) sees a consistent state that Hypha's own smart HTTP
sees too.

This replaces test_plugin_crash.py, which drove the plugin's Python copy of the commit record:
with the rules in Rust only, the record itself is tested by the conformance suite
(src/repo/conformance.rs) and tests/e2e/crash.rs; what is left to show is that the plugin
path keeps the property.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_hypha import _repo_prefix

BRANCHES = 1000


def children(svc) -> set:
    """Process ids of the Hypha server's `git hypha serve --plugin` children."""
    p = subprocess.run(
        ["pgrep", "-P", svc["HYPHA_PID"], "-f", "serve --plugin"], capture_output=True
    )
    return {int(x) for x in p.stdout.split()}


def stored_branches(store: Path, prefix: str) -> set:
    heads = store / prefix / "refs" / "heads"
    return {p.name for p in heads.glob("b*")} if heads.is_dir() else set()


def test_child_killed_mid_atomic_push_is_all_or_nothing_and_replaced(env, svc):
    if not svc.get("HYPHA_TEST_STORE_DIR"):
        pytest.skip("needs s3s-fs (HYPHA_TEST_STORE_DIR) to watch ref writes")
    store = Path(svc["HYPHA_TEST_STORE_DIR"])
    for attempt in range(3):
        alias = env.new_alias()
        env.create(alias)
        src = env.init(f"src{attempt}")
        base = env.commit(src, "base")
        env.git("push", "-q", env.url(alias), "main", cwd=src)
        prefix = _repo_prefix(env, alias)
        new = env.commit(src, "new")
        refs = "".join(f"create refs/heads/b{i:05} {new}\n" for i in range(BRANCHES))
        env.git("update-ref", "--stdin", cwd=src, stdin=refs.encode())
        (victim,) = children(svc)
        push = subprocess.Popen(
            ["git", "push", "-q", "--atomic", env.url(alias), "refs/heads/*:refs/heads/*"],
            cwd=src,
            env=env.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Kill the child once its update has written some refs but not all.
        written = 0
        deadline = time.time() + 300
        while push.poll() is None and time.time() < deadline:
            written = len(stored_branches(store, prefix))
            if written:
                os.kill(victim, signal.SIGKILL)
                break
            time.sleep(0.005)
        err = push.communicate(timeout=300)[1].decode()
        if 0 < written < BRANCHES:
            break
    else:
        pytest.skip("the update always finished before the kill (machine too fast)")
    assert env.token not in err

    # The next request starts a new child; it sees the committed update whole.
    after = env.remote_refs(env.url(alias))
    branches = {r for r in after if r.startswith("refs/heads/b")}
    assert len(branches) in (0, BRANCHES), f"{len(branches)} of {BRANCHES} branches visible"
    # The push tells the truth: it may succeed only if it landed whole. (The helper asks again
    # when the update's answer is lost with the child; the new child has rolled a committed
    # update forward, and a ref found at the value pushed is that push's own work.)
    if push.returncode == 0:
        assert len(branches) == BRANCHES, f"success with {len(branches)} branches\n{err}"
    else:
        assert err.strip(), "a failed push says why"
    assert all(after[r] == new for r in branches)
    # main moved in the same atomic batch: with the branches, or not at all.
    assert after["refs/heads/main"] == (new if branches else base)
    replaced = children(svc)
    assert replaced and victim not in replaced, "a new child serves"

    # The reader rolled the update forward: Hypha's smart HTTP, which reads the ref objects and
    # knows nothing of the commit record, agrees.
    for _ in range(100):
        if len(stored_branches(store, prefix)) in (0, BRANCHES):
            break
        time.sleep(0.1)
    assert len(stored_branches(store, prefix)) == len(branches)
    assert env.remote_refs(env.smart_url(alias)) == after

    # And the repository takes the next push.
    env.commit(src, "next")
    env.git("push", "-q", "-f", env.url(alias), "main", cwd=src)
