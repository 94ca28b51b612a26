//! Wire types of the Git LFS Batch API (git-lfs `docs/api/batch.md`), as Hypha serves it at
//! `{ws}/git/{alias}.git/info/lfs/objects/batch` and `.../objects/verify/{oid}`.
//!
//! Owns the JSON shapes and the path below the server root; no I/O. Transfers: `basic`, as in
//! Hypha, and [`TRANSFER`], ours (`git hypha lfs-agent`, a git-lfs custom transfer agent):
//! its uploads above the store's multipart threshold go through the parts routes below
//! (`.../objects/parts/{oid}` and `.../objects/parts/{oid}/complete`), in parallel parts,
//! resumable, past S3's 5 GiB single `PUT`; its downloads are parallel byte ranges of the
//! same presigned `GET` as `basic`'s. Objects are `sha256`. The locks API is [`super::locks`].

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

/// The name of our transfer, as git-lfs advertises it (`lfs.customtransfer.hypha.*`) and the
/// batch answer picks it.
pub const TRANSFER: &str = "hypha";

/// Action header that tells the agent how to carry out an upload action of [`TRANSFER`]:
/// [`PARTS`] means the href is the parts route; absent, the href is a presigned `PUT` of the
/// whole object (small objects, one request as with `basic`). The agent does not send it on.
pub const TRANSFER_HEADER: &str = "X-Hypha-Transfer";

/// [`TRANSFER_HEADER`]'s value for an upload in parts.
pub const PARTS: &str = "parts";

/// `POST .../objects/parts/{oid}`: start the upload of an object in parts, or resume the
/// one started before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartsRequest {
    pub size: u64,
}

/// The answer: what is left to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartsPlan {
    /// The object is stored and its content checks out: nothing to send.
    #[serde(default)]
    pub done: bool,
    /// The multipart upload; `None` for one `PUT` of the whole object (then `parts` has
    /// part 1 only, of `size` bytes).
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Size of every part but the last; part `n` (from 1) starts at `(n - 1) * part_size`.
    pub part_size: u64,
    /// Presigned `PUT`s of the parts still to send, in part order.
    #[serde(default)]
    pub parts: Vec<PartUrl>,
    /// Parts the store holds already, from an earlier attempt: not sent again.
    #[serde(default)]
    pub stored: Vec<u32>,
    /// Seconds the URLs stay valid.
    pub expires_in: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct PartUrl {
    pub number: u32,
    pub href: String,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

// A presigned URL is a credential.
impl std::fmt::Debug for PartUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartUrl")
            .field("number", &self.number)
            .field("href", &"<redacted>")
            .finish()
    }
}

/// `POST .../objects/parts/{oid}/complete`: assemble the object from its parts (or, with no
/// upload id, take the one `PUT`) and check its SHA-256; answered once the check is done, so
/// git-lfs's `verify` afterwards is a lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartsComplete {
    pub size: u64,
    #[serde(default)]
    pub upload_id: Option<String>,
    pub part_size: u64,
}

/// Action header on a [`PARTS`] upload: the server can also take the object as the chunks its
/// stored bases lack (`.../parts/{oid}/delta`, issue 22 part 4). The agent does not send it on.
pub const DELTA_HEADER: &str = "X-Hypha-Delta";

/// [`DELTA_HEADER`]'s value: content-defined chunks (`lfs_chunks`).
pub const DELTA_CHUNKS: &str = "chunks";

/// Most base candidates one delta request may name.
pub const MAX_DELTA_BASES: usize = 4;

/// Most ranges one delta plan asks the agent to send; an object changed in more places goes
/// up whole (in parts).
pub const MAX_DELTA_RANGES: usize = 1024;

/// `POST .../objects/parts/{oid}/delta`: the new object's chunks and the stored objects it
/// may share them with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaRequest {
    pub size: u64,
    /// `lfs_chunks::encode` of the new object's chunks, base64 (standard, padded).
    pub chunks: String,
    /// Oids of objects the server may hold, best first; at most [`MAX_DELTA_BASES`].
    #[serde(default)]
    pub bases: Vec<String>,
}

/// The answer: which byte ranges of the new object to send. `id: None` means no base helps
/// (none stored, none indexed yet, too little in common): upload the object in parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaPlan {
    /// The object is stored and its content checks out: nothing to send.
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub id: Option<String>,
    /// Ranges of the new object to `PUT`, in order, not overlapping.
    #[serde(default)]
    pub ranges: Vec<DeltaRange>,
    /// Bytes the server takes from its bases.
    #[serde(default)]
    pub reused: u64,
    #[serde(default)]
    pub expires_in: u64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DeltaRange {
    pub offset: u64,
    pub len: u64,
    pub href: String,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
}

// A presigned URL is a credential.
impl std::fmt::Debug for DeltaRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaRange")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("href", &"<redacted>")
            .finish()
    }
}

/// `POST .../objects/parts/{oid}/delta/complete`: assemble the object from the plan `id`
/// (bases' ranges and the sent ones) and check its SHA-256; nothing is stored unless it
/// checks out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaComplete {
    pub size: u64,
    pub id: String,
}
