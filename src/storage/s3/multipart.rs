//! Multipart uploads of large packs (docs/design.md §10): the server starts an
//! upload, presigns one `PUT` per part, and completes the upload from the parts the store
//! holds; the client only uploads parts, each from its own range of the file on disk.
//!
//! Owns the store side: [`Multipart`] (what a backend offers, reached through
//! `Backend::multipart`), its S3 implementation, and [`part_sizes`], the split both sides
//! agree on. It does not decide when to use multipart (the `uploads` route does, above
//! [`THRESHOLD`]) and holds no state: the upload id travels through the client, and the
//! completion reads the part list back from S3 (`ListParts`) and checks every part's size, so
//! the client never reports part etags and a short or missing part is named, not assembled.
//!
//! Abandoned uploads cost storage until aborted: [`Multipart::abort_stale_uploads`] aborts
//! every upload under a prefix older than a given age (`git hypha serve` sweeps at start and
//! hourly; on AWS a bucket lifecycle rule `AbortIncompleteMultipartUpload` does the same).

use super::S3;
use crate::storage::{Error, PresignedTransfer};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Packs larger than this go up in parts.
pub const THRESHOLD: u64 = 64 * 1024 * 1024;

/// Size of every part but the last, unless the object needs more than [`MAX_PARTS`] of them.
/// Small enough that a client holding a few parts in flight stays well under its memory
/// budget; S3's minimum for all but the last part is [`MIN_PART_SIZE`].
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;

/// How long one attempt at assembling an upload may take.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// An upload in progress, as `ListMultipartUploads` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The store key (without the backend's prefix).
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// An upload started and presigned: what the `uploads` route hands the client for one pack.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPlan {
    pub upload_id: String,
    /// Size of every part but the last; part `i` (from 1) starts at `(i - 1) * part_size`.
    pub part_size: u64,
    /// One presigned `PUT` per part not in `stored`, in part order, each with its signed
    /// `Content-Length`.
    pub parts: Vec<PresignedTransfer>,
    /// Parts (numbers from 1, ascending) an earlier attempt stored already: a continued
    /// upload (`repo::parts`). Empty for a new one.
    pub stored: Vec<u32>,
    /// Whether asking again for the same key continues this upload (the store can list
    /// uploads in progress).
    pub resumable: bool,
}

/// The sizes of the parts of an object of `total` bytes: `part_size` each (raised when that
/// would take more than [`MAX_PARTS`]), the last one shorter. Empty for an empty object.
pub fn part_sizes(total: u64, part_size: u64) -> Vec<u64> {
    let mut size = part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    if total.div_ceil(size) > MAX_PARTS {
        size = total.div_ceil(MAX_PARTS).max(MIN_PART_SIZE);
    }
    let mut parts = Vec::new();
    let mut left = total;
    while left > 0 {
        let this = left.min(size);
        parts.push(this);
        left -= this;
    }
    parts
}

/// What a store offers for multipart uploads. Part numbers start at 1.
#[async_trait]
pub trait Multipart: Send + Sync {
    /// Start an upload of `key`; returns its upload id.
    async fn create_upload(&self, key: &str) -> Result<String, Error>;

    /// A presigned `PUT` of part `part_number` with exactly `content_length` bytes (signed).
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error>;

    /// Store part `part_number` of the upload from the server's own bytes (the server
    /// composing an object, `repo::lfs_delta`); clients send parts through
    /// [`Multipart::presign_part`].
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<(), Error>;

