//! Multipart uploads on the local store, with S3's rules (`storage::s3::multipart`), so that
//! a large LFS object or pack goes up in parallel parts, past one `PUT`'s size, and an
//! interrupted transfer resumes from the parts already stored, on `git hypha serve`'s own
//! disk as on S3.
//!
//! An upload is a directory `.hypha-multipart/{upload id}/` at the root: `upload.json` names
//! the target key and when the upload started, and part `n` is the ordinary key
//! `part-{n:05}` there, written by a presigned `PUT` through `/_store` like any object (whole
//! or not at all). An id's first 16 hex digits name its key, so the uploads of one key are
//! found without reading every record. No repository can reach that directory: workspace names never start
//! with a dot. Completion checks every part's size, copies the parts in order into a temp
//! file (removing each part once copied: the disk holds the object about once) and renames
//! it into place (create-only for packs), then removes the directory. A completion that
//! fails before it copies anything leaves the upload as it was; one that fails midway
//! leaves the upload open with the copied parts missing, which a resumed upload sends
//! again. Abandoned uploads are
//! aborted by the same sweep as on S3 (`Multipart::abort_stale_uploads`).

use super::{io_error, metadata_etag, LocalDisk, HEAD_HASH_LIMIT};
use crate::storage::s3::multipart::{
    check_part, check_parts, Multipart, MultipartUpload, MAX_PARTS,
};
use crate::storage::{check_key, Error, PresignMethod, PresignedTransfer, PutMode};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where uploads in progress live, directly under the root.
const DIR: &str = ".hypha-multipart";

/// Most uploads listed at once: the sweep and a resumed LFS upload read every `upload.json`.
const MAX_LISTED: usize = 100_000;

/// What `upload.json` records.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    key: String,
    initiated_unix: u64,
}

/// 16 hex digits of the SHA-256 of `key`: the first half of its uploads' ids.
fn key_tag(key: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8])
}

fn part_key(upload_id: &str, number: u32) -> String {
    format!("{DIR}/{upload_id}/part-{number:05}")
}

fn record_key(upload_id: &str) -> String {
    format!("{DIR}/{upload_id}/upload.json")
}

/// Ids are 32 lowercase hex digits made here: anything else names no upload of ours.
fn check_id(key: &str, upload_id: &str) -> Result<(), Error> {
    if upload_id.len() == 32
        && upload_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Ok(());
    }
    Err(Error::Invalid {
        detail: format!("{key}: invalid upload id"),
    })
}

impl LocalDisk {
    /// The upload `upload_id`, which must be one of `key`: an id of another key's upload
    /// (another repository's, say) is [`Error::NotFound`], as S3 answers it.
    fn record(&self, key: &str, upload_id: &str) -> Result<Record, Error> {
        check_key(key)?;
        check_id(key, upload_id)?;
        let path = self.inner.path(&record_key(upload_id))?;
        let body = match std::fs::read(&path) {
            Ok(body) => body,
            Err(e) => {
                return Err(match io_error(key, e) {
                    Error::NotFound { .. } => Error::NotFound {
                        key: format!("{key} (upload {upload_id})"),
                    },
                    other => other,
                })
            }
        };
        let record: Record = serde_json::from_slice(&body)
            .map_err(|e| Error::backend(key, format!("unreadable upload record: {e}")))?;
        if record.key != key {
            return Err(Error::NotFound {
                key: format!("{key} (upload {upload_id})"),
            });
        }
        Ok(record)
    }

