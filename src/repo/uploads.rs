//! Uploads in flight: packs that no ref may need yet.
//!
//! A push uploads its pack, then asks `update` to move refs onto it. A helper killed between
//! the two leaves a pack no ref needs (an orphan). Readers of this API must not see it, and
//! compaction must remove it, yet the bucket layout cannot change: Hypha's own reader lists
//! `*.pack` under `.git/objects/pack/` (docs/hypha.md), so packs are uploaded where they live.
//!
//! So presigning an upload writes a pending marker `.git/hypha-remote/uploads/<pack-name>`
//! (body: unix seconds). The `packs` listing hides packs that have one. `update` removes the
//! markers of the packs it names after checking them and before writing any ref, so a crash
//! can leave an orphan visible (harmless: it is only unused objects) but never hide a pack
//! that a ref needs. Compaction deletes a marked pack (`.pack`, then `.idx`, then the marker)
//! once its marker is older than the grace period: with the default grace (URL lifetime plus
//! ten minutes) the presigned `PUT`s of that upload have expired by then.
//!
//! Marking and unmarking happen under the repository lock, as compaction's purge does. That
//! closes the one race that could hide a needed pack: a pack of the same name (same content)
//! committed by another push between checking that the pack is not there yet and writing the
//! marker. A pack that already exists without a marker is live: it is never marked again,
//! and no upload URL is handed out for it (a writer could replace committed bytes).

use super::{Repository, LOCK_TIMEOUT};
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Words of the refusal of an upload of a pack the repository holds already: the helper then
/// skips the upload and names the pack in its `update`, as for a pack it just uploaded.
pub const ALREADY_STORED: &str = "is already in the repository";

impl Repository {
    fn uploads_dir(&self) -> String {
        self.key("hypha-remote/uploads/")
    }

    pub(super) fn upload_marker(&self, name: &str) -> String {
        format!("{}{name}", self.uploads_dir())
    }

