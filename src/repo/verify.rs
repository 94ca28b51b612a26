//! What a pack really holds: its idx computed from its bytes by `git index-pack`, never taken
//! from the idx its writer uploaded (issue 21). An idx is a writer's claim: one that lists an
//! object its pack lacks would let a ref point at nothing (a later push that builds on that ref
//! leaves the object out, and its history is lost), and a compaction onto such a pack would
//! retire the real one. So every pack is checked once, before any ref or compaction relies on
//! it, as git's receive-pack indexes every pack it receives:
//!
//! - a pack uploaded through presigned URLs, by `update` (and `compact`): read back from the
//!   store into a temporary file, indexed, and its idx compared entry by entry (id, CRC32,
//!   offset) with the uploaded one;
//! - a pack that came inline, before it is stored;
//! - a completed thin pack, in the temporary file it was written to, before it is stored.
//!
//! A pack this server checked or wrote itself is remembered in the ids cache
//! ([`Repository::pack_verified`]), so `update` does not read it again.
//!
//! Cost: one `git index-pack` per pack (every object inflated and hashed, deltas resolved), in
//! its own process: memory stays git's (objects above 16 MiB streamed,
//! `core.bigFileThreshold`; deltas through its bounded base cache), not the server's. A stored
//! pack is also read once from the store. The run is killed after [`time_limit`], and at most
//! one runs per core at a time over the whole server.

use super::Repository;
use crate::pack::idx_file;
use crate::storage::Error;
use gix::ObjectId;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// Bytes read from the store per request while copying a pack out.
const CHUNK: u64 = 8 << 20;

/// How long `git index-pack` may take for a pack of `size` bytes before it is killed and the
/// pack refused: two minutes, plus a second per 256 KiB. The slowest indexing measured here
/// (a 42.5 MiB history of many deltas on a loaded 2-core machine) ran at 3.4 MB/s, 13 times
/// faster than this allows; a pack that takes longer is refused rather than holding a core.
pub(super) fn time_limit(size: u64) -> Duration {
    Duration::from_secs(120 + size / (256 << 10))
}

impl Repository {
    /// The sorted ids of stored pack `name` (`idx_size` and `pack_size` bytes, as listed),
    /// once its uploaded idx has been checked against what `git index-pack` computes from the
    /// pack. A pack git cannot index (corrupt, truncated, thin, empty), or whose idx lists
    /// other objects, offsets or CRCs, is refused with one line saying which. Checked once per
    /// pack: later calls answer from the cache.
    pub(super) async fn verified_stored_pack(
        &self,
        name: &str,
        idx_size: u64,
        pack_size: u64,
    ) -> Result<Vec<ObjectId>, Error> {
        if self.pack_verified(name, idx_size) {
            return Ok(self.pack_ids(name, idx_size).await?.to_vec());
        }
        let key = self.pack_key(name, "pack");
        let dir = temp_dir(&key)?;
        let (pack_path, idx_key) = (dir.path().join("p.pack"), self.pack_key(name, "idx"));
        // The uploaded idx and the pack at once: a round trip less on S3.
        let (claimed, copied) = tokio::join!(
            self.backend.get(&idx_key),
            self.copy_out(&key, pack_size, &pack_path, name)
        );
        let claimed = claimed?.body;
        copied?;
        let computed = self.index_pack(dir.path(), &key, name, pack_size).await?;
        let ids = self.matching_ids(name, &claimed, &computed)?;
        self.cache_sorted_ids(name, claimed.len() as u64, ids.clone());
        Ok(ids)
    }

    /// [`Repository::verified_stored_pack`] for a pack in memory (one that came inline in an
    /// `update`, at most the inline limit) and its uploaded `idx`: written to a temporary file
    /// and indexed by git there, before anything is stored.
    pub(super) async fn verified_in_memory(
        &self,
        name: &str,
        pack: &[u8],
        idx: &[u8],
    ) -> Result<Vec<ObjectId>, Error> {
        let what = format!("inline pack {name}");
        let dir = temp_dir(&what)?;
        std::fs::write(dir.path().join("p.pack"), pack).map_err(|e| Error::backend(&what, e))?;
        let computed = self
            .index_pack(dir.path(), &what, name, pack.len() as u64)
            .await?;
        self.matching_ids(name, idx, &computed)
    }

    /// [`Repository::verified_stored_pack`] for a pack this server just wrote at `dir/p.pack`
    /// (a completed thin pack, whose idx it built from the uploaded one): git's idx of it, once
    /// it matches `idx`.
    pub(super) async fn verified_written(
        &self,
        dir: &Path,
        name: &str,
        pack_size: u64,
        idx: &[u8],
    ) -> Result<(), Error> {
        let computed = self.index_pack(dir, name, name, pack_size).await?;
        self.matching_ids(name, idx, &computed).map(drop)
    }

    /// The idx `git index-pack` computes for the pack written at `dir/p.pack` (`name`,
    /// `pack_size` bytes), or its refusal: for a pack this server assembled without an idx.
    pub(super) async fn indexed_written(
        &self,
        dir: &Path,
        name: &str,
        pack_size: u64,
    ) -> Result<Vec<u8>, Error> {
        self.index_pack(dir, name, name, pack_size).await
    }

