//! The Git LFS routes Hypha serves, served the same way: `POST
//! /{ws}/git/{alias}[.git]/info/lfs/objects/batch` and `.../objects/verify/{oid}` (git-lfs
//! `docs/api/batch.md`; Hypha's `hypha/git/lfs.py`), `basic` transfer only.
//!
//! Owns parsing, permissions and the batch answer. Object bytes never pass through here:
//! downloads and uploads are presigned URLs from the store; where objects live and how
//! `verify` checks them is `repo::Repository`'s (`repo/lfs.rs`). The locks API below the
//! same endpoint is `server::locks`.
//!
//! Access rules, those of the git routes (`routes`): `download` needs read (anonymous on a
//! public repository); `upload` and `verify` need write, and an anonymous caller gets 401 so
//! that git-lfs asks `git credential` and tries again. Inside Hypha these paths are Hypha's
//! own (same keys, same API); the plugin serves ours at a path of its own
//! (`.../remote/v1/lfs`, issue 22), checks the caller with Hypha's permissions, and forwards
//! these routes and the parts routes to its child, which then links `verify` and `parts` on
//! the plugin's address ([`PLUGIN_LFS_BASE_HEADER`]) and stores at Hypha's own keys.
//!
//! Transfers: `basic` for every client, and ours ([`crate::api::lfs::TRANSFER`], `git hypha
//! lfs-agent`) for a client that offers it: picked when offered. With `basic`, objects
//! above one `PUT` (`max_single_put`, S3's 5 GiB) are refused per object with a message that
//! says so (the `basic` transfer has no parts). With ours, an upload above the multipart
//! threshold is an action on the parts routes (`server::lfs_parts`): parallel, resumable,
//! up to S3's 10,000 parts of 5 GiB; below it, and for every download, the action is the
//! same presigned `PUT` or `GET` as `basic`'s (the agent reads large downloads in parallel
//! ranges of it).
//!
//! Only verified objects count: a download is offered, and an upload answered "already
//! there", only for an object whose content the server has hashed to its oid (recorded in a
//! marker, `repo::lfs`); anything else stored under an oid is never served and is
//! offered for upload again. A verify never deletes a right object (a wrong size is a 422
//! that changes nothing). A batch names at most [`MAX_OBJECTS_PER_BATCH`] objects, and an
//! oid named twice is answered once.

use super::credentials::PLUGIN_LFS_BASE_HEADER;
use super::error::ApiError;
use super::lfs_call::{LfsCall, LfsJson, LfsResult};
use super::limits::Moved;
use super::quota;
use super::state::AppState;
use crate::api::lfs::{
    Action, BatchRequest, BatchResponse, ObjectError, ObjectResponse, ObjectSpec, Operation,
    VerifyRequest, DELTA_CHUNKS, DELTA_HEADER, PARTS, TRANSFER, TRANSFER_HEADER,
};
use crate::api::lfs_routes::LfsRoute;
use crate::repo::LfsMismatch;
use crate::repo::Repository;
use crate::storage::{self, Backend as _, PresignedTransfer};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use std::collections::BTreeMap;

/// Most objects one batch may name; git-lfs sends at most 100 (`lfs.transfer.batchSize`).
const MAX_OBJECTS_PER_BATCH: usize = 1000;

/// Largest body of an LFS object route (batch, verify, the parts routes): a batch of
/// 1000 objects (the most one may name) is about 120 KB, the others an oid and a few numbers.
pub const MAX_LFS_BODY: usize = 1024 * 1024;
/// Largest body of a delta request (`.../parts/{oid}/delta`): the new object's chunk list,
/// about 27 bytes of base64 per 64 KiB chunk, which `lfs_chunks` keeps within.
pub const MAX_LFS_DELTA_BODY: usize = super::MAX_JSON_BODY;

/// The largest body `route` takes (the Hypha plugin reads the same numbers, route by route,
/// from `git hypha routes`, and reads no further before it forwards a request).
pub fn body_limit(route: LfsRoute) -> usize {
    match route {
        LfsRoute::Delta => MAX_LFS_DELTA_BODY,
        LfsRoute::Lock | LfsRoute::Locks | LfsRoute::LocksVerify | LfsRoute::Unlock => {
            super::locks::MAX_LOCK_BODY
        }
        LfsRoute::Batch
        | LfsRoute::Verify
        | LfsRoute::Parts
        | LfsRoute::PartsComplete
        | LfsRoute::DeltaComplete => MAX_LFS_BODY,
    }
}

