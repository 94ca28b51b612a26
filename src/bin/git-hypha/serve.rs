//! `git hypha serve`: remote API v1 over a local directory or an S3 bucket, and the startup
//! lines whoever started the server reads.

use hypha_git::repo::upload::MultipartPolicy;
use hypha_git::server::{self, ServeOptions};
use hypha_git::storage::s3;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `git hypha serve`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the repositories ({workspace}/artifacts/{alias}/.git/).
    #[arg(long, env = "HYPHA_GIT_ROOT", default_value = "hypha-data")]
    root: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "HYPHA_GIT_LISTEN", default_value = "127.0.0.1:9527")]
    listen: SocketAddr,
    /// URL clients reach this server at (for presigned URLs); default http://{listen}.
    #[arg(long, env = "HYPHA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Store repositories in this S3 bucket instead of --root (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "HYPHA_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// S3 endpoint URL (MinIO and other S3-compatible stores); default AWS_ENDPOINT_URL_S3,
    /// then AWS_ENDPOINT_URL, then AWS itself.
    #[arg(long, env = "HYPHA_S3_ENDPOINT", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// Key prefix in the bucket, so that several servers share one bucket.
    #[arg(long, env = "HYPHA_S3_PREFIX", requires = "s3_bucket")]
    s3_prefix: Option<String>,
    /// S3 region; default AWS_REGION, then us-east-1.
    #[arg(long, env = "HYPHA_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style S3 URLs (http://host/bucket/key), as most S3-compatible stores need.
    #[arg(long, env = "HYPHA_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// Seconds packs retired by `git hypha gc` stay readable before deletion
    /// (default: presigned-URL lifetime + 10 minutes).
    #[arg(long, env = "HYPHA_GC_GRACE_SECS")]
    gc_grace_secs: Option<u64>,
    /// Lifetime of presigned URLs in seconds (default 3600). Clients whose URL expired
    /// ask for a fresh one.
    #[arg(long, env = "HYPHA_URL_TTL_SECS", value_parser = clap::value_parser!(u64).range(1..=604800))]
    url_ttl_secs: Option<u64>,
    /// Packs larger than this many bytes go up to S3 in parts (default 64 MiB).
    #[arg(long, env = "HYPHA_MULTIPART_THRESHOLD", default_value_t = MultipartPolicy::default().threshold)]
    multipart_threshold: u64,
    /// Size of each part of a multipart upload in bytes (default 16 MiB; at least 5 MiB).
    #[arg(long, env = "HYPHA_MULTIPART_PART_SIZE", default_value_t = MultipartPolicy::default().part_size)]
    multipart_part_size: u64,
    /// Abort multipart uploads older than this many seconds (default: a day, or twice the
    /// URL lifetime if longer); checked at start and hourly.
    #[arg(long, env = "HYPHA_MULTIPART_STALE_SECS")]
    multipart_stale_secs: Option<u64>,
    /// After a push leaves a repository with more than this many packs, merge its small
    /// packs in the background (needs git on PATH); 0 turns this off.
    #[arg(long, env = "HYPHA_AUTO_GC_PACKS", default_value_t = server::autogc::DEFAULT_AUTO_GC_PACKS)]
    auto_gc_packs: usize,
    /// Also merge them once the packs a geometric merge would take hold this many bytes,
    /// so that edit-pushes of large files do not keep a whole copy each (default 4 MiB);
    /// 0 counts packs only.
    #[arg(long, env = "HYPHA_AUTO_GC_BYTES", default_value_t = server::autogc::DEFAULT_AUTO_GC_BYTES)]
    auto_gc_bytes: u64,
    /// Used by the Hypha plugin: serve only requests carrying the key in
    /// HYPHA_GIT_PLUGIN_KEY, with the permission and location Hypha decided; exit when
    /// standard input closes.
    #[arg(long, hide = true, requires = "s3_bucket")]
    plugin: bool,
    /// Webhook hosts that may be called although they resolve to private, loopback or
    /// other non-public addresses (comma-separated host names or IP addresses).
    #[arg(long, env = "HYPHA_WEBHOOK_ALLOW", value_delimiter = ',')]
    webhook_allow: Vec<String>,
    /// Do not complete thin pushes: clients then upload self-contained packs, as to a
    /// server from before thin pushes.
    #[arg(long)]
    no_thin_packs: bool,
    /// Largest push (pack plus idx, in bytes) taken inline in the `update` request, which
    /// saves a small push three round trips, and the most a clone's listing carries of packs
    /// (saving their GETs); at most 8 MiB; 0 makes clients upload and download every pack
    /// through presigned URLs, as with a server from before inline packs.
    #[arg(long, env = "HYPHA_INLINE_MAX", default_value_t = hypha_git::server::inline::DEFAULT_INLINE_MAX)]
    inline_max: u64,
    /// Serve Prometheus metrics (/metrics, with /healthz and /readyz) on this second address,
    /// e.g. 127.0.0.1:9528; off by default, and never on --listen, so that metrics are not
    /// public by accident.
    #[arg(long, env = "HYPHA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log lines on stderr as text (`POST /ws/git/repo/remote/v1/refs 200 3ms id=...`) or
    /// as one JSON object per line (time, level, request id, workspace, repository, route,
    /// status, duration, bytes).
    #[arg(long, env = "HYPHA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Requests a minute each token (its subject) may send to the API and LFS routes, with
    /// bursts of a sixth of that; over it, 429 with Retry-After, which clients wait out.
    /// With --plugin: each Hypha user. 0 (the default): no limit.
    #[arg(long, env = "HYPHA_RATE_LIMIT_TOKEN", default_value_t = 0)]
    rate_limit_token: u32,
    /// Requests a minute each client address may send without a token (or each address at
    /// all, when --rate-limit-token is 0), with bursts of a sixth of that. 0 (the default): no
    /// limit. Ignored with --plugin.
    #[arg(long, env = "HYPHA_RATE_LIMIT_ADDRESS", default_value_t = 0)]
    rate_limit_address: u32,
    /// Take the client's address for --rate-limit-address from the last entry of
    /// X-Forwarded-For, which the one reverse proxy in front of this server sets; without
    /// it the address is the connection's peer (the proxy's, behind one).
    #[arg(long, env = "HYPHA_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Bytes a minute each token may be handed presigned URLs for (declared upload sizes,
    /// pack and LFS object sizes in download answers) or send inline, with bursts of a sixth
    /// of that; one transfer may go past it, and the next then waits (429 with Retry-After).
    /// With --plugin: each Hypha user. 0 (the default): no limit.
    #[arg(long, env = "HYPHA_BYTE_LIMIT_TOKEN", default_value_t = 0)]
    byte_limit_token: u64,
    /// Bytes a minute each client address may move: what requests without a token are handed
    /// (or all requests', when --byte-limit-token is 0), and on a local-disk store every
    /// transfer through its presigned URLs. 0 (the default): no limit. Ignored with --plugin.
    #[arg(long, env = "HYPHA_BYTE_LIMIT_ADDRESS", default_value_t = 0)]
    byte_limit_address: u64,
    /// Uploads each workspace may have in flight (handed upload URLs, not yet pushed); over
    /// it, 413 with code `quota`. 0 (the default): no quota.
    #[arg(long, env = "HYPHA_QUOTA_PENDING_UPLOADS", default_value_t = 0)]
    quota_pending_uploads: u64,
    /// Bytes those uploads may declare in all, per workspace. 0 (the default): no quota.
    #[arg(long, env = "HYPHA_QUOTA_PENDING_BYTES", default_value_t = 0)]
    quota_pending_bytes: u64,
    /// Bytes of packs and LFS objects each workspace may store (all its repositories, with
    /// its uploads in flight); a push past it fails with a message and changes nothing. 0
    /// (the default): no quota.
    #[arg(long, env = "HYPHA_QUOTA_STORED_BYTES", default_value_t = 0)]
    quota_stored_bytes: u64,
    /// Longest time between two listings of a workspace's stored bytes; between them the
    /// total is kept up to date with what this server writes and deletes.
    #[arg(long, env = "HYPHA_QUOTA_REFRESH_SECS", default_value_t = server::quota::DEFAULT_REFRESH.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    quota_refresh_secs: u64,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's log as JSON lines: every event one object with `timestamp`, `level`,
