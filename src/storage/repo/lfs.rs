//! Git LFS objects of a repository, in Hypha's layout (docs/design.md §3, hypha/git/lfs.py):
//! `{artifacts folder}/{id}/git/lfs/objects/{oid[0:2]}/{oid[2:4]}/{oid}`, beside (not inside)
//! the repository's `.git/`, so that Hypha's own LFS endpoint and `git hypha serve` find the
//! same objects.
//!
//! Owns the keys, presigned transfers of single objects and the check behind `verify` (size
//! and SHA-256 of what was stored; a wrong object is deleted). Does not check permissions or
//! speak the batch API's JSON: `server::lfs` does. Never lists or deletes anything else, and
//! nothing else (compaction, upload sweeps) touches these keys: they are outside `.git/`.

use super::{Error, Repository};
use crate::names;
use crate::storage::{PresignMethod, PresignedTransfer};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Bytes read per ranged GET while hashing an object on `verify`: large enough that S3's
/// per-request cost stays small, small enough to keep the server's memory flat.
const VERIFY_CHUNK: u64 = 8 * 1024 * 1024;

/// What `verify` found wrong with an uploaded object (which was then deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LfsMismatch {
    Size { stored: u64 },
    Hash,
}

impl Repository {
    /// The key of LFS object `oid`, relative to the store.
    pub fn lfs_key(&self, oid: &str) -> Result<String, Error> {
        if !names::is_lfs_oid(oid) {
            return Err(Error::Invalid {
                detail: format!(
                    "invalid lfs object id {:?} (expected 64 lowercase hex digits)",
                    super::super::shorten(oid)
                ),
            });
        }
        // The prefix ends in `.git/` (see `Store::repo_at`); LFS lives beside it.
        let base = self
            .prefix
            .strip_suffix(".git/")
            .unwrap_or(self.prefix.as_str());
        Ok(format!(
            "{base}git/lfs/objects/{}/{}/{oid}",
            &oid[0..2],
            &oid[2..4]
        ))
    }

    /// The stored size of LFS object `oid`, or `None` when it is not stored.
    pub async fn lfs_size(&self, oid: &str) -> Result<Option<u64>, Error> {
        match self.backend.head(&self.lfs_key(oid)?).await {
            Ok(meta) => Ok(Some(meta.size)),
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
    /// interrupted upload leaves nothing behind and the next batch offers it again.
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

    /// Check a freshly uploaded object: it must have `size` bytes whose SHA-256 is `oid`.
    /// A wrong object is deleted and reported (`Ok(Some(..))`); a missing one is
    /// [`Error::NotFound`].
    pub async fn verify_lfs(&self, oid: &str, size: u64) -> Result<Option<LfsMismatch>, Error> {
        let key = self.lfs_key(oid)?;
        let stored = self.backend.head(&key).await?.size;
        let mismatch = if stored != size {
            Some(LfsMismatch::Size { stored })
        } else if self.lfs_sha256(&key, stored).await? != oid {
            Some(LfsMismatch::Hash)
        } else {
            None
        };
        if mismatch.is_some() {
            // Not kept: a later batch would otherwise answer "already there" for it.
            self.backend.delete(&key, None).await?;
        }
        Ok(mismatch)
    }

    async fn lfs_sha256(&self, key: &str, size: u64) -> Result<String, Error> {
        let mut hasher = Sha256::new();
        let mut at = 0;
        while at < size {
            let end = (at + VERIFY_CHUNK).min(size);
            hasher.update(self.backend.get_range(key, at..end).await?);
            at = end;
        }
        Ok(hex::encode(hasher.finalize()))
    }
}
