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
use futures_util::StreamExt;
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
        // Retired and pending packs are hidden; their markers' names are all it takes (not
        // their contents), from one listing of `.git/hypha-remote/` beside the packs': two
        // requests to the store, at once, whatever the number of markers.
        let staging = self.key("hypha-remote/");
        let (listing, markers) = tokio::join!(self.backend.list(&dir), self.backend.list(&staging));
        let (listing, markers) = (listing?, markers?);
        let hidden: std::collections::BTreeSet<&str> = markers
            .iter()
            .filter_map(|m| {
                let rest = m.key.strip_prefix(&staging)?;
                rest.strip_prefix("retired/")
                    .or_else(|| rest.strip_prefix("uploads/"))
            })
            .filter(|name| names::is_valid_pack_name(name))
            .collect();
        let mut packs = pack_sizes(&dir, &listing)
            .into_iter()
            .filter(|(name, _)| !hidden.contains(*name))
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

    /// The bytes of a listed pack of `size` bytes, for a `refs` answer that carries small
    /// packs itself (`server::inline_listing`). A pack of another size (replaced or gone
    /// since it was listed) is an error: the caller then leaves it to its URL.
    pub async fn pack_bytes(&self, name: &str, size: u64) -> Result<bytes::Bytes, Error> {
        check_pack_name(name)?;
        let key = self.pack_key(name, "pack");
        let body = self.backend.get(&key).await?.body;
        if body.len() as u64 != size {
            return Err(Error::SizeMismatch {
                key,
                expected: size,
                received: body.len() as u64,
            });
        }
        Ok(body)
    }

    /// Every named pack and its idx exist, and the idx describes that pack exactly, as `git
    /// index-pack` computes it from the pack's bytes ([`verify`](super::verify)): a pack this
    /// server has not checked before is read and indexed. Returns each pack's name with the
    /// size of its idx, as listed. Packs in `stored` were stored and checked by this request
    /// itself (name -> idx size, pack size): nothing is read for them.
    pub(super) async fn check_packs(
        &self,
        names: &[String],
        stored: &BTreeMap<String, (u64, u64)>,
    ) -> Result<Vec<(String, u64)>, Error> {
        let others: Vec<String> = names
            .iter()
            .filter(|n| !stored.contains_key(*n))
            .cloned()
            .collect();
        let mut checked = self
            .check_packs_sized(&others, Check::Contents)
            .await?
            .into_iter();
        // In the request's order, as `missing_objects` reads them.
        Ok(names
            .iter()
            .filter_map(|name| match stored.get(name) {
                Some(&(idx, _)) => Some((name.clone(), idx)),
                None => checked.next().map(|(name, idx, _)| (name, idx)),
            })
            .collect())
    }

    /// Every named pack and its idx exist and fit each other, with each one's idx and pack
    /// size (as listed). `check` says how far the idx is checked against its pack.
    pub(super) async fn check_packs_sized(
        &self,
        names: &[String],
        check: Check,
    ) -> Result<Vec<(String, u64, u64)>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(names.len());
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
            check_sizes(name, pack.size, idx.size)?;
            found.push((name.clone(), pack.clone(), idx.clone()));
        }
        // Every pack at once: on S3 each read is a round trip.
        let backend = &self.backend;
        futures_util::stream::iter(found)
            .map(|(name, pack, idx)| async move {
                if check == Check::Contents {
                    // Implies the trailers' check: git's idx names the pack's checksum. A
                    // pack checked before costs nothing: stored packs never change.
                    if !self.pack_verified(&name, idx.size) {
                        self.verified_stored_pack(&name, idx.size, pack.size)
                            .await?;
                    }
                    return Ok((name, idx.size, pack.size));
                }
                let (pack_sum, idx_sum) = tokio::join!(
                    backend.get_range(&pack.key, pack.size - 20..pack.size),
                    backend.get_range(&idx.key, idx.size - 40..idx.size - 20),
                );
                check_trailers(&name, &pack_sum?, &idx_sum?)?;
                Ok((name, idx.size, pack.size))
            })
            .buffered(TRAILER_READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

/// Packs checked at once when an update names several.
const TRAILER_READ_CONCURRENCY: usize = 8;

/// How far [`Repository::check_packs_sized`] checks an idx against its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The idx's trailer names the pack's checksum (two small reads): the caller indexes the
    /// pack itself.
    Trailers,
    /// The idx lists exactly what `git index-pack` finds in the pack, unless this server
    /// checked (or wrote) the pack before.
    Contents,
}

/// Every object of a pack takes at least this many bytes in it: a one-byte entry header and
/// the shortest zlib stream git writes (2 header bytes, an empty final block, 4 of Adler-32).
const MIN_ENTRY: u64 = 9;
/// A version 2 idx: 8 bytes of header, the 1 KiB fan-out, then 28 bytes per object (id, CRC32,
/// offset) and at most 8 more for a large offset, then two checksums.
const IDX_FIXED: u64 = 8 + 1024 + 40;

/// A pack and its idx are large enough to be what they claim, and the idx lists no more
/// objects than the pack can hold ([`check_idx_fits_pack`]): from the two sizes alone.
pub(super) fn check_sizes(name: &str, pack_size: u64, idx_size: u64) -> Result<(), Error> {
    // Smallest possible: a pack header (12) + trailer (20); an idx trailer (40).
    if pack_size < 32 || idx_size < 40 {
        return Err(Error::Invalid {
            detail: format!("pack {name} is too small to be a pack"),
        });
    }
    check_idx_fits_pack(name, idx_size, pack_size)
}

/// The idx was made for this pack: the pack checksum in the idx's trailer (`idx_sum`, the
/// 20 bytes before its own checksum) is the pack's trailer (`pack_sum`, its last 20 bytes).
pub(super) fn check_trailers(name: &str, pack_sum: &[u8], idx_sum: &[u8]) -> Result<(), Error> {
    if pack_sum != idx_sum {
        return Err(Error::Invalid {
            detail: format!("the idx of {name} does not belong to its pack"),
        });
    }
    Ok(())
}

/// An idx may only list as many objects as its pack can hold (issue 21: a 98 MB idx of 3.5 M
/// ids for an empty pack was accepted, and read again on every later `update`): refused from
/// the two sizes alone, before the idx is read.
pub(super) fn check_idx_fits_pack(name: &str, idx_size: u64, pack_size: u64) -> Result<(), Error> {
    let at_least = idx_size.saturating_sub(IDX_FIXED) / 36;
    let at_most = pack_size.saturating_sub(32) / MIN_ENTRY;
    if idx_size < IDX_FIXED || at_least > at_most {
        return Err(Error::Invalid {
            detail: format!(
                "the idx of {name} ({idx_size} bytes) lists more objects than its pack of {pack_size} bytes can hold"
            ),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idx_fits_its_pack() {
        // One object: a 12-byte header, an entry of at least 9 bytes, a 20-byte trailer.
        assert!(check_idx_fits_pack("p", IDX_FIXED + 28, 41).is_ok());
        assert!(check_idx_fits_pack("p", IDX_FIXED + 28 * 1000, 32 + 9 * 1000).is_ok());
        // Issue 21: 3.5 M ids for an empty pack.
        let err = check_idx_fits_pack("p", 98_000_000, 32).unwrap_err();
        assert!(
            err.to_string().contains("more objects than its pack"),
            "{err}"
        );
        assert!(check_idx_fits_pack("p", IDX_FIXED + 36 * 1000, 32 + 9 * 999).is_err());
        assert!(check_idx_fits_pack("p", 40, 32).is_err());
    }
}
