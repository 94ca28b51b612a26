//! Per-workspace quotas (`serve --quota-pending-uploads N`, `--quota-pending-bytes BYTES`,
//! `--quota-stored-bytes BYTES`; docs/design.md §20): how many uploads a workspace may have
//! in flight (handed upload URLs, not yet part of a repository), how many bytes they may
//! declare, and how many bytes of packs and LFS objects all its repositories may hold.
//!
//! Owns the ledger and the refusals; the routes ask [`Quotas::admit`] before they hand out
//! upload URLs or take inline packs, and tell it what became of the uploads ([`Quotas::committed`],
//! [`Quotas::renamed`], [`Quotas::dropped`], [`Quotas::deleted`]). Over a quota: 413 with code
//! `quota` and a message that names the quota and the numbers. It is not `busy`: waiting does
//! not help, so no client retries it, and nothing was changed.
//!
//! Pending uploads are this server's own ledger: what it handed URLs for, until `update`
//! commits them, `abort` drops them, or the grace period after which the sweep deletes
//! abandoned uploads has passed. A server restarted forgets its ledger (the uploads it
//! handed out before still count in the repository's own cap, `routes::MAX_STAGED_UPLOADS`).
//!
//! Stored bytes are not listed per request. Each workspace keeps a total computed by one
//! LIST of its prefix (the store pages it) at most every `refresh`, and adjusted between
//! listings by what this server commits (packs of an `update`, LFS objects verified) and
//! deletes (LFS prune). What it can miss until the next listing: writes that did not go
//! through this server (another replica, Hypha's own smart HTTP and LFS endpoints) and the
//! packs a compaction retires (counted until listed again: the total errs high), and the
//! pack the server's own automatic compaction writes (the packs it merges are deleted after
//! the grace period; until then the store holds both and the total counts one). So the
//! total is off by at most what other writers and compaction store in one `refresh` (10
//! minutes by default); for a limit meant to stop a tenant from filling a shared store, not to bill it
//! by the byte, that is enough, and it costs one LIST per workspace per `refresh` instead
//! of one per push.
//!
//! Bounded: at most [`MAX_PENDING`] entries per workspace whatever the quotas say, and at
//! most [`MAX_WORKSPACES`] workspaces remembered (those with nothing pending go first).

use super::error::ApiError;
use super::limits::human_bytes;
use crate::repo::Repository;
use crate::storage::Backend;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries of one workspace's ledger: 64 repositories with their 64 staged uploads each.
pub const MAX_PENDING: usize = 4096;
/// Workspaces remembered at once: about 100 bytes each without pending uploads.
pub const MAX_WORKSPACES: usize = 65_536;
/// How often a workspace's stored bytes are listed again, unless the operator says.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// What the operator asked for (`serve --quota-*`). All zero (the default): no quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Uploads in flight per workspace; 0 = no quota.
    pub pending_uploads: u64,
    /// Bytes those uploads may declare in all; 0 = no quota.
    pub pending_bytes: u64,
    /// Bytes of packs and LFS objects per workspace, with its pending uploads; 0 = no quota.
    pub stored_bytes: u64,
    /// Longest time between two listings of a workspace's stored bytes.
    pub refresh: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            pending_uploads: 0,
            pending_bytes: 0,
            stored_bytes: 0,
            refresh: DEFAULT_REFRESH,
        }
    }
}

impl Settings {
    pub fn is_off(&self) -> bool {
        self.pending_uploads == 0 && self.pending_bytes == 0 && self.stored_bytes == 0
    }
}

/// The quotas of one server and their ledger.
#[derive(Debug)]
pub struct Quotas {
    settings: Settings,
    /// Pending entries older than this are gone: the sweep deletes abandoned uploads then.
    pending_ttl: Duration,
    workspaces: Mutex<HashMap<String, Workspace>>,
}

#[derive(Debug, Default)]
struct Workspace {
    /// (repository prefix, pack name or `lfs:<oid>`) -> declared bytes, handed out at.
    pending: HashMap<(String, String), (u64, Instant)>,
    /// The last listing's total with this server's changes since, and when it was listed.
    stored: Option<(u64, Instant)>,
    /// One listing at a time per workspace; the others wait for its total.
    listing: Arc<tokio::sync::Mutex<()>>,
}

impl Workspace {
    fn pending_bytes(&self) -> u64 {
        self.pending.values().map(|(b, _)| b).sum()
    }
}

/// One upload a request is about to hand out URLs for.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Pack name, or `lfs:<oid>`.
    pub name: String,
    pub bytes: u64,
}

