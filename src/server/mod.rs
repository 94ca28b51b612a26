//! `git hypha serve`: remote API v1 over HTTP (docs/design.md §4, §7), on the embedded local-disk
//! store or an S3 bucket ([`ServeOptions::s3`]).
//!
//! Owns the HTTP surface: the router ([`router`]), the process around it ([`run`]: bind,
//! announce, serve until SIGINT/SIGTERM), auth, and status codes. Refs and bytes are
//! `repo`'s business over `storage`; tokens are `auth`'s. Never touches `helper`, `client`,
//! `gc` or `fetch_packs`: `autogc` compacts in the store, with the engine `git hypha gc` uses.
//!
//! - `routes`: the API routes; `lfs`: Hypha's Git LFS batch and verify routes; `lfs_parts`:
//!   our transfer's parts and delta routes; `lfs_call`: the request and answer shape those
//!   share; `locks`: the Git LFS locks API; `convert`: API types <-> the store's own types;
//! - `store`: the local store's presigned URLs (`/_store/...`);
//! - `credentials`: `Authorization` -> caller; `error`: every error -> status + JSON;
//! - `log`: one stderr line per request, its id (`X-Request-Id`), its metrics; `state`: [`AppState`];
//! - `metrics`: what the server counts, and `/metrics` on the separate `--metrics-listen`
//!   address; `health`: `/healthz` and `/readyz` (the store reachable);
//! - `limits`: request and byte rate limits per token and per address (429 with
//!   `Retry-After`); `quota`: per-workspace quotas on pending uploads and stored bytes (413);
//! - `hooks`: the `hooks` route and the push event of an `update`;
//! - `autogc`: compaction after pushes leave too many packs; `leases`: in plugin mode, the
//!   plugin holds Hypha's lease while the compaction retires packs;
//! - `webhook`: push events to each repository's webhooks, queued after `update`.
//!
//! Plugin mode ([`ServeOptions::plugin_key`]): the Hypha plugin runs this server as its child
//! and forwards the requests Hypha has checked, so that the repository rules have one
//! implementation. It listens on loopback only, takes no tokens (see `credentials`), prints
//! no admin token, compacts as a standalone server does but retires packs only under Hypha's
//! lease, which it asks of the plugin (`leases`), leaves the bucket's multipart uploads alone
//! (the bucket is Hypha's), and exits when its standard input closes (its parent died).

pub mod autogc;
mod convert;
mod credentials;
mod error;
pub mod health;
mod hooks;
pub mod inline;
mod inline_listing;
pub mod leases;
mod lfs;
mod lfs_call;
mod lfs_parts;
pub mod limits;
mod locks;
mod log;
pub mod metrics;
pub mod quota;
mod routes;
mod state;
mod store;
pub mod webhook;

#[cfg(test)]
mod tests;

use error::error_chain;
pub use error::ApiError;
pub use lfs::body_limit;
pub use log::{is_sane_id, REQUEST_ID};
pub use metrics::Metrics;
pub use state::{AppState, DEFAULT_MAX_SINGLE_PUT, DEFAULT_PRESIGN_EXPIRES_IN};

