//! LFS objects in parts (issue 22): the store side of our transfer's uploads (the
//! `.../objects/parts/{oid}` routes, `server::lfs_parts`). An object above the multipart
//! threshold goes up as a multipart upload of its final key, so the store assembles it whole
//! where Hypha's own LFS endpoint expects it; nothing else of Hypha's layout changes.
//!
//! Resuming needs no state of our own: `repo::parts` continues the store's upload in
//! progress for the object's key, as for packs, so a retry, a second clone or a restarted
//! agent sends only the parts that are missing. Content is trusted only once hashed
//! (`repo::lfs`): the completion hashes the assembled object and records the verdict, and a
//! wrong one is deleted (its parts are gone with the completion).

use super::lfs::LfsMismatch;
use super::parts::continue_or_start;
use super::upload::MAX_MULTIPART_SIZE;
use super::{Error, Repository};
use crate::storage::s3::multipart::part_sizes;
use crate::storage::{PresignMethod, PresignedTransfer};
use std::time::Duration;

/// What is left to send of one object ([`Repository::lfs_parts_plan`]).
#[derive(Debug)]
pub struct LfsPartsPlan {
    /// Stored and verified: nothing to send.
    pub done: bool,
    /// `None`: one `PUT` of the whole object (`parts` is part 1).
    pub upload_id: Option<String>,
    pub part_size: u64,
    /// Part number and its presigned `PUT`, for the parts still missing.
    pub parts: Vec<(u32, PresignedTransfer)>,
    /// Parts already stored by an earlier attempt.
    pub stored: Vec<u32>,
}

impl Repository {
    /// Start, or resume, the upload of LFS object `oid` of `size` bytes.
    pub async fn lfs_parts_plan(
        &self,
        oid: &str,
        size: u64,
        expires_in: Duration,
    ) -> Result<LfsPartsPlan, Error> {
        let key = self.lfs_key(oid)?;
        check_size(oid, size)?;
        if let Some(stored) = self.lfs_check(oid).await? {
            if stored.verified && stored.size == size {
                return Ok(LfsPartsPlan {
                    done: true,
                    upload_id: None,
                    part_size: size,
                    parts: Vec::new(),
                    stored: Vec::new(),
                });
            }
        }
        let Some(mp) = self
            .backend
            .multipart()
            .filter(|_| self.uses_multipart(size))
        else {
            let put = self
                .backend
                .presign(&key, PresignMethod::Put, expires_in, Some(size))
                .await?;
            return Ok(LfsPartsPlan {
                done: false,
                upload_id: None,
                part_size: size,
                parts: vec![(1, put)],
                stored: Vec::new(),
            });
        };
        let sizes = part_sizes(size, self.multipart.part_size);
        let what = format!("lfs object {oid}");
        let continued = continue_or_start(mp, &key, &sizes, expires_in, &what).await?;
        Ok(LfsPartsPlan {
            done: false,
            upload_id: Some(continued.upload_id),
            part_size: sizes[0],
            parts: continued.parts,
            stored: continued.stored,
        })
    }

