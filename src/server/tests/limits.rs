//! Handler tests of the request rate limits (issue 24, `serve --rate-limit-token`,
//! `--rate-limit-address`): 429 with `Retry-After` and a detail naming the limit, for the API
//! and LFS routes only; one caller's limit leaves the others alone. tests/e2e/limits.rs has a
//! real push and fetch wait one out.

use super::*;
use crate::server::limits::Settings;
use axum::extract::ConnectInfo;
use std::net::SocketAddr;

fn named(subject: &str, ws: &str, p: Permission) -> String {
    auth::mint(
        SECRET,
        subject,
        &[(ws.to_owned(), p)],
        Duration::from_secs(600),
    )
}

/// A server with `ws/repo` (private) and `ws/open` (public), then the limits.
async fn limited(settings: Settings) -> Server {
    let mut s = server();
    s.create("ws/repo", false).await;
    s.create("ws/open", true).await;
    s.state = s.state.clone().rate_limits(settings);
    s
}

impl Server {
    /// `route` of `repo` from the client at `from`, with `token` (or anonymous).
    async fn api_from(&self, from: &str, repo: &str, route: &str, token: Option<&str>) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/{}", repo_route(repo, route)));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = req.body(Body::from("{}")).unwrap();
        let addr = SocketAddr::new(from.parse().unwrap(), 40000);
        req.extensions_mut().insert(ConnectInfo(addr));
        self.send(req).await
    }
}

fn refused(r: &Reply, detail: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    let body: api::ErrorBody = serde_json::from_slice(&r.body).unwrap();
    // `busy`: what every helper already waits out.
    assert_eq!(body.error, ErrorCode::Busy);
    assert_eq!(body.detail, detail);
    let secs: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1, "{secs}");
}

const TOKEN_DETAIL: &str =
    "rate limit of 6 requests a minute for this token reached; retry in 10 s";
const ADDRESS_DETAIL: &str =
    "rate limit of 6 requests a minute for this address reached; retry in 10 s";

#[tokio::test]
async fn the_token_limit_counts_each_subject_apart() {
    // 6 a minute: a burst of one, then one every ten seconds.
    let s = limited(Settings {
        token_per_minute: 6,
        ..Settings::default()
    })
    .await;
    let alice = named("alice", "ws", Permission::Read);
    let r = s
        .api_from("192.0.2.1", "ws/repo", "refs", Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .api_from("192.0.2.1", "ws/repo", "refs", Some(&alice))
        .await;
    refused(&r, TOKEN_DETAIL);
    assert_eq!(r.headers[header::RETRY_AFTER], "10");
    // Another token of the same subject shares its bucket, from any address.
    let alice_rw = named("alice", "*", Permission::ReadWrite);
    let r = s
        .api_from("192.0.2.9", "ws/repo", "info", Some(&alice_rw))
        .await;
    refused(&r, TOKEN_DETAIL);
    // Another subject, same address: not affected.
    let bob = named("bob", "ws", Permission::Read);
    let r = s.api_from("192.0.2.1", "ws/repo", "refs", Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Anonymous callers and tokens that do not verify are the address limit's (off here).
    for _ in 0..3 {
        let r = s.api_from("192.0.2.1", "ws/open", "refs", None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = s
            .api_from("192.0.2.1", "ws/repo", "refs", Some("nonsense"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Probes are never limited.
    for _ in 0..3 {
        let r = s
            .send(Request::get("/healthz").body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // The LFS routes are, answered the way git-lfs reads an error.
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/ws/git/repo.git/info/lfs/objects/batch")
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::ACCEPT, api::lfs::MEDIA_TYPE)
        .body(Body::from(r#"{"operation":"download","objects":[]}"#))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.0.2.1:1".parse::<SocketAddr>().unwrap()));
    let r = s.send(req).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::CONTENT_TYPE], api::lfs::MEDIA_TYPE);
    assert_eq!(r.headers[header::RETRY_AFTER], "10");
    assert_eq!(r.json()["message"], TOKEN_DETAIL);
    // Counted by reason.
    let text = s.state.metrics().encode();
    assert!(
        text.contains("hypha_refused_requests_total{reason=\"rate_limited_token\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("hypha_http_requests_total{route=\"refs\",status=\"429\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_address_limit_counts_what_the_token_limit_does_not() {
    let s = limited(Settings {
        token_per_minute: 60,
        address_per_minute: 6,
        ..Settings::default()
    })
    .await;
    let r = s.api_from("192.0.2.1", "ws/open", "refs", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s.api_from("192.0.2.1", "ws/open", "info", None).await;
    refused(&r, ADDRESS_DETAIL);
    // A token that does not verify is counted by its address too: 429 before 401.
    let r = s
        .api_from("192.0.2.1", "ws/repo", "refs", Some("nonsense"))
        .await;
    refused(&r, ADDRESS_DETAIL);
    // Another address: not affected.
    let r = s.api_from("192.0.2.2", "ws/open", "refs", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A caller with a token is the token limit's, whatever its address did.
    let alice = named("alice", "ws", Permission::Read);
    for _ in 0..3 {
        let r = s
            .api_from("192.0.2.1", "ws/repo", "refs", Some(&alice))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let text = s.state.metrics().encode();
    assert!(
        text.contains("hypha_refused_requests_total{reason=\"rate_limited_address\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_token_limit_the_address_limit_counts_every_request() {
    let s = limited(Settings {
        address_per_minute: 6,
        ..Settings::default()
    })
    .await;
    let alice = named("alice", "ws", Permission::Read);
    let r = s
        .api_from("2001:db8:0:1::1", "ws/repo", "refs", Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The same /64.
    let r = s.api_from("2001:db8:0:1::2", "ws/open", "refs", None).await;
    refused(&r, ADDRESS_DETAIL);
    let r = s
        .api_from("2001:db8:0:2::1", "ws/repo", "refs", Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn plugin_mode_limits_each_user_hypha_names() {
    let mut s = plugin_server().await;
    s.state = s.state.clone().rate_limits(Settings {
        token_per_minute: 6,
        address_per_minute: 6,
        ..Settings::default()
    });
    let mut headers = plugin_headers("read", PREFIX);
    headers.pop();
    headers.push(("x-hypha-user", "u-alice"));
    let r = s.plugin("refs", &headers, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s.plugin("refs", &headers, json!({})).await;
    refused(
        &r,
        "rate limit of 6 requests a minute for this user reached; retry in 10 s",
    );
    headers.pop();
    headers.push(("x-hypha-user", "u-bob"));
    let r = s.plugin("refs", &headers, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // No address limit: every request comes from the plugin.
    headers.pop();
    for _ in 0..3 {
        let r = s.plugin("refs", &headers, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}
