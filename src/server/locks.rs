//! The Git LFS File Locking API (git-lfs `docs/api/locking.md`) below a repository's LFS
//! endpoint: `POST /{ws}/git/{alias}[.git]/info/lfs/locks` (lock), `GET .../locks` (list:
//! `path`, `id`, `cursor`, `limit`), `POST .../locks/verify` (the caller's locks and
//! everyone else's, which `git lfs pre-push` reads when `lfs.<url>.locksverify` is on) and
//! `POST .../locks/{id}/unlock` (with `force`). So `git lfs lock`, `unlock`, `locks` and
//! lock verification on push work against `git hypha serve` unchanged.
//!
//! Owns parsing, permissions, bounds and the answers' shapes; the records and the
//! one-lock-per-path rule are `repo::Repository`'s (`repo/locks.rs`). A lock's owner is the
//! subject of the caller's token (through the plugin, the Hypha user the plugin names).
//!
//! Access, as the spec asks and the one table says (`api::lfs_routes`): lock and unlock need
//! write; listing needs read (anonymous on a public repository, as an LFS download); verify
//! needs read. Lock, unlock and verify also need a caller with a name (a lock belongs to who
//! takes it; verify splits locks by owner): an anonymous caller gets 401 (with
//! `LFS-Authenticate`), on which git-lfs asks `git credential` and tries again, even where
//! anonymous callers may write (Hypha's `"*": "rw"`). Unlocking another user's lock needs
//! `force` (403 without). Inside Hypha the plugin answers these paths (Hypha's own LFS
//! endpoint has no locks API): Hypha checks the caller, this server (its child) the rest.
//!
//! Bounds: a body of at most [`MAX_LOCK_BODY`] bytes, a path of at most
//! [`crate::repo::MAX_LOCK_PATH`], a page of at most [`MAX_PAGE`] locks, ids and cursors of
//! a fixed shape before they become keys.

use super::credentials::Caller;
use super::error::ApiError;
use super::lfs_call::{lfs_json, LfsJson, LfsResult};
use super::routes::{authorize, caller_and_repo};
use super::state::AppState;
use crate::api::lfs_routes::LfsRoute;
use crate::api::locks::{
    ConflictBody, CreateRequest, ListQuery, ListResponse, Lock, LockResponse, Owner, UnlockRequest,
    VerifyRequest, VerifyResponse,
};
use crate::repo::{FileLock, LockOutcome, UnlockOutcome};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;

/// Largest request body: a lock request is a path (at most 4 KiB) and a ref name.
pub const MAX_LOCK_BODY: usize = 64 * 1024;

/// Most locks in one page of a listing, whatever `limit` asks: every lock of a page is one
/// small read from the store.
pub const MAX_PAGE: usize = 1000;

/// Page size when the request names none (git-lfs sends none unless `--limit` is given).
const DEFAULT_PAGE: usize = 100;

/// `POST .../info/lfs/locks`.
pub async fn create(
    State(state): State<AppState>,
    Path((workspace, alias)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let req: CreateRequest = read_json(body, "lock").await?;
        let (caller, _, repo) = caller_and_repo(&state, &workspace, &alias, &headers)?;
        allowed(&caller, &workspace, &repo, LfsRoute::Lock).await?;
        let owner = owner_of(caller.subject(), repo.name())?;
        repo.lock_create(&req.path, owner, crate::auth::unix_now())
            .await
            .map_err(ApiError::from)
    }
    .await;
    match answer {
        Ok(LockOutcome::Created(lock)) => {
            lfs_json(StatusCode::CREATED, &LockResponse { lock: wire(lock) })
        }
        Ok(LockOutcome::Held(lock)) => lfs_json(
            StatusCode::CONFLICT,
            &ConflictBody {
                // git-lfs prints "Locking <path> failed: <message>".
                message: format!(
                    "already locked by {} (lock {})",
                    one_line(&lock.owner),
                    lock.id
                ),
                lock: wire(lock),
            },
        ),
        Err(err) => err.into_lfs_response(),
    }
}

