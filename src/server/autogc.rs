//! Automatic compaction (docs/design.md §9): after an `update` leaves a
//! repository with more than N live packs, or with packs the geometric rule would merge that
//! hold M bytes or more ([`select::due`]), the server merges its small packs in the background
//! ([`Repository::gc_prepare`] in [`Mode::Geometric`], then [`Repository::gc_finish`]).
//!
//! The compaction reads and writes the server's own store: the same engine as a user's
//! `git hypha gc` ([`crate::compaction`]), with the same check that the new pack holds every
//! object it replaces and the same grace period for readers, but no HTTP request to itself.
//! Inside Hypha (`serve --plugin`) the same trigger and schedule run in the child; only the
//! retirement waits for Hypha's lease between workers, which the child asks of the plugin
//! ([`Leases`]): the plugin holds no schedule of its own.
//!
//! Never delays a push: the check and the compaction run in a spawned task. At most one
//! compaction per repository is queued or running, and at most [`MAX_CONCURRENT`] run at once
//! (git's delta search wants the machine's cores). A failure is one log line and changes
//! nothing; the next push tries again.

use super::leases::{Held, Leases};
use super::metrics::Metrics;
use crate::compaction::{select, Mode, Outcome, Prepared};
use crate::repo::Repository;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Live packs a repository may have before a push triggers a compaction.
pub const DEFAULT_AUTO_GC_PACKS: usize = select::AUTO_MAX_PACKS;

/// Bytes of packs the geometric rule would merge at which a push triggers a compaction
/// whatever the pack count ([`select::AUTO_MIN_BYTES`]).
pub const DEFAULT_AUTO_GC_BYTES: u64 = select::AUTO_MIN_BYTES;

/// Compactions running at once, over all repositories.
pub const MAX_CONCURRENT: usize = 1;

/// The trigger. Cheap to clone.
#[derive(Clone)]
pub struct AutoGc {
    inner: Arc<Inner>,
}

struct Inner {
    /// Compact when a repository lists more live packs than this...
    threshold: usize,
    /// ... or when the packs a geometric compaction would merge hold this many bytes (0: off).
    min_bytes: u64,
    /// How long packs a compaction retires stay readable.
    grace: Duration,
    /// Repositories (by where they live in the store) with a compaction queued or running,
    /// and whether a push arrived since it started (then it checks again when done).
    busy: Mutex<HashMap<String, bool>>,
    permits: Semaphore,
}

impl std::fmt::Debug for AutoGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoGc")
            .field("threshold", &self.inner.threshold)
            .field("min_bytes", &self.inner.min_bytes)
            .field("grace", &self.inner.grace)
            .finish_non_exhaustive()
    }
}

impl AutoGc {
    /// A trigger for more than `threshold` live packs or `min_bytes` of packs to merge (0:
    /// count only), retired packs staying readable for `grace`. `None` when `threshold` is 0
    /// (disabled).
    pub fn new(threshold: usize, min_bytes: u64, grace: Duration) -> Option<AutoGc> {
        if threshold == 0 {
            return None;
        }
        Some(AutoGc {
            inner: Arc::new(Inner {
                threshold,
                min_bytes,
                grace,
                busy: Mutex::new(HashMap::new()),
                permits: Semaphore::new(MAX_CONCURRENT),
            }),
        })
    }

    /// Called after a successful `update` that published packs: looks at the repository's
    /// live packs and compacts it if [`select::due`], all in the background. `leases`: inside
    /// Hypha, where the retirement asks for Hypha's lease ([`Leases::hold`]).
    pub(crate) fn after_update(
        &self,
        repo: &Repository,
        metrics: &Metrics,
        leases: Option<&Leases>,
    ) {
        // By place, not name: inside Hypha a name may be given to a new artifact.
        let name = repo.prefix().to_owned();
        {
            let Ok(mut busy) = self.inner.busy.lock() else {
                return;
            };
            if let Some(again) = busy.get_mut(&name) {
                // One is queued or running, and may have listed packs before this push's:
                // it checks once more when it ends, so the last push of a burst is never
                // left uncounted.
                *again = true;
                return;
            }
            busy.insert(name.clone(), false);
        }
        let mut slot = Slot {
            inner: self.inner.clone(),
            name,
            freed: false,
        };
        let (repo, metrics, leases) = (repo.clone(), metrics.clone(), leases.cloned());
        tokio::spawn(async move {
            loop {
                {
                    let Ok(_permit) = slot.inner.permits.acquire().await else {
                        return;
                    };
                    let leases = leases.as_ref();
                    match slot.inner.compact_if_needed(&repo, &metrics, leases).await {
                        Ok(Some(line)) => tracing::info!("auto-gc {}: {line}", repo.name()),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("auto-gc {} failed: {e}", repo.name()),
                    }
                }
                if !slot.take_again() {
                    return;
                }
            }
        });
    }
}

