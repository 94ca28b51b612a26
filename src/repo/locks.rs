//! Git LFS file locks of a repository (git-lfs `docs/api/locking.md`), stored beside its LFS
//! objects: one small JSON object per lock at `{id}/git/lfs/locks/{h}`, where `h` is the
//! first 128 bits of the SHA-256 of the locked path, in hex.
//!
//! Owns the keys, the lock records and the rules that need the store: one lock per path,
//! held by exactly one of any number of racing `lock` requests (the record is written with a
//! create-only put, `If-None-Match: *`, on S3 and local disk alike, so no repository lock and
//! no in-process mutex is needed, and two servers on one bucket agree); a lock is removed by
//! its owner or by force, with `If-Match` on the record read, so an unlock never removes a
//! newer lock of the same path. Does not check permissions or speak the API's JSON:
//! `server::locks` does.
//!
//! Within one server, creating and removing the record of one path also take an in-process
//! mutex of its key: S3 and local disk apply `If-None-Match` / `If-Match` atomically, but a
//! store that checks and then writes (s3s-fs, the S3 test server) would let two racing
//! requests of one server both win. Between servers, the store's conditions alone decide.
//!
//! A lock id is `h` followed by a random nonce: the id names the record's key (an unlock
//! costs one `GET` and one `DELETE`, no listing), and a path locked again after an unlock
//! gets a new id, so a stale id never unlocks the new lock. Listing reads the prefix (keys
//! sorted by `h`, so a cursor is an `h`) and then only the page's records.

use super::{Error, Locks, Repository};
use crate::storage::PutMode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Longest path a lock may name, in bytes: far above any real file path (Linux's `PATH_MAX`
/// is 4096), and small enough that a record stays a small object.
pub const MAX_LOCK_PATH: usize = 4096;

/// Most locks one repository may hold: each is one key to list on every `git lfs locks` and
/// every verifying push (S3 lists 1000 keys per request), so a writer cannot make listing
/// unbounded work. Teams lock a handful of binary files at a time.
pub const MAX_LOCKS: usize = 10_000;

/// Hex digits of the path hash (128 bits: no two real paths collide) and of the nonce.
const HASH_HEX: usize = 32;
const NONCE_HEX: usize = 12;

/// Records read at once while listing a page.
const READ_CONCURRENCY: usize = 16;

/// Attempts at locking a path whose lock is removed while we look at it.
const CREATE_ATTEMPTS: usize = 3;

/// The in-process mutex of each lock key being created or removed (see the module doc).
static BUSY: LazyLock<Locks> = LazyLock::new(Locks::default);

/// One lock, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub id: String,
    pub path: String,
    /// Seconds since the epoch.
    pub locked_at: u64,
    /// The subject of the token that took it.
    pub owner: String,
}

/// What a `lock` request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    Created(FileLock),
    /// The path was locked already: this lock holds it.
    Held(FileLock),
}

/// What an `unlock` request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockOutcome {
    Removed(FileLock),
    /// No lock has this id (never, or not any more).
    NotFound,
    /// Another user holds it and force was not asked.
    NotOwner(FileLock),
}

/// One page of a listing: at most the limit asked for, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockPage {
    pub locks: Vec<FileLock>,
    pub next_cursor: Option<String>,
}

/// Whether `id` has the shape of a lock id (checked before it becomes part of a key).
pub fn is_lock_id(id: &str) -> bool {
    is_lower_hex(id, HASH_HEX + NONCE_HEX)
}