    /// Copy stored pack `key` (`size` bytes as listed) into the file `to`, by ranges.
    async fn copy_out(&self, key: &str, size: u64, to: &Path, name: &str) -> Result<(), Error> {
        let mut file = std::fs::File::create(to).map_err(|e| Error::backend(key, e))?;
        let mut at = 0;
        while at < size {
            let end = (at + CHUNK).min(size);
            let bytes = self.backend.get_range(key, at..end).await?;
            if bytes.len() as u64 != end - at {
                return Err(self.refuse(name, "shorter than its listed size"));
            }
            file.write_all(&bytes).map_err(|e| Error::backend(key, e))?;
            at = end;
        }
        Ok(())
    }

    /// `git index-pack` over `dir/p.pack` (`size` bytes): the idx git computes, or the refusal
    /// with git's reason; `what` names the pack in a failure to run git at all.
    async fn index_pack(
        &self,
        dir: &Path,
        what: &str,
        name: &str,
        size: u64,
    ) -> Result<Vec<u8>, Error> {
        let (pack_path, idx_path) = (dir.join("p.pack"), dir.join("p.idx"));
        // One run per core at a time, over all repositories: writers pushing at once wait
        // for each other here rather than share the cores among as many gits as they start.
        let _turn = indexing_turns()
            .acquire()
            .await
            .map_err(|e| Error::backend(what, e))?;
        let limit = time_limit(size);
        let run = tokio::process::Command::new("git")
            .args([
                "-c",
                "core.bigFileThreshold=16m",
                "-c",
                "pack.indexVersion=2",
                "index-pack",
                "-o",
            ])
            .arg(&idx_path)
            .arg(&pack_path)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(std::process::Stdio::null())
            // A run past the limit is dropped, and git with it.
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| {
                self.refuse(
                    name,
                    &format!(
                        "git index-pack took longer than {} s, the limit for a pack of {size} bytes",
                        limit.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                Error::backend(
                    what,
                    format!("cannot run git index-pack to check the pack: {e}"),
                )
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.lines().last().unwrap_or("").trim();
            return Err(self.refuse(
                name,
                &format!("corrupt or incomplete, git index-pack says: {why}"),
            ));
        }
        std::fs::read(&idx_path).map_err(|e| Error::backend(what, e))
    }

    /// The sorted ids of `claimed` (a writer's idx of pack `name`) when it describes the pack
    /// exactly as `computed` (git's idx of the same bytes) does: the same objects at the same
    /// offsets with the same CRC32s, for the same pack checksum.
    fn matching_ids(
        &self,
        name: &str,
        claimed: &[u8],
        computed: &[u8],
    ) -> Result<Vec<ObjectId>, Error> {
        let held = idx_file::entries(computed, name)
            .map_err(|e| self.refuse(name, &format!("its computed idx is unreadable: {e}")))?;
        if held.is_empty() {
            return Err(self.refuse(name, "it holds no objects"));
        }
        let listed = idx_file::entries(claimed, name).map_err(|e| Error::Invalid {
            detail: format!("{e} in {}", self.name),
        })?;
        fn pack_sum(idx: &[u8]) -> Option<&[u8]> {
            idx.len().checked_sub(40).map(|at| &idx[at..at + 20])
        }
        if pack_sum(claimed) != pack_sum(computed) {
            // The same words as `packs::check_trailers`, which checks this on the trailers alone.
            return Err(Error::Invalid {
                detail: format!("the idx of {name} does not belong to its pack"),
            });
        }
        let ids = |entries: &[idx_file::Entry]| {
            let mut ids: Vec<ObjectId> = entries.iter().map(|e| e.id).collect();
            ids.sort_unstable();
            ids
        };
        let (held_ids, listed_ids) = (ids(&held), ids(&listed));
        if held_ids != listed_ids {
            return Err(Error::Invalid {
                detail: format!(
                    "the idx of {name} does not list the objects its pack holds ({} listed, {} in the pack) in {}",
                    listed.len(),
                    held.len(),
                    self.name
                ),
            });
        }
        let mut in_order = listed;
        in_order.sort_unstable_by_key(|e| e.id);
        if in_order != held {
            return Err(Error::Invalid {
                detail: format!(
                    "the idx of {name} does not describe its pack (offsets or CRC32s differ) in {}",
                    self.name
                ),
            });
        }
        Ok(held_ids)
    }

    fn refuse(&self, name: &str, why: &str) -> Error {
        Error::Invalid {
            detail: format!("{name} in {}: {why}", self.name),
        }
    }
}

/// Turns to run `git index-pack`: as many as the machine has cores (git itself uses them all
/// for one big pack; small ones are done in milliseconds).
fn indexing_turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cores)
    })
}

fn temp_dir(what: &str) -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("hypha-verify-")
        .tempdir()
        .map_err(|e| Error::backend(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_limit_grows_with_the_pack() {
        assert_eq!(time_limit(0), Duration::from_secs(120));
        assert_eq!(time_limit(1 << 20), Duration::from_secs(124));
        // A 5 GiB pack: 20,480 s more, some 5.7 hours at most.
        assert_eq!(time_limit(5 << 30), Duration::from_secs(120 + 20_480));
    }
}
