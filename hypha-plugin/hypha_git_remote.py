"""Remote API v1 of git-remote-hypha, served inside a Hypha server (DESIGN §4).

Enable with ``python -m hypha.server ... --startup-functions hypha_git_remote:hypha_startup``
and this directory on ``PYTHONPATH``. Routes: ``POST /{ws}/git/{alias}/remote/v1/{route}``.
POST only, because Hypha's catch-all ``GET /{page:path}`` is registered before startup
functions run and would shadow plugin GET routes.

This is a thin adapter. Hypha decides who may do what (``_get_artifact_with_permission`` with
``read`` for read routes and ``commit`` for writes, exactly as its own smart-HTTP routes do) and
where a repository lives (``_get_s3_config``, the artifact's UUID, ``.git/``). The repository
rules (ref names, pack completeness, compare-and-swap, atomic batches, compaction) live in
:class:`Repo` and mirror ``src/storage/repo/`` of the Rust server, which is the reference.

Pack bytes never pass through Hypha: clients get presigned S3 URLs. Tokens and presigned URLs
never appear in an error message or a log line written here.

Crash safety, as the Rust server's and sharing its objects (a bucket may be served by both):

- An atomic update of several refs commits by writing the commit record
  ``.git/hypha-remote/update.json`` before its first ref write; whoever takes the lease next
  finishes it, and ``refs`` shows its new values meanwhile. The protocol and its reasons are in
  the module comment of ``src/storage/repo/journal.rs``; the methods under "commit record"
  below follow it step by step. This matters more here than in ``git hypha serve``: a Hypha
  worker can be restarted or killed at any time, and rolling back on errors cannot help a
  dead process.
- ``uploads`` marks each pack pending (``.git/hypha-remote/uploads/<pack>``) until an
  ``update`` names it; ``packs`` hides pending packs and ``compact`` deletes those older than
  the grace period (``src/storage/repo/uploads.rs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import struct
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from botocore.exceptions import ClientError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

logger = logging.getLogger("hypha-git-remote")

API_VERSION = 1
PRESIGN_EXPIRES_IN = 3600
# S3's limit for one PutObject; larger packs would need multipart, which v1 does not offer.
MAX_SINGLE_PUT = 5 * 1024**3
MAX_UPLOADS_PER_REQUEST = 256
# How long `update` waits for another update of the same repository before answering busy.
LOCK_TIMEOUT = 30.0
# The cross-worker lease in Redis expires after this long, should a worker die holding it.
# An update that outlives it is still safe ref by ref (S3 conditional writes); only the
# all-or-nothing view of an atomic batch needs the lease.
LOCK_LEASE_MS = 60_000
# Retired packs stay readable this long: Hypha's readers list `*.pack` and read them lazily,
# and our clients may hold presigned URLs from an earlier `packs` call.
# Uploads whose update never came are deleted after it too: by then their presigned PUTs have
# expired. So it outlives the URLs by a margin, as `default_gc_grace` in src/server/state.rs.
GC_GRACE_SECS = PRESIGN_EXPIRES_IN + 600
READ_CONCURRENCY = 16
# The commit record of atomic updates (src/storage/repo/journal.rs): same key, same JSON, same
# version as the Rust server's, so that both can serve one bucket.
RECORD_REL = "hypha-remote/update.json"
RECORD_VERSION = 1
# How often `refs` re-reads when whole atomic updates keep slipping into its read.
CONSISTENT_READ_ATTEMPTS = 5
# Pending-upload markers (src/storage/repo/uploads.rs): `<dir><pack name>`, body unix seconds.
UPLOADS_REL = "hypha-remote/uploads/"
DEFAULT_BRANCH = "main"
DENY_DELETE_CURRENT = "deletion of the current branch prohibited"
ATOMIC_FAILED = "atomic push failed"

_OID = re.compile(r"^[0-9a-f]{40}$")
_PACK = re.compile(r"^pack-[0-9a-f]{40}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class ApiError(Exception):
    """An answer other than 2xx, as ``{"error": code, "detail": text}``."""

    STATUS = {
        "not_found": 404,
        "unauthenticated": 401,
        "forbidden": 403,
        "invalid": 422,
        "stale": 409,
        "exists": 409,
        "busy": 503,
        "internal": 500,
    }

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def response(self) -> JSONResponse:
        headers = {}
        if self.code == "unauthenticated":
            # git and our helper then ask the credential helper for a token.
            headers["WWW-Authenticate"] = 'Basic realm="hypha"'
        if self.code == "busy":
            headers["Retry-After"] = "5"
        return JSONResponse(
            {"error": self.code, "detail": self.detail},
            status_code=self.STATUS[self.code],
            headers=headers,
        )


def check_ref(name: str) -> None:
    """git check-ref-format rules plus what an S3 key needs (as ``src/names/refname.rs``)."""
    why = _ref_problem(name)
    if why:
        raise ApiError("invalid", f"invalid ref {name[:80]!r}: {why}")


def is_valid_ref(name: str) -> bool:
    return _ref_problem(name) is None


def _ref_problem(name: str) -> Optional[str]:
    if len(name.encode()) > 512:
        return "ref name too long"
    if not name.startswith("refs/"):
        return "ref name must start with refs/"
    if name.endswith("/") or "//" in name:
        return "ref name has an empty component"
    if name.endswith("."):
        return "ref name ends with '.'"
    if ".." in name:
        return "ref name contains '..'"
    if "@{" in name:
        return "ref name contains '@{'"
    if any(ord(c) < 32 or ord(c) == 127 or c in " ~^:?*[\\" for c in name):
        return "ref name contains a forbidden character"
    for component in name.split("/"):
        if component.startswith(".") or component.startswith("-"):
            return "ref name component starts with '.' or '-'"
        if component.endswith(".lock"):
            return "ref name component ends with '.lock'"
    if name.count("/") < 2:
        return "ref name needs a namespace, as in refs/heads/<name>"
    return None


def check_pack_name(name: Any) -> None:
    if not isinstance(name, str) or not _PACK.match(name):
        raise ApiError("invalid", f"invalid pack name {str(name)[:80]!r} (expected pack-<40 hex>)")


def idx_object_ids(data: bytes, name: str) -> set:
    """The object ids of an idx version 2: enough to prove one pack holds another's objects."""
    if len(data) < 8 + 256 * 4 + 40 or data[:8] != b"\377tOc\x00\x00\x00\x02":
        raise ApiError("invalid", f"{name}.idx is not an idx version 2")
    count = struct.unpack(">I", data[8 + 255 * 4 : 8 + 256 * 4])[0]
    start = 8 + 256 * 4
    if len(data) < start + 20 * count:
        raise ApiError("invalid", f"{name}.idx is truncated")
    return {data[start + 20 * i : start + 20 * (i + 1)] for i in range(count)}


