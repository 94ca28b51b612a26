//! Reading refs and `HEAD`, and setting `HEAD`: what `refs`, `info` and `head` answer.
//!
//! Owns the parsing of what is stored (`"<40 hex>\n"`, `"ref: <ref>\n"`, tolerating CRLF or
//! a missing newline) and the listing of refs with the [`ref_cache`](super::ref_cache). An
//! interrupted atomic update is overlaid on what is read ([`journal`](super::journal)). Writing
//! refs is [`update`](super::update)'s.

use super::{check_ref, Repository, REF_CONCURRENCY};
use crate::names;
use crate::names::refname;
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Updates of at most this many refs read only the refs they touch
/// ([`Repository::read_touched`]); larger ones list every ref once.
pub(super) const TOUCHED_MAX: usize = 8;

/// A ref as read under the lock: value and the etag to write against.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) oid: Option<String>,
    pub(super) etag: Option<String>,
}

impl Repository {
    /// The ref `HEAD` points at, or `None` when `HEAD` is missing or not a symref.
    pub async fn head(&self) -> Result<Option<String>, Error> {
        Ok(self.head_file().await?.1)
    }

    /// Whether the `HEAD` file exists, and the ref it names (`None` when it is missing or
    /// names no valid ref).
    pub(super) async fn head_file(&self) -> Result<(bool, Option<String>), Error> {
        match self.backend.get(&self.key("HEAD")).await {
            Ok(obj) => Ok((
                true,
                std::str::from_utf8(&obj.body)
                    .ok()
                    .and_then(|s| s.trim().strip_prefix("ref:"))
                    .map(|r| r.trim().to_owned())
                    .filter(|r| refname::is_valid(r)),
            )),
            Err(Error::NotFound { .. }) => Ok((false, None)),
            Err(e) => Err(e),
        }
    }

