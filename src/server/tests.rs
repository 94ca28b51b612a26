//! Handler tests: `router(state)` driven without a socket (`tower::ServiceExt::oneshot`).
//! Auth rules, error codes, hostile input, and the presigned `/_store` URLs end to end.

use super::*;
use crate::api::{self, ErrorCode};
use crate::auth::Permission;
use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &[u8] = b"jwt-secret-for-tests";
const BASE: &str = "http://hypha.test";
const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

struct Server {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: AppState,
}

fn server() -> Server {
    server_with(|s| s)
}

fn server_with(f: impl FnOnce(AppState) -> AppState) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::new(dir.path(), BASE, b"presign-secret").unwrap();
    let root = disk.root().to_owned();
    Server {
        _dir: dir,
        root,
        state: f(AppState::with_local_disk(disk, SECRET)),
    }
}

fn token(ws: &str, p: Permission) -> String {
    auth::mint(
        SECRET,
        "tester",
        &[(ws.to_owned(), p)],
        Duration::from_secs(600),
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", self.body))
    }
    fn error(&self) -> ErrorCode {
        serde_json::from_slice::<api::ErrorBody>(&self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {:?}", self.body))
            .error
    }
}

impl Server {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn raw(&self, uri: &str, auth: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut req = Request::builder().method(Method::POST).uri(uri);
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    async fn api(&self, repo: &str, route: &str, token: Option<&str>, body: Value) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        self.raw(
            &format!("/{}", repo_route(repo, route)),
            auth.as_deref(),
            body.to_string(),
        )
        .await
    }

    /// A live pack in `repo` (`ws/alias`) holding `A`, as an earlier push left it: a ref may
    /// only point at an object some pack holds.
    fn put_objects(&self, repo: &str) {
        let (ws, alias) = repo.split_once('/').unwrap();
        let dir = self
            .root
            .join(format!("{ws}/artifacts/{alias}/.git/objects/pack"));
        let (pack, idx) = fake_pack(0xab, 10);
        let name = format!("pack-{}", hex::encode([0xabu8; 20]));
        std::fs::write(dir.join(format!("{name}.idx")), idx).unwrap();
        std::fs::write(dir.join(format!("{name}.pack")), pack).unwrap();
    }

    async fn create(&self, repo: &str, public: bool) {
        let ws = repo.split('/').next().unwrap();
        let admin = token(ws, Permission::Admin);
        let r = self
            .api(repo, "create", Some(&admin), json!({"public": public}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// Send a presigned request the way a client would: exactly its method, URL and headers.
    async fn presigned(
        &self,
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
        self.send(req.body(Body::from(body)).unwrap()).await
    }
}

fn repo_route(repo: &str, route: &str) -> String {
    let (ws, alias) = repo.split_once('/').unwrap();
    api::route_path(
        ws,
        alias,
        match route {
            "info" => api::Route::Info,
            "refs" => api::Route::Refs,
            "packs" => api::Route::Packs,
            "uploads" => api::Route::Uploads,
            "update" => api::Route::Update,
            "head" => api::Route::Head,
            "create" => api::Route::Create,
            "hooks" => api::Route::Hooks,
            "fix-thin" => api::Route::FixThin,
            "lfs-prune" => api::Route::LfsPrune,
            other => panic!("{other}"),
        },
    )
}

fn update_body(name: &str, old: Option<&str>, new: Option<&str>) -> Value {
    json!({"updates": [{"ref": name, "old": old, "new": new}]})
}

#[tokio::test]
async fn create_then_read_an_empty_repository() {
    let s = server();
    let rw = token("ws", Permission::ReadWrite);
    let r = s.api("ws/repo", "create", Some(&rw), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["default_branch"], "main");
    let r = s.api("ws/repo", "create", Some(&rw), json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error(), ErrorCode::Exists);

    let r = s.api("ws/repo", "info", Some(&rw), json!({})).await;
    let info: api::InfoResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info.api, 1);
    assert_eq!(info.object_format, "sha1");
    assert!(info.can_write && !info.public);
    assert_eq!(info.max_single_put, DEFAULT_MAX_SINGLE_PUT);

    let r = s.api("ws/repo", "refs", Some(&rw), json!({})).await;
    assert_eq!(
        r.json(),
        json!({"head": {"symref": "refs/heads/main"}, "refs": {}})
    );
    // An empty body is fine for routes without required fields; `.git` names the same repo.
    let r = s
        .raw(
            &format!("/{}", repo_route("ws/repo.git", "packs")),
            Some(&format!("Bearer {rw}")),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["packs"], json!([]));

    let r = s
        .api(
            "ws/repo",
            "head",
            Some(&rw),
            json!({"symref": "refs/heads/dev"}),
        )
        .await;
    assert_eq!(r.json()["head"]["symref"], "refs/heads/dev");
    let r = s.api("ws/repo", "info", Some(&rw), json!({})).await;
    assert_eq!(r.json()["default_branch"], "dev");
}

#[tokio::test]
async fn permissions_on_private_and_public_repositories() {
    let s = server();
    s.create("ws/private", false).await;
    s.create("ws/public", true).await;
    s.put_objects("ws/private");
    s.put_objects("ws/public");
    let r_tok = token("ws", Permission::Read);
    let rw_tok = token("ws", Permission::ReadWrite);
    let other = token("elsewhere", Permission::Admin);
    let expired = auth::mint_at(
        SECRET,
        "t",
        &[("ws".into(), Permission::Admin)],
        1,
        2,
        &auth::Validation::default(),
    );
    let forged = auth::mint(
        b"not-the-secret",
        "t",
        &[("*".into(), Permission::Admin)],
        Duration::from_secs(60),
    );
    let push = update_body("refs/heads/main", None, Some(A));

    // Anonymous: public reads only; 401 (with a challenge) hides whether a repo exists.
    for repo in ["ws/private", "ws/missing"] {
        let r = s.api(repo, "refs", None, json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{repo}");
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Basic realm=\"hypha\"");
    }
    assert_eq!(
        s.api("ws/public", "refs", None, json!({})).await.status,
        StatusCode::OK
    );
    let info = s.api("ws/public", "info", None, json!({})).await.json();
    assert_eq!(info["can_write"], false);
    assert_eq!(info["public"], true);
    assert_eq!(
        s.api("ws/public", "update", None, push.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.api("ws/new", "create", None, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Read token: reads, no writes; a missing repo is a plain 404 naming it.
    assert_eq!(
        s.api("ws/private", "refs", Some(&r_tok), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.api("ws/private", "info", Some(&r_tok), json!({}))
            .await
            .json()["can_write"],
        false
    );
    for route in ["update", "uploads", "head"] {
        let r = s.api("ws/private", route, Some(&r_tok), push.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{route}");
    }
    assert_eq!(
        s.api("ws/new", "create", Some(&r_tok), json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = s.api("ws/missing", "refs", Some(&r_tok), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["detail"].as_str().unwrap().contains("ws/missing"));

    // Write token.
    let r = s
        .api("ws/private", "update", Some(&rw_tok), push.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["results"][0]["status"], "ok");
    let r = s
        .api("ws/missing", "update", Some(&rw_tok), push.clone())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A token for another workspace: public reads only, 403 otherwise, existing or not.
    assert_eq!(
        s.api("ws/public", "refs", Some(&other), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    for repo in ["ws/private", "ws/missing"] {
        assert_eq!(
            s.api(repo, "refs", Some(&other), json!({})).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        s.api("ws/public", "update", Some(&other), push.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Bad tokens are 401 even where anonymous reads are allowed, and never echoed.
    for bad in [&expired, &forged] {
        for repo in ["ws/public", "ws/private"] {
            let r = s.api(repo, "refs", Some(bad), json!({})).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.error(), ErrorCode::Unauthenticated);
            let text = String::from_utf8_lossy(&r.body);
            assert!(!text.contains(bad.as_str()));
        }
    }
}

/// `refs` answers `can_write` when the listing is for a push, and only then (older clients
/// see the answer they always did).
#[tokio::test]
async fn refs_for_push_says_whether_the_caller_may_write() {
    let s = server();
    s.create("ws/private", false).await;
    s.create("ws/public", true).await;
    let for_push = json!({"for_push": true});
    let cases = [
        ("ws/private", Some(token("ws", Permission::Read)), false),
        ("ws/private", Some(token("ws", Permission::ReadWrite)), true),
        ("ws/private", Some(token("ws", Permission::Admin)), true),
        ("ws/public", None, false),
        (
            "ws/public",
            Some(token("elsewhere", Permission::Admin)),
            false,
        ),
        ("ws/public", Some(token("ws", Permission::ReadWrite)), true),
    ];
    for (repo, tok, can_write) in &cases {
        let r = s.api(repo, "refs", tok.as_deref(), for_push.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{repo}");
        assert_eq!(r.json()["can_write"], *can_write, "{repo} {tok:?}");
        let r = s.api(repo, "refs", tok.as_deref(), json!({})).await;
        assert!(r.json().get("can_write").is_none(), "{repo}: not asked");
    }
    // A body `refs` cannot read still lists, as before `for_push` existed.
    let rw = token("ws", Permission::ReadWrite);
    let uri = format!("/{}", repo_route("ws/private", "refs"));
    let r = s.raw(&uri, Some(&format!("Bearer {rw}")), "not json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("can_write").is_none());
}

#[tokio::test]
async fn basic_auth_with_user_git() {
    use base64::Engine as _;
    let s = server();
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::Read);
    let uri = format!("/{}", repo_route("ws/repo", "refs"));
    let basic = |user: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{tok}"))
        )
    };
    assert_eq!(
        s.raw(&uri, Some(&basic("git")), "{}").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.raw(&uri, Some(&basic("")), "{}").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.raw(&uri, Some(&basic("alice")), "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.raw(&uri, Some("Basic !!!"), "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.raw(&uri, Some("Digest x"), "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.raw(&uri, Some(&format!("bearer {tok}")), "{}")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hostile_names_and_bodies() {
    let s = server();
    s.create("ws/repo", false).await;
    let admin = format!("Bearer {}", token("*", Permission::Admin));
    let auth = Some(admin.as_str());
    for path in [
        "/../git/repo/remote/v1/refs",
        "/%2e%2e/git/repo/remote/v1/refs",
        "/ws/git/%2e%2e/remote/v1/refs",
        "/ws/git/..%2f..%2fetc/remote/v1/refs",
        "/ws/git/.git/remote/v1/refs",
        "/ws/git/-x/remote/v1/refs",
    ] {
        let r = s.raw(path, auth, "{}").await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            r.status
        );
    }
    let r = s.raw("/ws/git/repo/remote/v1/nope", auth, "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error(), ErrorCode::NotFound);
    let r = s.raw("/ws/git/repo/remote/v2/refs", auth, "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let token = token("ws", Permission::ReadWrite);
    let t = Some(token.as_str());
    let long_ref = format!("refs/heads/{}", "x".repeat(10 * 1024));
    for body in [
        update_body(&long_ref, None, Some(A)),
        update_body("refs/heads/../../../etc", None, Some(A)),
        update_body("HEAD", None, Some(A)),
        update_body("refs/heads/ok", None, Some("not-an-oid")),
        json!({"updates": [], "packs": ["pack-../../x"]}),
        json!({"updates": "nope"}),
    ] {
        let r = s.api("ws/repo", "update", t, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.error(), ErrorCode::Invalid);
        assert!(r.body.len() < 1024, "errors stay short");
    }
    for name in ["pack-../../x", "pack-ABC", &format!("pack-{A}.pack"), ""] {
        let r = s
            .api(
                "ws/repo",
                "uploads",
                t,
                json!({"packs": [{"name": name, "pack_size": 10, "idx_size": 10}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
    }
    // A pack may exceed one PUT (it goes up in parts, on local disk too); its idx may not.
    let too_big = crate::repo::upload::MAX_MULTIPART_SIZE + 1;
    for (pack_size, idx_size) in [
        (0, 10),
        (10, 0),
        (too_big, 10),
        (10, DEFAULT_MAX_SINGLE_PUT + 1),
    ] {
        let r = s
            .api("ws/repo", "uploads", t, json!({"packs": [{"name": format!("pack-{A}"), "pack_size": pack_size, "idx_size": idx_size}]}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = s
        .api("ws/repo", "head", t, json!({"symref": "refs/heads/a b"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let uri = format!("/{}", repo_route("ws/repo", "update"));
    let bearer = format!("Bearer {token}");
    let r = s.raw(&uri, Some(&bearer), "{not json").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = format!(
        "{{\"updates\": [], \"pad\": \"{}\"}}",
        "x".repeat(2 * crate::server::MAX_JSON_BODY)
    );
    let r = s.raw(&uri, Some(&bearer), huge).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Unknown fields are ignored.
    let r = s
        .raw(&uri, Some(&bearer), r#"{"updates": [], "future": 1}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A pack whose idx lists `A`, the object these tests point refs at.
fn fake_pack(checksum: u8, body_len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    pack.extend((0..body_len).map(|i| i as u8));
    pack.extend([checksum; 20]);
    let idx = crate::repo::conformance::idx_listing(&[A], [checksum; 20]);
    (pack, idx)
}

/// A real pack of one commit, made by git: (name, pack, idx, the commit's id).
fn real_pack() -> (String, Vec<u8>, Vec<u8>, String) {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(dir.path())
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    std::fs::write(dir.path().join("f.txt"), "inline\n").unwrap();
    git(&["add", "f.txt"]);
    git(&["commit", "-qm", "c"]);
    let commit = git(&["rev-parse", "HEAD"]);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["pack-objects", "--revs", "-q", "out/pack"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"HEAD\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let read =
        |ext: &str| std::fs::read(dir.path().join(format!("out/pack-{hash}.{ext}"))).unwrap();
    (format!("pack-{hash}"), read("pack"), read("idx"), commit)
}

fn headers_of(req: &api::PresignedRequest) -> Vec<(&str, String)> {
    req.headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect()
}

#[tokio::test]
async fn push_and_fetch_through_presigned_urls() {
    let s = server();
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::ReadWrite);
    let t = Some(tok.as_str());
    // A real pack: `update` indexes what it has not checked (issue 21).
    let blobs = crate::pack::testing::blob_pack(3, 1, 5000);
    let (name, pack, idx, a) = (blobs.name, blobs.pack, blobs.idx, blobs.ids[0].clone());

    let r = s
        .api(
            "ws/repo",
            "uploads",
            t,
            json!({"packs": [{"name": name, "pack_size": pack.len(), "idx_size": idx.len()}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let uploads: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let up = &uploads.uploads[0];
    assert_eq!(up.idx.method, "PUT");
    assert_eq!(up.idx.headers["Content-Type"], "application/octet-stream");
    assert_eq!(
        up.pack.as_ref().expect("single put").headers["Content-Length"],
        pack.len().to_string()
    );
    assert!(up
        .pack
        .as_ref()
        .expect("single put")
        .url
        .starts_with(&format!("{BASE}/_store/")));

    // Updating before the upload finished is refused, naming the pack.
    let mut push = update_body("refs/heads/main", None, Some(&a));
    push["packs"] = json!([name]);
    let r = s.api("ws/repo", "update", t, push.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["detail"].as_str().unwrap().contains(&name));

    let r = s
        .presigned(&up.idx.url, Method::PUT, idx.clone(), &headers_of(&up.idx))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .presigned(
            &up.pack.as_ref().expect("single put").url,
            Method::PUT,
            pack.clone(),
            &headers_of(up.pack.as_ref().expect("single put")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let on_disk = s
        .root
        .join(format!("ws/artifacts/repo/.git/objects/pack/{name}.pack"));
    assert_eq!(std::fs::read(&on_disk).unwrap(), pack);

    let r = s.api("ws/repo", "update", t, push).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["results"][0]["status"], "ok");

    let r = s.api("ws/repo", "packs", t, json!({})).await;
    let packs: api::PacksResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(packs.packs.len(), 1);
    let info = &packs.packs[0];
    assert_eq!(
        (info.pack_size, info.idx_size),
        (pack.len() as u64, idx.len() as u64)
    );
    assert!(packs.expires_at > auth::unix_now());
    let pack_url = info.pack_url.clone().unwrap();
    let r = s.presigned(&pack_url, Method::GET, vec![], &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), pack.as_slice());
    assert_eq!(r.headers[header::ACCEPT_RANGES], "bytes");
    let r = s
        .presigned(info.idx_url.as_deref().unwrap(), Method::GET, vec![], &[])
        .await;
    assert_eq!(r.body.as_ref(), idx.as_slice());

    // Ranges.
    let len = pack.len();
    for (range, start, end) in [
        ("bytes=0-11".to_owned(), 0, 11),
        ("bytes=-20".to_owned(), len - 20, len - 1),
        (format!("bytes={}-", len - 30), len - 30, len - 1),
        (format!("bytes=100-{}", len + 100), 100, len - 1),
    ] {
        let r = s
            .presigned(&pack_url, Method::GET, vec![], &[("Range", range.clone())])
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers[header::CONTENT_RANGE],
            format!("bytes {start}-{end}/{len}")
        );
        assert_eq!(r.body.as_ref(), &pack[start..=end], "{range}");
    }
    let r = s
        .presigned(
            &pack_url,
            Method::GET,
            vec![],
            &[("Range", format!("bytes={len}-"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers[header::CONTENT_RANGE], format!("bytes */{len}"));

    // Known packs get no URLs.
    let r = s.api("ws/repo", "packs", t, json!({"known": [name]})).await;
    let packs: api::PacksResponse = serde_json::from_slice(&r.body).unwrap();
    assert!(packs.packs[0].pack_url.is_none() && packs.packs[0].idx_url.is_none());

    // A mismatched idx is refused at update time.
    let (blobs2, blobs3) = (
        crate::pack::testing::blob_pack(4, 1, 10),
        crate::pack::testing::blob_pack(5, 1, 10),
    );
    let (other, pack2, idx2) = (blobs2.name, blobs2.pack, blobs3.idx);
    let r = s
        .api(
            "ws/repo",
            "uploads",
            t,
            json!({"packs": [{"name": other, "pack_size": pack2.len(), "idx_size": idx2.len()}]}),
        )
        .await;
    let uploads: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let up = &uploads.uploads[0];
    s.presigned(&up.idx.url, Method::PUT, idx2, &headers_of(&up.idx))
        .await;
    s.presigned(
        &up.pack.as_ref().expect("single put").url,
        Method::PUT,
        pack2,
        &headers_of(up.pack.as_ref().expect("single put")),
    )
    .await;
    let mut push = update_body("refs/heads/main", Some(&a), Some(&blobs2.ids[0]));
    push["packs"] = json!([other]);
    let r = s.api("ws/repo", "update", t, push).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("does not belong"),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn presigned_put_refuses_wrong_sizes_and_bad_signatures() {
    let s = server();
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::ReadWrite);
    let name = format!("pack-{A}");
    let r = s
        .api(
            "ws/repo",
            "uploads",
            Some(&tok),
            json!({"packs": [{"name": name, "pack_size": 100, "idx_size": 50}]}),
        )
        .await;
    let uploads: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let url = uploads.uploads[0]
        .pack
        .as_ref()
        .expect("single put")
        .url
        .clone();
    let target = s
        .root
        .join(format!("ws/artifacts/repo/.git/objects/pack/{name}.pack"));
    let pack_dir = target.parent().unwrap().to_owned();
    let leftovers = || {
        std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".gitkeep")
            .collect::<Vec<_>>()
    };

    // Longer and shorter bodies, without a Content-Length to catch them early.
    for len in [101, 99, 0] {
        let r = s.presigned(&url, Method::PUT, vec![1; len], &[]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{len}");
        assert!(leftovers().is_empty(), "{len}: {:?}", leftovers());
    }
    // A declared length that differs from the signed one.
    let r = s
        .presigned(
            &url,
            Method::PUT,
            vec![1; 100],
            &[("Content-Length", "101".into())],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Tampering: another key, another size, another signature, no signature, wrong method
    // (a pack's URL only creates: turned into a replacing PUT, it is refused too).
    assert!(url.contains("method=CREATE"), "{url}");
    let tampered = [
        url.replace(&name, &format!("pack-{}", "c".repeat(40))),
        url.replace("size=100", "size=101"),
        url.replace("sig=", "sig=00"),
        url.replace("method=CREATE", "method=GET"),
        url.replace("method=CREATE", "method=PUT"),
        url.split('?').next().unwrap().to_owned(),
        url.replace("expires=", "expires=9"),
    ];
    for bad in &tampered {
        let r = s.presigned(bad, Method::PUT, vec![1; 100], &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{bad}");
        assert_eq!(r.error(), ErrorCode::Forbidden);
    }
    let r = s.presigned(&url, Method::GET, vec![], &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a PUT URL does not read");
    assert!(leftovers().is_empty());

    let r = s.presigned(&url, Method::PUT, vec![1; 100], &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(std::fs::read(&target).unwrap(), vec![1; 100]);
}

#[tokio::test]
async fn expired_presigned_urls_are_refused() {
    let s = server_with(|st| st.presign_expires_in(Duration::ZERO));
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::ReadWrite);
    let r = s
        .api(
            "ws/repo",
            "uploads",
            Some(&tok),
            json!({"packs": [{"name": format!("pack-{A}"), "pack_size": 10, "idx_size": 10}]}),
        )
        .await;
    let uploads: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let r = s
        .presigned(&uploads.uploads[0].idx.url, Method::PUT, vec![0; 10], &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));
}

#[tokio::test]
async fn store_urls_refuse_escaping_keys() {
    let s = server();
    std::fs::write(s.root.join("secret"), b"x").unwrap();
    for path in [
        "/_store/../secret",
        "/_store/%2e%2e/secret",
        "/_store/secret",
        "/_store/a//b",
    ] {
        let r = s
            .presigned(&format!("{BASE}{path}"), Method::GET, vec![], &[])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn stale_and_atomic_over_http() {
    let s = server();
    s.create("ws/repo", false).await;
    s.put_objects("ws/repo");
    let tok = token("ws", Permission::ReadWrite);
    let t = Some(tok.as_str());
    s.api(
        "ws/repo",
        "update",
        t,
        update_body("refs/heads/main", None, Some(A)),
    )
    .await;
    let b = "b".repeat(40);
    let r = s
        .api(
            "ws/repo",
            "update",
            t,
            json!({"atomic": true, "push_options": ["ci.skip"], "updates": [
                {"ref": "refs/heads/x", "old": null, "new": A},
                {"ref": "refs/heads/main", "old": b, "new": A},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["results"],
        json!([
            {"ref": "refs/heads/x", "status": "rejected", "detail": "atomic push failed"},
            {"ref": "refs/heads/main", "status": "stale", "current": A},
        ])
    );
    let r = s
        .api(
            "ws/repo",
            "update",
            t,
            update_body("refs/heads/main", Some(A), None),
        )
        .await;
    assert_eq!(
        r.json()["results"][0]["detail"],
        crate::repo::DENY_DELETE_CURRENT
    );
}

#[tokio::test]
async fn presigned_put_streams_past_the_json_body_limit() {
    let s = server();
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::ReadWrite);
    let size = 3 * MAX_JSON_BODY;
    let r = s
        .api(
            "ws/repo",
            "uploads",
            Some(&tok),
            json!({"packs": [{"name": format!("pack-{A}"), "pack_size": size, "idx_size": 64}]}),
        )
        .await;
    let uploads: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let up = uploads.uploads[0].pack.as_ref().expect("single put");
    let r = s
        .presigned(&up.url, Method::PUT, vec![7; size], &headers_of(up))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .presigned(
            &up.url.replace("method=CREATE", "method=GET"),
            Method::GET,
            vec![],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

// -- plugin mode (`serve --plugin`): the Hypha plugin forwards what Hypha checked ----------

const PLUGIN_KEY: &str = "k3y-of-this-plugin-child-0123456789abcdef";
const PREFIX: &str = "ws/artifacts/01abc-uuid/.git/";

/// A plugin-mode server with an empty repository at [`PREFIX`], as Hypha's `create` makes it.
async fn plugin_server() -> Server {
    let s = server_with(|s| s.plugin_key(PLUGIN_KEY.as_bytes()));
    let repo = s.state.store.repo_at("ws/r", PREFIX).unwrap();
    repo.create(false, None).await.unwrap();
    s
}

impl Server {
    async fn plugin(&self, route: &str, headers: &[(&str, &str)], body: Value) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/{}", repo_route("ws/r", route)));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

/// The headers of a request the plugin forwards for a Hypha user (`x-hypha-user`, last: a
/// test that needs another user or Hypha's anonymous one replaces or drops it).
fn plugin_headers<'a>(permission: &'a str, prefix: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("x-hypha-plugin-key", PLUGIN_KEY),
        ("x-hypha-permission", permission),
        ("x-hypha-repo-prefix", prefix),
        ("x-hypha-user", "u-carol"),
    ]
}

#[tokio::test]
async fn plugin_mode_needs_the_key_and_ignores_tokens() {
    let s = plugin_server().await;
    let admin = format!("Bearer {}", token("*", Permission::Admin));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![
            ("x-hypha-permission", "write"),
            ("x-hypha-repo-prefix", PREFIX),
        ],
        vec![
            (
                "x-hypha-plugin-key",
                "k3y-of-this-plugin-child-0123456789abcdeX",
            ),
            ("x-hypha-permission", "write"),
            ("x-hypha-repo-prefix", PREFIX),
        ],
        vec![
            ("x-hypha-plugin-key", &PLUGIN_KEY[..10]),
            ("x-hypha-permission", "write"),
            ("x-hypha-repo-prefix", PREFIX),
        ],
        // A valid token grants nothing here: Hypha checks tokens, the key proves it did.
        vec![
            ("authorization", &admin),
            ("x-hypha-permission", "write"),
            ("x-hypha-repo-prefix", PREFIX),
        ],
    ];
    for headers in cases {
        let r = s.plugin("refs", &headers, json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.error(), ErrorCode::Unauthenticated);
    }
    let r = s
        .plugin("refs", &plugin_headers("read", PREFIX), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["head"]["symref"], "refs/heads/main");
}

#[tokio::test]
async fn plugin_mode_honours_the_permission_hypha_granted() {
    let s = plugin_server().await;
    let read = plugin_headers("read", PREFIX);
    let write = plugin_headers("write", PREFIX);
    let r = s
        .plugin(
            "update",
            &read,
            update_body("refs/heads/main", None, Some(A)),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(r.json()["detail"].as_str().unwrap().contains("ws/r"));
    let r = s.plugin("info", &read, json!({})).await;
    assert_eq!(r.json()["can_write"], false);
    let r = s.plugin("info", &write, json!({})).await;
    assert_eq!(r.json()["can_write"], true);
    // Written where Hypha said, not at the route's ws/artifacts/r.
    let (pack, _, id) = push_one_pack(&s, &write).await;
    let r = s
        .plugin(
            "update",
            &write,
            json!({"updates": [{"ref": "refs/heads/main", "old": null, "new": id}], "packs": [pack]}),
        )
        .await;
    assert_eq!(r.json()["results"][0]["status"], "ok", "{:?}", r.body);
    assert!(s.root.join(PREFIX).join("refs/heads/main").exists());
    assert!(!s.root.join("ws/artifacts/r").exists());
    // Unknown permissions and `create` (Hypha creates artifacts) are refused. (`admin` is
    // known since webhooks: Hypha's `get_secret`, below.)
    let r = s
        .plugin("refs", &plugin_headers("owner", PREFIX), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Managing webhooks takes what Hypha grants workspace admins only; `write` is refused.
    let r = s.plugin("hooks", &write, json!({"action": "list"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let admin = plugin_headers("admin", PREFIX);
    let r = s.plugin("hooks", &admin, json!({"action": "list"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["hooks"], json!([]));
    let r = s.plugin("create", &write, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The lease routes answer the plugin only: nothing for a standalone server, 401 without
/// the key, and an ask nobody made is not found (the plugin then ends its lease at once).
#[tokio::test]
async fn lease_routes_are_the_plugins_only() {
    let s = server();
    let r = s.lease_poll(&[], 0).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);

    let s = plugin_server().await;
    let r = s.lease_poll(&[], 0).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let wrong = [("x-hypha-plugin-key", &PLUGIN_KEY[..12])];
    let r = s.lease_poll(&wrong, 0).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let key = [("x-hypha-plugin-key", PLUGIN_KEY)];
    let r = s.lease_poll(&key, 0).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"asks": []}));
    let r = s.lease_answer(&key, 7, json!({"held": true})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = s.lease_answer(&wrong, 7, json!({"held": true})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = s.lease_answer(&key, 7, json!({"hold": "yes"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
}

/// Inside Hypha the child compacts after pushes as `git hypha serve` does, and retires the
/// merged packs only while the plugin holds Hypha's lease: it asks (`GET /_plugin/leases`),
/// nothing is retired before the plugin says it holds it, and a refusal retires nothing.
#[tokio::test]
async fn plugin_mode_compacts_under_the_lease_it_asks_for() {
    let s = server_with(|s| {
        s.plugin_key(PLUGIN_KEY.as_bytes())
            .auto_gc(autogc::AutoGc::new(1, 0, Duration::from_secs(600)))
    });
    let repo = s.state.store.repo_at("ws/r", PREFIX).unwrap();
    repo.create(false, None).await.unwrap();
    let write = plugin_headers("write", PREFIX);
    let key = [("x-hypha-plugin-key", PLUGIN_KEY)];
    let live = || async {
        let r = s
            .plugin("packs", &plugin_headers("read", PREFIX), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["packs"].as_array().unwrap().len()
    };
    let mut ask = None;
    for (i, seed) in [6u8, 7, 8].into_iter().enumerate() {
        let (pack, _, id) = push_pack(&s, &write, seed).await;
        let r = s
            .plugin(
                "update",
                &write,
                json!({"updates": [{"ref": format!("refs/heads/b{i}"), "old": null, "new": id}],
                       "packs": [pack]}),
            )
            .await;
        assert_eq!(r.json()["results"][0]["status"], "ok", "{:?}", r.body);
        if i == 0 {
            // One pack: nothing due, nothing asked.
            let r = s.lease_poll(&key, 1).await;
            assert_eq!(r.json(), json!({"asks": []}));
            continue;
        }
        // Two packs or more: the child merges, then asks for the lease to retire them.
        let r = s.lease_poll(&key, 30).await;
        let asks = r.json()["asks"].as_array().unwrap().clone();
        assert_eq!(asks.len(), 1, "{:?}", r.body);
        assert_eq!(asks[0]["repo"], "ws/r");
        assert_eq!(asks[0]["prefix"], PREFIX);
        assert_eq!(
            live().await,
            i + 1,
            "nothing retired before the lease is held"
        );
        ask = Some(asks[0]["id"].as_u64().unwrap());
        if i == 1 {
            // The plugin could not take the lease: the compaction gives up, retiring nothing.
            let no = json!({"held": false, "detail": "ws/r is being updated; try again"});
            let r = s.lease_answer(&key, ask.unwrap(), no).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
    }
    assert_eq!(live().await, 3);
    // Held: the answer comes once the retirement is done, and the lease may end.
    let r = s
        .lease_answer(&key, ask.unwrap(), json!({"held": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(live().await, 1, "the three packs merged into one");
    let r = s
        .lease_answer(&key, ask.unwrap(), json!({"held": true}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "an answered ask is gone");
}

impl Server {
    async fn lease_poll(&self, headers: &[(&str, &str)], wait: u64) -> Reply {
        let mut req = Request::builder().uri(format!("/_plugin/leases?wait={wait}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn lease_answer(&self, headers: &[(&str, &str)], id: u64, body: Value) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/_plugin/leases/{id}"))
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

/// Uploads a tiny real pack through the plugin's presigned URLs; (name, pack bytes, the id
/// of the one object it holds).
async fn push_one_pack(s: &Server, headers: &[(&str, &str)]) -> (String, Vec<u8>, String) {
    push_pack(s, headers, 6).await
}

/// [`push_one_pack`] of a pack made from `seed`.
async fn push_pack(s: &Server, headers: &[(&str, &str)], seed: u8) -> (String, Vec<u8>, String) {
    let blobs = crate::pack::testing::blob_pack(seed, 1, 10);
    let (name, pack, idx) = (blobs.name, blobs.pack, blobs.idx);
    let r = s
        .plugin(
            "uploads",
            headers,
            json!({"packs": [{"name": name, "pack_size": pack.len(), "idx_size": idx.len()}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let up = &r.json()["uploads"][0];
    for (what, data) in [("idx", &idx), ("pack", &pack)] {
        let url = up[what]["url"].as_str().unwrap();
        let h: Vec<(&str, String)> = up[what]["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
            .collect();
        let r = s.presigned(url, Method::PUT, data.to_vec(), &h).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    (name, pack, blobs.ids[0].clone())
}

#[tokio::test]
async fn plugin_mode_validates_the_repository_prefix() {
    let s = plugin_server().await;
    for bad in [
        "../ws/artifacts/x/.git/",
        "ws/artifacts/../x/.git/",
        "ws/artifacts/./x/.git/",
        "ws//x/.git/",
        "/ws/x/.git/",
        "ws/artifacts/x/",
        "ws/artifacts/x/.git",
        "ws/artifacts/x/not.git/",
        "",
    ] {
        let r = s
            .plugin("refs", &plugin_headers("write", bad), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(r.error(), ErrorCode::Invalid, "{bad:?}");
    }
    let mut missing = plugin_headers("write", PREFIX);
    missing.retain(|(k, _)| *k != "x-hypha-repo-prefix");
    let r = s.plugin("refs", &missing, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A valid prefix where nothing is stored: named by the route's ws/alias.
    let r = s
        .plugin(
            "refs",
            &plugin_headers("read", "ws/artifacts/other/.git/"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["detail"], "repository ws/r not found");
}

/// An update of a repository that does not exist (issue 25: the update looks for it beside
/// its first reads, not before them): 404 naming it, whether its pack comes inline, thin or
/// not, and nothing is written anywhere.
#[tokio::test]
async fn an_update_of_no_repository_is_not_found_and_writes_nothing() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = server_with(|s| s.inline_max(1 << 20));
    let rw = token("ws", Permission::ReadWrite);
    let (name, pack, idx, commit) = real_pack();
    let main = json!([{"ref": "refs/heads/main", "old": null, "new": commit}]);
    for thin in [false, true] {
        let r = s
            .api(
                "ws/ghost",
                "update",
                Some(&rw),
                json!({"updates": main, "inline": [{"name": name, "thin": thin, "pack": b64(&pack), "idx": b64(&idx)}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "thin {thin}: {:?}", r.body);
        assert_eq!(r.json()["detail"], "repository ws/ghost not found");
    }
    let r = s
        .api("ws/ghost", "update", Some(&rw), json!({"updates": main}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert!(
        !s.root.join("ws/artifacts/ghost").exists(),
        "nothing written for a repository that does not exist"
    );
}

/// A ref set to an object no pack holds is rejected for that ref, in git's words and on one
/// line, and the repository's refs do not change; the same id held by a live pack is fine.
#[tokio::test]
async fn update_to_an_object_no_pack_holds_is_rejected() {
    let s = server();
    s.create("ws/repo", false).await;
    let tok = token("ws", Permission::ReadWrite);
    let t = Some(tok.as_str());
    let nowhere = "1234567890123456789012345678901234567890";
    let r = s
        .api(
            "ws/repo",
            "update",
            t,
            update_body("refs/heads/x", None, Some(nowhere)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.json()["results"],
        json!([{
            "ref": "refs/heads/x",
            "status": "rejected",
            "detail": format!("missing necessary objects: no pack holds {nowhere}"),
        }])
    );
    let r = s.api("ws/repo", "refs", t, json!({})).await;
    assert_eq!(r.json()["refs"], json!({}), "{:?}", r.body);

    s.put_objects("ws/repo");
    let r = s
        .api(
            "ws/repo",
            "update",
            t,
            update_body("refs/heads/x", None, Some(A)),
        )
        .await;
    assert_eq!(r.json()["results"][0]["status"], "ok", "{:?}", r.body);
}

/// `hooks` is for workspace admins; a loopback target is refused without the operator's
/// allowance; answers never carry a secret.
#[tokio::test]
async fn hooks_need_admin_and_a_public_target() {
    let s = server();
    let rw = token("ws", Permission::ReadWrite);
    let admin = token("ws", Permission::Admin);
    s.api("ws/repo", "create", Some(&rw), json!({})).await;
    let list = json!({"action": "list"});
    let r = s.api("ws/repo", "hooks", None, list.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.api("ws/repo", "hooks", Some(&rw), list.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["detail"].as_str().unwrap().contains("admin"));
    let add = json!({"action": "add", "url": "http://127.0.0.1:9/x", "secret": "s3cret"});
    let r = s.api("ws/repo", "hooks", Some(&admin), add).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("--webhook-allow"));
    let empty = json!({"action": "add", "url": "http://127.0.0.1:9/x", "secret": ""});
    let r = s.api("ws/repo", "hooks", Some(&admin), empty).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.api("ws/repo", "hooks", Some(&admin), list).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"hooks": [], "deliveries": []}));
    let remove = json!({"action": "remove", "url": "http://127.0.0.1:9/x"});
    let r = s.api("ws/repo", "hooks", Some(&admin), remove).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The thin-pack surface: `refs` for a push says `thin_packs`; `uploads` with `thin` presigns
/// keys under `hypha-remote/thin/` (never `objects/pack/`); `fix-thin` needs write, refuses a
/// damaged upload or one never made with one line and lists nothing; a server without thin
/// packs says so, has no `fix-thin` (404) and refuses thin uploads.
#[tokio::test]
async fn thin_packs_capability_uploads_and_fix_thin() {
    let s = server();
    s.create("ws/r", false).await;
    let rw = token("ws", Permission::ReadWrite);
    let r = s
        .api("ws/r", "refs", Some(&rw), json!({"for_push": true}))
        .await;
    assert_eq!(r.json()["thin_packs"], true);
    let name = format!("pack-{}", hex::encode([0x11u8; 20]));
    let (pack, idx) = fake_pack(0x11, 40);
    let r = s
        .api(
            "ws/r",
            "uploads",
            Some(&rw),
            json!({"packs": [{"name": name, "pack_size": pack.len(), "idx_size": idx.len(), "thin": true}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let up: api::UploadsResponse = serde_json::from_slice(&r.body).unwrap();
    let urls = &up.uploads[0];
    let pack_url = urls.pack.as_ref().expect("one PUT");
    for u in [&urls.idx.url, &pack_url.url] {
        assert!(u.contains("/.git/hypha-remote/thin/"), "{u}");
    }
    for (req, body) in [(&urls.idx, idx), (pack_url, pack)] {
        let r = s
            .presigned(&req.url, Method::PUT, body, &headers_of(req))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let ro = token("ws", Permission::Read);
    let r = s
        .api("ws/r", "fix-thin", Some(&ro), json!({"name": name}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A fake pack: its entries do not parse.
    let r = s
        .api("ws/r", "fix-thin", Some(&rw), json!({"name": name}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("thin pack") && !detail.contains('\n'),
        "{detail}"
    );
    let other = format!("pack-{}", hex::encode([0x22u8; 20]));
    let r = s
        .api("ws/r", "fix-thin", Some(&rw), json!({"name": other}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("upload it first"));
    let r = s.api("ws/r", "packs", Some(&rw), json!({})).await;
    assert_eq!(r.json()["packs"], json!([]), "nothing listed");

    let old = server_with(|s| s.thin_packs(false));
    old.create("ws/r", false).await;
    let r = old
        .api("ws/r", "refs", Some(&rw), json!({"for_push": true}))
        .await;
    assert!(r.json().get("thin_packs").is_none(), "not offered");
    let r = old
        .api("ws/r", "fix-thin", Some(&rw), json!({"name": name}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = old
        .api(
            "ws/r",
            "uploads",
            Some(&rw),
            json!({"packs": [{"name": name, "pack_size": 40, "idx_size": 40, "thin": true}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// `lfs-prune` asks for write access; on a repository without LFS objects it costs one
/// listing and answers that there was nothing (e2e `lfs::lfs_gc_*` prune real objects).
#[tokio::test]
async fn lfs_prune_needs_write_access() {
    let s = server();
    let rw = token("ws", Permission::ReadWrite);
    let r = s.api("ws/repo", "create", Some(&rw), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let ro = token("ws", Permission::Read);
    let r = s.api("ws/repo", "lfs-prune", Some(&ro), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.api("ws/repo", "lfs-prune", None, json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.api("ws/repo", "lfs-prune", Some(&rw), json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let done: api::LfsPruneResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(done.objects, 0);
    assert!(
        done.deleted.is_empty() && done.skipped.is_none(),
        "{done:?}"
    );
}

mod fair_use;
mod lfs;
mod limits;
mod locks;
mod observe;

/// Issue 21: `uploads` never followed by `update` were kept until the next compaction (which a
/// failed thin push never triggers): a writer could fill the store. At most
/// [`MAX_STAGED_UPLOADS`] stay staged per repository; past the grace period they are swept.
#[tokio::test]
async fn staged_uploads_are_bounded_and_swept() {
    let s = server_with(|st| st.gc_grace(Duration::from_secs(3600)));
    let rw = token("ws", Permission::ReadWrite);
    let t = Some(rw.as_str());
    s.create("ws/staged", false).await;
    let names: Vec<String> = (0..crate::server::routes::MAX_STAGED_UPLOADS)
        .map(|i| format!("pack-{i:040x}"))
        .collect();
    let packs: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "pack_size": 100, "idx_size": 100}))
        .collect();
    let r = s
        .api("ws/staged", "uploads", t, json!({ "packs": packs }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let one_more = json!({"packs": [{"name": format!("pack-{}", "f".repeat(40)), "pack_size": 100, "idx_size": 100}]});
    let r = s.api("ws/staged", "uploads", t, one_more.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        String::from_utf8_lossy(&r.body).contains("uploads in flight"),
        "{:?}",
        r.body
    );
    // Past the grace period they are abandoned: the sweep removes them.
    let repo = s.state.store().repo("ws", "staged").unwrap();
    assert_eq!(repo.staged_uploads().await.unwrap(), names.len());
    assert_eq!(
        repo.sweep_staged(Duration::ZERO).await.unwrap(),
        names.len()
    );
    assert_eq!(repo.staged_uploads().await.unwrap(), 0);
    let r = s.api("ws/staged", "uploads", t, one_more).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.state.take_staged().len(), 1, "noted for the timer");
}

/// A stored LFS delta plan waits for its `complete`: the route notes its repository for the
/// timer, which sweeps the plan once it is older than the grace period (issue 26); a request
/// that gets no plan notes nothing.
#[tokio::test]
async fn a_delta_plan_is_noted_for_the_sweep() {
    use base64::Engine as _;
    use sha2::Digest;
    const MIB: usize = 1024 * 1024;
    let s = server_with(|st| {
        st.multipart(crate::repo::upload::MultipartPolicy {
            threshold: 5 * MIB as u64,
            part_size: 5 * MIB as u64,
        })
    });
    s.create("ws/d", false).await;
    let rw = format!("Bearer {}", token("ws", Permission::ReadWrite));
    let repo = s.state.store().repo("ws", "d").unwrap();
    let v1: Vec<u8> = (0..6 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    let mut v2 = v1.clone();
    v2[MIB..MIB + 64].fill(0);
    let oid = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let chunks = |b: &[u8]| {
        let mut c = crate::lfs_chunks::Chunker::new();
        c.feed(b);
        let list = crate::lfs_chunks::encode(b.len() as u64, &c.finish());
        base64::engine::general_purpose::STANDARD.encode(list)
    };
    let route = format!("/ws/git/d.git/info/lfs/objects/parts/{}/delta", oid(&v2));
    let ask = json!({"size": v2.len(), "chunks": chunks(&v2), "bases": [oid(&v1)]}).to_string();

    let r = s.raw(&route, Some(&rw), ask.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json()["id"].is_null(), "no base stored: {}", r.json());
    assert!(s.state.take_staged().is_empty(), "no plan, nothing noted");

    repo.backend()
        .put(
            &repo.lfs_key(&oid(&v1)).unwrap(),
            v1.clone().into(),
            storage::PutMode::Overwrite,
        )
        .await
        .unwrap();
    // With its index (as a content check leaves it): lazy indexing is one at a time per
    // process, and other tests index in parallel.
    let mut c = crate::lfs_chunks::Chunker::new();
    c.feed(&v1);
    let index = crate::lfs_chunks::encode(v1.len() as u64, &c.finish());
    let index_key = format!(
        "ws/artifacts/d/git/lfs/chunks/{}/{}/{}",
        &oid(&v1)[..2],
        &oid(&v1)[2..4],
        oid(&v1)
    );
    repo.backend()
        .put(&index_key, index.into(), storage::PutMode::Overwrite)
        .await
        .unwrap();
    let r = s.raw(&route, Some(&rw), ask).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json()["id"].is_string(), "{}", r.json());
    let noted = s.state.take_staged();
    assert_eq!(noted.len(), 1, "noted for the timer");
    let now = std::time::SystemTime::now();
    let grace = s.state.gc_grace;
    let kept = noted[0].sweep_lfs_deltas(now, grace).await.unwrap();
    assert_eq!((kept.removed, kept.kept), (0, 1));
    let swept = noted[0].sweep_lfs_deltas(now + grace, grace).await.unwrap();
    assert_eq!((swept.removed, swept.kept), (1, 0));
}

/// Inline packs (issue 25): `refs` for a push says how large; `update` refuses one that is
/// larger, more of them than allowed, unreadable base64 or a bad name, each with one line and
/// nothing written; a server with `inline_max(0)` offers none and refuses them. A refs
/// request with `known_packs` gets the pack listing too, with URLs for the unknown packs only.
#[tokio::test]
async fn inline_packs_are_bounded_and_the_listing_can_carry_packs() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = server_with(|s| s.inline_max(4096));
    s.create("ws/r", false).await;
    let rw = token("ws", Permission::ReadWrite);
    let r = s
        .api("ws/r", "refs", Some(&rw), json!({"for_push": true}))
        .await;
    assert_eq!(r.json()["inline_max"], 4096);
    let name = format!("pack-{}", hex::encode([0x11u8; 20]));
    let main = json!([{"ref": "refs/heads/main", "old": null, "new": "1111111111111111111111111111111111111111"}]);
    let refused = |body: serde_json::Value, needle: &'static str| {
        let s = &s;
        let rw = rw.clone();
        async move {
            let r = s.api("ws/r", "update", Some(&rw), body).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
            let detail = r.json()["detail"].as_str().unwrap().to_owned();
            assert!(
                detail.contains(needle) && !detail.contains('\n'),
                "{detail}"
            );
        }
    };
    let big = vec![7u8; 4000];
    refused(
        json!({"updates": main, "inline": [{"name": name, "pack": b64(&big), "idx": b64(&big)}]}),
        "inline packs larger than 4096 bytes",
    )
    .await;
    refused(
        json!({"updates": main, "inline": [{"name": name, "pack": "%%%", "idx": "AA=="}]}),
        "inline pack of",
    )
    .await;
    refused(
        json!({"updates": main, "inline": [{"name": "pack-../../x", "pack": "AA==", "idx": "AA=="}]}),
        "invalid inline pack name",
    )
    .await;
    let five: Vec<_> = (0..5)
        .map(|_| json!({"name": name, "pack": "AA==", "idx": "AA=="}))
        .collect();
    refused(json!({"updates": main, "inline": five}), "at most 4").await;
    // A pack whose idx claims an object it does not hold (the trailer matches): refused
    // before anything is stored (issue 21: an idx is only its writer's claim).
    let (real, pack, idx, commit) = real_pack();
    let mut lying = idx.clone();
    // The first id of the idx (after the 8-byte header and the 1 KiB fan-out) changed.
    lying[8 + 1024] ^= 0x01;
    refused(
        json!({"updates": main, "inline": [{"name": real, "pack": b64(&pack), "idx": b64(&lying)}]}),
        "does not list the objects its pack holds",
    )
    .await;
    // A fake pack (a header, junk and a trailer) is no pack at all.
    let (fake, fake_idx) = fake_pack(0x11, 40);
    refused(
        json!({"updates": main, "inline": [{"name": name, "pack": b64(&fake), "idx": b64(&fake_idx)}]}),
        "corrupt",
    )
    .await;
    let repo = s.state.store.repo("ws", "r").unwrap();
    assert_eq!(repo.staged_uploads().await.unwrap(), 0, "nothing stored");
    // A pack without the new ref's object: stored as an upload, the ref refused, and the
    // pack deleted (the update wrote no ref).
    let name = real;
    let r = s
        .api(
            "ws/r",
            "update",
            Some(&rw),
            json!({"updates": main, "inline": [{"name": name, "pack": b64(&pack), "idx": b64(&idx)}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["results"][0]["status"], "rejected");
    let r = s.api("ws/r", "refs", Some(&rw), json!({})).await;
    assert_eq!(r.json()["refs"], json!({}), "no ref written");
    assert_eq!(
        repo.staged_uploads().await.unwrap(),
        0,
        "nothing left staged"
    );
    // The same pack for its own commit: stored, checked in memory, the ref written.
    let r = s
        .api(
            "ws/r",
            "update",
            Some(&rw),
            json!({"updates": [{"ref": "refs/heads/main", "old": null, "new": commit}],
                   "inline": [{"name": name, "pack": b64(&pack), "idx": b64(&idx)}]}),
        )
        .await;
    assert_eq!(r.json()["results"][0]["status"], "ok", "{:?}", r.body);

    let old = server_with(|s| s.inline_max(0));
    old.create("ws/r", false).await;
    let r = old
        .api("ws/r", "refs", Some(&rw), json!({"for_push": true}))
        .await;
    assert!(r.json().get("inline_max").is_none(), "not offered");
    let r = old
        .api(
            "ws/r",
            "update",
            Some(&rw),
            json!({"updates": main, "inline": [{"name": name, "pack": "AA==", "idx": "AA=="}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The listing with `known_packs`: the pack the last update made live, with its URLs,
    // and without them once known.
    let r = s
        .api("ws/r", "refs", Some(&rw), json!({"known_packs": []}))
        .await;
    assert_eq!(r.json()["packs"]["packs"][0]["name"], name.as_str());
    assert!(r.json()["packs"]["packs"][0]["pack_url"].is_string());
    let r = s
        .api("ws/r", "refs", Some(&rw), json!({"known_packs": [name]}))
        .await;
    assert!(r.json()["packs"]["packs"][0].get("pack_url").is_none());
    assert!(s
        .api("ws/r", "refs", Some(&rw), json!({}))
        .await
        .json()
        .get("packs")
        .is_none());
}

/// A clone's `refs` request (`known_packs` and `inline_max`) gets the bytes of the unseen
/// packs that fit, beside their URLs; a request without `inline_max` (an older helper, or any
/// session that is not a clone) gets none, nor does a known pack, a pack over what was asked
/// or over what this server allows, or a listing from which a known pack has gone (a
/// compaction: the client then reads idx files first).
#[tokio::test]
async fn the_listing_carries_small_packs_to_a_clone() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut s = server_with(|s| s.inline_max(4096));
    s.create("ws/r", false).await;
    let rw = token("ws", Permission::ReadWrite);
    let (name, pack, idx, commit) = real_pack();
    let r = s
        .api(
            "ws/r",
            "update",
            Some(&rw),
            json!({"updates": [{"ref": "refs/heads/main", "old": null, "new": commit}],
                   "inline": [{"name": name, "pack": b64(&pack), "idx": b64(&idx)}]}),
        )
        .await;
    assert_eq!(r.json()["results"][0]["status"], "ok", "{:?}", r.body);
    async fn first_listed(s: &Server, rw: &str, body: Value) -> Value {
        let r = s.api("ws/r", "refs", Some(rw), body).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()["packs"]["packs"][0].clone()
    }
    let size = pack.len() as u64;
    let p = first_listed(&s, &rw, json!({"known_packs": [], "inline_max": 1 << 20})).await;
    assert_eq!(p["name"], name.as_str());
    assert_eq!(p["inline"], b64(&pack).as_str(), "the stored pack, whole");
    assert!(
        p["pack_url"].is_string() && p["idx_url"].is_string(),
        "URLs too"
    );
    let p = first_listed(&s, &rw, json!({"known_packs": [], "inline_max": size})).await;
    assert!(p["inline"].is_string(), "exactly its size fits");

    for (body, why) in [
        (json!({"known_packs": []}), "not asked (an older helper)"),
        (
            json!({"known_packs": [], "inline_max": size - 1}),
            "over what was asked",
        ),
        (
            json!({"known_packs": [name], "inline_max": 1 << 20}),
            "known",
        ),
        (
            json!({"known_packs": [format!("pack-{}", "1".repeat(40))], "inline_max": 1 << 20}),
            "a known pack is gone",
        ),
    ] {
        assert!(
            first_listed(&s, &rw, body).await.get("inline").is_none(),
            "{why}"
        );
    }
    // Over this server's own bound, whatever the client asks.
    s.state.inline_max = size - 1;
    let p = first_listed(&s, &rw, json!({"known_packs": [], "inline_max": 1 << 20})).await;
    assert!(p.get("inline").is_none() && p["pack_url"].is_string());
    // Without `known_packs` there is no listing at all.
    let r = s
        .api("ws/r", "refs", Some(&rw), json!({"inline_max": 1 << 20}))
        .await;
    assert!(r.json().get("packs").is_none());
}
