//! [`Metrics`]: what `git hypha serve` counts, and `/metrics`, its Prometheus scrape in
//! OpenMetrics text (Prometheus's own Rust client, `prometheus-client`).
//!
//! Owns the names, labels and buckets of every series and the one encoder. Counting happens
//! where the thing happens: the access log middleware (`log`) counts requests and refusals,
//! the [`Metered`](crate::storage::metered::Metered) backend counts store requests, the routes
//! count presigned URLs, thin completions, compactions and LFS objects, `webhook` its
//! deliveries. Every label takes a value from a fixed set (a route name, a status code, an
//! operation), never a repository, ref or client string: a scrape stays a few hundred lines
//! whatever clients send.
//!
//! Never served on the API's address unless the operator says so: `serve --metrics-listen
//! ADDR` opens a second listener for `/metrics` (and `/healthz`, `/readyz`), off by default
//! (docs/design.md §19).

use crate::api::{ErrorCode, Route};
use crate::storage::metered::{Operation, StoreObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// The media type of the scrape: Prometheus asks for OpenMetrics and parses it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of one server. Cheap to clone; each [`AppState`](super::AppState) owns one,
/// so servers in one process (tests) count apart.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Presigned {
    /// `download` or `upload`.
    direction: &'static str,
    /// `pack` (packs and idx files) or `lfs`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaOutcome {
    /// `fix-thin` (an uploaded thin pack) or `inline` (one carried by `update`).
    via: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    /// `auto` (the server's own, inside Hypha too) or `compact` (a client's `git hypha gc`
    /// retiring packs).
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

struct Inner {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    request_duration: HistogramFamily<RouteLabel>,
    refused: Family<ReasonLabel, Counter>,
    store_requests: Family<OperationLabel, Counter>,
    store_errors: Family<OperationLabel, Counter>,
    store_duration: HistogramFamily<OperationLabel>,
    presigned_urls: Family<Presigned, Counter>,
    presigned_bytes: Family<Presigned, Counter>,
    store_url_bytes: Family<DirectionLabel, Counter>,
    thin: Family<ViaOutcome, Counter>,
    thin_duration: Histogram,
    thin_bytes: Family<KindLabel, Counter>,
    thin_appended: Counter,
    compactions: Family<KindOutcome, Counter>,
    compaction_duration: HistogramFamily<KindLabel>,
    compaction_bytes: Family<KindLabel, Counter>,
    webhooks: Family<OutcomeLabel, Counter>,
    lfs_objects: Family<OperationLabel, Counter>,
    lfs_bytes: Family<OperationLabel, Counter>,
    ready: Gauge,
}

/// Request and store latencies: 1 ms to about 33 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Thin completions and compactions: 10 ms to about 11 min, doubling.
fn long_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hypha");
        let requests = Family::<RouteStatus, Counter>::default();
        let request_duration = HistogramFamily::<RouteLabel>::new_with_constructor(latency);
        let refused = Family::<ReasonLabel, Counter>::default();
        let store_requests = Family::<OperationLabel, Counter>::default();
        let store_errors = Family::<OperationLabel, Counter>::default();
        let store_duration = HistogramFamily::<OperationLabel>::new_with_constructor(latency);
        let presigned_urls = Family::<Presigned, Counter>::default();
        let presigned_bytes = Family::<Presigned, Counter>::default();
        let store_url_bytes = Family::<DirectionLabel, Counter>::default();
        let thin = Family::<ViaOutcome, Counter>::default();
        let thin_duration = long_latency();
        let thin_bytes = Family::<KindLabel, Counter>::default();
        let thin_appended = Counter::default();
        let compactions = Family::<KindOutcome, Counter>::default();
        let compaction_duration = HistogramFamily::<KindLabel>::new_with_constructor(long_latency);
        let compaction_bytes = Family::<KindLabel, Counter>::default();
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        let lfs_objects = Family::<OperationLabel, Counter>::default();
        let lfs_bytes = Family::<OperationLabel, Counter>::default();
        let ready = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            request_duration.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused, by reason (the API's error code; rate_limited_token, rate_limited_address, byte_limited_token, byte_limited_address, quota_pending_uploads, quota_pending_bytes, quota_stored_bytes, too_large, method, other)",
            refused.clone(),
        );
        registry.register(
            "store_requests",
            "Requests this server sent to its store, by operation",
            store_requests.clone(),
        );
        registry.register(
            "store_request_errors",
            "Store requests that failed (not found and lost conditions excluded), by operation",
            store_errors.clone(),
        );
        registry.register(
            "store_request_duration_seconds",
            "Time a store request took, by operation",
            store_duration.clone(),
        );
        registry.register(
            "presigned_urls",
            "Presigned URLs handed out, by direction and kind",
            presigned_urls.clone(),
        );
        registry.register(
            "presigned_bytes",
            "Bytes of the objects behind presigned URLs handed out (uploads: the signed length)",
            presigned_bytes.clone(),
        );
        registry.register(
            "store_url_bytes",
            "Bytes sent and received through this server's own presigned URLs (local disk)",
            store_url_bytes.clone(),
        );
        registry.register(
            "thin_completions",
            "Thin packs completed, by where they came from and outcome",
            thin.clone(),
        );
        registry.register(
            "thin_completion_duration_seconds",
            "Time a thin completion took",
            thin_duration.clone(),
        );
        registry.register(
            "thin_completion_bytes",
            "Bytes of thin packs completed: thin (as uploaded) and completed (bases appended)",
            thin_bytes.clone(),
        );
        registry.register(
            "thin_completion_appended_objects",
            "Objects thin completions appended from stored packs",
            thin_appended.clone(),
        );
        registry.register(
            "compactions",
            "Compactions, by kind and outcome (merged, nothing, failed)",
            compactions.clone(),
        );
        registry.register(
            "compaction_duration_seconds",
            "Time a compaction took, by kind",
            compaction_duration.clone(),
        );
        registry.register(
            "compaction_bytes",
            "Bytes of the packs compactions wrote, by kind",
            compaction_bytes.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by outcome (delivered, failed, dropped)",
            webhooks.clone(),
        );
        registry.register(
            "lfs_objects",
            "LFS objects offered for download or upload, and verified",
            lfs_objects.clone(),
        );
        registry.register(
            "lfs_bytes",
            "Bytes of the LFS objects offered for download or upload, and verified",
            lfs_bytes.clone(),
        );
        registry.register(
            "ready",
            "1 when the last readiness check reached the store, else 0",
            ready.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                refused,
                store_requests,
                store_errors,
                store_duration,
                presigned_urls,
                presigned_bytes,
                store_url_bytes,
                thin,
                thin_duration,
                thin_bytes,
                thin_appended,
                compactions,
                compaction_duration,
                compaction_bytes,
                webhooks,
                lfs_objects,
                lfs_bytes,
                ready,
            }),
        }
    }

    /// The scrape: every series in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// One answered HTTP request.
    pub(crate) fn request(&self, route: &'static str, status: u16, took: Duration) {
        let i = &self.inner;
        i.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        i.request_duration
            .get_or_create(&RouteLabel { route })
            .observe(took.as_secs_f64());
    }

    /// One refused request (see [`refusal_reason`]).
    pub(crate) fn refused(&self, reason: &'static str) {
        self.inner
            .refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Presigned URLs handed out: `direction` `download` or `upload`, `kind` `pack` or `lfs`.
    pub(crate) fn presigned(
        &self,
        direction: &'static str,
        kind: &'static str,
        urls: u64,
        bytes: u64,
    ) {
        if urls == 0 {
            return;
        }
        let labels = Presigned { direction, kind };
        self.inner
            .presigned_urls
            .get_or_create(&labels)
            .inc_by(urls);
        self.inner
            .presigned_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
    }

    /// Bytes through the local store's own URLs: `out` (GET) or `in` (PUT).
    pub(crate) fn store_url_bytes(&self, direction: &'static str, bytes: u64) {
        self.inner
            .store_url_bytes
            .get_or_create(&DirectionLabel { direction })
            .inc_by(bytes);
    }

    /// One thin completion: `via` `fix-thin` or `inline`; sizes when it succeeded.
    pub(crate) fn thin(&self, via: &'static str, took: Duration, sizes: Option<ThinSizes>) {
        let i = &self.inner;
        let outcome = if sizes.is_some() { "ok" } else { "failed" };
        i.thin.get_or_create(&ViaOutcome { via, outcome }).inc();
        i.thin_duration.observe(took.as_secs_f64());
        if let Some(s) = sizes {
            for (kind, n) in [("thin", s.thin), ("completed", s.completed)] {
                i.thin_bytes.get_or_create(&KindLabel { kind }).inc_by(n);
            }
            i.thin_appended.inc_by(s.appended);
        }
    }

    /// One compaction: `kind` `auto`, `compact` or `plugin`; `outcome` `merged`, `nothing` or
    /// `failed`; `bytes` the pack it wrote.
    pub(crate) fn compaction(
        &self,
        kind: &'static str,
        outcome: &'static str,
        took: Duration,
        bytes: u64,
    ) {
        let i = &self.inner;
        i.compactions
            .get_or_create(&KindOutcome { kind, outcome })
            .inc();
        i.compaction_duration
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
        i.compaction_bytes
            .get_or_create(&KindLabel { kind })
            .inc_by(bytes);
    }

    /// One webhook delivery: `delivered`, `failed` (after its retries) or `dropped` (the
    /// queue was full).
    pub(crate) fn webhook(&self, outcome: &'static str) {
        self.inner
            .webhooks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// LFS objects: `operation` `download` or `upload` (offered), `verify` (checked right).
    pub(crate) fn lfs(&self, operation: &'static str, bytes: u64) {
        let labels = OperationLabel { operation };
        self.inner.lfs_objects.get_or_create(&labels).inc();
        self.inner.lfs_bytes.get_or_create(&labels).inc_by(bytes);
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }
}

/// What a thin completion read and wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThinSizes {
    /// The thin pack, as uploaded.
    pub thin: u64,
    /// Objects appended from stored packs (the bases the thin pack lacked).
    pub appended: u64,
    /// The completed pack.
    pub completed: u64,
}

