//! How a pack goes up (docs/design.md §10): one presigned `PUT`, or, for a pack
//! above [`MultipartPolicy::threshold`] on a store with multipart uploads, a multipart upload
//! whose parts the client `PUT`s in parallel and which the server then completes.
//!
//! Owns the presigned upload of a pack ([`PackUpload`] in, [`UploadUrls`] out), the decision
//! between one `PUT` and parts, and the repository side of `complete` and `abort`: pack keys,
//! the part split, the size checks. The store side (S3 calls) is `storage::s3::multipart`'s; HTTP is
//! the server's. No state is kept between requests: the upload id travels through the
//! client, and completion reads the stored parts back and checks each one's size, so a
//! missing or short part is named instead of assembled.

use super::parts::continue_or_start;
use super::{check_pack_name, Repository};
use crate::storage::s3::multipart::{self, UploadPlan, MAX_PARTS, MAX_PART_SIZE};
use crate::storage::{Backend, Error, PresignMethod, PresignedTransfer};
use std::time::Duration;

/// A pack about to be uploaded, as its client declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUpload {
    /// `pack-<40 hex>`.
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    /// Asking again for fresh URLs of a multipart upload already started: its id, so that its
    /// parts are presigned instead of another upload started.
    pub upload_id: Option<String>,
    /// Continue this pack's multipart upload in progress, if any (a push cut part way): only
    /// its missing parts are presigned (`repo::parts`).
    pub resume: bool,
}

/// Where to `PUT` one pack's idx and pack: the pack in one `PUT` (`pack`) or in parts
/// (`multipart`), never both.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadUrls {
    pub name: String,
    pub idx: PresignedTransfer,
    pub pack: Option<PresignedTransfer>,
    pub multipart: Option<UploadPlan>,
}

/// When packs go up in parts, and in parts of what size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartPolicy {
    /// Packs larger than this many bytes use a multipart upload (where the store has them).
    pub threshold: u64,
    /// Size of every part but the last (raised to S3's minimum, or when an object would need
    /// more than S3's most parts).
    pub part_size: u64,
}

impl Default for MultipartPolicy {
    fn default() -> Self {
        MultipartPolicy {
            threshold: multipart::THRESHOLD,
            part_size: multipart::DEFAULT_PART_SIZE,
        }
    }
}

/// Largest pack a multipart upload can carry.
pub const MAX_MULTIPART_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;

impl Repository {
    /// Presigned `PUT`s for one pack's `.idx` and `.pack` at the declared sizes.
    pub async fn presign_upload(
        &self,
        spec: &PackUpload,
        expires_in: Duration,
    ) -> Result<UploadUrls, Error> {
        check_pack_name(&spec.name)?;
        self.mark_upload(&spec.name).await?;
        let idx = self
            .backend
            .presign(
                &self.pack_key(&spec.name, "idx"),
                PresignMethod::Create,
                expires_in,
                Some(spec.idx_size),
            )
            .await?;
        // One PUT, or a multipart upload for a large pack: see `presign_pack`.
        let (pack, multipart) = self.presign_pack(spec, expires_in).await?;
        Ok(UploadUrls {
            name: spec.name.clone(),
            idx,
            pack,
            multipart,
        })
    }

    /// Whether a pack of `size` bytes goes up in parts here.
    pub fn uses_multipart(&self, size: u64) -> bool {
        self.backend.multipart().is_some() && size > self.multipart.threshold
    }

