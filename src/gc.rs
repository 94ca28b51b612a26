//! `git hypha gc`: the compaction engine ([`crate::compaction`]) over remote API v1, so that
//! a user can merge a repository's packs on any server, whether or not it compacts by itself
//! (docs/design.md §9).
//!
//! The packs come down through presigned URLs into a temporary bare repository, verified as a
//! fetch verifies them ([`fetch_packs::all`]); the merged pack goes up through presigned URLs
//! as a push's does; the `compact` route retires the merged packs, after checking that the new
//! pack holds every object of each. A full compaction then asks the server to prune the LFS
//! objects no ref reaches ([`prune_lfs`]).

use crate::api::{
    CompactRequest, CompactResponse, LfsPruneRequest, LfsPruneResponse, PackInfo, PacksRequest,
    PacksResponse, RefsResponse, Route,
};
use crate::client::{self, Client};
use crate::compaction::{self, LivePack, Merged, Packs, Retired};
use crate::fetch_packs;
use crate::progress::Progress;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub use crate::compaction::{Mode, Outcome};

/// Why `git hypha gc` failed.
pub type Error = compaction::Error<ApiError>;

/// A step of the compaction that failed on the API's side.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Packs(#[from] fetch_packs::Error),
    #[error("cannot remove the .keep files of downloaded packs")]
    Io(#[from] std::io::Error),
}

/// What the caller of `git hypha gc` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Which packs to merge.
    pub mode: Mode,
}

/// Merge the packs of the repository `client` talks to, as `options` say; `progress` draws
/// the downloads and the upload of the merged pack.
pub async fn run(client: &Client, options: &Options, progress: Progress) -> Result<Outcome, Error> {
    let api = Api {
        client,
        listing: Mutex::new(Vec::new()),
    };
    compaction::run(&api, options.mode, progress).await
}

/// Ask the server to delete the LFS objects no ref reaches any more (the `lfs-prune` route:
/// the server walks its own packs, so nothing here is trusted to decide). `None` when the
/// server has no such route (an older server or plugin).
pub async fn prune_lfs(client: &Client) -> Result<Option<LfsPruneResponse>, client::Error> {
    match client
        .call(Route::LfsPrune, &LfsPruneRequest::default())
        .await
    {
        Ok(done) => Ok(Some(done)),
        Err(client::Error::NotFound {
            detail: Some(detail),
            ..
        }) if detail.contains("no such route") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The repository as remote API v1 shows it.
struct Api<'a> {
    client: &'a Client,
    /// The last listing, with the presigned URLs `fetch` downloads from.
    listing: Mutex<Vec<PackInfo>>,
}

#[async_trait]
impl Packs for Api<'_> {
    type Error = ApiError;

    fn repo_name(&self) -> String {
        self.client.remote().display_name()
    }

    async fn live(&self) -> Result<Vec<LivePack>, ApiError> {
        let listing: PacksResponse = self
            .client
            .call(Route::Packs, &PacksRequest::default())
            .await?;
        let live = listing
            .packs
            .iter()
            .map(|p| LivePack {
                name: p.name.clone(),
                pack_size: p.pack_size,
            })
            .collect();
        *self.listing.lock().unwrap_or_else(|e| e.into_inner()) = listing.packs;
        Ok(live)
    }

    async fn fetch(
        &self,
        git_dir: &Path,
        packs: &[LivePack],
        progress: &Progress,
    ) -> Result<(), ApiError> {
        let chosen: Vec<PackInfo> = {
            let listing = self.listing.lock().unwrap_or_else(|e| e.into_inner());
            listing
                .iter()
                .filter(|p| packs.iter().any(|c| c.name == p.name))
                .cloned()
                .collect()
        };
        let keeps = fetch_packs::all(self.client, git_dir, &chosen, *progress).await?;
        // `git repack -a` leaves packs with a .keep alone; these are ours to merge.
        for keep in keeps {
            std::fs::remove_file(keep)?;
        }
        Ok(())
    }

    async fn refs(&self) -> Result<BTreeMap<String, String>, ApiError> {
        let refs: RefsResponse = self
            .client
            .call(Route::Refs, &serde_json::json!({}))
            .await?;
        Ok(refs.refs)
    }

    async fn store(&self, merged: &Merged, progress: &Progress) -> Result<(), ApiError> {
        let bar = progress.bytes("Uploading merged pack", merged.pack_size + merged.idx_size);
        client::upload_pack(
            self.client,
            client::PackFiles {
                name: &merged.name,
                pack_path: &merged.pack_path,
                idx_path: &merged.idx_path,
                pack_size: merged.pack_size,
                idx_size: merged.idx_size,
                thin: false,
                resume: false,
            },
            &bar,
        )
        .await?;
        bar.finish();
        Ok(())
    }

    async fn retire(&self, pack: &str, retire: Vec<String>) -> Result<Retired, ApiError> {
        let response: CompactResponse = self
            .client
            .call(
                Route::Compact,
                &CompactRequest {
                    pack: pack.to_owned(),
                    retire,
                },
            )
            .await?;
        Ok(Retired {
            retired: response.retired,
            deleted: response.deleted,
            grace_secs: response.grace_secs,
        })
    }
}
