//! The routes of remote API v1: `POST /{ws}/git/{alias}/remote/v1/{route}` (docs/design.md §4).
//!
//! Owns request parsing, permission checks and the JSON answers. Refs, packs and keys are
//! `repo::Repository`'s business, spoken in its own types (`convert` translates); status
//! codes come from `ApiError`. Pack bytes never
//! pass through here: `packs` and `uploads` hand out presigned URLs, and `fix-thin` has the
//! repository complete a thin upload in storage.
//!
//! Access rules:
//! - reads (`info`, `refs`, `packs`) need `r` on the workspace, or a public repository;
//!   `refs` with `for_push` also says whether the caller could write (`can_write`);
//! - `uploads`, `complete`, `abort`, `fix-thin`, `update`, `head`, `compact` need `rw` (or `a`);
//!   `create` needs `rw` on the workspace;
//! - `hooks` (a repository's webhooks) needs `a` on the workspace; a successful `update`
//!   hands its push to `webhook` (queued: the answer never waits for a delivery);
//! - an anonymous caller gets 401 (never 404) on a missing or private repository, and a
//!   caller without any grant on the workspace gets 403 whether or not it exists, so that
//!   only those who may read learn that a repository exists.
//! - in plugin mode (`serve --plugin`) Hypha has checked the caller: the permission it granted
//!   stands for the workspace grant, the repository is where Hypha says, and `create` is
//!   Hypha's (404 here).

use super::credentials::{self, Caller};
use super::error::ApiError;
use super::hooks::{hooks, pushed};
use super::limits::{ByteBudget, Moved};
use super::log::LogNote;
use super::metrics::ThinSizes;
use super::state::AppState;
use crate::api::{self, Access, Route};
use crate::auth;
use crate::names;
use crate::repo::upload::MAX_MULTIPART_SIZE;
use crate::repo::{self, RepoConfig, Repository};
use crate::storage;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;

/// Most packs one `uploads` request may announce.
const MAX_UPLOADS_PER_REQUEST: usize = 256;
/// Uploads a repository may have staged (handed URLs, not yet part of it by `update`): a
/// writer who never calls `update` fills the store no further than this many packs of
/// `max_single_put` each, until the sweep removes them after the grace period.
pub const MAX_STAGED_UPLOADS: usize = 64;

