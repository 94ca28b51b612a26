//! [`AppState`]: what every handler shares: the store, the token secret and the limits.
//!
//! Owns construction and defaults only; handlers live in `routes` and `store`.

use super::autogc::AutoGc;
use super::health::Readiness;
use super::leases::Leases;
use super::limits::{RateLimits, Settings as LimitSettings};
use super::metrics::Metrics;
use super::quota::{Quotas, Settings as QuotaSettings};
use super::webhook::Webhooks;
use crate::auth;
use crate::repo::upload::MultipartPolicy;
use crate::repo::Repository;
use crate::repo::Store;
use crate::storage::{Backend, LocalDisk, Metered};
use std::sync::Arc;
use std::time::Duration;

/// Lifetime of presigned URLs handed out.
pub const DEFAULT_PRESIGN_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// Largest object accepted by one presigned `PUT`: S3's single-PUT limit.
pub const DEFAULT_MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// A retired pack outlives every URL to it handed out before it was retired, plus a margin
/// for a download that started just before the URL expired.
pub fn default_gc_grace(presign_expires_in: Duration) -> Duration {
    presign_expires_in + Duration::from_secs(600)
}

/// Shared state of the router. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    /// Set when the backend is local disk: the server then answers its presigned URLs.
    pub(crate) local: Option<LocalDisk>,
    pub(crate) jwt_secret: Arc<[u8]>,
    pub(crate) validation: auth::Validation,
    pub(crate) presign_expires_in: Duration,
    pub(crate) max_single_put: u64,
    /// How long packs retired by compaction stay readable before they are deleted.
    pub(crate) gc_grace: Duration,
    /// Compacts repositories with too many packs after a push; `None` = off.
    pub(crate) auto_gc: Option<AutoGc>,
    /// Plugin mode (`serve --plugin`): the key every API request must carry; tokens are then
    /// ignored (see `credentials`).
    pub(crate) plugin_key: Option<Arc<[u8]>>,
    /// Plugin mode: the asks for Hypha's lease the plugin polls ([`Leases`]).
    pub(crate) leases: Option<Leases>,
    /// Push events to the repositories' webhooks; `None` = no deliveries (router tests).
    pub(crate) webhooks: Option<Webhooks>,
    /// Whether thin uploads are completed here (`fix-thin`); off = clients send full packs.
    pub(crate) thin_packs: bool,
    /// Largest pack (with its idx) `update` takes inline, and the most a `refs` answer
    /// carries of packs to a clone (`inline_listing`); 0 = none.
    pub(crate) inline_max: u64,
    /// Repositories that were handed upload URLs since their last sweep (by name), for the
    /// timer that removes abandoned uploads ([`crate::server::sweep_staged`]).
    pub(crate) staged: Arc<std::sync::Mutex<std::collections::BTreeMap<String, Repository>>>,
    /// The server's public URL when the operator gave one (`--public-url`): links the server
    /// hands out (LFS verify) are built on it, never on a request's `Host`.
    pub(crate) public_url: Option<String>,
    /// What this server counts (`/metrics`); every store request goes through it.
    pub(crate) metrics: Metrics,
    /// The last readiness probe (`/readyz`).
    pub(crate) readiness: Arc<Readiness>,
    /// Request rate limits of the API and LFS routes; `None` = none (the default).
    pub(crate) limits: Option<Arc<RateLimits>>,
    /// Per-workspace quotas and their ledger; `None` = none (the default).
    pub(crate) quotas: Option<Arc<Quotas>>,
}

