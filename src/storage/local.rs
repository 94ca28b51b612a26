//! [`LocalDisk`]: the embedded store of `git hypha serve`, one file per key under a root
//! directory.
//!
//! Owns the key -> path mapping (nothing escapes the root: keys are checked by
//! [`check_key`]), crash-safe writes (temp file, `fsync`, rename),
//! conditional writes, and streaming reads and writes for the `/_store` handlers. It does not
//! speak HTTP: `server::store` turns requests into [`LocalDisk::open`] and
//! [`LocalDisk::put_stream`] calls after checking a [`presign`] signature.
//!
//! Etags are the SHA-256 of the content, so they change whenever the bytes do, whatever the
//! file system's timestamp granularity; `head` of an object above [`HEAD_HASH_LIMIT`] gives a
//! metadata etag instead (see [`metadata_etag`]), so existence checks never read content. Conditional writes are atomic within this process (one
//! lock around check-and-rename); `IfNoneMatch` is atomic across processes too (`link(2)`).
//!
//! Temp files live in one store-level directory, `<root>/.hypha-tmp/`, outside every key
//! (keys cannot name it, listings skip it), on the same file system so that the final rename
//! is atomic. A process killed mid-write therefore leaves nothing inside a repository (Hypha
//! advertises every file under `.git/refs/` as a ref); its stale temp files are removed when
//! the next store opens the root.

mod multipart;