/// `POST /{ws}/git/{alias}/remote/v1/{route}`.
pub async fn api(
    State(state): State<AppState>,
    Path((workspace, alias, route)): Path<(String, String, String)>,
    headers: HeaderMap,
    budget: Option<Extension<ByteBudget>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let budget = budget.map(|Extension(b)| b).unwrap_or_default();
    let at = Request {
        state: &state,
        workspace: &workspace,
        budget: &budget,
    };
    match dispatch(&at, &alias, &route, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// What every route of one request shares: the server, the workspace named in the path,
/// and the caller's byte budget ([`ByteBudget`]).
pub(super) struct Request<'a> {
    pub state: &'a AppState,
    pub workspace: &'a str,
    pub budget: &'a ByteBudget,
}

async fn dispatch(
    at: &Request<'_>,
    alias: &str,
    route: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (state, workspace) = (at.state, at.workspace);
    let route = parse_route(route)?;
    let body = body.map_err(|e| ApiError::invalid(format!("cannot read request body: {e}")))?;
    let (caller, alias, repo) = caller_and_repo(state, workspace, alias, headers)?;
    let alias = alias.as_str();
    // A route this server does not serve to this caller answers as if it did not exist.
    if route == Route::FixThin && !state.thin_packs {
        return Err(ApiError::not_found("no such route in remote API v1"));
    }
    match route {
        // Write access on the workspace; the repository need not exist.
        Route::Create => create(state, &caller, workspace, &repo, &body).await,
        Route::Info => {
            let config = authorize_read(&caller, workspace, &repo).await?;
            info(state, &caller, workspace, &repo, &config).await
        }
        // Read access, checked beside the listing (see there).
        Route::Refs => refs_route(at, &caller, &repo, &body).await,
        _ => {
            // Every other route asks what the one table says ([`Route::access`]).
            if route == Route::Update {
                // `update` looks for the repository itself, beside its first reads (a round
                // trip less on S3), and before it writes anything.
                may_write(&caller, workspace, &repo)?;
            } else {
                authorize(&caller, workspace, &repo, route.access()).await?;
            }
            serve(at, route, &caller, alias, &repo, &body).await
        }
    }
}

/// The `refs` route: read access, checked beside the listing for token holders.
async fn refs_route(
    at: &Request<'_>,
    caller: &Caller,
    repo: &Repository,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (state, workspace) = (at.state, at.workspace);
    // `refs` took no body before `for_push`: an unreadable one still lists.
    let req: api::RefsRequest = serde_json::from_slice(body).unwrap_or_default();
    // A caller whose hand-outs are limited gets no pack listing here: it would hand out
    // URLs that an ls-remote or a push never uses, and each would be charged. Its fetch asks
    // `packs` (one round trip more, charged), as from a server before listings in `refs`.
    let known_packs = req
        .known_packs
        .as_ref()
        .filter(|_| !at.budget.counts_hand_outs());
    let listing = async {
        match known_packs {
            // Both listings at once: on S3 each is a round trip to the store.
            Some(known) => {
                let (refs, packs) = tokio::join!(refs(repo), pack_listing(at, repo, known));
                let (mut answer, mut packs) = (refs?, packs?);
                // Packs carried in the answer are bytes this server sends itself: none for a
                // caller in debt, and the carried ones charged (the budget may go into debt).
                let asked = if at.budget.ready(Moved::Here(1)).is_ok() {
                    req.inline_max
                } else {
                    0
                };
                super::inline_listing::fill(state, repo, &mut packs, known, asked).await;
                let carried: u64 = packs
                    .packs
                    .iter()
                    .filter(|p| p.inline.is_some())
                    .map(|p| p.pack_size)
                    .sum();
                at.budget.charge(Moved::Here(carried));
                answer.packs = Some(packs);
                Ok::<_, ApiError>(answer)
            }
            None => refs(repo).await,
        }
    };
    let mut answer = if caller.permission_for(workspace).is_some() {
        // A token for the workspace: the existence check and the reads go to the
        // store together (a round trip less on S3); the answer is used only if the
        // check passes. Anonymous callers are checked first.
        let (allowed, answer) = tokio::join!(authorize_read(caller, workspace, repo), listing);
        allowed?;
        answer?
    } else {
        authorize_read(caller, workspace, repo).await?;
        listing.await?
    };
    if req.for_push {
        answer.can_write = Some(can_write(caller, workspace));
        answer.thin_packs = state.thin_packs;
        answer.thin_without_idx = state.thin_packs && state.inline_max > 0;
        answer.inline_max = state.inline_max;
    }
    Ok(Json(answer).into_response())
}

/// Every route but `create`, `info` and `refs`, once the caller's access is checked.
async fn serve(
    at: &Request<'_>,
    route: Route,
    caller: &Caller,
    alias: &str,
    repo: &Repository,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (state, workspace) = (at.state, at.workspace);
    match route {
        Route::Packs => packs(at, repo, parse_or_default(body)?).await,
        Route::Uploads => uploads(at, repo, parse(body)?).await,
        Route::Update => {
            let req: api::UpdateRequest = parse(body)?;
            let mut update = repo::Update::from(&req);
            // Inline packs are bytes this server moves, and stored once a ref is written:
            // both limits are asked before anything is decoded or stored. (Their size is
            // their base64 text's three quarters; `inline::store` checks the decoded size.)
            let inline_bytes: u64 = req
                .inline
                .iter()
                .map(|p| (p.pack.len() + p.idx.len()) as u64 / 4 * 3)
                .sum();
            if inline_bytes > 0 {
                let moved = Moved::Here(inline_bytes);
                at.budget.ready(moved)?;
                if let Some(quotas) = &state.quotas {
                    quotas.admit(workspace, repo, &[], inline_bytes).await?;
                }
                at.budget.charge(moved);
            }
            // A thin inline pack is completed and stored before the update starts: its
            // completion finds out that the repository is there, before storing anything
            // (the update checks it itself otherwise).
            let inline = super::inline::store(state, repo, &req.inline).await?;
            update.packs.extend(inline.names);
            update.stored = inline.stored;
            update.inline = inline.inline;
            let result = repo.update(&update).await.map_err(|e| match e {
                // The existence check is the update's own (beside its reads, see there).
                crate::storage::Error::NotFound { key } if key == repo.name() => missing(repo),
                e => e.into(),
            })?;
            let wrote = result
                .results
                .iter()
                .any(|r| r.status == repo::RefStatus::Ok);
            if let Some(quotas) = state.quotas.as_ref().filter(|_| wrote) {
                // What the update made part of the repository: the named packs (pending
                // until now, or completed from an inline thin pack) and the inline ones.
                let named: Vec<(String, u64)> = update
                    .packs
                    .iter()
                    .map(|name| {
                        let size = update.stored.get(name).map_or(0, |(i, p)| i + p);
                        (name.clone(), size)
                    })
                    .collect();
                let inline_stored: u64 = update.inline.iter().map(|p| p.stored_size()).sum();
                quotas.committed(workspace, repo, &named, inline_stored);
            }
            if let Some(webhooks) = &state.webhooks {
                webhooks.after_update(repo, pushed(caller, workspace, alias, &req, &result));
            }
            let added_packs = !update.packs.is_empty() || !update.inline.is_empty();
            if let Some(auto_gc) = state.auto_gc.as_ref().filter(|_| added_packs) {
                auto_gc.after_update(repo, &state.metrics, state.leases.as_ref());
            }
            update_response(&req, result, inline.notes)
        }
        Route::Hooks => hooks(state, repo, parse(body)?).await,
        Route::Complete => {
            let req: api::CompleteRequest = parse(body)?;
            repo.complete_upload(&req.name, &req.upload_id, req.pack_size, req.part_size)
                .await?;
            multipart_done(&req.name, format!("multipart completed {}", req.name))
        }
        Route::Abort => {
            let req: api::AbortRequest = parse(body)?;
            repo.abort_upload(&req.name, &req.upload_id).await?;
            if let Some(quotas) = &state.quotas {
                quotas.dropped(workspace, repo, &req.name);
            }
            multipart_done(&req.name, format!("multipart aborted {}", req.name))
        }
        Route::FixThin => {
            let req: api::FixThinRequest = parse(body)?;
            let started = std::time::Instant::now();
            let done = repo.complete_thin(&req.name).await;
            state.metrics.thin(
                "fix-thin",
                started.elapsed(),
                done.as_ref().ok().map(|d| ThinSizes {
                    thin: d.thin_size,
                    appended: d.appended as u64,
                    completed: d.pack_size,
                }),
            );
            let done = done?;
            if let Some(quotas) = &state.quotas {
                let size = done.pack_size + done.idx_size;
                quotas.renamed(workspace, repo, &req.name, &done.name, size);
            }
            let note = format!(
                "fix-thin {} thin_size={} -> {} appended={} size={}",
                req.name, done.thin_size, done.name, done.appended, done.pack_size
            );
            let mut response = Json(api::FixThinResponse {
                name: done.name,
                pack_size: done.pack_size,
                idx_size: done.idx_size,
                appended: done.appended,
            })
            .into_response();
            response.extensions_mut().insert(LogNote(note));
            Ok(response)
        }
        Route::Compact => {
            let req: api::CompactRequest = parse(body)?;
            let started = std::time::Instant::now();
            let done = repo.compact(&(&req).into(), state.gc_grace).await;
            if let (Some(quotas), Ok(_)) = (&state.quotas, &done) {
                // The merged pack is stored now; what it retires counts until the next
                // listing (the total errs high, see `quota`).
                quotas.committed(workspace, repo, &[(req.pack.clone(), 0)], 0);
            }
            // The client merged and uploaded; the server checks and retires.
            let outcome = if done.is_ok() { "merged" } else { "failed" };
            state
                .metrics
                .compaction("compact", outcome, started.elapsed(), 0);
            Ok(Json(api::CompactResponse::from(done?)).into_response())
        }
        Route::LfsPrune => lfs_prune(at, repo, body).await,
        Route::Head => {
            let req: api::HeadRequest = parse(body)?;
            repo.set_head(&req.symref).await?;
            Ok(Json(refs(repo).await?).into_response())
        }
        // Served by `dispatch` itself.
        Route::Create | Route::Info | Route::Refs => {
            Err(ApiError::not_found("no such route in remote API v1"))
        }
    }
}

/// Who calls, the alias without `.git`, and the repository the request is about (where
/// Hypha says it lives, in plugin mode). Shared with the LFS routes (`super::lfs`).
pub(super) fn caller_and_repo(
    state: &AppState,
    workspace: &str,
    alias: &str,
    headers: &HeaderMap,
) -> Result<(Caller, String, Repository), ApiError> {
    let alias = names::repository(workspace, alias).map_err(ApiError::invalid)?;
    let alias = alias.as_str();
    let caller = credentials::identify(state, headers)?;
    let repo = match &caller {
        // Hypha decided where the repository lives; messages still name `ws/alias`.
        Caller::Plugin { prefix, .. } => state
            .store
            .repo_at(&format!("{workspace}/{alias}"), prefix)?,
        _ => state.store.repo(workspace, alias)?,
    };
    Ok((caller, alias.to_owned(), repo))
}

fn parse_route(route: &str) -> Result<Route, ApiError> {
    Route::parse(route).ok_or_else(|| ApiError::not_found("no such route in remote API v1"))
}

/// `access` on the repository (it must exist): what a route of the API v1 or LFS tables asks.
pub(super) async fn authorize(
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
    access: Access,
) -> Result<(), ApiError> {
    match access {
        Access::Read => authorize_read(caller, workspace, repo).await.map(drop),
        Access::Write => authorize_write(caller, workspace, repo).await,
        Access::Admin => authorize_admin(caller, workspace, repo).await,
    }
}

/// Read access: a grant on the workspace, or a public repository. See the module doc for
/// why the answer for a missing repository depends on who asks.
pub(super) async fn authorize_read(
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
) -> Result<RepoConfig, ApiError> {
    // Both reads at once: a round trip less on S3 (the config of a missing repository reads
    // as the default and is not used).
    let (exists, config) = tokio::join!(repo.exists(), repo.config());
    if caller.permission_for(workspace).is_some() {
        if !exists? {
            return Err(missing(repo));
        }
        return Ok(config?);
    }
    if exists? {
        let config = config?;
        if config.public {
            return Ok(config);
        }
    }
    Err(denied(caller, repo))
}

/// Write access: `rw` or `a` on the workspace, then the repository must exist.
pub(super) async fn authorize_write(
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
) -> Result<(), ApiError> {
    may_write(caller, workspace, repo)?;
    require_exists(repo).await
}

/// The caller may write to the workspace (whether the repository exists is not asked).
fn may_write(caller: &Caller, workspace: &str, repo: &Repository) -> Result<(), ApiError> {
    match caller.permission_for(workspace) {
        Some(p) if p.can_write() => Ok(()),
        _ => Err(denied(caller, repo)),
    }
}

/// Admin access (`a` on the workspace; through the plugin, what Hypha grants for secrets),
/// then the repository must exist: managing hooks.
async fn authorize_admin(
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
) -> Result<(), ApiError> {
    match caller.permission_for(workspace) {
        Some(auth::Permission::Admin) => require_exists(repo).await,
        Some(_) => Err(ApiError::forbidden(format!(
            "{}: permission denied: managing webhooks needs admin rights (a) on the workspace",
            repo.name()
        ))),
        None => Err(denied(caller, repo)),
    }
}

fn denied(caller: &Caller, repo: &Repository) -> ApiError {
    if caller.is_anonymous() {
        ApiError::unauthenticated(format!("{}: authentication required", repo.name()))
    } else {
        ApiError::forbidden(format!("{}: permission denied", repo.name()))
    }
}

async fn require_exists(repo: &Repository) -> Result<(), ApiError> {
    if repo.exists().await? {
        Ok(())
    } else {
        Err(missing(repo))
    }
}

pub(super) fn missing(repo: &Repository) -> ApiError {
    ApiError::not_found(format!("repository {} not found", repo.name()))
}

async fn info(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
    config: &RepoConfig,
) -> Result<Response, ApiError> {
    Ok(Json(api::InfoResponse {
        api: api::API_VERSION,
        object_format: "sha1".to_owned(),
        default_branch: repo.default_branch().await?,
        can_write: can_write(caller, workspace),
        presign_expires_in: state.presign_expires_in.as_secs(),
        max_single_put: state.max_single_put,
        public: config.public,
    })
    .into_response())
}

/// Whether `caller` may push to `workspace` (in plugin mode: what Hypha granted for this
/// request, which the plugin corrects for reads, see `hypha-plugin/`).
fn can_write(caller: &Caller, workspace: &str) -> bool {
    caller
        .permission_for(workspace)
        .is_some_and(auth::Permission::can_write)
}

async fn refs(repo: &Repository) -> Result<api::RefsResponse, ApiError> {
    // HEAD beside the refs: one round trip to the store less.
    let (head, refs) = tokio::join!(repo.head(), repo.refs());
    Ok(api::RefsResponse {
        head: head?.map(|symref| api::Head { symref }),
        refs: refs?,
        can_write: None,
        thin_packs: false,
        thin_without_idx: false,
        inline_max: 0,
        packs: None,
        // Our endpoint is the default path; the Hypha plugin names its own.
        lfs_endpoint: None,
    })
}

async fn packs(
    at: &Request<'_>,
    repo: &Repository,
    req: api::PacksRequest,
) -> Result<Response, ApiError> {
    Ok(Json(pack_listing(at, repo, &req.known).await?).into_response())
}

/// Every complete pack, oldest first, with download URLs for those not in `known`: the
/// `packs` answer, and the `refs` answer's `packs` for a client about to fetch.
async fn pack_listing(
    at: &Request<'_>,
    repo: &Repository,
    known: &[String],
) -> Result<api::PacksResponse, ApiError> {
    let state = at.state;
    let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
    let expires_at = auth::unix_now() + state.presign_expires_in.as_secs();
    let mut packs = Vec::new();
    let (mut urls, mut bytes) = (0, 0);
    let listed = repo.packs().await?;
    // What this answer hands out URLs for is charged before one is made.
    at.budget.take(Moved::HandedOut(
        listed
            .iter()
            .filter(|e| !known.contains(e.name.as_str()))
            .map(|e| e.pack_size + e.idx_size)
            .sum(),
    ))?;
    for entry in listed {
        let (pack_url, idx_url) = if known.contains(entry.name.as_str()) {
            (None, None)
        } else {
            let (pack, idx) = repo
                .presign_download(&entry.name, state.presign_expires_in)
                .await?;
            urls += 2;
            bytes += entry.pack_size + entry.idx_size;
            (Some(pack.url), Some(idx.url))
        };
        packs.push(api::PackInfo {
            name: entry.name,
            pack_size: entry.pack_size,
            idx_size: entry.idx_size,
            pack_url,
            idx_url,
            inline: None,
        });
    }
    state.metrics.presigned("download", "pack", urls, bytes);
    Ok(api::PacksResponse { packs, expires_at })
}

async fn uploads(
    at: &Request<'_>,
    repo: &Repository,
    req: api::UploadsRequest,
) -> Result<Response, ApiError> {
    let state = at.state;
    if req.packs.len() > MAX_UPLOADS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "at most {MAX_UPLOADS_PER_REQUEST} packs per request"
        )));
    }
    for spec in &req.packs {
        if !names::is_valid_pack_name(&spec.name) {
            return Err(ApiError::invalid(format!(
                "invalid pack name {:?} (expected pack-<40 hex>)",
                shorten(&spec.name)
            )));
        }
        for (what, size) in [("pack", spec.pack_size), ("idx", spec.idx_size)] {
            // A pack that goes up in parts may be larger than one PUT allows.
            // Thin packs go up in one PUT each.
            let limit = if what == "pack" && !spec.thin && repo.uses_multipart(size) {
                MAX_MULTIPART_SIZE
            } else {
                state.max_single_put
            };
            if size == 0 || size > limit {
                return Err(ApiError::invalid(format!(
                    "{}: {what} size {size} is outside 1..={limit}",
                    spec.name
                )));
            }
        }
    }
    let mut staged = repo.staged_uploads().await?;
    if staged + req.packs.len() > MAX_STAGED_UPLOADS {
        // Abandoned ones past the grace period go first; what is left is in flight.
        repo.sweep_staged(state.gc_grace).await?;
        staged = repo.staged_uploads().await?;
    }
    if staged + req.packs.len() > MAX_STAGED_UPLOADS {
        return Err(ApiError::invalid(format!(
            "{} has {staged} uploads in flight (at most {MAX_STAGED_UPLOADS}): push again once \
             they are done; abandoned ones are removed after {} s",
            repo.name(),
            state.gc_grace.as_secs()
        )));
    }
    // The limits before any marker is written: a refused request changes nothing, and
    // costs nothing.
    let moved = Moved::HandedOut(req.packs.iter().map(|p| p.pack_size + p.idx_size).sum());
    at.budget.ready(moved)?;
    let mut admitted = Vec::new();
    if let Some(quotas) = &state.quotas {
        let asked: Vec<super::quota::Upload> = req
            .packs
            .iter()
            .map(|p| super::quota::Upload {
                name: p.name.clone(),
                bytes: p.pack_size + p.idx_size,
            })
            .collect();
        admitted = quotas.admit(at.workspace, repo, &asked, 0).await?;
    }
    at.budget.charge(moved);
    let handed = presign_uploads(state, repo, &req).await;
    if let (Err(_), Some(quotas)) = (&handed, &state.quotas) {
        // Not handed out after all (a pack stored already, a store failure): not in flight.
        for name in &admitted {
            quotas.dropped(at.workspace, repo, name);
        }
    }
    handed
}

