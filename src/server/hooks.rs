//! The `hooks` route (a repository's webhooks: list, add, remove; admin only, checked by
//! `routes`) and the push event `update` hands to [`webhook`] (docs/design.md §13).
//!
//! Owns the request's limits and the check of a new target; storing hooks is `storage`'s,
//! delivering them `webhook`'s.

use super::credentials::Caller;
use super::error::ApiError;
use super::state::AppState;
use super::webhook;
use crate::api;
use crate::auth;
use crate::repo::{self, Repository};
use crate::storage;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longest webhook secret and URL accepted.
const MAX_HOOK_SECRET: usize = 256;
const MAX_HOOK_URL: usize = 2048;

/// The push event of an `update`: the refs it changed (`old` is what each was, since the
/// compare-and-swap succeeded), who pushed, and the push options.
pub(super) fn pushed(
    caller: &Caller,
    workspace: &str,
    alias: &str,
    req: &api::UpdateRequest,
    result: &repo::UpdateOutcome,
) -> webhook::Push {
    let refs = req
        .updates
        .iter()
        .zip(&result.results)
        .filter(|(_, outcome)| outcome.status == repo::RefStatus::Ok)
        .map(|(u, _)| webhook::RefChange {
            name: u.name.clone(),
            before: u.old.clone(),
            after: u.new.clone(),
        })
        .collect();
    webhook::Push {
        workspace: workspace.to_owned(),
        alias: alias.to_owned(),
        pusher: caller.subject().to_owned(),
        refs,
        push_options: req.push_options.clone(),
    }
}

/// `hooks`: list, add (after checking the target) or remove; every answer lists the hooks,
/// never their secrets, and the last deliveries.
pub(super) async fn hooks(
    state: &AppState,
    repo: &Repository,
    req: api::HooksRequest,
) -> Result<Response, ApiError> {
    match req {
        api::HooksRequest::List => {}
        api::HooksRequest::Add { url, secret } => {
            if secret.is_empty() || secret.len() > MAX_HOOK_SECRET {
                return Err(ApiError::invalid(format!(
                    "the webhook secret must be 1 to {MAX_HOOK_SECRET} bytes"
                )));
            }
            if url.len() > MAX_HOOK_URL {
                return Err(ApiError::invalid(format!(
                    "webhook urls are at most {MAX_HOOK_URL} bytes"
                )));
            }
            let allowed = state
                .webhooks
                .as_ref()
                .map(|w| w.allowed().clone())
                .unwrap_or_default();
            webhook::target::check(&url, &allowed)
                .await
                .map_err(|e| ApiError::invalid(super::error_chain(&e)))?;
            repo.add_hook(repo::Hook {
                url,
                secret,
                added_at: auth::unix_now(),
            })
            .await?;
        }
        api::HooksRequest::Remove { url } => repo.remove_hook(&url).await.map_err(|e| {
            let missing = matches!(e, storage::Error::NotFound { .. });
            let err = ApiError::from(e);
            if missing {
                err.with_detail(format!("{}: no webhook {url}", repo.name()))
            } else {
                err
            }
        })?,
    }
    let hooks = repo
        .hook_views()
        .await?
        .into_iter()
        .map(|h| api::HookInfo {
            url: h.url,
            added_at: h.added_at,
        })
        .collect();
    let deliveries = repo
        .hook_log()
        .await?
        .into_iter()
        .map(|d| api::DeliveryInfo {
            id: d.id,
            url: d.url,
            at: d.at,
            refs: d.refs,
            status: d.status,
            attempts: d.attempts,
            ok: d.ok,
            error: d.error,
        })
        .collect();
    Ok(Json(api::HooksResponse { hooks, deliveries }).into_response())
}
