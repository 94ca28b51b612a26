//! Object-store backends: the [`Backend`] trait and its implementations over local disk and
//! S3. The git repository's layout and rules live in the layer above, which builds on this
//! module and is never imported by it.
//!
//! Owns keys, bytes, conditional writes and presigned URLs. Knows nothing of git, HTTP
//! status codes, axum, tokens or the API's wire types: `server` maps [`Error`] to statuses in
//! one place. The trait
//! is deliberately what S3 can do (conditional `PUT` with `If-None-Match` / `If-Match`,
//! ranged `GET`, listing by prefix, presigned URLs), so that an S3 backend drops in.
//!
//! - [`local`]: [`LocalDisk`], a backend over a directory, with its own presigned URLs.
//! - [`s3`]: [`S3`], a backend over an S3 bucket (aws-sdk-s3), with multipart uploads.
//! - [`presign`]: signing and checking those URLs.
//! - [`metered`]: [`Metered`], any backend with every request reported to an observer (the
//!   server's metrics).
//! - `conformance` (tests only): the one test suite every backend runs; `test_services`
//!   (tests only): the S3 test servers it runs on beside local disk.

#[cfg(test)]
pub(crate) mod conformance;
pub mod local;
pub mod metered;
pub mod presign;
pub mod s3;
#[cfg(test)]
pub(crate) mod test_services;

pub use local::LocalDisk;
pub use metered::Metered;
pub use s3::{Multipart, S3};

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

/// Longest key accepted, in bytes: S3's limit.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a storage operation failed. Each variant names the key (or request) it failed on;
/// causes go into `source`, never into the text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    /// A conditional write or delete lost: the object changed since its etag was read.
    #[error("{key}: changed concurrently (precondition failed)")]
    Conflict { key: String },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("{key}: range {start}..{end} is outside the object")]
    InvalidRange { key: String, start: u64, end: u64 },
    #[error("{key}: received {received} bytes, expected {expected}")]
    SizeMismatch {
        key: String,
        expected: u64,
        received: u64,
    },
    /// A request the repository refuses: a bad ref name, a missing pack, ...
    #[error("{detail}")]
    Invalid { detail: String },
    /// Another writer holds the repository lock for too long.
    #[error("{key}: busy, try again")]
    Busy { key: String },
    #[error("{key}: storage backend failed")]
    Backend {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn backend(
        key: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Backend {
            key: key.to_owned(),
            source: source.into(),
        }
    }

    /// The object was changed or removed by someone else between read and write.
    pub fn is_lost_race(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. }
        )
    }
}

/// An object read whole: small objects only (refs, HEAD, config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    pub etag: String,
}

/// What a listing or `head` tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Present from `head`; listings may omit it (computing it can cost a full read).
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// Condition of a `put`, as S3 conditional writes express them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Unconditional: create or replace.
    Overwrite,
    /// `If-None-Match: *`: fail with [`Error::AlreadyExists`] when the key exists.
    IfNoneMatch,
    /// `If-Match: <etag>`: fail with [`Error::Conflict`] when the current etag differs and
    /// with [`Error::NotFound`] when the key is gone.
    IfMatch(String),
}

/// What a presigned URL lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    Get,
    /// `PUT`, replacing what is stored.
    Put,
    /// `PUT` that only creates: the store refuses it once the key exists, unless the bytes
    /// are the same (a retried upload). For objects never replaced once stored, such as a
    /// repository's packs: the caller says so, the backend knows no layout.
    Create,
}

impl PresignMethod {
    /// The name signed into a URL: `Put` and `Create` differ, so neither passes for the other.
    pub fn as_str(self) -> &'static str {
        match self {
            PresignMethod::Get => "GET",
            PresignMethod::Put => "PUT",
            PresignMethod::Create => "CREATE",
        }
    }

    /// The HTTP method its holder sends.
    pub fn http_method(self) -> &'static str {
        match self {
            PresignMethod::Get => "GET",
            PresignMethod::Put | PresignMethod::Create => "PUT",
        }
    }

    /// Whether the URL uploads (and so signs a content length).
    pub fn is_put(self) -> bool {
        self != PresignMethod::Get
    }
}

/// A presigned HTTP request for one object: whoever holds it sends exactly `headers` (they
/// are signed) and the body, and needs no credentials of its own. The server hands it out as
/// the API's `PresignedRequest`.
#[derive(Clone, PartialEq)]
pub struct PresignedTransfer {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

// A presigned URL is a credential: Debug must never print it.
impl std::fmt::Debug for PresignedTransfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedTransfer")
            .field("method", &self.method)
            .field("url", &"<redacted>")
            .finish()
    }
}