use super::presign::{self, Presigner};
use super::{
    check_key, Backend, Error, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

/// File names starting with this are in-flight writes: never keys, never listed. (Older
/// versions wrote them next to their target; they stay unaddressable and unlisted.)
pub(crate) const TEMP_PREFIX: &str = ".hypha-tmp-";

/// The directory of in-flight writes, directly under the root. Never a key component.
pub(crate) const TEMP_DIR: &str = ".hypha-tmp";

/// Temp files older than this when a store opens the root were left by a killed process.
/// (Younger ones may belong to another server on the same root, still writing.)
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A [`Backend`] over a directory. Cheap to clone.
#[derive(Clone)]
pub struct LocalDisk {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// `<root>/.hypha-tmp`: where writes are staged before their rename.
    temp_dir: PathBuf,
    presigner: Presigner,
    /// Serialises check-then-rename of writes and deletes, so conditions hold in-process.
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for LocalDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDisk")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl LocalDisk {
    /// A store rooted at `root` (created if missing) whose presigned URLs start with
    /// `public_base_url` and are signed with `presign_secret`.
    pub fn new(
        root: impl Into<PathBuf>,
        public_base_url: &str,
        presign_secret: &[u8],
    ) -> Result<LocalDisk, Error> {
        let root = root.into();
        let shown = root.display().to_string();
        std::fs::create_dir_all(&root).map_err(|e| Error::backend(&shown, e))?;
        let root = root.canonicalize().map_err(|e| Error::backend(&shown, e))?;
        let presigner = Presigner::new(public_base_url, presign_secret)
            .map_err(|e| Error::backend(public_base_url, e))?;
        let temp_dir = root.join(TEMP_DIR);
        std::fs::create_dir_all(&temp_dir)
            .map_err(|e| Error::backend(&temp_dir.display().to_string(), e))?;
        remove_stale_temps(&temp_dir, STALE_TEMP_AGE);
        Ok(LocalDisk {
            inner: Arc::new(Inner {
                temp_dir,
                root,
                presigner,
                commit_lock: Mutex::new(()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Check a presigned request for `key`; returns the signed size of a `PUT`.
    pub fn verify_presigned(
        &self,
        method: PresignMethod,
        key: &str,
        query: &presign::Query,
        now_unix: u64,
    ) -> Result<Option<u64>, presign::Error> {
        self.inner.presigner.verify(method, key, query, now_unix)
    }

    /// An open file and its size, for streaming a `GET`.
    pub async fn open(&self, key: &str) -> Result<(tokio::fs::File, u64), Error> {
        let path = self.inner.path(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(key, e))?;
        let meta = file.metadata().await.map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(Error::NotFound { key: key.into() });
        }
        Ok((file, meta.len()))
    }

    /// Stream `body` into `key`, replacing it only if exactly `expected_size` bytes arrive;
    /// otherwise the partial file is removed and [`Error::SizeMismatch`] returned. Returns
    /// the new etag. With [`PutMode::IfNoneMatch`] an existing object is never replaced: the
    /// same bytes again (a retried upload) succeed, other bytes are [`Error::AlreadyExists`].
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        mut body: S,
        expected_size: u64,
        mode: PutMode,
    ) -> Result<String, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = self.inner.path(key)?;
        let (file, temp) = {
            let inner = self.inner.clone();
            let key = key.to_owned();
            blocking(key.clone(), move || inner.create_temp(&key)).await?
        };
        // `temp` removes the file when dropped, so every early return below cleans up.
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            // The body stream fails when the uploader stops before its declared length: that
            // is a short upload, the client's fault, not a storage failure.
            let Ok(chunk) = chunk else {
                return Err(Error::SizeMismatch {
                    key: key.into(),
                    expected: expected_size,
                    received,
                });
            };
            received += chunk.len() as u64;
            if received > expected_size {
                return Err(Error::SizeMismatch {
                    key: key.into(),
                    expected: expected_size,
                    received,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::backend(key, e))?;
        }
        if received != expected_size {
            return Err(Error::SizeMismatch {
                key: key.into(),
                expected: expected_size,
                received,
            });
        }
        file.flush().await.map_err(|e| Error::backend(key, e))?;
        file.sync_all().await.map_err(|e| Error::backend(key, e))?;
        drop(file);
        let inner = self.inner.clone();
        let owned_key = key.to_owned();
        let etag = hex::encode(hasher.finalize());
        let same = etag.clone();
        blocking(key.to_owned(), move || {
            match inner.commit(&owned_key, temp, &path, &mode) {
                Err(Error::AlreadyExists { .. }) if hash_file(&owned_key, &path)? == same => Ok(()),
                other => other,
            }
        })
        .await?;
        Ok(etag)
    }
}

#[async_trait]
impl Backend for LocalDisk {
    async fn get(&self, key: &str) -> Result<Object, Error> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(key.clone(), move || inner.get(&key)).await
    }

    async fn get_many(&self, keys: Vec<String>, _concurrency: usize) -> Vec<Result<Object, Error>> {
        // One blocking task reads them all: small files are read faster in a row than through
        // a thread hand-off each.
        let inner = self.inner.clone();
        let count = keys.len();
        match tokio::task::spawn_blocking(move || {
            keys.iter().map(|key| inner.get(key)).collect::<Vec<_>>()
        })
        .await
        {
            Ok(objects) => objects,
            Err(e) => (0..count)
                .map(|_| {
                    Err(Error::backend(
                        "(many keys)",
                        std::io::Error::other(format!("reading task failed: {e}")),
                    ))
                })
                .collect(),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(key.clone(), move || inner.head(&key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(key.clone(), move || inner.get_range(&key, range)).await
    }

    async fn put_file(&self, key: &str, file: std::fs::File, size: u64) -> Result<String, Error> {
        let mut file = tokio::fs::File::from_std(file);
        tokio::io::AsyncSeekExt::seek(&mut file, SeekFrom::Start(0))
            .await
            .map_err(|e| Error::backend(key, e))?;
        self.put_stream(
            key,
            tokio_util::io::ReaderStream::new(file),
            size,
            PutMode::Overwrite,
        )
        .await
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<String, Error> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        blocking(key.clone(), move || inner.put(&key, &body, &mode)).await
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        let if_match = if_match.map(str::to_owned);
        blocking(key.clone(), move || inner.delete(&key, if_match.as_deref())).await
    }

    fn multipart(&self) -> Option<&dyn super::Multipart> {
        Some(self)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        let inner = self.inner.clone();
        let prefix = prefix.to_owned();
        blocking(prefix.clone(), move || inner.list(&prefix)).await
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, Error> {
        check_key(key)?;
        let expires_at = crate::auth::unix_now() + expires_in.as_secs();
        let mut headers = BTreeMap::new();
        if method.is_put() {
            let Some(len) = content_length else {
                return Err(Error::Invalid {
                    detail: format!("{key}: a presigned PUT needs a content length"),
                });
            };
            headers.insert(
                "Content-Type".to_owned(),
                "application/octet-stream".to_owned(),
            );
            headers.insert("Content-Length".to_owned(), len.to_string());
        }
        Ok(PresignedTransfer {
            method: method.http_method().to_owned(),
            url: self
                .inner
                .presigner
                .sign(method, key, expires_at, content_length),
            headers,
        })
    }
}

impl Inner {
    fn path(&self, key: &str) -> Result<PathBuf, Error> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn get(&self, key: &str) -> Result<Object, Error> {
        let body = std::fs::read(self.path(key)?).map_err(|e| io_error(key, e))?;
        let etag = hex::encode(Sha256::digest(&body));
        Ok(Object {
            body: body.into(),
            etag,
        })
    }

    fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        let path = self.path(key)?;
        let meta = std::fs::metadata(&path).map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(Error::NotFound { key: key.into() });
        }
        let etag = if meta.len() <= HEAD_HASH_LIMIT {
            hash_file(key, &path)?
        } else {
            metadata_etag(&meta)
        };
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: meta.len(),
            etag: Some(etag),
            last_modified: meta.modified().ok(),
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        let mut file = std::fs::File::open(self.path(key)?).map_err(|e| io_error(key, e))?;
        let size = file.metadata().map_err(|e| io_error(key, e))?.len();
        if range.start > range.end || range.end > size {
            return Err(Error::InvalidRange {
                key: key.into(),
                start: range.start,
                end: range.end,
            });
        }
        let len = usize::try_from(range.end - range.start).map_err(|e| Error::backend(key, e))?;
        let mut buf = vec![0; len];
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| io_error(key, e))?;
        Ok(buf.into())
    }

    fn put(&self, key: &str, body: &[u8], mode: &PutMode) -> Result<String, Error> {
        let path = self.path(key)?;
        let (mut file, temp) = self.create_temp(key)?;
        file.write_all(body)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::backend(key, e))?;
        drop(file);
        self.commit(key, temp, &path, mode)?;
        Ok(hex::encode(Sha256::digest(body)))
    }

    /// A temp file in the store's temp directory (same file system as every key, so the
    /// final rename is atomic).
    fn create_temp(&self, key: &str) -> Result<(std::fs::File, TempPath), Error> {
        // The directory is made by `new`; it is made again should someone have removed it.
        let make = || {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&self.temp_dir)
        };
        let file = match make() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.temp_dir).map_err(|e| Error::backend(key, e))?;
                make()
            }
            other => other,
        }
        .map_err(|e| Error::backend(key, e))?;
        Ok(file.into_parts())
    }

    /// Move a fully written temp file into place if `mode` allows.
    fn commit(&self, key: &str, temp: TempPath, path: &Path, mode: &PutMode) -> Result<(), Error> {
        let dir = path
            .parent()
            .ok_or_else(|| Error::backend(key, "key has no parent directory"))?;
        // No fsync of the directory: a killed process cannot undo a rename, and measured here
        // it doubled the cost of every ref write (about +5 ms). Journaling file systems
        // commit renames in order, which is the order the commit record needs.
        self.rename_into_place(key, temp, dir, path, mode)
    }

    fn rename_into_place(
        &self,
        key: &str,
        mut temp: TempPath,
        dir: &Path,
        path: &Path,
        mode: &PutMode,
    ) -> Result<(), Error> {
        // The lock guards no data, so a poisoned lock is still a good lock.
        let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let PutMode::IfMatch(expected) = mode {
            if &hash_file(key, path)? != expected {
                return Err(Error::Conflict { key: key.into() });
            }
        }
        // A delete outside this lock's reach (another process on the root) may prune the
        // empty target directory between `create_dir_all` and the rename: make it again.
        let mut attempts = 0;
        loop {
            std::fs::create_dir_all(dir).map_err(|e| Error::backend(key, e))?;
            let persisted = match mode {
                PutMode::IfNoneMatch => temp.persist_noclobber(path),
                PutMode::Overwrite | PutMode::IfMatch(_) => temp.persist(path),
            };
            match persisted {
                Ok(()) => return Ok(()),
                Err(e) if e.error.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                    temp = e.path;
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists { key: key.into() });
                }
                Err(e) => return Err(Error::backend(key, e.error)),
            }
        }
    }

    fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error> {
        let path = self.path(key)?;
        {
            let _guard = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(expected) = if_match {
                if hash_file(key, &path)? != expected {
                    return Err(Error::Conflict { key: key.into() });
                }
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) => match io_error(key, e) {
                    Error::NotFound { .. } if if_match.is_none() => return Ok(()),
                    err => return Err(err),
                },
            }
        }
        // Empty directories would block a later key that needs a file of that name
        // (`refs/heads/a/b` deleted, then `refs/heads/a` created). `remove_dir` fails on a
        // directory that is not empty, which is where this stops.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        // Start at the deepest directory the prefix names, not at the root.
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) => {
                check_key(dir)?;
                dir
            }
            None => "",
        };
        let mut out = Vec::new();
        self.walk(prefix, start, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn walk(&self, prefix: &str, dir_key: &str, out: &mut Vec<ObjectMeta>) -> Result<(), Error> {
        let dir = if dir_key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_key)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                return match io_error(dir_key, e) {
                    Error::NotFound { .. } => Ok(()),
                    err => Err(err),
                }
            }
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::backend(dir_key, e))?;
            // A name that is not UTF-8 cannot be a key: nothing here wrote it.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) || (dir_key.is_empty() && name == TEMP_DIR) {
                continue;
            }
            let key = if dir_key.is_empty() {
                name
            } else {
                format!("{dir_key}/{name}")
            };
            // `file_type` does not follow symlinks; a symlink is never a key.
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if vanished_kind(&e) => continue,
                Err(e) => return Err(Error::backend(&key, e)),
            };
            if file_type.is_dir() {
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    self.walk(prefix, &key, out)?;
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if vanished_kind(&e) => continue,
                    Err(e) => return Err(io_error(&key, e)),
                };
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                    etag: None,
                    last_modified: meta.modified().ok(),
                });
            }
        }
        Ok(())
    }
}