def _first_incomplete(listing: dict, names: list) -> Optional[str]:
    """The first of ``names`` whose ``.pack`` or ``.idx`` the pack listing lacks."""
    for name in names:
        entry = listing.get(name, {})
        if "pack" not in entry or "idx" not in entry:
            return name
    return None


def _error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_missing(e: ClientError) -> bool:
    return _status(e) == 404 or _error_code(e) in ("NoSuchKey", "404", "NotFound")


def _lost_race(e: ClientError) -> bool:
    """A conditional write failed: someone outside our lock (Hypha itself) wrote the key."""
    return _status(e) in (409, 412) or _error_code(e) in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


@dataclass
class Current:
    oid: Optional[str]
    etag: Optional[str]


@dataclass
class Stored:
    """The commit record as read or written, with the etag the next write is conditional on.

    ``record`` is the JSON object of ``journal::Record``: version, generation, committed_at,
    updates (each ``{"ref", "old", "new"}``, empty once the update is finished).
    """

    record: dict
    etag: Optional[str]

    @property
    def generation(self) -> int:
        return self.record["generation"]

    @property
    def unfinished(self) -> bool:
        return bool(self.record["updates"])


def record_bytes(record: dict) -> bytes:
    """The record as serde_json writes ``journal::Record``: fields in declaration order, no
    whitespace, UTF-8 (not \\u escapes), so both servers write the same bytes."""
    body = {
        "version": record["version"],
        "generation": record["generation"],
        "committed_at": record["committed_at"],
        "updates": [{"ref": p["ref"], "old": p["old"], "new": p["new"]} for p in record["updates"]],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def parse_record(body: bytes, name: str) -> dict:
    """A record read from storage; one this code cannot read is refused, never guessed at (it
    would be rolled forward wrongly or not at all): the repository answers an error naming it
    until a person looks."""

    def bad(why: str) -> ApiError:
        return ApiError("internal", f"unreadable commit record of {name}: {why}")

    try:
        record = json.loads(body)
    except ValueError as e:
        raise bad(str(e)) from None
    if not isinstance(record, dict):
        raise bad("not a JSON object")
    for k in ("version", "generation", "committed_at"):
        v = record.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"{k} is not a whole number")
    if record["version"] != RECORD_VERSION:
        raise ApiError(
            "internal",
            f"commit record of {name} has version {record['version']}, expected {RECORD_VERSION}",
        )
    updates = record.get("updates")
    if not isinstance(updates, list):
        raise bad("updates is not a list")
    for p in updates:
        if not isinstance(p, dict) or not is_valid_ref(str(p.get("ref"))):
            raise bad("an update without a valid ref")
        for k in ("old", "new"):
            if p.get(k) is not None and not (isinstance(p[k], str) and _OID.match(p[k])):
                raise bad(f"{p['ref']}: {k} is not an object id")
    return {
        "version": record["version"],
        "generation": record["generation"],
        "committed_at": record["committed_at"],
        "updates": [{"ref": p["ref"], "old": p.get("old"), "new": p.get("new")} for p in updates],
    }


def overlay(record: dict, refs: dict) -> None:
    """What readers see while a record is unfinished: the refs after its update."""
    for p in record["updates"]:
        if p["new"] is None:
            refs.pop(p["ref"], None)
        else:
            refs[p["ref"]] = p["new"]


