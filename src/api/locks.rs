//! Wire types of the Git LFS File Locking API (git-lfs `docs/api/locking.md`), below a
//! repository's LFS endpoint ([`super::lfs::endpoint_path`]): `POST .../locks`,
//! `GET .../locks`, `POST .../locks/verify`, `POST .../locks/{id}/unlock`.
//!
//! Owns the JSON shapes only; no I/O. The optional `ref` git-lfs sends (v2.4+) is read and
//! ignored: the spec says to use it for authentication only, and locks here are per
//! repository ("single branch locking"). Errors use the batch API's body
//! ([`super::lfs::ErrorBody`]), except a lock that exists, whose 409 names it
//! ([`ConflictBody`]).

use serde::{Deserialize, Serialize};

/// A lock as git-lfs shows it (`git lfs locks`, `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub id: String,
    pub path: String,
    /// RFC 3339, UTC.
    pub locked_at: String,
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub name: String,
}

/// `ref` of a request: which server ref the client is on. Read, never used.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LockRef {
    #[serde(default)]
    pub name: String,
}

/// `POST .../locks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub path: String,
    #[serde(default, rename = "ref")]
    pub lock_ref: Option<LockRef>,
}

/// `POST .../locks` answer (201), and `.../unlock`'s (200): the lock made or removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockResponse {
    pub lock: Lock,
}

/// 409 of `POST .../locks`: the lock that holds the path, and why the request failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictBody {
    pub lock: Lock,
    pub message: String,
}

/// `GET .../locks` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListQuery {
    pub path: Option<String>,
    pub id: Option<String>,
    pub cursor: Option<String>,
    /// A string, so that a malformed number gets this API's error, not the extractor's.
    pub limit: Option<String>,
    pub refspec: Option<String>,
}

/// `GET .../locks` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub locks: Vec<Lock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST .../locks/verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default, rename = "ref")]
    pub lock_ref: Option<LockRef>,
}

/// `POST .../locks/verify` answer: the caller's locks and everyone else's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub ours: Vec<Lock>,
    pub theirs: Vec<Lock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST .../locks/{id}/unlock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnlockRequest {
    /// Remove the lock even if another user holds it.
    #[serde(default)]
    pub force: bool,
    #[serde(default, rename = "ref")]
    pub lock_ref: Option<LockRef>,
}
