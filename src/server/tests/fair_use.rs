//! Handler tests of the byte rate limits and the per-workspace quotas (issue 24 part 4,
//! `serve --byte-limit-*`, `--quota-*`): what is charged, 429 or 413 with a detail naming
//! the limit and the numbers, nothing changed by a refusal, each refusal counted by reason.
//! tests/e2e/fair_use.rs has real pushes meet them.

use super::*;
use crate::server::limits::Settings as Limits;
use crate::server::quota::Settings as Quotas;
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

impl Server {
    /// `route` of `repo` from the client at `from`, with `token`.
    async fn api_at(&self, from: &str, repo: &str, route: &str, token: &str, body: Value) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/{}", repo_route(repo, route)))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(from.parse().unwrap(), 40000)));
        self.send(req).await
    }

    /// A presigned request from the client at `from`.
    async fn presigned_from(
        &self,
        from: &str,
        url: &str,
        method: Method,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Reply {
        let path = url.strip_prefix(BASE).expect("URL on the public base");
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(from.parse().unwrap(), 40000)));
        self.send(req).await
    }

    /// `uploads` of [`pack_name`]`(i)` (`size` bytes) to `ws/repo` with `token`, from one
    /// address.
    async fn upload_as(&self, token: &str, i: u8, size: u64) -> Reply {
        let body = upload_of(i, size);
        self.api_at("192.0.2.1", "ws/repo", "uploads", token, body)
            .await
    }

    fn counted(&self, reason: &str) -> String {
        let text = self.state.metrics().encode();
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "hypha_refused_requests_total{{reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {reason} in {text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    }
}

fn uploads_of(packs: &[(&str, u64)]) -> Value {
    let packs: Vec<Value> = packs
        .iter()
        .map(|(name, size)| json!({"name": name, "pack_size": size, "idx_size": 100}))
        .collect();
    json!({ "packs": packs })
}

fn pack_name(i: u8) -> String {
    format!("pack-{}", hex::encode([i; 20]))
}

/// An `uploads` body asking for one pack, [`pack_name`]`(i)` of `size` bytes.
fn upload_of(i: u8, size: u64) -> Value {
    uploads_of(&[(&pack_name(i), size)])
}

/// A server with `repos` created, then set up by `f` (limits, quotas): creating them is
/// neither charged nor counted.
async fn server_then(repos: &[&str], f: impl FnOnce(AppState) -> AppState) -> Server {
    let mut s = server();
    for repo in repos {
        s.create(repo, false).await;
    }
    s.state = f(s.state.clone());
    s
}

fn limited_429(r: &Reply, detail_starts: &str) -> u64 {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    let body: api::ErrorBody = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body.error, ErrorCode::Busy);
    assert!(body.detail.starts_with(detail_starts), "{}", body.detail);
    r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn over_quota(r: &Reply, needles: &[&str]) {
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let body: api::ErrorBody = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body.error, ErrorCode::Quota);
    assert!(!body.detail.contains('\n'), "{}", body.detail);
    for needle in needles {
        assert!(
            body.detail.contains(needle),
            "{needle:?} in {}",
            body.detail
        );
    }
    // Not `busy`: nothing tells a client to come back.
    assert!(r.headers.get(header::RETRY_AFTER).is_none());
}

