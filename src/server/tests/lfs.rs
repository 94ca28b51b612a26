//! Handler tests of the LFS routes (`server::lfs`): the batch answer's shape, the access
//! rules of the git routes, verify refusing and deleting a wrong object, a restarted upload,
//! and the single-PUT limit. git-lfs itself drives them end to end in tests/e2e/lfs.rs.

use super::*;
use sha2::Digest;

const BATCH: &str = "/ws/git/repo.git/info/lfs/objects/batch";

fn basic(token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("git:{token}"))
    )
}

fn batch_body(operation: &str, oid: &str, size: usize) -> String {
    json!({
        "operation": operation,
        "transfers": ["basic"],
        "objects": [{"oid": oid, "size": size}],
        "hash_algo": "sha256",
    })
    .to_string()
}

fn oid(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// The headers of an action, as git-lfs sends them.
fn action_headers(action: &Value) -> Vec<(&str, String)> {
    action["header"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn upload_verify_download_round_trip() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = b"model weights".to_vec();
    let oid = oid(&body);

    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], crate::api::lfs::MEDIA_TYPE);
    let answer = r.json();
    assert_eq!(answer["transfer"], "basic");
    let object = &answer["objects"][0];
    assert_eq!(object["authenticated"], true);
    let upload = &object["actions"]["upload"];
    let verify = &object["actions"]["verify"];
    assert!(verify["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/ws/git/repo.git/info/lfs/objects/verify/{oid}")));
    assert_eq!(verify["header"]["Authorization"], auth);

    let put = s
        .presigned(
            upload["href"].as_str().unwrap(),
            Method::PUT,
            body.clone(),
            &action_headers(upload),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert!(s
        .root
        .join(format!(
            "ws/artifacts/repo/git/lfs/objects/{}/{}/{oid}",
            &oid[..2],
            &oid[2..4]
        ))
        .is_file());
    let verify_path = format!("/ws/git/repo.git/info/lfs/objects/verify/{oid}");
    let spec = json!({"oid": oid, "size": body.len()}).to_string();
    let r = s.raw(&verify_path, Some(&auth), spec).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Stored now: a second upload batch has nothing to do.
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    assert!(
        r.json()["objects"][0].get("actions").is_none(),
        "{:?}",
        r.body
    );

    let r = s
        .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
        .await;
    let download = &r.json()["objects"][0]["actions"]["download"];
    let got = s
        .presigned(download["href"].as_str().unwrap(), Method::GET, vec![], &[])
        .await;
    assert_eq!(got.body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn verify_refuses_and_deletes_a_wrong_object() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = b"the real content".to_vec();
    let oid = oid(&body);
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    let upload = r.json()["objects"][0]["actions"]["upload"].clone();
    // Same size, other bytes: the store takes it (it checks the size), verify does not.
    let forged = b"THE REAL CONTENT".to_vec();
    let put = s
        .presigned(
            upload["href"].as_str().unwrap(),
            Method::PUT,
            forged,
            &action_headers(&upload),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let verify_path = format!("/ws/git/repo.git/info/lfs/objects/verify/{oid}");
    let spec = json!({"oid": oid, "size": body.len()}).to_string();
    let r = s.raw(&verify_path, Some(&auth), spec.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("another sha256"), "{message}");
    // Not kept: the next batch asks for the upload again, and downloads find nothing.
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    assert!(r.json()["objects"][0]["actions"]["upload"].is_object());
    let r = s
        .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
        .await;
    assert_eq!(r.json()["objects"][0]["error"]["code"], 404, "{:?}", r.body);
    // Verify of an object never uploaded: 404.
    let r = s.raw(&verify_path, Some(&auth), spec).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_and_is_offered_again() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = vec![7u8; 4096];
    let oid = oid(&body);
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    let upload = r.json()["objects"][0]["actions"]["upload"].clone();
    // The connection dies after half the bytes: the store sees a short body.
    let put = s
        .presigned(
            upload["href"].as_str().unwrap(),
            Method::PUT,
            body[..2048].to_vec(),
            &action_headers(&upload),
        )
        .await;
    assert!(!put.status.is_success(), "{:?}", put.body);
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    assert!(
        r.json()["objects"][0]["actions"]["upload"].is_object(),
        "offered again: {:?}",
        r.body
    );
    let r = s
        .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
        .await;
    assert_eq!(r.json()["objects"][0]["error"]["code"], 404);
}

#[tokio::test]
async fn access_rules_follow_the_git_routes() {
    let s = server();
    s.create("ws/repo", false).await;
    s.create("ws/pub", true).await;
    let body = b"x".to_vec();
    let oid = oid(&body);
    // Anonymous: 401 with LFS-Authenticate, so git-lfs asks for credentials.
    let r = s.raw(BATCH, None, batch_body("download", &oid, 1)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("lfs-authenticate"));
    assert!(r.json()["message"].as_str().unwrap().contains("ws/repo"));
    // An empty password is anonymous too (what `git hypha credential` answers without a token).
    let r = s
        .raw(BATCH, Some(&basic("")), batch_body("download", &oid, 1))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Public: anonymous download yes, anonymous upload no.
    let public = "/ws/git/pub/info/lfs/objects/batch";
    let r = s.raw(public, None, batch_body("download", &oid, 1)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s.raw(public, None, batch_body("upload", &oid, 1)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Read-only token: download yes, upload 403.
    let read = basic(&token("ws", Permission::Read));
    let r = s
        .raw(BATCH, Some(&read), batch_body("download", &oid, 1))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .raw(BATCH, Some(&read), batch_body("upload", &oid, 1))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let verify = format!("/ws/git/repo.git/info/lfs/objects/verify/{oid}");
    let spec = json!({"oid": oid, "size": 1}).to_string();
    let r = s.raw(&verify, Some(&read), spec).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another workspace's token learns nothing.
    let other = basic(&token("other", Permission::ReadWrite));
    let r = s
        .raw(BATCH, Some(&other), batch_body("download", &oid, 1))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_ids_and_oversized_objects_are_refused_per_object() {
    let s = server_with(|st| st.max_single_put(1000));
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            batch_body("upload", &"a".repeat(64), 1001),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let error = &r.json()["objects"][0]["error"];
    assert_eq!(error["code"], 422);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("largest lfs object"),
        "{error}"
    );
    for bad in ["../../../etc/passwd", "ABCD"] {
        let r = s
            .raw(BATCH, Some(&auth), batch_body("upload", bad, 1))
            .await;
        assert_eq!(r.json()["objects"][0]["error"]["code"], 422, "{bad}");
    }
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            r#"{"operation":"upload","transfers":["tus"],"objects":[]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}
