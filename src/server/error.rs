//! [`ApiError`]: every non-2xx answer of the server, and the one place where storage,
//! token and signature failures become HTTP statuses (docs/design.md §4, "Errors").
//!
//! Owns the mapping and the response shape ([`api::ErrorBody`]); does not decide *whether*
//! a request fails. Details name the repository, ref or key that failed and never carry a
//! token, a secret or a presigned query string. Causes of internal failures go to the log
//! line (through [`LogNote`]), not to the client.

use super::log::{LogNote, Refused};
use crate::api::{ErrorBody, ErrorCode};
use crate::{auth, storage};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: code, human detail, and an optional cause for the server log only.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    log: Option<String>,
    /// A rate limit refused the request (`limits`): 429 instead of 503, this `Retry-After`
    /// in seconds, and this `reason` in the refusal metrics.
    limited: Option<(u64, &'static str)>,
    /// The refusal metrics' reason when it is finer than the code (a quota's name).
    reason: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            log: None,
            limited: None,
            reason: None,
        }
    }

    /// 413 with code `quota`: a workspace quota (`quota`) would be exceeded. `reason`
    /// names which one in the refusal metrics.
    pub fn quota(detail: impl Into<String>, reason: &'static str) -> ApiError {
        let mut api = ApiError::new(ErrorCode::Quota, detail);
        api.log = Some(reason.to_owned());
        api.reason = Some(reason);
        api
    }

    /// 429 with `Retry-After: retry_after` (seconds): a rate limit was reached. The body's
    /// code is `busy`, which every helper already waits out and retries (and one that does
    /// not know 429 reads the same); `reason` labels the refusal in the metrics.
    pub fn rate_limited(
        detail: impl Into<String>,
        retry_after: u64,
        reason: &'static str,
    ) -> ApiError {
        let mut api = ApiError::new(ErrorCode::Busy, detail);
        api.log = Some(format!("{reason}, retry after {retry_after} s"));
        api.limited = Some((retry_after.max(1), reason));
        api
    }

    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Invalid, detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthenticated, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, detail)
    }

    /// A 500 saying what failed; `cause` (with its causes) goes to the log line only.
    pub fn internal(detail: impl Into<String>, cause: &dyn std::error::Error) -> ApiError {
        let mut api = ApiError::new(ErrorCode::Internal, detail);
        api.log = Some(error_chain(cause));
        api
    }

    /// The same answer in other words: for a route that knows better what failed than the
    /// error does (the status stays the one `From` chose).
    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = detail.into();
        self
    }
}

impl From<storage::Error> for ApiError {
    fn from(err: storage::Error) -> ApiError {
        use storage::Error as E;
        let code = match &err {
            E::NotFound { .. } => ErrorCode::NotFound,
            E::AlreadyExists { .. } => ErrorCode::Exists,
            E::Conflict { .. } => ErrorCode::Stale,
            E::InvalidKey { .. }
            | E::InvalidRange { .. }
            | E::SizeMismatch { .. }
            | E::Invalid { .. } => ErrorCode::Invalid,
            E::Busy { .. } => ErrorCode::Busy,
            E::Backend { .. } => ErrorCode::Internal,
        };
        let mut api = ApiError::new(code, err.to_string());
        if code == ErrorCode::Internal {
            api.log = Some(error_chain(&err));
        }
        api
    }
}

impl From<auth::Error> for ApiError {
    fn from(err: auth::Error) -> ApiError {
        // auth::Error never contains the token, so its text is safe to return.
        ApiError::unauthenticated(format!("invalid token: {err}"))
    }
}

impl From<storage::presign::Error> for ApiError {
    fn from(err: storage::presign::Error) -> ApiError {
        ApiError::forbidden(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.limited {
            Some(_) => StatusCode::TOO_MANY_REQUESTS,
            None => StatusCode::from_u16(self.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        let body = ErrorBody {
            error: self.code,
            detail: self.detail,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.code {
            ErrorCode::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"hypha\""),
                );
            }
            ErrorCode::Busy => {
                let secs = self.limited.map_or(1, |(secs, _)| secs);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        if let Some(log) = self.log {
            response.extensions_mut().insert(LogNote(log));
        }
        let reason = match (self.limited, self.reason) {
            (Some((_, reason)), _) | (None, Some(reason)) => Some(reason),
            (None, None) => super::metrics::refusal_reason(self.code),
        };
        if let Some(reason) = reason {
            response.extensions_mut().insert(Refused(reason));
        }
        response
    }
}

impl ApiError {
    /// The same error for a git-lfs client: the same status and headers, and the body git-lfs
    /// prints (`{"message": ...}`, `application/vnd.git-lfs+json`). A 401 also carries
    /// `LFS-Authenticate`, on which git-lfs asks `git credential` and tries again.
    pub fn into_lfs_response(mut self) -> Response {
        let body = crate::api::lfs::ErrorBody {
            message: std::mem::take(&mut self.detail),
        };
        // A struct of one string always serializes.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = self.into_response();
        *response.body_mut() = axum::body::Body::from(body);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::api::lfs::MEDIA_TYPE),
        );
        headers.remove(header::CONTENT_LENGTH);
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "lfs-authenticate",
                HeaderValue::from_static("Basic realm=\"hypha\""),
            );
        }
        response
    }
}

/// `error: cause: cause` for the log.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