/// The URLs of an `uploads` request whose limits were checked.
async fn presign_uploads(
    state: &AppState,
    repo: &Repository,
    req: &api::UploadsRequest,
) -> Result<Response, ApiError> {
    state.note_staged(repo);
    let expires_at = auth::unix_now() + state.presign_expires_in.as_secs();
    let mut uploads = Vec::with_capacity(req.packs.len());
    let mut notes = Vec::new();
    for spec in &req.packs {
        if spec.thin && !state.thin_packs {
            return Err(ApiError::invalid(format!(
                "{}: this server does not take thin packs",
                spec.name
            )));
        }
        let urls = if spec.thin {
            repo.presign_thin_upload(
                &spec.name,
                spec.pack_size,
                spec.idx_size,
                state.presign_expires_in,
            )
            .await?
        } else {
            repo.presign_upload(&spec.into(), state.presign_expires_in)
                .await?
        };
        let upload: api::Upload = urls.into();
        let parts = upload
            .multipart
            .as_ref()
            .map_or(1, |mp| mp.parts.len() as u64);
        state
            .metrics
            .presigned("upload", "pack", parts + 1, spec.pack_size + spec.idx_size);
        if let Some(mp) = &upload.multipart {
            // The upload id names no secret (using it takes the server's credentials); the
            // log line lets an operator find an upload a crashed client left behind.
            let verb = if spec.upload_id.is_some() {
                "presigned again"
            } else if !mp.stored.is_empty() {
                "resumed"
            } else {
                "started"
            };
            let stored = if mp.stored.is_empty() {
                String::new()
            } else {
                format!(" stored={}", mp.stored.len())
            };
            notes.push(format!(
                "multipart {verb} {} upload={} parts={}{stored}",
                spec.name,
                mp.upload_id,
                mp.parts.len()
            ));
        }
        uploads.push(upload);
    }
    let mut response = Json(api::UploadsResponse {
        uploads,
        expires_at: Some(expires_at),
    })
    .into_response();
    if !notes.is_empty() {
        response.extensions_mut().insert(LogNote(notes.join("; ")));
    }
    Ok(response)
}

