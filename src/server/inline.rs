//! Packs that come inline in an `update` (issue 25): a small push sends its pack in the
//! request that commits it, instead of `uploads`, two presigned `PUT`s and `fix-thin` first,
//! each a round trip to a server that may be 150 ms away.
//!
//! Each inline pack is decoded and checked here, before the update starts (a thin one
//! completed as `fix-thin` would, without storing the thin pack at all, and stored as a pending
//! upload); `update` then writes the others itself beside its own reads
//! ([`crate::repo::InlinePack`]), only when it writes a ref. The server offers inline packs in
//! the `refs` answer for a push (`inline_max`); a client never sends more, and the server
//! refuses more whatever it is sent.
//!
//! Bounded: at most [`MAX_INLINE_PACKS`] packs of `inline_max` bytes in all (at most
//! [`LIMIT`]), sizes checked on the base64 text before it is decoded.

use super::error::ApiError;
use super::state::AppState;
use crate::api::InlinePack;
use crate::names;
use crate::repo::Repository;
use crate::storage::{shorten, Error};
use base64::Engine;
use bytes::Bytes;

/// What `update` takes inline unless the operator says otherwise: a one-commit push is a few
/// KiB; at 1 MiB the round trips saved are worth more than the bytes on most links.
pub const DEFAULT_INLINE_MAX: u64 = 1 << 20;

/// The most an operator may allow: the request is held in memory (and its base64 text too).
pub const LIMIT: u64 = 8 << 20;

/// Packs in one `update`: the helper sends one.
pub const MAX_INLINE_PACKS: usize = 4;

/// What [`store`] did.
#[derive(Debug, Default)]
pub struct Stored {
    /// The completed thin packs `update` must name.
    pub names: Vec<String>,
    /// The other packs, checked, for `update` to write ([`crate::repo::Update::inline`]).
    pub inline: Vec<crate::repo::InlinePack>,
    /// For the access log: each pack, its size and (thin) what completion appended.
    pub notes: Vec<String>,
    /// The completed thin packs: name -> (idx size, pack size)
    /// ([`crate::repo::Update::stored`]).
    pub stored: std::collections::BTreeMap<String, (u64, u64)>,
}

/// Decode and check the inline packs of an `update`; complete and store the thin ones.
pub async fn store(
    state: &AppState,
    repo: &Repository,
    packs: &[InlinePack],
) -> Result<Stored, ApiError> {
    if packs.is_empty() {
        return Ok(Stored::default());
    }
    if state.inline_max == 0 {
        return Err(ApiError::invalid(
            "this server takes no inline packs: upload them first",
        ));
    }
    if packs.len() > MAX_INLINE_PACKS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_INLINE_PACKS} inline packs per update"
        )));
    }
    // Decoded base64 is 3/4 of its text: refuse on the text's length, before decoding.
    let encoded: u64 = packs
        .iter()
        .map(|p| (p.pack.len() + p.idx.len()) as u64)
        .sum();
    if encoded / 4 * 3 > state.inline_max + 6 {
        return Err(too_large(state));
    }
    let mut decoded = Vec::with_capacity(packs.len());
    for p in packs {
        if !names::is_valid_pack_name(&p.name) {
            return Err(ApiError::invalid(format!(
                "invalid inline pack name {:?} (expected pack-<40 hex>)",
                shorten(&p.name)
            )));
        }
        if p.thin && !state.thin_packs {
            return Err(ApiError::invalid(format!(
                "{}: this server does not take thin packs",
                p.name
            )));
        }
        let decode = |what: &str, text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|e| ApiError::invalid(format!("inline {what} of {}: {e}", p.name)))
        };
        decoded.push((p, decode("pack", &p.pack)?, decode("idx", &p.idx)?));
    }
    let total: u64 = decoded
        .iter()
        .map(|(_, pack, idx)| (pack.len() + idx.len()) as u64)
        .sum();
    if total > state.inline_max {
        return Err(too_large(state));
    }
    let mut stored = Stored::default();
    for (p, pack, idx) in decoded {
        if p.thin {
            let started = std::time::Instant::now();
            // An empty idx: the helper saw `thin_without_idx` and left the indexing to us.
            let idx = (!idx.is_empty()).then_some(&idx[..]);
            let done = repo.complete_thin_inline(&p.name, pack, idx).await;
            state.metrics.thin(
                "inline",
                started.elapsed(),
                done.as_ref().ok().map(|d| super::metrics::ThinSizes {
                    thin: d.thin_size,
                    appended: d.appended as u64,
                    completed: d.pack_size,
                }),
            );
            let done = done.map_err(|e| match e {
                // The completion's own check that the repository is there.
                Error::NotFound { key } if key == repo.name() => super::routes::missing(repo),
                e => e.into(),
            })?;
            stored.notes.push(format!(
                "inline thin {} thin_size={} -> {} appended={} size={}",
                p.name, done.thin_size, done.name, done.appended, done.pack_size
            ));
            stored
                .stored
                .insert(done.name.clone(), (done.idx_size, done.pack_size));
            stored.names.push(done.name);
        } else {
            stored
                .notes
                .push(format!("inline {} size={}", p.name, pack.len()));
            stored
                .inline
                .push(repo.check_inline(&p.name, pack, idx).await?);
        }
    }
    Ok(stored)
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::invalid(format!(
        "inline packs larger than {} bytes: upload them first",
        state.inline_max
    ))
}
