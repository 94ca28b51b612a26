//! `/healthz` and `/readyz` (docs/design.md §19): alive, and able to reach the store.
//!
//! `/healthz` answers 200 whenever the process serves HTTP at all. `/readyz` sends the store
//! one cheap request (a `LIST` of a prefix no repository can have: one request on S3; on
//! local disk a look at the root directory and one directory lookup) and answers 200, or 503
//! with the reason; the answer is
//! kept for [`CACHE_FOR`], and concurrent probes share one request, so a probe every few
//! milliseconds from every load balancer still costs the store one request a second.
//!
//! Owns the probe and its cache; the reason is the store error's chain, which names keys and
//! causes, never credentials or presigned URLs.

use super::error::error_chain;
use super::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::{Duration, Instant};

/// How long one probe's answer stands.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// Longest a probe waits for the store: an endpoint that takes packets and never answers is
/// as unreachable as one that refuses them.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe lists. Workspace names never start with a dot (`names`), so no repository
/// lives here and the listing stays empty.
pub const PROBE_PREFIX: &str = ".hypha-readyz/";

/// The last probe's outcome. Shared by the clones of one [`AppState`].
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

#[derive(serde::Serialize)]
struct Answer {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: 200 `{"ready": true}` when the store answered within the last second,
/// else 503 `{"ready": false, "reason": ...}`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match check(&state).await {
        Ok(()) => Json(Answer {
            ready: true,
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Answer {
                ready: false,
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// The store's reachability, probed at most once per [`CACHE_FOR`].
pub async fn check(state: &AppState) -> Result<(), String> {
    // Held across the probe: a burst of probes waits for one request instead of sending one
    // each.
    let mut last = state.readiness.last.lock().await;
    if let Some((at, outcome)) = last.as_ref() {
        if at.elapsed() < CACHE_FOR {
            return outcome.clone();
        }
    }
    let outcome = match probe(state).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(format!("the store cannot be reached: {reason}")),
        Err(_) => Err(format!(
            "the store did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    };
    state.metrics.set_ready(outcome.is_ok());
    // One line per change, not one per probe.
    let was_ready = last.as_ref().is_none_or(|(_, o)| o.is_ok());
    match &outcome {
        Err(reason) if was_ready => tracing::warn!("warning: not ready: {reason}"),
        Ok(()) if !was_ready => tracing::info!("ready again: the store answers"),
        _ => {}
    }
    *last = Some((Instant::now(), outcome.clone()));
    outcome
}

/// One request to the store. On local disk a missing root lists as empty (a missing
/// directory is a missing key there), so the root is looked at first: a store whose
/// directory is gone or replaced is not reachable, whoever may read it.
async fn probe(state: &AppState) -> Result<Result<(), String>, tokio::time::error::Elapsed> {
    tokio::time::timeout(PROBE_TIMEOUT, async {
        if let Some(disk) = &state.local {
            match tokio::fs::metadata(disk.root()).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err("its root is not a directory".to_owned()),
                Err(e) => return Err(format!("its root cannot be read: {e}")),
            }
        }
        state
            .store
            .backend()
            .list(PROBE_PREFIX)
            .await
            .map(drop)
            .map_err(|e| error_chain(&e))
    })
    .await
}