fn multipart_done(name: &str, note: String) -> Result<Response, ApiError> {
    let mut response = Json(api::MultipartDone {
        name: name.to_owned(),
    })
    .into_response();
    response.extensions_mut().insert(LogNote(note));
    Ok(response)
}

fn update_response(
    req: &api::UpdateRequest,
    result: repo::UpdateOutcome,
    mut notes: Vec<String>,
) -> Result<Response, ApiError> {
    let mut response = Json(api::UpdateResponse::from(result)).into_response();
    if !req.push_options.is_empty() {
        // Push options go to webhooks in the event; the log line shows them too.
        notes.push(format!("push-options={:?}", req.push_options));
    }
    if !notes.is_empty() {
        response.extensions_mut().insert(LogNote(notes.join("; ")));
    }
    Ok(response)
}

async fn create(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    repo: &Repository,
    body: &Bytes,
) -> Result<Response, ApiError> {
    if matches!(caller, Caller::Plugin { .. }) {
        // Repositories in Hypha are artifacts: the plugin creates them through Hypha.
        return Err(ApiError::not_found(
            "create goes through Hypha, not the plugin's server",
        ));
    }
    match caller.permission_for(workspace) {
        Some(p) if p.can_write() => {}
        _ => return Err(denied(caller, repo)),
    }
    let req: api::CreateRequest = parse_or_default(body)?;
    repo.create(req.public, req.default_branch.as_deref())
        .await
        .map_err(|e| {
            // The status is `From<storage::Error>`'s to decide; only the words are the route's.
            let exists = matches!(e, storage::Error::AlreadyExists { .. });
            let err = ApiError::from(e);
            if exists {
                err.with_detail(format!("repository {} already exists", repo.name()))
            } else {
                err
            }
        })?;
    let config = repo.config().await?;
    info(state, caller, workspace, repo, &config).await
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
}

