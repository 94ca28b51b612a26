//! `push` batches: pack what the remote lacks, upload it, then one compare-and-swap `update`.
//!
//! git has already checked fast-forwards and leases against the refs we listed; this module
//! turns each `[+]src:dst` into an update whose `old` is exactly that listed value (or the
//! lease), so a concurrent push makes ours fail as `fetch first` / `stale info` instead of
//! overwriting it. Nothing is uploaded for a dry run or a push that only deletes.

use super::local::has_object;
use super::options::PushSettings;
use super::protocol::{PushSpec, PushStatus};
use crate::api::{self, RefStatus, RefUpdate, RefsResponse, Route, UpdateRequest, UpdateResponse};
use crate::client::{self, Client};
use crate::pack;
use crate::progress::Progress;
use std::collections::HashMap;
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
}

/// Name prefix of the temporary directory a push builds its pack in, inside `$GIT_DIR`.
const STAGING_PREFIX: &str = "hypha-push-";

/// What one push line becomes once its source is resolved.
struct Planned {
    dst: String,
    /// `None` deletes.
    new: Option<String>,
    /// The value we compare-and-swap against.
    old: Option<String>,
    /// Whether git sent a lease for this ref (a mismatch is then `stale info`).
    leased: bool,
}

pub async fn run(
    client: &Client,
    git_dir: &Path,
    listed: &RefsResponse,
    specs: &[PushSpec],
    settings: &PushSettings,
) -> Result<Vec<(String, PushStatus)>, Error> {
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
        return Ok(finish(statuses, |_| {
            PushStatus::Error("atomic push failed".into())
        }));
    }
    if planned.is_empty() || settings.dry_run {
        return Ok(finish(statuses, |_| PushStatus::Ok));
    }

    // Objects: reachable from what we push, minus what the remote's tips already reach.
    let tips: Vec<String> = planned.iter().filter_map(|p| p.new.clone()).collect();
    let exclude: Vec<String> = listed
        .refs
        .values()
        .filter(|oid| has_object(&repo, oid))
        .cloned()
        .collect();
    drop(repo);
    let mut packs = Vec::new();
    sweep_stale_staging(git_dir);
    let tmp = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(git_dir)
        .or_else(|_| tempfile::tempdir())
        .map_err(Error::TempDir)?;
    if !tips.is_empty() {
        let (git_dir, out_dir, progress) =
            (git_dir.to_owned(), tmp.path().to_owned(), settings.progress);
        let built = tokio::task::spawn_blocking(move || {
            pack::build(&git_dir, &tips, &exclude, &out_dir, progress)
        })
        .await??;
        if let Some(built) = built {
            match upload(client, &built, settings).await {
                Ok(()) => packs.push(built.name.clone()),
                Err(client::Error::Forbidden { .. }) => {
                    return Ok(finish(statuses, |_| {
                        PushStatus::Error("permission denied".into())
                    }))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let request = UpdateRequest {
        packs,
        updates: planned
            .iter()
            .map(|p| RefUpdate {
                name: p.dst.clone(),
                old: p.old.clone(),
                new: p.new.clone(),
            })
            .collect(),
        atomic: settings.atomic,
        set_head_if_missing: head_for_first_push(listed, &planned),
        push_options: settings.push_options.clone(),
    };
    let response: UpdateResponse = match client.call(Route::Update, &request).await {
        Ok(r) => r,
        Err(client::Error::Forbidden { .. }) => {
            return Ok(finish(statuses, |_| {
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
    if settings.verbosity >= 2 {
        eprintln!(
            "hypha: updated {} ref(s) of {}",
            by_dst.values().filter(|s| **s == PushStatus::Ok).count(),
            client.remote().display_name()
        );
    }
    Ok(finish(statuses, |dst| {
        by_dst
            .remove(dst)
            .unwrap_or_else(|| PushStatus::Error("no result".into()))
    }))
}

/// Fill in the statuses not decided before the update.
fn finish(
    statuses: Vec<(String, Option<PushStatus>)>,
    mut decide: impl FnMut(&str) -> PushStatus,
) -> Vec<(String, PushStatus)> {
    statuses
        .into_iter()
        .map(|(dst, s)| {
            let s = s.unwrap_or_else(|| decide(&dst));
            (dst, s)
        })
        .collect()
}

/// Resolve one push line against the listed refs; `Err` is the status to report.
fn plan(
    repo: &gix::Repository,
    listed: &RefsResponse,
    spec: &PushSpec,
    settings: &PushSettings,
) -> Result<Planned, String> {
    if let Err(why) = api::refname::check(&spec.dst) {
        return Err(why.to_owned());
    }
    let current = listed.refs.get(&spec.dst).cloned();
    let lease = settings.leases.get(&spec.dst);
    if let Some(expected) = lease {
        if *expected != current {
            return Err("stale info".into());
        }
    }
    let new = if spec.is_delete() {
        None
    } else {
        let id = repo
            .rev_parse_single(spec.src.as_str())
            .map_err(|_| format!("src refspec {} does not match any object", spec.src))?;
        Some(id.detach())
    };
    // git hands helpers `fetch first` and `needs force` cases as ordinary push lines
    // (transport-helper.c skips only non-fast-forward, stale and already-exists), so the
    // fast-forward rules are enforced here too, in git's words.
    if let (Some(old), Some(new), false, None) = (&current, new, spec.force, lease) {
        if let Some(why) = fast_forward_refusal(repo, &spec.dst, old, new) {
            return Err(why.to_owned());
        }
    }
    let new = new.map(|id| id.to_string());
    Ok(Planned {
        dst: spec.dst.clone(),
        new,
        old: lease.cloned().unwrap_or(current),
        leased: lease.is_some(),
    })
}

/// Why replacing `old` by `new` without force is refused, as `git push` decides it.
fn fast_forward_refusal(
    repo: &gix::Repository,
    dst: &str,
    old: &str,
    new: gix::ObjectId,
) -> Option<&'static str> {
    if dst.starts_with("refs/tags/") {
        return Some("already exists");
    }
    let Ok(old) = gix::ObjectId::from_hex(old.as_bytes()) else {
        return Some("fetch first");
    };
    if old == new {
        return None;
    }
    if !repo.has_object(old) {
        return Some("fetch first");
    }
    let peel = |id: gix::ObjectId| {
        repo.find_object(id)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id)
    };
    let (Some(old), Some(new)) = (peel(old), peel(new)) else {
        return Some("needs force");
    };
    match repo.merge_base(old, new) {
        Ok(Some(base)) if base.detach() == old => None,
        _ => Some("non-fast forward"),
    }
}

/// A lost compare-and-swap, in git's words so git prints its usual hints.
fn status_of(repo: &gix::Repository, p: &Planned, result: &api::RefResult) -> PushStatus {
    match result.status {
        RefStatus::Ok => PushStatus::Ok,
        // The ref already holds what we push: an `update` retried after a lost answer (a
        // timeout) finds its own first attempt's work. That push did succeed.
        RefStatus::Stale if result.current == p.new => PushStatus::Ok,
        RefStatus::Stale if p.leased => PushStatus::Error("stale info".into()),
        RefStatus::Stale => match result.current.as_deref() {
            Some(oid) if has_object(repo, oid) => PushStatus::Error("non-fast forward".into()),
            _ => PushStatus::Error("fetch first".into()),
        },
        RefStatus::Rejected => PushStatus::Error(
            result
                .detail
                .clone()
                .unwrap_or_else(|| "rejected by the server".into()),
        ),
    }
}

/// On a repository without HEAD, point it at `main` if pushed, else the first branch.
fn head_for_first_push(listed: &RefsResponse, planned: &[Planned]) -> Option<String> {
    if listed.head.is_some() {
        return None;
    }
    let branches: Vec<&str> = planned
        .iter()
        .filter(|p| p.new.is_some() && p.dst.starts_with("refs/heads/"))
        .map(|p| p.dst.as_str())
        .collect();
    branches
        .iter()
        .find(|b| **b == "refs/heads/main")
        .or(branches.first())
        .map(|b| b.to_string())
}

async fn upload(
    client: &Client,
    built: &pack::Built,
    settings: &PushSettings,
) -> Result<(), client::Error> {
    let repo = client.remote().display_name();
    let bar =
        Progress::new(settings.progress).bytes("Uploading pack", built.idx_size + built.pack_size);
    client::upload_pack(
        client,
        client::PackFiles {
            name: &built.name,
            pack_path: &built.pack_path,
            idx_path: &built.idx_path,
            pack_size: built.pack_size,
            idx_size: built.idx_size,
        },
        &bar,
    )
    .await?;
    bar.finish();
    if settings.verbosity >= 2 {
        eprintln!(
            "hypha: uploaded {} ({} bytes) to {repo}",
            built.name, built.pack_size
        );
    }
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