// The secret must never reach a log.
impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("presign_expires_in", &self.presign_expires_in)
            .field("max_single_put", &self.max_single_put)
            .field("auto_gc", &self.auto_gc)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over any backend (S3 later); presigned URLs point wherever the backend says.
    pub fn new(backend: Arc<dyn Backend>, jwt_secret: &[u8]) -> AppState {
        AppState::metered(backend, false, jwt_secret)
    }

    /// Every request to `backend` counted in the state's [`Metrics`]; `batched_reads` when
    /// the backend reads many objects its own way ([`Metered::new`]).
    fn metered(backend: Arc<dyn Backend>, batched_reads: bool, jwt_secret: &[u8]) -> AppState {
        let metrics = Metrics::new();
        let backend = Metered::new(backend, Arc::new(metrics.clone()), batched_reads);
        AppState {
            store: Store::new(Arc::new(backend)),
            local: None,
            jwt_secret: jwt_secret.into(),
            validation: auth::Validation::default(),
            presign_expires_in: DEFAULT_PRESIGN_EXPIRES_IN,
            max_single_put: DEFAULT_MAX_SINGLE_PUT,
            thin_packs: true,
            inline_max: super::inline::DEFAULT_INLINE_MAX,
            gc_grace: default_gc_grace(DEFAULT_PRESIGN_EXPIRES_IN),
            auto_gc: None,
            plugin_key: None,
            leases: None,
            webhooks: None,
            staged: Default::default(),
            public_url: None,
            metrics,
            readiness: Default::default(),
            limits: None,
            quotas: None,
        }
    }

    /// State over a local-disk store; the router then also serves its `/_store` URLs.
    pub fn with_local_disk(disk: LocalDisk, jwt_secret: &[u8]) -> AppState {
        let mut state = AppState::metered(Arc::new(disk.clone()), true, jwt_secret);
        state.local = Some(disk);
        state
    }

    /// Issuer and audience tokens must carry (Hypha's by default).
    pub fn validation(mut self, validation: auth::Validation) -> AppState {
        self.validation = validation;
        self
    }

    pub fn presign_expires_in(mut self, expires_in: Duration) -> AppState {
        self.presign_expires_in = expires_in;
        self.gc_grace = self.gc_grace.max(default_gc_grace(expires_in));
        self
    }

    /// The operator's public URL of this server (`--public-url`).
    pub fn public_url(mut self, url: Option<String>) -> AppState {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    /// Limit requests and bytes per token and per address ([`super::limits`]); all zero =
    /// no limits.
    pub fn rate_limits(mut self, settings: LimitSettings) -> AppState {
        self.limits = RateLimits::new(settings, self.local.is_some()).map(Arc::new);
        self
    }

    /// Per-workspace quotas ([`super::quota`]); all zero = none. Pending uploads are
    /// forgotten after the grace period: set that first.
    pub fn quotas(mut self, settings: QuotaSettings) -> AppState {
        self.quotas = Quotas::new(settings, self.gc_grace).map(Arc::new);
        self
    }

    /// Remember that `repo` has staged uploads, for the sweep.
    pub(crate) fn note_staged(&self, repo: &Repository) {
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        staged
            .entry(repo.name().to_owned())
            .or_insert_with(|| repo.clone());
    }

    /// The repositories noted since the last call, forgotten here.
    pub(crate) fn take_staged(&self) -> Vec<Repository> {
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *staged).into_values().collect()
    }

    /// Grace period of retired packs; shorter than a URL's lifetime only for tests.
    pub fn gc_grace(mut self, grace: Duration) -> AppState {
        self.gc_grace = grace;
        self
    }

    /// Compact repositories automatically after pushes ([`AutoGc`]); in plugin mode each
    /// retirement waits for Hypha's lease ([`AppState::leases`]).
    pub fn auto_gc(mut self, auto_gc: Option<AutoGc>) -> AppState {
        self.auto_gc = auto_gc;
        self
    }

    /// When packs go up in parts (stores with multipart uploads only).
    pub fn multipart(mut self, policy: MultipartPolicy) -> AppState {
        self.store = self.store.with_multipart(policy);
        self
    }

    /// Serve the Hypha plugin only: requests must carry `key` (see `credentials`).
    pub fn plugin_key(mut self, key: &[u8]) -> AppState {
        self.plugin_key = Some(key.into());
        self.leases = Some(Leases::default());
        self
    }

    /// Deliver push events to webhooks ([`Webhooks`]).
    pub fn webhooks(mut self, webhooks: Webhooks) -> AppState {
        self.webhooks = Some(webhooks);
        self
    }

    /// Complete thin packs (the default), or not: as a server from before thin pushes.
    pub fn thin_packs(mut self, on: bool) -> AppState {
        self.thin_packs = on;
        self
    }

    /// Take packs up to this many bytes (with their idx) inline in `update`, and carry up to
    /// as many bytes of packs in a clone's `refs` answer; 0 answers as a server from before
    /// inline packs.
    pub fn inline_max(mut self, bytes: u64) -> AppState {
        self.inline_max = bytes.min(super::inline::LIMIT);
        self
    }

    pub fn max_single_put(mut self, bytes: u64) -> AppState {
        self.max_single_put = bytes;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What this server counts; `/metrics` answers its [`Metrics::encode`].
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
