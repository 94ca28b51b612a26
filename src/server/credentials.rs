//! Who is calling: the `Authorization` header turned into a verified [`Identity`] or
//! anonymous (DESIGN §4, "Auth header").
//!
//! Accepts `Bearer <jwt>` and `Basic base64(git:<jwt>)` (user `git` or empty, as Hypha's
//! smart HTTP does). Does not decide what the caller may do: `routes::authorize` does.

use super::error::ApiError;
use super::state::AppState;
use crate::auth::{self, Identity, Permission};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Identity),
}

impl Caller {
    pub fn permission_for(&self, workspace: &str) -> Option<Permission> {
        match self {
            Caller::Anonymous => None,
            Caller::User(identity) => identity.permission_for(workspace),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }
}

/// Read and verify the credentials of a request. No header, or Basic with an empty
/// password, is anonymous; anything present but wrong is 401.
pub fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("malformed authorization header"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthenticated("malformed basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::unauthenticated("malformed basic credentials"))?;
        if !(user.is_empty() || user == "git") {
            return Err(ApiError::unauthenticated(
                "basic credentials need the user name `git` and the token as password",
            ));
        }
        if password.is_empty() {
            return Ok(Caller::Anonymous);
        }
        password.to_owned()
    } else {
        return Err(ApiError::unauthenticated(
            "unsupported authorization scheme (use Bearer or Basic)",
        ));
    };
    if token.is_empty() {
        return Err(ApiError::unauthenticated("empty token"));
    }
    let identity = auth::verify_with(
        &state.jwt_secret,
        &token,
        auth::unix_now(),
        &state.validation,
    )?;
    Ok(Caller::User(identity))
}
