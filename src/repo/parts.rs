//! Continuing a multipart upload cut part way (issue 22), for LFS objects
//! (`repo::lfs_parts`) and packs (`repo::upload`) alike.
//!
//! No state of our own: the upload in progress for a key is the store's
//! (`ListMultipartUploads` under the key), and the parts it holds say what is left
//! (`ListParts`). Parts of the right size are kept, the rest presigned again. The split is
//! fixed by the object's size and the server's part size, so every attempt computes the same
//! parts. A store that cannot list uploads (s3s-fs has no `ListMultipartUploads`) starts a new
//! upload, with a warning in the log: that costs the parts sent before, not the upload.

use crate::storage::s3::multipart::Multipart;
use crate::storage::{Error, PresignedTransfer};
use std::collections::BTreeMap;
use std::time::Duration;

/// An upload continued or started by [`continue_or_start`].
#[derive(Debug)]
pub(super) struct Continued {
    pub upload_id: String,
    /// Part number and its presigned `PUT`, for the parts still missing, in order.
    pub parts: Vec<(u32, PresignedTransfer)>,
    /// Parts already stored by an earlier attempt, ascending.
    pub stored: Vec<u32>,
    /// Whether the store could be asked for uploads in progress (so asking again continues
    /// this one).
    pub resumable: bool,
}

/// Continue the newest upload in progress of exactly `key`, or start one, for an object cut
/// into parts of `sizes` (part `i + 1` has `sizes[i]` bytes). `what` names the object in the
/// warning of a store that cannot list uploads.
pub(super) async fn continue_or_start(
    mp: &dyn Multipart,
    key: &str,
    sizes: &[u64],
    expires_in: Duration,
    what: &str,
) -> Result<Continued, Error> {
    let (found, resumable) = match resumable(mp, key).await {
        Ok(found) => (found, true),
        Err(e @ Error::Backend { .. }) => {
            tracing::warn!("warning: upload of {what} cannot resume, starting over: {e}");
            (None, false)
        }
        Err(e) => return Err(e),
    };
    let (upload_id, held) = match found {
        Some(found) => found,
        None => (mp.create_upload(key).await?, BTreeMap::new()),
    };
    let mut parts = Vec::new();
    let mut stored = Vec::new();
    for (number, len) in (1u32..).zip(sizes) {
        if held.get(&number) == Some(len) {
            stored.push(number);
            continue;
        }
        let url = mp
            .presign_part(key, &upload_id, number, *len, expires_in)
            .await?;
        parts.push((number, url));
    }
    Ok(Continued {
        upload_id,
        parts,
        stored,
        resumable,
    })
}

/// The newest upload in progress of exactly `key`, and the parts it holds (number -> size).
/// [`Error::Backend`] when the store cannot list uploads.
async fn resumable(
    mp: &dyn Multipart,
    key: &str,
) -> Result<Option<(String, BTreeMap<u32, u64>)>, Error> {
    let Some(upload) = mp.find_upload(key).await? else {
        return Ok(None);
    };
    match mp.list_parts(key, &upload.upload_id).await {
        Ok(parts) => Ok(Some((upload.upload_id, parts))),
        // Completed or aborted since it was listed: start afresh.
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use crate::repo::testing::{put_part, repo_in_parts, MIB};
    use crate::repo::upload::PackUpload;
    use std::time::Duration;

    /// A pack's upload cut after two of its three parts: `uploads` with `resume` continues it
    /// (same upload id, parts 1 and 2 stored, part 3 presigned), a pending marker of the cut
    /// push notwithstanding; without `resume` a new upload starts, as for older helpers.
    #[tokio::test]
    async fn a_cut_pack_upload_is_continued_with_its_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let spec = PackUpload {
            name: format!("pack-{}", "a".repeat(40)),
            pack_size: 12 * MIB,
            idx_size: 100,
            upload_id: None,
            resume: true,
        };
        let hour = Duration::from_secs(3600);
        let first = repo.presign_upload(&spec, hour).await.unwrap();
        let first = first.multipart.expect("in parts");
        assert_eq!((first.parts.len(), first.stored.len()), (3, 0));
        assert!(first.resumable);
        for n in [1u32, 2] {
            put_part(
                &backend,
                &first.upload_id,
                n,
                &vec![7u8; (5 * MIB) as usize],
            )
            .await;
        }
        let again = repo.presign_upload(&spec, hour).await.unwrap();
        let again = again.multipart.expect("in parts");
        assert_eq!(again.upload_id, first.upload_id);
        assert_eq!(
            (again.parts.len(), again.stored.as_slice()),
            (1, &[1, 2][..])
        );
        // The one part presigned is the third: the 2 MiB left.
        let length = again.parts[0]
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str());
        assert_eq!(length, Some("2097152"));

        let fresh = PackUpload {
            resume: false,
            ..spec
        };
        let other = repo.presign_upload(&fresh, hour).await.unwrap();
        let other = other.multipart.expect("in parts");
        assert_ne!(other.upload_id, first.upload_id);
        assert_eq!((other.parts.len(), other.stored.len()), (3, 0));
        assert!(!other.resumable);
    }
}