    /// The pack half of `presign_upload`: a single presigned `PUT`, a new multipart upload,
    /// or (with `spec.upload_id`) fresh part URLs of an upload already started.
    pub(super) async fn presign_pack(
        &self,
        spec: &PackUpload,
        expires_in: Duration,
    ) -> Result<(Option<PresignedTransfer>, Option<UploadPlan>), Error> {
        let key = self.pack_key(&spec.name, "pack");
        if let Some(upload_id) = &spec.upload_id {
            let Some(mp) = self.backend.multipart() else {
                return Err(Error::Invalid {
                    detail: format!(
                        "{}: this store has no multipart uploads (upload id given)",
                        spec.name
                    ),
                });
            };
            check_multipart_size(&spec.name, spec.pack_size)?;
            // The same split as when the upload started: the policy and the size decide it.
            let sizes = multipart::part_sizes(spec.pack_size, self.multipart.part_size);
            let mut parts = Vec::with_capacity(sizes.len());
            for (number, len) in (1..).zip(&sizes) {
                parts.push(
                    mp.presign_part(&key, upload_id, number, *len, expires_in)
                        .await?,
                );
            }
            return Ok((
                None,
                Some(UploadPlan {
                    upload_id: upload_id.clone(),
                    part_size: sizes[0],
                    parts,
                    stored: Vec::new(),
                    resumable: false,
                }),
            ));
        }
        if self.uses_multipart(spec.pack_size) {
            check_multipart_size(&spec.name, spec.pack_size)?;
            let mp = self
                .backend
                .multipart()
                .expect("uses_multipart checked that the store has multipart uploads");
            if spec.resume {
                let sizes = multipart::part_sizes(spec.pack_size, self.multipart.part_size);
                let continued = continue_or_start(mp, &key, &sizes, expires_in, &spec.name).await?;
                return Ok((
                    None,
                    Some(UploadPlan {
                        upload_id: continued.upload_id,
                        part_size: sizes[0],
                        parts: continued.parts.into_iter().map(|(_, url)| url).collect(),
                        stored: continued.stored,
                        resumable: continued.resumable,
                    }),
                ));
            }
            let plan = mp
                .start_upload(&key, spec.pack_size, self.multipart.part_size, expires_in)
                .await?;
            return Ok((None, Some(plan)));
        }
        let pack = self
            .backend
            .presign(
                &key,
                PresignMethod::Create,
                expires_in,
                Some(spec.pack_size),
            )
            .await?;
        Ok((Some(pack), None))
    }

    /// Assemble a pack from its uploaded parts, which must be exactly the split of
    /// `pack_size` into `part_size` parts. Afterwards the pack is an ordinary object: the
    /// `update` naming it checks it against its idx like any other.
    pub async fn complete_upload(
        &self,
        name: &str,
        upload_id: &str,
        pack_size: u64,
        part_size: u64,
    ) -> Result<(), Error> {
        check_pack_name(name)?;
        let mp = self.multipart_store(name)?;
        check_multipart_size(name, pack_size)?;
        let sizes = multipart::part_sizes(pack_size, part_size);
        if sizes.len() > 1 && sizes[0] != part_size {
            return Err(Error::Invalid {
                detail: format!(
                    "{name}: part size {part_size} cannot split {pack_size} bytes into at most {MAX_PARTS} parts"
                ),
            });
        }
        let key = self.pack_key(name, "pack");
        match mp.complete_upload(&key, upload_id, &sizes, false).await {
            Ok(_) => Ok(()),
            // The upload is gone: a `complete` retried after its answer was lost finds the
            // pack assembled by the first one. Or the pack exists already (completion is
            // create-only): the same size is that retry, anything else is refused.
            Err(Error::NotFound { .. } | Error::AlreadyExists { .. } | Error::Conflict { .. }) => {
                match self.backend.head(&key).await {
                    Ok(meta) if meta.size == pack_size => Ok(()),
                    _ => Err(Error::Invalid {
                        detail: format!("{name}: no such multipart upload"),
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Give a multipart upload of this repository up; its parts are freed. An upload that is
    /// already gone is fine.
    pub async fn abort_upload(&self, name: &str, upload_id: &str) -> Result<(), Error> {
        check_pack_name(name)?;
        let mp = self.multipart_store(name)?;
        mp.abort_upload(&self.pack_key(name, "pack"), upload_id)
            .await
    }

    fn multipart_store(&self, name: &str) -> Result<&dyn multipart::Multipart, Error> {
        self.backend.multipart().ok_or_else(|| Error::Invalid {
            detail: format!("{name}: this store has no multipart uploads"),
        })
    }
}

fn check_multipart_size(name: &str, size: u64) -> Result<(), Error> {
    if size == 0 || size > MAX_MULTIPART_SIZE {
        return Err(Error::Invalid {
            detail: format!("{name}: pack size {size} is outside 1..={MAX_MULTIPART_SIZE}"),
        });
    }
    Ok(())
}

/// Abort every multipart upload in the store started more than `older_than` ago: uploads
/// whose client died (a crash, a lost network) hold their parts until then. Returns how many
/// were aborted; 0 on a store without multipart uploads.
pub async fn abort_stale_uploads(
    backend: &dyn Backend,
    older_than: Duration,
) -> Result<usize, Error> {
    match backend.multipart() {
        Some(mp) => mp.abort_stale_uploads("", older_than).await,
        None => Ok(0),
    }
}
