//! Git LFS objects of a repository, in Hypha's layout (docs/design.md §3, hypha/git/lfs.py):
//! `{artifacts folder}/{id}/git/lfs/objects/{oid[0:2]}/{oid[2:4]}/{oid}`, beside (not inside)
//! the repository's `.git/`, so that Hypha's own LFS endpoint and `git hypha serve` find the
//! same objects, whole, at the same keys.
//!
//! Owns the keys, presigned transfers of single objects and whether an object's content is
//! right (its SHA-256 is its oid). Does not check permissions or speak the batch API's JSON:
//! `server::lfs` does. Never lists anything, deletes only objects whose content is wrong
//! (and their markers); compaction and upload sweeps never touch these keys (they are
//! outside `.git/`), and only `lfs_prune` deletes objects no ref reaches.
//!
//! Verification state: an uploaded object is not trusted until the server has hashed it.
//! The verdict is recorded in a small JSON marker at `{id}/git/lfs/verified/aa/bb/{oid}`
//! (outside `objects/`, so Hypha's layout holds objects only), sealed with what `head` says
//! of the object (size, etag, modification time): a marker whose seal no longer matches (the
//! object was replaced) counts for nothing. So "is it there and right?" costs a `HEAD` and a
//! small `GET`, whatever the object's size. An object without a valid marker (uploaded
//! through Hypha's own LFS endpoint, whose verify checks the size only; or before markers
//! existed; or replaced since) is hashed once, lazily, the first time a batch or verify
//! needs to know, and the verdict recorded: right objects are then served, wrong ones never
//! are, and are offered for upload again so that the real content replaces them.

use super::{Error, Repository};
use crate::lfs_chunks::{Chunk, Chunker, MAX_CHUNKS};
use crate::names;
use crate::storage::{ObjectMeta, PresignMethod, PresignedTransfer, PutMode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, UNIX_EPOCH};

/// Bytes read per ranged GET while hashing an object: large enough that S3's per-request
/// cost stays small, small enough to keep the server's memory flat.
const VERIFY_CHUNK: u64 = 8 * 1024 * 1024;

/// Attempts at hashing an object that keeps changing underneath (an upload landing).
const CHECK_ATTEMPTS: usize = 3;

/// What `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LfsMismatch {
    /// The stored object is right (its SHA-256 is the oid) but has `stored` bytes, not the
    /// size the request names: the request is wrong, and nothing was changed.
    Size { stored: u64 },
    /// The stored content does not hash to the oid: it was deleted.
    Hash,
}

/// What the store holds under an oid, once checked ([`Repository::lfs_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsStored {
    pub size: u64,
    /// The content's SHA-256 is the oid: safe to serve, nothing to upload.
    pub verified: bool,
    /// The content's SHA-256 is known NOT to be the oid (garbage). Neither flag: the object
    /// changed while it was being checked (an upload landing); not verified yet.
    pub wrong: bool,
    seal: Seal,
}

/// What identifies one stored version of an object, from `head` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seal {
    size: u64,
    etag: Option<String>,
    modified_ns: Option<u64>,
}

impl Seal {
    fn of(meta: &ObjectMeta) -> Seal {
        Seal {
            size: meta.size,
            etag: meta.etag.clone(),
            modified_ns: meta
                .last_modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_nanos()).ok()),
        }
    }
}

/// The recorded verdict on one stored version of an object.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    seal: Seal,
    /// Its SHA-256 is the oid.
    content_ok: bool,
}

impl Repository {
    /// The key of LFS object `oid`, relative to the store.
    pub fn lfs_key(&self, oid: &str) -> Result<String, Error> {
        self.lfs_path("objects", oid)
    }

    /// The key of the verification marker of `oid` (see the module doc).
    pub(super) fn lfs_marker_key(&self, oid: &str) -> Result<String, Error> {
        self.lfs_path("verified", oid)
    }

    pub(super) fn lfs_path(&self, dir: &str, oid: &str) -> Result<String, Error> {
        if !names::is_lfs_oid(oid) {
            return Err(Error::Invalid {
                detail: format!(
                    "invalid lfs object id {:?} (expected 64 lowercase hex digits)",
                    crate::storage::shorten(oid)
                ),
            });
        }
        Ok(format!(
            "{}{dir}/{}/{}/{oid}",
            self.lfs_base(),
            &oid[0..2],
            &oid[2..4]
        ))
    }

    /// `{artifact}/git/lfs/`: where objects, markers, locks and prune marks live, beside
    /// (not inside) the repository's `.git/` (the prefix ends in `.git/`, see
    /// `Store::repo_at`).
    pub(super) fn lfs_base(&self) -> String {
        let base = self
            .prefix
            .strip_suffix(".git/")
            .unwrap_or(self.prefix.as_str());
        format!("{base}git/lfs/")
    }