use crate::api::lfs_routes::LfsRoute;
use crate::auth::{self, Permission};
use crate::repo::upload::MultipartPolicy;
use crate::storage::{self, LocalDisk};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, MethodRouter};
use axum::serve::ListenerExt as _;
use axum::Extension;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest JSON request accepted by the API routes: an `update` of 100,000 refs (about
/// 120 bytes each) fits; anything larger is refused before it is parsed.
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Lifetime of the admin token printed when no secret is configured.
const ADMIN_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What `git hypha serve` needs.
#[derive(Clone)]
pub struct ServeOptions {
    /// Directory of the local-disk store (created if missing).
    pub root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// HS256 secret shared with Hypha (`HYPHA_JWT_SECRET`); `None` = random, and an admin
    /// token is printed.
    pub jwt_secret: Option<String>,
    /// Base URL clients reach this server at, for presigned URLs; `None` = `http://<bound>`.
    pub public_url: Option<String>,
    /// Store repositories in this S3 bucket instead of `root`; presigned URLs then point at
    /// S3 and the `/_store` routes answer 404.
    pub s3: Option<storage::s3::Config>,
    /// How long packs retired by compaction stay readable; `None` = URL lifetime + 10 min.
    pub gc_grace: Option<Duration>,
    /// Lifetime of presigned URLs; `None` = [`DEFAULT_PRESIGN_EXPIRES_IN`].
    pub url_ttl: Option<Duration>,
    /// When packs go up in parts (S3 only).
    pub multipart: MultipartPolicy,
    /// Multipart uploads older than this are aborted (at start, then every
    /// [`STALE_UPLOAD_SWEEP`]); `None` = [`default_stale_upload_age`].
    pub stale_upload_age: Option<Duration>,
    /// Merge a repository's small packs in the background once a push leaves more than
    /// this many live packs; 0 = never ([`autogc::DEFAULT_AUTO_GC_PACKS`]).
    pub auto_gc_packs: usize,
    /// ... or once the packs a geometric merge would take hold this many bytes; 0 = count
    /// only ([`autogc::DEFAULT_AUTO_GC_BYTES`]).
    pub auto_gc_bytes: u64,
    /// Plugin mode: API requests must carry this key; see the module doc.
    pub plugin_key: Option<String>,
    /// Webhook hosts allowed although they resolve to non-public addresses
    /// (`--webhook-allow`).
    pub webhook_allow: Vec<String>,
    /// Complete thin pushes (`fix-thin`); off answers as a server without them.
    pub thin_packs: bool,
    /// Largest pack (with its idx) `update` takes inline, and the most a clone's `refs`
    /// answer carries of packs; 0 answers as a server without inline packs
    /// ([`inline::DEFAULT_INLINE_MAX`]).
    pub inline_max: u64,
    /// Serve `/metrics` (and `/healthz`, `/readyz`) on this second address; `None` = no
    /// metrics endpoint (the API's address never has one: see [`metrics`]).
    pub metrics_listen: Option<SocketAddr>,
    /// Run on an S3 store that ignores conditional writes
    /// ([`storage::s3::UNSAFE_NO_CONDITIONAL_WRITES`]); checked at startup otherwise.
    pub s3_unsafe_no_conditional_writes: bool,
    /// Request and byte rate limits per token and per address ([`limits`]); the default:
    /// none.
    pub rate_limits: limits::Settings,
    /// Per-workspace quotas ([`quota`]); the default: none.
    pub quotas: quota::Settings,
}

/// What [`run`] tells whoever started it, once it listens.
#[derive(Debug, Clone, Copy)]
pub struct Announcement<'a> {
    /// The API's address.
    pub addr: SocketAddr,
    /// The admin token, when no secret was configured.
    pub admin_token: Option<&'a str>,
    /// The metrics address, with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
}

/// How often abandoned multipart uploads are looked for.
pub const STALE_UPLOAD_SWEEP: Duration = Duration::from_secs(3600);

/// Uploads live as long as their client keeps asking for fresh part URLs, so "abandoned"
/// must be well past one URL lifetime: a day, or twice the lifetime if that is longer.
pub fn default_stale_upload_age(url_ttl: Duration) -> Duration {
    (url_ttl * 2 + Duration::from_secs(600)).max(Duration::from_secs(24 * 3600))
}