/// A directory entry removed between `read_dir` and looking at it (a thin upload completed,
/// an upload marker committed): it is simply not listed. A listing is no snapshot, on S3
/// either; failing it made `uploads` answer 404 ("repository not found") to pushes racing
/// other pushes.
fn vanished_kind(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Remove files in `temp_dir` last modified more than `age` ago: writes of a process that
/// was killed. Best effort: a file that cannot be removed is only disk space, never a key.
fn remove_stale_temps(temp_dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|d| d >= age));
        if stale && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Objects up to this size get their content hash from `head` (a bounded read): refs, HEAD,
/// configs and records, whose etags callers may compare with those of `get` and `put`.
const HEAD_HASH_LIMIT: u64 = 64 * 1024;

/// The etag `head` gives a larger object, from its metadata alone so that an existence check
/// costs one `stat` whatever the size (hashing a 20 MiB LFS object on every batch was the
/// cost). Every write replaces the file by a rename (new inode, new times), so it changes
/// whenever the bytes do. It never equals a content hash (`m-` prefix): a conditional write
/// or delete given it fails with a conflict rather than matching anything. No caller
/// conditions writes on a large object's `head`.
fn metadata_etag(meta: &std::fs::Metadata) -> String {
    let nanos = |t: io::Result<std::time::SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    #[cfg(unix)]
    let identity = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{:x}-{:x}-{:x}.{:x}",
            meta.dev(),
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    };
    #[cfg(not(unix))]
    let identity = String::from("0");
    format!("m-{:x}-{:x}-{identity}", meta.len(), nanos(meta.modified()))
}