    /// Assemble `key` from the stored parts, which must be exactly `part_sizes` (part `i + 1`
    /// has `part_sizes[i]` bytes); [`Error::Invalid`] names the first part that is missing or
    /// of another size, and the upload stays open so that the client can retry that part.
    /// With `replace` false an object already stored under `key` is never replaced (packs,
    /// issue 21): [`Error::AlreadyExists`]. Returns the etag of the object.
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        part_sizes: &[u64],
        replace: bool,
    ) -> Result<String, Error>;

    /// The parts stored so far for the upload: part number -> size. What a resumed transfer
    /// need not send again. [`Error::NotFound`] when the upload is gone.
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<BTreeMap<u32, u64>, Error>;

    /// Give the upload up and free its parts. An upload that is already gone is fine.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error>;

    /// Uploads in progress whose key starts with `prefix`.
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>, Error>;

    /// The newest upload in progress of exactly `key` (what a resumed transfer continues).
    /// S3 filters the listing by the key itself; a store that lists every upload to answer
    /// a prefix overrides this with a lookup that need not.
    async fn find_upload(&self, key: &str) -> Result<Option<MultipartUpload>, Error> {
        Ok(self
            .list_uploads(key)
            .await?
            .into_iter()
            .filter(|u| u.key == key)
            .max_by_key(|u| u.initiated))
    }

    /// Start an upload of `size` bytes cut into [`part_sizes`]`(size, part_size)` and presign
    /// every part. Completing it later needs the same `size` and the returned `part_size`.
    async fn start_upload(
        &self,
        key: &str,
        size: u64,
        part_size: u64,
        expires_in: Duration,
    ) -> Result<UploadPlan, Error> {
        let sizes = part_sizes(size, part_size);
        if sizes.is_empty() {
            return Err(Error::Invalid {
                detail: format!("{key}: nothing to upload"),
            });
        }
        let upload_id = self.create_upload(key).await?;
        let mut parts = Vec::with_capacity(sizes.len());
        for (number, len) in (1..).zip(&sizes) {
            match self
                .presign_part(key, &upload_id, number, *len, expires_in)
                .await
            {
                Ok(part) => parts.push(part),
                Err(e) => {
                    // Best effort: an upload nobody can finish only costs storage.
                    let _ = self.abort_upload(key, &upload_id).await;
                    return Err(e);
                }
            }
        }
        Ok(UploadPlan {
            upload_id,
            part_size: sizes[0],
            parts,
            stored: Vec::new(),
            resumable: false,
        })
    }

    /// Abort every upload under `prefix` started more than `older_than` ago; returns how
    /// many were aborted.
    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<usize, Error> {
        let cutoff = SystemTime::now().checked_sub(older_than);
        let mut aborted = 0;
        for upload in self.list_uploads(prefix).await? {
            let stale = match (upload.initiated, cutoff) {
                (Some(initiated), Some(cutoff)) => initiated < cutoff,
                // Unknown age: leave it, a later run with a known age decides.
                _ => false,
            };
            if stale {
                self.abort_upload(&upload.key, &upload.upload_id).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

/// The rule every store completes by: part `i + 1` is stored with exactly `part_sizes[i]`
/// bytes, and there is no part beyond. [`Error::Invalid`] names the first part that is not.
pub(crate) fn check_parts(
    key: &str,
    part_sizes: &[u64],
    stored: &BTreeMap<u32, u64>,
) -> Result<(), Error> {
    for (n, &want) in (1u32..).zip(part_sizes) {
        match stored.get(&n) {
            Some(&size) if size == want => {}
            Some(size) => {
                return Err(Error::Invalid {
                    detail: format!("{key}: part {n} has {size} bytes, expected {want}"),
                })
            }
            None => {
                return Err(Error::Invalid {
                    detail: format!("{key}: part {n} was not uploaded"),
                })
            }
        }
    }
    if let Some(extra) = stored.keys().find(|n| **n as usize > part_sizes.len()) {
        return Err(Error::Invalid {
            detail: format!("{key}: unexpected part {extra}"),
        });
    }
    Ok(())
}

fn check_upload_id(key: &str, upload_id: &str) -> Result<(), Error> {
    if upload_id.is_empty()
        || upload_id.len() > 1024
        || upload_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::Invalid {
            detail: format!("{key}: invalid upload id"),
        });
    }
    Ok(())
}

/// A part every store can take: number 1..=[`MAX_PARTS`] (as S3's `i32`), 1 to
/// [`MAX_PART_SIZE`] bytes.
pub(crate) fn check_part(key: &str, part_number: u32, size: u64) -> Result<i32, Error> {
    if size == 0 || size > MAX_PART_SIZE {
        return Err(Error::Invalid {
            detail: format!("{key}: part size {size} is outside 1..={MAX_PART_SIZE}"),
        });
    }
    check_part_number(key, part_number)
}

fn check_part_number(key: &str, part_number: u32) -> Result<i32, Error> {
    match i32::try_from(part_number) {
        Ok(n) if (1..=MAX_PARTS as i32).contains(&n) => Ok(n),
        _ => Err(Error::Invalid {
            detail: format!("{key}: part number {part_number} is outside 1..={MAX_PARTS}"),
        }),
    }
}

impl S3 {
    /// Every part S3 holds for the upload: number -> (etag, size). (s3s-fs lists no etags,
    /// and completes without them.)
    async fn parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
    ) -> Result<BTreeMap<i32, (Option<String>, u64)>, Error> {
        let mut parts = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| self.error(key, "ListParts", &e))?;
            for part in page.parts() {
                if let Some(n) = part.part_number() {
                    let size = part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                    parts.insert(n, (part.e_tag().map(str::to_owned), size));
                }
            }
            match (page.is_truncated(), page.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(parts)
    }
}