    /// The error of an operation on a repository that does not exist: [`Error::NotFound`]
    /// naming the repository itself.
    pub(crate) fn not_found(&self) -> Error {
        Error::NotFound {
            key: self.name.clone(),
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
    /// also while it is being written or after its server died mid-way ([`journal`](super::journal)).
    pub async fn refs(&self) -> Result<BTreeMap<String, String>, Error> {
        let (refs, overlaid) = self.consistent_refs(|| self.stored_refs()).await?;
        if overlaid {
            // Unfinished, and no update of this process is writing it: its writer died.
            // Finishing it is best effort; what this reader sees is right either way.
            if let Ok(_guard) = self.lock.try_lock() {
                if let Err(e) = self.roll_forward().await {
                    tracing::warn!("{}: could not finish an interrupted update: {e}", self.name);
                }
            }
        }
        Ok(refs)
    }

    /// The ref objects as they are: one `GET` each, except refs whose listed etag the
    /// [`ref_cache`] knows (seeded, on a repository's first listing, from the
    /// [`ref_snapshot`](super::ref_snapshot) when more refs are unknown than one wave reads).
    pub(super) async fn stored_refs(&self) -> Result<BTreeMap<String, String>, Error> {
        let (listed, snapshot) = if self.ref_cache.first_listing(&self.prefix) {
            // Its size beside the listing: no round trip more on S3.
            tokio::join!(self.listed_refs(), self.ref_snapshot_size())
        } else {
            (self.listed_refs().await, None)
        };
        let listed = listed?;
        // A first listing knows none of these refs: the snapshot is worth its `GET` when
        // reading them would take more than one wave.
        let cacheable = listed.iter().filter(|(_, etag)| etag.is_some()).count();
        if let Some(size) = snapshot.filter(|_| cacheable > REF_CONCURRENCY) {
            self.seed_ref_cache(size).await;
        }
        let mut refs = BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, etag) in &listed {
            let key = self.key(name);
            match etag.as_deref().and_then(|e| self.ref_cache.get(&key, e)) {
                Some(oid) => {
                    if let Some(oid) = oid {
                        refs.insert(name.clone(), oid);
                    }
                }
                // Only a listing with etags can hit the cache later: local disk's has none.
                None => unknown.push((name.clone(), key, etag.is_some())),
            }
        }
        let keys = unknown.iter().map(|(_, key, _)| key.clone()).collect();
        let objects = self.backend.get_many(keys, REF_CONCURRENCY).await;
        let mut learnt = 0;
        for ((name, key, cacheable), object) in unknown.into_iter().zip(objects) {
            let current = current_of(object)?;
            if let (true, Some(etag)) = (cacheable, &current.etag) {
                self.ref_cache.put(&key, etag, current.oid.clone());
                learnt += 1;
            }
            if let Some(oid) = current.oid {
                refs.insert(name, oid);
            }
        }
        if learnt > REF_CONCURRENCY {
            // What a server that starts next would otherwise read again.
            self.write_ref_snapshot(&self.snapshot_entries(listed));
        }
        Ok(refs)
    }

    pub(super) async fn ref_names(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .listed_refs()
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Every ref the store lists, with its etag where the listing gives one.
    pub(super) async fn listed_refs(&self) -> Result<Vec<(String, Option<String>)>, Error> {
        let refs_prefix = self.key("refs/");
        Ok(self
            .backend
            .list(&refs_prefix)
            .await?
            .into_iter()
            .map(|meta| (meta.key[self.prefix.len()..].to_owned(), meta.etag))
            .filter(|(name, _)| refname::is_valid(name))
            .collect())
    }

    /// The current value of each of `names`, in order, given `existing`, a listing of the refs
    /// taken just before (under the lock). A name the listing does not hold is absent without
    /// a read: a mirror push into a new repository creates 1,500 refs, and reading each one
    /// first cost 1,500 `GET`s (one after another) for nothing. That is no weaker than
    /// reading it: a ref someone outside the lock creates after the listing makes the
    /// conditional create fail (stale), as it would have after a read. The listed names are
    /// read together ([`Backend::get_many`](crate::storage::Backend::get_many): one blocking
    /// task on local disk, concurrent `GET`s on S3).
    pub(super) async fn read_refs<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        existing: &BTreeSet<String>,
    ) -> Result<Vec<Current>, Error> {
        let names: Vec<&str> = names.collect();
        let keys: Vec<String> = names
            .iter()
            .filter(|name| existing.contains(**name))
            .map(|name| self.key(name))
            .collect();
        let mut read = self
            .backend
            .get_many(keys, REF_CONCURRENCY)
            .await
            .into_iter();
        names
            .iter()
            .map(|name| match existing.contains(*name) {
                true => current_of(read.next().unwrap_or_else(|| {
                    Err(Error::NotFound {
                        key: self.key(name),
                    })
                })),
                false => Ok(Current {
                    oid: None,
                    etag: None,
                }),
            })
            .collect()
    }

    /// One ref, tolerating a missing newline or CRLF; an unreadable body counts as absent.
    /// For an update of a few refs: each one's current value, in order, and the refs that
    /// git's file/directory rule needs for the ones it may create (`old` absent): those
    /// "above" a new name (its `/`-prefixes) and "below" it (`name/...`). Every read at once:
    /// one round trip on S3 however many refs the repository holds, where the listing of
    /// 1,000 tags takes two pages, one after the other, and then the reads.
    pub(super) async fn read_touched(
        &self,
        updates: &[super::RefUpdate],
    ) -> Result<(BTreeSet<String>, Vec<Current>), Error> {
        let creating: Vec<&str> = updates
            .iter()
            .filter(|u| u.old.is_none() && u.new.is_some())
            .map(|u| u.name.as_str())
            .collect();
        let above: BTreeSet<&str> = creating
            .iter()
            .flat_map(|name| name.match_indices('/').map(move |(i, _)| &name[..i]))
            .filter(|prefix| refname::is_valid(prefix))
            .collect();
        let reads =
            futures_util::future::try_join_all(updates.iter().map(|u| self.read_ref(&u.name)));
        let below = futures_util::future::try_join_all(creating.iter().map(|name| {
            let below = self.key(&format!("{name}/"));
            async move { self.backend.list(&below).await }
        }));
        let above_reads = futures_util::future::join_all(above.iter().map(|prefix| async move {
            match self.backend.head(&self.key(prefix)).await {
                Ok(_) => Ok(Some(*prefix)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }));
        let (current, below, above_found) = tokio::join!(reads, below, above_reads);
        let current = current?;
        let mut existing: BTreeSet<String> = updates
            .iter()
            .zip(&current)
            .filter(|(_, cur)| cur.etag.is_some())
            .map(|(u, _)| u.name.clone())
            .collect();
        for meta in below?.into_iter().flatten() {
            let name = &meta.key[self.prefix.len()..];
            if refname::is_valid(name) {
                existing.insert(name.to_owned());
            }
        }
        for found in above_found {
            if let Some(prefix) = found? {
                existing.insert(prefix.to_owned());
            }
        }
        Ok((existing, current))
    }

    pub(super) async fn read_ref(&self, name: &str) -> Result<Current, Error> {
        current_of(self.backend.get(&self.key(name)).await)
    }
}

/// A ref object as read: tolerating a missing newline or CRLF; an unreadable body counts as
/// absent, and so does a ref deleted between listing and reading.
fn current_of(read: Result<crate::storage::Object, Error>) -> Result<Current, Error> {
    match read {
        Ok(obj) => {
            let oid = std::str::from_utf8(&obj.body)
                .ok()
                .map(str::trim)
                .filter(|s| names::is_object_id(s))
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
