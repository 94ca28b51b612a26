//! `git hypha gc`: merge a repository's packs (docs/design.md §9).
//!
//! Every push adds a pack, and a clone downloads them all. Compaction runs where git is, as a
//! client of remote API v1 (the user's `git hypha gc`, or the server's own auto-gc, see
//! `server::autogc`): download the packs to merge into a temporary bare repository, pack
//! them into one (keeping unreachable objects too: a pack uploaded by a push that has not
//! updated its refs yet must not lose objects), upload it, and ask the server to retire the
//! merged packs. The server checks that the new pack holds every object of each retired pack,
//! hides them at once and deletes them after its grace period, so readers that listed them
//! earlier still finish.
//!
//! Two modes: [`Mode::All`] merges every pack (`git repack -a` with the remote's refs, which
//! give git's delta search its paths); [`Mode::Geometric`] merges only the small packs chosen
//! by [`select::geometric`], with `git pack-objects --stdin-packs` (the packs are
//! self-contained, so any subset can be merged without refs or the rest of the history).

pub mod select;

use crate::api::{
    CompactRequest, CompactResponse, PackInfo, PacksRequest, PacksResponse, RefsResponse, Route,
};
use crate::client::{self, Client};
use crate::fetch_packs;
use crate::pack::repack;
use crate::progress::Progress;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Packs(#[from] fetch_packs::Error),
    #[error("cannot prepare a temporary repository for compaction")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Repack(#[from] repack::Error),
    #[error("packing failed unexpectedly while compacting '{repo}'")]
    Panicked { repo: String },
}

/// Which packs a compaction merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every live pack into one: what a user running `git hypha gc` expects.
    All,
    /// Only the small packs ([`select::geometric`]): cheap enough to run after every few
    /// pushes, whatever the size of the repository.
    Geometric,
    /// [`Mode::Geometric`], and only when [`select::due`] with the server's default trigger:
    /// the automatic compaction, as `git hypha gc --auto` (the Hypha plugin runs it after
    /// pushes). When not due it writes nothing, retired packs included.
    Auto,
}

/// What one compaction did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to merge among `packs` live packs; `purged` retired packs were deleted.
    NothingToDo { packs: usize, purged: usize },
    Compacted {
        /// Packs merged (and retired).
        merged: usize,
        /// Live packs left as they were.
        kept: usize,
        pack: String,
        pack_size: u64,
        response: CompactResponse,
    },
}

pub async fn run(client: &Client, mode: Mode, progress: Progress) -> Result<Outcome, Error> {
    let repo = client.remote().display_name();
    let listing: PacksResponse = client.call(Route::Packs, &PacksRequest::default()).await?;
    let packs: Vec<PackInfo> = listing.packs;
    let sizes: Vec<u64> = packs.iter().map(|p| p.pack_size).collect();
    if mode == Mode::Auto && !select::due(&sizes, select::AUTO_MAX_PACKS, select::AUTO_MIN_BYTES) {
        return Ok(Outcome::NothingToDo {
            packs: packs.len(),
            purged: 0,
        });
    }
    let chosen: Vec<PackInfo> = match mode {
        Mode::All if packs.len() >= 2 => packs.clone(),
        Mode::All => Vec::new(),
        Mode::Geometric | Mode::Auto => select::geometric(&sizes)
            .into_iter()
            .map(|i| packs[i].clone())
            .collect(),
    };
    if chosen.is_empty() {
        // Nothing to merge, but packs retired earlier may be past their grace period: a
        // compaction that retires nothing still purges them.
        let purged = match packs.first() {
            Some(only) => {
                let request = CompactRequest {
                    pack: only.name.clone(),
                    retire: Vec::new(),
                };
                let response: CompactResponse = client.call(Route::Compact, &request).await?;
                response.deleted.len()
            }
            None => 0,
        };
        return Ok(Outcome::NothingToDo {
            packs: packs.len(),
            purged,
        });
    }
    let tmp = tempfile::Builder::new().prefix("hypha-gc-").tempdir()?;
    let git_dir = tmp.path().join("repo.git");
    repack::init_bare(&repo, &git_dir)?;
    let keeps = fetch_packs::all(client, &git_dir, &chosen, progress).await?;
    // `git repack -a` leaves packs with a .keep alone; these are ours to merge.
    for keep in keeps {
        std::fs::remove_file(keep)?;
    }
    // Refs give git's delta search its paths and order in a full repack; objects no ref
    // reaches are kept too. A subset has no refs of its own (see `repack::pack_subset`).
    let refs = match mode {
        Mode::All => Some(
            client
                .call::<_, RefsResponse>(Route::Refs, &serde_json::json!({}))
                .await?,
        ),
        Mode::Geometric | Mode::Auto => None,
    };
    // git runs for seconds to minutes: off the async workers, which serve requests meanwhile
    // when this runs inside the server.
    let out_dir = tmp.path().join("merged");
    let (repo_name, dir) = (repo.clone(), git_dir.clone());
    let merged = tokio::task::spawn_blocking(move || match refs {
        Some(refs) => {
            repack::set_refs(&repo_name, &dir, &refs.refs)?;
            repack::repack(&repo_name, &dir)
        }
        None => repack::pack_subset(&repo_name, &dir, &out_dir),
    })
    .await
    .map_err(|_| Error::Panicked { repo: repo.clone() })??;
    let pack_size = std::fs::metadata(&merged.0)?.len();
    let idx_size = std::fs::metadata(&merged.1)?.len();
    let name = pack_name(&merged.0);

    let bar = progress.bytes("Uploading merged pack", pack_size + idx_size);
    client::upload_pack(
        client,
        client::PackFiles {
            name: &name,
            pack_path: &merged.0,
            idx_path: &merged.1,
            pack_size,
            idx_size,
            thin: false,
        },
        &bar,
    )
    .await?;
    bar.finish();

    let response: CompactResponse = client
        .call(
            Route::Compact,
            &CompactRequest {
                pack: name.clone(),
                retire: chosen
                    .iter()
                    .map(|p| p.name.clone())
                    .filter(|n| *n != name)
                    .collect(),
            },
        )
        .await?;
    Ok(Outcome::Compacted {
        merged: chosen.len(),
        kept: packs.len() - chosen.len(),
        pack: name,
        pack_size,
        response,
    })
}

fn pack_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