/// Whether `cursor` has the shape of a listing cursor.
pub fn is_lock_cursor(cursor: &str) -> bool {
    is_lower_hex(cursor, HASH_HEX)
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The path's key part: `h` of the module doc.
fn path_hash(path: &str) -> String {
    let digest = Sha256::digest(path.as_bytes());
    hex::encode(&digest[..HASH_HEX / 2])
}

/// A path a lock may name: what git-lfs sends (relative to the work tree's root), bounded.
fn check_path(path: &str) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::Invalid {
            detail: format!(
                "invalid lock path {:?}: {why}",
                crate::storage::shorten(path)
            ),
        })
    };
    if path.is_empty() {
        return refuse("empty");
    }
    if path.len() > MAX_LOCK_PATH {
        return refuse(&format!("longer than {MAX_LOCK_PATH} bytes"));
    }
    if path.contains('\0') {
        return refuse("contains a NUL byte");
    }
    Ok(())
}

impl Repository {
    /// `{id}/git/lfs/locks/`, beside the LFS objects (see `lfs_path`).
    fn locks_prefix(&self) -> String {
        format!("{}locks/", self.lfs_base())
    }

    fn lock_key(&self, hash: &str) -> String {
        format!("{}{hash}", self.locks_prefix())
    }

    /// Lock `path` for `owner`, unless it is locked already (then the lock that holds it).
    /// `now`: seconds since the epoch, recorded as the lock's time.
    pub async fn lock_create(
        &self,
        path: &str,
        owner: &str,
        now: u64,
    ) -> Result<LockOutcome, Error> {
        check_path(path)?;
        let hash = path_hash(path);
        let key = self.lock_key(&hash);
        let held = self.backend.list(&self.locks_prefix()).await?.len();
        if held >= MAX_LOCKS {
            return Err(Error::Invalid {
                detail: format!(
                    "{} holds {held} locks, the most one repository may hold; unlock some first",
                    self.name
                ),
            });
        }
        let mutex = BUSY.get(&key);
        let _held = mutex.lock().await;
        for _ in 0..CREATE_ATTEMPTS {
            let lock = FileLock {
                id: format!(
                    "{hash}{}",
                    hex::encode(rand::random::<[u8; NONCE_HEX / 2]>())
                ),
                path: path.to_owned(),
                locked_at: now,
                owner: owner.to_owned(),
            };
            let body = serde_json::to_vec(&lock).map_err(|e| Error::backend(&key, e))?;
            match self
                .backend
                .put(&key, Bytes::from(body), PutMode::IfNoneMatch)
                .await
            {
                Ok(_) => return Ok(LockOutcome::Created(lock)),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            // Someone holds it: tell who, unless they let go meanwhile (then try again).
            if let Some((held, _)) = self.lock_record(&hash).await? {
                return Ok(LockOutcome::Held(held));
            }
        }
        Err(Error::Busy { key })
    }

    /// The lock on `path`, if any.
    pub async fn lock_by_path(&self, path: &str) -> Result<Option<FileLock>, Error> {
        check_path(path)?;
        Ok(self.lock_record(&path_hash(path)).await?.map(|(l, _)| l))
    }

    /// The lock with this id, if any.
    pub async fn lock_by_id(&self, id: &str) -> Result<Option<FileLock>, Error> {
        Ok(self.lock_record_by_id(id).await?.map(|(l, _)| l))
    }

    /// Remove lock `id`: `owner`'s own, or anyone's with `force`.
    pub async fn lock_remove(
        &self,
        id: &str,
        owner: &str,
        force: bool,
    ) -> Result<UnlockOutcome, Error> {
        let Some((lock, etag)) = self.lock_record_by_id(id).await? else {
            return Ok(UnlockOutcome::NotFound);
        };
        if lock.owner != owner && !force {
            return Ok(UnlockOutcome::NotOwner(lock));
        }
        let key = self.lock_key(&id[..HASH_HEX]);
        let mutex = BUSY.get(&key);
        let _held = mutex.lock().await;
        match self.backend.delete(&key, Some(&etag)).await {
            Ok(()) => Ok(UnlockOutcome::Removed(lock)),
            // Removed by someone else meanwhile, or replaced by a newer lock (another id):
            // this id is gone either way.
            Err(Error::NotFound { .. } | Error::Conflict { .. }) => Ok(UnlockOutcome::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` locks from `cursor` on (a `next_cursor` of an earlier page), in key
    /// order. A lock removed while the page is read is left out.
    pub async fn locks_page(&self, cursor: Option<&str>, limit: usize) -> Result<LockPage, Error> {
        if let Some(cursor) = cursor.filter(|c| !is_lock_cursor(c)) {
            return Err(Error::Invalid {
                detail: format!(
                    "invalid lock cursor {:?} (expected {HASH_HEX} lowercase hex digits)",
                    crate::storage::shorten(cursor)
                ),
            });
        }
        let prefix = self.locks_prefix();
        let mut hashes: Vec<String> = self
            .backend
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|meta| meta.key.strip_prefix(&prefix).map(str::to_owned))
            .filter(|hash| is_lock_cursor(hash))
            .filter(|hash| cursor.is_none_or(|c| hash.as_str() >= c))
            .take(limit.saturating_add(1))
            .collect();
        let next_cursor = hashes.get(limit).cloned();
        hashes.truncate(limit);
        let keys = hashes.iter().map(|h| self.lock_key(h)).collect();
        let mut locks = Vec::with_capacity(hashes.len());
        for (hash, read) in hashes
            .iter()
            .zip(self.backend.get_many(keys, READ_CONCURRENCY).await)
        {
            match read {
                Ok(object) => locks.extend(parse_record(hash, &object.body)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(LockPage { locks, next_cursor })
    }

    async fn lock_record_by_id(&self, id: &str) -> Result<Option<(FileLock, String)>, Error> {
        if !is_lock_id(id) {
            return Err(Error::Invalid {
                detail: format!(
                    "invalid lock id {:?} (expected {} lowercase hex digits)",
                    crate::storage::shorten(id),
                    HASH_HEX + NONCE_HEX
                ),
            });
        }
        Ok(self
            .lock_record(&id[..HASH_HEX])
            .await?
            .filter(|(lock, _)| lock.id == id))
    }

    /// The record at `hash` and its etag.
    async fn lock_record(&self, hash: &str) -> Result<Option<(FileLock, String)>, Error> {
        match self.backend.get(&self.lock_key(hash)).await {
            Ok(object) => Ok(parse_record(hash, &object.body).map(|l| (l, object.etag))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A record, if it is one of ours for this key (anything else under the prefix is ignored:
/// it can neither hold a path nor be listed).
fn parse_record(hash: &str, body: &[u8]) -> Option<FileLock> {
    let lock: FileLock = serde_json::from_slice(body).ok()?;
    (is_lock_id(&lock.id) && lock.id.starts_with(hash) && path_hash(&lock.path) == hash)
        .then_some(lock)
}

/// The rules on any backend (`repo::conformance` runs it on local disk, moto and s3s-fs):
/// racing locks of one path have one winner and every loser is told the winner's lock; an
/// unlock needs the owner or force; a stale id removes nothing; a page lists every lock.
#[cfg(test)]
pub(crate) async fn conformance(backend: std::sync::Arc<dyn crate::storage::Backend>) {
    let repo = super::Store::new(backend).repo("lockws", "locks").unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.lock_create("hot.bin", &format!("u{i}"), 1).await })
        })
        .collect();
    let mut created = Vec::new();
    let mut held = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            LockOutcome::Created(lock) => created.push(lock),
            LockOutcome::Held(lock) => held.push(lock),
        }
    }
    assert_eq!(created.len(), 1, "one winner: {created:?}");
    let winner = &created[0];
    assert!(held.iter().all(|l| l == winner), "losers see the winner");
    let other = if winner.owner == "u0" { "u1" } else { "u0" };
    assert!(matches!(
        repo.lock_remove(&winner.id, other, false).await.unwrap(),
        UnlockOutcome::NotOwner(_)
    ));
    repo.lock_create("b.bin", other, 2).await.unwrap();
    let page = repo.locks_page(None, 10).await.unwrap();
    assert_eq!(page.locks.len(), 2, "{page:?}");
    assert_eq!(
        repo.lock_remove(&winner.id, other, true).await.unwrap(),
        UnlockOutcome::Removed(winner.clone())
    );
    assert_eq!(
        repo.lock_remove(&winner.id, &winner.owner, false)
            .await
            .unwrap(),
        UnlockOutcome::NotFound
    );
    assert_eq!(repo.lock_by_path("hot.bin").await.unwrap(), None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Store;
    use crate::storage::{Backend, LocalDisk};
    use std::sync::Arc;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        let backend: Arc<dyn Backend> = Arc::new(disk);
        (dir, Store::new(backend).repo("ws", "r").unwrap())
    }

    #[test]
    fn ids_and_cursors() {
        let hash = path_hash("a.bin");
        assert!(is_lock_cursor(&hash));
        assert!(is_lock_id(&format!("{hash}0123456789ab")));
        for bad in [
            "",
            "../x",
            &hash.to_uppercase(),
            &format!("{hash}0123456789a"),
        ] {
            assert!(!is_lock_id(bad), "{bad}");
        }
    }

    /// The lock's key is beside the LFS objects, and a path locked again gets a new id, so
    /// a stale id cannot unlock it.
    #[tokio::test]
    async fn relocked_path_has_a_new_id() {
        let (dir, repo) = repo();
        let LockOutcome::Created(first) = repo.lock_create("a.bin", "ann", 1).await.unwrap() else {
            panic!("created")
        };
        let key = dir
            .path()
            .join("ws/artifacts/r/git/lfs/locks")
            .join(path_hash("a.bin"));
        assert!(key.is_file(), "{}", key.display());
        let held = repo.lock_create("a.bin", "bob", 2).await.unwrap();
        assert_eq!(held, LockOutcome::Held(first.clone()));
        assert!(matches!(
            repo.lock_remove(&first.id, "ann", false).await.unwrap(),
            UnlockOutcome::Removed(_)
        ));
        let LockOutcome::Created(second) = repo.lock_create("a.bin", "bob", 3).await.unwrap()
        else {
            panic!("created again")
        };
        assert_ne!(first.id, second.id);
        assert_eq!(
            repo.lock_remove(&first.id, "ann", true).await.unwrap(),
            UnlockOutcome::NotFound
        );
        assert_eq!(repo.lock_by_path("a.bin").await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn pages_cover_every_lock_once() {
        let (_dir, repo) = repo();
        for i in 0..7 {
            repo.lock_create(&format!("f{i}.bin"), "ann", 1)
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = repo.locks_page(cursor.as_deref(), 3).await.unwrap();
            assert!(page.locks.len() <= 3);
            seen.extend(page.locks.into_iter().map(|l| l.path));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        seen.sort();
        let want: Vec<String> = (0..7).map(|i| format!("f{i}.bin")).collect();
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn hostile_paths_ids_and_cursors_are_refused() {
        let (_dir, repo) = repo();
        let long = "a".repeat(MAX_LOCK_PATH + 1);
        for path in ["", long.as_str(), "a\0b"] {
            assert!(matches!(
                repo.lock_create(path, "ann", 1).await,
                Err(Error::Invalid { .. })
            ));
        }
        let at_limit = "a".repeat(MAX_LOCK_PATH);
        assert!(repo.lock_create(&at_limit, "ann", 1).await.is_ok());
        for id in ["../../../etc/passwd", "x", &"A".repeat(44)] {
            assert!(matches!(
                repo.lock_remove(id, "ann", true).await,
                Err(Error::Invalid { .. })
            ));
        }
        assert!(matches!(
            repo.locks_page(Some("../x"), 10).await,
            Err(Error::Invalid { .. })
        ));
    }
}