/// An empty body reads as `{}` for routes whose request has only optional fields.
fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(body)
}

fn shorten(s: &str) -> String {
    crate::storage::shorten(s)
}

/// One LFS prune at a time on this server: each copies every pack of its repository and
/// walks it with git, and any writer may ask for one. Others are told to come back.
static LFS_PRUNE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `lfs-prune`: the repository decides from its own store (`repo::lfs_prune`).
async fn lfs_prune(
    at: &Request<'_>,
    repo: &Repository,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let state = at.state;
    let _: api::LfsPruneRequest = parse_or_default(body)?;
    let Ok(_one) = LFS_PRUNE.try_acquire() else {
        return Err(ApiError::from(crate::storage::Error::Busy {
            key: format!("lfs prune ({})", repo.name()),
        }));
    };
    let done = repo.lfs_prune(state.gc_grace).await.map_err(|e| match e {
        repo::LfsPruneError::Store(e) => ApiError::from(e),
        // What failed goes to the caller too: an operator must find the broken pack.
        walk => ApiError::internal(super::error::error_chain(&walk), &walk),
    })?;
    if let Some(quotas) = &state.quotas {
        quotas.deleted(at.workspace, done.deleted_bytes);
    }
    let note = format!(
        "lfs-prune objects={} reachable={} waiting={} deleted={} bytes={}",
        done.objects,
        done.reachable,
        done.waiting,
        done.deleted.len(),
        done.deleted_bytes
    );
    let mut response = Json(api::LfsPruneResponse {
        objects: done.objects,
        reachable: done.reachable,
        waiting: done.waiting,
        deleted: done.deleted,
        deleted_bytes: done.deleted_bytes,
        grace_secs: done.grace.as_secs(),
        skipped: done.skipped,
    })
    .into_response();
    response.extensions_mut().insert(LogNote(note));
    Ok(response)
}
