//! A new version of a large LFS object from the chunks its stored bases lack (issue 22 part
//! 4; the `.../objects/parts/{oid}/delta` routes, `server::lfs_parts`; docs/design.md §14).
//!
//! 1. Plan: the agent sends the new object's chunk list (`lfs_chunks`) and a few oids it
//!    holds locally that the server may hold too. The server reads each base's chunk index,
//!    its own (`git/lfs/chunks/aa/bb/{oid}`, written only by this server from bytes it read;
//!    a writer's index is never taken), matches chunks by name, and stores the plan (which
//!    runs come from which base's bytes, which are sent) under `git/lfs/delta/{oid}/{id}/`
//!    with a presigned `PUT` for each sent run.
//! 2. Complete: the server reads the plan back (its own), streams the base ranges and the
//!    sent runs in order into a multipart upload of the object's usual key, hashing and
//!    chunking as it goes, and completes the upload only if the SHA-256 is the oid. A wrong
//!    plan, a lying or stale index, a missing base or sent run: the upload is aborted and
//!    nothing is published; the agent then sends the object whole. The bases' indexes of a
//!    plan that made wrong bytes are deleted (computed again from the bytes when next
//!    needed). The new object's index is the one computed on the way.
//!
//! Hypha still sees whole objects at `git/lfs/objects/aa/bb/{oid}`. Memory: one part (8 MiB
//! for objects up to 78 GiB), one ranged read (at most the part), the chunk list (20 bytes a
//! chunk, ~4 MB for 12 GiB) and, while planning, the bases' indexes and a table of their
//! chunks (at most [`MAX_BASE_CHUNKS`], ~70 bytes each with the index), two plans at a time.

use super::lfs::LfsMismatch;
use super::{Error, Repository};
use crate::api::lfs::MAX_DELTA_RANGES;
use crate::lfs_chunks::{self, Chunk, Chunker, HASH_LEN, MAX_CHUNKS};
use crate::storage::s3::multipart::MAX_PARTS;
use crate::storage::{PresignMethod, PresignedTransfer, PutMode};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Most segments (copied or sent) of one plan.
const MAX_SEGMENTS: usize = 65_536;

/// A sent run longer than this is cut in several (each one presigned `PUT`).
const MAX_RUN: u64 = 256 * 1024 * 1024;

/// Chunks of all bases together that one plan matches against.
pub const MAX_BASE_CHUNKS: usize = 1_000_000;

/// Bytes read from the store at a time while indexing or assembling.
const READ: u64 = 8 * 1024 * 1024;

/// Smallest part of the assembled object (S3 needs 5 MiB).
const MIN_PART: u64 = 8 * 1024 * 1024;

/// Largest stored plan read back (ours, but read as bytes from a store).
const MAX_PLAN_BYTES: usize = 16 * 1024 * 1024;

/// Less than this share of the object found in bases: not worth a plan.
const MIN_REUSE_DIVISOR: u64 = 10;

/// One base index computed at a time per server (each reads a whole object); a plan that
/// finds it busy goes on without that base.
static INDEXING: Semaphore = Semaphore::const_new(1);

/// Plans matched at once per server (each holds a table of its bases' chunks).
static PLANNING: Semaphore = Semaphore::const_new(2);

/// What the agent sends ([`Repository::lfs_delta_plan`]).
#[derive(Debug)]
pub struct LfsDeltaPlan {
    pub done: bool,
    /// `None`: no base helps; upload in parts.
    pub id: Option<String>,
    /// Offset and length in the new object, and the presigned `PUT` for it.
    pub ranges: Vec<(u64, u64, PresignedTransfer)>,
    pub reused: u64,
}

impl LfsDeltaPlan {
    fn declined() -> LfsDeltaPlan {
        LfsDeltaPlan {
            done: false,
            id: None,
            ranges: Vec::new(),
            reused: 0,
        }
    }
}

/// The plan as stored between the two requests.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPlan {
    size: u64,
    bases: Vec<String>,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Segment {
    /// Bytes `offset..offset + len` of base `base`.
    Copy { base: usize, offset: u64, len: u64 },
    /// Sent run `run` (its own staged key), `len` bytes.
    Sent { run: u32, len: u64 },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Copy { len, .. } | Segment::Sent { len, .. } => *len,
        }
    }
}

impl Repository {
    pub(super) fn lfs_chunks_key(&self, oid: &str) -> Result<String, Error> {
        self.lfs_path("chunks", oid)
    }

