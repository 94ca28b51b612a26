//! Thin uploads and their completion on the server (docs/design.md §15, §4
//! `fix-thin`).
//!
//! A thin pack and its idx go up to `.git/hypha-remote/thin/<name>.{pack,idx}`, a key no reader
//! lists (Hypha's reader lists `objects/pack/*.pack`, and a thin pack there would break it).
//! `complete_thin` then reads it with range reads, appends the bases it lacks from the live
//! packs ([`crate::pack::thin`] does the byte work, in a blocking task, into a local temporary
//! file), and writes the self-contained result as a pending upload, exactly like a pushed pack:
//! marker, `.idx`, `.pack`; the `update` naming it makes it visible, and compaction sweeps it if
//! that never comes. Then the thin upload is deleted.
//!
//! Crashes: nothing here is visible to readers until `update`: a server killed mid-completion
//! leaves a thin upload (swept once older than the grace period by [`Repository::purge_thin_uploads`],
//! which compaction runs) and perhaps a pending pack (swept like any abandoned upload). The
//! temporary file is unnamed and goes with the process.
//!
//! Does not decide whether a push is thin (the helper does) and touches no ref.

use super::{check_pack_name, Repository};
use crate::pack::idx_file;
use crate::pack::thin::{self, Located};
use crate::repo::UploadUrls;
use crate::storage::{Error, PresignMethod};
use bytes::Bytes;
use gix::ObjectId;
use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What `complete_thin` made: a pending pack the push's `update` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinCompleted {
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    /// Entries appended from stored packs.
    pub appended: usize,
    /// Size of the thin pack that was uploaded (what the push sent, besides the idx).
    pub thin_size: u64,
}

impl Repository {
    fn thin_dir(&self) -> String {
        self.key("hypha-remote/thin/")
    }

    fn thin_key(&self, name: &str, ext: &str) -> String {
        format!("{}{name}.{ext}", self.thin_dir())
    }

