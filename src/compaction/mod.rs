//! The one compaction engine (docs/design.md §9): which packs to merge, merging them with
//! git, and handing the result back, written once over where packs come from and go to.
//!
//! Every push adds a pack, and a clone downloads them all. A compaction takes a repository's
//! live packs ([`Packs::live`]), chooses what to merge ([`select`]), gets verified copies of
//! those packs into a temporary bare repository ([`Packs::fetch`]), packs them into one with
//! git (keeping unreachable objects too: a pack uploaded by a push that has not updated its
//! refs yet must not lose objects), stores the new pack ([`Packs::store`]) and retires the
//! merged ones ([`Packs::retire`]), where the repository checks that the new pack holds every
//! object of each retired pack, hides them at once and deletes them after its grace period,
//! so readers that listed them earlier still finish.
//!
//! Two sides implement [`Packs`]:
//! - the API, for `git hypha gc` against any server ([`crate::gc`]: presigned downloads and
//!   uploads, the `compact` route);
//! - the store itself, for the server's automatic compaction (`repo::gc`): no HTTP, no
//!   token, no hairpin through whatever proxy fronts the server.
//!
//! Two modes: [`Mode::All`] merges every pack (`git repack -a` with the repository's refs,
//! which give git's delta search its paths); [`Mode::Geometric`] merges only the small packs
//! chosen by [`select::geometric`], with `git pack-objects --stdin-packs` (the packs are
//! self-contained, so any subset can be merged without refs or the rest of the history).
//! Never prints: the caller reports the [`Outcome`].

pub mod lfs_reach;
pub mod select;

use crate::pack::repack;
use crate::progress::Progress;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which packs a compaction merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every live pack into one: what a user running `git hypha gc` expects.
    All,
    /// Only the small packs ([`select::geometric`]): cheap enough to run after every few
    /// pushes, whatever the size of the repository.
    Geometric,
    /// [`Mode::Geometric`], and only when [`select::due`] with the server's default trigger:
    /// the automatic compaction, as `git hypha gc --auto`. When not due it writes nothing,
    /// retired packs included.
    Auto,
}

/// A live pack, as the engine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePack {
    /// `pack-<hex>`, without extension.
    pub name: String,
    pub pack_size: u64,
}

/// The pack a merge produced, on local disk.
#[derive(Debug, Clone)]
pub struct Merged {
    /// `pack-<hex>`, named by git after its checksum.
    pub name: String,
    pub pack_path: PathBuf,
    pub idx_path: PathBuf,
    pub pack_size: u64,
    pub idx_size: u64,
}

/// What retiring did: packs hidden now, and packs retired earlier that were deleted now
/// because their grace period was over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    pub retired: Vec<String>,
    pub deleted: Vec<String>,
    /// How long a retired pack stays readable.
    pub grace_secs: u64,
}

/// Where a repository's packs come from and go to.
#[async_trait]
pub trait Packs: Send + Sync {
    /// Why a step failed; names what failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `workspace/alias`, for messages.
    fn repo_name(&self) -> String;

    /// The live packs.
    async fn live(&self) -> Result<Vec<LivePack>, Self::Error>;

    /// Verified copies of `packs` (`.pack` and `.idx`, no `.keep`) in `git_dir`'s
    /// `objects/pack/`: every object hashed from the pack's own bytes, never taken from a
    /// stored idx on trust.
    async fn fetch(
        &self,
        git_dir: &Path,
        packs: &[LivePack],
        progress: &Progress,
    ) -> Result<(), Self::Error>;

    /// The repository's refs (name -> object id), for a full repack's delta search.
    async fn refs(&self) -> Result<BTreeMap<String, String>, Self::Error>;

    /// Store `merged` as a pack of the repository, not yet live.
    async fn store(&self, merged: &Merged, progress: &Progress) -> Result<(), Self::Error>;

    /// Make `pack` live in place of `retire` (checked to hold every object of each), and
    /// delete packs retired longer ago than the grace period. With `retire` empty, only the
    /// latter: `pack` must then be a live pack.
    async fn retire(&self, pack: &str, retire: Vec<String>) -> Result<Retired, Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error<E: std::error::Error + Send + Sync + 'static> {
    /// A step of [`Packs`] failed.
    #[error(transparent)]
    Packs(E),
    #[error("cannot prepare a temporary repository for compaction")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Repack(#[from] repack::Error),
    #[error("packing failed unexpectedly while compacting '{repo}'")]
    Panicked { repo: String },
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
        retired: Retired,
    },
}