impl StoreObserver for Metrics {
    fn observe(&self, operation: Operation, requests: u64, took: Duration, failed: bool) {
        let labels = OperationLabel {
            operation: operation.as_str(),
        };
        let i = &self.inner;
        i.store_requests.get_or_create(&labels).inc_by(requests);
        if failed {
            i.store_errors.get_or_create(&labels).inc();
        }
        let histogram = i.store_duration.get_or_create(&labels);
        // A batch of reads (`get_many`) is observed as that many reads of its average time.
        let each = took.as_secs_f64() / requests.max(1) as f64;
        for _ in 0..requests {
            histogram.observe(each);
        }
    }
}

/// The `route` label of a request: a name from a fixed set, whatever the path holds.
pub(crate) fn route_label(method: &axum::http::Method, path: &str) -> &'static str {
    if path.starts_with("/_store/") {
        return if method == axum::http::Method::PUT {
            "store_put"
        } else {
            "store_get"
        };
    }
    match path {
        "/healthz" => return "healthz",
        "/readyz" => return "readyz",
        "/metrics" => return "metrics",
        _ => {}
    }
    // /{ws}/git/{alias}/...
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    match segments.as_slice() {
        [_, "git", _, rest] => {
            if let Some(route) = rest.strip_prefix("remote/v1/") {
                Route::parse(route).map_or("unknown", Route::as_str)
            } else if *rest == "info/lfs/objects/batch" {
                "lfs_batch"
            } else if rest.starts_with("info/lfs/objects/verify/") {
                "lfs_verify"
            } else {
                "unknown"
            }
        }
        _ => "unknown",
    }
}