// The secret must never reach a log.
impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("root", &self.root)
            .field("listen", &self.listen)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public_url", &self.public_url)
            .field("s3", &self.s3)
            .field("gc_grace", &self.gc_grace)
            .field("url_ttl", &self.url_ttl)
            .field("multipart", &self.multipart)
            .field("stale_upload_age", &self.stale_upload_age)
            .field("auto_gc_packs", &self.auto_gc_packs)
            .field("auto_gc_bytes", &self.auto_gc_bytes)
            .field("plugin", &self.plugin_key.is_some())
            .field("webhook_allow", &self.webhook_allow)
            .field("thin_packs", &self.thin_packs)
            .field("inline_max", &self.inline_max)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "s3_unsafe_no_conditional_writes",
                &self.s3_unsafe_no_conditional_writes,
            )
            .field("rate_limits", &self.rate_limits)
            .field("quotas", &self.quotas)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store at {}", root.display())]
    Store {
        root: PathBuf,
        #[source]
        source: storage::Error,
    },
    #[error("cannot use the S3 store")]
    S3(#[source] storage::s3::ConfigError),
    #[error("invalid public url {url:?}")]
    PublicUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot write the startup lines to standard output")]
    Stdout(#[source] std::io::Error),
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
    #[error("cannot listen for metrics on {addr}")]
    MetricsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin mode listens on loopback only, not on {addr}")]
    PluginListen { addr: SocketAddr },
    #[error("cannot start webhook deliveries")]
    Webhooks(#[source] webhook::Error),
}

/// The handler of an LFS route (two routes of one path, `GET` and `POST .../locks`, are
/// merged by the router).
fn lfs_handler(route: LfsRoute) -> MethodRouter<AppState> {
    match route {
        LfsRoute::Batch => post(lfs::batch),
        LfsRoute::Verify => post(lfs::verify),
        LfsRoute::Parts => post(lfs_parts::start),
        LfsRoute::PartsComplete => post(lfs_parts::complete),
        LfsRoute::Delta => post(lfs_parts::delta),
        LfsRoute::DeltaComplete => post(lfs_parts::delta_complete),
        LfsRoute::Lock => post(locks::create),
        LfsRoute::Locks => get(locks::list),
        LfsRoute::LocksVerify => post(locks::verify),
        LfsRoute::Unlock => post(locks::unlock),
    }
}

/// The whole HTTP surface: API routes and, for a local-disk store, `/_store/{key}`.
pub fn router(state: AppState) -> Router {
    // The rate limits guard what callers ask of the API; presigned transfers were handed
    // out by a limited request and expire, and probes must always answer.
    let api = Router::new().route("/{ws}/git/{alias}/remote/v1/{route}", post(routes::api));
    // The LFS routes from the one table the plugin reads too (`api::lfs_routes`).
    let limited = LfsRoute::ALL
        .into_iter()
        .fold(api, |router, route| {
            let path = format!("{}{}", lfs_call::LFS_ENDPOINT, route.path());
            router.route(&path, lfs_handler(route).layer(Extension(route)))
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ));
    Router::new()
        .merge(limited)
        .route("/_store/{*key}", get(store::get).put(store::put))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        // Applies to the JSON routes only: `/_store` PUTs stream their body unbuffered.
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log::request,
        ))
        // After the log layer, so neither logged nor counted: the plugin's long poll would
        // write a line every 25 s and skew the request durations (`leases`).
        .route("/_plugin/leases", get(leases::poll))
        .route("/_plugin/leases/{id}", post(leases::answer))
        .with_state(state)
}