    fn parts_of(&self, key: &str, upload_id: &str) -> Result<BTreeMap<u32, u64>, Error> {
        self.record(key, upload_id)?;
        let dir = self.inner.path(&format!("{DIR}/{upload_id}"))?;
        let mut parts = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| io_error(key, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(key, e))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_prefix("part-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(meta) = entry.metadata() {
                if meta.is_file() {
                    parts.insert(number, meta.len());
                }
            }
        }
        Ok(parts)
    }

    /// The blocking half of `complete_upload`.
    fn assemble(
        &self,
        key: &str,
        upload_id: &str,
        part_sizes: &[u64],
        replace: bool,
    ) -> Result<String, Error> {
        let stored = self.parts_of(key, upload_id)?;
        check_parts(key, part_sizes, &stored)?;
        let path = self.inner.path(key)?;
        if !replace && path.exists() {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        let (mut file, temp) = self.inner.create_temp(key)?;
        for n in 1..=part_sizes.len() as u32 {
            let part = self.inner.path(&part_key(upload_id, n))?;
            let mut from = std::fs::File::open(&part).map_err(|e| io_error(key, e))?;
            io::copy(&mut from, &mut file).map_err(|e| Error::backend(key, e))?;
            // Each part goes once it is copied, so the disk holds the object once plus a
            // part, not twice (12 GiB of parts beside 12 GiB assembled). Should the
            // completion stop here, the parts removed count as missing: a resumed upload
            // sends them again.
            let _ = std::fs::remove_file(&part);
        }
        file.flush().map_err(|e| Error::backend(key, e))?;
        file.sync_all().map_err(|e| Error::backend(key, e))?;
        drop(file);
        let mode = if replace {
            PutMode::Overwrite
        } else {
            PutMode::IfNoneMatch
        };
        self.inner.commit(key, temp, &path, &mode)?;
        let _ = std::fs::remove_dir_all(self.inner.path(&format!("{DIR}/{upload_id}"))?);
        let meta = std::fs::metadata(&path).map_err(|e| io_error(key, e))?;
        if meta.len() <= HEAD_HASH_LIMIT {
            return super::hash_file(key, &path);
        }
        Ok(metadata_etag(&meta))
    }

    /// Uploads whose key starts with `prefix`; with `tag`, only those whose id starts with it
    /// (see `create_upload`) have their record read.
    fn uploads_under(
        &self,
        prefix: &str,
        tag: Option<&str>,
    ) -> Result<Vec<MultipartUpload>, Error> {
        let dir = self.inner.root.join(DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::backend(DIR, e)),
        };
        let mut out = Vec::new();
        for entry in entries.take(MAX_LISTED) {
            let Ok(entry) = entry else { continue };
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_id(DIR, &id).is_err() || tag.is_some_and(|t| !id.starts_with(t)) {
                continue;
            }
            // Completed or aborted meanwhile, or still being created: not an upload to list.
            let Ok(body) = std::fs::read(entry.path().join("upload.json")) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Record>(&body) else {
                continue;
            };
            if record.key.starts_with(prefix) {
                out.push(MultipartUpload {
                    key: record.key,
                    upload_id: id,
                    initiated: Some(UNIX_EPOCH + Duration::from_secs(record.initiated_unix)),
                });
            }
        }
        out.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(out)
    }
}

