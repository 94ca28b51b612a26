//! `push` batches: pack what the remote lacks, upload it, then one compare-and-swap `update`.
//!
//! The decisions (each `[+]src:dst` into an update whose `old` is exactly the listed value or
//! the lease, git's refusals, what the pack leaves out, what the answer means) are
//! [`crate::negotiate::push`]'s; this module wires them to gix, `pack::build` and the client.
//! Nothing is uploaded for a dry run or a push that only deletes.
//!
//! Shaped as gitoxide's operations: the caller decides the [`Options`], [`run`] returns an
//! [`Outcome`] (each ref's status, the pack sent) or an [`Error`] naming what failed, and
//! progress is handed in.

use super::kept_pack;
use super::local::Objects;
use super::protocol::{PushSpec, PushStatus};
use crate::api::{self, RefStatus, RefUpdate, RefsResponse, Route, UpdateRequest, UpdateResponse};
use crate::client::{self, Client};
use crate::negotiate::push::{self, Planned};
use crate::pack;
use crate::progress::Progress;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Open(#[from] super::local::OpenError),
    #[error("cannot build the pack to push")]
    Build(#[from] pack::build::Error),
    #[error("cannot create a temporary directory for the pack")]
    TempDir(#[source] std::io::Error),
    #[error("building the pack failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("server answered update for '{repo}' without a result for {name}")]
    NoResult { repo: String, name: String },
    #[error("cannot read the built pack {path}")]
    ReadPack {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the caller decides about a push batch: git's options as the session holds them.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--dry-run`: decide every ref's status, send nothing.
    pub dry_run: bool,
    /// `--atomic`: every ref or none.
    pub atomic: bool,
    /// `--push-option`s, passed to the server's hooks.
    pub push_options: Vec<String>,
    /// `--force-with-lease`: ref -> expected value (`None` = must not exist).
    pub leases: BTreeMap<String, Option<String>>,
}

/// What a push batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every ref of the batch, in git's order, with what to reply for it.
    pub statuses: Vec<(String, PushStatus)>,
    /// The pack this push sent; `None` when it sent none (a dry run, deletions only, nothing
    /// the remote lacked, or a refusal before any was built).
    pub pack: Option<SentPack>,
}

/// The pack a push sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPack {
    /// The name `update` gave it (for a thin upload, the pack the server completed it into).
    pub name: String,
    /// Bytes of the pack as built here.
    pub size: u64,
    /// Built thin, for the server to complete.
    pub thin: bool,
    /// Carried in the `update` request rather than uploaded through presigned URLs.
    pub inline: bool,
}

/// What `update` is to name: the pack sent, and its bytes when carried inline.
struct Sent {
    pack: SentPack,
    inline: Option<api::InlinePack>,
}

/// Name prefix of the temporary directory a push builds its pack in, inside `$GIT_DIR`.
const STAGING_PREFIX: &str = "hypha-push-";

/// Push `specs` from `git_dir` against the refs git saw (`listed`), as `settings` say, drawing
/// `progress` (git pack-objects' own counters too, when asked for).
pub async fn run(
    client: &Client,
    git_dir: &Path,
    listed: &RefsResponse,
    specs: &[PushSpec],
    settings: &Options,
    progress: Progress,
) -> Result<Outcome, Error> {
    let repo = open(git_dir)?;
    let mut statuses: Vec<(String, Option<PushStatus>)> = Vec::new();
    let mut planned: Vec<Planned> = Vec::new();
    for spec in specs {
        match plan(&repo, listed, spec, settings) {
            Ok(p) => {
                statuses.push((spec.dst.clone(), None));
                planned.push(p);
            }
            Err(why) => statuses.push((spec.dst.clone(), Some(PushStatus::Error(why)))),
        }
    }
    let any_refused = statuses.iter().any(|(_, s)| s.is_some());
    if settings.atomic && any_refused {
        return Ok(finish(statuses, None, |_| {
            PushStatus::Error("atomic push failed".into())
        }));
    }
    if planned.is_empty() || settings.dry_run {
        return Ok(finish(statuses, None, |_| PushStatus::Ok));
    }

    // Objects: reachable from what we push, minus what the remote's tips already reach.
    let tips: Vec<String> = planned.iter().filter_map(|p| p.new.clone()).collect();
    let exclude = push::exclude(listed.refs.values(), &Objects(&repo));
    drop(repo);
    let mut sent = None;
    sweep_stale_staging(git_dir);
    let tmp = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(git_dir)
        .or_else(|_| tempfile::tempdir())
        .map_err(Error::TempDir)?;
    let build = Build {
        git_dir,
        out_dir: tmp.path(),
        tips: &tips,
        exclude: &exclude,
        listed,
        progress,
    };
    if !tips.is_empty() {
        match send(client, &build).await {
            Ok(s) => sent = s,
            Err(Error::Client(client::Error::Forbidden { .. })) => {
                return Ok(finish(statuses, None, |_| {
                    PushStatus::Error("permission denied".into())
                }))
            }
            Err(e) => return Err(e),
        }
    }

    let mut request = UpdateRequest {
        packs: Vec::new(),
        updates: planned
            .iter()
            .map(|p| RefUpdate {
                name: p.dst.clone(),
                old: p.old.clone(),
                new: p.new.clone(),
            })
            .collect(),
        atomic: settings.atomic,
        set_head_if_missing: push::head_for_first_push(listed.head.is_some(), &planned),
        push_options: settings.push_options.clone(),
        inline: Vec::new(),
    };
    let thin_inline = matches!(&sent, Some(Sent { inline: Some(p), .. }) if p.thin);
    let mut pack = name_pack(&mut request, sent);
    let mut answer = client.call(Route::Update, &request).await;
    // The server could not complete the inline thin pack (a base gone since the listing, too
    // dense): send a self-contained one, as after a failed `fix-thin`.
    if let (true, Err(e)) = (thin_inline, &answer) {
        if falls_back(e) && !e.is_transient() {
            note_fallback(client, e);
            request.inline.clear();
            pack = name_pack(&mut request, send_full(client, &build).await?);
            answer = client.call(Route::Update, &request).await;
        }
    }
    let response: UpdateResponse = match answer {
        Ok(r) => r,
        Err(client::Error::Forbidden { .. }) => {
            return Ok(finish(statuses, pack, |_| {
                PushStatus::Error("permission denied".into())
            }))
        }
        Err(e) => return Err(e.into()),
    };
    let results: HashMap<&str, &api::RefResult> = response
        .results
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let repo = open(git_dir)?;
    let mut by_dst: HashMap<String, PushStatus> = HashMap::new();
    for p in &planned {
        let result = results.get(p.dst.as_str()).ok_or_else(|| Error::NoResult {
            repo: client.remote().display_name(),
            name: p.dst.clone(),
        })?;
        by_dst.insert(p.dst.clone(), status_of(&repo, p, result));
    }
    tracing::info!(
        "hypha: updated {} ref(s) of {}",
        by_dst.values().filter(|s| **s == PushStatus::Ok).count(),
        client.remote().display_name()
    );
    Ok(finish(statuses, pack, |dst| {
        by_dst
            .remove(dst)
            .unwrap_or_else(|| PushStatus::Error("no result".into()))
    }))
}

/// Fill in the statuses not decided before the update.
fn finish(
    statuses: Vec<(String, Option<PushStatus>)>,
    pack: Option<SentPack>,
    mut decide: impl FnMut(&str) -> PushStatus,
) -> Outcome {
    let statuses = statuses
        .into_iter()
        .map(|(dst, s)| {
            let s = s.unwrap_or_else(|| decide(&dst));
            (dst, s)
        })
        .collect();
    Outcome { statuses, pack }
}

/// Resolve one push line against the listed refs; `Err` is the status to report.
fn plan(
    repo: &gix::Repository,
    listed: &RefsResponse,
    spec: &PushSpec,
    settings: &Options,
) -> Result<Planned, String> {
    if let Err(why) = api::refname::check(&spec.dst) {
        return Err(why.to_owned());
    }
    let line = push::Line {
        src: &spec.src,
        dst: &spec.dst,
        force: spec.force,
    };
    push::plan(&listed.refs, &settings.leases, line, &Objects(repo))
}

/// A lost compare-and-swap, in git's words so git prints its usual hints.
fn status_of(repo: &gix::Repository, p: &Planned, result: &api::RefResult) -> PushStatus {
    let answer = match result.status {
        RefStatus::Ok => push::Answer::Ok,
        RefStatus::Stale => push::Answer::Stale {
            current: result.current.as_deref(),
        },
        RefStatus::Rejected => push::Answer::Rejected {
            detail: result.detail.as_deref(),
        },
    };
    match push::status(p, answer, &Objects(repo)) {
        Ok(()) => PushStatus::Ok,
        Err(why) => PushStatus::Error(why),
    }
}

/// `update` names the pack of this push: uploaded, or carried in the request.
fn name_pack(request: &mut UpdateRequest, sent: Option<Sent>) -> Option<SentPack> {
    let sent = sent?;
    match sent.inline {
        Some(bytes) => request.inline = vec![bytes],
        None => request.packs = vec![sent.pack.name.clone()],
    }
    Some(sent.pack)
}

/// What a push packs, and where.
struct Build<'a> {
    git_dir: &'a Path,
    out_dir: &'a Path,
    tips: &'a [String],
    exclude: &'a [String],
    listed: &'a RefsResponse,
    progress: Progress,
}

