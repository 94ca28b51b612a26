//! The git repository layout over a [`Backend`] (DESIGN §3) and the refs compare-and-swap of
//! `update` (DESIGN §4, HYPHA.md §7.2).
//!
//! Owns every key below `{workspace}/artifacts/{alias}/.git/`: `HEAD`, `refs/...`,
//! `objects/pack/...`, and the private `hypha-remote/config.json`. Writes exactly the bytes
//! Hypha writes (`"<40 hex>\n"`, `"ref: <ref>\n"`), so that Hypha's smart HTTP serves what
//! is stored here. Does not check permissions or fast-forwards (the server and the client
//! do), and never reads pack contents beyond the 20-byte checksums that tie an idx to its pack.
//!
//! Concurrency: `update` holds a per-repository lock (one tokio mutex per prefix, in
//! process) and writes each ref with a conditional put, so writers outside this process
//! (Hypha itself, another server on the same bucket) are detected rather than overwritten.
//!
//! Crashes: an atomic update of several refs commits by writing a record before its first
//! ref write; whoever takes the lock next finishes it, and readers see its refs meanwhile
//! ([`journal`]). Uploaded packs stay hidden from readers until an update names them, and
//! compaction removes those whose update never came ([`uploads`]).

use super::{Backend, Error, ObjectMeta, PresignMethod, PutMode};
use crate::api::{self, RefResult, RefStatus, RefUpdate, UpdateRequest, UpdateResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

/// Branch HEAD points at when nobody said otherwise.
pub const DEFAULT_BRANCH: &str = "main";

/// How long `update` waits for another update of the same repository before answering busy.
/// Ref writes in flight at once during one `update`.
const WRITE_CONCURRENCY: usize = 32;

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Concurrent reads when loading refs (one `GET` per ref, as in Hypha's layout).
const READ_CONCURRENCY: usize = 16;

/// Git's words (receive-pack, `receive.denyDeleteCurrent`), so users see what git shows.
pub const DENY_DELETE_CURRENT: &str = "deletion of the current branch prohibited";

/// Detail of the other refs when an atomic update fails.
pub const ATOMIC_FAILED: &str = "atomic push failed";

/// Private settings of a repository, at `.git/hypha-remote/config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    #[serde(default)]
    pub public: bool,
    #[serde(default = "default_branch")]
    pub default_branch: String,
}

fn default_branch() -> String {
    DEFAULT_BRANCH.to_owned()
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            public: false,
            default_branch: default_branch(),
        }
    }
}

/// One complete pack: its `.pack` and `.idx` both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackEntry {
    /// `pack-<40 hex>`.
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    pub last_modified: Option<SystemTime>,
}