#[async_trait]
impl Multipart for S3 {
    async fn create_upload(&self, key: &str) -> Result<String, Error> {
        let full = self.full_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .content_type(super::OCTET_STREAM)
            .send()
            .await
            .map_err(|e| self.error(key, "CreateMultipartUpload", &e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::backend(key, "CreateMultipartUpload returned no upload id"))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        let full = self.full_key(key)?;
        check_upload_id(key, upload_id)?;
        let n = check_part(key, part_number, content_length)?;
        let config = Self::presign_config(key, expires_in)?;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .part_number(n)
            .content_length(super::to_i64(key, content_length)?)
            .presigned(config)
            .await
            .map_err(|e| Error::backend(key, self.request_failed("presign UploadPart", &e)))?;
        let transfer = super::to_transfer(&req);
        if !transfer.headers.contains_key("Content-Length") {
            return Err(Error::backend(
                key,
                "the presigned part does not sign its length",
            ));
        }
        Ok(transfer)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<(), Error> {
        let full = self.full_key(key)?;
        check_upload_id(key, upload_id)?;
        let n = check_part(key, part_number, body.len() as u64)?;
        self.client
            .upload_part()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .part_number(n)
            .content_length(super::to_i64(key, body.len() as u64)?)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(key, "UploadPart", &e))?;
        Ok(())
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        part_sizes: &[u64],
        replace: bool,
    ) -> Result<String, Error> {
        let full = self.full_key(key)?;
        check_upload_id(key, upload_id)?;
        if part_sizes.is_empty() || part_sizes.len() as u64 > MAX_PARTS {
            return Err(Error::Invalid {
                detail: format!("{key}: an upload has 1 to {MAX_PARTS} parts"),
            });
        }
        let stored = self.parts(key, &full, upload_id).await?;
        let sizes = stored
            .iter()
            .filter_map(|(n, (_, size))| Some((u32::try_from(*n).ok()?, *size)))
            .collect();
        check_parts(key, part_sizes, &sizes)?;
        let completed = (1..=part_sizes.len() as i32)
            .map(|n| {
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(stored.get(&n).and_then(|(etag, _)| etag.clone()))
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            // A pack, once stored, is never replaced (issue 21): an upload id handed out while
            // the pack was pending cannot overwrite it after `update` made it live.
            .set_if_none_match((!replace).then(|| "*".to_owned()))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .customize()
            // Assembling gigabytes takes the store a while (s3s-fs: over a minute for 6 GiB;
            // S3 keeps the connection alive with whitespace): past the usual 60 s attempt
            // limit, a retry would find the upload gone and fail a completion that worked.
            .config_override(
                aws_sdk_s3::config::Builder::default().timeout_config(
                    aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(COMPLETE_TIMEOUT)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| self.error(key, "CompleteMultipartUpload", &e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<BTreeMap<u32, u64>, Error> {
        let full = self.full_key(key)?;
        check_upload_id(key, upload_id)?;
        Ok(self
            .parts(key, &full, upload_id)
            .await?
            .into_iter()
            .filter_map(|(n, (_, size))| Some((u32::try_from(n).ok()?, size)))
            .collect())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        let full = self.full_key(key)?;
        check_upload_id(key, upload_id)?;
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .send()
            .await;
        self.removed(key, "AbortMultipartUpload", result)
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>, Error> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| self.listing_error(prefix, "ListMultipartUploads", &e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(key) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(MultipartUpload {
                    key: key.to_owned(),
                    upload_id: id.to_owned(),
                    initiated: upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            match (
                page.is_truncated(),
                page.next_key_marker(),
                page.next_upload_id_marker(),
            ) {
                (Some(true), Some(key), id) => {
                    markers = (Some(key.to_owned()), id.map(str::to_owned));
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parts_cover_the_object() {
        assert_eq!(part_sizes(0, DEFAULT_PART_SIZE), Vec::<u64>::new());
        assert_eq!(part_sizes(10, DEFAULT_PART_SIZE), [10]);
        let parts = part_sizes(300 * MIB, DEFAULT_PART_SIZE);
        assert_eq!(parts.len(), 19);
        assert_eq!(parts.iter().sum::<u64>(), 300 * MIB);
        assert!(parts[..18].iter().all(|p| *p == 16 * MIB));
        // Too small a part size is raised to S3's minimum.
        assert_eq!(part_sizes(12 * MIB, MIB), [5 * MIB, 5 * MIB, 2 * MIB]);
    }

    #[test]
    fn huge_objects_stay_within_max_parts() {
        let total = 200 * 1024 * 1024 * MIB; // 200 GiB
        let parts = part_sizes(total, DEFAULT_PART_SIZE);
        assert!(parts.len() as u64 <= MAX_PARTS);
        assert_eq!(parts.iter().sum::<u64>(), total);
    }

    #[test]
    fn ids_and_numbers_are_checked() {
        assert!(check_upload_id("k", "abc-123_.~").is_ok());
        assert!(check_upload_id("k", "").is_err());
        assert!(check_upload_id("k", "a b").is_err());
        assert!(check_part_number("k", 0).is_err());
        assert_eq!(check_part_number("k", 1).ok(), Some(1));
        assert!(check_part_number("k", 10_001).is_err());
    }
}
