//! Who is calling: the `Authorization` header turned into a verified [`Identity`] or
//! anonymous (docs/design.md §4, "Auth header").
//!
//! Accepts `Bearer <jwt>` and `Basic base64(git:<jwt>)` (user `git` or empty, as Hypha's
//! smart HTTP does). Does not decide what the caller may do: `routes::authorize` does.
//!
//! In plugin mode (`git hypha serve --plugin`, run by the Hypha plugin as its child) tokens
//! are not looked at: Hypha checked them. A request must carry the child's key in
//! [`PLUGIN_KEY_HEADER`], and says what Hypha granted ([`PLUGIN_PERMISSION_HEADER`]) and where
//! the repository lives ([`PLUGIN_PREFIX_HEADER`]); anything else is 401.

use super::error::ApiError;
use super::state::AppState;
use crate::auth::{self, Identity, Permission};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// The plugin child's shared key (random per child, given through its environment).
pub const PLUGIN_KEY_HEADER: &str = "x-hypha-plugin-key";
/// What Hypha granted on the repository: `read`, `write` or `admin` (managing hooks).
pub const PLUGIN_PERMISSION_HEADER: &str = "x-hypha-permission";
/// The repository's key prefix in the bucket, `{s3 prefix}/{artifact uuid}/.git/`.
pub const PLUGIN_PREFIX_HEADER: &str = "x-hypha-repo-prefix";
/// Hypha's id of the user: the `pusher` of webhook events, a lock's owner. The plugin sends
/// none for Hypha's anonymous user: such a request is an anonymous caller's, with what Hypha
/// grants everyone (`read` on a public artifact, even `commit` under `"*": "rw"`), and gets
/// 401 where a name is needed (the lock routes); its pushes name the pusher `anonymous`.
pub const PLUGIN_USER_HEADER: &str = "x-hypha-user";
/// Where the plugin serves this repository's LFS endpoint on Hypha's public address, up to
/// `objects/` (`https://host/{ws}/git/{alias}/remote/v1/lfs/objects/`): the batch answer's
/// `verify` and `parts` links go there, never to this child's loopback address.
pub const PLUGIN_LFS_BASE_HEADER: &str = "x-hypha-lfs-base";

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Identity),
    /// The Hypha plugin, forwarding a request Hypha already checked: `permission` is what
    /// Hypha granted, `prefix` where Hypha keeps the repository, `user` who asks (`None`:
    /// Hypha's anonymous user).
    Plugin {
        permission: Permission,
        prefix: String,
        user: Option<String>,
    },
}

impl Caller {
    pub fn permission_for(&self, workspace: &str) -> Option<Permission> {
        match self {
            Caller::Anonymous => None,
            Caller::User(identity) => identity.permission_for(workspace),
            Caller::Plugin { permission, .. } => Some(*permission),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous | Caller::Plugin { user: None, .. })
    }

    /// Who this is, for the `pusher` of a webhook event.
    pub fn subject(&self) -> &str {
        match self {
            Caller::Anonymous | Caller::Plugin { user: None, .. } => "anonymous",
            Caller::User(identity) => &identity.subject,
            Caller::Plugin {
                user: Some(user), ..
            } => user,
        }
    }
}

/// Read and verify the credentials of a request. No header, or Basic with an empty
/// password, is anonymous; anything present but wrong is 401.
pub fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(key) = &state.plugin_key {
        return identify_plugin(key, headers);
    }
    let Some(token) = token_of(headers)? else {
        return Ok(Caller::Anonymous);
    };
    let identity = verify(state, &token)?;
    Ok(Caller::User(identity))
}

/// Whom the token limit counts a request against (`limits`): the subject of a token that
/// verifies, or the whole token when it names none; in plugin mode the user Hypha names.
/// `None` for anonymous callers and for credentials that do not verify (the handler answers
/// those 401): the address limit counts them. Never logged.
pub fn rate_subject(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(key) = &state.plugin_key {
        return match identify_plugin(key, headers).ok()? {
            Caller::Plugin {
                user: Some(user), ..
            } => Some(format!("user:{user}")),
            _ => None,
        };
    }
    let token = token_of(headers).ok()??;
    let identity = verify(state, &token).ok()?;
    Some(if identity.subject.is_empty() {
        format!("token:{token}")
    } else {
        format!("sub:{}", identity.subject)
    })
}

fn verify(state: &AppState, token: &str) -> Result<Identity, ApiError> {
    Ok(auth::verify_with(
        &state.jwt_secret,
        token,
        auth::unix_now(),
        &state.validation,
    )?)
}

/// The token a request carries (`Bearer`, or the password of `Basic`); `None` when it carries
/// none (no header, or Basic with an empty password).
fn token_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
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
            return Ok(None);
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
    Ok(Some(token))
}

/// The request carries the plugin's key (compared in constant time): 401 otherwise.
pub(super) fn check_plugin_key(key: &[u8], headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(PLUGIN_KEY_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(key)) {
        return Err(ApiError::unauthenticated("missing or wrong plugin key"));
    }
    Ok(())
}

/// Plugin mode: the key must match (compared in constant time), then the permission and the
/// prefix Hypha decided are taken as given.
fn identify_plugin(key: &[u8], headers: &HeaderMap) -> Result<Caller, ApiError> {
    check_plugin_key(key, headers)?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::invalid(format!("plugin request lacks {name}")))
    };
    let permission = match text(PLUGIN_PERMISSION_HEADER)? {
        "read" => Permission::Read,
        "write" => Permission::ReadWrite,
        "admin" => Permission::Admin,
        other => {
            return Err(ApiError::invalid(format!(
                "unknown plugin permission {:?}",
                crate::storage::shorten(other)
            )))
        }
    };
    Ok(Caller::Plugin {
        permission,
        prefix: text(PLUGIN_PREFIX_HEADER)?.to_owned(),
        user: headers
            .get(PLUGIN_USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(crate::storage::shorten),
    })
}
