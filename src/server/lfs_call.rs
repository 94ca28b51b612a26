//! The shape the routes of our LFS endpoint share (`server::lfs`, `server::lfs_parts`), so
//! that each route reads as its rule only: it takes an [`LfsCall`] (what its path names, the
//! request's headers, the caller's byte budget and the body), parses the body with
//! [`LfsCall::json`], checks its own fields, asks for the repository with the access the
//! route table gives its route ([`LfsCall::authorized`]) and returns an [`LfsResult`]: 200 with
//! git-lfs's JSON ([`LfsJson`]) or an empty body, or the error as git-lfs reads it
//! (`{"message": ...}` with the error's status, [`ApiError::into_lfs_response`]).
//!
//! Owns no rule: the order of checks stays each route's (a body that does not parse is
//! refused before the caller is identified, on every route). The locks API (`server::locks`)
//! answers in the same media type but reads its bodies with a bound of its own.

use super::error::ApiError;
use super::limits::ByteBudget;
use super::routes::{authorize, caller_and_repo};
use super::state::AppState;
use crate::api::lfs::Operation;
use crate::api::lfs_routes::LfsRoute;
use crate::repo::Repository;
use crate::storage;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the server answers a repository's LFS routes: [`LfsRoute::path`] goes below.
pub(super) const LFS_ENDPOINT: &str = "/{ws}/git/{alias}/info/lfs";

/// One request to an LFS route: `/{ws}/git/{alias}/info/lfs/objects/...[/{oid}]...`.
pub(super) struct LfsCall {
    pub state: AppState,
    /// Which route of the table the router matched: what it asks of the caller, its bound.
    pub route: LfsRoute,
    pub workspace: String,
    /// As the path has it (`repo.git` or `repo`).
    pub alias: String,
    /// The object the path names; empty on the batch route, whose path names none.
    pub oid: String,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The caller's byte budget (none set: unlimited).
    pub budget: ByteBudget,
    pub body: Bytes,
}

impl FromRequest<AppState> for LfsCall {
    /// Axum's own answers, as the separate extractors gave them before.
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<LfsCall, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(params) = Path::<Vec<String>>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (workspace, alias, oid) = match <[String; 2]>::try_from(params) {
            Ok([workspace, alias]) => (workspace, alias, String::new()),
            Err(params) => match <[String; 3]>::try_from(params) {
                Ok([workspace, alias, oid]) => (workspace, alias, oid),
                // The router's paths have two or three parameters: a route added with
                // another shape is a server bug, answered as axum answers one.
                Err(_) => return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
            },
        };
        // The router tells each LFS route which of the table's it is (`server::router`): a
        // route registered without is a server bug.
        let route = parts
            .extensions
            .get::<LfsRoute>()
            .copied()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let uri = parts.uri.clone();
        let headers = parts.headers.clone();
        let budget = parts
            .extensions
            .get::<ByteBudget>()
            .cloned()
            .unwrap_or_default();
        // The body last, read no further than the route's bound.
        let limit = super::lfs::body_limit(route);
        let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
            let why = format!("its body is larger than {limit} bytes (or was cut off)");
            LfsError(ApiError::invalid(format!("lfs request refused: {why}"))).into_response()
        })?;
        Ok(LfsCall {
            state: state.clone(),
            route,
            workspace,
            alias,
            oid,
            uri,
            headers,
            budget,
            body,
        })
    }
}

impl LfsCall {
    /// The body as `T`; a body that is not one is 422 `invalid {what}: {why}`.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::invalid(format!("invalid {what}: {e}")))
    }

    /// The repository the path names (its name checked), once the caller has what the route
    /// asks ([`LfsRoute::access`]; the batch's by its `operation`) and it exists.
    pub async fn authorized(&self, operation: Option<Operation>) -> Result<Repository, ApiError> {
        let (caller, _, repo) =
            caller_and_repo(&self.state, &self.workspace, &self.alias, &self.headers)?;
        let access = self.route.access().of(operation);
        authorize(&caller, &self.workspace, &repo, access).await?;
        Ok(repo)
    }
}

/// An LFS route's answer: `T` with 200, or the error in git-lfs's shape.
pub(super) type LfsResult<T> = Result<T, LfsError>;

/// 200 with `T` as git-lfs JSON (`application/vnd.git-lfs+json`).
pub(super) struct LfsJson<T>(pub T);

impl<T: Serialize> IntoResponse for LfsJson<T> {
    fn into_response(self) -> Response {
        lfs_json(StatusCode::OK, &self.0)
    }
}

/// An [`ApiError`] answered to git-lfs: `{"message": ...}`, its status and headers.
pub(super) struct LfsError(ApiError);

impl From<ApiError> for LfsError {
    fn from(err: ApiError) -> LfsError {
        LfsError(err)
    }
}

impl From<storage::Error> for LfsError {
    fn from(err: storage::Error) -> LfsError {
        LfsError(err.into())
    }
}

impl IntoResponse for LfsError {
    fn into_response(self) -> Response {
        self.0.into_lfs_response()
    }
}

/// `body` as git-lfs JSON with `status`.
pub(super) fn lfs_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::api::lfs::MEDIA_TYPE),
            )],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A presigned URL's signed headers as an action carries them: without `Host`, which the
/// client sets from the URL.
pub(super) fn signed_headers(
    headers: impl IntoIterator<Item = (String, String)>,
) -> std::collections::BTreeMap<String, String> {
    headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .collect()
}
