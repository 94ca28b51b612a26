//! Handler tests of what an operator watches (issue 24): request ids, the counters a request
//! moves, `/metrics` on its own router, and `/readyz` following a store that goes away and
//! comes back. tests/e2e/metrics.rs checks the same against real pushes and clones.

use super::*;
use crate::storage::{
    self, Backend, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let s = server();
    let made = s.send(get("/healthz")).await;
    let id = made.headers[log::REQUEST_ID].to_str().unwrap().to_owned();
    assert!(id.len() == 16 && is_sane_id(&id), "{id}");
    let other = s.send(get("/healthz")).await;
    assert_ne!(
        other.headers[log::REQUEST_ID],
        id.as_str(),
        "one per request"
    );

    let with = |id: &str| {
        Request::builder()
            .uri("/healthz")
            .header(log::REQUEST_ID, id)
            .body(Body::empty())
            .unwrap()
    };
    let taken = s.send(with("push-42.a_b")).await;
    assert_eq!(taken.headers[log::REQUEST_ID], "push-42.a_b");
    // Not sane: too long, or characters a log line or a header should not carry.
    for bad in ["x".repeat(65), "a b".to_owned(), "a;b".to_owned()] {
        let r = s.send(with(&bad)).await;
        let answered = r.headers[log::REQUEST_ID].to_str().unwrap();
        assert_ne!(answered, bad);
        assert_eq!(answered.len(), 16);
    }
}

#[tokio::test]
async fn requests_refusals_and_store_requests_are_counted() {
    let s = server();
    s.create("ws/repo", false).await;
    let before = s.state.metrics().encode();
    let rw = token("ws", Permission::ReadWrite);
    assert_eq!(
        s.api("ws/repo", "refs", Some(&rw), json!({})).await.status,
        StatusCode::OK
    );
    let anonymous = s.api("ws/repo", "refs", None, json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let other = token("other", Permission::ReadWrite);
    let denied = s.api("ws/repo", "refs", Some(&other), json!({})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let nonsense = s.raw("/ws/git/repo/remote/v1/nonsense", None, "{}").await;
    assert_eq!(nonsense.status, StatusCode::NOT_FOUND);

    let after = s.state.metrics().encode();
    let moved = |series: &str| {
        sample(&after, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0)
    };
    for (series, n) in [
        (
            "hypha_http_requests_total{route=\"refs\",status=\"200\"}",
            1.0,
        ),
        (
            "hypha_http_requests_total{route=\"refs\",status=\"401\"}",
            1.0,
        ),
        (
            "hypha_http_requests_total{route=\"refs\",status=\"403\"}",
            1.0,
        ),
        // A route name no client can choose: `unknown`, whatever it sent.
        (
            "hypha_http_requests_total{route=\"unknown\",status=\"404\"}",
            1.0,
        ),
        (
            "hypha_http_request_duration_seconds_count{route=\"refs\"}",
            3.0,
        ),
        (
            "hypha_refused_requests_total{reason=\"unauthenticated\"}",
            1.0,
        ),
        ("hypha_refused_requests_total{reason=\"forbidden\"}", 1.0),
        ("hypha_refused_requests_total{reason=\"not_found\"}", 1.0),
    ] {
        assert_eq!(moved(series), n, "{series}\n{after}");
    }
    let reads = moved("hypha_store_requests_total{operation=\"GET\"}")
        + moved("hypha_store_requests_total{operation=\"LIST\"}")
        + moved("hypha_store_requests_total{operation=\"HEAD\"}");
    assert!(reads > 0.0, "the listing read the store\n{after}");
    assert!(
        !after.contains("nonsense"),
        "no client string becomes a label"
    );
}

#[tokio::test]
async fn metrics_are_served_by_their_own_router_only() {
    let s = server();
    s.send(get("/healthz")).await;
    let res = metrics_router(s.state.clone())
        .oneshot(get("/metrics"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
    let text = String::from_utf8(
        to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("hypha_http_requests_total{route=\"healthz\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    // The API's address has no /metrics.
    assert_eq!(s.send(get("/metrics")).await.status, StatusCode::NOT_FOUND);
}

/// A store that can be switched off, as an S3 endpoint that went down: every request fails.
#[derive(Debug)]
struct Switch {
    inner: LocalDisk,
    down: AtomicBool,
    lists: AtomicUsize,
}

impl Switch {
    fn check(&self, key: &str) -> Result<(), storage::Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(storage::Error::backend(
                key,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for Switch {
    async fn get(&self, key: &str) -> Result<Object, storage::Error> {
        self.check(key)?;
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, storage::Error> {
        self.check(key)?;
        self.inner.head(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, storage::Error> {
        self.check(key)?;
        self.inner.get_range(key, range).await
    }
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        mode: PutMode,
    ) -> Result<String, storage::Error> {
        self.check(key)?;
        self.inner.put(key, body, mode).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), storage::Error> {
        self.check(key)?;
        self.inner.delete(key, if_match).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, storage::Error> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.check(prefix)?;
        self.inner.list(prefix).await
    }
    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, storage::Error> {
        self.inner
            .presign(key, method, expires_in, content_length)
            .await
    }
}

#[tokio::test]
async fn readiness_goes_false_while_the_store_is_down_and_true_after() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Arc::new(Switch {
        inner: LocalDisk::new(dir.path(), BASE, b"k").unwrap(),
        down: AtomicBool::new(false),
        lists: AtomicUsize::new(0),
    });
    let state = AppState::new(switch.clone(), SECRET);
    let ask = || async {
        let res = router(state.clone()).oneshot(get("/readyz")).await.unwrap();
        let status = res.status();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    assert_eq!(ask().await, (StatusCode::OK, json!({"ready": true})));
    // Within the second the answer stands: no new request to the store.
    assert_eq!(ask().await.0, StatusCode::OK);
    assert_eq!(switch.lists.load(Ordering::SeqCst), 1, "one probe a second");

    switch.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(health::CACHE_FOR + Duration::from_millis(50)).await;
    let (status, body) = ask().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the store cannot be reached: ")
            && reason.contains("connection refused"),
        "{reason}"
    );
    assert!(state.metrics().encode().contains("hypha_ready 0"));
    // Alive all the same.
    let alive = router(state.clone())
        .oneshot(get("/healthz"))
        .await
        .unwrap();
    assert_eq!(alive.status(), StatusCode::OK);

    switch.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(health::CACHE_FOR + Duration::from_millis(50)).await;
    assert_eq!(ask().await, (StatusCode::OK, json!({"ready": true})));
    assert!(state.metrics().encode().contains("hypha_ready 1"));
}