/// `GET .../info/lfs/locks?path=&id=&cursor=&limit=&refspec=`.
pub async fn list(
    State(state): State<AppState>,
    Path((workspace, alias)): Path<(String, String)>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> LfsResult<LfsJson<ListResponse>> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid(format!("invalid lock listing query: {e}")))?;
    let limit = match query.limit.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "invalid lock listing limit {:?} (expected a number)",
                crate::storage::shorten(text)
            ))
        })?),
    };
    let (caller, _, repo) = caller_and_repo(&state, &workspace, &alias, &headers)?;
    allowed(&caller, &workspace, &repo, LfsRoute::Locks).await?;
    // A path or an id names at most one lock: one read, no listing.
    let single = match (query.path.as_deref(), query.id.as_deref()) {
        (Some(path), id) => Some(
            repo.lock_by_path(path)
                .await?
                .filter(|l| id.is_none_or(|id| l.id == id)),
        ),
        (None, Some(id)) => Some(repo.lock_by_id(id).await?),
        (None, None) => None,
    };
    if let Some(found) = single {
        return Ok(LfsJson(ListResponse {
            locks: found.into_iter().map(wire).collect(),
            next_cursor: None,
        }));
    }
    let page = repo
        .locks_page(query.cursor.as_deref(), page_size(limit))
        .await?;
    Ok(LfsJson(ListResponse {
        locks: page.locks.into_iter().map(wire).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST .../info/lfs/locks/verify`.
pub async fn verify(
    State(state): State<AppState>,
    Path((workspace, alias)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> LfsResult<LfsJson<VerifyResponse>> {
    let req: VerifyRequest = read_json(body, "lock verify").await?;
    let (caller, _, repo) = caller_and_repo(&state, &workspace, &alias, &headers)?;
    // Even on a public repository: "ours" means nothing without a caller (`needs_name`).
    allowed(&caller, &workspace, &repo, LfsRoute::LocksVerify).await?;
    let owner = owner_of(caller.subject(), repo.name())?;
    let limit = page_size(req.limit);
    let page = repo.locks_page(req.cursor.as_deref(), limit).await?;
    let (ours, theirs) = page.locks.into_iter().partition(|l| l.owner == owner);
    Ok(LfsJson(VerifyResponse {
        ours: wire_all(ours),
        theirs: wire_all(theirs),
        next_cursor: page.next_cursor,
    }))
}

/// `POST .../info/lfs/locks/{id}/unlock`.
pub async fn unlock(
    State(state): State<AppState>,
    Path((workspace, alias, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> LfsResult<LfsJson<LockResponse>> {
    let req: UnlockRequest = read_json(body, "unlock").await?;
    let (caller, _, repo) = caller_and_repo(&state, &workspace, &alias, &headers)?;
    allowed(&caller, &workspace, &repo, LfsRoute::Unlock).await?;
    let owner = owner_of(caller.subject(), repo.name())?;
    match repo.lock_remove(&id, owner, req.force).await? {
        UnlockOutcome::Removed(lock) => Ok(LfsJson(LockResponse { lock: wire(lock) })),
        UnlockOutcome::NotFound => Err(ApiError::not_found(format!(
            "no lock {} in {}",
            crate::storage::shorten(&id),
            repo.name()
        ))
        .into()),
        UnlockOutcome::NotOwner(lock) => Err(ApiError::forbidden(format!(
            "{} is locked by {}, not by you: unlock it with --force",
            one_line(&lock.path),
            one_line(&lock.owner)
        ))
        .into()),
    }
}

/// The caller has what `route` asks ([`LfsRoute::access`]) on the repository, which exists,
/// and a name where the route needs one ([`LfsRoute::needs_name`]: 401 first, so that
/// git-lfs asks for credentials even where anonymous callers may read or write).
async fn allowed(
    caller: &Caller,
    workspace: &str,
    repo: &crate::repo::Repository,
    route: LfsRoute,
) -> Result<(), ApiError> {
    if route.needs_name() && caller.is_anonymous() {
        return Err(ApiError::unauthenticated(format!(
            "{}: authentication required: locks belong to who takes them",
            repo.name()
        )));
    }
    authorize(caller, workspace, repo, route.access().of(None)).await
}

/// The request body as `T`, read up to [`MAX_LOCK_BODY`] bytes. An empty body is `{}`:
/// git-lfs sends one for every request, but curl users may not.
async fn read_json<T: DeserializeOwned>(body: Body, what: &str) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_LOCK_BODY)
        .await
        .map_err(|_| {
            ApiError::invalid(format!(
                "{what} request refused: its body is larger than {MAX_LOCK_BODY} bytes (or was cut off)"
            ))
        })?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid lfs {what} request: {e}")))
}

/// The lock owner's name for this caller: the token's subject, which must name someone.
fn owner_of<'a>(subject: &'a str, repo: &str) -> Result<&'a str, ApiError> {
    if subject.is_empty() {
        return Err(ApiError::forbidden(format!(
            "{repo}: locks need a token that names its user (its sub claim is empty)"
        )));
    }
    Ok(subject)
}

/// A path or owner name fit for a one-line message: git paths may hold newlines, and a
/// path may be 4 KiB long.
fn one_line(s: &str) -> String {
    crate::storage::shorten(s)
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn page_size(limit: Option<u64>) -> usize {
    match limit {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    }
}

fn wire_all(locks: Vec<FileLock>) -> Vec<Lock> {
    locks.into_iter().map(wire).collect()
}

/// A stored lock as git-lfs reads it (`locked_at` in RFC 3339, which Go's `time.Time`
/// parses).
fn wire(lock: FileLock) -> Lock {
    let utc = crate::auth::format_utc(lock.locked_at); // "2026-12-05 10:00:00 UTC"
    let locked_at = format!("{}Z", utc.trim_end_matches(" UTC").replacen(' ', "T", 1));
    Lock {
        id: lock.id,
        path: lock.path,
        locked_at,
        owner: Owner { name: lock.owner },
    }
}
