//! Wire types of the Git LFS Batch API (git-lfs `docs/api/batch.md`), as Hypha serves it at
//! `{ws}/git/{alias}.git/info/lfs/objects/batch` and `.../objects/verify/{oid}`.
//!
//! Owns the JSON shapes and the path below the server root; no I/O. Only the `basic`
//! transfer and `sha256` exist here, as in Hypha; there is no locks API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Media type of every batch request and answer.
pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// The LFS endpoint of a repository below the server root, as git-lfs wants it in
/// `remote.<name>.lfsurl` (it appends `/objects/batch`). Hypha answers the same path.
pub fn endpoint_path(workspace: &str, alias: &str) -> String {
    format!("{workspace}/git/{alias}.git/info/lfs")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Download,
    Upload,
}

/// `POST .../objects/batch` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    pub operation: Operation,
    /// Transfer adapters the client knows; absent means `basic`.
    #[serde(default)]
    pub transfers: Vec<String>,
    pub objects: Vec<ObjectSpec>,
    #[serde(default)]
    pub hash_algo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub oid: String,
    pub size: u64,
}

/// `POST .../objects/batch` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResponse {
    pub transfer: String,
    pub objects: Vec<ObjectResponse>,
    pub hash_algo: String,
}

/// One object of a batch answer: actions to take, none (already stored), or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectResponse {
    pub oid: String,
    pub size: u64,
    /// The hrefs carry their own authorization (presigned): git-lfs sends no credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ObjectError>,
}

/// `download`, `upload` or `verify`: a request for git-lfs to make.
#[derive(Clone, Serialize, Deserialize)]
pub struct Action {
    pub href: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, String>,
    pub expires_in: u64,
}

// An href is presigned and a verify header may hold the caller's token: never print them.
impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action")
            .field("href", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectError {
    pub code: u16,
    pub message: String,
}

/// `POST .../objects/verify/{oid}` request.
pub type VerifyRequest = ObjectSpec;

/// Body of a failed LFS request: git-lfs prints `message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}