    /// Presigned `PUT`s (one each, no multipart) for a thin pack and its idx.
    pub async fn presign_thin_upload(
        &self,
        name: &str,
        pack_size: u64,
        idx_size: u64,
        expires_in: Duration,
    ) -> Result<UploadUrls, Error> {
        check_pack_name(name)?;
        let put = |ext: &'static str, size: u64| {
            let key = self.thin_key(name, ext);
            async move {
                self.backend
                    .presign(&key, PresignMethod::Put, expires_in, Some(size))
                    .await
            }
        };
        Ok(UploadUrls {
            name: name.to_owned(),
            idx: put("idx", idx_size).await?,
            pack: Some(put("pack", pack_size).await?),
            multipart: None,
        })
    }

    /// Complete the thin upload `name` into a self-contained pending pack, then delete the
    /// thin upload. A thin pack whose bases no live pack holds, a corrupt or truncated one, or
    /// an idx that does not describe it is refused with [`Error::Invalid`] and one line.
    pub async fn complete_thin(&self, name: &str) -> Result<ThinCompleted, Error> {
        check_pack_name(name)?;
        let (pack_key, idx_key) = (self.thin_key(name, "pack"), self.thin_key(name, "idx"));
        let not_uploaded = |e: Error| match e {
            Error::NotFound { .. } => Error::Invalid {
                detail: format!("no thin upload {name} in {}: upload it first", self.name),
            },
            e => e,
        };
        let size = self
            .backend
            .head(&pack_key)
            .await
            .map_err(not_uploaded)?
            .size;
        let idx = self.backend.get(&idx_key).await.map_err(not_uploaded)?.body;
        let done = self
            .complete_from(name, Thin::Stored(pack_key.clone()), size, Some(&idx))
            .await?;
        for key in [&pack_key, &idx_key] {
            self.backend.delete(key, None).await?;
        }
        Ok(done)
    }

    /// [`Repository::complete_thin`] for a thin pack that came inline in an `update`: its
    /// bytes are in memory, and nothing was stored under the thin uploads. Without `idx` (a
    /// helper that saw `thin_without_idx` in the listing) the completed pack's idx is the one
    /// `git index-pack` computes when it checks it.
    pub async fn complete_thin_inline(
        &self,
        name: &str,
        pack: Bytes,
        idx: Option<&[u8]>,
    ) -> Result<ThinCompleted, Error> {
        check_pack_name(name)?;
        let size = pack.len() as u64;
        self.complete_from(name, Thin::Inline(pack), size, idx)
            .await
    }

    /// Append the bases thin pack `name` lacks from the live packs and store the result as a
    /// pending upload. A repository that does not exist is [`Error::NotFound`] naming it,
    /// found beside the listing of the live packs (a round trip less on S3 than asking
    /// first) and before anything is stored.
    async fn complete_from(
        &self,
        name: &str,
        thin_pack: Thin,
        size: u64,
        idx: Option<&[u8]>,
    ) -> Result<ThinCompleted, Error> {
        let (exists, live) = tokio::join!(self.exists(), self.packs());
        if !exists? {
            return Err(self.not_found());
        }
        let mut live = live?;
        // Newest first: the base of an edit is most likely in a recent pack.
        live.reverse();
        let what = match &thin_pack {
            Thin::Stored(key) => key.clone(),
            Thin::Inline(_) => format!("inline thin pack {name}"),
        };
        let mut source = Stored {
            repo: self.clone(),
            handle: tokio::runtime::Handle::current(),
            thin: thin_pack,
            live,
            entries: HashMap::new(),
        };
        let idx = idx.map(<[u8]>::to_vec);
        // A named file in a temporary directory, for `git index-pack` to check; a killed
        // server leaves it in the system's temporary directory.
        let dir = tempfile::Builder::new()
            .prefix("hypha-thin-")
            .tempdir()
            .map_err(|e| Error::backend("temporary directory", e))?;
        let path = dir.path().join("p.pack");
        let (done, file) = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::backend("temporary file", e))?;
            let done = thin::complete(&mut source, size, idx.as_deref(), &mut file);
            Ok::<_, Error>((done, file))
        })
        .await
        .map_err(|e| Error::backend(&what, e))??;
        let mut done = done.map_err(|e| match e {
            thin::Error::Read { what, source } => Error::backend(&what, source),
            thin::Error::Write(source) => Error::backend("temporary file", source),
            refused => Error::Invalid {
                detail: format!("thin pack {name}: {refused}"),
            },
        })?;
        // The thin pack's own entries got their ids from the uploaded idx: git computes them
        // from the completed bytes before the pack is stored (issue 21). Without an uploaded
        // idx, what git computes is the idx.
        let in_name = |e: Error| match e {
            Error::Invalid { detail } => Error::Invalid {
                detail: format!("thin pack {name}: {detail}"),
            },
            e => e,
        };
        if done.idx.is_empty() {
            done.idx = self
                .indexed_written(dir.path(), &done.name, done.pack_size)
                .await
                .map_err(in_name)?;
        } else {
            self.verified_written(dir.path(), &done.name, done.pack_size, &done.idx)
                .await
                .map_err(in_name)?;
        }
        let idx_size = done.idx.len() as u64;
        let idx = Bytes::from(std::mem::take(&mut done.idx));
        // Stored with its ids cached as checked: `update` reads nothing of it back.
        self.store_pending_file(&done.name, idx, file, done.pack_size)
            .await?;
        tracing::info!(
            "{}: completed thin pack {name} as {} ({} bases appended, {} bytes)",
            self.name,
            done.name,
            done.appended,
            done.pack_size
        );
        Ok(ThinCompleted {
            name: done.name,
            pack_size: done.pack_size,
            idx_size,
            appended: done.appended,
            thin_size: size,
        })
    }

    /// Delete thin uploads older than `grace` (their client died before `fix-thin`, or the
    /// completion failed). Call with the lock held, from compaction.
    pub(crate) async fn purge_thin_uploads(
        &self,
        now: SystemTime,
        grace: Duration,
    ) -> Result<usize, Error> {
        let mut deleted = 0;
        for meta in self.backend.list(&self.thin_dir()).await? {
            // No time (a store that does not say) counts as now: kept for another period.
            let age = meta
                .last_modified
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age >= grace {
                match self.backend.delete(&meta.key, None).await {
                    Ok(()) | Err(Error::NotFound { .. }) => deleted += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(deleted)
    }
}

/// Where a thin pack's own bytes are.
enum Thin {
    /// A thin upload, at this key.
    Stored(String),
    /// Sent inline in an `update`.
    Inline(Bytes),
}

/// The stored bytes of one completion, read from the blocking task through the runtime.
struct Stored {
    repo: Repository,
    handle: tokio::runtime::Handle,
    /// The thin pack being completed.
    thin: Thin,
    /// Live packs, newest first.
    live: Vec<super::PackEntry>,
    /// The idx entries of the packs bases were found in.
    entries: HashMap<usize, PackEntries>,
}

fn io_err(e: Error) -> io::Error {
    io::Error::other(e)
}

/// One live pack's idx entries, looked up both ways: by id (a base to copy) and by offset (the
/// base of an OFS_DELTA in its chain). Binary searches, so a completion of a one-line edit
/// against a pack of 100,000 objects costs microseconds per base, not a scan each.
struct PackEntries {
    /// In idx order: sorted by id.
    by_id: Vec<idx_file::Entry>,
    /// Indexes into `by_id`, sorted by offset.
    by_offset: Vec<u32>,
}

impl PackEntries {
    fn new(by_id: Vec<idx_file::Entry>) -> PackEntries {
        let mut by_offset: Vec<u32> = (0..by_id.len() as u32).collect();
        by_offset.sort_unstable_by_key(|&i| by_id[i as usize].offset);
        PackEntries { by_id, by_offset }
    }

    fn offset_of(&self, id: &ObjectId) -> Option<u64> {
        let i = self.by_id.binary_search_by(|e| e.id.cmp(id)).ok()?;
        Some(self.by_id[i].offset)
    }

    fn id_at(&self, offset: u64) -> Option<ObjectId> {
        let i = self
            .by_offset
            .binary_search_by_key(&offset, |&i| self.by_id[i as usize].offset)
            .ok()?;
        Some(self.by_id[self.by_offset[i] as usize].id)
    }

    /// Where the entry at `offset` ends: the next entry's offset, or `trailer` (where the
    /// pack's trailer starts) after the last one; `None` when no entry starts at `offset`.
    fn entry_end(&self, offset: u64, trailer: u64) -> Option<u64> {
        let i = self
            .by_offset
            .binary_search_by_key(&offset, |&i| self.by_id[i as usize].offset)
            .ok()?;
        Some(match self.by_offset.get(i + 1) {
            Some(&next) => self.by_id[next as usize].offset,
            None => trailer,
        })
    }
}

impl Stored {
    /// The entries of live pack `pack` (its idx read once, whole: 28 bytes an object).
    fn entries(&mut self, pack: usize) -> io::Result<&PackEntries> {
        if !self.entries.contains_key(&pack) {
            let name = self.live[pack].name.clone();
            let entries = self
                .handle
                .block_on(self.repo.pack_entries(&name))
                .map_err(io_err)?;
            self.entries.insert(pack, PackEntries::new(entries));
        }
        self.entries
            .get(&pack)
            .ok_or_else(|| io::Error::other("idx entries just read are gone"))
    }
}

impl thin::Source for Stored {
    fn read(&mut self, pack: Option<usize>, range: Range<u64>) -> io::Result<Bytes> {
        let key = match (pack, &self.thin) {
            (None, Thin::Stored(key)) => key.clone(),
            (None, Thin::Inline(bytes)) => {
                let len = bytes.len() as u64;
                if range.start > range.end || range.end > len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("read of {range:?} past the inline thin pack ({len} bytes)"),
                    ));
                }
                return Ok(bytes.slice(range.start as usize..range.end as usize));
            }
            (Some(n), _) => self.repo.pack_key(&self.live[n].name, "pack"),
        };
        self.handle
            .block_on(self.repo.backend.get_range(&key, range))
            .map_err(io_err)
    }

    fn locate(&mut self, id: &ObjectId) -> io::Result<Option<Located>> {
        for n in 0..self.live.len() {
            let (name, idx_size, pack_size) = {
                let p = &self.live[n];
                (p.name.clone(), p.idx_size, p.pack_size)
            };
            // Ids not cached: read the entries (one idx read fills both caches), not the
            // ids first and the same idx again for the offset.
            if !self.entries.contains_key(&n) && !self.repo.pack_ids_cached(&name, idx_size) {
                match self.handle.block_on(self.repo.pack_entries(&name)) {
                    Ok(entries) => {
                        self.entries.insert(n, PackEntries::new(entries));
                    }
                    Err(e @ (Error::NotFound { .. } | Error::Invalid { .. })) => {
                        tracing::warn!("{}: skipping pack {name}: {e}", self.repo.name);
                        continue;
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
            if let Some(entries) = self.entries.get(&n) {
                if let Some(offset) = entries.offset_of(id) {
                    return Ok(Some(Located {
                        pack: n,
                        offset,
                        pack_size,
                    }));
                }
                continue;
            }
            // The cached ids answer "which pack" without reading offsets.
            let ids: Arc<Vec<ObjectId>> =
                match self.handle.block_on(self.repo.pack_ids(&name, idx_size)) {
                    Ok(ids) => ids,
                    Err(e @ (Error::NotFound { .. } | Error::Invalid { .. })) => {
                        tracing::warn!("{}: skipping pack {name}: {e}", self.repo.name);
                        continue;
                    }
                    Err(e) => return Err(io_err(e)),
                };
            if ids.binary_search(id).is_err() {
                continue;
            }
            let offset = self.entries(n)?.offset_of(id);
            if let Some(offset) = offset {
                return Ok(Some(Located {
                    pack: n,
                    offset,
                    pack_size,
                }));
            }
        }
        Ok(None)
    }

    fn id_at(&mut self, pack: usize, offset: u64) -> io::Result<Option<ObjectId>> {
        Ok(self.entries(pack)?.id_at(offset))
    }

    fn entry_end(&mut self, pack: usize, offset: u64) -> io::Result<Option<u64>> {
        let trailer = self.live[pack].pack_size.saturating_sub(20);
        Ok(self.entries(pack)?.entry_end(offset, trailer))
    }

    fn name(&self, pack: usize) -> String {
        self.live[pack].name.clone()
    }
}
