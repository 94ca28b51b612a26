//! The server's own compaction: the engine of [`crate::compaction`] over this repository's
//! store, read and written directly (docs/design.md §9).
//!
//! Packs come out of the store by ranged reads straight into `git index-pack`, which hashes
//! every object from the pack's bytes (a writer's idx is never trusted, and memory stays at
//! one read of [`READ_CHUNK`] plus what git holds); the merged pack goes back as a pending
//! upload, and [`Repository::compact`] retires the merged packs under the repository lock,
//! with the same coverage check, grace period and purge as the `compact` route. No HTTP, no
//! token: nothing passes through whatever proxy fronts the server.

use super::{Compaction, Repository};
use crate::compaction::{self, LivePack, Merged, Mode, Outcome, Packs, Prepared, Retired};
use crate::pack::receive_git;
use crate::progress::Progress;
use crate::storage::{Backend, Error};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of a stored pack read at once while it streams into `git index-pack`.
pub const READ_CHUNK: u64 = 8 * 1024 * 1024;

impl Repository {
    /// A compaction in `mode` up to its last step, reading and writing this repository's
    /// store directly: the merge is stored as a pending upload, and nothing is retired.
    pub async fn gc_prepare(&self, mode: Mode) -> Result<Prepared, compaction::Error<Error>> {
        let packs = StorePacks {
            repo: self.clone(),
            // Retiring is not this step's: `gc_finish` brings its own grace.
            grace: Duration::ZERO,
        };
        compaction::prepare(&packs, mode, Progress::hidden()).await
    }

    /// The last step of a compaction: retire what [`Repository::gc_prepare`] merged (or only
    /// purge), retired packs staying readable for `grace`. Split from the merge so that,
    /// inside Hypha, the lease between workers covers this step only
    /// (`server::autogc`, `server::leases`).
    pub async fn gc_finish(
        &self,
        prepared: Prepared,
        grace: Duration,
    ) -> Result<Outcome, compaction::Error<Error>> {
        let packs = StorePacks {
            repo: self.clone(),
            grace,
        };
        compaction::finish(&packs, prepared).await
    }
}

impl Repository {
    /// Verified copies of `packs` in `git_dir`'s `objects/pack/` (no `.keep`), each hashed
    /// from its stored bytes by `git index-pack`: what a compaction merges, and what the LFS
    /// prune walks (`lfs_prune`).
    pub(super) async fn copy_packs(&self, git_dir: &Path, packs: &[LivePack]) -> Result<(), Error> {
        let store = StorePacks {
            repo: self.clone(),
            grace: Duration::ZERO,
        };
        store.fetch(git_dir, packs, &Progress::hidden()).await
    }
}

/// A repository's packs as its store holds them.
struct StorePacks {
    repo: Repository,
    grace: Duration,
}

#[async_trait]
impl Packs for StorePacks {
    type Error = Error;

    fn repo_name(&self) -> String {
        self.repo.name.clone()
    }

    async fn live(&self) -> Result<Vec<LivePack>, Error> {
        Ok(self
            .repo
            .packs()
            .await?
            .into_iter()
            .map(|p| LivePack {
                name: p.name,
                pack_size: p.pack_size,
            })
            .collect())
    }

    async fn fetch(&self, git_dir: &Path, packs: &[LivePack], _: &Progress) -> Result<(), Error> {
        let pack_dir = git_dir.join("objects").join("pack");
        for pack in packs {
            let key = self.repo.pack_key(&pack.name, "pack");
            let reader = RangeReader {
                backend: self.repo.backend.clone(),
                handle: tokio::runtime::Handle::current(),
                key: key.clone(),
                size: pack.pack_size,
                at: 0,
            };
            let (dir, name) = (pack_dir.clone(), pack.name.clone());
            let indexed = tokio::task::spawn_blocking(move || {
                let mut input = std::io::BufReader::with_capacity(READ_CHUNK as usize, reader);
                receive_git::index(&mut input, &dir, &name)
            })
            .await
            .map_err(|e| Error::backend(&key, e))?
            .map_err(|e| Error::Invalid {
                detail: format!("{} in {}: {e}", pack.name, self.repo.name),
            })?;
            // `git repack -a` leaves packs with a .keep alone; these are ours to merge.
            if let Some(keep) = indexed.keep_path {
                std::fs::remove_file(&keep).map_err(|e| Error::backend(&key, e))?;
            }
        }
        Ok(())
    }

    async fn refs(&self) -> Result<BTreeMap<String, String>, Error> {
        self.repo.refs().await
    }

    async fn store(&self, merged: &Merged, _: &Progress) -> Result<(), Error> {
        let what = |e| Error::backend(&merged.pack_path.display().to_string(), e);
        let idx = Bytes::from(std::fs::read(&merged.idx_path).map_err(what)?);
        let pack = std::fs::File::open(&merged.pack_path).map_err(what)?;
        match self
            .repo
            .store_pending_file(&merged.name, idx, pack, merged.pack_size)
            .await
        {
            // The very pack is live already (git made the same pack twice): nothing to store.
            Err(Error::Invalid { detail }) if detail.contains(super::ALREADY_STORED) => Ok(()),
            other => other,
        }
    }

    async fn retire(&self, pack: &str, retire: Vec<String>) -> Result<Retired, Error> {
        let done = self
            .repo
            .compact(
                &Compaction {
                    pack: pack.to_owned(),
                    retire,
                },
                self.grace,
            )
            .await?;
        Ok(Retired {
            retired: done.retired,
            deleted: done.deleted,
            grace_secs: done.grace.as_secs(),
        })
    }
}

/// A stored object read front to back in ranges, for a blocking reader (`git index-pack`'s
/// stdin pump) on a blocking thread. Stops at `size`, the listed size: a store that holds
/// more is not read past it, one that holds less fails the read.
struct RangeReader {
    backend: Arc<dyn Backend>,
    handle: tokio::runtime::Handle,
    key: String,
    size: u64,
    at: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = (self.at + buf.len() as u64).min(self.size);
        let bytes = self
            .handle
            .block_on(self.backend.get_range(&self.key, self.at..end))
            .map_err(std::io::Error::other)?;
        if bytes.is_empty() || bytes.len() as u64 > end - self.at {
            return Err(std::io::Error::other(format!(
                "{}: the store answered {} bytes for {}..{end}",
                self.key,
                bytes.len(),
                self.at
            )));
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.at += bytes.len() as u64;
        Ok(bytes.len())
    }
}
