"""Remote API v1 of git-remote-hypha inside a Hypha server (docs/design.md §4, §11, §13).

Enable: ``python -m hypha.server ... --startup-functions hypha_git_remote:hypha_startup``. Routes:
``POST /{ws}/git/{alias}/remote/v1/{route}`` (Hypha's ``GET /{page:path}`` shadows GET routes),
an LFS endpoint of ours, ``.../remote/v1/lfs`` (batch, verify, the parts routes of our transfer
agent, the locks), which ``refs`` names for the helper to record, and the Git LFS locks API below
Hypha's own LFS endpoint, which has none: ``.../info/lfs/locks``; Hypha's ``.../info/lfs``
(``basic`` only) stays Hypha's for every other client. Both route tables, what each route asks
of its caller and its body bound are the child's (``git hypha routes``), the LFS paths too.
The repository rules (refs, packs, compare-and-swap, webhooks, ...) are written once, in Rust.
Here, what only Hypha knows: who may do what (``read``, ``commit``, ``get_secret`` for hooks),
where a repository lives (``_get_s3_config``, artifact UUID), the lease in Hypha's Redis around
updates and compactions, and after a push its ``git_push`` event and Hypha's record. The rest
goes to a ``git hypha serve --plugin`` child on loopback (one per S3 configuration) that trusts
only its random key and exits when its stdin closes. The child compacts after pushes by
itself, and asks here for the lease around retiring packs (``serve_leases``). No pack byte,
token or presigned URL passes through a message or log line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

logger = logging.getLogger("hypha-git-remote")

LOCK_TIMEOUT = 30.0  # how long `update`/`compact` wait for another worker's: then busy
LOCK_LEASE_MS = 60_000  # the Redis lease expires, should its worker die
CHILD_START_TIMEOUT = 30.0  # for a child to say where it listens
LEASE_POLL = 25  # seconds a poll for the child's lease asks waits (the child's bound is 30)
# Hypha's question for what a route asks of its caller (the route tables, API v1's and LFS's,
# are the Rust server's, from ``git hypha routes``); webhooks hold signing secrets:
# ``get_secret`` (workspace admin).
HYPHA_OPERATION = {"read": "read", "write": "commit", "admin": "get_secret"}
CHILD_CONFIG = ("endpoint_url", "bucket", "access_key_id", "secret_access_key", "region_name")
# From the child's answers; the request id is the client's (the child keeps a sane one) or the
# child's own, so that a helper's ``-v`` line and the child's log line name the same request.
PASSED_HEADERS = ("retry-after", "www-authenticate", "lfs-authenticate", "x-request-id")
REQUEST_ID = "x-request-id"

NAMES_TIMEOUT = 10.0  # for ``git hypha names`` to answer one line

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
# Hypha's own LFS endpoint: its batch and verify stay Hypha's; the locks it lacks are ours.
LFS_HYPHA = "/{workspace}/git/{alias}/info/lfs"
# Our LFS endpoint (issue 22): batch, verify, the parts routes of our transfer agent and the
# locks, at a path of our own, so that Hypha's ``.../info/lfs`` (``basic``) stays Hypha's. The
# ``refs`` answer names it (``lfs_endpoint``), and the helper records it for git-lfs.
LFS_OURS = "/{workspace}/git/{alias}/remote/v1/lfs"


class Names:
    """The server's name checks, asked of ``git hypha names``: one process per worker, started
    at first use (again if it died), one JSON line each way. The rules are the Rust server's:
    the plugin keeps no copy of them."""

    def __init__(self):
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.lock = asyncio.Lock()  # one question at a time on the pipe

    async def check(self, workspace: str, alias: str, default_branch=None) -> dict:
        """``{"alias", "default_branch"?}`` for good names; ``ApiError("invalid")`` otherwise."""
        ask = {"workspace": workspace, "alias": alias}
        if default_branch is not None:
            ask["default_branch"] = str(default_branch)
        line = (json.dumps(ask) + "\n").encode()
        async with self.lock:
            for _ in range(2):  # a process that died answers on the second try, restarted
                try:
                    if self.proc is None or self.proc.returncode is not None:
                        self.proc = await asyncio.create_subprocess_exec(
                            git_hypha(), "names", stdin=asyncio.subprocess.PIPE,
                            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                        )  # fmt: skip
                    self.proc.stdin.write(line)
                    await self.proc.stdin.drain()
                    answer = await asyncio.wait_for(self.proc.stdout.readline(), NAMES_TIMEOUT)
                    if answer:
                        answer = json.loads(answer)
                        if "detail" in answer:
                            raise ApiError("invalid", answer["detail"])
                        return answer
                except (OSError, asyncio.TimeoutError, ValueError):
                    logger.warning("git hypha names failed; starting it again", exc_info=True)
                with contextlib.suppress(ProcessLookupError, AttributeError):
                    self.proc.kill()
                self.proc = None
        raise ApiError("internal", "the repository server cannot check names (see Hypha's log)")


class ApiError(Exception):
    """An answer other than 2xx, as ``{"error": code, "detail": text}``."""

    # Each code's HTTP status, the Rust server's (``git hypha routes``' ``errors``), read once
    # at startup (``GitRemoteApi.routes``); a code it does not name answers 500.
    STATUS: dict = {}

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail

    def response(self) -> JSONResponse:
        # A 401's challenge makes git and our helper ask for a token.
        headers = {"unauthenticated": {"WWW-Authenticate": 'Basic realm="hypha"'}}
        headers = headers.get(self.code) or ({"Retry-After": "5"} if self.code == "busy" else {})
        body = {"error": self.code, "detail": self.detail}
        return JSONResponse(body, status_code=self.STATUS.get(self.code, 500), headers=headers)


@dataclass
class Repo:
    """One artifact's ``.git/``, as Hypha decided it, and this worker's hold on its lease."""

    manager: Any  # Hypha's ArtifactController
    s3_config: dict
    name: str  # ws/alias, for messages
    prefix: str  # "{s3 prefix}/{artifact uuid}/.git/"
    lock: asyncio.Lock
    # Hypha's Redis (shared by workers with --redis-uri, else fakeredis); None: local lock only.
    redis: Any = field(default=None, repr=False)
    lock_key: str = ""
    _lease: Optional[str] = field(default=None, repr=False)

    async def _locked(self):
        """This worker's lock of the repository, then the lease shared by all workers."""
        busy = ApiError("busy", f"{self.name} is being updated; try again")
        deadline = asyncio.get_running_loop().time() + LOCK_TIMEOUT
        try:
            await asyncio.wait_for(self.lock.acquire(), LOCK_TIMEOUT)
        except asyncio.TimeoutError:
            raise busy from None
        if self.redis is None:
            return
        lease = secrets.token_hex(16)
        try:
            while not await self.redis.set(self.lock_key, lease, nx=True, px=LOCK_LEASE_MS):
                if asyncio.get_running_loop().time() > deadline:
                    raise busy
                await asyncio.sleep(0.05)
        except BaseException:
            self.lock.release()
            raise
        self._lease = lease

    async def _unlock(self) -> None:
        """Ends the lease only if it is still ours (it may have expired and been taken)."""
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.lock_key)
                    held = await pipe.get(self.lock_key)
                    if held in (lease, lease.encode()):
                        pipe.multi()
                        pipe.delete(self.lock_key)
                        await pipe.execute()
                    else:
                        await pipe.unwatch()
        except Exception:
            # The lease expires by itself; the repository is consistent either way.
            logger.exception("could not end the update lease of %s", self.name)
        finally:
            self.lock.release()

    def public(self, url: str) -> str:
        """Behind Hypha's S3 proxy, hand out the public address, as Hypha's LFS does."""
        endpoint = self.s3_config["endpoint_url"].rstrip("/") + "/"
        if self.s3_config.get("public_endpoint_url") and url.startswith(endpoint):
            return f"{self.manager.store.public_base_url}/s3/{url[len(endpoint):]}"
        return url


