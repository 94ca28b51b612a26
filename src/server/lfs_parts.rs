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
use super::lfs_call::{signed_headers, LfsCall, LfsJson, LfsResult};
use super::limits::Moved;
use crate::api::lfs::{
    DeltaComplete, DeltaPlan, DeltaRange, DeltaRequest, PartUrl, PartsComplete, PartsPlan,
    PartsRequest, MAX_DELTA_BASES,
};
use crate::repo::LfsMismatch;
use crate::storage;

/// `POST .../objects/parts/{oid}`.
pub async fn start(call: LfsCall) -> LfsResult<LfsJson<PartsPlan>> {
    let req: PartsRequest = call.json("lfs parts request")?;
    let repo = call.authorized(None).await?;
    let (state, oid) = (&call.state, call.oid.as_str());
    let plan = repo
        .lfs_parts_plan(oid, req.size, state.presign_expires_in)
        .await?;
    // The parts still to send, charged before they are handed out (a refusal leaves the
    // upload as it was: the next start resumes it).
    let to_send = (plan.parts.len() as u64)
        .saturating_mul(plan.part_size)
        .min(req.size);
    call.budget.take(Moved::HandedOut(to_send))?;
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
    Ok(LfsJson(PartsPlan {
        done: plan.done,
        upload_id: plan.upload_id,
        part_size: plan.part_size,
        parts: plan
            .parts
            .into_iter()
            .map(|(number, url)| PartUrl {
                number,
                href: url.url,
                header: signed_headers(url.headers),
            })
            .collect(),
        stored: plan.stored,
        expires_in: state.presign_expires_in.as_secs(),
    }))
}

/// `POST .../objects/parts/{oid}/complete`.
pub async fn complete(call: LfsCall) -> LfsResult<()> {
    let req: PartsComplete = call.json("lfs parts completion")?;
    let repo = call.authorized(None).await?;
    let (state, workspace, oid) = (&call.state, call.workspace.as_str(), call.oid.as_str());
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
    let answer: Result<(), ApiError> = match done {
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
    };
    Ok(answer?)
}

/// `POST .../objects/parts/{oid}/delta`.
pub async fn delta(call: LfsCall) -> LfsResult<LfsJson<DeltaPlan>> {
    use base64::Engine as _;
    let req: DeltaRequest = call.json("lfs delta request")?;
    if req.bases.len() > MAX_DELTA_BASES {
        return Err(ApiError::invalid(format!(
            "invalid lfs delta request: {} bases, at most {MAX_DELTA_BASES}",
            req.bases.len()
        ))
        .into());
    }
    let repo = call.authorized(None).await?;
    let (state, oid) = (&call.state, call.oid.as_str());
    // The body limit (`MAX_JSON_BODY`) bounds the chunk list before it is decoded, and
    // `lfs_chunks::decode` its count and lengths.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.chunks.as_bytes())
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta request: chunks: {e}")))?;
    let (size, chunks) = crate::lfs_chunks::decode(&raw)
        .map_err(|e| ApiError::invalid(format!("invalid lfs delta request: {e}")))?;
    if size != req.size {
        return Err(
            ApiError::invalid("invalid lfs delta request: the chunks are of another size").into(),
        );
    }
    let plan = repo
        .lfs_delta_plan(oid, size, &chunks, &req.bases, state.presign_expires_in)
        .await?;
    // The ranges to send, charged before they are handed out, as the parts of `start` are
    // (the object's quota was taken by the batch that offered this route).
    let sending: u64 = plan.ranges.iter().map(|r| r.1).sum();
    call.budget.take(Moved::HandedOut(sending))?;
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
            call.body.len()
        );
    } else if !plan.done {
        tracing::info!(
            "lfs delta declined {}: no stored base shares enough chunks",
            crate::storage::shorten(oid)
        );
    }
    Ok(LfsJson(DeltaPlan {
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
                header: signed_headers(url.headers),
            })
            .collect(),
        expires_in: state.presign_expires_in.as_secs(),
    }))
}

/// `POST .../objects/parts/{oid}/delta/complete`.
pub async fn delta_complete(call: LfsCall) -> LfsResult<()> {
    let req: DeltaComplete = call.json("lfs delta completion")?;
    let repo = call.authorized(None).await?;
    let (state, workspace, oid) = (&call.state, call.workspace.as_str(), call.oid.as_str());
    let done = repo.lfs_delta_complete(oid, req.size, &req.id).await;
    // Stored: no longer pending. Otherwise nothing was stored, and the agent sends the object
    // whole next, under the same pending entry.
    if let (Some(quotas), Ok(None)) = (&state.quotas, &done) {
        quotas.committed(workspace, &repo, &[(super::lfs::quota_name(oid), 0)], 0);
    }
    let answer: Result<(), ApiError> = match done {
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
    };
    Ok(answer?)
}
