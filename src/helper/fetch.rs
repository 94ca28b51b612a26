//! `fetch` batches: download the packs that hold what git asked for (docs/design.md §5).
//!
//! A clone takes every pack. An incremental fetch skips packs already seen from this remote
//! (`state`), reads the idx of each unseen pack and downloads only those holding an object we
//! lack; the decisions are [`crate::negotiate::fetch`]'s, the verified downloads
//! [`crate::fetch_packs`]'. This module wires them to the local repository and the listing.
//!
//! Shaped as gitoxide's `gix::remote::fetch`: the caller decides the [`Options`], [`run`]
//! returns an [`Outcome`] saying what it did or an [`Error`] naming what failed, and progress
//! is handed in.

pub use super::options::Shape;
use super::protocol::FetchSpec;
use super::state;
use crate::api::{PackInfo, PacksRequest, PacksResponse, RefsResponse, Route};
use crate::client::{self, Client};
use crate::fetch_packs::{self, Got, Written};
use crate::negotiate::fetch as negotiate;
use crate::negotiate::shallow;
use crate::progress::Progress;
use gix::ObjectId;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Open(#[from] super::local::OpenError),
    #[error(transparent)]
    Packs(#[from] fetch_packs::Error),
    #[error("'{repo}' has no pack holding {oid} ({name})")]
    Missing {
        repo: String,
        oid: String,
        name: String,
    },
    #[error(transparent)]
    Shallow(#[from] crate::fetch_shallow::Error),
    #[error(transparent)]
    Cut(#[from] super::cut::Error),
    #[error(transparent)]
    Conflict(#[from] shallow::Conflict),
    #[error("'{repo}' has no object {oid} ({name}) to fetch shallow")]
    BadWant {
        repo: String,
        oid: String,
        name: String,
    },
    #[error("cannot mark the fetched pack as a promisor pack")]
    Promisor(#[source] std::io::Error),
    #[error("cannot write the shallow file {path}")]
    ShallowFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record fetched packs under {path}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the caller decides about a fetch batch: git's options as the session holds them.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub cloning: bool,
    pub refetch: bool,
    /// How git narrows the batch (depth, filter, ...): any of it makes it a shallow fetch.
    pub shape: Shape,
}

/// What a fetch batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The `.keep` of the pack written, for git to remove once it has written the refs (the
    /// `lock` of the reply).
    pub lock: Option<PathBuf>,
    /// Packs downloaded whole, and their bytes as the listing gave them.
    pub packs: usize,
    pub pack_bytes: u64,
    /// A shallow or partial fetch: what it read by range.
    pub by_range: Option<ByRange>,
}

/// What a shallow or partial fetch read by range into the one pack it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByRange {
    /// Objects in the pack written (0: nothing was missing).
    pub objects: usize,
    /// Bytes read by range from the stored packs.
    pub bytes_read: u64,
    /// Shallow boundaries the repository has now.
    pub boundaries: usize,
}

/// Fetch everything `wants` needs into the repository at `git_dir` (a linked worktree's common
/// directory, `helper::common_dir`), drawing `progress`. `listed` is the listing
/// git chose the wants from (`--shallow-exclude` names refs in it).
///
/// On failure the repository is left as it was: packs this batch wrote are removed again.
pub async fn run(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    listed: &RefsResponse,
    settings: &Options,
    progress: Progress,
) -> Result<Outcome, Error> {
    // Packs, the shallow file and the fetch's state go where git reads objects: a linked
    // worktree's `$GIT_DIR` holds none of them.
    let git_dir = &super::local::common_dir(git_dir);
    let shallow_file = git_dir.join("shallow");
    if settings.shape.depth.is_some()
        || settings.shape.filter.is_some()
        || settings.shape.deepen_since.is_some()
        || !settings.shape.deepen_not.is_empty()
        || shallow_file.exists()
    {
        return fetch_shallow(client, git_dir, wants, settings, listed).await;
    }
    let mut written = Vec::new();
    match fetch_all(
        client,
        git_dir,
        wants,
        settings,
        progress,
        listed,
        &mut written,
    )
    .await
    {
        Ok((packs, pack_bytes)) => {
            // git accepts one `lock` per fetch and removes that .keep itself once refs are
            // written; the other packs' .keep files go now (dropping their guards), since
            // refs pointing at their objects are about to be written by git right after
            // this batch.
            let lock = written.into_iter().next().map(Written::hand_to_git);
            Ok(Outcome {
                lock,
                packs,
                pack_bytes,
                by_range: None,
            })
        }
        Err(e) => {
            for w in &written {
                w.remove();
            }
            Err(e)
        }
    }
}

/// A shallow fetch (`--depth`, `--deepen`, `--unshallow`, `--shallow-since`,
/// `--shallow-exclude`, or any fetch into a shallow repository): range reads of the stored
/// packs, then `$GIT_DIR/shallow` rewritten as fetch-pack does (sorted, under `shallow.lock`,
/// removed when nothing is shallow any more).
async fn fetch_shallow(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    settings: &Options,
    listed: &RefsResponse,
) -> Result<Outcome, Error> {
    let repo_name = client.remote().display_name();
    // Refused before anything is read, as upload-pack refuses the request.
    let cut = super::cut::request(
        settings.shape.deepen_since.as_deref(),
        &settings.shape.deepen_not,
        listed,
        &repo_name,
    )?;
    let deepen = shallow::Deepen::with_cut(
        settings.shape.depth,
        settings.shape.deepen_relative,
        cut.is_some(),
    )?;
    let mut tips = Vec::new();
    for w in wants {
        let Some(id) = crate::negotiate::parse_id(&w.oid) else {
            return Err(Error::BadWant {
                repo: repo_name,
                oid: w.oid.clone(),
                name: w.name.clone(),
            });
        };
        tips.push(id);
    }
    let path = git_dir.join("shallow");
    let old = std::fs::read_to_string(&path)
        .map(|t| shallow::parse(&t))
        .unwrap_or_default();
    let listing: PacksResponse = client.call(Route::Packs, &PacksRequest::default()).await?;
    let repo = super::local::open(git_dir)?;
    let fetched = crate::fetch_shallow::run(
        client,
        git_dir,
        &listing.packs,
        &tips,
        &crate::fetch_shallow::Options {
            deepen,
            old_shallow: &old,
            filter: settings.shape.filter,
            cut: cut.as_ref(),
        },
        &LocalRepo(repo),
    )
    .await?;
    if settings.shape.filter.is_some() || settings.shape.from_promisor {
        if let Some(Err(source)) = fetched.written.as_ref().map(Written::mark_promisor) {
            if let Some(w) = &fetched.written {
                w.remove();
            }
            return Err(Error::Promisor(source));
        }
    }
    if let Err(source) = write_shallow(git_dir, &fetched.shallow) {
        if let Some(w) = &fetched.written {
            w.remove();
        }
        return Err(Error::ShallowFile { path, source });
    }
    Ok(Outcome {
        lock: fetched.written.map(Written::hand_to_git),
        packs: 0,
        pack_bytes: 0,
        by_range: Some(ByRange {
            objects: fetched.objects,
            bytes_read: fetched.bytes_read,
            boundaries: fetched.shallow.len(),
        }),
    })
}

/// The local repository as a shallow fetch asks about it.
struct LocalRepo(gix::Repository);

impl crate::fetch_shallow::Local for LocalRepo {
    fn has(&self, id: &ObjectId) -> bool {
        self.0.has_object(*id)
    }

    fn tree(&self, id: &ObjectId) -> Option<Vec<u8>> {
        let object = self.0.find_object(*id).ok()?;
        (object.kind == gix::object::Kind::Tree).then(|| object.data.clone())
    }

    fn commit(&self, id: &ObjectId) -> Option<Vec<u8>> {
        let id = *id;
        // The header first: a blob the repository has is not inflated to learn its kind.
        if self.0.find_header(id).ok()?.kind() != gix::object::Kind::Commit {
            return None;
        }
        Some(self.0.find_object(id).ok()?.data.clone())
    }
}

/// Replace `$GIT_DIR/shallow` with `ids` (git's own lock file name, then a rename), or
/// remove it when `ids` is empty.
pub(super) fn write_shallow(git_dir: &Path, ids: &BTreeSet<ObjectId>) -> std::io::Result<()> {
    let path = git_dir.join("shallow");
    if ids.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let lock = git_dir.join("shallow.lock");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)?;
    let written = std::io::Write::write_all(&mut file, shallow::format(ids).as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&lock, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&lock);
    }
    written
}

/// Packs downloaded whole, and their bytes.
async fn fetch_all(
    client: &Client,
    git_dir: &Path,
    wants: &[FetchSpec],
    settings: &Options,
    progress: Progress,
    listed: &RefsResponse,
    written: &mut Vec<Written>,
) -> Result<(usize, u64), Error> {
    let repo_name = client.remote().display_name();
    let mut known = if settings.refetch {
        negotiate::Known::none()
    } else {
        state::load(git_dir, client.remote())
    };
    let listing: PacksResponse = match listing_from_refs(listed, &known, settings) {
        Some(listing) => listing,
        None => {
            client
                .call(
                    Route::Packs,
                    &PacksRequest {
                        known: known.names().iter().cloned().collect(),
                    },
                )
                .await?
        }
    };
    // A known pack missing from the listing was merged by a compaction: the unseen packs may
    // hold what we have, and only their idx tells. Otherwise a small unseen pack is new.
    let compacted = known
        .names()
        .iter()
        .any(|name| !listing.packs.iter().any(|p| &p.name == name));
    let unseen: Vec<PackInfo> = listing
        .packs
        .into_iter()
        .filter(|p| !known.contains(&p.name))
        .collect();

    let fresh = settings.cloning || !has_any_pack_or_object(git_dir);
    let take = |_: &PackInfo| fresh;
    // A want a pack brought in needs no lookup afterwards (see `negotiate::fetch`).
    let wanted = negotiate::wanted_ids(wants.iter().map(|w| w.oid.as_str()));
    let lacks_any = lacks_any(git_dir);
    let packs = fetch_packs::Settings {
        progress,
        direct_max: if fresh {
            fetch_packs::TAKE_ALL_DIRECT_MAX
        } else if compacted {
            0
        } else {
            fetch_packs::DIRECT_MAX
        },
        resume_min: fetch_packs::partial::resume_min_from_env(),
        inline_max: if fetch_packs::inline_within(&unseen, client.inline_max()) {
            client.inline_max()
        } else {
            0
        },
    };
    let mut got = Got::default();
    let choice = fetch_packs::Choice {
        packs: &unseen,
        take,
        wanted: &wanted,
        lacks_any: Some(&lacks_any),
    };
    fetch_packs::needed(client, git_dir, choice, packs, written, &mut got).await?;
    known.record(unseen.iter().map(|p| p.name.as_str()));
    // The listed size of every pack that may be taken, for the outcome.
    let mut sizes: HashMap<String, u64> = unseen
        .iter()
        .map(|p| (p.name.clone(), p.pack_size))
        .collect();

    // The known-pack record is a cache, and an idx only a hint; if they hid a pack we need,
    // look at every pack again, and take the unseen ones whose idx claimed nothing new.
    if !missing_wants(git_dir, wants, &got.covered)?.is_empty() {
        let all: PacksResponse = client.call(Route::Packs, &PacksRequest::default()).await?;
        let again: Vec<PackInfo> = all
            .packs
            .into_iter()
            .filter(|p| !got.taken.contains(&p.name))
            .collect();
        let suspect = |p: &PackInfo| unseen.iter().any(|u| u.name == p.name);
        let choice = fetch_packs::Choice {
            packs: &again,
            take: suspect,
            wanted: &wanted,
            lacks_any: Some(&lacks_any),
        };
        let settings = fetch_packs::Settings {
            direct_max: 0,
            ..packs
        };
        fetch_packs::needed(client, git_dir, choice, settings, written, &mut got).await?;
        known.record(again.iter().map(|p| p.name.as_str()));
        sizes.extend(again.iter().map(|p| (p.name.clone(), p.pack_size)));
        if let Some(w) = missing_wants(git_dir, wants, &got.covered)?.first() {
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
    let bytes = got.taken.iter().filter_map(|name| sizes.get(name)).sum();
    Ok((got.taken.len(), bytes))
}

/// The pack listing the `refs` answer carried (the session asked with the packs it knew then),
/// when it serves this fetch: every pack it gave no URL for is known now too (the record only
/// grows within a session), and its URLs are not about to expire. A `--refetch` asks again.
fn listing_from_refs(
    listed: &RefsResponse,
    known: &negotiate::Known,
    settings: &Options,
) -> Option<PacksResponse> {
    let listing = listed.packs.as_ref().filter(|_| !settings.refetch)?;
    let fresh = listing.expires_at > crate::auth::unix_now() + URL_MARGIN_SECS;
    let covered = listing
        .packs
        .iter()
        .all(|p| (p.pack_url.is_some() && p.idx_url.is_some()) || known.contains(&p.name));
    (fresh && covered).then(|| listing.clone())
}

/// URLs that expire within this many seconds are not worth starting a fetch with.
const URL_MARGIN_SECS: u64 = 300;

/// Asks the repository at `git_dir` whether it lacks any of some ids (opened per question,
/// on a blocking thread).
fn lacks_any(git_dir: &Path) -> fetch_packs::LacksAny {
    let git_dir = git_dir.to_owned();
    Arc::new(move |ids| {
        let repo = super::local::open(&git_dir)?;
        Ok(negotiate::lacks_any(ids, |id| repo.has_object(*id)))
    })
}

pub(super) fn has_any_pack_or_object(git_dir: &Path) -> bool {
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

/// The wants still missing; those in `covered` (brought in by a verified pack) are present,
/// and the repository is opened only when some are not.
fn missing_wants<'a>(
    git_dir: &Path,
    wants: &'a [FetchSpec],
    covered: &BTreeSet<ObjectId>,
) -> Result<Vec<&'a FetchSpec>, Error> {
    fn oid(w: &FetchSpec) -> &str {
        &w.oid
    }
    let unsure = negotiate::uncovered(wants, oid, covered);
    if unsure.is_empty() {
        return Ok(unsure);
    }
    let repo = super::local::open(git_dir)?;
    Ok(negotiate::missing(unsure, oid, |id| repo.has_object(id)))
}
