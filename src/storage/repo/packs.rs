//! The packs of a repository as readers see them: the listing (complete, not retired, not
//! pending), presigned downloads, and the check that a pack named by `update` or `compact` is
//! complete and that its idx belongs to it.
//!
//! Reads no pack content beyond the 20-byte checksums that tie an idx to its pack (the idx
//! files themselves are [`objects`](super::objects)'s). Uploads
//! are [`upload`](super::upload)'s and [`uploads`](super::uploads)'s; retiring is
//! [`compact`](super::compact)'s.

use super::{check_pack_name, Repository};
use crate::names;
use crate::storage::{Error, ObjectMeta, PresignMethod, PresignedTransfer};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// One complete pack: its `.pack` and `.idx` both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackEntry {
    /// `pack-<40 hex>`.
    pub name: String,
    pub pack_size: u64,
    pub idx_size: u64,
    pub last_modified: Option<SystemTime>,
}

impl Repository {
    /// Every complete pack (idx present), oldest first. A `.pack` without its `.idx` is an
    /// upload in progress, or a broken one: invisible either way. Packs retired by compaction
    /// are left out: their objects are in the pack that replaced them. So are uploads no
    /// update has named yet ([`uploads`](super::uploads)): no ref needs them, and they may never be.
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
    ) -> Result<(PresignedTransfer, PresignedTransfer), Error> {
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

    /// Every named pack and its idx exist, and the idx was made for that pack: the pack
    /// checksum in the idx trailer equals the pack's own trailer. Returns each pack's name
    /// with the size of its idx, as listed.
    pub(super) async fn check_packs(&self, names: &[String]) -> Result<Vec<(String, u64)>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut checked = Vec::with_capacity(names.len());
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
            checked.push((name.clone(), idx.size));
        }
        Ok(checked)
    }
}

/// Pack name -> (`.pack`, `.idx`) metadata, for the direct children of `dir`.
pub(super) fn pack_sizes<'a>(
    dir: &str,
    listing: &'a [ObjectMeta],
) -> BTreeMap<&'a str, (Option<&'a ObjectMeta>, Option<&'a ObjectMeta>)> {
    let mut map: BTreeMap<&str, (Option<&ObjectMeta>, Option<&ObjectMeta>)> = BTreeMap::new();
    for meta in listing {
        let Some(file) = meta.key.strip_prefix(dir) else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".pack") {
            if names::is_valid_pack_name(name) {
                map.entry(name).or_default().0 = Some(meta);
            }
        } else if let Some(name) = file.strip_suffix(".idx") {
            if names::is_valid_pack_name(name) {
                map.entry(name).or_default().1 = Some(meta);
            }
        }
    }
    map
}