#[async_trait]
impl Multipart for LocalDisk {
    async fn create_upload(&self, key: &str) -> Result<String, Error> {
        check_key(key)?;
        // The first half names the key, so that finding a key's uploads reads the names of
        // the uploads in progress, not each one's record.
        let upload_id = format!("{}{}", key_tag(key), hex::encode(rand::random::<[u8; 8]>()));
        let record = Record {
            key: key.to_owned(),
            initiated_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let body = serde_json::to_vec(&record).map_err(|e| Error::backend(key, e))?;
        crate::storage::Backend::put(
            self,
            &record_key(&upload_id),
            body.into(),
            PutMode::IfNoneMatch,
        )
        .await?;
        Ok(upload_id)
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        check_part(key, part_number, content_length)?;
        let disk = self.clone();
        let (k, id) = (key.to_owned(), upload_id.to_owned());
        super::blocking(key.to_owned(), move || disk.record(&k, &id).map(|_| ())).await?;
        crate::storage::Backend::presign(
            self,
            &part_key(upload_id, part_number),
            PresignMethod::Put,
            expires_in,
            Some(content_length),
        )
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<(), Error> {
        check_part(key, part_number, body.len() as u64)?;
        let disk = self.clone();
        let (k, id) = (key.to_owned(), upload_id.to_owned());
        super::blocking(key.to_owned(), move || disk.record(&k, &id).map(|_| ())).await?;
        crate::storage::Backend::put(
            self,
            &part_key(upload_id, part_number),
            body,
            PutMode::Overwrite,
        )
        .await
        .map(|_| ())
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        part_sizes: &[u64],
        replace: bool,
    ) -> Result<String, Error> {
        if part_sizes.is_empty() || part_sizes.len() as u64 > MAX_PARTS {
            return Err(Error::Invalid {
                detail: format!("{key}: an upload has 1 to {MAX_PARTS} parts"),
            });
        }
        let disk = self.clone();
        let (k, id, sizes) = (key.to_owned(), upload_id.to_owned(), part_sizes.to_vec());
        super::blocking(key.to_owned(), move || {
            disk.assemble(&k, &id, &sizes, replace)
        })
        .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<BTreeMap<u32, u64>, Error> {
        let disk = self.clone();
        let (k, id) = (key.to_owned(), upload_id.to_owned());
        super::blocking(key.to_owned(), move || disk.parts_of(&k, &id)).await
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        let disk = self.clone();
        let (k, id) = (key.to_owned(), upload_id.to_owned());
        super::blocking(key.to_owned(), move || match disk.record(&k, &id) {
            Ok(_) => {
                let dir = disk.inner.path(&format!("{DIR}/{id}"))?;
                match std::fs::remove_dir_all(dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::backend(&k, e)),
                }
            }
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>, Error> {
        let disk = self.clone();
        let p = prefix.to_owned();
        super::blocking(prefix.to_owned(), move || disk.uploads_under(&p, None)).await
    }

    async fn find_upload(&self, key: &str) -> Result<Option<MultipartUpload>, Error> {
        let disk = self.clone();
        let k = key.to_owned();
        let uploads = super::blocking(key.to_owned(), move || {
            disk.uploads_under(&k, Some(&key_tag(&k)))
        })
        .await?;
        Ok(uploads
            .into_iter()
            .filter(|u| u.key == key)
            .max_by_key(|u| u.initiated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::s3::multipart::MAX_PART_SIZE;
    use crate::storage::Backend;

    const MIB: u64 = 1024 * 1024;

    /// Write part `n` the way a presigned `PUT` through `/_store` does.
    async fn put_part(disk: &LocalDisk, id: &str, n: u32, byte: u8, len: u64) {
        disk.put(
            &part_key(id, n),
            vec![byte; len as usize].into(),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn parts_assemble_in_order_and_resume_from_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        let key = "ws/artifacts/r/git/lfs/objects/aa/bb/x";
        let id = disk.create_upload(key).await.unwrap();
        let sizes = [5 * MIB, 5 * MIB, 3];
        put_part(&disk, &id, 1, b'a', 5 * MIB).await;
        put_part(&disk, &id, 3, b'c', 3).await;
        // A resumed transfer learns what is there, and a completion names what is not.
        let stored = disk.list_parts(key, &id).await.unwrap();
        assert_eq!(stored, BTreeMap::from([(1, 5 * MIB), (3, 3)]));
        let err = disk
            .complete_upload(key, &id, &sizes, true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("part 2 was not uploaded"), "{err}");
        put_part(&disk, &id, 2, b'b', 5 * MIB).await;
        // Another key's view of the upload id finds nothing.
        assert!(matches!(
            disk.list_parts("ws/other", &id).await,
            Err(Error::NotFound { .. })
        ));
        disk.complete_upload(key, &id, &sizes, true).await.unwrap();
        let whole = disk.get(key).await.unwrap().body;
        assert_eq!(whole.len() as u64, 10 * MIB + 3);
        assert_eq!(whole[0], b'a');
        assert_eq!(whole[(5 * MIB) as usize], b'b');
        assert_eq!(&whole[(10 * MIB) as usize..], b"ccc");
        assert!(
            disk.list_uploads("").await.unwrap().is_empty(),
            "cleaned up"
        );
        // Create-only completion never replaces what is stored.
        let id = disk.create_upload(key).await.unwrap();
        put_part(&disk, &id, 1, b'z', 3).await;
        assert!(matches!(
            disk.complete_upload(key, &id, &[3], false).await,
            Err(Error::AlreadyExists { .. })
        ));
        let listed = disk.list_uploads("ws/artifacts/r/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].upload_id, id);
        disk.abort_upload(key, &id).await.unwrap();
        assert!(disk.list_uploads("").await.unwrap().is_empty());
        assert!(disk.abort_upload(key, &id).await.is_ok(), "gone is fine");
    }

    #[tokio::test]
    async fn ids_that_name_no_upload_of_the_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        for id in ["../../etc", "", "ABCDEF0123456789ABCDEF0123456789"] {
            assert!(disk
                .presign_part("k", id, 1, 10, Duration::from_secs(60))
                .await
                .is_err());
        }
        let id = hex::encode([7u8; 16]);
        assert!(matches!(
            disk.presign_part("k", &id, 1, 10, Duration::from_secs(60))
                .await,
            Err(Error::NotFound { .. })
        ));
        let real = disk.create_upload("k").await.unwrap();
        assert!(disk
            .presign_part("k", &real, 0, 10, Duration::from_secs(60))
            .await
            .is_err());
        assert!(disk
            .presign_part("k", &real, 1, MAX_PART_SIZE + 1, Duration::from_secs(60))
            .await
            .is_err());
        assert!(disk
            .presign_part("k", &real, 1, 10, Duration::from_secs(60))
            .await
            .is_ok());
    }
}