/// A backend plus the per-repository locks shared by every [`Repository`] made from it.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    locks: Arc<Locks>,
    ref_cache: Arc<ref_cache::RefCache>,
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

    /// The repository `workspace/alias`; both must pass [`api::is_valid_repo_segment`].
    pub fn repo(&self, workspace: &str, alias: &str) -> Result<Repository, Error> {
        for segment in [workspace, alias] {
            if !api::is_valid_repo_segment(segment) {
                return Err(Error::Invalid {
                    detail: format!("invalid repository name {:?}", super::shorten(segment)),
                });
            }
        }
        let prefix = format!("{workspace}/artifacts/{alias}/.git/");
        Ok(Repository {
            backend: self.backend.clone(),
            lock: self.locks.get(&prefix),
            ref_cache: self.ref_cache.clone(),
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
                super::shorten(prefix)
            ),
        };
        let Some(dir) = prefix.strip_suffix('/') else {
            return Err(invalid("must end in .git/"));
        };
        if dir != ".git" && !dir.ends_with("/.git") {
            return Err(invalid("must end in .git/"));
        }
        super::check_key(dir).map_err(|_| invalid("not a valid key"))?;
        Ok(Repository {
            backend: self.backend.clone(),
            lock: self.locks.get(prefix),
            ref_cache: self.ref_cache.clone(),
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
    multipart: upload::MultipartPolicy,
    /// `workspace/alias`, for messages.
    name: String,
    /// `{workspace}/artifacts/{alias}/.git/`.
    prefix: String,
}

/// A ref as read under the lock: value and the etag to write against.
#[derive(Debug, Clone)]
struct Current {
    oid: Option<String>,
    etag: Option<String>,
}

/// What to write for one accepted update.
#[derive(Debug, Clone)]
enum Write {
    Create {
        new: String,
    },
    Replace {
        new: String,
        etag: String,
    },
    Delete {
        etag: String,
    },
    /// Delete of a ref that is already absent: nothing to do.
    Nothing,
}

/// How to undo one write if an atomic update fails later.
struct Undo {
    key: String,
    previous: Option<String>,
    /// Etag of what we wrote; `None` when we deleted.
    written: Option<String>,
}

impl Repository {
    /// `workspace/alias`.
    pub fn name(&self) -> &str {
        &self.name
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

    /// A repository exists when any of the objects `create` writes exists. (An artifact
    /// that Hypha switched to git storage through `edit()` has no HEAD, but `.gitkeep`.)
    pub async fn exists(&self) -> Result<bool, Error> {
        for rel in ["HEAD", "hypha-remote/config.json", "objects/pack/.gitkeep"] {
            match self.backend.head(&self.key(rel)).await {
                Ok(_) => return Ok(true),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Make an empty repository: config, `HEAD` -> `refs/heads/<default_branch>`, and
    /// `objects/pack/.gitkeep`, as Hypha's `init_bare` does. [`Error::AlreadyExists`] (naming
    /// the repository) when it exists.
    pub async fn create(&self, public: bool, default_branch: Option<&str>) -> Result<(), Error> {
        let branch = default_branch.unwrap_or(DEFAULT_BRANCH);
        let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        let head = format!("refs/heads/{branch}");
        check_ref(&head)?;
        let exists = || Error::AlreadyExists {
            key: self.name.clone(),
        };
        if self.exists().await? {
            return Err(exists());
        }
        let config = RepoConfig {
            public,
            default_branch: branch.to_owned(),
        };
        let body = serde_json::to_vec_pretty(&config).map_err(|e| Error::backend(&self.name, e))?;
        // The config is written first and conditionally: of two racing creators, one wins.
        match self
            .backend
            .put(&self.config_key(), body.into(), PutMode::IfNoneMatch)
            .await
        {
            Err(Error::AlreadyExists { .. }) => return Err(exists()),
            other => other?,
        };
        match self
            .backend
            .put(
                &self.key("HEAD"),
                Bytes::from(format!("ref: {head}\n")),
                PutMode::IfNoneMatch,
            )
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.backend
            .put(
                &self.key("objects/pack/.gitkeep"),
                Bytes::new(),
                PutMode::Overwrite,
            )
            .await?;
        Ok(())
    }

    /// The private settings; defaults when the file is missing (a repository Hypha made).
    pub async fn config(&self) -> Result<RepoConfig, Error> {
        let key = self.config_key();
        match self.backend.get(&key).await {
            Ok(obj) => serde_json::from_slice(&obj.body).map_err(|e| Error::backend(&key, e)),
            Err(Error::NotFound { .. }) => Ok(RepoConfig::default()),
            Err(e) => Err(e),
        }
    }

    /// The ref `HEAD` points at, or `None` when `HEAD` is missing or not a symref.
    pub async fn head(&self) -> Result<Option<String>, Error> {
        match self.backend.get(&self.key("HEAD")).await {
            Ok(obj) => Ok(std::str::from_utf8(&obj.body)
                .ok()
                .and_then(|s| s.trim().strip_prefix("ref:"))
                .map(|r| r.trim().to_owned())
                .filter(|r| api::refname::is_valid(r))),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The default branch name (without `refs/heads/`): from HEAD, else from the config.
    pub async fn default_branch(&self) -> Result<String, Error> {
        if let Some(head) = self.head().await? {
            if let Some(branch) = head.strip_prefix("refs/heads/") {
                return Ok(branch.to_owned());
            }
        }
        Ok(self.config().await?.default_branch)
    }

    /// Point `HEAD` at `symref` (which need not exist yet, as in git).
    pub async fn set_head(&self, symref: &str) -> Result<(), Error> {
        check_ref(symref)?;
        self.backend
            .put(
                &self.key("HEAD"),
                Bytes::from(format!("ref: {symref}\n")),
                PutMode::Overwrite,
            )
            .await?;
        Ok(())
    }

    /// Every ref: full name -> oid. Objects under `refs/` whose name or content is not a
    /// ref are skipped rather than advertised. An atomic update is seen whole or not at all,
    /// also while it is being written or after its server died mid-way ([`journal`]).
    pub async fn refs(&self) -> Result<BTreeMap<String, String>, Error> {
        let (refs, overlaid) = self.consistent_refs(|| self.stored_refs()).await?;
        if overlaid {
            // Unfinished, and no update of this process is writing it: its writer died.
            // Finishing it is best effort; what this reader sees is right either way.
            if let Ok(_guard) = self.lock.try_lock() {
                if let Err(e) = self.roll_forward().await {
                    eprintln!("{}: could not finish an interrupted update: {e}", self.name);
                }
            }
        }
        Ok(refs)
    }

    /// The ref objects as they are: one `GET` each, except refs whose listed etag the
    /// [`ref_cache`] knows.
    async fn stored_refs(&self) -> Result<BTreeMap<String, String>, Error> {
        let mut refs = BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, etag) in self.listed_refs().await? {
            let key = self.key(&name);
            match etag.as_deref().and_then(|e| self.ref_cache.get(&key, e)) {
                Some(oid) => {
                    if let Some(oid) = oid {
                        refs.insert(name, oid);
                    }
                }
                // Only a listing with etags can hit the cache later: local disk's has none.
                None => unknown.push((name, key, etag.is_some())),
            }
        }
        let keys = unknown.iter().map(|(_, key, _)| key.clone()).collect();
        let objects = self.backend.get_many(keys, READ_CONCURRENCY).await;
        for ((name, key, cacheable), object) in unknown.into_iter().zip(objects) {
            let current = current_of(object)?;
            if let (true, Some(etag)) = (cacheable, &current.etag) {
                self.ref_cache.put(&key, etag, current.oid.clone());
            }
            if let Some(oid) = current.oid {
                refs.insert(name, oid);
            }
        }
        Ok(refs)
    }

    async fn ref_names(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .listed_refs()
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Every ref the store lists, with its etag where the listing gives one.
    async fn listed_refs(&self) -> Result<Vec<(String, Option<String>)>, Error> {
        let refs_prefix = self.key("refs/");
        Ok(self
            .backend
            .list(&refs_prefix)
            .await?
            .into_iter()
            .map(|meta| (meta.key[self.prefix.len()..].to_owned(), meta.etag))
            .filter(|(name, _)| api::refname::is_valid(name))
            .collect())
    }

    /// One ref, tolerating a missing newline or CRLF; an unreadable body counts as absent.
    async fn read_ref(&self, name: &str) -> Result<Current, Error> {
        current_of(self.backend.get(&self.key(name)).await)
    }

    /// Every complete pack (idx present), oldest first. A `.pack` without its `.idx` is an
    /// upload in progress, or a broken one: invisible either way. Packs retired by compaction
    /// are left out: their objects are in the pack that replaced them. So are uploads no
    /// update has named yet ([`uploads`]): no ref needs them, and they may never be.
    pub async fn packs(&self) -> Result<Vec<PackEntry>, Error> {
        let dir = self.key("objects/pack/");
        let (listing, retired, pending) = tokio::join!(
            self.backend.list(&dir),
            self.retired(),
            self.pending_uploads()
        );
        let (listing, retired, pending) = (listing?, retired?, pending?);
        let mut packs = pack_sizes(&dir, &listing)
            .into_iter()
            .filter(|(name, _)| !retired.contains_key(*name) && !pending.contains(*name))
            .filter_map(|(name, (pack, idx))| {
                let (pack, idx) = (pack?, idx?);
                Some(PackEntry {
                    name: name.to_owned(),
                    pack_size: pack.size,
                    idx_size: idx.size,
                    last_modified: pack.last_modified,
                })
            })
            .collect::<Vec<_>>();
        packs.sort_by(|a, b| {
            a.last_modified
                .cmp(&b.last_modified)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(packs)
    }

    /// Presigned `GET`s of a pack's `.pack` and `.idx`.
    pub async fn presign_download(
        &self,
        name: &str,
        expires_in: Duration,
    ) -> Result<(api::PresignedRequest, api::PresignedRequest), Error> {
        check_pack_name(name)?;
        let pack = self
            .backend
            .presign(
                &self.pack_key(name, "pack"),
                PresignMethod::Get,
                expires_in,
                None,
            )
            .await?;
        let idx = self
            .backend
            .presign(
                &self.pack_key(name, "idx"),
                PresignMethod::Get,
                expires_in,
                None,
            )
            .await?;
        Ok((pack, idx))
    }

    /// Presigned `PUT`s for one pack's `.idx` and `.pack` at the declared sizes.
    pub async fn presign_upload(
        &self,
        spec: &api::UploadSpec,
        expires_in: Duration,
    ) -> Result<api::Upload, Error> {
        check_pack_name(&spec.name)?;
        self.mark_upload(&spec.name).await?;
        let idx = self
            .backend
            .presign(
                &self.pack_key(&spec.name, "idx"),
                PresignMethod::Put,
                expires_in,
                Some(spec.idx_size),
            )
            .await?;
        // One PUT, or a multipart upload for a large pack: see `upload`.
        let (pack, multipart) = self.presign_pack(spec, expires_in).await?;
        Ok(api::Upload {
            name: spec.name.clone(),
            idx,
            pack,
            multipart,
        })
    }

    /// The commit point of a push: validate, check the packs, then compare-and-swap every
    /// ref under the repository lock. Per-ref outcomes are in the response; `Err` means the
    /// request as a whole was refused (bad name, missing pack) or storage failed.
    pub async fn update(&self, req: &UpdateRequest) -> Result<UpdateResponse, Error> {
        validate_updates(req)?;
        self.check_packs(&req.packs).await?;

        let _guard = tokio::time::timeout(LOCK_TIMEOUT, self.lock.lock())
            .await
            .map_err(|_| Error::Busy {
                key: self.name.clone(),
            })?;

        // An atomic update whose server died after its commit point is finished first.
        let base = self.roll_forward().await?;

        // Fresh reads under the lock: what the client saw may be old.
        let head = self.head().await?;
        let existing: BTreeSet<String> = self.ref_names().await?.into_iter().collect();
        let mut current = Vec::with_capacity(req.updates.len());
        for update in &req.updates {
            current.push(self.read_ref(&update.name).await?);
        }

        let mut results: Vec<Option<RefResult>> = vec![None; req.updates.len()];
        let mut writes: Vec<Option<Write>> = vec![None; req.updates.len()];
        let created: BTreeSet<&str> = req
            .updates
            .iter()
            .filter(|u| u.new.is_some())
            .map(|u| u.name.as_str())
            .collect();
        for (i, (update, cur)) in req.updates.iter().zip(&current).enumerate() {
            match plan(update, cur, head.as_deref(), &existing, &created) {
                Ok(write) => writes[i] = Some(write),
                Err(result) => results[i] = Some(result),
            }
        }

        let failed = |results: &[Option<RefResult>]| results.iter().any(Option::is_some);
        if req.atomic && failed(&results) {
            return Ok(finish_atomic_failure(req, results));
        }
        // The packs become visible now, before any ref needs them. (An update that writes no
        // ref leaves them pending: compaction removes them after the grace period.)
        if writes.iter().any(Option::is_some) {
            self.commit_uploads(&req.packs).await?;
        }
        // Several writes of an atomic update: the commit point is the record ([`journal`]).
        let planned: Vec<journal::Planned> = writes
            .iter()
            .zip(&req.updates)
            .zip(&current)
            .filter(|((w, _), _)| w.as_ref().is_some_and(|w| !matches!(w, Write::Nothing)))
            .map(|((_, u), cur)| journal::Planned {
                name: u.name.clone(),
                old: cur.oid.clone(),
                new: u.new.clone(),
            })
            .collect();
        let record = if req.atomic && planned.len() > 1 {
            Some(self.commit_record(&base, planned).await?)
        } else {
            None
        };

        // Writes go out concurrently: each ref is its own object, and a push of thousands of
        // tags would otherwise wait for thousands of durable writes one after another.
        let jobs: Vec<(usize, Write)> = writes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| w.take().map(|w| (i, w)))
            .collect();
        let current = &current;
        let applied: Vec<(usize, Result<Option<Undo>, Error>)> = futures_util::stream::iter(jobs)
            .map(|(i, write)| async move {
                (
                    i,
                    self.apply(&req.updates[i].name, write, &current[i]).await,
                )
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut undo: Vec<Undo> = Vec::new();
        let mut lost_race = false;
        let mut failure: Option<Error> = None;
        for (i, outcome) in applied {
            let name = &req.updates[i].name;
            match outcome {
                Ok(done) => {
                    undo.extend(done);
                    results[i] = Some(ok(name));
                }
                Err(e) if e.is_lost_race() => {
                    // Someone outside this lock (Hypha, another server) wrote the ref.
                    let now = self.read_ref(name).await.ok().and_then(|c| c.oid);
                    results[i] = Some(stale(name, now));
                    lost_race = true;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if req.atomic && (lost_race || failure.is_some()) {
            self.roll_back(undo).await;
            if let Some(record) = &record {
                // Left unfinished, the record would be rolled forward: all refs, not none.
                self.finish_record(record).await?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            return Ok(finish_atomic_failure(req, results));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(record) = &record {
            // Every ref is written: the update is done whatever happens to the record. One
            // left unfinished is rolled forward (a no-op) by the next locked operation.
            if let Err(e) = self.finish_record(record).await {
                eprintln!(
                    "{}: could not mark its update record finished: {e}",
                    self.name
                );
            }
        }

        if let Some(target) = &req.set_head_if_missing {
            let wrote_any = results
                .iter()
                .any(|r| r.as_ref().is_some_and(|r| r.status == RefStatus::Ok));
            if wrote_any || req.updates.is_empty() {
                self.set_head_if_missing(target).await?;
            }
        }

        Ok(UpdateResponse {
            results: results
                .into_iter()
                .zip(&req.updates)
                .map(|(r, u)| r.unwrap_or_else(|| ok(&u.name)))
                .collect(),
        })
    }

    /// Write `HEAD` -> `target` only if `HEAD` is missing (first push to a bare artifact).
    async fn set_head_if_missing(&self, target: &str) -> Result<(), Error> {
        match self
            .backend
            .put(
                &self.key("HEAD"),
                Bytes::from(format!("ref: {target}\n")),
                PutMode::IfNoneMatch,
            )
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) | Err(Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Perform one planned write; returns how to undo it.
    async fn apply(&self, name: &str, write: Write, cur: &Current) -> Result<Option<Undo>, Error> {
        let key = self.key(name);
        let body = |oid: &str| Bytes::from(format!("{oid}\n"));
        let written = match write {
            Write::Nothing => return Ok(None),
            Write::Create { new } => Some(
                self.backend
                    .put(&key, body(&new), PutMode::IfNoneMatch)
                    .await?,
            ),
            Write::Replace { new, etag } => Some(
                self.backend
                    .put(&key, body(&new), PutMode::IfMatch(etag))
                    .await?,
            ),
            Write::Delete { etag } => {
                self.backend.delete(&key, Some(&etag)).await?;
                None
            }
        };
        Ok(Some(Undo {
            key,
            previous: cur.oid.clone(),
            written,
        }))
    }

    /// Best effort: put back what an atomic update already changed, each step conditional on
    /// the object still being what we wrote.
    async fn roll_back(&self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let body = |oid: &str| Bytes::from(format!("{oid}\n"));
            // Failures are ignored: someone else changed the ref since, and theirs stands.
            let _ = match (u.previous, u.written) {
                (Some(old), Some(etag)) => self
                    .backend
                    .put(&u.key, body(&old), PutMode::IfMatch(etag))
                    .await
                    .map(drop),
                (None, Some(etag)) => self.backend.delete(&u.key, Some(&etag)).await,
                (Some(old), None) => self
                    .backend
                    .put(&u.key, body(&old), PutMode::IfNoneMatch)
                    .await
                    .map(drop),
                (None, None) => Ok(()),
            };
        }
    }

    /// Every named pack and its idx exist, and the idx was made for that pack: the pack
    /// checksum in the idx trailer equals the pack's own trailer.
    async fn check_packs(&self, names: &[String]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        let dir = self.key("objects/pack/");
        let listing = self.backend.list(&dir).await?;
        let sizes = pack_sizes(&dir, &listing);
        for name in names {
            check_pack_name(name)?;
            let (pack, idx) = sizes.get(name.as_str()).cloned().unwrap_or_default();
            let (Some(pack), Some(idx)) = (pack, idx) else {
                return Err(Error::Invalid {
                    detail: format!(
                        "pack {name} is not complete in {} (upload the idx and the pack first)",
                        self.name
                    ),
                });
            };
            // Smallest possible: a pack header (12) + trailer (20); an idx trailer (40).
            if pack.size < 32 || idx.size < 40 {
                return Err(Error::Invalid {
                    detail: format!("pack {name} is too small to be a pack"),
                });
            }
            let pack_sum = self
                .backend
                .get_range(&pack.key, pack.size - 20..pack.size)
                .await?;
            let idx_sum = self
                .backend
                .get_range(&idx.key, idx.size - 40..idx.size - 20)
                .await?;
            if pack_sum != idx_sum {
                return Err(Error::Invalid {
                    detail: format!("the idx of {name} does not belong to its pack"),
                });
            }
        }
        Ok(())
    }
}

/// Pack name -> (`.pack`, `.idx`) metadata, for the direct children of `dir`.
fn pack_sizes<'a>(
    dir: &str,
    listing: &'a [ObjectMeta],
) -> BTreeMap<&'a str, (Option<&'a ObjectMeta>, Option<&'a ObjectMeta>)> {
    let mut map: BTreeMap<&str, (Option<&ObjectMeta>, Option<&ObjectMeta>)> = BTreeMap::new();
    for meta in listing {
        let Some(file) = meta.key.strip_prefix(dir) else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".pack") {
            if api::is_valid_pack_name(name) {
                map.entry(name).or_default().0 = Some(meta);
            }
        } else if let Some(name) = file.strip_suffix(".idx") {
            if api::is_valid_pack_name(name) {
                map.entry(name).or_default().1 = Some(meta);
            }
        }
    }
    map
}

/// A ref object as read: tolerating a missing newline or CRLF; an unreadable body counts as
/// absent, and so does a ref deleted between listing and reading.
fn current_of(read: Result<crate::storage::Object, Error>) -> Result<Current, Error> {
    match read {
        Ok(obj) => {
            let oid = std::str::from_utf8(&obj.body)
                .ok()
                .map(str::trim)
                .filter(|s| api::is_object_id(s))
                .map(str::to_owned);
            Ok(Current {
                oid,
                etag: Some(obj.etag),
            })
        }
        Err(Error::NotFound { .. }) => Ok(Current {
            oid: None,
            etag: None,
        }),
        Err(e) => Err(e),
    }
}

fn check_ref(name: &str) -> Result<(), Error> {
    api::refname::check(name).map_err(|why| Error::Invalid {
        detail: format!("invalid ref {:?}: {why}", super::shorten(name)),
    })
}

fn check_pack_name(name: &str) -> Result<(), Error> {
    if api::is_valid_pack_name(name) {
        Ok(())
    } else {
        Err(Error::Invalid {
            detail: format!(
                "invalid pack name {:?} (expected pack-<40 hex>)",
                super::shorten(name)
            ),
        })
    }
}

fn validate_updates(req: &UpdateRequest) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for update in &req.updates {
        check_ref(&update.name)?;
        for oid in [&update.old, &update.new].into_iter().flatten() {
            if !api::is_object_id(oid) {
                return Err(Error::Invalid {
                    detail: format!(
                        "{}: invalid object id {:?} (expected 40 lowercase hex)",
                        update.name,
                        super::shorten(oid)
                    ),
                });
            }
        }
        if !seen.insert(update.name.as_str()) {
            return Err(Error::Invalid {
                detail: format!("{} is updated twice in one request", update.name),
            });
        }
    }
    if let Some(target) = &req.set_head_if_missing {
        check_ref(target)?;
    }
    for name in &req.packs {
        check_pack_name(name)?;
    }
    Ok(())
}

/// Decide one update against the current state, or say why not.
fn plan(
    update: &RefUpdate,
    cur: &Current,
    head: Option<&str>,
    existing: &BTreeSet<String>,
    created: &BTreeSet<&str>,
) -> Result<Write, RefResult> {
    let name = &update.name;
    if update.new.is_none() && head == Some(name.as_str()) && cur.oid.is_some() {
        return Err(rejected(name, DENY_DELETE_CURRENT));
    }
    if update.old != cur.oid {
        return Err(stale(name, cur.oid.clone()));
    }
    match (&update.new, &cur.etag) {
        (None, None) => Ok(Write::Nothing),
        (None, Some(etag)) => Ok(Write::Delete { etag: etag.clone() }),
        (Some(new), None) => {
            if let Some(other) = df_conflict(name, existing, created) {
                return Err(rejected(
                    name,
                    &format!("cannot lock ref '{name}': '{other}' exists"),
                ));
            }
            Ok(Write::Create { new: new.clone() })
        }
        // An object that is there but unreadable as a ref counts as absent (`cur.oid` is
        // None), yet it has an etag: replace it conditionally.
        (Some(new), Some(etag)) => Ok(Write::Replace {
            new: new.clone(),
            etag: etag.clone(),
        }),
    }
}

/// `refs/heads/a` and `refs/heads/a/b` cannot both exist (a file cannot be a directory, in
/// git's ref store and on local disk).
fn df_conflict<'a>(
    name: &str,
    existing: &'a BTreeSet<String>,
    created: &BTreeSet<&'a str>,
) -> Option<&'a str> {
    // Ordered-set lookups, not a scan: a push of 10,000 tags checks 10,000 names against
    // 10,000 others. A ref "above" `name` is one of its `/`-prefixes; one "below" sorts right
    // after `name/`.
    let above = name
        .match_indices('/')
        .map(|(i, _)| &name[..i])
        .find_map(|prefix| {
            existing
                .get(prefix)
                .map(String::as_str)
                .or_else(|| created.get(prefix).copied())
        });
    if above.is_some() {
        return above;
    }
    let below = format!("{name}/");
    let from = (
        std::ops::Bound::Included(below.as_str()),
        std::ops::Bound::Unbounded,
    );
    if let Some(other) = existing.range::<str, _>(from).next() {
        if other.starts_with(&below) {
            return Some(other.as_str());
        }
    }
    let first_created: Option<&'a str> = created.range::<str, _>(from).next().copied();
    first_created.filter(|other| other.starts_with(&below))
}

/// After an atomic failure: the refs that failed keep their result, every other ref is
/// rejected, and nothing stays written.
fn finish_atomic_failure(req: &UpdateRequest, results: Vec<Option<RefResult>>) -> UpdateResponse {
    UpdateResponse {
        results: results
            .into_iter()
            .zip(&req.updates)
            .map(|(r, u)| match r {
                Some(r) if r.status != RefStatus::Ok => r,
                _ => rejected(&u.name, ATOMIC_FAILED),
            })
            .collect(),
    }
}

fn ok(name: &str) -> RefResult {
    RefResult {
        name: name.to_owned(),
        status: RefStatus::Ok,
        current: None,
        detail: None,
    }
}

fn stale(name: &str, current: Option<String>) -> RefResult {
    RefResult {
        name: name.to_owned(),
        status: RefStatus::Stale,
        current,
        detail: None,
    }
}

fn rejected(name: &str, detail: &str) -> RefResult {
    RefResult {
        name: name.to_owned(),
        status: RefStatus::Rejected,
        current: None,
        detail: Some(detail.to_owned()),
    }
}

mod compact;
mod journal;
mod ref_cache;
#[cfg(test)]
mod tests;
pub mod upload;
mod uploads;