impl Inner {
    /// `Ok(None)` when no compaction is due; otherwise what was done.
    async fn compact_if_needed(
        &self,
        repo: &Repository,
        metrics: &Metrics,
        leases: Option<&Leases>,
    ) -> Result<Option<String>, String> {
        let sizes: Vec<u64> = repo
            .packs()
            .await
            .map_err(|e| chain(&e))?
            .iter()
            .map(|p| p.pack_size)
            .collect();
        let live = sizes.len();
        if !select::due(&sizes, self.threshold, self.min_bytes) {
            return Ok(None);
        }
        // Before the work, so that a reader of the log (the benchmark) knows one is running.
        tracing::info!(
            "auto-gc {}: compacting {live} live packs ({} bytes)",
            repo.name(),
            sizes.iter().sum::<u64>()
        );
        let started = Instant::now();
        let outcome = self.compact(repo, leases).await;
        let (label, bytes) = match &outcome {
            Ok(Outcome::Compacted { pack_size, .. }) => ("merged", *pack_size),
            Ok(Outcome::NothingToDo { .. }) => ("nothing", 0),
            Err(_) => ("failed", 0),
        };
        metrics.compaction("auto", label, started.elapsed(), bytes);
        let outcome = outcome?;
        let ms = started.elapsed().as_millis();
        Ok(Some(match outcome {
            Outcome::NothingToDo { packs, purged } => format!(
                "{live} live packs follow the geometric rule, nothing to merge; \
                 deleted {purged} retired earlier ({packs} packs, {ms}ms)"
            ),
            Outcome::Compacted {
                merged,
                kept,
                pack,
                pack_size,
                retired,
            } => format!(
                "merged {merged} of {live} packs into {pack} ({pack_size} bytes), kept {kept}; \
                 retired {}, deleted {} retired earlier ({ms}ms)",
                retired.retired.len(),
                retired.deleted.len()
            ),
        }))
    }
}

impl Inner {
    /// Merge, then retire what was merged: under Hypha's lease inside Hypha (the merge,
    /// minutes of git on a large repository, runs outside it: a push meanwhile loses
    /// nothing, the merge keeps unreachable objects and the retirement checks coverage).
    async fn compact(&self, repo: &Repository, leases: Option<&Leases>) -> Result<Outcome, String> {
        let prepared = repo
            .gc_prepare(Mode::Geometric)
            .await
            .map_err(|e| chain(&e))?;
        let writes = match &prepared {
            Prepared::Nothing { purge_with, .. } => purge_with.is_some(),
            Prepared::Merged { .. } => true,
        };
        let _held = match leases {
            Some(leases) if writes => leases
                .hold(repo.name(), repo.prefix())
                .await
                .map_err(|e| e.to_string())?,
            _ => Held::none(),
        };
        repo.gc_finish(prepared, self.grace)
            .await
            .map_err(|e| chain(&e))
    }
}

/// Frees the repository's place when its compaction ends, however it ends.
struct Slot {
    inner: Arc<Inner>,
    name: String,
    /// Set once the place is freed: a later push may already hold the next one.
    freed: bool,
}

impl Slot {
    /// Whether a push arrived during the last check (and clears the mark); when not, the
    /// repository's place is freed under the same lock, so no push falls between the two.
    fn take_again(&mut self) -> bool {
        let Ok(mut busy) = self.inner.busy.lock() else {
            return false;
        };
        match busy.get_mut(&self.name) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                busy.remove(&self.name);
                self.freed = true;
                false
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.freed {
            return;
        }
        if let Ok(mut busy) = self.inner.busy.lock() {
            busy.remove(&self.name);
        }
    }
}

/// Whether `git` can be run: compaction packs with it. Checked once at startup.
pub fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One line: the error and its causes (git's stderr may span several).
fn chain(e: &dyn std::error::Error) -> String {
    super::error_chain(e).replace('\n', "; ")
}
