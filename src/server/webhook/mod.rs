//! Webhooks after pushes: `update` hands each successful push to [`Webhooks::after_update`],
//! which queues it and returns at once; a background task reads the repository's hooks
//! (`repo::hooks`) and delivers a signed event to each, retrying with backoff, then
//! appends the outcome to the repository's delivery log.
//!
//! Guarantees: a push is never delayed or failed by a hook (a full queue drops the event with
//! a warning rather than wait); requests carry no token and no credential, only the body's
//! signature; a target is called only at public addresses unless the operator allowed its
//! host (`target`), and redirects and proxies are not followed. Does not decide who may
//! manage hooks (`routes`) nor store them (`storage`).
//!
//! - `payload`: the event body (GitHub's push shape), its signature, delivery ids;
//! - `target`: which addresses may be called, checked at add time and at connection time.

pub mod payload;
pub mod target;

pub use payload::{Push, RefChange};
pub use target::Allowed;

use super::metrics::Metrics;
use crate::repo::hooks::{Delivery, Hook};
use crate::repo::Repository;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Pushes waiting for delivery; beyond this, new events are dropped (and logged).
const QUEUE_LEN: usize = 1024;

/// Pushes being delivered at once.
const CONCURRENT_PUSHES: usize = 8;

/// Tries per delivery: the first and three retries (after 1, 2 and 4 backoff units).
pub const ATTEMPTS: u32 = 4;

/// How delivery behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allowed: Allowed,
    /// Wait before the first retry; doubled before each further one.
    pub backoff: Duration,
    /// Longest one attempt may take, connection included.
    pub timeout: Duration,
    /// Where deliveries are counted (`hypha_webhook_deliveries_total`).
    pub metrics: Metrics,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed: Allowed::default(),
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            metrics: Metrics::default(),
        }
    }
}

/// The handle routes use: cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    queue: mpsc::Sender<(Repository, Push)>,
    allowed: Allowed,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

impl Webhooks {
    /// Start the delivery task on the current tokio runtime.
    pub fn start(settings: Settings) -> Result<Webhooks, Error> {
        let client = reqwest::Client::builder()
            .dns_resolver(target::GuardedResolver {
                allowed: settings.allowed.clone(),
            })
            // A redirect or a proxy would connect to an address nobody checked.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("git-hypha-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Client)?;
        let (queue, jobs) = mpsc::channel(QUEUE_LEN);
        let allowed = settings.allowed.clone();
        let metrics = settings.metrics.clone();
        tokio::spawn(run(jobs, client, Arc::new(settings)));
        Ok(Webhooks {
            queue,
            allowed,
            metrics,
        })
    }

    /// Hosts the operator allowed (for the check when a hook is added).
    pub fn allowed(&self) -> &Allowed {
        &self.allowed
    }

    /// Queue `push` for the hooks of `repo`; never waits.
    pub fn after_update(&self, repo: &Repository, push: Push) {
        if push.refs.is_empty() {
            return;
        }
        if let Err(e) = self.queue.try_send((repo.clone(), push)) {
            self.metrics.webhook("dropped");
            tracing::warn!(
                "warning: webhook queue full or closed: push event of {} dropped ({e})",
                repo.name()
            );
        }
    }
}

async fn run(
    mut jobs: mpsc::Receiver<(Repository, Push)>,
    client: reqwest::Client,
    settings: Arc<Settings>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_PUSHES));
    while let Some((repo, push)) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, settings) = (client.clone(), settings.clone());
        tokio::spawn(async move {
            deliver_push(&client, &settings, &repo, &push).await;
            drop(slot);
        });
    }
}

async fn deliver_push(
    client: &reqwest::Client,
    settings: &Settings,
    repo: &Repository,
    push: &Push,
) {
    let hooks = match repo.hooks().await {
        Ok(hooks) => hooks,
        Err(e) => {
            tracing::warn!(
                "warning: cannot read the webhooks of {}: {}",
                repo.name(),
                super::error_chain(&e)
            );
            return;
        }
    };
    let Some(body) = push.body() else { return };
    // Each outcome is logged as soon as it is known: a slow hook does not hold the others' log.
    let deliveries = hooks.iter().map(|hook| async {
        let delivery = deliver(client, settings, hook, &body, push.ref_names()).await;
        let outcome = if delivery.ok { "delivered" } else { "failed" };
        settings.metrics.webhook(outcome);
        record(repo, delivery).await;
    });
    futures_util::future::join_all(deliveries).await;
}

async fn record(repo: &Repository, delivery: Delivery) {
    tracing::info!(
        "webhook {} {} delivery={} attempts={} status={}",
        repo.name(),
        if delivery.ok { "delivered" } else { "failed" },
        delivery.id,
        delivery.attempts,
        delivery
            .status
            .map_or_else(|| "-".to_owned(), |s| s.to_string())
    );
    if let Err(e) = repo.log_delivery(delivery).await {
        tracing::warn!(
            "warning: cannot log a webhook delivery of {}: {}",
            repo.name(),
            super::error_chain(&e)
        );
    }
}

/// One hook, with retries: a 2xx ends it; a connection failure, a timeout, 408, 429 or 5xx
/// is retried; any other answer is final.
async fn deliver(
    client: &reqwest::Client,
    settings: &Settings,
    hook: &Hook,
    body: &[u8],
    refs: Vec<String>,
) -> Delivery {
    let mut delivery = Delivery {
        id: payload::delivery_id(),
        url: hook.url.clone(),
        at: crate::auth::unix_now(),
        refs,
        status: None,
        attempts: 0,
        ok: false,
        error: None,
    };
    // Checked again: the operator may have withdrawn an allowance since the hook was added.
    let url = match target::parse(&hook.url, &settings.allowed) {
        Ok(url) => url,
        Err(e) => {
            delivery.error = Some(super::error_chain(&e));
            return delivery;
        }
    };
    let signature = payload::signature(&hook.secret, body);
    let mut wait = settings.backoff;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        delivery.attempts = attempt;
        delivery.at = crate::auth::unix_now();
        let sent = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Hub-Signature-256", &signature)
            .header("X-Hypha-Event", "push")
            .header("X-GitHub-Event", "push")
            .header("X-Hypha-Delivery", &delivery.id)
            .header("X-GitHub-Delivery", &delivery.id)
            .body(body.to_vec())
            .send()
            .await;
        let retry = match sent {
            Ok(answer) => {
                let status = answer.status();
                delivery.status = Some(status.as_u16());
                if status.is_success() {
                    delivery.ok = true;
                    delivery.error = None;
                    return delivery;
                }
                delivery.error = Some(format!("HTTP status {}", status.as_u16()));
                status.is_server_error() || matches!(status.as_u16(), 408 | 429)
            }
            Err(e) => {
                delivery.status = None;
                delivery.error = Some(super::error_chain(&e.without_url()));
                true
            }
        };
        if !retry {
            break;
        }
    }
    delivery
}