def git_hypha() -> str:
    """``$HYPHA_GIT_BIN``, else the ``git-hypha`` a wheel put beside this Python, else PATH."""
    beside = Path(sys.executable).parent / "git-hypha"
    found = os.environ.get("HYPHA_GIT_BIN") or shutil.which(beside) or shutil.which("git-hypha")
    if not found:
        raise ApiError("internal", "git-hypha is not installed beside Hypha (pip or PATH)")
    return found


class Child:
    """One ``git hypha serve --plugin`` on loopback, for one S3 configuration."""

    def __init__(self, s3_config: dict):
        self.s3_config, self.key = s3_config, secrets.token_hex(32)
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.http: Optional[httpx.AsyncClient] = None

    async def start(self) -> None:
        c = self.s3_config
        # Nothing of Hypha's environment may configure the child but what we pass.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPHA_", "AWS_"))}
        env.update(HYPHA_GIT_PLUGIN_KEY=self.key, AWS_ACCESS_KEY_ID=c["access_key_id"])
        env.update(AWS_SECRET_ACCESS_KEY=c["secret_access_key"])
        args = ["serve", "--plugin", "--listen", "127.0.0.1:0", "--s3-path-style"]
        args += ["--s3-bucket", c["bucket"], "--s3-endpoint", c["endpoint_url"]]
        args += ["--s3-region", c.get("region_name") or "us-east-1"]
        if allow := os.environ.get("HYPHA_WEBHOOK_ALLOW"):  # webhook hosts that may be private
            args += ["--webhook-allow", allow]
        # The operator's limits and quotas (README, operators): `--rate-limit-token N`,
        # `--byte-limit-token BYTES`, `--quota-stored-bytes BYTES`, ...; the child refuses
        # a flag it does not know, and then does not start.
        args += shlex.split(os.environ.get("HYPHA_GIT_SERVE_ARGS", ""))
        # stdin stays open and unused: the child exits at its end of file, when we die.
        self.proc = await asyncio.create_subprocess_exec(
            git_hypha(), *args, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        line = b""
        with contextlib.suppress(asyncio.TimeoutError):
            line = await asyncio.wait_for(self.proc.stdout.readline(), CHILD_START_TIMEOUT)
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("listening on http://"):
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            raise ApiError("internal", "the repository server did not start (see Hypha's log)")
        if self.http is not None:
            await self.http.aclose()
        # Loopback: no proxies from the environment; no read timeout (S3 sets the pace).
        base, timeout = text[len("listening on ") :], httpx.Timeout(None, connect=5.0)
        self.http = httpx.AsyncClient(base_url=base, trust_env=False, timeout=timeout)
        logger.info("started git hypha serve --plugin (pid %s)", self.proc.pid)

    async def lease_asks(self, wait: int):
        """The child's asks for Hypha's lease, waiting up to ``wait`` seconds for one."""
        timeout = httpx.Timeout(wait + 10.0, connect=5.0)
        h = {"X-Hypha-Plugin-Key": self.key}
        return await self.http.get("/_plugin/leases", params={"wait": wait}, headers=h,
                                   timeout=timeout)  # fmt: skip

    async def answer_lease(self, ask_id, answer: dict):
        """Says whether the lease of ask ``ask_id`` is held; when it is, the child answers once
        its work under the lease is done."""
        h = {"X-Hypha-Plugin-Key": self.key}
        return await self.http.post(f"/_plugin/leases/{int(ask_id)}", json=answer, headers=h)

    async def post(self, path, body, permission, prefix, user, request_id=None):
        extra = {"X-Request-Id": request_id} if request_id else {}
        return await self.request("POST", path, body, permission, prefix, user, extra)

    async def request(self, method, path, body, permission, prefix, user, headers: dict,
                      params=None, media_type="application/json"):  # fmt: skip
        """``method path`` of the child as Hypha's ``user`` (``_user_id``) with ``permission``;
        ``headers`` add the caller's own (request id; on LFS routes, ``Authorization``, which
        the child puts in the ``verify`` and ``parts`` actions for git-lfs and the agent to send
        back here, trusting only its key itself)."""
        h = {"X-Hypha-Plugin-Key": self.key, "X-Hypha-Permission": permission}
        h.update({"X-Hypha-Repo-Prefix": prefix, "Content-Type": media_type})
        if user is not None:  # the pusher named in webhook events, a lock's owner
            h["X-Hypha-User"] = user
        h.update(headers)
        return await self.http.request(method, path, content=body, headers=h, params=params)


def _user_id(user) -> Optional[str]:
    """Who the child is told calls: Hypha's user id, or none for Hypha's anonymous user, which
    the child then treats as anonymous (401 where a route needs a name, as standalone)."""
    return None if user.is_anonymous else user.id


def _public_urls(repo: Repo, value):
    """Every presigned URL in an answer (only they start with the S3 endpoint), made public:
    every answer of the child is passed here, so no list of the routes that carry URLs is kept
    (one was, and a route left out of it handed out internal S3 addresses)."""
    if not repo.s3_config.get("public_endpoint_url"):
        return value  # no proxy: the URLs are the public ones already
    if isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out = {k: _public_urls(repo, v) for k, v in items}
        return out if isinstance(value, dict) else list(out.values())
    return repo.public(value) if isinstance(value, str) else value


def _repo_prefix(s3_prefix: str, artifact_id: str) -> str:
    """Where a repository lives in the bucket, as the child is told (``X-Hypha-Repo-Prefix``).
    An empty S3 prefix would make a key start with "/": the child refuses such keys."""
    return f"{s3_prefix}/{artifact_id}/.git/".lstrip("/")


def _artifact_of(prefix: str) -> str:
    """The artifact UUID of a ``_repo_prefix``: what a lease ask of the child names."""
    artifact = prefix.removesuffix("/.git/").rpartition("/")[2]
    if not prefix.endswith("/.git/") or not artifact:
        raise ValueError(f"not a repository prefix: {prefix!r}")
    return artifact


def _lease_key(artifact_id: str) -> str:
    """The repository's lease in Hypha's Redis, shared by the workers."""
    return f"git-remote-hypha:lock:{artifact_id}"


def _lfs_endpoint(repo: Repo) -> str:
    """Our LFS endpoint below the server root (``LFS_OURS``), as ``refs`` names it."""
    return f"{repo.name.replace('/', '/git/', 1)}/remote/v1/lfs"


def _lfs_error(e: ApiError) -> JSONResponse:
    """An error as git-lfs reads it; a 401's challenge makes git-lfs ask ``git credential``."""
    auth = e.code == "unauthenticated"
    headers = {"LFS-Authenticate": 'Basic realm="hypha"'} if auth else {}
    headers.update({"Retry-After": "5"} if e.code == "busy" else {})
    body, status = {"message": e.detail}, ApiError.STATUS.get(e.code, 500)
    return JSONResponse(body, status, headers=headers, media_type=LFS_MEDIA_TYPE)


class GitRemoteApi:
    """Routes, Hypha's checks and lookups, the lease, and forwarding to the children."""

    def __init__(self, store):
        self.store = store
        self._locks = weakref.WeakValueDictionary()  # artifact UUID -> lock, while held
        self._children: dict = {}
        self._children_lock = asyncio.Lock()
        self._tasks = set()  # push records and lease holds under way (a task needs a reference)
        self._table: Optional[tuple] = None  # (route -> access, leased, bodies), read once
        self.names = Names()

    def _redis(self):
        try:
            return self.store.get_redis()
        except Exception:
            logger.exception("no Redis from Hypha: updates lock within this worker only")

    @property
    def manager(self):
        return self.store._artifact_manager

    async def _child(self, s3_config: dict) -> Child:
        """The child of this S3 configuration, (re)started if it is not running."""
        key = tuple(s3_config.get(k) for k in CHILD_CONFIG)  # one child per S3 configuration
        async with self._children_lock:
            child = self._children.get(key) or self._children.setdefault(key, Child(s3_config))
            if child.proc is None or child.proc.returncode is not None:  # not running
                await child.start()
                self._spawn(self.serve_leases(child, child.proc))
            return child

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def serve_leases(self, child: Child, proc) -> None:
        """Hypha's lease for the child's own work: the child compacts after pushes when its
        rule says so (docs/design.md §9) and asks for the lease around retiring the merged
        packs; each ask is held here until the child says it is done. Polls as long as the
        child process it was started for runs."""
        while proc.returncode is None:
            try:
                res = await child.lease_asks(LEASE_POLL)
                if res.status_code == 404:  # a child that never asks
                    return
                res.raise_for_status()
                asks = res.json()["asks"]
            except Exception:  # the child is restarting, or answered nonsense
                logger.debug("polling the child for lease asks failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for ask in asks[:64]:
                self._spawn(self.hold_lease(child, ask))

    async def hold_lease(self, child: Child, ask: dict) -> None:
        """Takes the lease of the repository the child asked for, as ``update`` does, and ends
        it when the child has answered (its work under the lease done); or tells the child it
        could not, so that it gives up at once."""
        try:
            try:
                artifact = _artifact_of(str(ask["prefix"]))
                repo = self._repo(child.s3_config, str(ask["repo"]), artifact)
                if repo.prefix != ask["prefix"]:  # not where this child's configuration puts it
                    raise ValueError(f"not a repository of this child: {ask['prefix']!r}")
                await repo._locked()
            except Exception as e:
                detail = e.detail if isinstance(e, ApiError) else "the lease could not be taken"
                if not isinstance(e, ApiError):
                    logger.exception("could not take the lease the child asked for (%r)", ask)
                await child.answer_lease(ask["id"], {"held": False, "detail": detail})
                return
            try:
                await child.answer_lease(ask["id"], {"held": True})
            finally:
                await repo._unlock()
        except Exception:  # the child died meanwhile: its ask is gone with it
            logger.warning("the child's lease ask %r ended without its answer", ask.get("id"))

    async def routes(self) -> tuple:
        """The route tables of the Rust server: what each API v1 route asks of its caller
        (``read``, ``write``, ``admin``), which ones take the lease, and the LFS routes by
        ``"{method} {path}"`` (``"POST /objects/batch"``), each with what it asks (for the
        batch, by its ``operation``) and the largest body the child takes, read here in whole
        before it is forwarded; and each error code's HTTP status (``ApiError.STATUS``). Asked
        of ``git hypha routes`` once: the children run the same binary."""
        if self._table is None:
            try:
                proc = await asyncio.create_subprocess_exec(
                    git_hypha(), "routes", stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, err = await proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(err.decode("utf-8", "replace").strip())
                table = json.loads(out)
                self._table = (table["routes"], frozenset(table["leased"]), table["lfs"])
                ApiError.STATUS = table["errors"]
            except (ApiError, OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
                # No binary (HYPHA_GIT_BIN, beside Python, PATH), or one older than this plugin.
                why = e.detail if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
                logger.error("git-hypha routes failed: %s", why)
                raise ApiError("internal", "the repository server cannot start (see Hypha's log)")
        return self._table

    async def remote_v1(self, workspace: str, alias: str, route: str, request: Request):
        try:
            return await self.dispatch(workspace, alias, route, request)
        except ApiError as e:
            return e.response()
        except Exception:
            # Never echo the exception text: it may carry presigned URLs.
            logger.exception("remote v1 %s on %s/%s failed", route, workspace, alias)
            return ApiError("internal", f"{route} failed on the server").response()

    async def dispatch(self, workspace: str, alias: str, route: str, request: Request):
        alias = (await self.names.check(workspace, alias))["alias"]  # without ``.git``
        access, leased, _ = await self.routes()
        if route not in access:
            raise ApiError("not_found", "no such route in remote API v1")
        try:
            user = await self.store.login_optional(request)
        except Exception:
            raise ApiError("unauthenticated", "invalid or expired token") from None
        body = self._body(raw := await request.body())
        if route == "create":
            return JSONResponse(await self.create(user, workspace, alias, body))
        repo, artifact = await self.open(user, workspace, alias, HYPHA_OPERATION[access[route]])
        rid = request.headers.get(REQUEST_ID)
        if route not in leased:
            return await self.forward(repo, route, raw, user, artifact, rid)
        await repo._locked()
        try:
            return await self.forward(repo, route, raw, user, artifact, rid)
        finally:
            await repo._unlock()

    async def forward(self, repo: Repo, route: str, raw: bytes, user, artifact, request_id=None):
        """The child's answer to ``route``, with Hypha's view of permissions and URLs."""
        permission = (await self.routes())[0][route]  # the child's words are the table's
        path = f"/{repo.name.replace('/', '/git/', 1)}/remote/v1/{route}"
        child = await self._child(repo.s3_config)
        try:
            res = await child.post(path, raw, permission, repo.prefix, _user_id(user), request_id)
        except httpx.TransportError:
            # The child died (a new one starts on demand): a read is asked again; a write is all
            # or nothing, and the client looks which.
            logger.warning("git hypha serve failed during %s on %s", route, repo.name)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(child.proc.wait(), 2.0)
            if permission != "read":
                raise ApiError("internal", f"{route} failed on the server") from None
            child = await self._child(repo.s3_config)
            res = await child.post(path, raw, permission, repo.prefix, _user_id(user), request_id)
        answer = res.json()
        headers = {k: res.headers[k] for k in PASSED_HEADERS if k in res.headers}
        if res.status_code == 200:  # whichever routes carry presigned URLs: no list to keep
            answer = _public_urls(repo, answer)
        if res.status_code == 200 and route == "refs":
            answer["lfs_endpoint"] = _lfs_endpoint(repo)
        if res.status_code == 200 and route == "info":
            answer.update(await self.permissions(user, repo, artifact))
        elif res.status_code == 200 and route == "refs" and self._body(raw).get("for_push"):
            # The child saw a read; Hypha says if this caller may push (lookup before a push).
            answer["can_write"] = (await self.permissions(user, repo, artifact))["can_write"]
        elif res.status_code == 200 and route == "update":  # the push does not wait for Hypha
            self._spawn(self.record_push(repo, artifact.id, user, raw, answer))
        return JSONResponse(answer, status_code=res.status_code, headers=headers)

    async def lfs(self, workspace: str, alias: str, request: Request, key: str, path: str):
        """One route of the child's LFS table (``key``, ``"POST /objects/batch"``; ``path`` its
        path with the parameters of this request), at our LFS endpoint (``LFS_OURS``) or, for
        the locks, which Hypha's own lacks, at Hypha's (``LFS_HYPHA``): Hypha checks the caller
        with the question the table's access asks (an anonymous caller without the grant gets
        a 401 with ``LFS-Authenticate``, on which git-lfs asks for credentials); the child
        answers, at Hypha's keys (``{uuid}/git/lfs/objects/``), with its presigned URLs made
        public. Errors are git-lfs's ``{"message": ...}``."""
        try:
            return await self._lfs(workspace, alias, request, key, path)
        except ApiError as e:
            return _lfs_error(e)
        except Exception:
            # Never echo the exception text: it may carry presigned URLs.
            logger.exception("lfs %s on %s/%s failed", key, workspace, alias)
            return _lfs_error(ApiError("internal", "lfs request failed on the server"))

    async def _lfs(self, workspace: str, alias: str, request: Request, key: str, path: str):
        alias = (await self.names.check(workspace, alias))["alias"]  # without ``.git``
        rule = (await self.routes())[2][key]
        try:
            user = await self.store.login_optional(request)
        except Exception:
            raise ApiError("unauthenticated", "invalid or expired token") from None
        raw = await self._read_body(request, rule["body"], "lfs request")
        access = rule["access"]
        if isinstance(access, dict):  # the batch's, by the operation its body names
            operation = self._body(raw).get("operation")
            if not isinstance(operation, str) or operation not in access:
                why = f"operation must be one of {', '.join(sorted(access))}"
                raise ApiError("invalid", f"lfs batch: {why}")
            access = access[operation]
        repo, _ = await self.open(user, workspace, alias, HYPHA_OPERATION[access])
        child = await self._child(repo.s3_config)
        public = self.manager.store.public_base_url.rstrip("/")
        headers = {"X-Hypha-Lfs-Base": f"{public}/{_lfs_endpoint(repo)}/objects/"}
        if auth := request.headers.get("authorization"):
            headers["Authorization"] = auth
        if rid := request.headers.get(REQUEST_ID):  # the child takes it only if sane
            headers["X-Request-Id"] = rid
        target = f"/{repo.name.replace('/', '/git/', 1)}/info/lfs{path}"
        try:
            res = await child.request(request.method, target, raw, access, repo.prefix,
                                      _user_id(user), headers, params=request.query_params,
                                      media_type=LFS_MEDIA_TYPE)  # fmt: skip
        except httpx.TransportError:
            logger.warning("git hypha serve failed during lfs %s on %s", key, repo.name)
            raise ApiError("internal", "lfs request failed on the server") from None
        content = res.content
        if res.status_code == 200 and content:
            content = json.dumps(_public_urls(repo, res.json())).encode()
        passed = {k: res.headers[k] for k in PASSED_HEADERS if k in res.headers}
        media_type = res.headers.get("content-type", LFS_MEDIA_TYPE)
        return Response(content, res.status_code, headers=passed, media_type=media_type)

    async def record_push(self, repo: Repo, artifact_id: str, user, raw: bytes, answer: dict):
        """A ``git_push`` event in the workspace, then Hypha's record as ``commit()`` leaves it,
        but for ``file_count``: Hypha counts with its git reader, which loads every pack of the
        repository (2.5 s of Hypha's one core at 17 packs, on every push, measured)."""
        req = {"push_options": [], **json.loads(raw)}
        ok = [u for u, r in zip(req["updates"], answer["results"]) if r["status"] == "ok"]
        event = dict(artifact_id=repo.name, pusher=user.id, push_options=req["push_options"])
        event["refs"] = refs = [dict(ref=u["ref"], before=u["old"], after=u["new"]) for u in ok]
        heads = {r["ref"][11:]: r["after"] for r in refs if r["ref"].startswith("refs/heads/")}
        if not refs:  # nothing changed (a stale or rejected update)
            return
        try:
            await self.store.get_event_bus().broadcast(repo.name.split("/")[0], "git_push", event)
            async with await self.manager._get_session() as session, session.begin():
                art, _ = await self.manager._get_artifact_with_parent(session, artifact_id)
                art.last_modified = now = int(time.time())
                if not art.versions:
                    art.versions = [dict(version="v0", comment="git push", created_at=now)]
                session.add(art)
            for branch in heads:
                await self.manager._invalidate_static_site_cache(art, branch)
        except Exception:
            logger.exception("could not record the push to %s in Hypha", repo.name)

    @staticmethod
    async def _read_body(request: Request, bound: int, what: str) -> bytes:
        """The request's body, read no further than ``bound`` (the child's, from ``git hypha
        routes``)."""
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > bound:
                why = f"its body is larger than {bound} bytes"
                raise ApiError("invalid", f"{what} refused: {why}")
        return bytes(raw)

    @staticmethod
    def _body(raw: bytes) -> dict:
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise ApiError("invalid", f"invalid request: {e}") from None
        if not isinstance(body, dict):
            raise ApiError("invalid", "invalid request: expected a JSON object")
        return body

    async def _artifact(self, user, artifact_id: str, operation: str):
        """Hypha's own lookup and permission check, mapped to our error codes."""
        async with await self.manager._get_session() as session, session.begin():
            get = self.manager._get_artifact_with_permission
            return await get(user, artifact_id, operation, session)

    async def open(self, user, workspace: str, alias: str, operation: str):
        name = f"{workspace}/{alias}"
        try:
            artifact, parent = await self._artifact(user, name, operation)
        except (KeyError, PermissionError) as e:
            # Anonymous callers learn nothing about what exists (as the Rust server).
            if user.is_anonymous:
                raise ApiError("unauthenticated", f"{name}: authentication required") from None
            if isinstance(e, KeyError):
                raise ApiError("not_found", f"repository {name} not found") from None
            raise ApiError("forbidden", f"{name}: permission denied") from None
        if (artifact.config or {}).get("storage") != "git":
            why = "(recreate the artifact with config.storage='git')"
            raise ApiError("not_found", f"{name} is not a git repository {why}")
        s3_config = self.manager._get_s3_config(artifact, parent)
        return self._repo(s3_config, name, artifact.id), artifact

    def _repo(self, s3_config: dict, name: str, artifact_id: str) -> Repo:
        """Artifact ``artifact_id``'s repository, with this worker's lock and the lease key."""
        lock = self._locks.setdefault(artifact_id, asyncio.Lock())
        prefix = _repo_prefix(s3_config["prefix"], artifact_id)
        lease = _lease_key(artifact_id)
        return Repo(self.manager, s3_config, name, prefix, lock, self._redis(), lease)

    async def permissions(self, user, repo: Repo, artifact) -> dict:
        """``info``'s ``can_write`` and ``public``, as Hypha's permissions say."""
        can_write = False
        with contextlib.suppress(Exception):
            can_write = bool(await self._artifact(user, repo.name, "commit"))
        perms = (artifact.config or {}).get("permissions") or {}
        return {"can_write": can_write, "public": bool(perms.get("*"))}

    async def create(self, user, workspace: str, alias: str, body: dict) -> dict:
        """A new artifact with ``config.storage = "git"``: Hypha's ``init_bare`` writes HEAD."""
        name = f"{workspace}/{alias}"
        if user.is_anonymous:
            raise ApiError("unauthenticated", f"{name}: authentication required")
        # Checked before Hypha is asked: Hypha writes HEAD before the child sees the repository.
        ref = (await self.names.check(workspace, alias, body.get("default_branch") or "main"))
        branch = ref["default_branch"].removeprefix("refs/heads/")
        config = {"storage": "git", "git_default_branch": branch}
        config.update({"permissions": {"*": "r"}} if body.get("public") else {})
        with contextlib.suppress(KeyError, PermissionError):
            await self._artifact(user, name, "read")
            raise ApiError("exists", f"repository {name} already exists")
        try:
            # A user's own workspace exists once used: Hypha's RPC layer makes it so too.
            await self.store.load_or_create_workspace(user, workspace)
            # Called directly (not over RPC), so no default fills in the manifest.
            what = dict(alias=alias, workspace=workspace, manifest={"name": alias}, config=config)
            await self.manager.create(**what, context={"user": user.model_dump(), "ws": workspace})
        except Exception as e:
            if isinstance(e, PermissionError) or type(e).__name__ == "WorkspaceNotFoundError":
                raise ApiError("forbidden", f"{name}: permission denied") from None
            if "already exists" in str(e):
                raise ApiError("exists", f"repository {name} already exists") from None
            raise
        repo, artifact = await self.open(user, workspace, alias, "read")
        res = await self.forward(repo, "info", b"{}", user, artifact)
        return json.loads(res.body)


def _lfs_route(api: GitRemoteApi, key: str, path: str):
    """The handler of LFS route ``key``, whose ``path`` names parameters (``{oid}``, ``{id}``):
    they go to the child as this request has them, quoted (the child checks their shape)."""

    async def handler(workspace: str, alias: str, request: Request):
        params = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
        return await api.lfs(workspace, alias, request, key, path.format(**params))

    return handler


async def hypha_startup(server):
    """Hypha startup function: register the routes of remote API v1 and the LFS routes. Without
    a ``git-hypha`` that answers ``routes`` the plugin cannot serve anything, and says so at
    startup, as any startup function whose dependency is missing."""
    store, router, api = server["store"], APIRouter(), GitRemoteApi(server["store"])
    router.post("/{workspace}/git/{alias}/remote/v1/{route}")(api.remote_v1)
    try:
        lfs = (await api.routes())[2]
    except ApiError:
        why = "`git-hypha routes` failed (logged above): install git-hypha beside Hypha's Python"
        why += " (this project's wheel) or name it in HYPHA_GIT_BIN"
        raise RuntimeError(f"git-remote-hypha plugin cannot start: {why}") from None
    # The LFS routes, from the child's table: all at our endpoint (the one ``refs`` names), and
    # the locks, which Hypha's own LFS endpoint lacks, at Hypha's too.
    for key in lfs:
        method, path = key.split(" ", 1)
        for endpoint in (LFS_OURS, LFS_HYPHA) if path.startswith("/locks") else (LFS_OURS,):
            router.add_api_route(endpoint + path, _lfs_route(api, key, path), methods=[method])
    store.register_router(router)
    # `git lfs locks` lists with GET, which Hypha's fallback `GET /{page:path}` (registered
    # before startup functions run) would answer: these routes go first.
    routes = store._app.router.routes
    listings = (LFS_HYPHA + "/locks", LFS_OURS + "/locks")
    for route in [r for r in routes if getattr(r, "path", "") in listings]:
        if "GET" in getattr(route, "methods", ()):
            routes.remove(route)
            routes.insert(0, route)
    logger.info("git-remote-hypha remote API v1 enabled at /{ws}/git/{alias}/remote/v1/")
