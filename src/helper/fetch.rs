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
        source: pack::receive::Error,
    },
    #[error("index of pack {pack} of '{repo}' is unreadable")]
    Idx {
        pack: String,
        repo: String,
        #[source]
        source: pack::idx_file::Error,
    },
    #[error("pack {pack} of '{repo}' does not match its index (object {oid})")]
    Mismatch {
        pack: String,
        repo: String,
        oid: String,
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
///
/// On failure the repository is left as it was: packs this batch wrote are removed again.
pub async fn run(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    settings: &FetchSettings,
) -> Result<Option<PathBuf>, Error> {
    let mut written = Vec::new();
    match fetch_all(client, git_dir, wants, settings, &mut written).await {
        Ok(()) => {
            // git accepts one `lock` per fetch and removes that .keep itself once refs are
            // written; the other packs' .keep files go now (dropping their guards), since
            // refs pointing at their objects are about to be written by git right after
            // this batch.
            let lock = written.into_iter().next().map(|w| w.keep.hand_to_git());
            Ok(lock)
        }
        Err(e) => {
            for w in &written {
                w.remove();
            }
            Err(e)
        }
    }
}

/// A pack this batch added to the repository (it was not there before).
#[derive(Debug)]
struct Written {
    pack: PathBuf,
    idx: PathBuf,
    keep: Keep,
}

impl Written {
    /// Pack first: a lone `.idx` is ignored by git, a lone `.pack` is not.
    fn remove(&self) {
        for path in [&self.pack, &self.idx, &self.keep.path] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One pack downloaded and verified: its name on the server, and what it added locally
/// (`None` when the repository already had that very pack).
struct Downloaded {
    name: String,
    new: Option<Written>,
    /// The wanted ids this pack holds: present now, no local lookup needed.
    covers: Vec<[u8; 20]>,
}

/// The `.keep` guarding a new pack until git has written refs to its objects. Until it is
/// handed to git (`lock`), it is a registered tempfile: dropped, or on SIGINT/SIGTERM (the
/// handler `main` installs), it is deleted, so Ctrl-C leaves no stale `.keep` behind.
#[derive(Debug)]
struct Keep {
    path: PathBuf,
    guard: Option<gix_tempfile::Handle<gix_tempfile::handle::Closed>>,
    /// A plain file (registering failed) that this process still owns.
    plain: bool,
}

impl Keep {
    /// Replace the plain `.keep` gix wrote by a registered one (same name: git's repack
    /// honours only `pack-*.keep`).
    fn guard(path: PathBuf) -> Keep {
        let _ = std::fs::remove_file(&path);
        let guard = gix_tempfile::mark_at(
            &path,
            gix_tempfile::ContainingDirectory::Exists,
            gix_tempfile::AutoRemove::Tempfile,
        )
        .ok();
        let plain = guard.is_none();
        if plain {
            // Could not register it: a plain .keep is still better than none.
            let _ = std::fs::write(&path, b"");
        }
        Keep { path, guard, plain }
    }

    /// From now on git removes it (after writing refs, or on its own signal handler).
    fn hand_to_git(mut self) -> PathBuf {
        if let Some(temp) = self.guard.take().and_then(|g| g.take()) {
            let _ = temp.keep();
        }
        self.plain = false;
        self.path.clone()
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        // A registered guard deletes its file when dropped.
        if self.plain {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn fetch_all(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    settings: &FetchSettings,
    written: &mut Vec<Written>,
) -> Result<(), Error> {
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
    let take = |_: &PackInfo| fresh;
    let mut taken = BTreeSet::new();
    // git asks only for objects it lacks, so a pack whose idx lists a wanted id is needed
    // without asking the local object store, which after many pushes means loading hundreds
    // of local idx files; and a want such a pack brought in needs no lookup afterwards.
    let wanted: BTreeSet<[u8; 20]> = wants
        .iter()
        .filter_map(|w| gix::ObjectId::from_hex(w.oid.as_bytes()).ok())
        .filter_map(|id| id.as_slice().try_into().ok())
        .collect();
    let mut covered = BTreeSet::new();
    let mut got = Got {
        taken: &mut taken,
        covered: &mut covered,
    };
    download_needed(
        client, git_dir, &pack_dir, &unseen, take, &wanted, settings, written, &mut got,
    )
    .await?;
    known.extend(unseen.iter().map(|p| p.name.clone()));

    // The known-pack record is a cache, and an idx only a hint; if they hid a pack we need,
    // look at every pack again, and take the unseen ones whose idx claimed nothing new.
    if !missing_wants(git_dir, wants, &covered)?.is_empty() {
        let all: PacksResponse = client.call(Route::Packs, &PacksRequest::default()).await?;
        let again: Vec<PackInfo> = all
            .packs
            .into_iter()
            .filter(|p| !taken.contains(&p.name))
            .collect();
        let suspect = |p: &PackInfo| unseen.iter().any(|u| u.name == p.name);
        let mut got = Got {
            taken: &mut taken,
            covered: &mut covered,
        };
        download_needed(
            client, git_dir, &pack_dir, &again, suspect, &wanted, settings, written, &mut got,
        )
        .await?;
        known.extend(again.iter().map(|p| p.name.clone()));
        if let Some(w) = missing_wants(git_dir, wants, &covered)?.first() {
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
    })
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

/// The wants still missing; those in `covered` (brought in by a verified pack) are present.
fn missing_wants<'a>(
    git_dir: &Path,
    wants: &'a [FetchSpec],
    covered: &BTreeSet<[u8; 20]>,
) -> Result<Vec<&'a FetchSpec>, Error> {
    let id = |w: &FetchSpec| gix::ObjectId::from_hex(w.oid.as_bytes()).ok();
    let unsure: Vec<&FetchSpec> = wants
        .iter()
        .filter(|w| !id(w).is_some_and(|id| covered.contains(id.as_slice())))
        .collect();
    if unsure.is_empty() {
        return Ok(unsure);
    }
    let repo = open(git_dir)?;
    Ok(unsure
        .into_iter()
        .filter(|w| id(w).is_none_or(|id| !repo.has_object(id)))
        .collect())
}

/// What [`download_needed`] took: pack names, and the wanted ids those packs hold.
struct Got<'a> {
    taken: &'a mut BTreeSet<String>,
    covered: &'a mut BTreeSet<[u8; 20]>,
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
    let mut written = Vec::new();
    let mut taken = BTreeSet::new();
    let mut covered = BTreeSet::new();
    let all = |_: &PackInfo| true;
    let result = download_needed(
        client,
        git_dir,
        &pack_dir,
        packs,
        all,
        &BTreeSet::new(),
        &settings,
        &mut written,
        &mut Got {
            taken: &mut taken,
            covered: &mut covered,
        },
    )
    .await;
    match result {
        // The caller owns the .keep files from here on.
        Ok(()) => Ok(written.into_iter().map(|w| w.keep.hand_to_git()).collect()),
        Err(e) => {
            for w in &written {
                w.remove();
            }
            Err(e)
        }
    }
}

/// Download (in parallel) each pack of `packs` that holds something we lack (an id of
/// `wanted`, or one the local store lacks), or that `take` says to take anyway. Every
/// download is checked against the server's idx. Waits for all downloads even when one
/// fails, so that nothing is still writing when the caller cleans up; each pack written lands
/// in `written`, also on failure, and each pack downloaded in `got`.
#[allow(clippy::too_many_arguments)]
async fn download_needed(
    client: &Client,
    git_dir: &Path,
    pack_dir: &Path,
    packs: &[PackInfo],
    take: impl Fn(&PackInfo) -> bool,
    wanted: &BTreeSet<[u8; 20]>,
    settings: &FetchSettings,
    written: &mut Vec<Written>,
    got: &mut Got<'_>,
) -> Result<(), Error> {
    let repo_name = client.remote().display_name();
    // One counter for all parallel downloads; its total grows as packs are chosen.
    let bar = Progress::new(settings.progress).bytes("Receiving packs", 0);
    let results: Vec<Result<Option<Downloaded>, Error>> =
        futures_util::stream::iter(packs.iter().cloned())
            .map(|info| {
                let repo_name = repo_name.clone();
                let take = take(&info);
                let bar = bar.clone();
                async move {
                    let Some(Listed {
                        ids: listed,
                        largest_entry,
                    }) = listed_ids(client, &info).await?
                    else {
                        return Ok(None);
                    };
                    // idx ids are sorted.
                    let covers: Vec<[u8; 20]> = wanted
                        .iter()
                        .filter(|w| listed.binary_search(w).is_ok())
                        .copied()
                        .collect();
                    if !take && covers.is_empty() && !lacks_any(git_dir, &listed).await? {
                        return Ok(None);
                    }
                    bar.add_total(info.pack_size);
                    let Some(indexed) =
                        download_one(client, pack_dir, &info, largest_entry, &repo_name, &bar)
                            .await?
                    else {
                        return Ok(None);
                    };
                    // Guard the .keep first: from here on Ctrl-C removes it.
                    let local_idx = indexed.idx_path.clone();
                    let new = match (indexed.pack_path, indexed.idx_path, indexed.keep_path) {
                        (Some(pack), Some(idx), Some(keep)) => Some(Written {
                            pack,
                            idx,
                            keep: Keep::guard(keep),
                        }),
                        _ => None,
                    };
                    if let Err(e) = check_listed(local_idx.as_deref(), &info, &listed, &repo_name) {
                        if let Some(new) = &new {
                            new.remove();
                        }
                        return Err(e);
                    }
                    if settings.verbosity >= 2 {
                        eprintln!(
                            "hypha: fetched {} ({} bytes, indexed by {}) from {repo_name}",
                            info.name,
                            info.pack_size,
                            pack::indexer_name(largest_entry)
                        );
                    }
                    Ok::<_, Error>(Some(Downloaded {
                        name: info.name,
                        new,
                        covers,
                    }))
                }
            })
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await;
    if results.iter().any(|r| matches!(r, Ok(Some(_)))) {
        bar.finish();
    }
    let mut first_error = None;
    for result in results {
        match result {
            Ok(None) => {}
            Ok(Some(done)) => {
                got.taken.insert(done.name);
                got.covered.extend(done.covers);
                written.extend(done.new);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What the server's idx of a pack says.
struct Listed {
    /// The object ids, sorted.
    ids: Vec<[u8; 20]>,
    /// The largest entry's size in the pack: picks the indexer (a hint; the pack is verified
    /// whatever the idx claims).
    largest_entry: u64,
}

/// What the server's idx of `info` lists; `None` when the listing gave no URL (a pack already
/// fetched from this remote).
async fn listed_ids(client: &Client, info: &PackInfo) -> Result<Option<Listed>, Error> {
    let repo_name = client.remote().display_name();
    let Some(url) = info.idx_url.as_deref() else {
        return Ok(None);
    };
    let what = format!("index of {} of '{repo_name}'", info.name);
    let url = std::sync::Mutex::new(url.to_owned());
    let bytes = client::with_retries(|| async {
        let mut current = url.lock().map(|u| u.clone()).unwrap_or_default();
        let stream = get_renewing(client, &info.name, true, &mut current, &what).await?;
        if let Ok(mut slot) = url.lock() {
            *slot = current;
        }
        let chunks: Vec<bytes::Bytes> =
            stream
                .try_collect()
                .await
                .map_err(|source| client::Error::Interrupted {
                    what: what.clone(),
                    source,
                })?;
        Ok(chunks.concat())
    })
    .await?;
    let unreadable = |source| Error::Idx {
        pack: info.name.clone(),
        repo: repo_name.clone(),
        source,
    };
    let ids = pack::idx_file::object_ids(&bytes, &info.name).map_err(unreadable)?;
    let largest_entry =
        pack::idx_file::largest_entry(&bytes, &info.name, info.pack_size).map_err(unreadable)?;
    Ok(Some(Listed { ids, largest_entry }))
}

/// Whether any of `ids` is missing locally.
async fn lacks_any(git_dir: &Path, ids: &[[u8; 20]]) -> Result<bool, Error> {
    let git_dir = git_dir.to_owned();
    let ids = ids.to_vec();
    tokio::task::spawn_blocking(move || {
        let repo = open(&git_dir)?;
        Ok(ids
            .iter()
            .any(|id| !repo.has_object(gix::ObjectId::from_bytes_or_panic(id))))
    })
    .await?
}

/// The pack as received must hold exactly the objects the server's idx names: ids are
/// computed from content, so this catches an object whose content does not hash to its
/// name, and an idx that belongs to another pack.
fn check_listed(
    local_idx: Option<&Path>,
    info: &PackInfo,
    listed: &[[u8; 20]],
    repo_name: &str,
) -> Result<(), Error> {
    let local = local_idx
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| pack::idx_file::object_ids(&bytes, &info.name).ok())
        .unwrap_or_default();
    if local == listed {
        return Ok(());
    }
    // Both lists are sorted; name the first id that only one of them has.
    let odd = listed
        .iter()
        .find(|id| local.binary_search(id).is_err())
        .or_else(|| local.iter().find(|id| listed.binary_search(id).is_err()))
        .map(hex::encode)
        .unwrap_or_else(|| "count".to_owned());
    Err(Error::Mismatch {
        pack: info.name.clone(),
        repo: repo_name.to_owned(),
        oid: odd,
    })
}

/// Stream one pack into the indexer (gix, or `git index-pack` for packs with an entry over
/// 16 MiB: see `pack::receive_git`); retried whole on a transient failure.
async fn download_one(
    client: &Client,
    pack_dir: &Path,
    info: &PackInfo,
    largest_entry: u64,
    repo_name: &str,
    bar: &Bar,
) -> Result<Option<pack::Indexed>, Error> {
    let Some(mut url) = info.pack_url.clone() else {
        return Ok(None);
    };
    let what = format!("pack {} of '{repo_name}'", info.name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stream = get_renewing(client, &info.name, false, &mut url, &what).await?;
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
            pack::receive_stream(&mut input, &pack_dir, &name, largest_entry, &interrupt)
        })
        .await?;
        match result {
            Ok(indexed) => return Ok(Some(indexed)),
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

/// Start a `GET` of `url` (the pack `name`, or its idx with `idx`), retrying transient
/// failures; when the store refuses the URL (403: expired), ask `packs` for a fresh one, keep
/// it in `url` and carry on. A dead URL is never tried twice.
async fn get_renewing(
    client: &Client,
    name: &str,
    idx: bool,
    url: &mut String,
    what: &str,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>, client::Error> {
    let mut renewed = 0;
    loop {
        let attempt =
            client::with_retries(|| client::download_stream(client.http(), url, what)).await;
        match attempt {
            Err(e) if e.is_refused_url() && renewed < client::MAX_FRESH_URLS => {
                renewed += 1;
                let listing: PacksResponse =
                    client.call(Route::Packs, &PacksRequest::default()).await?;
                let fresh = listing
                    .packs
                    .into_iter()
                    .find(|p| p.name == name)
                    .and_then(|p| if idx { p.idx_url } else { p.pack_url });
                match fresh {
                    Some(fresh) => *url = fresh,
                    // The pack is no longer listed (retired by gc): the refusal stands.
                    None => return Err(e),
                }
            }
            other => return other,
        }
    }
}
