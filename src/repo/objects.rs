//! Which objects the repository has: the rule that a ref never points at an object no live
//! pack holds (git's receive-pack refuses such a push with "missing necessary objects").
//!
//! Owns the lookup of a push's new ref values in the idx files, and [`PackIdsCache`], the
//! object ids of packs by (repository prefix, pack name, idx size) kept in the [`Store`]
//! (super::Store). Reads idx files only, never a `.pack`. An idx a writer uploaded is only a
//! claim until `update` has checked it against its pack ([`verify`](super::verify)); the cache
//! remembers which entries were checked (or written by this server), so that a pack is indexed
//! once, not on every push that names it.
//!
//! Cost: a push names its new pack, whose idx holds the new commit, so the hot path reads that
//! one small idx. Only ids not found there need the live packs ([`Repository::packs`]: neither
//! retired nor pending), read concurrently, newest first, and only until every id is found.
//! Packs are immutable, so their ids are cached; a branch created at an existing commit then
//! costs the pack listing alone.

use super::Repository;
use crate::storage::Error;
use futures_util::StreamExt;
use gix::ObjectId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Git's words (receive-pack), so users see what git shows; the id follows.
pub const MISSING_OBJECTS: &str = "missing necessary objects";

/// Bytes of object ids kept over all repositories: 64 MiB is some 3.3 million objects. A pack
/// larger than the whole budget is read each time it is needed, never cached.
const CACHE_BUDGET: usize = 64 << 20;

/// Idx files read at once when the live packs are searched.
const IDX_READ_CONCURRENCY: usize = 16;

/// The sorted object ids of one pack's idx.
type Ids = Arc<Vec<ObjectId>>;

/// Object ids by pack, least recently used out first once [`CACHE_BUDGET`] is exceeded.
///
/// The key carries the idx size as listed: a pack name is the client's word, and an upload
/// may replace an idx under the same name, so a cached entry is only used for the very file
/// it was read from (same name, same size).
#[derive(Debug, Default)]
pub(crate) struct PackIdsCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// (key, idx size) -> (ids, last use, whether the ids were computed from the pack's bytes).
    entries: HashMap<(String, u64), (Ids, u64, bool)>,
    bytes: usize,
    clock: u64,
}

impl PackIdsCache {
    fn get(&self, key: &str, idx_size: u64) -> Option<Ids> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let now = inner.clock;
        let (ids, used, _) = inner.entries.get_mut(&(key.to_owned(), idx_size))?;
        *used = now;
        Some(ids.clone())
    }

    /// Whether the cached ids of this idx were computed from its pack's bytes (by `git
    /// index-pack` here, or in a pack this server wrote itself).
    fn verified(&self, key: &str, idx_size: u64) -> bool {
        self.inner.lock().is_ok_and(|inner| {
            inner
                .entries
                .get(&(key.to_owned(), idx_size))
                .is_some_and(|(_, _, verified)| *verified)
        })
    }

    /// Cache `ids` for this idx; `verified` as in [`PackIdsCache::verified`]. A verified entry
    /// stays verified when the same file is read again: stored packs never change.
    fn put(&self, key: &str, idx_size: u64, ids: Ids, verified: bool) {
        let size = ids.len() * 20;
        if size > CACHE_BUDGET {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.clock += 1;
        let now = inner.clock;
        let verified = verified
            || inner
                .entries
                .get(&(key.to_owned(), idx_size))
                .is_some_and(|(_, _, v)| *v);
        if let Some((old, _, _)) = inner
            .entries
            .insert((key.to_owned(), idx_size), (ids, now, verified))
        {
            inner.bytes -= old.len() * 20;
        }
        inner.bytes += size;
        // Eviction scans the entries: they are packs, a few thousand at most, and it runs
        // only when a new pack is read.
        while inner.bytes > CACHE_BUDGET {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.len() * 20;
            }
        }
    }
}

impl Repository {
    /// The ids of `wanted` that neither the packs this update names (`named`: name and idx
    /// size, already checked complete) nor any live pack holds.
    pub(super) async fn missing_objects(
        &self,
        wanted: BTreeSet<ObjectId>,
        named: &[(String, u64)],
    ) -> Result<BTreeSet<ObjectId>, Error> {
        let mut missing = wanted;
        if missing.is_empty() {
            return Ok(missing);
        }
        for (name, idx_size) in named {
            // A named pack's idx must parse: the update is refused otherwise.
            let ids = self.pack_ids(name, *idx_size).await?;
            missing.retain(|id| ids.binary_search(id).is_err());
            if missing.is_empty() {
                return Ok(missing);
            }
        }
        let mut live = self.packs().await?;
        live.retain(|p| !named.iter().any(|(n, _)| *n == p.name));
        // Newest first: a branch made at a recent commit finds it in a recent pack.
        live.reverse();
        let mut reads = futures_util::stream::iter(live)
            .map(|p| async move {
                let ids = self.pack_ids(&p.name, p.idx_size).await;
                (p.name, ids)
            })
            .buffered(IDX_READ_CONCURRENCY);
        while let Some((name, ids)) = reads.next().await {
            match ids {
                Ok(ids) => missing.retain(|id| ids.binary_search(id).is_err()),
                // A live pack whose idx is gone (deleted since the listing) or unreadable
                // holds nothing we can count on; the update is not refused for it.
                Err(e @ (Error::NotFound { .. } | Error::Invalid { .. })) => {
                    tracing::warn!("{}: skipping pack {name}: {e}", self.name);
                }
                Err(e) => return Err(e),
            }
            if missing.is_empty() {
                break;
            }
        }
        Ok(missing)
    }