/// `target` and its fields (the access log's: `request_id`, `workspace`, `repository`,
/// `route`, `status`, `duration_ms`, `bytes_in`, `bytes_out`, `message`). Installed instead of
/// the text subscriber (`logging::install`) when `serve --log-format json` is given.
pub fn install_json_log() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let lines = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(lines)
        .try_init();
}

/// Serve until SIGINT or SIGTERM (or, with --plugin, until standard input closes).
pub fn run(args: Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let Args {
        root,
        listen,
        public_url,
        gc_grace_secs,
        s3_bucket,
        s3_endpoint,
        s3_prefix,
        s3_region,
        s3_path_style,
        url_ttl_secs,
        multipart_threshold,
        multipart_part_size,
        multipart_stale_secs,
        auto_gc_packs,
        auto_gc_bytes,
        plugin,
        webhook_allow,
        no_thin_packs,
        inline_max,
        metrics_listen,
        log_format: _,
        rate_limit_token,
        rate_limit_address,
        trust_forwarded_for,
        byte_limit_token,
        byte_limit_address,
        quota_pending_uploads,
        quota_pending_bytes,
        quota_stored_bytes,
        quota_refresh_secs,
    } = args;
    // The key comes through the environment, never argv (which `ps` shows).
    let plugin_key = match plugin {
        true => Some(
            env.get("HYPHA_GIT_PLUGIN_KEY")
                .filter(|k| k.len() >= 32)
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!("--plugin needs HYPHA_GIT_PLUGIN_KEY (32+ characters)")
                })?,
        ),
        false => None,
    };
    let s3 = match s3_bucket {
        Some(bucket) => Some(s3::Config {
            endpoint: s3::endpoint_from(s3_endpoint, env),
            bucket,
            prefix: s3_prefix,
            region: s3::region_from(s3_region.as_deref(), env),
            path_style: s3_path_style,
            credentials: s3::Credentials::from_env(env)?,
        }),
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(server::run(
        ServeOptions {
            root,
            listen,
            jwt_secret: env
                .get("HYPHA_JWT_SECRET")
                .cloned()
                .filter(|s| !s.is_empty()),
            public_url,
            gc_grace: gc_grace_secs.map(Duration::from_secs),
            s3,
            url_ttl: url_ttl_secs.map(Duration::from_secs),
            multipart: MultipartPolicy {
                threshold: multipart_threshold,
                part_size: multipart_part_size,
            },
            stale_upload_age: multipart_stale_secs.map(Duration::from_secs),
            auto_gc_packs,
            auto_gc_bytes,
            plugin_key,
            webhook_allow,
            thin_packs: !no_thin_packs,
            inline_max,
            metrics_listen,
            s3_unsafe_no_conditional_writes: env
                .get(s3::UNSAFE_NO_CONDITIONAL_WRITES)
                .is_some_and(|v| v == "1"),
            rate_limits: server::limits::Settings {
                token_per_minute: rate_limit_token,
                address_per_minute: rate_limit_address,
                trust_forwarded_for,
                token_bytes_per_minute: byte_limit_token,
                address_bytes_per_minute: byte_limit_address,
            },
            quotas: server::quota::Settings {
                pending_uploads: quota_pending_uploads,
                pending_bytes: quota_pending_bytes,
                stored_bytes: quota_stored_bytes,
                refresh: Duration::from_secs(quota_refresh_secs),
            },
        },
        announce,
    ))?;
    Ok(())
}

/// The startup lines the acceptance contract (docs/design.md §7) reads: stdout belongs to
/// whoever started the server, so they go there explicitly and are flushed at once.
fn announce(at: server::Announcement<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{}", at.addr)?;
    if let Some(metrics) = at.metrics {
        writeln!(out, "metrics on http://{metrics}/metrics")?;
    }
    if let Some(token) = at.admin_token {
        // Printing this token is the point: without a configured secret it is the only
        // way in. It goes to stdout only, never to the log.
        writeln!(out, "admin token: {token}")?;
    }
    out.flush()
}