/// A compaction up to its last step: the merged pack is stored, and what remains is to ask
/// [`Packs::retire`] ([`finish`]). Split so that the Hypha plugin can hold its lease around
/// that step only, not around the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Nothing to merge among `packs` live packs. `purge_with` names a live pack to call
    /// `retire` with (retiring nothing, purging packs retired earlier), or is `None` when
    /// there is nothing at all to write ([`Mode::Auto`] not due, or no packs).
    Nothing {
        packs: usize,
        purge_with: Option<String>,
    },
    /// `pack` holds every object of `retire`, which are to be retired in its favour.
    Merged {
        pack: String,
        pack_size: u64,
        retire: Vec<String>,
        /// Packs merged (`retire`, and `pack` itself when git made the very same pack).
        merged: usize,
        /// Live packs left as they were.
        kept: usize,
    },
}

/// Compact the repository behind `packs` in `mode`.
pub async fn run<P: Packs>(
    packs: &P,
    mode: Mode,
    progress: Progress,
) -> Result<Outcome, Error<P::Error>> {
    let prepared = prepare(packs, mode, progress).await?;
    finish(packs, prepared).await
}

/// The last step of [`run`]: retire what [`prepare`] merged (or only purge).
pub async fn finish<P: Packs>(packs: &P, prepared: Prepared) -> Result<Outcome, Error<P::Error>> {
    match prepared {
        Prepared::Nothing {
            packs: live,
            purge_with,
        } => {
            let purged = match purge_with {
                Some(pack) => {
                    let retired = packs
                        .retire(&pack, Vec::new())
                        .await
                        .map_err(Error::Packs)?;
                    retired.deleted.len()
                }
                None => 0,
            };
            Ok(Outcome::NothingToDo {
                packs: live,
                purged,
            })
        }
        Prepared::Merged {
            pack,
            pack_size,
            retire,
            merged,
            kept,
        } => {
            let retired = packs.retire(&pack, retire).await.map_err(Error::Packs)?;
            Ok(Outcome::Compacted {
                merged,
                kept,
                pack,
                pack_size,
                retired,
            })
        }
    }
}

/// Everything of [`run`] but the last step: choose, fetch, merge with git, store the merge.
pub async fn prepare<P: Packs>(
    packs: &P,
    mode: Mode,
    progress: Progress,
) -> Result<Prepared, Error<P::Error>> {
    let repo = packs.repo_name();
    let live = packs.live().await.map_err(Error::Packs)?;
    let sizes: Vec<u64> = live.iter().map(|p| p.pack_size).collect();
    if mode == Mode::Auto && !select::due(&sizes, select::AUTO_MAX_PACKS, select::AUTO_MIN_BYTES) {
        return Ok(Prepared::Nothing {
            packs: live.len(),
            purge_with: None,
        });
    }
    let chosen: Vec<LivePack> = match mode {
        Mode::All if live.len() >= 2 => live.clone(),
        Mode::All => Vec::new(),
        Mode::Geometric | Mode::Auto => select::geometric(&sizes)
            .into_iter()
            .map(|i| live[i].clone())
            .collect(),
    };
    if chosen.is_empty() {
        // Nothing to merge, but packs retired earlier may be past their grace period: a
        // compaction that retires nothing still purges them.
        return Ok(Prepared::Nothing {
            packs: live.len(),
            purge_with: live.first().map(|p| p.name.clone()),
        });
    }
    let tmp = tempfile::Builder::new().prefix("hypha-gc-").tempdir()?;
    let git_dir = tmp.path().join("repo.git");
    repack::init_bare(&repo, &git_dir)?;
    packs
        .fetch(&git_dir, &chosen, &progress)
        .await
        .map_err(Error::Packs)?;
    // Refs give git's delta search its paths and order in a full repack; objects no ref
    // reaches are kept too. A subset has no refs of its own (see `repack::pack_subset`).
    let refs = match mode {
        Mode::All => Some(packs.refs().await.map_err(Error::Packs)?),
        Mode::Geometric | Mode::Auto => None,
    };
    // git runs for seconds to minutes: off the async workers, which serve requests meanwhile
    // when this runs inside the server.
    let out_dir = tmp.path().join("merged");
    let (repo_name, dir) = (repo.clone(), git_dir.clone());
    let (pack_path, idx_path) = tokio::task::spawn_blocking(move || match refs {
        Some(refs) => {
            repack::set_refs(&repo_name, &dir, &refs)?;
            repack::repack(&repo_name, &dir)
        }
        None => repack::pack_subset(&repo_name, &dir, &out_dir),
    })
    .await
    .map_err(|_| Error::Panicked { repo: repo.clone() })??;
    let merged = Merged {
        name: pack_name(&pack_path),
        pack_size: std::fs::metadata(&pack_path)?.len(),
        idx_size: std::fs::metadata(&idx_path)?.len(),
        pack_path,
        idx_path,
    };
    packs
        .store(&merged, &progress)
        .await
        .map_err(Error::Packs)?;
    let retire = chosen
        .iter()
        .map(|p| p.name.clone())
        .filter(|n| *n != merged.name)
        .collect();
    Ok(Prepared::Merged {
        pack: merged.name,
        pack_size: merged.pack_size,
        retire,
        merged: chosen.len(),
        kept: live.len() - chosen.len(),
    })
}

fn pack_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