    /// Store this server's index of object `oid` (`size` bytes), from chunks it cut itself
    /// from bytes whose SHA-256 it checked.
    pub(super) async fn lfs_store_chunk_index(
        &self,
        oid: &str,
        size: u64,
        chunks: &[Chunk],
    ) -> Result<(), Error> {
        let body = Bytes::from(lfs_chunks::encode(size, chunks));
        let index_key = self.lfs_chunks_key(oid)?;
        self.backend
            .put(&index_key, body, PutMode::Overwrite)
            .await?;
        Ok(())
    }

    fn lfs_delta_dir(&self, oid: &str, id: &str) -> Result<String, Error> {
        self.lfs_key(oid)?;
        if id.len() != 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(Error::Invalid {
                detail: format!("invalid lfs delta id {:?}", crate::storage::shorten(id)),
            });
        }
        Ok(format!("{}{oid}/{id}/", self.lfs_delta_root()))
    }

    /// Plan the upload of `oid` (`size` bytes, cut into `chunks`) from `bases`.
    pub async fn lfs_delta_plan(
        &self,
        oid: &str,
        size: u64,
        chunks: &[Chunk],
        bases: &[String],
        expires_in: Duration,
    ) -> Result<LfsDeltaPlan, Error> {
        let key = self.lfs_key(oid)?;
        if let Some(stored) = self.lfs_check(oid).await? {
            if stored.verified && stored.size == size {
                return Ok(LfsDeltaPlan {
                    done: true,
                    ..LfsDeltaPlan::declined()
                });
            }
        }
        if self.backend.multipart().is_none() || !self.uses_multipart(size) {
            return Ok(LfsDeltaPlan::declined());
        }
        let _planning = PLANNING
            .acquire()
            .await
            .map_err(|e| Error::backend(&key, e))?;
        let mut indexes = Vec::new();
        let mut total = 0usize;
        for base in bases.iter().take(crate::api::lfs::MAX_DELTA_BASES) {
            if base == oid || indexes.iter().any(|(b, _)| b == base) {
                continue;
            }
            let Some(index) = self.lfs_chunk_index(base).await? else {
                continue;
            };
            if total + index.len() > MAX_BASE_CHUNKS {
                break;
            }
            total += index.len();
            indexes.push((base.clone(), index));
        }
        let Some((segments, reused)) = match_chunks(size, chunks, &indexes) else {
            return Ok(LfsDeltaPlan::declined());
        };
        let id = hex::encode(rand::random::<[u8; 16]>());
        let dir = self.lfs_delta_dir(oid, &id)?;
        let mut ranges = Vec::new();
        let mut at = 0u64;
        for seg in &segments {
            if let Segment::Sent { run, len } = seg {
                let url = self
                    .backend
                    .presign(
                        &format!("{dir}{run:05}"),
                        PresignMethod::Put,
                        expires_in,
                        Some(*len),
                    )
                    .await?;
                ranges.push((at, *len, url));
            }
            at += seg.len();
        }
        let plan = StoredPlan {
            size,
            bases: indexes.into_iter().map(|(b, _)| b).collect(),
            segments,
        };
        let body = serde_json::to_vec(&plan).map_err(|e| Error::backend(&dir, e))?;
        self.backend
            .put(&format!("{dir}plan"), Bytes::from(body), PutMode::Overwrite)
            .await?;
        Ok(LfsDeltaPlan {
            done: false,
            id: Some(id),
            ranges,
            reused,
        })
    }

    /// The chunks of stored object `oid`, from this server's index of it; computed now (and
    /// stored) when there is none yet, if no other is being computed. `None`: not stored, not
    /// right, too many chunks, or the indexer is busy.
    async fn lfs_chunk_index(&self, oid: &str) -> Result<Option<Vec<Chunk>>, Error> {
        let key = self.lfs_key(oid)?;
        let index_key = self.lfs_chunks_key(oid)?;
        let size = match self.backend.head(&key).await {
            Ok(meta) => meta.size,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.backend.get(&index_key).await {
            Ok(obj) => match lfs_chunks::decode(&obj.body) {
                Ok((indexed, chunks)) if indexed == size => return Ok(Some(chunks)),
                Ok(_) | Err(_) => {
                    tracing::warn!("warning: lfs chunk index of {oid} is unusable; indexing again")
                }
            },
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let Ok(_indexing) = INDEXING.try_acquire() else {
            tracing::info!("lfs chunk index of {oid} skipped: another is being computed");
            return Ok(None);
        };
        let (sha, chunks) = match self.lfs_sha256(&key, size, true).await {
            Ok(read) => read,
            // Replaced or removed while read: no base.
            Err(Error::NotFound { .. } | Error::InvalidRange { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(chunks) = chunks.filter(|_| sha == oid) else {
            return Ok(None);
        };
        self.lfs_store_chunk_index(oid, size, &chunks).await?;
        tracing::info!("lfs chunk index of {oid}: {} chunks", chunks.len());
        Ok(Some(chunks))
    }

    /// Assemble `oid` from plan `id` and check it: `None` when it is stored and right;
    /// [`LfsMismatch::Hash`] when the plan made other bytes (nothing was stored). The plan's
    /// keys are deleted either way.
    pub async fn lfs_delta_complete(
        &self,
        oid: &str,
        size: u64,
        id: &str,
    ) -> Result<Option<LfsMismatch>, Error> {
        let dir = self.lfs_delta_dir(oid, id)?;
        let plan_key = format!("{dir}plan");
        if let Some(stored) = self.lfs_check(oid).await? {
            if stored.verified && stored.size == size {
                self.lfs_delta_cleanup(&dir, None).await;
                return Ok(None);
            }
        }
        let obj = self.backend.get(&plan_key).await?;
        if obj.body.len() > MAX_PLAN_BYTES {
            return Err(Error::Invalid {
                detail: format!("lfs delta plan {id} of {oid} is too large"),
            });
        }
        let plan: StoredPlan = serde_json::from_slice(&obj.body).map_err(|e| Error::Invalid {
            detail: format!("lfs delta plan {id} of {oid} is unreadable: {e}"),
        })?;
        if plan.size != size || plan.segments.iter().map(Segment::len).sum::<u64>() != size {
            return Err(Error::Invalid {
                detail: format!("lfs delta plan {id} of {oid} is for another size"),
            });
        }
        let outcome = self.lfs_assemble(oid, &dir, &plan).await;
        self.lfs_delta_cleanup(&dir, Some(&plan)).await;
        outcome
    }

    async fn lfs_assemble(
        &self,
        oid: &str,
        dir: &str,
        plan: &StoredPlan,
    ) -> Result<Option<LfsMismatch>, Error> {
        let key = self.lfs_key(oid)?;
        let mp = self.backend.multipart().ok_or_else(|| Error::Invalid {
            detail: format!("lfs object {oid}: this store has no multipart uploads"),
        })?;
        let part_size = plan
            .size
            .div_ceil(MAX_PARTS)
            .next_multiple_of(1024 * 1024)
            .max(MIN_PART);
        let upload_id = mp.create_upload(&key).await?;
        let mut writer = Assembler {
            buf: BytesMut::new(),
            sizes: Vec::new(),
            sha: Sha256::new(),
            chunker: Chunker::new(),
        };
        let written = async {
            for seg in &plan.segments {
                let (source, start) = match seg {
                    Segment::Copy { base, offset, .. } => {
                        let base = plan.bases.get(*base).ok_or_else(|| Error::Invalid {
                            detail: format!("lfs delta plan of {oid} names no such base"),
                        })?;
                        (self.lfs_key(base)?, *offset)
                    }
                    Segment::Sent { run, len } => {
                        let run_key = format!("{dir}{run:05}");
                        let sent = self.backend.head(&run_key).await?.size;
                        if sent != *len {
                            return Err(Error::Invalid {
                                detail: format!(
                                    "lfs object {oid}: sent run {run} has {sent} bytes, not {len}"
                                ),
                            });
                        }
                        (run_key, 0)
                    }
                };
                let end = start + seg.len();
                let mut at = start;
                while at < end {
                    let n = (end - at)
                        .min(READ)
                        .min(part_size - writer.buf.len() as u64);
                    let bytes = self.backend.get_range(&source, at..at + n).await?;
                    if bytes.len() as u64 != n {
                        return Err(Error::backend(&source, "short ranged read"));
                    }
                    writer.feed(&bytes);
                    if writer.buf.len() as u64 == part_size {
                        let number = writer.sizes.len() as u32 + 1;
                        let part = writer.take();
                        mp.upload_part(&key, &upload_id, number, part).await?;
                    }
                    at += n;
                }
            }
            if !writer.buf.is_empty() || writer.sizes.is_empty() {
                let number = writer.sizes.len() as u32 + 1;
                let part = writer.take();
                mp.upload_part(&key, &upload_id, number, part).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = written {
            let _ = mp.abort_upload(&key, &upload_id).await;
            return match e {
                // A base or sent run gone, or shorter than the plan says: the plan cannot
                // be carried out; the agent sends the object whole.
                Error::NotFound { .. } | Error::InvalidRange { .. } => Err(Error::Invalid {
                    detail: format!(
                        "lfs object {oid}: the delta's base or sent bytes are gone ({e})"
                    ),
                }),
                e => Err(e),
            };
        }
        let Assembler {
            sizes,
            sha,
            chunker,
            ..
        } = writer;
        if hex::encode(sha.finalize()) != oid {
            let _ = mp.abort_upload(&key, &upload_id).await;
            // An index that led to wrong bytes is not used again: the next plan that names
            // these bases indexes them afresh from their bytes.
            for base in &plan.bases {
                if let Ok(index_key) = self.lfs_chunks_key(base) {
                    let _ = self.backend.delete(&index_key, None).await;
                }
            }
            return Ok(Some(LfsMismatch::Hash));
        }
        let etag = mp.complete_upload(&key, &upload_id, &sizes, true).await?;
        self.lfs_mark_verified(oid, &etag).await?;
        let chunks = chunker.finish();
        if chunks.len() <= MAX_CHUNKS {
            self.backend
                .put(
                    &self.lfs_chunks_key(oid)?,
                    Bytes::from(lfs_chunks::encode(plan.size, &chunks)),
                    PutMode::Overwrite,
                )
                .await?;
        }
        Ok(None)
    }

    /// Delete a plan's keys (best effort: a leftover costs storage, not correctness).
    async fn lfs_delta_cleanup(&self, dir: &str, plan: Option<&StoredPlan>) {
        let mut keys = vec![format!("{dir}plan")];
        if let Some(plan) = plan {
            for seg in &plan.segments {
                if let Segment::Sent { run, .. } = seg {
                    keys.push(format!("{dir}{run:05}"));
                }
            }
        } else if let Ok(listed) = self.backend.list(dir).await {
            keys.extend(listed.into_iter().map(|m| m.key));
        }
        let backend = &self.backend;
        futures_util::stream::iter(keys)
            .for_each_concurrent(16, |key| async move {
                if let Err(e) = backend.delete(&key, None).await {
                    tracing::warn!("warning: cannot delete lfs delta staging {key}: {e}");
                }
            })
            .await;
    }
}

/// The bytes of the object being assembled: hashed, chunked, and cut into parts.
struct Assembler {
    buf: BytesMut,
    sizes: Vec<u64>,
    sha: Sha256,
    chunker: Chunker,
}

impl Assembler {
    fn feed(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.chunker.feed(bytes);
        self.buf.extend_from_slice(bytes);
    }

    fn take(&mut self) -> Bytes {
        self.sizes.push(self.buf.len() as u64);
        self.buf.split().freeze()
    }
}

/// The segments of a new object of `size` bytes cut into `chunks`, each chunk taken from
/// the first base that holds a chunk of its name and length, the rest sent; and the bytes
/// taken. `None` when the chunks do not make `size`, too little is found, or the plan would
/// be too large.
fn match_chunks(
    size: u64,
    chunks: &[Chunk],
    bases: &[(String, Vec<Chunk>)],
) -> Option<(Vec<Segment>, u64)> {
    if chunks.iter().map(|c| u64::from(c.len)).sum::<u64>() != size {
        return None;
    }
    let mut table: HashMap<[u8; HASH_LEN], (usize, u64, u32)> = HashMap::new();
    for (b, (_, base)) in bases.iter().enumerate() {
        let mut offset = 0u64;
        for c in base {
            table.entry(c.hash).or_insert((b, offset, c.len));
            offset += u64::from(c.len);
        }
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut reused = 0u64;
    let mut runs = 0u32;
    for c in chunks {
        let len = u64::from(c.len);
        match table.get(&c.hash) {
            Some(&(b, offset, l)) if l == c.len => {
                reused += len;
                if let Some(Segment::Copy {
                    base,
                    offset: o,
                    len: n,
                }) = segments.last_mut()
                {
                    if *base == b && *o + *n == offset {
                        *n += len;
                        continue;
                    }
                }
                segments.push(Segment::Copy {
                    base: b,
                    offset,
                    len,
                });
            }
            _ => {
                if let Some(Segment::Sent { len: n, .. }) = segments.last_mut() {
                    if *n + len <= MAX_RUN {
                        *n += len;
                        continue;
                    }
                }
                runs += 1;
                segments.push(Segment::Sent { run: runs, len });
            }
        }
        if segments.len() > MAX_SEGMENTS || runs as usize > MAX_DELTA_RANGES {
            return None;
        }
    }
    if reused == 0 || reused < size / MIN_REUSE_DIVISOR {
        return None;
    }
    Some((segments, reused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testing::repo_in_parts;
    use crate::storage::Backend;
    use std::sync::Arc;

    const MIB: usize = 1024 * 1024;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn chunks(data: &[u8]) -> Vec<Chunk> {
        let mut c = Chunker::new();
        c.feed(data);
        c.finish()
    }

    fn oid(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn matching_copies_runs_of_the_base_and_sends_the_rest() {
        let old = noise(4 * MIB, 1);
        let mut new = old.clone();
        new[2 * MIB..2 * MIB + 10].copy_from_slice(b"0123456789");
        let base = vec![("b".to_owned(), chunks(&old))];
        let (segments, reused) = match_chunks(new.len() as u64, &chunks(&new), &base).unwrap();
        assert_eq!(segments.len(), 3, "{segments:?}");
        assert!(matches!(segments[1], Segment::Sent { run: 1, .. }));
        assert_eq!(
            reused + segments[1].len(),
            new.len() as u64,
            "every byte copied or sent"
        );
        // Nothing in common: no plan.
        let other = vec![("b".to_owned(), chunks(&noise(4 * MIB, 9)))];
        assert!(match_chunks(new.len() as u64, &chunks(&new), &other).is_none());
        // Chunks that do not make the size: no plan.
        assert!(match_chunks(new.len() as u64 + 1, &chunks(&new), &base).is_none());
    }

    /// Store `data` as an object, as an upload leaves it.
    async fn put_object(backend: &Arc<dyn Backend>, repo: &Repository, data: &[u8]) {
        let key = repo.lfs_key(&oid(data)).unwrap();
        backend
            .put(&key, data.to_vec().into(), PutMode::Overwrite)
            .await
            .unwrap();
    }

    /// Plan `new` against `base`, as the agent asks.
    async fn plan(repo: &Repository, new: &[u8], base: &str) -> LfsDeltaPlan {
        let (size, hour) = (new.len() as u64, Duration::from_secs(3600));
        let bases = [base.to_owned()];
        repo.lfs_delta_plan(&oid(new), size, &chunks(new), &bases, hour)
            .await
            .unwrap()
    }

    /// PUT the runs `plan` asks for, from `new`, as the agent sends them; the plan's folder.
    async fn send_runs(
        backend: &Arc<dyn Backend>,
        repo: &Repository,
        new: &[u8],
        plan: &LfsDeltaPlan,
    ) -> String {
        let id = plan.id.as_deref().expect("a plan");
        let dir_key = repo.lfs_delta_dir(&oid(new), id).unwrap();
        for (i, (at, len, _)) in plan.ranges.iter().enumerate() {
            let run = &new[*at as usize..(*at + *len) as usize];
            let key = format!("{dir_key}{:05}", i + 1);
            backend
                .put(&key, run.to_vec().into(), PutMode::Overwrite)
                .await
                .unwrap();
        }
        dir_key
    }

    /// v1 stored whole; v2 planned against it (its index computed on the way), the one sent
    /// run stored, assembled: byte for byte v2, verified, indexed, staging gone. The same
    /// plan with a base whose index lies makes other bytes: refused, nothing stored.
    #[tokio::test]
    async fn a_new_version_is_assembled_from_its_base_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let v1 = noise(20 * MIB, 1);
        let mut v2 = v1.clone();
        v2[9 * MIB..9 * MIB + 5000].fill(7);
        let (o1, o2) = (oid(&v1), oid(&v2));
        put_object(&backend, &repo, &v1).await;
        let plan2 = plan(&repo, &v2, &o1).await;
        let id = plan2.id.clone().expect("a plan");
        let sent: u64 = plan2.ranges.iter().map(|r| r.1).sum();
        assert!(sent > 0 && sent < MIB as u64, "{sent}");
        assert_eq!(plan2.reused + sent, v2.len() as u64);
        let dir_key = send_runs(&backend, &repo, &v2, &plan2).await;
        let verdict = repo
            .lfs_delta_complete(&o2, v2.len() as u64, &id)
            .await
            .unwrap();
        assert_eq!(verdict, None);
        let stored = backend.get(&repo.lfs_key(&o2).unwrap()).await.unwrap();
        assert!(stored.body.as_ref() == v2.as_slice());
        assert!(repo.lfs_check(&o2).await.unwrap().unwrap().verified);
        assert!(backend.list(&dir_key).await.unwrap().is_empty());
        let index = backend
            .get(&repo.lfs_chunks_key(&o2).unwrap())
            .await
            .unwrap();
        assert_eq!(lfs_chunks::decode(&index.body).unwrap().1, chunks(&v2));

        // v3 against v1 whose index now lies (it claims v1 holds every chunk of v3 where
        // v3 has it): the assembly hashes to another oid, nothing is stored.
        let mut v3 = v1.clone();
        v3[MIB..MIB + 10].fill(1);
        let o3 = oid(&v3);
        let lie = chunks(&v3);
        backend
            .put(
                &repo.lfs_chunks_key(&o1).unwrap(),
                lfs_chunks::encode(v1.len() as u64, &lie).into(),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        let plan3 = plan(&repo, &v3, &o1).await;
        let id = plan3.id.clone().expect("a plan");
        let dir_key = send_runs(&backend, &repo, &v3, &plan3).await;
        let verdict = repo
            .lfs_delta_complete(&o3, v3.len() as u64, &id)
            .await
            .unwrap();
        assert_eq!(verdict, Some(LfsMismatch::Hash));
        assert_eq!(repo.lfs_check(&o3).await.unwrap(), None, "nothing stored");
        assert!(backend.list(&dir_key).await.unwrap().is_empty());
        let dropped = backend.get(&repo.lfs_chunks_key(&o1).unwrap()).await;
        assert!(dropped.is_err(), "the lying index is dropped");

        // The next plan indexes v1 afresh; v1 is gone before completion: a clear error,
        // nothing stored.
        let id = plan(&repo, &v3, &o1)
            .await
            .id
            .expect("a plan from the fresh index");
        backend
            .delete(&repo.lfs_key(&o1).unwrap(), None)
            .await
            .unwrap();
        let err = repo
            .lfs_delta_complete(&o3, v3.len() as u64, &id)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        assert_eq!(repo.lfs_check(&o3).await.unwrap(), None, "nothing stored");
    }

    /// A plan whose `complete` never comes (the agent was killed after sending its run): a
    /// sweep within the grace period keeps it, one past it deletes the plan and its run and
    /// nothing else, and a late completion is then a clear error that stores nothing.
    #[tokio::test]
    async fn a_plan_never_completed_is_swept_past_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let v1 = noise(12 * MIB, 3);
        let mut v2 = v1.clone();
        v2[MIB..MIB + 100].fill(9);
        let (o1, o2) = (oid(&v1), oid(&v2));
        put_object(&backend, &repo, &v1).await;
        // Its index stored beforehand: indexing is one at a time per process, and the test
        // above indexes in parallel with this one.
        repo.lfs_store_chunk_index(&o1, v1.len() as u64, &chunks(&v1))
            .await
            .unwrap();
        let plan2 = plan(&repo, &v2, &o1).await;
        let id = plan2.id.clone().expect("a plan");
        let plan_dir = send_runs(&backend, &repo, &v2, &plan2).await;
        let staged = || async { backend.list(&plan_dir).await.unwrap().len() };
        assert_eq!(
            staged().await,
            1 + plan2.ranges.len(),
            "the plan and its runs"
        );

        let (now, hour) = (std::time::SystemTime::now(), Duration::from_secs(3600));
        let kept = repo.sweep_lfs_deltas(now, hour).await.unwrap();
        assert_eq!((kept.removed, kept.kept), (0, 1));
        assert_eq!(
            staged().await,
            1 + plan2.ranges.len(),
            "within the grace period"
        );
        let swept = repo.sweep_lfs_deltas(now + hour, hour).await.unwrap();
        assert_eq!((swept.removed, swept.kept), (1, 0));
        assert_eq!(staged().await, 0);
        assert!(backend
            .list(&repo.lfs_delta_root())
            .await
            .unwrap()
            .is_empty());
        assert!(backend.head(&repo.lfs_key(&o1).unwrap()).await.is_ok());
        assert!(backend
            .head(&repo.lfs_chunks_key(&o1).unwrap())
            .await
            .is_ok());

        let late = repo.lfs_delta_complete(&o2, v2.len() as u64, &id).await;
        assert!(matches!(late, Err(Error::NotFound { .. })), "{late:?}");
        assert_eq!(repo.lfs_check(&o2).await.unwrap(), None, "nothing stored");
    }
}
