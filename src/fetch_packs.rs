//! Packs of a remote into a local repository, each verified against the server's idx: the
//! downloads of a fetch (`helper::fetch`) and of a compaction (`gc`).
//!
//! Downloads run in parallel and stream straight into the indexer (`pack::receive_stream`),
//! which verifies every object and writes `.pack` + `.idx` + `.keep`; nothing unverified
//! lands in the repository, and a pack whose objects differ from what its idx lists is
//! removed again. The bytes move through `client` (renewal and retries are its business);
//! which packs are worth taking is `negotiate::fetch`'s. Never touches refs.
//!
//! A large pack (from [`partial::RESUME_MIN`]) is also saved as it comes
//! ([`partial`]): a download cut by the network, Ctrl-C or a kill is resumed by the next fetch
//! with a range read of the rest, and the indexer still reads (and verifies) the whole pack.

use crate::api::PackInfo;
use crate::client::{self, Client};
use crate::negotiate::fetch as negotiate;
use crate::pack;
use crate::progress::{Bar, Progress};
use futures_util::StreamExt;
use gix::ObjectId;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub mod partial;

/// Packs downloaded at once: enough to hide request latency, few enough for 2 cores.
const PARALLEL_DOWNLOADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The local repository could not answer which objects it has.
    #[error(transparent)]
    Local(LocalError),
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
    /// A large pack's download was cut; the bytes received are kept for the next fetch.
    #[error("download of pack {pack} of '{repo}' was cut after {saved} of {size} bytes; the next fetch resumes it")]
    Cut {
        pack: String,
        repo: String,
        saved: u64,
        size: u64,
        #[source]
        source: pack::receive::Error,
    },
    /// A resumed pack failed to index: the saved part may be what is wrong, so it is gone.
    #[error("pack {pack} of '{repo}' could not be stored (resumed from {saved} saved bytes, now discarded: the next fetch downloads it whole)")]
    Resumed {
        pack: String,
        repo: String,
        saved: u64,
        #[source]
        source: pack::receive::Error,
    },
    /// The file keeping a partial download could not be used.
    #[error("the partial download of pack {pack} is unusable")]
    Partial {
        pack: String,
        #[source]
        source: std::io::Error,
    },
    #[error("indexing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Why the local repository could not be asked (opening it failed).
pub type LocalError = Box<dyn std::error::Error + Send + Sync>;

/// Whether the local repository lacks any of the given ids; runs on a blocking thread.
pub type LacksAny = Arc<dyn Fn(&[ObjectId]) -> Result<bool, LocalError> + Send + Sync>;

/// How much to show the user: the progress handle the binary made, already narrowed by
/// what was asked for. Notes go out as `tracing` events; the binary filters them.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub progress: Progress,
    /// Packs up to this size are downloaded without reading their idx first (0: none);
    /// see [`DIRECT_MAX`].
    pub direct_max: u64,
    /// Packs from this size on are saved as they come and resumed by the next fetch when cut
    /// ([`partial::resume_min_from_env`]; `u64::MAX`: none).
    pub resume_min: u64,
    /// Bytes of packs the listing may carry inline, as the session asked (0: none is used).
    pub inline_max: u64,
}

/// A pack this batch added to the repository (it was not there before).
#[derive(Debug)]
pub struct Written {
    pack: PathBuf,
    idx: PathBuf,
    keep: Keep,
}

impl Written {
    /// A pack the indexer just wrote (`None` when the repository already had it).
    pub fn from_indexed(indexed: pack::Indexed) -> Option<Written> {
        match (indexed.pack_path, indexed.idx_path, indexed.keep_path) {
            (Some(pack), Some(idx), Some(keep)) => Some(Written {
                pack,
                idx,
                keep: Keep::guard(keep),
            }),
            _ => None,
        }
    }

    /// From now on git (or the caller) removes the `.keep`; returns its path.
    pub fn hand_to_git(self) -> PathBuf {
        self.keep.hand_to_git()
    }