impl Quotas {
    /// `None` when every quota is off.
    pub fn new(settings: Settings, pending_ttl: Duration) -> Option<Quotas> {
        (!settings.is_off()).then(|| Quotas {
            settings,
            pending_ttl,
            workspaces: Mutex::default(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Workspace>> {
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May `repo` (of `workspace`) be handed URLs for `uploads` and take `inline` bytes at
    /// once? Records the uploads when it may, and returns the names it added (for
    /// [`Quotas::dropped`] if the request fails after all); a 413 naming the quota when not.
    /// An upload already pending (URLs asked again) does not count twice.
    pub async fn admit(
        &self,
        workspace: &str,
        repo: &Repository,
        uploads: &[Upload],
        inline: u64,
    ) -> Result<Vec<String>, ApiError> {
        let stored = match self.settings.stored_bytes {
            0 => 0,
            _ => self.stored(workspace, repo).await?,
        };
        let now = Instant::now();
        let mut all = self.lock();
        let ws = self.workspace(&mut all, workspace);
        let ttl = self.pending_ttl;
        ws.pending
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
        let fresh: Vec<&Upload> = uploads
            .iter()
            .filter(|u| {
                !ws.pending
                    .contains_key(&(repo.prefix().to_owned(), u.name.clone()))
            })
            .collect();
        let count = ws.pending.len() as u64;
        let adding = fresh.len() as u64;
        let pending = ws.pending_bytes();
        let new_bytes: u64 = fresh.iter().map(|u| u.bytes).sum();
        let s = &self.settings;
        if s.pending_uploads > 0 && count + adding > s.pending_uploads {
            return Err(ApiError::quota(
                format!(
                    "quota of {} pending uploads for workspace {workspace} reached: {count} \
                     uploads in flight and {adding} more asked; push again once they are \
                     done (abandoned ones are dropped after {} s)",
                    s.pending_uploads,
                    ttl.as_secs()
                ),
                "quota_pending_uploads",
            ));
        }
        if ws.pending.len() + fresh.len() > MAX_PENDING {
            return Err(ApiError::quota(
                format!(
                    "workspace {workspace} has {count} uploads in flight, the most this server \
                     keeps track of ({MAX_PENDING}); push again once they are done"
                ),
                "quota_pending_uploads",
            ));
        }
        if s.pending_bytes > 0 && pending + new_bytes > s.pending_bytes {
            return Err(ApiError::quota(
                format!(
                    "quota of {} of pending uploads for workspace {workspace} reached: {} in \
                     flight and {} more asked",
                    human_bytes(s.pending_bytes),
                    human_bytes(pending),
                    human_bytes(new_bytes)
                ),
                "quota_pending_bytes",
            ));
        }
        if s.stored_bytes > 0 && stored + pending + new_bytes + inline > s.stored_bytes {
            return Err(ApiError::quota(
                format!(
                    "storage quota of {} for workspace {workspace} reached: {} stored, {} in \
                     flight, and this push adds {}; delete repositories or LFS objects, or ask \
                     the operator for more",
                    human_bytes(s.stored_bytes),
                    human_bytes(stored),
                    human_bytes(pending),
                    human_bytes(new_bytes + inline)
                ),
                "quota_stored_bytes",
            ));
        }
        let mut added = Vec::with_capacity(fresh.len());
        for u in fresh {
            ws.pending
                .insert((repo.prefix().to_owned(), u.name.clone()), (u.bytes, now));
            added.push(u.name.clone());
        }
        Ok(added)
    }

    /// `repo` stored what was pending under `names` (an `update` that wrote a ref, an LFS
    /// object verified): counted with the size it was handed out with, or, for what was
    /// never pending here (a thin pack completed inline), the size given; and `inline`
    /// bytes more. (An object stored again, or one handed out before a restart, is given 0:
    /// the next listing counts it.)
    pub fn committed(
        &self,
        workspace: &str,
        repo: &Repository,
        names: &[(String, u64)],
        inline: u64,
    ) {
        let mut all = self.lock();
        let ws = self.workspace(&mut all, workspace);
        let mut added = inline;
        for (name, size) in names {
            let pending = ws.pending.remove(&(repo.prefix().to_owned(), name.clone()));
            added += pending.map_or(*size, |(bytes, _)| bytes);
        }
        if let Some((total, _)) = &mut ws.stored {
            *total += added;
        }
    }

    /// A thin upload was completed into another pack (`fix-thin`): the completed one is
    /// pending in its place, with its own size.
    pub fn renamed(&self, workspace: &str, repo: &Repository, from: &str, to: &str, bytes: u64) {
        let mut all = self.lock();
        let ws = self.workspace(&mut all, workspace);
        let key = |n: &str| (repo.prefix().to_owned(), n.to_owned());
        if let Some((_, at)) = ws.pending.remove(&key(from)) {
            ws.pending.insert(key(to), (bytes, at));
        }
    }

    /// An upload is no longer in flight and stored nothing (aborted, or its content was
    /// wrong and deleted).
    pub fn dropped(&self, workspace: &str, repo: &Repository, name: &str) {
        let mut all = self.lock();
        let ws = self.workspace(&mut all, workspace);
        ws.pending
            .remove(&(repo.prefix().to_owned(), name.to_owned()));
    }

    /// This server deleted `bytes` of stored objects (LFS prune).
    pub fn deleted(&self, workspace: &str, bytes: u64) {
        let mut all = self.lock();
        let ws = self.workspace(&mut all, workspace);
        if let Some((total, _)) = &mut ws.stored {
            *total = total.saturating_sub(bytes);
        }
    }

    /// The ledger entry of `workspace`, made room for when new.
    fn workspace<'a>(
        &self,
        all: &'a mut HashMap<String, Workspace>,
        workspace: &str,
    ) -> &'a mut Workspace {
        if !all.contains_key(workspace) && all.len() >= MAX_WORKSPACES {
            // Workspaces with nothing in flight lose only their total: listed again on use.
            all.retain(|_, ws| !ws.pending.is_empty());
            if all.len() >= MAX_WORKSPACES {
                all.clear();
            }
        }
        all.entry(workspace.to_owned()).or_default()
    }

    /// The stored bytes of `workspace` (which `repo` is in): the cached total, or a new
    /// listing when it is older than `refresh`.
    async fn stored(&self, workspace: &str, repo: &Repository) -> Result<u64, ApiError> {
        let listing = {
            let mut all = self.lock();
            let ws = self.workspace(&mut all, workspace);
            if let Some((total, at)) = ws.stored {
                if at.elapsed() < self.settings.refresh {
                    return Ok(total);
                }
            }
            ws.listing.clone()
        };
        let _one = listing.lock().await;
        // Another request may have listed while this one waited.
        if let Some((total, at)) = self.lock().get(workspace).and_then(|ws| ws.stored) {
            if at.elapsed() < self.settings.refresh {
                return Ok(total);
            }
        }
        let prefix = workspace_prefix(repo.prefix());
        if prefix.is_empty() {
            // A repository at the bucket's top: its workspace's keys cannot be told apart.
            return Err(ApiError::internal(
                format!("cannot count the stored bytes of workspace {workspace} for its quota"),
                &crate::storage::Error::Invalid {
                    detail: format!("repository prefix {:?} names no workspace", repo.prefix()),
                },
            ));
        }
        let started = Instant::now();
        let total = stored_bytes(repo.backend().as_ref(), &prefix)
            .await
            .map_err(|e| {
                ApiError::from(e).with_detail(format!(
                    "cannot count the stored bytes of workspace {workspace} for its quota"
                ))
            })?;
        tracing::info!(
            "quota: workspace {workspace} holds {total} bytes (listed in {} ms)",
            started.elapsed().as_millis()
        );
        let mut all = self.lock();
        self.workspace(&mut all, workspace).stored = Some((total, Instant::now()));
        Ok(total)
    }
}

/// The prefix all repositories of a repository's workspace share: its own prefix without
/// `{alias}/.git/` (standalone: `{ws}/artifacts/`; in Hypha: the workspace's artifact
/// prefix, the artifact named by its id).
fn workspace_prefix(repo_prefix: &str) -> String {
    let dir = repo_prefix.strip_suffix(".git/").unwrap_or(repo_prefix);
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    match dir.rfind('/') {
        Some(i) => dir[..=i].to_owned(),
        None => String::new(),
    }
}

/// Bytes of the packs (with their idx) and LFS objects under `prefix`. A pack still marked as
/// an upload in flight is pending, not stored: the ledger counts it.
async fn stored_bytes(backend: &dyn Backend, prefix: &str) -> Result<u64, crate::storage::Error> {
    let keys = backend.list(prefix).await?;
    let mut marked = std::collections::HashSet::new();
    for meta in &keys {
        if let Some((repo, name)) = meta.key.split_once("/.git/hypha-remote/uploads/") {
            marked.insert((repo, name));
        }
    }
    let mut total = 0u64;
    for meta in &keys {
        if meta.key.contains("/git/lfs/objects/") {
            total = total.saturating_add(meta.size);
        } else if let Some((repo, file)) = meta.key.split_once("/.git/objects/pack/") {
            let name = file
                .strip_suffix(".pack")
                .or_else(|| file.strip_suffix(".idx"));
            if name.is_some_and(|n| !marked.contains(&(repo, n))) {
                total = total.saturating_add(meta.size);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_prefixes() {
        assert_eq!(workspace_prefix("ws/artifacts/repo/.git/"), "ws/artifacts/");
        assert_eq!(
            workspace_prefix("ws-user-1/artifacts/0b1c-uuid/.git/"),
            "ws-user-1/artifacts/"
        );
        assert_eq!(workspace_prefix("uuid/.git/"), "");
    }
}
