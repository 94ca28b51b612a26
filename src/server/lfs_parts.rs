//! The parts routes of our LFS transfer (`api::lfs::TRANSFER`, issue 22): `POST
//! /{ws}/git/{alias}/info/lfs/objects/parts/{oid}` starts or resumes the upload of one large
//! object in presigned parts, and `.../parts/{oid}/complete` assembles and checks it. Only
//! `git hypha lfs-agent` calls them, with the href and the caller's own `Authorization` the
//! batch answer gave it; both need write access, like the batch upload that led there.
//!
//! `.../parts/{oid}/delta` and `.../delta/complete` take a new version of an object as the
//! byte ranges its stored bases lack (issue 22 part 4, `repo::lfs_delta`).
//!
//! Owns parsing and the answers; where parts live and how an upload resumes is
//! `repo::lfs_parts`'s, how a delta is planned and assembled `repo::lfs_delta`'s.

use super::error::ApiError;
use super::lfs::lfs_json;
use super::limits::{ByteBudget, Moved};
use super::routes::{authorize_write, caller_and_repo};
use super::state::AppState;
use crate::api::lfs::{
    DeltaComplete, DeltaPlan, DeltaRange, DeltaRequest, PartUrl, PartsComplete, PartsPlan,
    PartsRequest, MAX_DELTA_BASES,
};
use crate::repo::LfsMismatch;
use crate::storage;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

/// `POST .../objects/parts/{oid}`.
pub async fn start(
    State(state): State<AppState>,
    Path((workspace, alias, oid)): Path<(String, String, String)>,
    headers: HeaderMap,
    budget: Option<Extension<ByteBudget>>,
    body: Bytes,
) -> Response {
    let budget = budget.map(|Extension(b)| b).unwrap_or_default();
    match start_inner(&state, &workspace, &alias, &oid, &headers, &budget, &body).await {
        Ok(plan) => lfs_json(StatusCode::OK, &plan),
        Err(err) => err.into_lfs_response(),
    }
}

/// `POST .../objects/parts/{oid}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    Path((workspace, alias, oid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match complete_inner(&state, &workspace, &alias, &oid, &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => err.into_lfs_response(),
    }
}

async fn start_inner(
    state: &AppState,
    workspace: &str,
    alias: &str,
    oid: &str,
    headers: &HeaderMap,
    budget: &ByteBudget,
    body: &Bytes,
) -> Result<PartsPlan, ApiError> {
    let req: PartsRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid lfs parts request: {e}")))?;
    let (caller, _, repo) = caller_and_repo(state, workspace, alias, headers)?;
    authorize_write(&caller, workspace, &repo).await?;
    let plan = repo
        .lfs_parts_plan(oid, req.size, state.presign_expires_in)
        .await?;
    // The parts still to send, charged before they are handed out (a refusal leaves the
    // upload as it was: the next start resumes it).
    let to_send = (plan.parts.len() as u64)
        .saturating_mul(plan.part_size)
        .min(req.size);
    budget.take(Moved::HandedOut(to_send))?;
    if !plan.done {
        let sending: u64 = plan.parts.len() as u64;
        state.metrics.lfs("upload", req.size);
        state.metrics.presigned("upload", "lfs", sending, req.size);
        if let Some(id) = &plan.upload_id {
            tracing::info!(
                "lfs multipart {} {} upload={id} parts={} stored={}",
                if plan.stored.is_empty() {
                    "started"
                } else {
                    "resumed"
                },
                crate::storage::shorten(oid),
                plan.parts.len(),
                plan.stored.len()
            );
        }
    }
    Ok(PartsPlan {
        done: plan.done,
        upload_id: plan.upload_id,
        part_size: plan.part_size,
        parts: plan
            .parts
            .into_iter()
            .map(|(number, url)| PartUrl {
                number,
                href: url.url,
                header: url
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
                    .collect(),
            })
            .collect(),
        stored: plan.stored,
        expires_in: state.presign_expires_in.as_secs(),
    })
}