/// A token's byte budget: the first large upload goes (into debt), the next waits as long
/// as the debt takes to pay back at the limit's rate; another token is not affected; a
/// request that hands out nothing is not refused.
#[tokio::test]
async fn the_token_byte_limit_lets_one_transfer_go_and_makes_the_next_wait() {
    let s = server_then(&["ws/repo"], |st| {
        st.rate_limits(Limits {
            token_bytes_per_minute: 60_000,
            ..Limits::default()
        })
    })
    .await;
    let alice = named("alice", "ws", Permission::ReadWrite);
    // 300,100 bytes at 1,000 a second, with a bucket of 10,000: 290 s of debt.
    let r = s.upload_as(&alice, 1, 300_000).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .api_at("192.0.2.1", "ws/repo", "uploads", &alice, upload_of(2, 10))
        .await;
    let wait = limited_429(
        &r,
        "byte rate limit of 60000 bytes a minute for this token reached; retry in",
    );
    assert!((289..=291).contains(&wait), "{wait}");
    // The refused request marked nothing.
    let repo = s.state.store().repo("ws", "repo").unwrap();
    assert_eq!(repo.staged_uploads().await.unwrap(), 1);
    // Requests that move no bytes go on.
    let r = s
        .api_at("192.0.2.1", "ws/repo", "info", &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // `refs` carries no pack listing for a caller whose hand-outs count (it would charge
    // every ls-remote and push for URLs they never use); `packs` is asked instead.
    let r = s
        .api_at(
            "192.0.2.1",
            "ws/repo",
            "refs",
            &alice,
            json!({"known_packs": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json().get("packs").is_none(), "{:?}", r.body);
    // Nor does a listing that hands out nothing (the repository has no packs yet).
    let r = s
        .api_at("192.0.2.1", "ws/repo", "packs", &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Bob has his own bucket, from the same address.
    let bob = named("bob", "ws", Permission::ReadWrite);
    let r = s
        .api_at("192.0.2.1", "ws/repo", "uploads", &bob, upload_of(3, 10))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(s.counted("byte_limited_token"), "1");
}

/// A request a quota refuses costs no bytes: the caller is not made to wait for what it was
/// never handed.
#[tokio::test]
async fn a_refusal_by_quota_costs_no_bytes() {
    let s = server_then(&["ws/repo"], |st| {
        st.rate_limits(Limits {
            token_bytes_per_minute: 60_000,
            ..Limits::default()
        })
        .quotas(Quotas {
            stored_bytes: 1_000_000,
            ..Quotas::default()
        })
    })
    .await;
    let alice = named("alice", "ws", Permission::ReadWrite);
    let r = s.upload_as(&alice, 1, 2_000_000).await;
    over_quota(
        &r,
        &[
            "storage quota of 1000000 bytes for workspace ws",
            "adds 2000100 bytes (1.9 MiB)",
        ],
    );
    let r = s.upload_as(&alice, 1, 5_000).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// On a local-disk store the bytes go through this server: its `/_store` transfers are
/// charged to the mover's address (whoever was handed the URL), and what an address is
/// handed is not charged as well.
#[tokio::test]
async fn store_transfers_are_charged_to_the_address() {
    // A bucket of 1,000 bytes: smaller than the pack.
    let s = server_then(&["ws/repo"], |st| {
        st.rate_limits(Limits {
            address_bytes_per_minute: 6_000,
            ..Limits::default()
        })
    })
    .await;
    let rw = token("ws", Permission::ReadWrite);
    let blobs = crate::pack::testing::blob_pack(3, 1, 5000);
    let (name, pack, idx, a) = (blobs.name, blobs.pack, blobs.idx, blobs.ids[0].clone());
    let body = json!({"packs": [{"name": name, "pack_size": pack.len(), "idx_size": idx.len()}]});
    let r = s
        .api_at("192.0.2.1", "ws/repo", "uploads", &rw, body.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Handed out again at once: not charged (the transfer will be).
    let r = s.api_at("192.0.2.1", "ws/repo", "uploads", &rw, body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let up: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let up = &up.uploads[0];
    let r = s
        .presigned_from(
            "192.0.2.1",
            &up.idx.url,
            Method::PUT,
            idx.clone(),
            &headers_of(&up.idx),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let pack_put = up.pack.as_ref().expect("single put");
    // The idx put the address into debt: the pack waits, and nothing is written.
    let r = s
        .presigned_from(
            "192.0.2.1",
            &pack_put.url,
            Method::PUT,
            pack.clone(),
            &headers_of(pack_put),
        )
        .await;
    limited_429(
        &r,
        "byte rate limit of 6000 bytes a minute for this address",
    );
    let on_disk = s
        .root
        .join(format!("ws/artifacts/repo/.git/objects/pack/{name}.pack"));
    assert!(!on_disk.exists());
    // Another address moves it (the URL is what grants it).
    let r = s
        .presigned_from(
            "192.0.2.2",
            &pack_put.url,
            Method::PUT,
            pack.clone(),
            &headers_of(pack_put),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut push = update_body("refs/heads/main", None, Some(&a));
    push["packs"] = json!([name]);
    let r = s.api_at("192.0.2.3", "ws/repo", "update", &rw, push).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Downloads alike: the first GET goes, the next waits.
    let r = s
        .api_at("192.0.2.3", "ws/repo", "packs", &rw, json!({}))
        .await;
    let packs: api::PacksResponse = serde_json::from_slice(&r.body).unwrap();
    let url = packs.packs[0].pack_url.clone().unwrap();
    let r = s
        .presigned_from("192.0.2.3", &url, Method::GET, vec![], &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), pack.as_slice());
    let r = s
        .presigned_from("192.0.2.3", &url, Method::GET, vec![], &[])
        .await;
    limited_429(
        &r,
        "byte rate limit of 6000 bytes a minute for this address",
    );
    assert_eq!(s.counted("byte_limited_address"), "2");
}

/// Pending uploads per workspace: count and bytes, across its repositories, with the quota
/// and the numbers in the message; URLs asked again for the same pack do not count twice;
/// an update that commits them frees the room; other workspaces are not affected.
#[tokio::test]
async fn pending_uploads_are_counted_per_workspace() {
    let s = server_then(&["ws/a", "ws/b", "other/a"], |st| {
        st.quotas(Quotas {
            pending_uploads: 2,
            pending_bytes: 10_000,
            ..Quotas::default()
        })
    })
    .await;
    let rw = token("*", Permission::ReadWrite);
    let t = Some(rw.as_str());
    let r = s
        .api(
            "ws/a",
            "uploads",
            t,
            uploads_of(&[(&pack_name(1), 100), (&pack_name(2), 100)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The same two again (a client asking fresh URLs): still two.
    let r = s
        .api(
            "ws/a",
            "uploads",
            t,
            uploads_of(&[(&pack_name(1), 100), (&pack_name(2), 100)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A third, in another repository of the workspace: refused, and nothing marked.
    let r = s.api("ws/b", "uploads", t, upload_of(3, 100)).await;
    over_quota(
        &r,
        &[
            "quota of 2 pending uploads for workspace ws reached",
            "2 uploads in flight and 1 more asked",
        ],
    );
    let b = s.state.store().repo("ws", "b").unwrap();
    assert_eq!(b.staged_uploads().await.unwrap(), 0);
    // Another workspace has its own.
    let r = s.api("other/a", "uploads", t, upload_of(4, 9_000)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Bytes: 9,100 in flight, 1,100 more asked, past 10,000.
    let r = s.api("other/a", "uploads", t, upload_of(5, 1_000)).await;
    over_quota(
        &r,
        &[
            "quota of 10000 bytes of pending uploads for workspace other reached",
            "9100 bytes in flight and 1100 bytes more asked",
        ],
    );
    // An abort frees its place... (of a multipart upload; this one was a single PUT, so the
    // store refuses the abort, and the ledger keeps it).
    // A push that commits frees them: pack 1 and 2 of ws/a uploaded for real would be
    // committed by `update`; here the ledger is told directly, as `update` tells it.
    let a = s.state.store().repo("ws", "a").unwrap();
    let quotas = s.state.quotas.clone().unwrap();
    quotas.committed("ws", &a, &[(pack_name(1), 0)], 0);
    let r = s.api("ws/b", "uploads", t, upload_of(3, 100)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(s.counted("quota_pending_uploads"), "1");
    assert_eq!(s.counted("quota_pending_bytes"), "1");
}

/// Stored bytes per workspace: one listing (what earlier pushes left, uploads in flight
/// not counted as stored), then the total kept by what this server commits, so that a push
/// that would take the workspace past the quota is refused, by `uploads` or by an inline
/// `update`, with the numbers, and the refs stay as they were.
#[tokio::test]
async fn stored_bytes_are_listed_once_then_kept() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut s = server_with(|s| s.inline_max(1 << 20));
    s.create("ws/old", false).await;
    s.create("ws/new", false).await;
    s.put_objects("ws/old");
    let old = s.root.join("ws/artifacts/old/.git/objects/pack");
    let listed: u64 = std::fs::read_dir(&old)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // An LFS object of 1,000 bytes counts too.
    let lfs = s.root.join("ws/artifacts/old/git/lfs/objects/aa/bb");
    std::fs::create_dir_all(&lfs).unwrap();
    std::fs::write(lfs.join(format!("aabb{}", "0".repeat(60))), vec![0u8; 1000]).unwrap();
    let stored = listed + 1000;
    let (name, pack, idx, commit) = real_pack();
    let inline_size = (pack.len() + idx.len()) as u64;
    // Room for the stored bytes and the inline push (its size is taken from the base64
    // text first, a few bytes more), not for much more.
    let quota = stored + inline_size + 8;
    s.state = s.state.clone().quotas(Quotas {
        stored_bytes: quota,
        ..Quotas::default()
    });
    let rw = token("ws", Permission::ReadWrite);
    let t = Some(rw.as_str());
    // An upload of (quota - stored + 1) bytes: refused, with the numbers.
    let too_much = inline_size + 8 - 100 + 1;
    let r = s
        .api(
            "ws/new",
            "uploads",
            t,
            uploads_of(&[(&pack_name(9), too_much)]),
        )
        .await;
    over_quota(
        &r,
        &[
            &format!("storage quota of {quota} bytes for workspace ws reached"),
            &format!(
                "{stored} bytes stored, 0 bytes in flight, and this push adds {} bytes",
                too_much + 100
            ),
        ],
    );
    let new = s.state.store().repo("ws", "new").unwrap();
    assert_eq!(new.staged_uploads().await.unwrap(), 0, "nothing marked");
    // The inline push that fits exactly goes, and is counted without a listing.
    let push = json!({"updates": [{"ref": "refs/heads/main", "old": null, "new": commit}],
        "inline": [{"name": name, "pack": b64(&pack), "idx": b64(&idx)}]});
    let r = s.api("ws/new", "update", t, push).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["results"][0]["status"], "ok");
    // Now full: any push of new bytes is refused, inline or not, and no ref moves.
    let (name2, pack2, idx2, commit2) = {
        let blobs = crate::pack::testing::blob_pack(4, 1, 50);
        (blobs.name, blobs.pack, blobs.idx, blobs.ids[0].clone())
    };
    let push = json!({"updates": [{"ref": "refs/heads/other", "old": null, "new": commit2}],
        "inline": [{"name": name2, "pack": b64(&pack2), "idx": b64(&idx2)}]});
    let r = s.api("ws/new", "update", t, push).await;
    over_quota(
        &r,
        &[
            &format!("storage quota of {quota} bytes for workspace ws reached"),
            &format!("{} bytes stored", stored + inline_size),
        ],
    );
    let r = s.api("ws/new", "refs", t, json!({})).await;
    assert_eq!(r.json()["refs"], json!({"refs/heads/main": commit}));
    let r = s.api("ws/old", "uploads", t, upload_of(7, 1)).await;
    over_quota(&r, &["storage quota"]);
    assert_eq!(s.counted("quota_stored_bytes"), "3");
    // Another workspace is not affected.
    s.create("ws2/r", false).await;
    let rw2 = token("ws2", Permission::ReadWrite);
    let r = s
        .api("ws2/r", "uploads", Some(&rw2), upload_of(7, 1000))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// The LFS batch: uploads count as pending and against the stored bytes, refused the way
/// git-lfs prints an error.
#[tokio::test]
async fn lfs_uploads_meet_the_quotas() {
    let s = server_then(&["ws/repo"], |st| {
        st.quotas(Quotas {
            stored_bytes: 5_000,
            ..Quotas::default()
        })
    })
    .await;
    let rw = token("ws", Permission::ReadWrite);
    let batch = |oid: &str, size: u64| {
        json!({"operation": "upload", "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size}]})
    };
    let send = |body: Value| {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/ws/git/repo.git/info/lfs/objects/batch")
            .header(header::AUTHORIZATION, format!("Bearer {rw}"))
            .header(header::ACCEPT, api::lfs::MEDIA_TYPE)
            .body(Body::from(body.to_string()))
            .unwrap();
        s.send(req)
    };
    let r = send(batch(&"a".repeat(64), 4_000)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = send(batch(&"b".repeat(64), 1_001)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], api::lfs::MEDIA_TYPE);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("storage quota of 5000 bytes for workspace ws reached: 0 bytes stored, 4000 bytes in flight, and this push adds 1001 bytes"),
        "{message}"
    );
}

/// Through the plugin: the quota counts the workspace of the URL, over the prefix Hypha
/// gave (its artifacts' prefix is listed), and the user's byte budget is Hypha's user.
#[tokio::test]
async fn plugin_mode_applies_the_quotas_and_byte_limits() {
    let mut s = plugin_server().await;
    s.state = s
        .state
        .clone()
        .quotas(Quotas {
            pending_uploads: 1,
            ..Quotas::default()
        })
        .rate_limits(Limits {
            token_bytes_per_minute: 600,
            address_bytes_per_minute: 600,
            ..Limits::default()
        });
    let mut headers = plugin_headers("write", PREFIX);
    headers.pop();
    headers.push(("x-hypha-user", "u-alice"));
    let r = s.plugin("uploads", &headers, upload_of(1, 1000)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Alice is in debt now; Bob is not, but the workspace's one pending upload is taken.
    let r = s.plugin("uploads", &headers, upload_of(2, 10)).await;
    limited_429(&r, "byte rate limit of 600 bytes a minute for this user");
    headers.pop();
    headers.push(("x-hypha-user", "u-bob"));
    let r = s.plugin("uploads", &headers, upload_of(2, 10)).await;
    over_quota(&r, &["quota of 1 pending uploads for workspace ws reached"]);
}

/// An `uploads` that fails after the quota let it through (here: the pack is stored already)
/// leaves nothing in flight.
#[tokio::test]
async fn a_failed_uploads_request_leaves_nothing_pending() {
    let s = server_then(&["ws/repo"], |st| {
        st.quotas(Quotas {
            pending_uploads: 1,
            ..Quotas::default()
        })
    })
    .await;
    s.put_objects("ws/repo");
    let rw = token("ws", Permission::ReadWrite);
    let t = Some(rw.as_str());
    let stored = format!("pack-{}", hex::encode([0xabu8; 20]));
    let r = s
        .api("ws/repo", "uploads", t, uploads_of(&[(&stored, 100)]))
        .await;
    assert_ne!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        String::from_utf8_lossy(&r.body).contains("already in the repository"),
        "{:?}",
        r.body
    );
    let r = s.api("ws/repo", "uploads", t, upload_of(2, 100)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}