    /// The stored size of LFS object `oid`, or `None` when it is not stored. Says nothing
    /// about its content: [`Repository::lfs_check`] does.
    pub async fn lfs_size(&self, oid: &str) -> Result<Option<u64>, Error> {
        match self.backend.head(&self.lfs_key(oid)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether object `oid` is stored, and whether its content is right. O(1) when a marker
    /// records the verdict on the stored version; otherwise the object is hashed (once) and
    /// the verdict recorded. `None`: not stored.
    pub async fn lfs_check(&self, oid: &str) -> Result<Option<LfsStored>, Error> {
        let key = self.lfs_key(oid)?;
        let marker_key = self.lfs_marker_key(oid)?;
        let mut last = None;
        for _ in 0..CHECK_ATTEMPTS {
            let Some(seal) = self.lfs_seal(&key).await? else {
                return Ok(None);
            };
            if let Some(marker) = self.lfs_marker(&marker_key).await? {
                if marker.seal == seal {
                    return Ok(Some(stored(seal, Some(marker.content_ok))));
                }
            }
            let chunk = seal.size > self.multipart.threshold;
            let (hash, chunks) = match self.lfs_sha256(&key, seal.size, chunk).await {
                Ok(read) => read,
                // Replaced or removed while read: look again.
                Err(Error::NotFound { .. } | Error::InvalidRange { .. }) => continue,
                Err(e) => return Err(e),
            };
            if self.lfs_seal(&key).await?.as_ref() != Some(&seal) {
                last = Some(seal);
                continue;
            }
            let marker = Marker {
                seal,
                content_ok: hash == oid,
            };
            let body = serde_json::to_vec(&marker).map_err(|e| Error::backend(&marker_key, e))?;
            self.backend
                .put(&marker_key, Bytes::from(body), PutMode::Overwrite)
                .await?;
            if let Some(chunks) = chunks.filter(|_| marker.content_ok) {
                // Best effort: without it, the first delta over the object computes it.
                let stored = self.lfs_store_chunk_index(oid, marker.seal.size, &chunks);
                if let Err(e) = stored.await {
                    tracing::warn!("warning: lfs chunk index of {oid} not stored: {e}");
                }
            }
            return Ok(Some(stored(marker.seal, Some(marker.content_ok))));
        }
        // Still changing: an upload is landing. Not verified, not known wrong either.
        Ok(last.map(|seal| stored(seal, None)))
    }

    /// Record that the object stored under `oid` with `etag` hashes to its oid, for a server
    /// that hashed the bytes itself as it assembled them (`lfs_delta`). Nothing is recorded
    /// when the stored object is no longer that one (replaced since): it is checked on use.
    pub(super) async fn lfs_mark_verified(&self, oid: &str, etag: &str) -> Result<(), Error> {
        let key = self.lfs_key(oid)?;
        let meta = match self.backend.head(&key).await {
            Ok(meta) => meta,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.etag.as_deref() != Some(etag) {
            return Ok(());
        }
        let marker = Marker {
            seal: Seal::of(&meta),
            content_ok: true,
        };
        let marker_key = self.lfs_marker_key(oid)?;
        let body = serde_json::to_vec(&marker).map_err(|e| Error::backend(&marker_key, e))?;
        self.backend
            .put(&marker_key, Bytes::from(body), PutMode::Overwrite)
            .await?;
        Ok(())
    }

    /// What `head` says of `key`, or `None` when it is not stored.
    async fn lfs_seal(&self, key: &str) -> Result<Option<Seal>, Error> {
        match self.backend.head(key).await {
            Ok(meta) => Ok(Some(Seal::of(&meta))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The marker at `key`; an unreadable one counts as none (the object is hashed again).
    async fn lfs_marker(&self, key: &str) -> Result<Option<Marker>, Error> {
        match self.backend.get(key).await {
            Ok(obj) => Ok(serde_json::from_slice(&obj.body).ok()),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A presigned `GET` of object `oid`.
    pub async fn presign_lfs_download(
        &self,
        oid: &str,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        self.backend
            .presign(&self.lfs_key(oid)?, PresignMethod::Get, expires_in, None)
            .await
    }

    /// A presigned single `PUT` of exactly `size` bytes to object `oid`. The store writes the
    /// object whole or not at all (S3 `PutObject`; local disk through a temporary file), so an
    /// interrupted upload leaves nothing behind and the next batch offers it again. A `PUT`
    /// replaces the object, and with it the validity of its marker: whatever lands is checked
    /// again before it is trusted.
    pub async fn presign_lfs_upload(
        &self,
        oid: &str,
        size: u64,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        self.backend
            .presign(
                &self.lfs_key(oid)?,
                PresignMethod::Put,
                expires_in,
                Some(size),
            )
            .await
    }

    /// `verify` of object `oid`, said to have `size` bytes. Its content is checked (hashed
    /// unless a marker already records the verdict): content whose SHA-256 is not `oid` is
    /// garbage, deleted and reported ([`LfsMismatch::Hash`]); a right object is never
    /// deleted, and a request whose size differs from it only gets [`LfsMismatch::Size`].
    /// A missing object is [`Error::NotFound`]; one still changing, [`Error::Conflict`].
    pub async fn verify_lfs(&self, oid: &str, size: u64) -> Result<Option<LfsMismatch>, Error> {
        let key = self.lfs_key(oid)?;
        let Some(stored) = self.lfs_check(oid).await? else {
            return Err(Error::NotFound { key });
        };
        if stored.verified {
            return Ok((stored.size != size).then_some(LfsMismatch::Size {
                stored: stored.size,
            }));
        }
        if !stored.wrong {
            return Err(Error::Conflict { key });
        }
        // Garbage: removed, so that a later check need not look at it again; unless a new
        // upload replaced it meanwhile (that one is checked by its own verify).
        if self.lfs_seal(&key).await?.as_ref() != Some(&stored.seal) {
            return Err(Error::Conflict { key });
        }
        self.backend.delete(&key, None).await?;
        self.backend
            .delete(&self.lfs_marker_key(oid)?, None)
            .await?;
        Ok(Some(LfsMismatch::Hash))
    }

    /// The SHA-256 of the stored object, in hex, and, with `chunk` (an object a later
    /// version may be sent against as a delta: `lfs_delta`), its chunks, read on the same
    /// pass; `None` for them past `lfs_chunks::MAX_CHUNKS`, too many for an index.
    pub(super) async fn lfs_sha256(
        &self,
        key: &str,
        size: u64,
        chunk: bool,
    ) -> Result<(String, Option<Vec<Chunk>>), Error> {
        let mut hasher = Sha256::new();
        let mut chunker = chunk.then(Chunker::new);
        let mut at = 0;
        while at < size {
            let end = (at + VERIFY_CHUNK).min(size);
            let bytes = self.backend.get_range(key, at..end).await?;
            hasher.update(&bytes);
            if let Some(c) = &mut chunker {
                c.feed(&bytes);
            }
            chunker = chunker.filter(|c| c.count() <= MAX_CHUNKS);
            at = end;
        }
        Ok((hex::encode(hasher.finalize()), chunker.map(Chunker::finish)))
    }
}

fn stored(seal: Seal, content_ok: Option<bool>) -> LfsStored {
    LfsStored {
        size: seal.size,
        verified: content_ok == Some(true),
        wrong: content_ok == Some(false),
        seal,
    }
}

#[cfg(test)]
mod tests {
    use crate::repo::Store;
    use crate::storage::{Backend, LocalDisk, PutMode};
    use bytes::Bytes;
    use sha2::Digest;
    use std::sync::Arc;

    /// A verdict holds for the stored version it was made on: an object replaced after its
    /// verify (same size, other bytes, as a PUT URL handed out earlier could) is checked
    /// again, never served on the old verdict. Large objects too, whose local etag is
    /// metadata.
    #[tokio::test]
    async fn a_verdict_does_not_survive_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        let backend: Arc<dyn Backend> = Arc::new(disk);
        let repo = Store::new(backend.clone()).repo("ws", "r").unwrap();
        for len in [19, 256 * 1024] {
            let body = Bytes::from(vec![b'a'; len]);
            let oid = hex::encode(sha2::Sha256::digest(&body));
            let key = repo.lfs_key(&oid).unwrap();
            backend
                .put(&key, body.clone(), PutMode::Overwrite)
                .await
                .unwrap();
            assert_eq!(repo.verify_lfs(&oid, len as u64).await.unwrap(), None);
            let stored = repo.lfs_check(&oid).await.unwrap().unwrap();
            assert!(stored.verified && !stored.wrong, "{len}");
            let garbage = Bytes::from(vec![b'b'; len]);
            backend
                .put(&key, garbage, PutMode::Overwrite)
                .await
                .unwrap();
            let stored = repo.lfs_check(&oid).await.unwrap().unwrap();
            assert!(!stored.verified && stored.wrong, "{len}");
            assert_eq!(
                repo.verify_lfs(&oid, len as u64).await.unwrap(),
                Some(super::LfsMismatch::Hash)
            );
            assert_eq!(repo.lfs_check(&oid).await.unwrap(), None, "deleted");
        }
    }
}