/// `POST /{ws}/git/{alias}/info/lfs/objects/batch`.
pub async fn batch(call: LfsCall) -> LfsResult<LfsJson<BatchResponse>> {
    let req: BatchRequest = call.json("lfs batch request")?;
    let ours = req.transfers.iter().any(|t| t == TRANSFER);
    if !req.transfers.is_empty() && !ours && !req.transfers.iter().any(|t| t == "basic") {
        return Err(ApiError::invalid(format!(
            "only the basic and {TRANSFER} lfs transfers are served"
        ))
        .into());
    }
    if req.hash_algo.as_deref().is_some_and(|h| h != "sha256") {
        return Err(ApiError::invalid("only sha256 lfs objects are served").into());
    }
    if req.objects.len() > MAX_OBJECTS_PER_BATCH {
        return Err(ApiError::invalid(format!(
            "at most {MAX_OBJECTS_PER_BATCH} objects per lfs batch"
        ))
        .into());
    }
    let (state, workspace) = (&call.state, call.workspace.as_str());
    let repo = call.authorized(Some(req.operation)).await?;
    let base = lfs_base(state, &call.uri, &call.headers).await?;
    let authorization = call.headers.get(header::AUTHORIZATION);
    // One answer per oid: naming an object twice (or fifty times) costs one check.
    let mut seen = std::collections::HashSet::new();
    let specs: Vec<ObjectSpec> = req
        .objects
        .into_iter()
        .filter(|spec| seen.insert(spec.oid.clone()))
        .collect();
    let mut objects = Vec::with_capacity(specs.len());
    for spec in specs {
        let answer = match req.operation {
            Operation::Download => download(state, &repo, &spec).await?,
            Operation::Upload => upload(state, &repo, &spec, &base, authorization, ours).await?,
        };
        objects.push(answer);
    }
    // The limits, once the answer is known: nothing was stored yet, and a refusal drops
    // the URLs. Objects going up in parts are charged by the parts route, as it presigns.
    let action = if req.operation == Operation::Download {
        "download"
    } else {
        "upload"
    };
    let handed: Vec<&ObjectResponse> = objects
        .iter()
        .filter(|o| o.actions.contains_key(action))
        .collect();
    let moved = Moved::HandedOut(
        handed
            .iter()
            .filter(|o| !o.actions[action].header.contains_key(TRANSFER_HEADER))
            .map(|o| o.size)
            .sum(),
    );
    call.budget.ready(moved)?;
    if let (Some(quotas), Operation::Upload) = (&state.quotas, req.operation) {
        let uploads: Vec<quota::Upload> = handed
            .iter()
            .map(|o| quota::Upload {
                name: quota_name(&o.oid),
                bytes: o.size,
            })
            .collect();
        quotas.admit(workspace, &repo, &uploads, 0).await?;
    }
    call.budget.charge(moved);
    Ok(LfsJson(BatchResponse {
        transfer: if ours { TRANSFER } else { "basic" }.to_owned(),
        objects,
        hash_algo: "sha256".to_owned(),
    }))
}

async fn download(
    state: &AppState,
    repo: &Repository,
    spec: &ObjectSpec,
) -> Result<ObjectResponse, ApiError> {
    let stored = match repo.lfs_check(&spec.oid).await {
        Ok(stored) => stored,
        Err(storage::Error::Invalid { detail }) => return Ok(object_error(spec, 422, detail)),
        Err(e) => return Err(e.into()),
    };
    // Only content whose SHA-256 is the oid is ever offered: an object stored but not (or
    // not yet) verified is as good as missing. A size that differs means a pointer to other
    // content, as good as missing too.
    let servable = stored
        .as_ref()
        .is_some_and(|s| s.verified && s.size == spec.size);
    if !servable {
        // git-lfs prints this next to the file's name ("Object does not exist on the
        // server").
        return Ok(object_error(
            spec,
            404,
            format!(
                "object {} ({} bytes) does not exist in {}",
                spec.oid,
                spec.size,
                repo.name()
            ),
        ));
    }
    let url = repo
        .presign_lfs_download(&spec.oid, state.presign_expires_in)
        .await?;
    state.metrics.lfs("download", spec.size);
    state.metrics.presigned("download", "lfs", 1, spec.size);
    Ok(with_action(spec, "download", action(url, state)))
}

