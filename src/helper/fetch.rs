//! `fetch` batches: download the packs that hold what git asked for (DESIGN §5).
//!
//! A clone takes every pack. An incremental fetch skips packs already seen from this remote,
//! reads the idx of each unseen pack and downloads only those holding an object we lack.
//! Downloads run in parallel and stream straight into the gix indexer, which verifies every
//! object and writes `.pack` + `.idx` + `.keep`; nothing unverified lands in the repository.

use super::options::FetchSettings;
use super::protocol::FetchSpec;
use super::state;
use crate::api::{PackInfo, PacksRequest, PacksResponse, Route};
use crate::client::{self, Client};
use crate::pack;
use crate::progress::{Bar, Progress};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Packs downloaded at once: enough to hide request latency, few enough for 2 cores.
const PARALLEL_DOWNLOADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Open(#[from] super::local::OpenError),
    #[error("pack {pack} of '{repo}' could not be stored")]
    Index {
        pack: String,
        repo: String,
        #[source]
        source: pack::index::Error,
    },
    #[error("index of pack {pack} of '{repo}' is unreadable")]
    Idx {
        pack: String,
        repo: String,
        #[source]
        source: crate::idx::Error,
    },
    #[error("'{repo}' has no pack holding {oid} ({name})")]
    Missing {
        repo: String,
        oid: String,
        name: String,
    },
    #[error("cannot record fetched packs under {path}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("indexing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Fetch everything `wants` needs into `git_dir`; returns the `.keep` to report as `lock`.
pub async fn run(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    settings: &FetchSettings,
) -> Result<Option<PathBuf>, Error> {
    let repo_name = client.remote().display_name();
    let mut known = if settings.refetch {
        BTreeSet::new()
    } else {
        state::load(git_dir, client.remote())
    };
    let listing: PacksResponse = client
        .call(
            Route::Packs,
            &PacksRequest {
                known: known.iter().cloned().collect(),
            },
        )
        .await?;
    let unseen: Vec<PackInfo> = listing
        .packs
        .into_iter()
        .filter(|p| !known.contains(&p.name))
        .collect();

    let pack_dir = git_dir.join("objects").join("pack");
    let fresh = settings.cloning || !has_any_pack_or_object(git_dir);
    let mut keeps = download_needed(client, git_dir, &pack_dir, &unseen, fresh, settings).await?;
    known.extend(unseen.iter().map(|p| p.name.clone()));

    // The known-pack record is a cache; if it hid a pack we need, look at every pack again.
    if !missing_wants(git_dir, wants)?.is_empty() {
        let all: PacksResponse = client.call(Route::Packs, &PacksRequest::default()).await?;
        let again: Vec<PackInfo> = all
            .packs
            .into_iter()
            .filter(|p| !unseen.iter().any(|u| u.name == p.name))
            .collect();
        keeps.extend(download_needed(client, git_dir, &pack_dir, &again, false, settings).await?);
        known.extend(again.iter().map(|p| p.name.clone()));
        if let Some(w) = missing_wants(git_dir, wants)?.first() {
            remove_keeps(&keeps);
            return Err(Error::Missing {
                repo: repo_name,
                oid: w.oid.clone(),
                name: w.name.clone(),
            });
        }
    }

    state::save(git_dir, client.remote(), &known).map_err(|source| Error::State {
        path: git_dir.join("hypha"),
        source,
    })?;
    // git accepts one `lock` per fetch; the other packs' .keep files go now, since refs
    // pointing at their objects are about to be written by git right after this batch.
    let lock = keeps.first().cloned();
    remove_keeps(keeps.get(1..).unwrap_or_default());
    Ok(lock)
}

fn remove_keeps(keeps: &[PathBuf]) {
    for k in keeps {
        let _ = std::fs::remove_file(k);
    }
}

fn open(git_dir: &Path) -> Result<gix::Repository, Error> {
    Ok(super::local::open(git_dir)?)
}

fn has_any_pack_or_object(git_dir: &Path) -> bool {
    let objects = git_dir.join("objects");
    std::fs::read_dir(&objects)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                (name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                    || (name == "pack"
                        && std::fs::read_dir(e.path())
                            .map(|mut d| {
                                d.any(|f| {
                                    f.is_ok_and(|f| {
                                        f.file_name().to_string_lossy().ends_with(".pack")
                                    })
                                })
                            })
                            .unwrap_or(false))
            })
        })
        .unwrap_or(false)
}

fn missing_wants<'a>(git_dir: &Path, wants: &'a [FetchSpec]) -> Result<Vec<&'a FetchSpec>, Error> {
    let repo = open(git_dir)?;
    Ok(wants
        .iter()
        .filter(|w| {
            gix::ObjectId::from_hex(w.oid.as_bytes())
                .map(|id| !repo.has_object(id))
                .unwrap_or(true)
        })
        .collect())
}