/// An object store, shared as `Arc<dyn Backend>`. Every method validates its key with
/// [`check_key`] first.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The whole object and its etag.
    async fn get(&self, key: &str) -> Result<Object, Error>;

    /// Size and etag without the body.
    async fn head(&self, key: &str) -> Result<ObjectMeta, Error>;

    /// Bytes `range.start..range.end`; [`Error::InvalidRange`] unless the range lies within
    /// the object.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error>;

    /// Store `body` under `key` if `mode` allows; returns the new etag.
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<String, Error>;

    /// Remove `key`. Unconditional deletes of a missing key succeed (as in S3); with
    /// `if_match`, a missing key is [`Error::NotFound`] and another etag [`Error::Conflict`].
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error>;

    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error>;

    /// A URL that lets its holder `GET` (with `Range`) or `PUT` exactly this key until
    /// `expires_in` from now. For `PUT`, `content_length` is required and signed.
    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, Error>;

    /// Many small objects at once (every ref of a repository), each with its own outcome, in
    /// the order of `keys`. The default sends `concurrency` `get`s at a time; a store that can
    /// read them more cheaply in one go (local disk: one blocking task instead of one per
    /// file, which made listing 10,000 refs 1.5x slower than `git ls-remote` on `git daemon`)
    /// overrides it.
    async fn get_many(&self, keys: Vec<String>, concurrency: usize) -> Vec<Result<Object, Error>> {
        use futures_util::StreamExt;
        futures_util::stream::iter(keys)
            .map(|key| async move { self.get(&key).await })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Store the `size` bytes of `file` (read from its start) under `key`, replacing what is
    /// there; returns the new etag. For objects too large to hold in memory (a completed thin
    /// pack carries whole stored bases); the default reads the file whole, the stores here
    /// stream it.
    async fn put_file(&self, key: &str, file: std::fs::File, size: u64) -> Result<String, Error> {
        let owned = key.to_owned();
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek};
            let mut file = file;
            file.seek(std::io::SeekFrom::Start(0))?;
            let mut body = Vec::new();
            file.take(size).read_to_end(&mut body)?;
            Ok::<_, std::io::Error>(body)
        })
        .await
        .map_err(|e| Error::backend(&owned, e))?
        .map_err(|e| Error::backend(&owned, e))?;
        if body.len() as u64 != size {
            return Err(Error::SizeMismatch {
                key: owned,
                expected: size,
                received: body.len() as u64,
            });
        }
        self.put(key, Bytes::from(body), PutMode::Overwrite).await
    }

    /// Multipart uploads (large packs and LFS objects), where the store has them: S3 and local
    /// disk do.
    fn multipart(&self) -> Option<&dyn Multipart> {
        None
    }
}

/// Keys are `/`-separated relative paths: no empty, `.` or `..` components, no backslash or
/// control characters, not absolute. Local disk maps them to paths, so nothing may escape
/// the root; S3 gets the same rule so that both backends accept the same keys.
pub fn check_key(key: &str) -> Result<(), Error> {
    let refuse = |reason| {
        Err(Error::InvalidKey {
            key: shorten(key),
            reason,
        })
    };
    if key.is_empty() {
        return refuse("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return refuse("too long");
    }
    if key.starts_with('/') {
        return refuse("absolute");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return refuse("forbidden character");
    }
    for component in key.split('/') {
        match component {
            "" => return refuse("empty component"),
            "." | ".." => return refuse("relative component"),
            // The local store's in-flight writes: never addressable, on any backend.
            local::TEMP_DIR => return refuse("reserved name"),
            _ if component.starts_with(local::TEMP_PREFIX) => return refuse("reserved name"),
            _ => {}
        }
    }
    Ok(())
}

/// A name cut to a length fit for an error message (a hostile ref name can be 10 KB).
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "ws/artifacts/x/.git/HEAD", "a/.gitkeep", "a/b..c"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "a/../b",
            "..",
            "./a",
            "a\\b",
            "a\0b",
            "a/.hypha-tmp-x",
            ".hypha-tmp/.hypha-tmp-x",
            ".hypha-tmp",
            "ws/.hypha-tmp/x",
            long.as_str(),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        let s = "ü".repeat(300);
        assert!(shorten(&s).len() < 210);
        assert_eq!(shorten("abc"), "abc");
    }
}