    /// Mark the pack as a promisor pack (a partial clone's: objects its objects name may be
    /// missing), as `git index-pack --promisor` does.
    pub fn mark_promisor(&self) -> std::io::Result<()> {
        std::fs::write(self.pack.with_extension("promisor"), b"")
    }

    /// Pack first: a lone `.idx` is ignored by git, a lone `.pack` is not.
    pub fn remove(&self) {
        let promisor = self.pack.with_extension("promisor");
        for path in [&self.pack, &self.idx, &self.keep.path, &promisor] {
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
    covers: Vec<ObjectId>,
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

/// What [`needed`] took: pack names, and the wanted ids those packs hold.
#[derive(Debug, Default)]
pub struct Got {
    pub taken: BTreeSet<String>,
    pub covered: BTreeSet<ObjectId>,
}

/// Download every pack of `packs` into the repository at `git_dir` (verified, with `.keep`
/// files, which are returned). For `git hypha gc`, which merges them all.
pub async fn all(
    client: &Client,
    git_dir: &Path,
    packs: &[PackInfo],
    progress: Progress,
) -> Result<Vec<PathBuf>, Error> {
    // Every pack is taken: an idx read first decides nothing. The packs go into a scratch
    // repository: nothing there for a later run to resume.
    let settings = Settings {
        progress,
        direct_max: TAKE_ALL_DIRECT_MAX,
        resume_min: u64::MAX,
        inline_max: 0,
    };
    let mut written = Vec::new();
    let choice = Choice {
        packs,
        take: |_: &PackInfo| true,
        wanted: &BTreeSet::new(),
        lacks_any: None,
    };
    let result = needed(
        client,
        git_dir,
        choice,
        settings,
        &mut written,
        &mut Got::default(),
    )
    .await;
    match result {
        // The caller owns the .keep files from here on.
        Ok(()) => Ok(written.into_iter().map(Written::hand_to_git).collect()),
        Err(e) => {
            for w in &written {
                w.remove();
            }
            Err(e)
        }
    }
}

/// Which packs of a listing [`needed`] downloads: each that holds something we lack (an id
/// of `wanted`, or one the local store lacks by `lacks_any`; without it, every pack is
/// taken), or that `take` says to take anyway.
pub struct Choice<'a, F: Fn(&PackInfo) -> bool> {
    pub packs: &'a [PackInfo],
    pub take: F,
    pub wanted: &'a BTreeSet<ObjectId>,
    pub lacks_any: Option<&'a LacksAny>,
}

/// Download (in parallel) the packs `choice` takes. Every download is checked against the
/// server's idx. Waits for all downloads even when one fails, so that nothing is still writing
/// when the caller cleans up; each pack written lands in `written`, also on failure, and each
/// pack downloaded in `got`.
pub async fn needed<F: Fn(&PackInfo) -> bool>(
    client: &Client,
    git_dir: &Path,
    choice: Choice<'_, F>,
    settings: Settings,
    written: &mut Vec<Written>,
    got: &mut Got,
) -> Result<(), Error> {
    let Choice {
        packs,
        take,
        wanted,
        lacks_any,
    } = choice;
    let pack_dir = &git_dir.join("objects").join("pack");
    let repo_name = client.remote().display_name();
    let partials = &partial::dir(git_dir);
    if settings.resume_min != u64::MAX {
        partial::prune(partials, std::time::SystemTime::now(), partial::MAX_AGE);
    }
    // One counter for all parallel downloads; its total grows as packs are chosen.
    let bar = settings.progress.bytes("Receiving packs", 0);
    let results: Vec<Result<Option<Downloaded>, Error>> =
        futures_util::stream::iter(packs.iter().cloned())
            .map(|info| {
                let repo_name = repo_name.clone();
                let take = take(&info);
                let bar = bar.clone();
                async move {
                    // A pack the listing carried: verified like a download, from memory.
                    let inline = inline_bytes(&info, settings.inline_max);
                    // A small pack is taken without reading its idx first: a round trip
                    // costs more than its bytes, and the local index says what it held.
                    let (listed, largest_entry) =
                        if inline.is_some() || direct(&info, settings.direct_max) {
                            (None, info.pack_size)
                        } else {
                            let Some(Listed {
                                ids: listed,
                                largest_entry,
                            }) = listed_ids(client, &info).await?
                            else {
                                return Ok(None);
                            };
                            let covers = negotiate::covers(wanted, &listed);
                            if !negotiate::take_without_lookup(take, &covers)
                                && !lacks(lacks_any, &listed).await?
                            {
                                return Ok(None);
                            }
                            (Some(listed), largest_entry)
                        };
                    bar.add_total(info.pack_size);
                    let to = Target {
                        pack_dir,
                        partials: (info.pack_size >= settings.resume_min).then_some(partials),
                    };
                    let carried = inline.is_some();
                    // Taken without waiting for its idx, but over the size whose idx costs
                    // more than its round trip: the idx is read beside the download (which
                    // goes first, onto the warm connection) and checked below all the same.
                    let beside = listed.is_none() && !carried && info.pack_size > DIRECT_MAX;
                    let (indexed, listed) = match inline {
                        Some(bytes) => (
                            Some(index_inline(pack_dir, &info, bytes, &repo_name, &bar).await?),
                            listed,
                        ),
                        None if beside => {
                            let (indexed, read) = tokio::join!(
                                download_one(client, to, &info, largest_entry, &repo_name, &bar),
                                listed_ids(client, &info)
                            );
                            let indexed = indexed?;
                            match read {
                                Ok(read) => (indexed, read.map(|l| l.ids)),
                                Err(e) => {
                                    if let Some(new) = indexed.and_then(Written::from_indexed) {
                                        new.remove();
                                    }
                                    return Err(e);
                                }
                            }
                        }
                        None => (
                            download_one(client, to, &info, largest_entry, &repo_name, &bar)
                                .await?,
                            listed,
                        ),
                    };
                    let Some(indexed) = indexed else {
                        return Ok(None);
                    };
                    // Guard the .keep first: from here on Ctrl-C removes it.
                    let local_idx = indexed.idx_path.clone();
                    let new = Written::from_indexed(indexed);
                    let covers = match &listed {
                        Some(listed) => {
                            if let Err(e) =
                                check_listed(local_idx.as_deref(), &info, listed, &repo_name)
                            {
                                if let Some(new) = &new {
                                    new.remove();
                                }
                                return Err(e);
                            }
                            negotiate::covers(wanted, listed)
                        }
                        None => negotiate::covers(wanted, &local_ids(local_idx.as_deref(), &info)),
                    };
                    tracing::info!(
                        "hypha: fetched {} ({} bytes{}, indexed by {}) from {repo_name}",
                        info.name,
                        info.pack_size,
                        if carried {
                            " carried by the listing"
                        } else {
                            ""
                        },
                        pack::indexer_name(largest_entry)
                    );
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

/// Packs up to this size may be downloaded without reading their idx first (see [`direct`]).
pub const DIRECT_MAX: u64 = 1 << 20;

/// When every pack is taken anyway (a clone, `git hypha gc`), packs up to this size are
/// downloaded without waiting for their idx: it would decide nothing, and the indexer it
/// picks for larger entries (`git index-pack` over [`pack::receive_git::BIG_ENTRY`]) cannot
/// be needed by a pack no larger than that. Over [`DIRECT_MAX`] the idx is still read, beside
/// the download, and checked against what the pack held: the round trip it no longer adds is
/// a tenth of a second far from the server.
pub const TAKE_ALL_DIRECT_MAX: u64 = pack::receive_git::BIG_ENTRY;

/// What a clone asks a `refs` answer to carry inline, in all: the same trade as
/// [`DIRECT_MAX`], a round trip against a MiB.
pub const INLINE_MAX: u64 = DIRECT_MAX;

/// The bytes of `info` carried in the listing itself, when they are what the listing says and
/// within `max` (what the session asked for): the base64 text is checked for the exact length
/// of `pack_size` bytes before it is decoded. `None` (download it by URL) otherwise.
pub fn inline_bytes(info: &PackInfo, max: u64) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = info.inline.as_deref()?;
    let encoded = info.pack_size.div_ceil(3).checked_mul(4)?;
    if info.pack_size > max || text.len() as u64 != encoded {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (bytes.len() as u64 == info.pack_size).then_some(bytes)
}

/// Whether the packs carried inline in `packs` stay within `max` bytes in all; a listing that
/// carries more than was asked is not used inline at all (its URLs are).
pub fn inline_within(packs: &[PackInfo], max: u64) -> bool {
    packs
        .iter()
        .filter(|p| p.inline.is_some())
        .try_fold(0u64, |sum, p| sum.checked_add(p.pack_size))
        .is_some_and(|sum| sum <= max)
}

/// Whether to download `info` straight away: small (at most `max`), so that one round trip
/// for its idx costs more than fetching it whole even when it brings nothing new (a fetch of
/// one commit reads the new pack, not its idx and then the pack). Its objects are known from
/// the local index once it is in; the pack is verified as any other.
fn direct(info: &PackInfo, max: u64) -> bool {
    info.pack_size <= max && info.pack_url.is_some()
}

/// The ids the local index of a pack just received lists (none when it wrote none: an empty
/// pack).
fn local_ids(local_idx: Option<&Path>, info: &PackInfo) -> Vec<ObjectId> {
    local_idx
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| pack::idx_file::object_ids(&bytes, &info.name).ok())
        .unwrap_or_default()
}

/// What the server's idx of a pack says.
struct Listed {
    /// The object ids, sorted.
    ids: Vec<ObjectId>,
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
    let bytes = client::get_whole(
        client,
        &info.name,
        client::Object::Idx,
        url,
        &what,
        pack::idx_file::max_size(info.pack_size),
    )
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

/// Whether any of `ids` is missing locally (without a way to ask: yes).
async fn lacks(lacks_any: Option<&LacksAny>, ids: &[ObjectId]) -> Result<bool, Error> {
    let Some(lacks_any) = lacks_any.cloned() else {
        return Ok(true);
    };
    let ids = ids.to_vec();
    tokio::task::spawn_blocking(move || lacks_any(&ids))
        .await?
        .map_err(Error::Local)
}

/// The pack as received must hold exactly the objects the server's idx names
/// ([`negotiate::first_difference`]).
fn check_listed(
    local_idx: Option<&Path>,
    info: &PackInfo,
    listed: &[ObjectId],
    repo_name: &str,
) -> Result<(), Error> {
    let local = local_ids(local_idx, info);
    let Some(odd) = negotiate::first_difference(&local, listed) else {
        return Ok(());
    };
    Err(Error::Mismatch {
        pack: info.name.clone(),
        repo: repo_name.to_owned(),
        oid: odd,
    })
}

/// Where a download goes: the pack directory, and where to save it as it comes (`None`: a
/// pack too small to be worth resuming).
#[derive(Clone, Copy)]
struct Target<'a> {
    pack_dir: &'a Path,
    partials: Option<&'a Path>,
}

/// Stream one pack into the indexer (gix, or `git index-pack` for packs with an entry over
/// 16 MiB: see `pack::receive_git`); retried whole on a transient failure (`client::get_into`),
/// or resumed ([`download_resuming`]) when it is large.
async fn download_one(
    client: &Client,
    to: Target<'_>,
    info: &PackInfo,
    largest_entry: u64,
    repo_name: &str,
    bar: &Bar,
) -> Result<Option<pack::Indexed>, Error> {
    let Some(url) = info.pack_url.clone() else {
        return Ok(None);
    };
    let what = format!("pack {} of '{repo_name}'", info.name);
    if let Some(dir) = to.partials {
        match partial::Partial::open(dir, &info.name, info.pack_size) {
            Ok(Some(saved)) => {
                let pack = Pack {
                    info,
                    largest_entry,
                    repo_name,
                    what: &what,
                };
                return download_resuming(client, to.pack_dir, pack, url, saved, bar)
                    .await
                    .map(Some);
            }
            // Another fetch is saving this pack: this one downloads it whole.
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "hypha: cannot keep a partial download of {} ({e}); a cut download starts over",
                info.name
            ),
        }
    }
    let (pack_dir, name) = (to.pack_dir.to_owned(), info.name.clone());
    let receive = move |input: &mut dyn std::io::BufRead| {
        let interrupt = Arc::new(AtomicBool::new(false));
        pack::receive_stream(input, &pack_dir, &name, largest_entry, &interrupt)
    };
    // A connection cut mid-pack looks like a truncated pack: `get_into` tries once more
    // before the stored pack is called corrupt.
    match client::get_into::<_, _, Error, _>(client, &info.name, url, &what, bar, receive).await? {
        Ok(indexed) => Ok(Some(indexed)),
        Err(source) => Err(Error::Index {
            pack: info.name.clone(),
            repo: repo_name.to_owned(),
            source,
        }),
    }
}

/// Index a pack the listing carried (its size already checked), as [`download_one`] indexes a
/// stream: the same checks, the same errors.
async fn index_inline(
    pack_dir: &Path,
    info: &PackInfo,
    bytes: Vec<u8>,
    repo_name: &str,
    bar: &Bar,
) -> Result<pack::Indexed, Error> {
    let (dir, name, size) = (pack_dir.to_owned(), info.name.clone(), info.pack_size);
    let result = tokio::task::spawn_blocking(move || {
        let interrupt = Arc::new(AtomicBool::new(false));
        pack::receive_stream(&mut bytes.as_slice(), &dir, &name, size, &interrupt)
    })
    .await?;
    bar.inc(size);
    result.map_err(|source| Error::Index {
        pack: info.name.clone(),
        repo: repo_name.to_owned(),
        source,
    })
}

/// The pack [`download_resuming`] gets, and the words its errors use.
#[derive(Clone, Copy)]
struct Pack<'a> {
    info: &'a PackInfo,
    largest_entry: u64,
    repo_name: &'a str,
    what: &'a str,
}

/// Download a large pack into the indexer, saving it in `saved` as it comes: the bytes saved by
/// an earlier, cut download are read from disk and only the rest from the store (a range
/// read). A cut is retried once in this run, from where it was cut; when that fails too the
/// partial stays for the next fetch ([`Error::Cut`]). A pack the indexer refuses takes its
/// partial with it, and so does success.
async fn download_resuming(
    client: &Client,
    pack_dir: &Path,
    pack: Pack<'_>,
    mut url: String,
    mut partial: partial::Partial,
    bar: &Bar,
) -> Result<pack::Indexed, Error> {
    let Pack {
        info,
        largest_entry,
        repo_name,
        what,
    } = pack;
    let size = info.pack_size;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let saved = partial
            .saved()
            .map_err(|source| partial_error(info, source))?;
        let (start, stream) = if saved >= size {
            (saved, None)
        } else {
            match client::get_from(client, &info.name, &mut url, (saved, size), what).await {
                Ok(stream) => (saved, Some(stream)),
                Err(e @ client::Error::Range { .. }) => {
                    // Say why without the URL (the error never carries it), then start over.
                    tracing::info!("hypha: {e}; downloading {} whole", info.name);
                    partial
                        .reset()
                        .map_err(|source| partial_error(info, source))?;
                    let whole = client::get_from(client, &info.name, &mut url, (0, size), what);
                    (0, Some(whole.await?))
                }
                Err(e) => return Err(e.into()),
            }
        };
        if start > 0 && attempt == 1 {
            tracing::info!("hypha: resuming {} at byte {start} of {size}", info.name);
            bar.inc(start);
        }
        let counted = bar.clone();
        let rest = stream.map(|stream| {
            tokio_util::io::StreamReader::new(futures_util::TryStreamExt::inspect_ok(
                stream,
                move |chunk| counted.inc(chunk.len() as u64),
            ))
        });
        let cut = Arc::new(AtomicBool::new(false));
        let (dir, name, seen_cut) = (pack_dir.to_owned(), info.name.clone(), cut.clone());
        let (back, result) = tokio::task::spawn_blocking(move || {
            let rest: Box<dyn std::io::Read> = match rest {
                Some(rest) => Box::new(tokio_util::io::SyncIoBridge::new(rest)),
                None => Box::new(std::io::empty()),
            };
            let result = partial.reader(start, rest, seen_cut).map(|reader| {
                let mut input = std::io::BufReader::with_capacity(1 << 20, reader);
                let interrupt = Arc::new(AtomicBool::new(false));
                pack::receive_stream(&mut input, &dir, &name, largest_entry, &interrupt)
            });
            (partial, result)
        })
        .await?;
        partial = back;
        let result = result.map_err(|source| partial_error(info, source))?;
        match result {
            Ok(indexed) => {
                partial.remove();
                return Ok(indexed);
            }
            Err(_) if cut.load(Ordering::SeqCst) && attempt < 2 => continue,
            Err(source) if cut.load(Ordering::SeqCst) => {
                return Err(Error::Cut {
                    pack: info.name.clone(),
                    repo: repo_name.to_owned(),
                    saved: partial.saved().unwrap_or(0),
                    size,
                    source,
                })
            }
            Err(source) => {
                partial.remove();
                return Err(if start > 0 {
                    Error::Resumed {
                        pack: info.name.clone(),
                        repo: repo_name.to_owned(),
                        saved: start,
                        source,
                    }
                } else {
                    Error::Index {
                        pack: info.name.clone(),
                        repo: repo_name.to_owned(),
                        source,
                    }
                });
            }
        }
    }
}

fn partial_error(info: &PackInfo, source: std::io::Error) -> Error {
    Error::Partial {
        pack: info.name.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn carried(size: u64, text: &str) -> PackInfo {
        PackInfo {
            name: format!("pack-{}", "a".repeat(40)),
            pack_size: size,
            idx_size: 1,
            pack_url: Some("http://store/p".into()),
            idx_url: Some("http://store/i".into()),
            inline: Some(text.into()),
        }
    }

    /// A listing's pack bytes are used only when the text has exactly the length of the size
    /// the listing gives, decodes, and stays within what was asked; anything else goes by URL.
    #[test]
    fn carried_packs_are_checked_before_they_are_decoded() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let text = b64(b"PACKdata");
        assert_eq!(
            inline_bytes(&carried(8, &text), 8).as_deref(),
            Some(&b"PACKdata"[..])
        );
        assert!(
            inline_bytes(&carried(8, &text), 7).is_none(),
            "over the ask"
        );
        assert!(inline_bytes(&carried(7, &text), 8).is_none(), "other size");
        assert!(inline_bytes(&carried(9, &text), 9).is_none(), "other size");
        let padded_wrong = format!("{}==", &text[..text.len() - 2]);
        assert!(inline_bytes(&carried(8, &padded_wrong), 8).is_none());
        assert!(
            inline_bytes(&carried(8, "%%%%%%%%%%%%"), 8).is_none(),
            "not base64"
        );
        assert!(inline_bytes(&carried(u64::MAX, &text), u64::MAX).is_none());
        let mut none = carried(8, &text);
        none.inline = None;
        assert!(inline_bytes(&none, 8).is_none());

        let two = [carried(8, &text), carried(8, &text)];
        assert!(inline_within(&two, 16));
        assert!(!inline_within(&two, 15), "more than asked in all");
        let huge = [carried(u64::MAX, "x"), carried(2, "x")];
        assert!(!inline_within(&huge, u64::MAX), "a sum that overflows");
    }
}
