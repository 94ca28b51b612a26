//! The git repository layout over a [`Backend`] (docs/design.md §3) and the refs compare-and-swap of
//! `update` (docs/design.md §4, docs/hypha.md §7.2).
//!
//! Owns every key below `{workspace}/artifacts/{alias}/.git/`: `HEAD`, `refs/...`,
//! `objects/pack/...`, and the private `hypha-remote/config.json`, plus the LFS objects
//! beside it under `{workspace}/artifacts/{alias}/git/lfs/objects/`. Writes exactly the bytes
//! Hypha writes (`"<40 hex>\n"`, `"ref: <ref>\n"`), so that Hypha's smart HTTP serves what
//! is stored here. Does not check permissions or fast-forwards (the server and the client
//! do). Reads pack contents in one place only: `thin` completes a thin upload by copying the
//! raw entries of its missing bases out of stored packs; elsewhere, only the 20-byte checksums
//! that tie an idx to its pack and the idx files (a ref may only point at what a pack holds).
//! Speaks its own types ([`Update`], [`Compaction`], [`PackUpload`], ...), never the API's:
//! the server translates.
//!
//! Concurrency: `update` holds a per-repository lock (one tokio mutex per prefix, in
//! process) and writes each ref with a conditional put, so writers outside this process
//! (Hypha itself, another server on the same bucket) are detected rather than overwritten.
//!
//! Crashes: an atomic update of several refs commits by writing a record before its first
//! ref write; whoever takes the lock next finishes it, and readers see its refs meanwhile
//! ([`journal`]). Uploaded packs stay hidden from readers until an update names them, and
//! compaction removes those whose update never came ([`uploads`]).
//!
//! This file holds [`Store`], [`Repository`] and the key layout; the operations live by
//! concern in the submodules:
//!
//! - `create`: making a repository, whether it exists, its private settings;
//! - `refs`: reading refs and `HEAD`, setting `HEAD`;
//! - `update`: the compare-and-swap of refs, its undo and its commit record;
//! - `objects`: whether a pack holds a ref's new value, with the object ids of packs cached;
//! - `packs`: the pack listing, presigned downloads, the pack completeness check;
//! - `upload`: presigned uploads, single `PUT` or multipart; `uploads`: pending marks;
//! - `lfs`: Git LFS objects beside `.git/` (Hypha's layout), presigned, checked on verify;
//!   `lfs_prune`: deleting those no ref reaches, past the grace period; `lfs_delta`: a new
//!   version from the chunks its bases lack, `lfs_delta_sweep`: its plans never completed;
//! - `locks`: Git LFS file locks beside them, one record per path, created create-only;
//! - `thin`: thin uploads and their completion into a self-contained pending pack;
//! - `compact`: retiring packs and deleting them after the grace period;
//! - `hooks`: the repository's webhooks and their delivery log;
//! - `journal`: the record of an atomic update; `ref_cache`: ref values by etag;
//!   `ref_snapshot`: that cache at rest, for the first listing after a server starts.

use crate::names::{self, refname};
use crate::storage::{Backend, Error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use compact::{Compacted, Compaction};
pub use create::{RepoConfig, DEFAULT_BRANCH};
pub use hooks::{Delivery, Hook, HookView};
pub use inline::InlinePack;
pub use lfs::LfsMismatch;
pub use lfs_delta::LfsDeltaPlan;
pub use lfs_delta_sweep::DeltaSweep;
pub use lfs_parts::LfsPartsPlan;
pub use lfs_prune::{LfsPruneError, LfsPruned};
pub use locks::{FileLock, LockOutcome, LockPage, UnlockOutcome, MAX_LOCK_PATH};
pub use objects::MISSING_OBJECTS;
pub use packs::PackEntry;
pub use thin::ThinCompleted;
pub use update::{
    RefOutcome, RefStatus, RefUpdate, Update, UpdateOutcome, ATOMIC_FAILED, DENY_DELETE_CURRENT,
};
pub use upload::{PackUpload, UploadUrls};
pub use uploads::ALREADY_STORED;

/// Ref requests in flight at once: the writes of one `update` (and of finishing its record)
/// and the reads of a listing. Each ref is an object of its own (Hypha's layout), so a push of
/// N refs is N writes; on S3 they cost N / this many round trips one after another (a mirror
/// push of 1,500 refs: 12, where 32 at once made it 47). The bound keeps a push's sockets and
/// memory small and its write rate near what S3 takes on one prefix (3,500 writes a second;
/// beyond, S3 answers `SlowDown` and the client backs off).
const REF_CONCURRENCY: usize = 128;

/// Deletes in flight at once when `lfs-prune` removes objects.
const WRITE_CONCURRENCY: usize = 32;

/// How long `update` waits for another update of the same repository before answering busy.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A backend plus the per-repository locks shared by every [`Repository`] made from it.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    locks: Arc<Locks>,
    ref_cache: Arc<ref_cache::RefCache>,
    pack_ids_cache: Arc<objects::PackIdsCache>,
    multipart: upload::MultipartPolicy,
}