/// Build the pack of this push and upload it, or keep it for the `update` request when the
/// server takes packs that small inline (`inline_max` in its listing: no `uploads`, `PUT`s
/// nor `fix-thin` round trips); `None` when there is nothing to send. To a server that
/// completes thin packs (`thin_packs` in the listing) a thin pack goes: `fix-thin` (or
/// `update`, for an inline one) turns it into a self-contained one; when the server cannot
/// after all (a plugin without the route, a base gone since the listing) the push falls back
/// to a self-contained pack, as for an older server.
async fn send(client: &Client, build: &Build<'_>) -> Result<Option<Sent>, Error> {
    let inputs = kept_pack::Inputs::of(client, build.tips, build.exclude);
    if let Some(kept) = kept_pack::take(build.git_dir, &inputs, build.out_dir) {
        return Ok(Some(upload_or_inline(client, &kept, false, build).await?));
    }
    if build.listed.thin_packs && !build.exclude.is_empty() {
        // A server that indexes inline thin packs itself gets one without the local
        // `index-pack --fix-thin` (the completion's cost, paid twice otherwise).
        let idx_free_max = if build.listed.thin_without_idx {
            build.listed.inline_max
        } else {
            0
        };
        let thin = build
            .run(move |g, t, e, o, p| pack::build_thin(g, t, e, o, p, idx_free_max))
            .await?;
        match thin {
            None => return Ok(None),
            Some(pack::ThinBuilt::SelfContained(built)) => {
                return Ok(Some(upload_or_inline(client, &built, false, build).await?));
            }
            Some(pack::ThinBuilt::ThinWithoutIdx(thin)) => {
                // Built only within `inline_max`, so it always goes inline.
                if let Some(inline) = inline(&thin, true, build.listed)? {
                    return Ok(Some(Sent::inline(&thin, true, inline)));
                }
            }
            Some(pack::ThinBuilt::Thin(thin)) => {
                if let Some(inline) = inline(&thin, true, build.listed)? {
                    return Ok(Some(Sent::inline(&thin, true, inline)));
                }
                match upload_thin(client, &thin, &build.progress).await {
                    Ok(name) => {
                        let pack = SentPack {
                            name,
                            size: thin.pack_size,
                            thin: true,
                            inline: false,
                        };
                        return Ok(Some(Sent { pack, inline: None }));
                    }
                    Err(e) if falls_back(&e) => note_fallback(client, &e),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    send_full(client, build).await
}

/// The server did not complete a thin pack; the push goes again with a self-contained one.
fn note_fallback(client: &Client, e: &client::Error) {
    tracing::info!(
        "hypha: {} did not complete the thin pack ({e}); sending a full pack",
        client.remote().display_name()
    );
}

impl Build<'_> {
    /// Run a pack builder (`pack::build` or `pack::build_thin`: git dir, tips, exclude,
    /// output dir, progress) on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        builder: impl FnOnce(&Path, &[String], &[String], &Path, bool) -> Result<T, pack::build::Error>
            + Send
            + 'static,
    ) -> Result<T, Error> {
        let (g, o) = (self.git_dir.to_owned(), self.out_dir.to_owned());
        let (t, e) = (self.tips.to_vec(), self.exclude.to_vec());
        let progress = self.progress.is_requested();
        Ok(tokio::task::spawn_blocking(move || builder(&g, &t, &e, &o, progress)).await??)
    }
}

/// A self-contained pack of this push, uploaded or kept for inline.
async fn send_full(client: &Client, build: &Build<'_>) -> Result<Option<Sent>, Error> {
    let Some(built) = build.run(pack::build).await? else {
        return Ok(None);
    };
    Ok(Some(upload_or_inline(client, &built, false, build).await?))
}

async fn upload_or_inline(
    client: &Client,
    built: &pack::Built,
    thin: bool,
    build: &Build<'_>,
) -> Result<Sent, Error> {
    if let Some(inline) = inline(built, thin, build.listed)? {
        return Ok(Sent::inline(built, thin, inline));
    }
    // Kept before the upload, so that a push cut by a kill or Ctrl-C leaves it too.
    let inputs = kept_pack::Inputs::of(client, build.tips, build.exclude);
    let kept = (!thin).then(|| kept_pack::keep(build.git_dir, &inputs, built));
    let kept = kept.flatten();
    upload(
        client,
        kept.as_ref().unwrap_or(built),
        thin,
        &build.progress,
    )
    .await?;
    if kept.is_some() {
        kept_pack::discard(build.git_dir);
    }
    let pack = SentPack {
        name: built.name.clone(),
        size: built.pack_size,
        thin,
        inline: false,
    };
    Ok(Sent { pack, inline: None })
}

impl Sent {
    /// `built`, carried in the `update` request as `bytes`.
    fn inline(built: &pack::Built, thin: bool, bytes: api::InlinePack) -> Sent {
        let pack = SentPack {
            name: built.name.clone(),
            size: built.pack_size,
            thin,
            inline: true,
        };
        Sent {
            pack,
            inline: Some(bytes),
        }
    }
}

/// The pack as an inline pack, when the server takes one that large.
fn inline(
    built: &pack::Built,
    thin: bool,
    listed: &RefsResponse,
) -> Result<Option<api::InlinePack>, Error> {
    if listed.inline_max == 0 || built.pack_size.saturating_add(built.idx_size) > listed.inline_max
    {
        return Ok(None);
    }
    use base64::Engine as _;
    let read = |path: &Path| {
        std::fs::read(path)
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .map_err(|source| Error::ReadPack {
                path: path.to_owned(),
                source,
            })
    };
    tracing::info!(
        "hypha: sending {}{} ({} bytes) inline with the update",
        if thin { "thin pack " } else { "" },
        built.name,
        built.pack_size
    );
    Ok(Some(api::InlinePack {
        name: built.name.clone(),
        thin,
        pack: read(&built.pack_path)?,
        // A thin pack built without one ([`pack::ThinBuilt::ThinWithoutIdx`]).
        idx: if built.idx_size == 0 {
            String::new()
        } else {
            read(&built.idx_path)?
        },
    }))
}

/// Whether a failed thin upload is worth sending again as a full pack: the server (or the
/// Hypha plugin in front of it) has no `fix-thin`, lacks a base (changed since listing), or no
/// longer has the thin upload (a `fix-thin` retried after its answer was lost: the first one
/// completed it and deleted it; its pack is swept as an abandoned upload), or kept failing in a
/// way worth retrying (a completion slower than the client's read timeout: a multi-GiB base).
fn falls_back(e: &client::Error) -> bool {
    if e.is_transient() {
        return true;
    }
    match e {
        client::Error::NotFound { .. } => true,
        client::Error::Refused { code, detail, .. } => {
            // git's receive-pack words, which the server uses too (`repo::MISSING_OBJECTS`).
            *code == api::ErrorCode::Invalid
                && (detail.contains("missing necessary objects")
                    || detail.contains("upload it first")
                    || detail.contains(crate::pack::thin::THIN_TOO_DENSE))
        }
        _ => false,
    }
}

/// Upload a thin pack and have the server complete it; the completed pack's name.
async fn upload_thin(
    client: &Client,
    thin: &pack::Built,
    progress: &Progress,
) -> Result<String, client::Error> {
    upload(client, thin, true, progress).await?;
    let done: api::FixThinResponse = client
        .call(
            Route::FixThin,
            &api::FixThinRequest {
                name: thin.name.clone(),
            },
        )
        .await?;
    tracing::info!(
        "hypha: the server completed {} as {} ({} bases appended, {} bytes)",
        thin.name,
        done.name,
        done.appended,
        done.pack_size
    );
    Ok(done.name)
}

async fn upload(
    client: &Client,
    built: &pack::Built,
    thin: bool,
    progress: &Progress,
) -> Result<(), client::Error> {
    let repo = client.remote().display_name();
    let bar = progress.bytes("Uploading pack", built.idx_size + built.pack_size);
    client::upload_pack(
        client,
        client::PackFiles {
            name: &built.name,
            pack_path: &built.pack_path,
            idx_path: &built.idx_path,
            pack_size: built.pack_size,
            idx_size: built.idx_size,
            thin,
            resume: !thin,
        },
        &bar,
    )
    .await?;
    bar.finish();
    tracing::info!(
        "hypha: uploaded {}{} ({} bytes) to {repo}",
        if thin { "thin pack " } else { "" },
        built.name,
        built.pack_size
    );
    Ok(())
}

fn open(git_dir: &Path) -> Result<gix::Repository, Error> {
    Ok(super::local::open(git_dir)?)
}

/// A push killed by SIGKILL (or a signal that ends it before destructors run) leaves its
/// staging directory, a whole pack, in `$GIT_DIR`. Remove those not touched for this long:
/// long enough that no live push could still be reading its pack.
const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(3600);

fn sweep_stale_staging(git_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(git_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_STAGING);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
