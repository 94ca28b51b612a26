//! Packs that came inline in an `update` (issue 25): checked in memory, then written by the
//! update itself, under the repository lock, beside the reads it does anyway. On S3 every wave
//! of requests is a round trip; a one-commit push's `update` is three: the reads and the idx,
//! then the pack, then the ref.
//!
//! No upload marker: the pack is written only once the update knows it will write a ref (the
//! plan is made from the reads of the first wave), and a reader may see it from then on; if
//! the ref write then fails (a writer outside this server's lock won the race), the pack is an
//! orphan no ref needs, visible and harmless, merged by the next compaction like any pack (the
//! same as a crash after a pending pack was committed). The idx goes first, alone, as §3 rule 1
//! says: readers list `.pack` files, and an idx without its pack is listed by none; one left by
//! an update that writes nothing is deleted at once.
//!
//! A name already taken (the same push sent again after its answer was lost, another push of
//! the very same objects, or a pending upload of that name) is not written over: the stored
//! pair is checked from the store instead ([`Repository::verified_stored_pack`], nothing read
//! when this server checked it before), and a pending one is committed as a named pack is.

use super::Repository;
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use gix::ObjectId;

/// A pack from an `update`'s request, checked in memory ([`Repository::check_inline`]): the
/// idx fits and belongs to the pack, and `git index-pack` found exactly the objects it lists.
/// Only this module makes one, so an update holding it need not check it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePack {
    name: String,
    pack: Bytes,
    idx: Bytes,
    /// Sorted: what the pack holds.
    ids: Vec<ObjectId>,
}

impl InlinePack {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes it takes in the store: pack and idx.
    pub fn stored_size(&self) -> u64 {
        (self.pack.len() + self.idx.len()) as u64
    }

    /// Whether the pack holds object `id`.
    pub(super) fn holds(&self, id: &ObjectId) -> bool {
        self.ids.binary_search(id).is_ok()
    }
}

/// What the first wave found and did for one inline pack.
#[derive(Debug, Clone, Copy)]
pub(super) struct Started {
    /// This update created the idx (else one of that name was there).
    wrote_idx: bool,
    /// An upload of that name is pending (a marker exists).
    pending: bool,
}

impl Repository {
    /// Check an inline pack before anything is written: the idx fits the pack and belongs to
    /// it (the pack checksum in its trailer), and lists exactly what `git index-pack` finds in
    /// the pack (issue 21: an idx is its writer's claim).
    pub async fn check_inline(
        &self,
        name: &str,
        pack: Bytes,
        idx: Bytes,
    ) -> Result<InlinePack, Error> {
        super::check_pack_name(name)?;
        super::packs::check_sizes(name, pack.len() as u64, idx.len() as u64)?;
        super::packs::check_trailers(
            name,
            &pack[pack.len() - 20..],
            &idx[idx.len() - 40..idx.len() - 20],
        )?;
        let ids = self.verified_in_memory(name, &pack, &idx).await?;
        Ok(InlinePack {
            name: name.to_owned(),
            pack,
            idx,
            ids,
        })
    }

    /// The first wave's share: each idx created (never over another) and each marker looked
    /// for, all at once.
    pub(super) async fn start_inline(&self, packs: &[InlinePack]) -> Result<Vec<Started>, Error> {
        futures_util::future::try_join_all(packs.iter().map(|p| async move {
            let (marker_key, idx_key) =
                (self.upload_marker(&p.name), self.pack_key(&p.name, "idx"));
            let (marker, idx) = tokio::join!(
                self.has_key(&marker_key),
                self.create_once(&idx_key, p.idx.clone())
            );
            Ok(Started {
                wrote_idx: idx?,
                pending: marker?,
            })
        }))
        .await
    }

    /// The update writes no ref: the idx files it created go (best effort: an idx alone is
    /// listed by no reader).
    pub(super) async fn drop_inline(&self, packs: &[InlinePack], started: &[Started]) {
        let drops = packs.iter().zip(started).filter(|(_, s)| s.wrote_idx);
        futures_util::future::join_all(drops.map(|(p, _)| async move {
            if let Err(e) = self
                .backend
                .delete(&self.pack_key(&p.name, "idx"), None)
                .await
            {
                tracing::warn!("{}: could not delete the idx of {}: {e}", self.name, p.name);
            }
        }))
        .await;
    }

    /// The second wave: each pack written (never over another). A pair this update did not
    /// write whole is checked from the store; the names of pending uploads among them are
    /// returned, to be committed before any ref needs them.
    pub(super) async fn finish_inline(
        &self,
        packs: &[InlinePack],
        started: &[Started],
    ) -> Result<Vec<String>, Error> {
        let done = futures_util::future::try_join_all(packs.iter().zip(started).map(
            |(p, s)| async move {
                let wrote_pack = self
                    .create_once(&self.pack_key(&p.name, "pack"), p.pack.clone())
                    .await?;
                let (idx_size, pack_size) = (p.idx.len() as u64, p.pack.len() as u64);
                if s.wrote_idx && wrote_pack {
                    // Both files are the bytes checked in memory.
                    self.cache_sorted_ids(&p.name, idx_size, p.ids.clone());
                } else {
                    // Someone else's files under this name: the same bytes (git names a pack
                    // by its checksum) unless a writer squatted the name.
                    let held = self
                        .verified_stored_pack(&p.name, idx_size, pack_size)
                        .await?;
                    if held != p.ids {
                        return Err(Error::Invalid {
                            detail: format!(
                                "{} in {} is stored with other objects than this push's pack",
                                p.name, self.name
                            ),
                        });
                    }
                }
                Ok::<_, Error>(s.pending.then(|| p.name.clone()))
            },
        ))
        .await?;
        Ok(done.into_iter().flatten().collect())
    }

    /// Create `key` with `body` unless it exists: whether this call created it.
    async fn create_once(&self, key: &str, body: Bytes) -> Result<bool, Error> {
        match self.backend.put(key, body, PutMode::IfNoneMatch).await {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