#[derive(Debug, Default)]
struct Locks {
    // Weak, so that the map does not keep a mutex per repository ever touched alive.
    by_prefix: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    fn get(&self, prefix: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.by_prefix.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(prefix).and_then(Weak::upgrade) {
            return lock;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(prefix.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        Store {
            backend,
            locks: Arc::default(),
            ref_cache: Arc::default(),
            pack_ids_cache: Arc::default(),
            multipart: upload::MultipartPolicy::default(),
        }
    }

    /// When packs go up in parts (where the backend has multipart uploads).
    pub fn with_multipart(mut self, policy: upload::MultipartPolicy) -> Store {
        self.multipart = policy;
        self
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The repository `workspace/alias`; both must pass [`names::is_valid_repo_segment`].
    pub fn repo(&self, workspace: &str, alias: &str) -> Result<Repository, Error> {
        for segment in [workspace, alias] {
            if !names::is_valid_repo_segment(segment) {
                return Err(Error::Invalid {
                    detail: format!(
                        "invalid repository name {:?}",
                        crate::storage::shorten(segment)
                    ),
                });
            }
        }
        let prefix = format!("{workspace}/artifacts/{alias}/.git/");
        Ok(Repository {
            backend: self.backend.clone(),
            lock: self.locks.get(&prefix),
            ref_cache: self.ref_cache.clone(),
            pack_ids_cache: self.pack_ids_cache.clone(),
            multipart: self.multipart,
            name: format!("{workspace}/{alias}"),
            prefix,
        })
    }
}

impl Store {
    /// The repository at an explicit key prefix, named `name` in messages: where a host
    /// that keeps its own catalogue (Hypha: `{s3 prefix}/{artifact uuid}/.git/`) decided it
    /// lives. The prefix must be a valid key ending in `.git/` (no `..`, no empty or `.`
    /// segments), so that a caller cannot point a repository outside a `.git/` directory.
    pub fn repo_at(&self, name: &str, prefix: &str) -> Result<Repository, Error> {
        let invalid = |why: &str| Error::Invalid {
            detail: format!(
                "invalid repository location {:?}: {why}",
                crate::storage::shorten(prefix)
            ),
        };
        let Some(dir) = prefix.strip_suffix('/') else {
            return Err(invalid("must end in .git/"));
        };
        if dir != ".git" && !dir.ends_with("/.git") {
            return Err(invalid("must end in .git/"));
        }
        crate::storage::check_key(dir).map_err(|_| invalid("not a valid key"))?;
        Ok(Repository {
            backend: self.backend.clone(),
            lock: self.locks.get(prefix),
            ref_cache: self.ref_cache.clone(),
            pack_ids_cache: self.pack_ids_cache.clone(),
            multipart: self.multipart,
            name: name.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// One git repository in the store.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    lock: Arc<tokio::sync::Mutex<()>>,
    ref_cache: Arc<ref_cache::RefCache>,
    pack_ids_cache: Arc<objects::PackIdsCache>,
    multipart: upload::MultipartPolicy,
    /// `workspace/alias`, for messages.
    name: String,
    /// `{workspace}/artifacts/{alias}/.git/`.
    prefix: String,
}

impl Repository {
    /// `workspace/alias`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it lives in the store: `{workspace}/artifacts/{alias}/.git/` (or where its host
    /// put it, [`Store::repo_at`]).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store it lives in.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    fn config_key(&self) -> String {
        self.key("hypha-remote/config.json")
    }

    fn pack_key(&self, name: &str, ext: &str) -> String {
        self.key(&format!("objects/pack/{name}.{ext}"))
    }
}

fn check_ref(name: &str) -> Result<(), Error> {
    refname::check(name).map_err(|why| Error::Invalid {
        detail: format!("invalid ref {:?}: {why}", crate::storage::shorten(name)),
    })
}

fn check_pack_name(name: &str) -> Result<(), Error> {
    if names::is_valid_pack_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid {
            detail: format!(
                "invalid pack name {:?} (expected pack-<40 hex>)",
                crate::storage::shorten(name)
            ),
        })
    }
}

mod compact;
#[cfg(test)]
pub(crate) mod conformance;
mod create;
mod gc;
pub mod hooks;
mod inline;
mod journal;
mod lfs;
mod lfs_delta;
mod lfs_delta_sweep;
mod lfs_parts;
mod lfs_prune;
mod locks;
mod objects;
mod packs;
mod parts;
mod ref_cache;
mod ref_snapshot;
mod refs;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod thin;
mod update;
pub mod upload;
mod uploads;
mod verify;