@dataclass
class Repo:
    """One artifact's ``.git/`` in S3, with Hypha's S3 config; the rules of remote API v1."""

    manager: Any  # Hypha's ArtifactController
    s3_config: dict
    name: str  # ws/alias, for messages
    prefix: str  # "{s3 prefix}/{artifact uuid}/.git/"
    lock: asyncio.Lock
    # Hypha's Redis (shared by all workers when Hypha runs several, with --redis-uri; an
    # in-process fakeredis otherwise) for the cross-worker lease; None: the local lock only.
    redis: Any = field(default=None, repr=False)
    lock_key: str = ""
    _lease: Optional[str] = field(default=None, repr=False)
    default_branch: str = DEFAULT_BRANCH
    s3: Any = field(default=None, repr=False)
    presigner: Any = field(default=None, repr=False)

    @property
    def bucket(self) -> str:
        return self.s3_config["bucket"]

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def pack_key(self, name: str, ext: str) -> str:
        return self.key(f"objects/pack/{name}.{ext}")

    # -- reads -------------------------------------------------------------------------------

    async def get(self, rel: str) -> Optional[tuple]:
        """(body, etag) or None when the key is missing."""
        try:
            obj = await self.s3.get_object(Bucket=self.bucket, Key=self.key(rel))
            async with obj["Body"] as stream:
                body = await stream.read()
            return body, obj.get("ETag")
        except ClientError as e:
            if _is_missing(e):
                return None
            raise

    async def list(self, rel: str) -> list:
        """Every object below ``rel`` (paginated), as S3 listing entries."""
        out, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.key(rel)}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self.s3.list_objects_v2(**kwargs)
            out.extend(page.get("Contents", []))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    async def head(self) -> Optional[str]:
        got = await self.get("HEAD")
        if not got:
            return None
        text = got[0].decode("utf-8", "replace").strip()
        if not text.startswith("ref:"):
            return None
        target = text[4:].strip()
        return target if is_valid_ref(target) else None

    async def current_default_branch(self) -> str:
        head = await self.head()
        if head and head.startswith("refs/heads/"):
            return head[len("refs/heads/") :]
        return self.default_branch

    async def read_ref(self, name: str) -> Current:
        """A ref, tolerating a missing newline or CRLF; an unreadable body counts as absent."""
        got = await self.get(name)
        if not got:
            return Current(None, None)
        text = got[0].decode("utf-8", "replace").strip()
        return Current(text if _OID.match(text) else None, got[1])

    async def ref_names(self) -> list:
        # Hypha advertises every object under refs/ as a ref; we skip what is not one.
        return [
            o["Key"][len(self.prefix) :]
            for o in await self.list("refs/")
            if is_valid_ref(o["Key"][len(self.prefix) :])
        ]

    async def refs(self) -> dict:
        """Every ref. An atomic update is seen whole or not at all, also while it is being
        written or after its worker died mid-way (see the commit record below)."""
        refs, overlaid = await self.consistent_refs(self.stored_refs)
        if overlaid:
            await self._finish_for_readers()
        return refs

    async def stored_refs(self) -> dict:
        """The ref objects as they are, one GET each (what Hypha's own reader sees)."""
        names = await self.ref_names()
        sem = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(n):
            async with sem:
                return n, await self.read_ref(n)

        pairs = await asyncio.gather(*(one(n) for n in names))
        return {n: c.oid for n, c in sorted(pairs) if c.oid}

    async def retired(self) -> dict:
        """Packs retired by compaction -> unix time of retirement."""
        out = {}
        for o in await self.list("hypha-remote/retired/"):
            name = o["Key"].rsplit("/", 1)[-1]
            if not _PACK.match(name):
                continue
            got = await self.get(f"hypha-remote/retired/{name}")
            if got:
                try:
                    out[name] = int(got[0].decode().strip())
                except ValueError:
                    out[name] = 0
        return out

    async def pack_listing(self) -> dict:
        """name -> {"pack": entry, "idx": entry} for the direct children of objects/pack/."""
        out: dict = {}
        for o in await self.list("objects/pack/"):
            file = o["Key"][len(self.key("objects/pack/")) :]
            for ext in ("pack", "idx"):
                stem = file[: -len(ext) - 1]
                if file.endswith("." + ext) and _PACK.match(stem):
                    out.setdefault(stem, {})[ext] = o
        return out

    async def packs(self) -> list:
        """Complete packs (idx present), not retired, not pending uploads, oldest first."""
        retired = await self.retired()
        pending = await self.pending_uploads()
        packs = [
            {
                "name": n,
                "pack_size": e["pack"]["Size"],
                "idx_size": e["idx"]["Size"],
                "_modified": e["pack"].get("LastModified"),
            }
            for n, e in (await self.pack_listing()).items()
            if "pack" in e and "idx" in e and n not in retired and n not in pending
        ]
        packs.sort(key=lambda p: (p["_modified"].timestamp() if p["_modified"] else 0, p["name"]))
        return packs

    async def check_packs(self, names: list) -> None:
        """Each named pack and its idx exist and the idx was made for that pack."""
        if not names:
            return
        for name in names:
            check_pack_name(name)
        listing = await self.pack_listing()
        missing = _first_incomplete(listing, names)
        if missing:
            raise ApiError(
                "invalid",
                f"pack {missing} is not complete in {self.name} "
                "(upload the idx and the pack first)",
            )
        for name in names:
            entry = listing[name]
            psize, isize = entry["pack"]["Size"], entry["idx"]["Size"]
            if psize < 32 or isize < 40:
                raise ApiError("invalid", f"pack {name} is too small to be a pack")
            pack_sum = await self.range(self.pack_key(name, "pack"), psize - 20, psize)
            idx_sum = await self.range(self.pack_key(name, "idx"), isize - 40, isize - 20)
            if pack_sum != idx_sum:
                raise ApiError("invalid", f"the idx of {name} does not belong to its pack")

    async def range(self, key: str, start: int, end: int) -> bytes:
        obj = await self.s3.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        async with obj["Body"] as stream:
            return await stream.read()

    # -- presigning --------------------------------------------------------------------------

    def _public(self, url: str, key: str) -> str:
        """Behind Hypha's S3 proxy, hand out the public address, as Hypha's LFS does."""
        if self.s3_config.get("public_endpoint_url"):
            base = self.manager.store.public_base_url
            return f"{base}/s3/{self.bucket}/{key}?{url.split('?', 1)[1]}"
        return url

    async def presign_get(self, key: str) -> str:
        url = await self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=PRESIGN_EXPIRES_IN
        )
        return self._public(url, key)

    async def presign_put(self, key: str, size: int) -> dict:
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentLength": size,
            "ContentType": "application/octet-stream",
        }
        url = await self.presigner.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=PRESIGN_EXPIRES_IN
        )
        return {
            "method": "PUT",
            "url": self._public(url, key),
            "headers": {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        }

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self, rel_or_key: str, body: bytes, *, if_none_match=False, if_match=None, absolute=False
    ):
        """PUT with an optional S3 condition; returns the new ETag."""
        kwargs = {
            "Bucket": self.bucket,
            "Key": rel_or_key if absolute else self.key(rel_or_key),
            "Body": body,
            "ContentType": "application/octet-stream",
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = if_match
        return (await self.s3.put_object(**kwargs)).get("ETag")

    async def delete(self, rel: str, if_match: Optional[str] = None) -> None:
        kwargs = {"Bucket": self.bucket, "Key": self.key(rel)}
        if if_match:
            kwargs["IfMatch"] = if_match
        await self.s3.delete_object(**kwargs)

    async def set_head(self, symref: str, only_if_missing: bool) -> None:
        check_ref(symref)
        try:
            await self.put("HEAD", f"ref: {symref}\n".encode(), if_none_match=only_if_missing)
        except ClientError as e:
            if not (only_if_missing and _lost_race(e)):
                raise

    async def _locked(self):
        """This worker's lock of the repository, then the lease shared by all workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_TIMEOUT
        try:
            await asyncio.wait_for(self.lock.acquire(), LOCK_TIMEOUT)
        except asyncio.TimeoutError:
            raise ApiError("busy", f"{self.name} is being updated; try again") from None
        if self.redis is None:
            return
        lease = secrets.token_hex(16)
        try:
            while not await self.redis.set(self.lock_key, lease, nx=True, px=LOCK_LEASE_MS):
                if loop.time() > deadline:
                    raise ApiError("busy", f"{self.name} is being updated; try again")
                await asyncio.sleep(0.05)
        except BaseException:
            self.lock.release()
            raise
        self._lease = lease

    async def _try_lock(self) -> bool:
        """The lock and the lease if both are free at once; False (holding nothing) otherwise."""
        try:
            await asyncio.wait_for(self.lock.acquire(), 0.05)
        except asyncio.TimeoutError:
            return False
        if self.redis is None:
            return True
        lease = secrets.token_hex(16)
        try:
            taken = await self.redis.set(self.lock_key, lease, nx=True, px=LOCK_LEASE_MS)
        except BaseException:
            self.lock.release()
            raise
        if not taken:
            self.lock.release()
            return False
        self._lease = lease
        return True

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

    # -- commit record (src/storage/repo/journal.rs) -----------------------------------------

    async def read_record(self) -> Optional[Stored]:
        """The commit record, if an atomic update ever committed here."""
        got = await self.get(RECORD_REL)
        if got is None:
            return None
        return Stored(parse_record(got[0], self.name), got[1])

    async def _write_record(self, record: dict, base: Optional[Stored]) -> Stored:
        """Write ``record`` conditionally on ``base`` (the record read under the lease, or
        none). A record changed since (another worker or server committing on the same
        bucket) makes this one busy rather than mixing two updates."""
        body = record_bytes(record)
        try:
            if base is None:
                etag = await self.put(RECORD_REL, body, if_none_match=True)
            else:
                etag = await self.put(RECORD_REL, body, if_match=base.etag)
        except ClientError as e:
            if _lost_race(e) or _is_missing(e):
                raise ApiError("busy", f"{self.name} is being updated; try again") from None
            raise
        return Stored(record, etag)

    async def commit_record(self, base: Optional[Stored], planned: list) -> Stored:
        """The commit point of an atomic update: from here on it counts as done, whoever
        finishes it. Call under the lease, after every ref check, before any ref write."""
        record = {
            "version": RECORD_VERSION,
            "generation": (base.generation if base else 0) + 1,
            "committed_at": int(time.time()),
            "updates": planned,
        }
        return await self._write_record(record, base)

    async def finish_record(self, stored: Stored) -> Stored:
        """Mark a record finished (its refs are written, or rolled back): same generation,
        no updates."""
        return await self._write_record(dict(stored.record, updates=[]), stored)

    async def roll_forward(self) -> Optional[Stored]:
        """Finish an update interrupted after its commit point, if there is one; returns the
        record the next commit builds on. Call under the lease, before reading refs to change
        them."""
        stored = await self.read_record()
        if stored is None or not stored.unfinished:
            return stored
        sem = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(p):
            async with sem:
                return p["ref"], await self._roll_forward_one(p)

        outcomes = await asyncio.gather(*(one(p) for p in stored.record["updates"]))
        moved = [name for name, done in outcomes if not done]
        if moved:
            logger.warning(
                "%s: finishing an interrupted atomic update: %d ref(s) changed by another "
                "writer meanwhile were left as they are: %s",
                self.name,
                len(moved),
                ", ".join(moved),
            )
        return await self.finish_record(stored)

    async def _roll_forward_one(self, p: dict) -> bool:
        """One ref of an interrupted update: True when it is at ``new`` now (written, or
        already there); False when someone outside the lease moved it (theirs stands)."""
        name, old, new = p["ref"], p["old"], p["new"]
        # Two tries: a lost race with a writer outside the lease is re-read once, and then it
        # is either done, theirs, or still ours to write.
        for _ in range(2):
            cur = await self.read_ref(name)
            if cur.oid == new and (cur.etag is not None) == (new is not None):
                return True
            if cur.oid != old:
                return False
            try:
                if new is not None and cur.etag is not None:
                    await self.put(name, f"{new}\n".encode(), if_match=cur.etag)
                elif new is not None:
                    await self.put(name, f"{new}\n".encode(), if_none_match=True)
                elif cur.etag is not None:
                    await self.delete(name, if_match=cur.etag)
                return True
            except ClientError as e:
                if not (_lost_race(e) or _is_missing(e)):
                    raise
        return False

    async def consistent_refs(self, read) -> tuple:
        """``(refs, overlaid)``: ``read()`` bracketed by two reads of the record, with the new
        values of an unfinished record laid over it. Repeated when a whole atomic update
        slipped in between (some of its refs may have been read before it, some after)."""
        for _ in range(CONSISTENT_READ_ATTEMPTS):
            before = await self.read_record()
            refs = await read()
            after = await self.read_record()
            g0 = before.generation if before else 0
            g1 = after.generation if after else 0
            # Same generation: nothing committed in between, and an update in flight at the
            # first read is covered by its overlay. One more and still unfinished: it
            # committed in between, and its overlay covers it.
            if not (g1 == g0 or (g1 == g0 + 1 and after.unfinished)):
                continue
            overlaid = False
            for stored in (before, after):
                if stored is not None and stored.unfinished:
                    overlay(stored.record, refs)
                    overlaid = True
            return refs, overlaid
        raise ApiError("busy", f"{self.name} is being updated; try again")

    async def _finish_for_readers(self) -> None:
        """A reader saw an unfinished record. If no update holds the lease, its writer died:
        finish it, so that Hypha's own reader (which reads the ref objects and knows nothing
        of the record) sees the whole update too. Best effort: this reader's answer is right
        either way."""
        if not await self._try_lock():
            return
        try:
            await self.roll_forward()
        except Exception:
            logger.exception("%s: could not finish an interrupted update", self.name)
        finally:
            await self._unlock()

    # -- pending uploads (src/storage/repo/uploads.rs) ---------------------------------------

    async def exists(self, rel: str) -> bool:
        try:
            await self.s3.head_object(Bucket=self.bucket, Key=self.key(rel))
            return True
        except ClientError as e:
            if _is_missing(e):
                return False
            raise

    async def mark_uploads(self, names: list) -> None:
        """Mark packs as uploads in flight, unless already live: called when their upload URLs
        are handed out. Under the lease, so that a pack of the same name committed by another
        push meanwhile is never hidden again."""
        if not names:
            return
        await self._locked()
        try:
            now = int(time.time())
            for name in names:
                marker = UPLOADS_REL + name
                live = await self.exists(f"objects/pack/{name}.pack")
                if live and not await self.exists(marker):
                    continue  # committed by an earlier push (or written by Hypha): refs may need it
                await self.put(marker, f"{now}\n".encode())
        finally:
            await self._unlock()

    async def pending_uploads(self) -> set:
        """Names of packs whose upload no update has named yet (hidden from readers)."""
        start = len(self.key(UPLOADS_REL))
        names = (o["Key"][start:] for o in await self.list(UPLOADS_REL))
        return {name for name in names if _PACK.match(name)}

    async def commit_uploads(self, names: list) -> None:
        """The packs of ``names`` are about to be referenced: make them visible, then check each
        is still complete (a compaction may have purged it as abandoned before this caller
        took the lease). Under the lease, before any ref write."""
        if not names:
            return
        for name in names:
            try:
                await self.delete(UPLOADS_REL + name)
            except ClientError as e:
                if not _is_missing(e):
                    raise
        missing = _first_incomplete(await self.pack_listing(), names)
        if missing:
            raise ApiError(
                "invalid",
                f"pack {missing} is no longer in {self.name} (its upload was abandoned and "
                "removed): push again",
            )

    async def purge_abandoned_uploads(self, now: int, grace: int) -> list:
        """Delete packs pending longer than ``grace`` (the pusher died, or its update was
        refused). Under the lease. ``.pack`` first (a lone ``.idx`` is invisible), then
        ``.idx``, then the marker, so an interrupted purge resumes next time."""
        deleted = []
        for name in sorted(await self.pending_uploads()):
            got = await self.get(UPLOADS_REL + name)
            if got is None:
                continue
            try:
                at = int(got[0].decode("utf-8", "replace").strip())
            except ValueError:
                at = now  # an unreadable time counts as now: kept for another grace period
            if now < at + grace:
                continue
            for rel in (
                f"objects/pack/{name}.pack",
                f"objects/pack/{name}.idx",
                UPLOADS_REL + name,
            ):
                try:
                    await self.delete(rel)
                except ClientError as e:
                    if not _is_missing(e):
                        raise
            deleted.append(name)
        return deleted

    # -- update and compact ------------------------------------------------------------------

    async def update(self, req: dict) -> dict:
        """The commit point of a push: see ``Repository::update`` in src/storage/repo/update.rs."""
        updates = _validate_updates(req)
        packs = req.get("packs") or []
        await self.check_packs(packs)
        atomic = bool(req.get("atomic"))
        await self._locked()
        try:
            # An atomic update whose worker died after its commit point is finished first.
            base = await self.roll_forward()
            # Fresh reads under the lock: what the client saw may be old.
            head = await self.head()
            existing = set(await self.ref_names())
            current = [await self.read_ref(u["ref"]) for u in updates]
            created = {u["ref"] for u in updates if u["new"]}
            results: list = [None] * len(updates)
            writes: list = [None] * len(updates)
            for i, (u, cur) in enumerate(zip(updates, current)):
                outcome = _plan(u, cur, head, existing, created)
                if outcome[0] == "result":
                    results[i] = outcome[1]
                else:
                    writes[i] = outcome
            if atomic and any(results):
                return _atomic_failure(updates, results)
            # The packs become visible now, before any ref needs them. (An update that writes
            # no ref leaves them pending: compaction removes them after the grace period.)
            if any(w is not None for w in writes):
                await self.commit_uploads(packs)
            # Several writes of an atomic update: the commit point is the record.
            planned = [
                {"ref": u["ref"], "old": cur.oid, "new": u["new"]}
                for u, w, cur in zip(updates, writes, current)
                if w is not None and w[0] != "nothing"
            ]
            record = None
            if atomic and len(planned) > 1:
                record = await self.commit_record(base, planned)

            undo = []
            for i, u in enumerate(updates):
                if writes[i] is None:
                    continue
                try:
                    done = await self._apply(u["ref"], writes[i], current[i])
                except ClientError as e:
                    if not (_lost_race(e) or (_is_missing(e) and writes[i][0] != "create")):
                        if atomic:
                            await self._abandon(undo, record)
                        raise
                    # Hypha's own receive-pack or an API commit wrote the ref meanwhile.
                    now = (await self.read_ref(u["ref"])).oid
                    results[i] = _stale(u["ref"], now)
                    if atomic:
                        await self._abandon(undo, record)
                        return _atomic_failure(updates, results)
                    continue
                if done:
                    undo.append(done)
                results[i] = _ok(u["ref"])
            if record is not None:
                # Every ref is written: the update is done whatever happens to the record. One
                # left unfinished is rolled forward (a no-op) by the next holder of the lease.
                try:
                    await self.finish_record(record)
                except Exception:
                    logger.exception("%s: could not mark its update record finished", self.name)

            target = req.get("set_head_if_missing")
            if target and (not updates or any(r and r["status"] == "ok" for r in results)):
                await self.set_head(target, only_if_missing=True)
            return {"results": [r or _ok(u["ref"]) for r, u in zip(results, updates)]}
        finally:
            await self._unlock()

    async def _apply(self, name: str, write: tuple, cur: Current):
        kind = write[0]
        if kind == "nothing":
            return None
        if kind == "create":
            etag = await self.put(name, f"{write[1]}\n".encode(), if_none_match=True)
        elif kind == "replace":
            etag = await self.put(name, f"{write[1]}\n".encode(), if_match=write[2])
        else:
            await self.delete(name, if_match=write[1])
            etag = None
        return (name, cur.oid, etag)

    async def _abandon(self, undo: list, record: Optional[Stored]) -> None:
        """An atomic update failed: put back what it wrote, then mark its record finished
        (left unfinished, it would be rolled forward: all refs, not none). Dying in between
        leaves the record unfinished, and the update is rolled forward instead."""
        await self._roll_back(undo)
        if record is not None:
            await self.finish_record(record)

    async def _roll_back(self, undo: list) -> None:
        """Best effort, each step conditional on the object still being what we wrote."""
        for name, previous, written in reversed(undo):
            try:
                if previous and written:
                    await self.put(name, f"{previous}\n".encode(), if_match=written)
                elif written:
                    await self.delete(name, if_match=written)
                elif previous:
                    await self.put(name, f"{previous}\n".encode(), if_none_match=True)
            except ClientError:
                pass  # someone else changed the ref since, and theirs stands

    async def compact(self, req: dict) -> dict:
        """Retire packs whose objects ``req.pack`` holds; delete those past the grace period."""
        pack = req.get("pack")
        retire = req.get("retire")
        check_pack_name(pack)
        if not isinstance(retire, list):
            raise ApiError("invalid", "invalid request: retire must be a list")
        for name in retire:
            check_pack_name(name)
            if name == pack:
                raise ApiError("invalid", f"{name} cannot replace itself")
        await self.check_packs([pack])
        keep = idx_object_ids((await self.get(f"objects/pack/{pack}.idx"))[0], pack)
        await self._locked()
        try:
            await self.roll_forward()
            # The new pack was uploaded through `uploads` like a push's: it is live from now on.
            await self.commit_uploads([pack])
            retired = await self.retired()
            if pack in retired:
                raise ApiError("invalid", f"{pack} is retired in {self.name}")
            live = {p["name"] for p in await self.packs()}
            to_retire = []
            for name in retire:
                if name not in live:
                    continue  # already retired or gone
                got = await self.get(f"objects/pack/{name}.idx")
                missing = idx_object_ids(got[0], name) - keep if got else set()
                if missing:
                    raise ApiError(
                        "invalid",
                        f"{pack} lacks object {next(iter(missing)).hex()} of {name} in {self.name}",
                    )
                to_retire.append(name)
            now = int(time.time())
            for name in to_retire:
                await self.put(f"hypha-remote/retired/{name}", f"{now}\n".encode())
            deleted = []
            for name, at in retired.items():
                if now < at + GC_GRACE_SECS:
                    continue
                # .pack first: a lone .idx is invisible to every reader, a lone .pack is not.
                for rel in (
                    f"objects/pack/{name}.pack",
                    f"objects/pack/{name}.idx",
                    f"hypha-remote/retired/{name}",
                ):
                    try:
                        await self.delete(rel)
                    except ClientError as e:
                        if not _is_missing(e):
                            raise
                deleted.append(name)
            deleted.extend(await self.purge_abandoned_uploads(now, GC_GRACE_SECS))
            return {"retired": to_retire, "deleted": deleted, "grace_secs": GC_GRACE_SECS}
        finally:
            await self._unlock()


def _validate_updates(req: dict) -> list:
    updates = req.get("updates")
    if not isinstance(updates, list):
        raise ApiError("invalid", "invalid request: updates must be a list")
    seen = set()
    out = []
    for u in updates:
        if not isinstance(u, dict) or not isinstance(u.get("ref"), str):
            raise ApiError("invalid", "invalid request: each update needs a ref")
        check_ref(u["ref"])
        for k in ("old", "new"):
            v = u.get(k)
            if v is not None and (not isinstance(v, str) or not _OID.match(v)):
                raise ApiError(
                    "invalid",
                    f"{u['ref']}: invalid object id {str(v)[:80]!r} (expected 40 lowercase hex)",
                )
        if u["ref"] in seen:
            raise ApiError("invalid", f"{u['ref']} is updated twice in one request")
        seen.add(u["ref"])
        out.append({"ref": u["ref"], "old": u.get("old"), "new": u.get("new")})
    target = req.get("set_head_if_missing")
    if target is not None:
        if not isinstance(target, str):
            raise ApiError("invalid", "invalid request: set_head_if_missing must be a ref")
        check_ref(target)
    packs = req.get("packs") or []
    if not isinstance(packs, list):
        raise ApiError("invalid", "invalid request: packs must be a list")
    for p in packs:
        check_pack_name(p)
    return out


def _plan(u: dict, cur: Current, head: Optional[str], existing: set, created: set) -> tuple:
    name = u["ref"]
    if u["new"] is None and head == name and cur.oid is not None:
        return ("result", _rejected(name, DENY_DELETE_CURRENT))
    if u["old"] != cur.oid:
        return ("result", _stale(name, cur.oid))
    if u["new"] is None:
        return ("delete", cur.etag) if cur.etag else ("nothing",)
    if cur.etag is None:
        # refs/heads/a and refs/heads/a/b cannot both exist in git's ref store.
        for other in existing | created:
            if other != name and (other.startswith(name + "/") or name.startswith(other + "/")):
                return ("result", _rejected(name, f"cannot lock ref '{name}': '{other}' exists"))
        return ("create", u["new"])
    return ("replace", u["new"], cur.etag)


def _atomic_failure(updates: list, results: list) -> dict:
    return {
        "results": [
            r if r and r["status"] != "ok" else _rejected(u["ref"], ATOMIC_FAILED)
            for r, u in zip(results, updates)
        ]
    }


def _ok(name):
    return {"ref": name, "status": "ok"}


def _stale(name, current):
    r = {"ref": name, "status": "stale"}
    if current:
        r["current"] = current
    return r


def _rejected(name, detail):
    return {"ref": name, "status": "rejected", "detail": detail}


def _presign_client(s3_config: dict):
    """An S3 client for presigning only, from Hypha's S3 config, with SigV4.

    Hypha's own client presigns in SigV2 query form (botocore's default for this setup), which
    does not sign Content-Length: a client could then upload a pack of another size than the
    one `uploads` approved. SigV4 signs every header present, Content-Length included.
    """
    from aiobotocore.session import get_session
    from botocore.config import Config

    return get_session().create_client(
        "s3",
        endpoint_url=s3_config["endpoint_url"],
        aws_access_key_id=s3_config["access_key_id"],
        aws_secret_access_key=s3_config["secret_access_key"],
        region_name=s3_config.get("region_name") or "us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class GitRemoteApi:
    """Routes, authentication and Hypha lookups; everything else is :class:`Repo`'s."""

    READ_ROUTES = {"info", "refs", "packs"}
    WRITE_ROUTES = {"uploads", "update", "head", "compact"}

    def __init__(self, store):
        self.store = store
        # One lock per artifact UUID, alive while some request holds it.
        self._locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = (
            weakref.WeakValueDictionary()
        )
        # S3 clients per S3 configuration, kept for the life of the server: building one
        # (botocore loads the S3 service model) costs ~0.3 s, which per request doubled the
        # time of every git command.
        self._clients: dict = {}
        self._client_stack = contextlib.AsyncExitStack()
        self._client_lock = asyncio.Lock()

    def _redis(self):
        try:
            return self.store.get_redis()
        except Exception:
            logger.exception("no Redis from Hypha: updates lock within this worker only")
            return None

    async def _clients_for(self, s3_config: dict) -> tuple:
        """(operations client, SigV4 presigning client) for one S3 configuration."""
        key = tuple(
            s3_config.get(k)
            for k in ("endpoint_url", "access_key_id", "secret_access_key", "region_name")
        )
        clients = self._clients.get(key)
        if clients is None:
            async with self._client_lock:
                clients = self._clients.get(key)
                if clients is None:
                    s3 = await self._client_stack.enter_async_context(
                        self.manager._create_client_async(s3_config)
                    )
                    presigner = await self._client_stack.enter_async_context(
                        _presign_client(s3_config)
                    )
                    clients = self._clients[key] = (s3, presigner)
        return clients

    @property
    def manager(self):
        return self.store._artifact_manager

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/{workspace}/git/{alias}/remote/v1/{route}")
        async def remote_v1(workspace: str, alias: str, route: str, request: Request):
            try:
                return JSONResponse(await self.dispatch(workspace, alias, route, request))
            except ApiError as e:
                return e.response()
            except Exception:
                # Never echo the exception text: botocore errors can carry presigned URLs.
                logger.exception("remote v1 %s on %s/%s failed", route, workspace, alias)
                return ApiError("internal", f"{route} failed on the server").response()

        return router

    async def dispatch(self, workspace: str, alias: str, route: str, request: Request) -> dict:
        alias = alias[:-4] if alias.endswith(".git") else alias
        for segment in (workspace, alias):
            if not _SEGMENT.match(segment) or segment.startswith((".", "-")) or ".." in segment:
                raise ApiError("invalid", f"invalid repository name {segment[:80]!r}")
        if route not in self.READ_ROUTES | self.WRITE_ROUTES | {"create"}:
            raise ApiError("not_found", "no such route in remote API v1")
        try:
            user = await self.store.login_optional(request)
        except Exception:
            raise ApiError("unauthenticated", "invalid or expired token") from None
        body = await self._body(request)
        if route == "create":
            return await self.create(user, workspace, alias, body)
        write = route in self.WRITE_ROUTES
        repo, artifact = await self.open(user, workspace, alias, "commit" if write else "read")
        repo.s3, repo.presigner = await self._clients_for(repo.s3_config)
        if route == "info":
            return await self.info(user, repo, artifact)
        if route == "refs":
            return await self.refs(repo)
        if route == "packs":
            return await self.packs(repo, body)
        if route == "uploads":
            return await self.uploads(repo, body)
        if route == "update":
            return await repo.update(body)
        if route == "compact":
            return await repo.compact(body)
        symref = body.get("symref")
        if not isinstance(symref, str):
            raise ApiError("invalid", "invalid request: symref must be a ref")
        await repo.set_head(symref, only_if_missing=False)
        return await self.refs(repo)

    @staticmethod
    async def _body(request: Request) -> dict:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError("invalid", f"invalid request: {e}") from None
        if not isinstance(body, dict):
            raise ApiError("invalid", "invalid request: expected a JSON object")
        return body

    async def _artifact(self, user, artifact_id: str, operation: str):
        """Hypha's own lookup and permission check, mapped to our error codes."""
        session = await self.manager._get_session()
        try:
            async with session.begin():
                return await self.manager._get_artifact_with_permission(
                    user, artifact_id, operation, session
                )
        finally:
            await session.close()

    async def open(self, user, workspace: str, alias: str, operation: str):
        name = f"{workspace}/{alias}"
        try:
            artifact, parent = await self._artifact(user, name, operation)
        except KeyError:
            # Anonymous callers learn nothing about what exists (as the Rust server).
            if user.is_anonymous:
                raise ApiError("unauthenticated", f"{name}: authentication required") from None
            raise ApiError("not_found", f"repository {name} not found") from None
        except PermissionError:
            if user.is_anonymous:
                raise ApiError("unauthenticated", f"{name}: authentication required") from None
            raise ApiError("forbidden", f"{name}: permission denied") from None
        config = artifact.config or {}
        if config.get("storage") != "git":
            raise ApiError(
                "not_found",
                f"{name} is not a git repository (recreate the artifact with config.storage='git')",
            )
        s3_config = self.manager._get_s3_config(artifact, parent)
        lock = self._locks.get(artifact.id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[artifact.id] = lock
        repo = Repo(
            manager=self.manager,
            s3_config=s3_config,
            name=name,
            prefix=f"{s3_config['prefix']}/{artifact.id}/.git/",
            lock=lock,
            redis=self._redis(),
            lock_key=f"git-remote-hypha:lock:{artifact.id}",
            default_branch=config.get("git_default_branch") or DEFAULT_BRANCH,
        )
        return repo, artifact

    async def info(self, user, repo: Repo, artifact) -> dict:
        try:
            await self._artifact(user, repo.name, "commit")
            can_write = True
        except Exception:
            can_write = False
        perms = (artifact.config or {}).get("permissions") or {}
        return {
            "api": API_VERSION,
            "object_format": "sha1",
            "default_branch": await repo.current_default_branch(),
            "can_write": can_write,
            "presign_expires_in": PRESIGN_EXPIRES_IN,
            "max_single_put": MAX_SINGLE_PUT,
            "public": bool(perms.get("*")),
        }

    async def refs(self, repo: Repo) -> dict:
        head = await repo.head()
        return {"head": {"symref": head} if head else None, "refs": await repo.refs()}

    async def packs(self, repo: Repo, body: dict) -> dict:
        known = set(body.get("known") or [])
        out = []
        for p in await repo.packs():
            entry = {"name": p["name"], "pack_size": p["pack_size"], "idx_size": p["idx_size"]}
            if p["name"] not in known:
                entry["pack_url"] = await repo.presign_get(repo.pack_key(p["name"], "pack"))
                entry["idx_url"] = await repo.presign_get(repo.pack_key(p["name"], "idx"))
            out.append(entry)
        return {"packs": out, "expires_at": int(time.time()) + PRESIGN_EXPIRES_IN}

    async def uploads(self, repo: Repo, body: dict) -> dict:
        specs = body.get("packs")
        if not isinstance(specs, list):
            raise ApiError("invalid", "invalid request: packs must be a list")
        if len(specs) > MAX_UPLOADS_PER_REQUEST:
            raise ApiError("invalid", f"at most {MAX_UPLOADS_PER_REQUEST} packs per request")
        uploads = []
        for spec in specs:
            check_pack_name(spec.get("name") if isinstance(spec, dict) else None)
            for what in ("pack_size", "idx_size"):
                size = spec.get(what)
                if not isinstance(size, int) or not 0 < size <= MAX_SINGLE_PUT:
                    raise ApiError(
                        "invalid",
                        f"{spec['name']}: {what[:-5]} size {size} is outside 1..={MAX_SINGLE_PUT}",
                    )
        # Only once every spec is valid: bad input marks nothing.
        await repo.mark_uploads([spec["name"] for spec in specs])
        for spec in specs:
            name = spec["name"]
            uploads.append(
                {
                    "name": name,
                    "idx": await repo.presign_put(repo.pack_key(name, "idx"), spec["idx_size"]),
                    "pack": await repo.presign_put(repo.pack_key(name, "pack"), spec["pack_size"]),
                }
            )
        return {"uploads": uploads}

    async def create(self, user, workspace: str, alias: str, body: dict) -> dict:
        """A new artifact with ``config.storage = "git"``: Hypha's ``init_bare`` writes HEAD."""
        if user.is_anonymous:
            raise ApiError("unauthenticated", f"{workspace}/{alias}: authentication required")
        branch = body.get("default_branch") or DEFAULT_BRANCH
        branch = branch[len("refs/heads/") :] if branch.startswith("refs/heads/") else branch
        check_ref(f"refs/heads/{branch}")
        config = {"storage": "git", "git_default_branch": branch}
        if body.get("public"):
            config["permissions"] = {"*": "r"}
        try:
            await self._artifact(user, f"{workspace}/{alias}", "read")
            raise ApiError("exists", f"repository {workspace}/{alias} already exists")
        except (KeyError, PermissionError):
            pass
        try:
            # A user's own workspace exists only once used; Hypha's RPC layer makes it the
            # same way before any call.
            await self.store.load_or_create_workspace(user, workspace)
            await self.manager.create(
                alias=alias,
                workspace=workspace,
                # Called directly (not over RPC), so no default fills in the manifest.
                manifest={"name": alias},
                config=config,
                context={"user": user.model_dump(), "ws": workspace},
            )
        except PermissionError:
            raise ApiError("forbidden", f"{workspace}/{alias}: permission denied") from None
        except Exception as e:
            if type(e).__name__ == "WorkspaceNotFoundError":
                raise ApiError("forbidden", f"{workspace}/{alias}: permission denied") from None
            if "already exists" in str(e):
                raise ApiError("exists", f"repository {workspace}/{alias} already exists") from None
            raise
        repo, artifact = await self.open(user, workspace, alias, "read")
        repo.s3, repo.presigner = await self._clients_for(repo.s3_config)
        return await self.info(user, repo, artifact)


async def hypha_startup(server):
    """Hypha startup function: register the POST routes of remote API v1."""
    store = server["store"]
    api = GitRemoteApi(store)
    store.register_router(api.router())
    logger.info("git-remote-hypha remote API v1 enabled at /{ws}/git/{alias}/remote/v1/")