/// The `reason` label of a refused request: the API's error code (`unauthenticated`,
/// `forbidden`, `not_found`, `invalid`, `stale`, `exists`, `busy`); `None` for an internal
/// error, which is a failure, not a refusal.
pub(crate) fn refusal_reason(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::NotFound => "not_found",
        ErrorCode::Unauthenticated => "unauthenticated",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Invalid => "invalid",
        ErrorCode::Stale => "stale",
        ErrorCode::Exists => "exists",
        ErrorCode::Busy => "busy",
        ErrorCode::Quota => "quota",
        ErrorCode::Internal | ErrorCode::Unknown => return None,
    })
}

/// The reason of a 4xx that did not come from [`super::ApiError`] (axum's own refusals).
pub(crate) fn status_reason(status: u16) -> Option<&'static str> {
    match status {
        413 => Some("too_large"),
        405 => Some("method"),
        400..=499 => Some("other"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn route_labels_come_from_a_fixed_set() {
        let post = Method::POST;
        for (path, label) in [
            ("/ws/git/repo/remote/v1/refs", "refs"),
            ("/ws/git/repo.git/remote/v1/fix-thin", "fix-thin"),
            ("/ws/git/repo/remote/v1/nonsense", "unknown"),
            ("/ws/git/repo/info/lfs/objects/batch", "lfs_batch"),
            ("/ws/git/repo/info/lfs/objects/verify/abc", "lfs_verify"),
            (
                "/_store/ws/artifacts/x/.git/objects/pack/p.pack",
                "store_get",
            ),
            ("/healthz", "healthz"),
            ("/readyz", "readyz"),
            ("/etc/passwd", "unknown"),
            ("/", "unknown"),
        ] {
            assert_eq!(route_label(&post, path), label, "{path}");
        }
        assert_eq!(route_label(&Method::PUT, "/_store/a/b"), "store_put");
    }

    #[test]
    fn scrape_names_every_series() {
        let m = Metrics::new();
        m.request("refs", 200, Duration::from_millis(3));
        m.observe(Operation::Get, 3, Duration::from_millis(3), false);
        let text = m.encode();
        assert!(
            text.contains("hypha_http_requests_total{route=\"refs\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hypha_store_requests_total{operation=\"GET\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hypha_store_request_duration_seconds_count{operation=\"GET\"} 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