async fn upload(
    state: &AppState,
    repo: &Repository,
    spec: &ObjectSpec,
    base: &str,
    authorization: Option<&HeaderValue>,
    ours: bool,
) -> Result<ObjectResponse, ApiError> {
    let in_parts = ours && repo.uses_multipart(spec.size);
    if spec.size > state.max_single_put && !in_parts {
        return Ok(object_error(
            spec,
            422,
            format!(
                "object {} is {} bytes; the largest lfs object the basic transfer takes is {} \
                 bytes (one PUT); larger ones go up in parts with git hypha's own transfer, \
                 which git-remote-hypha sets up in the repository on its next fetch or push",
                spec.oid, spec.size, state.max_single_put
            ),
        ));
    }
    let stored = match repo.lfs_check(&spec.oid).await {
        Ok(stored) => stored,
        Err(storage::Error::Invalid { detail }) => return Ok(object_error(spec, 422, detail)),
        Err(e) => return Err(e.into()),
    };
    // Not stored, or stored with content that is not (or not yet known to be) the oid's:
    // upload, so that the real object replaces whatever is there.
    let verified = stored.filter(|s| s.verified).map(|s| s.size);
    if let Some(size) = verified.filter(|&size| size != spec.size) {
        // The content under this oid is known and right: a request for other bytes would
        // only replace it with something its verify then refuses.
        return Ok(object_error(
            spec,
            422,
            format!(
                "object {} is stored in {} with {size} bytes (its sha256 checks out), not {}",
                spec.oid,
                repo.name(),
                spec.size
            ),
        ));
    }
    if verified.is_some() {
        // Already there and verified: no actions, as the spec says.
        return Ok(ObjectResponse {
            oid: spec.oid.clone(),
            size: spec.size,
            authenticated: Some(true),
            actions: BTreeMap::new(),
            error: None,
        });
    }
    // git-lfs sends the verify request with these headers, and the agent its parts requests
    // (as Hypha's verify action does, they carry the caller's own authorization back to the
    // caller, nowhere else).
    let mut header = BTreeMap::new();
    if let Some(value) = authorization.and_then(|v| v.to_str().ok()) {
        header.insert("Authorization".to_owned(), value.to_owned());
    }
    let upload = if in_parts {
        // The parts route counts the presigned URLs it hands out.
        let mut parts = header.clone();
        parts.insert(TRANSFER_HEADER.to_owned(), PARTS.to_owned());
        // Only the changed chunks: the delta routes sit beside the parts routes (issue 22
        // part 4); an agent that knows no bases, or a plan that finds none, uses parts.
        parts.insert(DELTA_HEADER.to_owned(), DELTA_CHUNKS.to_owned());
        Action {
            href: format!("{base}parts/{}", spec.oid),
            header: parts,
            expires_in: state.presign_expires_in.as_secs(),
        }
    } else {
        let url = repo
            .presign_lfs_upload(&spec.oid, spec.size, state.presign_expires_in)
            .await?;
        state.metrics.lfs("upload", spec.size);
        state.metrics.presigned("upload", "lfs", 1, spec.size);
        action(url, state)
    };
    let mut answer = with_action(spec, "upload", upload);
    answer.actions.insert(
        "verify".to_owned(),
        Action {
            href: format!("{base}verify/{}", spec.oid),
            header,
            expires_in: state.presign_expires_in.as_secs(),
        },
    );
    Ok(answer)
}

