//! Hypha's lease, asked of the plugin (docs/design.md §9, §11): in plugin mode the automatic
//! compaction ([`super::autogc`]) runs here, in the child, as in `git hypha serve`; only its
//! last step, retiring merged packs, must run under the lease in Hypha's Redis that the
//! children of several Hypha workers share, which this process cannot take.
//!
//! So the child asks: [`Leases::hold`] queues an ask; the plugin long-polls
//! `GET /_plugin/leases` for asks, takes the lease for each and says so with
//! `POST /_plugin/leases/{id}` (`{"held": true}`), a request this side answers only when the
//! holder ([`Held`]) is dropped; the plugin then ends the lease. A plugin that cannot take the
//! lease says `{"held": false, "detail": ...}`, and the compaction gives up (the next push
//! tries again). The plugin so keeps no schedule of its own: what is due, when, and how often
//! is decided here. Standalone (`git hypha serve`) the repository lock is the only lock and
//! [`Leases`] is not used.
//!
//! Only the plugin's key reaches these routes; an ask nobody takes within [`ASK_TIMEOUT`]
//! fails (an older plugin that does not poll), and a holder is released at the latest after
//! [`HOLD_MAX`], so no request waits for ever.

use super::credentials::check_plugin_key;
use super::error::ApiError;
use super::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How long an ask waits for the plugin to take the lease (the plugin waits up to 30 s for
/// another worker's hold, then says it could not).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a plugin's `POST /_plugin/leases/{id}` is kept waiting: the work under the lease
/// (a compaction's retirement) takes seconds; past this the plugin ends the lease anyway.
pub const HOLD_MAX: Duration = Duration::from_secs(30 * 60);
/// Longest a long poll waits for an ask.
pub const POLL_MAX: Duration = Duration::from_secs(30);
/// Most asks one poll answers (each repository asks at most once at a time).
const ASKS_PER_POLL: usize = 64;

/// An ask, as the plugin reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ask {
    pub id: u64,
    /// `workspace/alias`, for the plugin's messages.
    pub repo: String,
    /// Where Hypha keeps the repository (`{s3 prefix}/{artifact uuid}/.git/`), as the plugin
    /// sent it: the plugin finds its lease from it.
    pub prefix: String,
}

/// `GET /_plugin/leases` answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Asks {
    pub asks: Vec<Ask>,
}

/// `POST /_plugin/leases/{id}` request.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub held: bool,
    #[serde(default)]
    pub detail: String,
}

/// `GET /_plugin/leases` query: how long to wait for an ask, in seconds (at most
/// [`POLL_MAX`]; 0 answers at once).
#[derive(Debug, Deserialize)]
pub struct Poll {
    #[serde(default)]
    pub wait: u64,
}

/// Why a lease was not held.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Hypha plugin did not take the lease of {repo} within {}s", .waited.as_secs())]
    NotTaken { repo: String, waited: Duration },
    #[error("the Hypha plugin could not take the lease of {repo}: {detail}")]
    Refused { repo: String, detail: String },
}

/// The asks of this child. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

impl Default for Leases {
    fn default() -> Leases {
        Leases::new(ASK_TIMEOUT)
    }
}

struct Inner {
    /// How long an ask waits ([`ASK_TIMEOUT`]; shorter in tests).
    ask_timeout: Duration,
    next: AtomicU64,
    /// Asks no poll has handed out yet.
    queued: Mutex<VecDeque<Ask>>,
    /// Every ask not yet answered (queued or handed out), by id.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Grant>>>,
    arrived: Notify,
}

/// The plugin's answer to one ask.
enum Grant {
    /// Held until the sender is dropped (or sends).
    Held(oneshot::Sender<()>),
    Refused(String),
}

/// The lease, held by the plugin until this is dropped.
#[derive(Debug)]
pub struct Held {
    _release: Option<oneshot::Sender<()>>,
}

impl Held {
    /// No lease to hold (standalone).
    pub fn none() -> Held {
        Held { _release: None }
    }
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

impl Leases {
    /// Asks that wait `ask_timeout` for the plugin.
    pub fn new(ask_timeout: Duration) -> Leases {
        Leases {
            inner: Arc::new(Inner {
                ask_timeout,
                next: AtomicU64::new(0),
                queued: Mutex::default(),
                waiting: Mutex::default(),
                arrived: Notify::new(),
            }),
        }
    }

    /// Asks the plugin for the lease of the repository at `prefix` and waits until it holds
    /// it, or refuses, or [`ASK_TIMEOUT`] passes.
    pub async fn hold(&self, repo: &str, prefix: &str) -> Result<Held, Error> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.lock().expect("leases").insert(id, tx);
        self.inner.queued.lock().expect("leases").push_back(Ask {
            id,
            repo: repo.to_owned(),
            prefix: prefix.to_owned(),
        });
        self.inner.arrived.notify_waiters();
        let answer = tokio::time::timeout(self.inner.ask_timeout, rx).await;
        // Whatever happened, the ask is no longer anyone's to answer.
        self.inner.waiting.lock().expect("leases").remove(&id);
        self.inner
            .queued
            .lock()
            .expect("leases")
            .retain(|a| a.id != id);
        match answer {
            Ok(Ok(Grant::Held(release))) => Ok(Held {
                _release: Some(release),
            }),
            Ok(Ok(Grant::Refused(detail))) => Err(Error::Refused {
                repo: repo.to_owned(),
                detail,
            }),
            Ok(Err(_)) | Err(_) => Err(Error::NotTaken {
                repo: repo.to_owned(),
                waited: self.inner.ask_timeout,
            }),
        }
    }