/// Download every pack of `packs` into the repository at `git_dir` (verified, with `.keep`
/// files, which are returned). For `git hypha gc`, which merges them all.
pub async fn download_all(
    client: &Client,
    git_dir: &Path,
    packs: &[PackInfo],
    progress: bool,
) -> Result<Vec<PathBuf>, Error> {
    let settings = FetchSettings {
        progress,
        verbosity: 1,
        cloning: true,
        refetch: true,
    };
    let pack_dir = git_dir.join("objects").join("pack");
    download_needed(client, git_dir, &pack_dir, packs, true, &settings).await
}

/// Download (in parallel) each pack of `packs` that holds something we lack, or all of them
/// when `take_all`. Returns the `.keep` files written.
async fn download_needed(
    client: &Client,
    git_dir: &Path,
    pack_dir: &Path,
    packs: &[PackInfo],
    take_all: bool,
    settings: &FetchSettings,
) -> Result<Vec<PathBuf>, Error> {
    let repo_name = client.remote().display_name();
    // One counter for all parallel downloads; its total grows as packs are chosen.
    let bar = Progress::new(settings.progress).bytes("Receiving packs", 0);
    let results: Vec<Option<PathBuf>> = futures_util::stream::iter(packs.iter().cloned())
        .map(|info| {
            let repo_name = repo_name.clone();
            let bar = bar.clone();
            async move {
                if !take_all && !holds_missing_object(client, git_dir, &info).await? {
                    return Ok(None);
                }
                bar.add_total(info.pack_size);
                let keep = download_one(client, pack_dir, &info, &repo_name, &bar).await?;
                if settings.verbosity >= 2 {
                    eprintln!(
                        "hypha: fetched {} ({} bytes) from {repo_name}",
                        info.name, info.pack_size
                    );
                }
                Ok::<_, Error>(keep)
            }
        })
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect()
        .await?;
    if results.iter().any(Option::is_some) {
        bar.finish();
    }
    Ok(results.into_iter().flatten().collect())
}

/// Read the pack's idx and look for an object we do not have.
async fn holds_missing_object(
    client: &Client,
    git_dir: &Path,
    info: &PackInfo,
) -> Result<bool, Error> {
    let repo_name = client.remote().display_name();
    let Some(url) = info.idx_url.as_deref() else {
        return Ok(false);
    };
    let what = format!("index of {} of '{repo_name}'", info.name);
    let bytes = client::with_retries(|| async {
        let stream = client::download_stream(client.http(), url, &what).await?;
        let chunks: Vec<bytes::Bytes> =
            stream
                .try_collect()
                .await
                .map_err(|source| client::Error::Io {
                    what: what.clone(),
                    source,
                })?;
        Ok(chunks.concat())
    })
    .await?;
    let ids = crate::idx::object_ids(&bytes, &info.name).map_err(|source| Error::Idx {
        pack: info.name.clone(),
        repo: repo_name.clone(),
        source,
    })?;
    let git_dir = git_dir.to_owned();
    let missing = tokio::task::spawn_blocking(move || {
        let repo = open(&git_dir)?;
        Ok::<_, Error>(
            ids.iter()
                .any(|id| !repo.has_object(gix::ObjectId::from_bytes_or_panic(id))),
        )
    })
    .await??;
    Ok(missing)
}

/// Stream one pack into the indexer; retried whole on a transient failure.
async fn download_one(
    client: &Client,
    pack_dir: &Path,
    info: &PackInfo,
    repo_name: &str,
    bar: &Bar,
) -> Result<Option<PathBuf>, Error> {
    let Some(url) = info.pack_url.clone() else {
        return Ok(None);
    };
    let what = format!("pack {} of '{repo_name}'", info.name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stream =
            client::with_retries(|| client::download_stream(client.http(), &url, &what)).await?;
        let counted = bar.clone();
        let reader = tokio_util::io::StreamReader::new(
            stream.inspect_ok(move |chunk| counted.inc(chunk.len() as u64)),
        );
        let pack_dir = pack_dir.to_owned();
        let name = info.name.clone();
        let result = tokio::task::spawn_blocking(move || {
            let interrupt = Arc::new(AtomicBool::new(false));
            let mut input = std::io::BufReader::with_capacity(
                1 << 20,
                tokio_util::io::SyncIoBridge::new(reader),
            );
            pack::index(&mut input, &pack_dir, &name, &interrupt)
        })
        .await?;
        match result {
            Ok(indexed) => return Ok(indexed.keep_path),
            // A connection cut mid-pack looks like a truncated pack: try once more before
            // calling the stored pack corrupt.
            Err(_) if attempt < 2 => continue,
            Err(source) => {
                return Err(Error::Index {
                    pack: info.name.clone(),
                    repo: repo_name.to_owned(),
                    source,
                })
            }
        }
    }
}