    pub(super) async fn has_key(&self, key: &str) -> Result<bool, Error> {
        match self.backend.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Mark pack `name` as an upload in flight, unless it is already live. Called when its
    /// upload URLs are handed out.
    pub(crate) async fn mark_upload(&self, name: &str) -> Result<(), Error> {
        self.mark_upload_beside(name, None).await
    }

    /// [`Repository::mark_upload`], writing `idx` as the pack's idx beside the marker: no
    /// reader lists an idx without its pack, so it need not wait for the marker (a round trip
    /// less on S3). Nothing is written when the pack is already live; an idx written beside a
    /// marker that failed is deleted again (best effort).
    async fn mark_upload_beside(&self, name: &str, idx: Option<Bytes>) -> Result<(), Error> {
        let _guard = tokio::time::timeout(LOCK_TIMEOUT, self.lock.lock())
            .await
            .map_err(|_| Error::Busy {
                key: self.name.clone(),
            })?;
        let marker = self.upload_marker(name);
        let pack = self.pack_key(name, "pack");
        // Both questions at once: a round trip less on S3.
        let (stored, pending) = tokio::join!(self.has_key(&pack), self.has_key(&marker));
        if stored? && !pending? {
            // Committed by an earlier push (or written by Hypha): refs may need it, so no
            // writer gets a URL that could replace its bytes (issue 21).
            return Err(Error::Invalid {
                detail: format!("{name} {ALREADY_STORED}: a stored pack is never uploaded again"),
            });
        }
        let now = crate::auth::unix_now();
        let idx_key = self.pack_key(name, "idx");
        let put_idx = async {
            match &idx {
                Some(idx) => self
                    .backend
                    .put(&idx_key, idx.clone(), PutMode::Overwrite)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (marked, wrote_idx) = tokio::join!(
            self.backend
                .put(&marker, Bytes::from(format!("{now}\n")), PutMode::Overwrite),
            put_idx
        );
        if let Err(e) = marked {
            if matches!(wrote_idx, Ok(Some(_))) {
                if let Err(e) = self.backend.delete(&idx_key, None).await {
                    tracing::warn!("{}: could not delete the idx of {name}: {e}", self.name);
                }
            }
            return Err(e);
        }
        wrote_idx.map(drop)
    }

    /// A pack this server wrote itself (a completed thin pack it checked, a compaction's merge
    /// by git from packs it indexed), stored as a pending upload like any other: marker and idx
    /// first (together), then the pack (§3 rule 1: idx before pack), streamed from `pack`
    /// (`pack_size` bytes from its start). Its ids join the cache as checked: `update` and
    /// `compact` read neither file back.
    pub(crate) async fn store_pending_file(
        &self,
        name: &str,
        idx: Bytes,
        pack: std::fs::File,
        pack_size: u64,
    ) -> Result<(), Error> {
        self.mark_upload_beside(name, Some(idx.clone())).await?;
        self.backend
            .put_file(&self.pack_key(name, "pack"), pack, pack_size)
            .await?;
        self.cache_ids(name, &idx)
    }

    /// How many uploads are staged and not yet part of the repository: pending packs and thin
    /// uploads not yet completed. One listing.
    pub async fn staged_uploads(&self) -> Result<usize, Error> {
        let dir = self.key("hypha-remote/");
        let uploads = format!("{dir}uploads/");
        let thin = format!("{dir}thin/");
        Ok(self
            .backend
            .list(&dir)
            .await?
            .iter()
            .filter(|m| {
                (m.key.starts_with(&uploads) && !m.key.ends_with(".idx"))
                    || (m.key.starts_with(&thin) && m.key.ends_with(".pack"))
            })
            .count())
    }

    /// Remove staged uploads older than `grace` (abandoned pending packs, thin uploads never
    /// completed), as compaction does: run on a timer and when a repository reaches its
    /// limit of staged uploads, so a writer who never calls `update` cannot fill the store.
    /// Returns how many it removed.
    pub async fn sweep_staged(&self, grace: Duration) -> Result<usize, Error> {
        let _guard = tokio::time::timeout(LOCK_TIMEOUT, self.lock.lock())
            .await
            .map_err(|_| Error::Busy {
                key: self.name.clone(),
            })?;
        let now = crate::auth::unix_now();
        let packs = self.purge_abandoned_uploads(now, grace).await?.len();
        let thin = self
            .purge_thin_uploads(std::time::SystemTime::now(), grace)
            .await?;
        Ok(packs + thin)
    }

    /// Names of packs whose upload is still pending (hidden from readers).
    pub(crate) async fn pending_uploads(&self) -> Result<BTreeSet<String>, Error> {
        let dir = self.uploads_dir();
        Ok(self
            .backend
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|meta| meta.key.strip_prefix(&dir).map(str::to_owned))
            .filter(|name| crate::names::is_valid_pack_name(name))
            .collect())
    }

    /// The packs of `names` are about to be referenced: make them visible, then check that
    /// each is still complete (a compaction may have purged it as abandoned before this
    /// caller took the lock). Call with the lock held, before writing any ref.
    pub(crate) async fn commit_uploads(&self, names: &[String]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        // The markers go and the packs are listed at once (a round trip less on S3): under
        // the lock nothing else removes a pack meanwhile.
        let dir = self.key("objects/pack/");
        let deletes = futures_util::future::try_join_all(names.iter().map(|name| {
            let marker = self.upload_marker(name);
            async move { self.backend.delete(&marker, None).await }
        }));
        let (deleted, listing) = tokio::join!(deletes, self.backend.list(&dir));
        deleted?;
        let listing = listing?;
        let sizes = super::packs::pack_sizes(&dir, &listing);
        for name in names {
            if !matches!(sizes.get(name.as_str()), Some((Some(_), Some(_)))) {
                return Err(Error::Invalid {
                    detail: format!(
                        "pack {name} is no longer in {} (its upload was abandoned and \
                         removed): push again",
                        self.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Delete packs whose upload has been pending longer than `grace` (abandoned: the helper
    /// died before its update). Call with the lock held.
    pub(crate) async fn purge_abandoned_uploads(
        &self,
        now: u64,
        grace: Duration,
    ) -> Result<Vec<String>, Error> {
        let mut started: BTreeMap<String, u64> = BTreeMap::new();
        for name in self.pending_uploads().await? {
            let at = match self.backend.get(&self.upload_marker(&name)).await {
                // An unreadable time counts as now: it is kept for another grace period.
                Ok(obj) => String::from_utf8_lossy(&obj.body)
                    .trim()
                    .parse()
                    .unwrap_or(now),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            started.insert(name, at);
        }
        let mut deleted = Vec::new();
        for (name, at) in started {
            if now < at.saturating_add(grace.as_secs()) {
                continue;
            }
            self.delete_upload(&name).await?;
            deleted.push(name);
        }
        Ok(deleted)
    }

    /// The uploads of an update that wrote no ref (every ref stale or refused) are of no
    /// further use: the client reports the rejection and a later push builds a new pack.
    /// Deleted at once, each only while still pending (never a live pack). Call with the lock
    /// held. (A byte-identical pack another push is uploading at the same moment goes too;
    /// that push is refused with "not complete" and succeeds when pushed again.)
    pub(crate) async fn release_uploads(&self, names: &[String]) -> Result<(), Error> {
        for name in names {
            if self.has_key(&self.upload_marker(name)).await? {
                self.delete_upload(name).await?;
            }
        }
        Ok(())
    }

    /// Delete one pending upload: `.pack` first (a lone `.idx` is invisible), then `.idx`,
    /// then the marker, so an interrupted delete is finished by the next purge.
    async fn delete_upload(&self, name: &str) -> Result<(), Error> {
        for key in [
            self.pack_key(name, "pack"),
            self.pack_key(name, "idx"),
            self.upload_marker(name),
        ] {
            match self.backend.delete(&key, None).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