    /// Finish the upload of `oid`: assemble its parts (with `upload_id`), then check its
    /// content as `verify` does ([`Repository::verify_lfs`]): `None` when it is right.
    pub async fn lfs_complete_parts(
        &self,
        oid: &str,
        size: u64,
        upload_id: Option<&str>,
        part_size: u64,
    ) -> Result<Option<LfsMismatch>, Error> {
        let key = self.lfs_key(oid)?;
        check_size(oid, size)?;
        if let Some(upload_id) = upload_id {
            let mp = self.backend.multipart().ok_or_else(|| Error::Invalid {
                detail: format!("lfs object {oid}: this store has no multipart uploads"),
            })?;
            let sizes = part_sizes(size, part_size);
            if sizes.len() > 1 && sizes[0] != part_size {
                return Err(Error::Invalid {
                    detail: format!(
                        "lfs object {oid}: part size {part_size} cannot split {size} bytes"
                    ),
                });
            }
            match mp.complete_upload(&key, upload_id, &sizes, true).await {
                Ok(_) => {}
                // Completed by another agent uploading the same object (its answer lost, or
                // two clones at once): what is stored is checked below like anything else.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.verify_lfs(oid, size).await
    }
}

fn check_size(oid: &str, size: u64) -> Result<(), Error> {
    if size > MAX_MULTIPART_SIZE {
        return Err(Error::Invalid {
            detail: format!(
                "lfs object {oid} is {size} bytes; the largest this server takes is {MAX_MULTIPART_SIZE}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::repo::testing::{put_part, repo_in_parts, MIB};
    use sha2::Digest;
    use std::time::Duration;

    /// A 12 MiB object in 5 MiB parts on local disk: two parts stored, the upload "cut";
    /// the next plan presigns only the third, completion assembles and verifies it, and a
    /// plan afterwards says done.
    #[tokio::test]
    async fn an_interrupted_upload_resumes_with_the_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let body: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
        let oid = hex::encode(sha2::Sha256::digest(&body));
        let size = body.len() as u64;
        let hour = Duration::from_secs(3600);
        let plan = repo.lfs_parts_plan(&oid, size, hour).await.unwrap();
        assert!(!plan.done);
        assert_eq!(plan.part_size, 5 * MIB);
        assert_eq!(plan.parts.len(), 3);
        let upload_id = plan.upload_id.clone().unwrap();
        // Parts 1 and 2 land; the transfer dies.
        let part = |n: u64| &body[((n - 1) * 5 * MIB) as usize..(n * 5 * MIB).min(size) as usize];
        for n in [1u32, 2] {
            put_part(&backend, &upload_id, n, part(n.into())).await;
        }
        let plan = repo.lfs_parts_plan(&oid, size, hour).await.unwrap();
        assert_eq!(plan.upload_id.as_deref(), Some(upload_id.as_str()));
        assert_eq!(plan.stored, [1, 2]);
        assert_eq!(plan.parts.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3]);
        put_part(&backend, &upload_id, 3, part(3)).await;
        let verdict = repo
            .lfs_complete_parts(&oid, size, Some(&upload_id), 5 * MIB)
            .await
            .unwrap();
        assert_eq!(verdict, None);
        let stored = backend.get(&repo.lfs_key(&oid).unwrap()).await.unwrap();
        assert_eq!(stored.body.as_ref(), body.as_slice());
        // The check that hashed it also cut its chunks: the index a later version's delta
        // matches against is there, the one the chunker makes of these bytes.
        let index = backend
            .get(&repo.lfs_chunks_key(&oid).unwrap())
            .await
            .unwrap();
        let mut chunker = crate::lfs_chunks::Chunker::new();
        chunker.feed(&body);
        assert_eq!(
            crate::lfs_chunks::decode(&index.body).unwrap(),
            (size, chunker.finish())
        );
        assert!(repo.lfs_parts_plan(&oid, size, hour).await.unwrap().done);
        // Retrying the completion (its answer lost) still says it is right.
        let again = repo
            .lfs_complete_parts(&oid, size, Some(&upload_id), 5 * MIB)
            .await
            .unwrap();
        assert_eq!(again, None);
    }

    /// Parts whose bytes are not the object's: completion finds the wrong SHA-256 and deletes
    /// what was assembled.
    #[tokio::test]
    async fn wrong_parts_are_assembled_then_refused_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let oid = hex::encode(sha2::Sha256::digest(b"the real thing"));
        let size = 6 * MIB;
        let plan = repo
            .lfs_parts_plan(&oid, size, Duration::from_secs(60))
            .await
            .unwrap();
        let upload_id = plan.upload_id.unwrap();
        for (n, len) in [(1u32, 5 * MIB), (2, MIB)] {
            put_part(&backend, &upload_id, n, &vec![0; len as usize]).await;
        }
        let verdict = repo
            .lfs_complete_parts(&oid, size, Some(&upload_id), 5 * MIB)
            .await
            .unwrap();
        assert_eq!(verdict, Some(crate::repo::LfsMismatch::Hash));
        assert_eq!(repo.lfs_check(&oid).await.unwrap(), None, "deleted");
    }
}
