//! Automatic compaction (docs/design.md §9): after an `update` leaves a
//! repository with more than N live packs, or with packs the geometric rule would merge that
//! hold M bytes or more ([`gc::select::due`](crate::gc::select::due)), the server merges its
//! small packs in the background ([`crate::gc`] in
//! [`gc::Mode::Geometric`](crate::gc::Mode::Geometric)).
//!
//! The server acts as a client of its own API, on purpose the one exception to "the server
//! never touches `client`": compaction then takes exactly the path of a user's `git hypha gc`
//! (presigned downloads and uploads, the `compact` route's check that the new pack holds every
//! object it replaces, the grace period), so it is as crash-safe as that and needs no second
//! implementation. It calls its own listening address with a short-lived token it signs for
//! the repository's workspace.
//!
//! Never delays a push: the check and the compaction run in a spawned task. At most one
//! compaction per repository is queued or running, and at most [`MAX_CONCURRENT`] run at once
//! (git's delta search wants the machine's cores). A failure is one log line and changes
//! nothing; the next push tries again.

use crate::auth::{self, Permission};
use crate::client::Client;
use crate::config::{Remote, Token, TokenSource};
use crate::gc;
use crate::progress::Progress;
use crate::repo::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use url::Url;

/// Live packs a repository may have before a push triggers a compaction.
pub const DEFAULT_AUTO_GC_PACKS: usize = gc::select::AUTO_MAX_PACKS;

/// Bytes of packs the geometric rule would merge at which a push triggers a compaction
/// whatever the pack count ([`gc::select::AUTO_MIN_BYTES`]).
pub const DEFAULT_AUTO_GC_BYTES: u64 = gc::select::AUTO_MIN_BYTES;

/// Compactions running at once, over all repositories.
pub const MAX_CONCURRENT: usize = 1;

/// Lifetime of the token a compaction uses: long enough to download, repack and upload a
/// large set of small packs, short enough to be worthless if it ever leaked.
const TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);

/// Subject of the compaction's token, so that its requests are recognisable.
const SUBJECT: &str = "hypha-auto-gc";

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
    /// This server's own address, ending in `/`.
    api_base: Url,
    secret: Arc<[u8]>,
    /// Repositories (`workspace/alias`) with a compaction queued or running, and whether a
    /// push arrived since it started (then it checks again when done).
    busy: Mutex<HashMap<String, bool>>,
    permits: Semaphore,
}

impl std::fmt::Debug for AutoGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoGc")
            .field("threshold", &self.inner.threshold)
            .field("min_bytes", &self.inner.min_bytes)
            .field("api_base", &self.inner.api_base.as_str())
            .finish_non_exhaustive()
    }
}

impl AutoGc {
    /// A trigger for more than `threshold` live packs or `min_bytes` of packs to merge (0:
    /// count only), compacting through the API at `api_base` with tokens signed by `secret`.
    /// `None` when `threshold` is 0 (disabled).
    pub fn new(threshold: usize, min_bytes: u64, api_base: Url, secret: &[u8]) -> Option<AutoGc> {
        if threshold == 0 {
            return None;
        }
        Some(AutoGc {
            inner: Arc::new(Inner {
                threshold,
                min_bytes,
                api_base,
                secret: secret.into(),
                busy: Mutex::new(HashMap::new()),
                permits: Semaphore::new(MAX_CONCURRENT),
            }),
        })
    }

    /// Called after a successful `update` that published packs: looks at the repository's
    /// live packs and compacts it if [`gc::select::due`], all in the background.
    pub(crate) fn after_update(&self, store: &Store, workspace: &str, alias: &str) {
        let name = format!("{workspace}/{alias}");
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
        let store = store.clone();
        let (workspace, alias) = (workspace.to_owned(), alias.to_owned());
        tokio::spawn(async move {
            loop {
                {
                    let Ok(_permit) = slot.inner.permits.acquire().await else {
                        return;
                    };
                    match slot
                        .inner
                        .compact_if_needed(&store, &workspace, &alias)
                        .await
                    {
                        Ok(Some(line)) => tracing::info!("auto-gc {}: {line}", slot.name),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("auto-gc {} failed: {e}", slot.name),
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
        store: &Store,
        workspace: &str,
        alias: &str,
    ) -> Result<Option<String>, String> {
        let repo = store.repo(workspace, alias).map_err(|e| chain(&e))?;
        let sizes: Vec<u64> = repo
            .packs()
            .await
            .map_err(|e| chain(&e))?
            .iter()
            .map(|p| p.pack_size)
            .collect();
        let live = sizes.len();
        if !gc::select::due(&sizes, self.threshold, self.min_bytes) {
            return Ok(None);
        }
        // Before the work, so that a reader of the log (the benchmark) knows one is running.
        tracing::info!(
            "auto-gc {workspace}/{alias}: compacting {live} live packs ({} bytes)",
            sizes.iter().sum::<u64>()
        );
        let started = Instant::now();
        let token = auth::mint(
            &self.secret,
            SUBJECT,
            &[(workspace.to_owned(), Permission::ReadWrite)],
            TOKEN_TTL,
        );
        let remote = Remote {
            server: self.api_base.clone(),
            workspace: workspace.to_owned(),
            alias: alias.to_owned(),
        };
        let client = Client::new(
            remote,
            Some(Token {
                secret: token,
                source: TokenSource::Environment,
            }),
        )
        .map_err(|e| chain(&e))?;
        let outcome = gc::run(&client, gc::Mode::Geometric, Progress::hidden())
            .await
            .map_err(|e| chain(&e))?;
        let ms = started.elapsed().as_millis();
        Ok(Some(match outcome {
            gc::Outcome::NothingToDo { packs, purged } => format!(
                "{live} live packs follow the geometric rule, nothing to merge; \
                 deleted {purged} retired earlier ({packs} packs, {ms}ms)"
            ),
            gc::Outcome::Compacted {
                merged,
                kept,
                pack,
                pack_size,
                response,
            } => format!(
                "merged {merged} of {live} packs into {pack} ({pack_size} bytes), kept {kept}; \
                 retired {}, deleted {} retired earlier ({ms}ms)",
                response.retired.len(),
                response.deleted.len()
            ),
        }))
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