/// The operator's address (`--metrics-listen`): `/metrics`, `/healthz` and `/readyz`, for
/// a scraper and probes that should not reach the API, nor the API's clients them.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// `GET /metrics`: the scrape.
async fn scrape(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Bind, hand the bound addresses (and, without a configured secret, the admin token) to
/// `announce`, then serve until SIGINT or SIGTERM. The binary decides where the announcement
/// goes (the acceptance contract reads `listening on http://ADDR` from stdout, design.md §7);
/// the library writes nothing to stdout itself.
pub async fn run(
    opts: ServeOptions,
    announce: impl FnOnce(Announcement<'_>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let plugin = opts.plugin_key.is_some();
    if plugin && !opts.listen.ip().is_loopback() {
        return Err(Error::PluginListen { addr: opts.listen });
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: opts.listen,
        source,
    })?;
    let metrics_listener = match opts.metrics_listen {
        Some(at) => {
            let bind = |source| Error::MetricsBind { addr: at, source };
            let listener = tokio::net::TcpListener::bind(at).await.map_err(bind)?;
            let bound = listener.local_addr().map_err(bind)?;
            Some((listener, bound))
        }
        None => None,
    };
    let (secret, admin_token) = match &opts.jwt_secret {
        Some(secret) => (secret.as_bytes().to_vec(), None),
        // Tokens are Hypha's business here: no secret, no admin token.
        None if plugin => (rand::random::<[u8; 32]>().to_vec(), None),
        None => {
            let secret = rand::random::<[u8; 32]>().to_vec();
            let token = auth::mint(
                &secret,
                "admin",
                &[("*".to_owned(), Permission::Admin)],
                ADMIN_TOKEN_TTL,
            );
            (secret, Some(token))
        }
    };
    let public_url = opts.public_url.clone().unwrap_or_else(|| {
        // A wildcard address is not reachable as a URL: presign for loopback and say so.
        // (Only the local store's URLs point at this server; S3's point at S3.)
        if addr.ip().is_unspecified() && opts.s3.is_none() {
            let local = std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port());
            tracing::warn!(
                "warning: listening on {addr} without --public-url: presigned URLs point at http://{local}, reachable from this machine only"
            );
            format!("http://{local}")
        } else {
            format!("http://{addr}")
        }
    });
    url::Url::parse(&public_url).map_err(|source| Error::PublicUrl {
        url: public_url.clone(),
        source,
    })?;
    let mut state = match &opts.s3 {
        Some(config) => {
            let s3 = storage::S3::new(config).map_err(Error::S3)?;
            s3.check_bucket().await.map_err(Error::S3)?;
            if opts.s3_unsafe_no_conditional_writes {
                tracing::warn!(
                    "warning: {}=1: conditional writes of S3 bucket {} are not checked; a writer may overwrite stored packs and a push may be lost",
                    storage::s3::UNSAFE_NO_CONDITIONAL_WRITES,
                    s3.bucket()
                );
            } else {
                s3.check_conditional_writes().await.map_err(Error::S3)?;
            }
            AppState::new(std::sync::Arc::new(s3), &secret)
        }
        None => {
            let disk = LocalDisk::new(&opts.root, &public_url, &presign_secret(&secret)).map_err(
                |source| Error::Store {
                    root: opts.root.clone(),
                    source,
                },
            )?;
            AppState::with_local_disk(disk, &secret)
        }
    };
    let url_ttl = opts.url_ttl.unwrap_or(DEFAULT_PRESIGN_EXPIRES_IN);
    state = state
        .presign_expires_in(url_ttl)
        .multipart(opts.multipart)
        .thin_packs(opts.thin_packs)
        .inline_max(opts.inline_max)
        .public_url(opts.public_url.clone());
    if let Some(grace) = opts.gc_grace {
        state = state.gc_grace(grace);
    }
    let mut rate_limits = opts.rate_limits;
    if plugin && (rate_limits.address_per_minute > 0 || rate_limits.address_bytes_per_minute > 0) {
        tracing::warn!(
            "warning: --rate-limit-address and --byte-limit-address are ignored with --plugin: every request comes from the plugin; the token limits count Hypha's users"
        );
        rate_limits.address_per_minute = 0;
        rate_limits.address_bytes_per_minute = 0;
    }
    if !rate_limits.is_off() {
        let each = |n: u64, what: &str| match n {
            0 => "off".to_owned(),
            n => format!("{n} {what} a minute (bursts of {})", limits::burst(n)),
        };
        let who = if plugin { "user" } else { "token" };
        tracing::info!(
            "rate limits: per {who} {} and {}, per address {} and {}{}",
            each(rate_limits.token_per_minute.into(), "requests"),
            each(rate_limits.token_bytes_per_minute, "bytes"),
            each(rate_limits.address_per_minute.into(), "requests"),
            each(rate_limits.address_bytes_per_minute, "bytes"),
            if rate_limits.trust_forwarded_for {
                " (from X-Forwarded-For)"
            } else {
                ""
            }
        );
    }
    state = state.rate_limits(rate_limits);
    if !opts.quotas.is_off() {
        let q = &opts.quotas;
        let each = |n: u64| match n {
            0 => "off".to_owned(),
            n => n.to_string(),
        };
        tracing::info!(
            "quotas per workspace: pending uploads {}, pending bytes {}, stored bytes {} (listed at most every {} s)",
            each(q.pending_uploads),
            each(q.pending_bytes),
            each(q.stored_bytes),
            q.refresh.as_secs()
        );
    }
    state = state.quotas(opts.quotas);
    let metrics = state.metrics.clone();
    state = state.webhooks(
        webhook::Webhooks::start(webhook::Settings {
            allowed: webhook::Allowed::new(&opts.webhook_allow),
            metrics,
            ..webhook::Settings::default()
        })
        .map_err(Error::Webhooks)?,
    );
    if let Some(key) = &opts.plugin_key {
        state = state.plugin_key(key.as_bytes());
    }
    let grace = state.gc_grace;
    state = state.auto_gc(auto_gc(opts.auto_gc_packs, opts.auto_gc_bytes, grace));
    if opts.plugin_key.is_none() {
        let stale_age = opts
            .stale_upload_age
            .unwrap_or_else(|| default_stale_upload_age(url_ttl));
        tokio::spawn(sweep_stale_uploads(
            state.store().backend().clone(),
            stale_age,
        ));
    }
    // In plugin mode too: Hypha's workers never sweep our staging.
    tokio::spawn(sweep_staged(state.clone()));

    announce(Announcement {
        addr,
        admin_token: admin_token.as_deref(),
        metrics: metrics_listener.as_ref().map(|(_, bound)| *bound),
    })
    .map_err(Error::Stdout)?;
    if let Some((listener, _)) = metrics_listener {
        let app = metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("warning: the metrics listener failed: {e}");
            }
        });
    }

    let shutdown = async move {
        if plugin {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stdin_closed() => tracing::info!("standard input closed: shutting down"),
            }
        } else {
            shutdown_signal().await;
        }
    };
    // Without TCP_NODELAY a response whose last segment is small waits for the client's
    // delayed ACK (40 ms on Linux): that stall showed as idx and pack GETs of 140 KB taking
    // 25-60 ms on loopback.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY on a connection: {e}");
        }
    });
    // The peer's address, for the address limit.
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// Resolves when standard input reaches end of file (or fails): the plugin's parent, which
/// holds the other end of the pipe, has exited, so this child must not outlive it.
async fn stdin_closed() {
    use tokio::io::AsyncReadExt as _;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// The compaction trigger, compacting in this server's own store; `None` when
/// disabled or when git, which compaction packs with, is missing.
fn auto_gc(threshold: usize, min_bytes: u64, grace: Duration) -> Option<autogc::AutoGc> {
    if threshold == 0 {
        return None;
    }
    if !autogc::git_available() {
        tracing::warn!(
            "warning: git is not on PATH: automatic compaction (--auto-gc-packs) is off"
        );
        return None;
    }
    autogc::AutoGc::new(threshold, min_bytes, grace)
}

/// Abort multipart uploads nobody finished (a client that crashed, lost its network or was
/// killed before it could ask for an abort), now and then every [`STALE_UPLOAD_SWEEP`].
/// Failures are logged and retried next time: some S3-compatible stores cannot list uploads.
async fn sweep_stale_uploads(backend: std::sync::Arc<dyn storage::Backend>, older_than: Duration) {
    if backend.multipart().is_none() {
        return;
    }
    let mut every = tokio::time::interval(STALE_UPLOAD_SWEEP);
    loop {
        every.tick().await;
        match crate::repo::upload::abort_stale_uploads(backend.as_ref(), older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("aborted {n} abandoned multipart upload(s)"),
            Err(e) => tracing::warn!(
                "warning: cannot abort abandoned multipart uploads: {}",
                error_chain(&e)
            ),
        }
    }
}

/// How often repositories that were handed upload URLs are swept.
const STAGED_SWEEP: Duration = Duration::from_secs(300);

/// Removes abandoned uploads (pending packs and thin uploads older than the grace period) of
/// the repositories that were handed upload URLs, every [`STAGED_SWEEP`]: without it they
/// stayed until the repository's next compaction, which a failed thin push never triggers.
/// LFS delta plans never completed go in the same wave (`repo::lfs_delta_sweep`; only those
/// of repositories that were handed one, or compaction, look). A repository with uploads or
/// plans still within their grace period is looked at again next time.
pub(crate) async fn sweep_staged(state: AppState) {
    let mut every = tokio::time::interval(STAGED_SWEEP);
    every.tick().await;
    loop {
        every.tick().await;
        for repo in state.take_staged() {
            let (staged, deltas) = tokio::join!(
                repo.sweep_staged(state.gc_grace),
                repo.sweep_lfs_deltas(std::time::SystemTime::now(), state.gc_grace)
            );
            match deltas {
                Ok(swept) => {
                    if swept.removed > 0 {
                        tracing::info!(
                            "{}: removed {} abandoned lfs delta plan(s)",
                            repo.name(),
                            swept.removed
                        );
                    }
                    if swept.kept > 0 {
                        state.note_staged(&repo);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "warning: cannot sweep abandoned lfs delta plans of {}: {}",
                        repo.name(),
                        error_chain(&e)
                    );
                    state.note_staged(&repo);
                }
            }
            match staged {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!("{}: removed {n} abandoned upload(s)", repo.name());
                    }
                    if repo.staged_uploads().await.unwrap_or(1) > 0 {
                        state.note_staged(&repo);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "warning: cannot sweep abandoned uploads of {}: {}",
                        repo.name(),
                        error_chain(&e)
                    );
                    state.note_staged(&repo);
                }
            }
        }
    }
}

/// The local store signs its URLs with a key derived from the token secret, so that URLs
/// survive a restart with the same secret but a URL signature never doubles as a token.
fn presign_secret(jwt_secret: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(jwt_secret).expect("HMAC accepts keys of any length");
    mac.update(b"hypha-git local-disk presign v1");
    mac.finalize().into_bytes().to_vec()
}

async fn shutdown_signal() {
    let interrupt = async {
        // If the handler cannot be installed, wait forever rather than exit at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