    /// The asks queued now, or the first ones to come within `wait`.
    async fn poll(&self, wait: Duration) -> Vec<Ask> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so that an ask queued in between still wakes us.
            let arrived = self.inner.arrived.notified();
            {
                let mut queued = self.inner.queued.lock().expect("leases");
                if !queued.is_empty() {
                    let n = queued.len().min(ASKS_PER_POLL);
                    return queued.drain(..n).collect();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// The plugin's answer to ask `id`: when held, returns once the holder is done with it.
    /// `false` when no ask `id` waits (it timed out, or was answered).
    async fn answer(&self, id: u64, answer: Answer) -> bool {
        let Some(tx) = self.inner.waiting.lock().expect("leases").remove(&id) else {
            return false;
        };
        if !answer.held {
            let detail = crate::storage::shorten(&answer.detail);
            return tx.send(Grant::Refused(detail)).is_ok();
        }
        let (release, released) = oneshot::channel();
        if tx.send(Grant::Held(release)).is_err() {
            return false; // the asker gave up meanwhile
        }
        // Dropped or sent: either way the holder is done.
        let _ = tokio::time::timeout(HOLD_MAX, released).await;
        true
    }
}

/// Only the plugin, with its key, reaches the lease routes; anyone else finds nothing.
fn plugin_only(state: &AppState, headers: &HeaderMap) -> Result<Leases, ApiError> {
    let not_found = || ApiError::not_found("no such route");
    let (Some(key), Some(leases)) = (&state.plugin_key, &state.leases) else {
        return Err(not_found());
    };
    check_plugin_key(key, headers)?;
    Ok(leases.clone())
}

/// `GET /_plugin/leases?wait=SECONDS`: the asks waiting for the lease.
pub async fn poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Poll>,
) -> Response {
    match plugin_only(&state, &headers) {
        Ok(leases) => {
            let wait = Duration::from_secs(q.wait).min(POLL_MAX);
            Json(Asks {
                asks: leases.poll(wait).await,
            })
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /_plugin/leases/{id}`: the plugin holds the lease (answered when the work under it
/// is done) or could not take it. 404 when the ask is gone: the plugin ends its lease at once.
pub async fn answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Json(answer): Json<Answer>,
) -> Response {
    let leases = match plugin_only(&state, &headers) {
        Ok(leases) => leases,
        Err(e) => return e.into_response(),
    };
    if leases.answer(id, answer).await {
        Json(serde_json::json!({"done": true})).into_response()
    } else {
        ApiError::not_found(format!("no lease ask {id} is waiting")).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ask_is_polled_held_and_released() {
        let leases = Leases::default();
        let asker = tokio::spawn({
            let leases = leases.clone();
            async move {
                let held = leases.hold("ws/repo", "p/uuid/.git/").await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(held);
            }
        });
        let asks = leases.poll(Duration::from_secs(5)).await;
        assert_eq!(asks.len(), 1);
        assert_eq!(asks[0].repo, "ws/repo");
        assert_eq!(asks[0].prefix, "p/uuid/.git/");
        let held = Answer {
            held: true,
            detail: String::new(),
        };
        // Returns only once the asker dropped its hold.
        assert!(leases.answer(asks[0].id, held).await);
        assert!(asker.is_finished() || asker.await.is_ok());
        // Answered: a second answer finds nothing waiting.
        let again = Answer {
            held: true,
            detail: String::new(),
        };
        assert!(!leases.answer(asks[0].id, again).await);
        assert!(leases.poll(Duration::ZERO).await.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_asker() {
        let leases = Leases::default();
        let asker = tokio::spawn({
            let leases = leases.clone();
            async move { leases.hold("ws/repo", "p/").await }
        });
        let asks = leases.poll(Duration::from_secs(5)).await;
        let no = Answer {
            held: false,
            detail: "ws/repo is being updated; try again".into(),
        };
        assert!(leases.answer(asks[0].id, no).await);
        let err = asker.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("being updated"), "{err}");
    }

    #[tokio::test]
    async fn an_ask_nobody_takes_fails_and_is_gone() {
        let leases = Leases::new(Duration::from_millis(100));
        let err = leases.hold("ws/repo", "p/").await.unwrap_err();
        assert!(matches!(err, Error::NotTaken { .. }), "{err}");
        assert!(leases.poll(Duration::ZERO).await.is_empty());
        let late = Answer {
            held: true,
            detail: String::new(),
        };
        assert!(!leases.answer(0, late).await);
    }

    #[tokio::test]
    async fn a_poll_waits_for_an_ask_or_answers_empty() {
        let leases = Leases::default();
        let started = tokio::time::Instant::now();
        assert!(leases.poll(Duration::from_millis(200)).await.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(200));
        // An ask queued while a poll waits wakes it.
        let poller = tokio::spawn({
            let leases = leases.clone();
            async move { leases.poll(Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asker = tokio::spawn({
            let leases = leases.clone();
            async move { leases.hold("ws/repo", "p/").await.map(drop) }
        });
        let asks = poller.await.unwrap();
        assert_eq!(asks.len(), 1);
        let no = Answer {
            held: false,
            detail: "no".into(),
        };
        assert!(leases.answer(asks[0].id, no).await);
        assert!(asker.await.unwrap().is_err());
    }
}