    /// The entries (id, offset, CRC32) of pack `name`'s idx, read whole in one request; its
    /// ids join the cache [`Repository::pack_ids`] answers from.
    pub(super) async fn pack_entries(
        &self,
        name: &str,
    ) -> Result<Vec<crate::pack::idx_file::Entry>, Error> {
        let key = self.pack_key(name, "idx");
        let idx = self.backend.get(&key).await?;
        let entries =
            crate::pack::idx_file::entries(&idx.body, name).map_err(|e| Error::Invalid {
                detail: format!("{e} in {}", self.name),
            })?;
        let ids = sorted(entries.iter().map(|e| e.id).collect());
        self.pack_ids_cache
            .put(&key, idx.body.len() as u64, Arc::new(ids), false);
        Ok(entries)
    }

    /// Parse the idx of pack `name` from memory into the ids cache, as checked: this server
    /// wrote it, or computed it from the pack's bytes.
    pub(super) fn cache_ids(&self, name: &str, idx: &[u8]) -> Result<(), Error> {
        let ids = sorted_ids(idx, name).map_err(|e| self.unreadable(e))?;
        self.cache_sorted_ids(name, idx.len() as u64, ids);
        Ok(())
    }

    fn unreadable(&self, e: crate::pack::idx_file::Error) -> Error {
        Error::Invalid {
            detail: format!("{e} in {}", self.name),
        }
    }

    /// Put the sorted ids of the idx of pack `name`, `idx_size` bytes, into the ids cache, as
    /// checked against the pack's bytes (only for ids computed from them, or for a pack this
    /// server wrote).
    pub(super) fn cache_sorted_ids(&self, name: &str, idx_size: u64, ids: Vec<ObjectId>) {
        self.pack_ids_cache
            .put(&self.pack_key(name, "idx"), idx_size, Arc::new(ids), true);
    }

    /// Whether pack `name`'s idx (`idx_size` bytes) was checked against its pack by this
    /// server since it started (then `update` need not index it again).
    pub(super) fn pack_verified(&self, name: &str, idx_size: u64) -> bool {
        self.pack_ids_cache
            .verified(&self.pack_key(name, "idx"), idx_size)
    }

    /// Whether the ids of pack `name` are cached (then [`Repository::pack_ids`] reads nothing).
    pub(super) fn pack_ids_cached(&self, name: &str, idx_size: u64) -> bool {
        self.pack_ids_cache
            .get(&self.pack_key(name, "idx"), idx_size)
            .is_some()
    }

    /// The sorted object ids of pack `name`, from the cache or its idx.
    pub(super) async fn pack_ids(&self, name: &str, idx_size: u64) -> Result<Ids, Error> {
        let key = self.pack_key(name, "idx");
        if let Some(ids) = self.pack_ids_cache.get(&key, idx_size) {
            return Ok(ids);
        }
        let idx = self.backend.get(&key).await?;
        let ids = Arc::new(sorted_ids(&idx.body, name).map_err(|e| self.unreadable(e))?);
        // Cached under the size actually read, whatever the listing said.
        self.pack_ids_cache
            .put(&key, idx.body.len() as u64, ids.clone(), false);
        Ok(ids)
    }
}

/// The object ids an idx lists, sorted: an idx is sorted by format, but a broken one must not
/// make lookups wrong.
pub(super) fn sorted_ids(
    idx: &[u8],
    name: &str,
) -> Result<Vec<ObjectId>, crate::pack::idx_file::Error> {
    crate::pack::idx_file::object_ids(idx, name).map(sorted)
}

fn sorted(mut ids: Vec<ObjectId>) -> Vec<ObjectId> {
    if !ids.is_sorted() {
        ids.sort_unstable();
    }
    ids
}

/// A ref value as the idx files hold it; `None` if `oid` is not 40 hex (validated earlier).
pub(super) fn object_id(oid: &str) -> Option<ObjectId> {
    crate::negotiate::parse_id(oid)
}

/// The rejection detail for a ref whose new value no pack holds: one line, like git's.
pub(super) fn missing_detail(oid: &str) -> String {
    format!("{MISSING_OBJECTS}: no pack holds {oid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, tag: u8) -> Ids {
        Arc::new(
            (0..n)
                .map(|i| {
                    let mut id = [0u8; 20];
                    id[..2].copy_from_slice(&[tag, (i % 256) as u8]);
                    ObjectId::from(id)
                })
                .collect(),
        )
    }

    #[test]
    fn keyed_by_idx_size() {
        let cache = PackIdsCache::default();
        cache.put("p", 100, ids(3, 1), false);
        assert_eq!(cache.get("p", 100).map(|i| i.len()), Some(3));
        assert!(
            cache.get("p", 101).is_none(),
            "another file under the same name"
        );
        assert!(cache.get("q", 100).is_none());
    }

    #[test]
    fn least_recently_used_goes_first_past_the_budget() {
        let cache = PackIdsCache::default();
        let third = CACHE_BUDGET / 20 / 3;
        cache.put("a", 1, ids(third, 1), false);
        cache.put("b", 1, ids(third, 2), false);
        cache.put("c", 1, ids(third, 3), false);
        assert!(cache.get("a", 1).is_some(), "a is now the most recent");
        cache.put("d", 1, ids(third, 4), false);
        assert!(cache.get("b", 1).is_none(), "b was the least recently used");
        for kept in ["a", "c", "d"] {
            assert!(cache.get(kept, 1).is_some(), "{kept}");
        }
        cache.put("huge", 1, ids(CACHE_BUDGET / 20 + 1, 5), false);
        assert!(cache.get("huge", 1).is_none(), "larger than the budget");
        assert!(cache.get("a", 1).is_some(), "and it evicted nothing");
    }
}
