//! Small packs carried in the `refs` answer itself (issue 25, docs/design.md §18): a client
//! that asks (`inline_max`, sent by a clone) gets the bytes of unseen packs within that many
//! bytes beside their URLs, so that a clone of a small repository is the listing and nothing
//! after it, where each pack was a `GET`, and every `GET` beyond the first opened a connection
//! of its own (a round trip more over HTTP/1.1).
//!
//! The bytes are read from the store after the listing, all at once (one more wave of store
//! requests, for clones only). Best effort: a pack that cannot be read (compacted away since
//! the listing, say) keeps its URL alone. Never more than this server's own `inline_max`
//! (what `update` takes inline, at most [`super::inline::LIMIT`]) whatever the client asks.
//! Does not decide what a client needs: it takes every unseen pack that fits, oldest first.

use super::state::AppState;
use crate::api::PacksResponse;
use crate::repo::Repository;
use base64::Engine;
use futures_util::StreamExt;

/// Store reads at once: the budget is at most 8 MiB, so few packs fit anyway.
const PARALLEL_READS: usize = 16;

/// Put the bytes of the unseen packs of `listing` (those with URLs) into it, oldest first while
/// they fit in `asked` bytes (and this server's `inline_max`). Nothing when a known pack is
/// gone from the listing: a compaction merged it, and the client reads the idx of unseen packs
/// before it downloads them (a merged pack holds what it has).
pub async fn fill(
    state: &AppState,
    repo: &Repository,
    listing: &mut PacksResponse,
    known: &[String],
    asked: u64,
) {
    let budget = asked.min(state.inline_max);
    if budget == 0
        || known
            .iter()
            .any(|k| !listing.packs.iter().any(|p| &p.name == k))
    {
        return;
    }
    let mut left = budget;
    let mut chosen = Vec::new();
    for (i, p) in listing.packs.iter().enumerate() {
        if p.pack_url.is_some() && p.pack_size <= left {
            left -= p.pack_size;
            chosen.push(i);
        }
    }
    if chosen.is_empty() {
        return;
    }
    let reads: Vec<(usize, Option<bytes::Bytes>)> = futures_util::stream::iter(chosen)
        .map(|i| {
            let (name, size) = (listing.packs[i].name.clone(), listing.packs[i].pack_size);
            async move {
                match repo.pack_bytes(&name, size).await {
                    Ok(bytes) => (i, Some(bytes)),
                    Err(e) => {
                        tracing::debug!("{}: {name} not inline: {e}", repo.name());
                        (i, None)
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL_READS)
        .collect()
        .await;
    for (i, bytes) in reads {
        listing.packs[i].inline =
            bytes.map(|b| base64::engine::general_purpose::STANDARD.encode(&b));
    }
}