/// `POST /{ws}/git/{alias}/info/lfs/objects/verify/{oid}`.
pub async fn verify(call: LfsCall) -> LfsResult<()> {
    let req: VerifyRequest = call.json("lfs verify request")?;
    let (state, workspace, oid) = (&call.state, call.workspace.as_str(), call.oid.as_str());
    if req.oid != oid {
        return Err(ApiError::invalid(format!(
            "lfs verify names {} in its path and {} in its body",
            crate::storage::shorten(oid),
            crate::storage::shorten(&req.oid)
        ))
        .into());
    }
    // Write, not read as in Hypha: a verify that finds garbage deletes it.
    let repo = call.authorized(None).await?;
    let verified = repo.verify_lfs(oid, req.size).await;
    if let Some(quotas) = &state.quotas {
        match &verified {
            Ok(None) => quotas.committed(workspace, &repo, &[(quota_name(oid), 0)], 0),
            Ok(Some(LfsMismatch::Hash)) => quotas.dropped(workspace, &repo, &quota_name(oid)),
            _ => {}
        }
    }
    let answer: Result<(), ApiError> = match verified {
        Ok(None) => {
            state.metrics.lfs("verify", req.size);
            Ok(())
        }
        Ok(Some(LfsMismatch::Size { stored })) => Err(ApiError::invalid(format!(
            "lfs object {oid} is stored with {stored} bytes and its content checks out; \
             this verify says {} bytes. Nothing was changed: check the pointer's size",
            req.size
        ))),
        Ok(Some(LfsMismatch::Hash)) => Err(ApiError::invalid(format!(
            "lfs object {oid}: the uploaded content has another sha256; it was deleted, upload it again"
        ))),
        Err(storage::Error::Conflict { .. }) => Err(ApiError::new(
            crate::api::ErrorCode::Stale,
            format!("lfs object {oid} changed while it was being verified (another upload?): verify again"),
        )),
        Err(e) => Err(e.into()),
    };
    Ok(answer?)
}

/// An LFS object's name in the quota ledger, beside pack names.
pub(super) fn quota_name(oid: &str) -> String {
    format!("lfs:{oid}")
}

/// `…/objects/` of the batch path the client used (where `verify/` and `parts/` are), on the server's public URL
/// (`--public-url`, else the listen address): never on the request's `Host`, which the
/// caller controls and the verify action carries the caller's `Authorization` to. The local
/// store's presigned URLs are made on that same public URL, so its base is read from one.
/// With S3, `--public-url` gives it; without one (the plugin inside Hypha, whose public
/// address only Hypha's proxy knows), and only then, the request's `Host` is used.
///
/// In plugin mode no client reaches this server: the plugin serves the endpoint at a path of
/// its own on Hypha's address and says where ([`plugin_lfs_base`]).
async fn lfs_base(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<String, ApiError> {
    if state.plugin_key.is_some() {
        return plugin_lfs_base(headers);
    }
    let path = uri.path();
    let dir = path.strip_suffix("batch").unwrap_or(path);
    if let Some(base) = &state.public_url {
        return Ok(format!("{base}{dir}"));
    }
    if let Some(disk) = &state.local {
        let probe = disk
            .presign(
                "lfs-verify-base",
                storage::PresignMethod::Get,
                std::time::Duration::from_secs(1),
                None,
            )
            .await?;
        if let Some((base, _)) = probe.url.split_once("/_store/") {
            return Ok(format!("{base}{dir}"));
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    Ok(format!("{scheme}://{host}{dir}"))
}

/// The plugin's [`PLUGIN_LFS_BASE_HEADER`] (the plugin's key was checked before this is
/// read): an absolute `http(s)` URL without query or fragment, ending in `/objects/`.
fn plugin_lfs_base(headers: &HeaderMap) -> Result<String, ApiError> {
    let refused = |why: &str| {
        ApiError::invalid(format!(
            "plugin request has no usable {PLUGIN_LFS_BASE_HEADER}: {why}"
        ))
    };
    let text = headers
        .get(PLUGIN_LFS_BASE_HEADER)
        .ok_or_else(|| refused("missing"))?
        .to_str()
        .map_err(|_| refused("not text"))?;
    let url = url::Url::parse(text).map_err(|_| refused("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.path().ends_with("/objects/")
    {
        return Err(refused("not an http(s) URL ending in /objects/"));
    }
    Ok(url.into())
}

/// The presigned transfer as an LFS action: its signed headers, minus those git-lfs sets
/// itself from the body.
fn action(url: PresignedTransfer, state: &AppState) -> Action {
    let header = url
        .headers
        .into_iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host")
        })
        .collect();
    Action {
        href: url.url,
        header,
        expires_in: state.presign_expires_in.as_secs(),
    }
}

fn with_action(spec: &ObjectSpec, name: &str, action: Action) -> ObjectResponse {
    ObjectResponse {
        oid: spec.oid.clone(),
        size: spec.size,
        authenticated: Some(true),
        actions: BTreeMap::from([(name.to_owned(), action)]),
        error: None,
    }
}

fn object_error(spec: &ObjectSpec, code: u16, message: String) -> ObjectResponse {
    ObjectResponse {
        oid: spec.oid.clone(),
        size: spec.size,
        authenticated: None,
        actions: BTreeMap::new(),
        error: Some(ObjectError { code, message }),
    }
}