fn hash_file(key: &str, path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(key, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| io_error(key, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// A missing file, a file where a directory should be, or a directory where a file should
/// be all mean "no such key".
fn io_error(key: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Error::NotFound { key: key.into() }
        }
        _ => Error::backend(key, e),
    }
}

async fn blocking<T: Send + 'static>(
    key: String,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(&key, e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (tempfile::TempDir, Arc<dyn Backend>) {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path().join("store"), "http://localhost:1", b"k").unwrap();
        (dir, Arc::new(disk))
    }

    /// Files come and go while a listing walks their directory (uploads completed and
    /// committed by other requests): the listing never fails for it. It did, with
    /// `NotFound`, which made the `uploads` route answer 404 to a push racing others. Three
    /// writers on two cores get the lister preempted between reading the directory and
    /// looking at an entry, as a loaded server is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_ignores_files_removed_under_it() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (dir, backend) = disk();
        let churn_dir = dir.path().join("store/r/hypha-remote/thin");
        std::fs::create_dir_all(&churn_dir).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let churners: Vec<_> = (0..3)
            .map(|t| {
                let (stop, churn_dir) = (stop.clone(), churn_dir.clone());
                std::thread::spawn(move || {
                    let names: Vec<_> = (0..500)
                        .map(|i| churn_dir.join(format!("t{t}-{i}")))
                        .collect();
                    while !stop.load(Ordering::Relaxed) {
                        for n in &names {
                            std::fs::write(n, b"x").unwrap();
                        }
                        for n in &names {
                            std::fs::remove_file(n).unwrap();
                        }
                    }
                })
            })
            .collect();
        let started = std::time::Instant::now();
        let (mut listings, mut seen) = (0, 0);
        let mut failure = None;
        while started.elapsed() < Duration::from_millis(1500) {
            match backend.list("r/hypha-remote/").await {
                Ok(listed) => seen += listed.len(),
                Err(e) => {
                    failure = Some(format!("listing {listings} failed: {e}"));
                    break;
                }
            }
            listings += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for c in churners {
            c.join().unwrap();
        }
        assert_eq!(failure, None, "files removed under a listing");
        assert!(seen > 0, "the listings saw the churn ({listings} listings)");
    }

    #[tokio::test]
    async fn nothing_escapes_the_root() {
        let (dir, backend) = disk();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        for key in ["../secret", "a/../../secret", "/etc/passwd", "a//b"] {
            assert!(matches!(
                backend.get(key).await,
                Err(Error::InvalidKey { .. })
            ));
            assert!(matches!(
                backend.put(key, Bytes::new(), PutMode::Overwrite).await,
                Err(Error::InvalidKey { .. })
            ));
        }
        assert!(backend.list("../").await.is_err());
    }

    #[tokio::test]
    async fn stream_put_checks_size_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        let chunks = |parts: &[&'static [u8]]| {
            futures_util::stream::iter(
                parts
                    .iter()
                    .map(|p| Ok::<_, io::Error>(Bytes::from_static(p)))
                    .collect::<Vec<_>>(),
            )
        };
        let err = disk
            .put_stream("a/b", chunks(&[b"abc", b"def"]), 5, PutMode::Overwrite)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { received: 6, .. }));
        let err = disk
            .put_stream("a/b", chunks(&[b"abc"]), 5, PutMode::Overwrite)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { received: 3, .. }));
        // Nothing left behind: no key, no temp file.
        assert!(!dir.path().join("a/b").exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(TEMP_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let etag = disk
            .put_stream("a/b", chunks(&[b"ab", b"cde"]), 5, PutMode::Overwrite)
            .await
            .unwrap();
        let got = disk.get("a/b").await.unwrap();
        assert_eq!(&got.body[..], b"abcde");
        assert_eq!(got.etag, etag);

        // Create-only (packs and idx files): the same bytes again succeed, other bytes never
        // replace what is there.
        disk.put_stream("a/b", chunks(&[b"abcde"]), 5, PutMode::IfNoneMatch)
            .await
            .expect("a retried upload of the same bytes");
        let err = disk
            .put_stream("a/b", chunks(&[b"zzzzz"]), 5, PutMode::IfNoneMatch)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(&disk.get("a/b").await.unwrap().body[..], b"abcde");
    }

    /// A write in flight (a process killed mid-write) has its temp file in the store's temp
    /// directory only: never inside a repository, never listed, never addressable; the
    /// next store on the root removes it once stale.
    #[tokio::test]
    async fn temp_files_stay_out_of_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
        let temp_dir = dir.path().join(TEMP_DIR);
        let (file, temp) = disk.inner.create_temp("r/.git/refs/heads/x").unwrap();
        drop(file);
        // What a SIGKILL leaves: the temp file is never renamed nor removed.
        let left = temp.keep().unwrap();
        assert_eq!(left.parent(), Some(temp_dir.as_path()));
        disk.put(
            "r/.git/refs/heads/main",
            Bytes::from_static(b"x\n"),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
        let keys: Vec<String> = disk
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, vec!["r/.git/refs/heads/main".to_owned()]);
        let name = left.file_name().unwrap().to_str().unwrap().to_owned();
        for key in [format!("{TEMP_DIR}/{name}"), TEMP_DIR.to_owned()] {
            assert!(
                matches!(disk.get(&key).await, Err(Error::InvalidKey { .. })),
                "{key}"
            );
        }
        assert!(disk.list(&format!("{TEMP_DIR}/")).await.is_err());

        // A fresh temp file survives a restart (another server may be writing it), a stale
        // one does not.
        drop(LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap());
        assert!(left.exists(), "young temp files are kept");
        let hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
        std::fs::File::options()
            .write(true)
            .open(&left)
            .unwrap()
            .set_modified(hours_ago)
            .unwrap();
        drop(LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap());
        assert!(!left.exists(), "stale temp files are removed at start");
    }

    /// `head` of a large object is a `stat`, not a read: its etag comes from metadata, and
    /// still changes when the object is replaced (same size, other bytes). Small objects
    /// keep the content etag that `put` and `get` return.
    #[tokio::test]
    async fn head_of_a_large_object_does_not_hash_it() {
        let (_dir, backend) = disk();
        let big = vec![1u8; (HEAD_HASH_LIMIT + 1) as usize];
        let put_etag = backend
            .put("r/big", Bytes::from(big.clone()), PutMode::Overwrite)
            .await
            .unwrap();
        let first = backend.head("r/big").await.unwrap();
        assert_eq!(first.size, big.len() as u64);
        let etag = first.etag.unwrap();
        assert!(etag.starts_with("m-") && etag != put_etag, "{etag}");
        assert_eq!(backend.head("r/big").await.unwrap().etag.unwrap(), etag);
        // A conditional write given it conflicts rather than matching anything.
        assert!(matches!(
            backend
                .put(
                    "r/big",
                    Bytes::from_static(b"x"),
                    PutMode::IfMatch(etag.clone())
                )
                .await,
            Err(Error::Conflict { .. })
        ));
        let other = vec![2u8; big.len()];
        backend
            .put("r/big", Bytes::from(other), PutMode::Overwrite)
            .await
            .unwrap();
        assert_ne!(backend.head("r/big").await.unwrap().etag.unwrap(), etag);
        let small = backend
            .put("r/small", Bytes::from_static(b"ref\n"), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(backend.head("r/small").await.unwrap().etag, Some(small));
    }

    #[tokio::test]
    async fn delete_prunes_empty_directories() {
        let (_dir, backend) = disk();
        backend
            .put(
                "r/refs/heads/a/b",
                Bytes::from_static(b"x"),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
        backend.delete("r/refs/heads/a/b", None).await.unwrap();
        backend
            .put(
                "r/refs/heads/a",
                Bytes::from_static(b"y"),
                PutMode::IfNoneMatch,
            )
            .await
            .unwrap();
        assert_eq!(&backend.get("r/refs/heads/a").await.unwrap().body[..], b"y");
    }
}