async fn complete_inner(
    state: &AppState,
    workspace: &str,
    alias: &str,
    oid: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), ApiError> {
    let req: PartsComplete = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid lfs parts completion: {e}")))?;
    let (caller, _, repo) = caller_and_repo(state, workspace, alias, headers)?;
    authorize_write(&caller, workspace, &repo).await?;
    let done = repo
        .lfs_complete_parts(oid, req.size, req.upload_id.as_deref(), req.part_size)
        .await;
    if let Some(quotas) = &state.quotas {
        let name = super::lfs::quota_name(oid);
        match &done {
            Ok(None) => quotas.committed(workspace, &repo, &[(name, 0)], 0),
            Ok(Some(LfsMismatch::Hash)) => quotas.dropped(workspace, &repo, &name),
            _ => {}
        }
    }
    match done {
        Ok(None) => {
            state.metrics.lfs("verify", req.size);
            Ok(())
        }
        Ok(Some(LfsMismatch::Size { stored })) => Err(ApiError::invalid(format!(
            "lfs object {oid} is stored with {stored} bytes and its content checks out, not {}",
            req.size
        ))),
        Ok(Some(LfsMismatch::Hash)) => Err(ApiError::invalid(format!(
            "lfs object {oid}: the uploaded parts make content with another sha256; it was \
             deleted, upload it again"
        ))),
        Err(storage::Error::NotFound { .. }) => Err(ApiError::invalid(format!(
            "lfs object {oid}: nothing was uploaded (no such upload, no object)"
        ))),
        Err(storage::Error::Conflict { .. }) => Err(ApiError::new(
            crate::api::ErrorCode::Stale,
            format!("lfs object {oid} changed while it was being checked: complete again"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST .../objects/parts/{oid}/delta`.
pub async fn delta(
    State(state): State<AppState>,
    Path((workspace, alias, oid)): Path<(String, String, String)>,
    headers: HeaderMap,
    budget: Option<Extension<ByteBudget>>,
    body: Bytes,
) -> Response {
    let budget = budget.map(|Extension(b)| b).unwrap_or_default();
    match delta_inner(&state, &workspace, &alias, &oid, &headers, &budget, &body).await {
        Ok(plan) => lfs_json(StatusCode::OK, &plan),
        Err(err) => err.into_lfs_response(),
    }
}

/// `POST .../objects/parts/{oid}/delta/complete`.
pub async fn delta_complete(
    State(state): State<AppState>,
    Path((workspace, alias, oid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match delta_complete_inner(&state, &workspace, &alias, &oid, &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => err.into_lfs_response(),
    }
}

async fn delta_inner(
    state: &AppState,
    workspace: &str,
    alias: &str,
    oid: &str,
    headers: &HeaderMap,
    budget: &ByteBudget,
    body: &Bytes,
) -> Result<DeltaPlan, ApiError> {
    use base64::Engine as _;
    let req: DeltaRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta request: {e}")))?;
    if req.bases.len() > MAX_DELTA_BASES {
        return Err(ApiError::invalid(format!(
            "invalid lfs delta request: {} bases, at most {MAX_DELTA_BASES}",
            req.bases.len()
        )));
    }
    let (caller, _, repo) = caller_and_repo(state, workspace, alias, headers)?;
    authorize_write(&caller, workspace, &repo).await?;
    // The body limit (`MAX_JSON_BODY`) bounds the chunk list before it is decoded, and
    // `lfs_chunks::decode` its count and lengths.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.chunks.as_bytes())
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta request: chunks: {e}")))?;
    let (size, chunks) = crate::lfs_chunks::decode(&raw)
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta request: {e}")))?;
    if size != req.size {
        return Err(ApiError::invalid(
            "invalid lfs delta request: the chunks are of another size",
        ));
    }
    let plan = repo
        .lfs_delta_plan(oid, size, &chunks, &req.bases, state.presign_expires_in)
        .await?;
    // The ranges to send, charged before they are handed out, as the parts of `start` are
    // (the object's quota was taken by the batch that offered this route).
    let sending: u64 = plan.ranges.iter().map(|r| r.1).sum();
    budget.take(Moved::HandedOut(sending))?;
    if let Some(id) = &plan.id {
        // Stored until its `complete`: the timer sweeps it if that never comes.
        state.note_staged(&repo);
        state.metrics.lfs("upload", size);
        state
            .metrics
            .presigned("upload", "lfs", plan.ranges.len() as u64, sending);
        tracing::info!(
            "lfs delta planned {} plan={id} reused={} sending={sending} ranges={} request={}",
            crate::storage::shorten(oid),
            plan.reused,
            plan.ranges.len(),
            body.len()
        );
    } else if !plan.done {
        tracing::info!(
            "lfs delta declined {}: no stored base shares enough chunks",
            crate::storage::shorten(oid)
        );
    }
    Ok(DeltaPlan {
        done: plan.done,
        id: plan.id,
        reused: plan.reused,
        ranges: plan
            .ranges
            .into_iter()
            .map(|(offset, len, url)| DeltaRange {
                offset,
                len,
                href: url.url,
                header: url
                    .headers
                    .into_iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
                    .collect(),
            })
            .collect(),
        expires_in: state.presign_expires_in.as_secs(),
    })
}

async fn delta_complete_inner(
    state: &AppState,
    workspace: &str,
    alias: &str,
    oid: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), ApiError> {
    let req: DeltaComplete = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta completion: {e}")))?;
    let (caller, _, repo) = caller_and_repo(state, workspace, alias, headers)?;
    authorize_write(&caller, workspace, &repo).await?;
    let done = repo.lfs_delta_complete(oid, req.size, &req.id).await;
    // Stored: no longer pending. Otherwise nothing was stored, and the agent sends the object
    // whole next, under the same pending entry.
    if let (Some(quotas), Ok(None)) = (&state.quotas, &done) {
        quotas.committed(workspace, &repo, &[(super::lfs::quota_name(oid), 0)], 0);
    }
    match done {
        Ok(None) => {
            tracing::info!("lfs delta composed {}", crate::storage::shorten(oid));
            state.metrics.lfs("verify", req.size);
            Ok(())
        }
        Ok(Some(_)) => {
            tracing::warn!(
                "warning: lfs delta of {} made other content; nothing was stored",
                crate::storage::shorten(oid)
            );
            Err(ApiError::invalid(format!(
                "lfs object {oid}: the delta made content with another sha256 (a base changed \
                 or its index is wrong); nothing was stored, upload the object whole"
            )))
        }
        Err(storage::Error::NotFound { .. }) => Err(ApiError::invalid(format!(
            "lfs object {oid}: no such delta plan {} (expired or completed)",
            crate::storage::shorten(&req.id)
        ))),
        Err(e) => {
            tracing::warn!(
                "warning: lfs delta of {} failed: {e}",
                crate::storage::shorten(oid)
            );
            Err(e.into())
        }
    }
}
