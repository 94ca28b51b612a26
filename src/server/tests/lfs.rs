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

/// Every route of the LFS table (`api::lfs_routes`) is served at its method and path and asks
/// what the table says: a reader of a private repository gets past the check of a read route
/// and a 403 on a write route, an anonymous caller a 401 on every route, and a writer never
/// a 401 or 403. Each body parses, so the check is what answers.
#[tokio::test]
async fn every_lfs_route_asks_what_the_table_says() {
    use crate::api::lfs_routes::{LfsAccess, LfsRoute};
    use crate::api::Access;
    let s = server();
    s.create("ws/repo", false).await;
    let oid = oid(b"x");
    let body_of = |route: LfsRoute, operation: &str| match route {
        LfsRoute::Batch => batch_body(operation, &oid, 1),
        LfsRoute::Verify => json!({"oid": oid, "size": 1}).to_string(),
        LfsRoute::Parts => json!({"size": 1}).to_string(),
        LfsRoute::PartsComplete => json!({"size": 1, "part_size": 1}).to_string(),
        LfsRoute::Delta => json!({"size": 1, "chunks": ""}).to_string(),
        LfsRoute::DeltaComplete => json!({"size": 1, "id": "x"}).to_string(),
        LfsRoute::Lock => json!({"path": "a.bin"}).to_string(),
        LfsRoute::Locks | LfsRoute::LocksVerify | LfsRoute::Unlock => "{}".to_owned(),
    };
    let reader = basic(&token("ws", Permission::Read));
    let writer = basic(&token("ws", Permission::ReadWrite));
    for route in LfsRoute::ALL {
        let operations: &[Option<crate::api::lfs::Operation>] = match route.access() {
            LfsAccess::ByOperation => &[
                Some(crate::api::lfs::Operation::Download),
                Some(crate::api::lfs::Operation::Upload),
            ],
            LfsAccess::Is(_) => &[None],
        };
        for &operation in operations {
            let uri = format!(
                "/ws/git/repo.git/info/lfs{}",
                route
                    .path()
                    .replace("{oid}", &oid)
                    .replace("{id}", "0123abcd")
            );
            let body = body_of(route, operation.map_or("", |o| o.as_str()));
            let send = |auth: Option<&str>| {
                let mut req = Request::builder().method(route.method()).uri(&uri);
                if let Some(auth) = auth {
                    req = req.header(header::AUTHORIZATION, auth);
                }
                s.send(req.body(Body::from(body.clone())).unwrap())
            };
            let what = format!("{} {uri} {operation:?}", route.method());
            let r = send(None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
            assert!(r.headers.contains_key("lfs-authenticate"), "{what}");
            let r = send(Some(&reader)).await;
            match route.access().of(operation) {
                Access::Read => assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{what}: {:?}",
                    r.body
                ),
                _ => assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {:?}", r.body),
            }
            let r = send(Some(&writer)).await;
            assert!(
                r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                "{what}: {:?}",
                r.body
            );
        }
    }
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

/// Upload `body` under its oid through the batch API (presigned PUT), without verify.
async fn put_unverified(s: &Server, auth: &str, oid: &str, body: &[u8]) {
    let r = s
        .raw(BATCH, Some(auth), batch_body("upload", oid, body.len()))
        .await;
    let upload = r.json()["objects"][0]["actions"]["upload"].clone();
    assert!(upload.is_object(), "{:?}", r.body);
    let put = s
        .presigned(
            upload["href"].as_str().unwrap(),
            Method::PUT,
            body.to_vec(),
            &action_headers(&upload),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
}

fn stored_path(s: &Server, oid: &str) -> std::path::PathBuf {
    s.root.join(format!(
        "ws/artifacts/repo/git/lfs/objects/{}/{}/{oid}",
        &oid[..2],
        &oid[2..4]
    ))
}

/// A verify whose size is off by one never deletes an object whose content is right: a
/// clear 422, and the object stays stored and served.
#[tokio::test]
async fn verify_with_a_wrong_size_keeps_a_right_object() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = b"the right content".to_vec();
    let oid = oid(&body);
    put_unverified(&s, &auth, &oid, &body).await;
    let verify_path = format!("/ws/git/repo.git/info/lfs/objects/verify/{oid}");
    for verified_first in [false, true] {
        if verified_first {
            let spec = json!({"oid": oid, "size": body.len()}).to_string();
            let r = s.raw(&verify_path, Some(&auth), spec).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
        let spec = json!({"oid": oid, "size": body.len() + 1}).to_string();
        let r = s.raw(&verify_path, Some(&auth), spec).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("Nothing was changed"), "{message}");
        assert_eq!(std::fs::read(stored_path(&s, &oid)).unwrap(), body);
    }
    let r = s
        .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
        .await;
    assert!(
        r.json()["objects"][0]["actions"]["download"].is_object(),
        "{:?}",
        r.body
    );
    // An upload batch naming another size for it is refused per object, nothing offered.
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            batch_body("upload", &oid, body.len() + 1),
        )
        .await;
    let object = &r.json()["objects"][0];
    assert_eq!(object["error"]["code"], 422, "{object}");
    assert!(object.get("actions").is_none(), "{object}");
}

/// Garbage uploaded under an oid and never verified: it is never "already there" (the real
/// object can still go up and replace it) and never served; the real object then is.
#[tokio::test]
async fn unverified_garbage_is_neither_served_nor_already_there() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = b"the real content".to_vec();
    let oid = oid(&body);
    put_unverified(&s, &auth, &oid, b"THE REAL CONTENT").await;
    for _ in 0..2 {
        // Twice: the second answer comes from the recorded verdict.
        let r = s
            .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
            .await;
        let object = &r.json()["objects"][0];
        assert_eq!(object["error"]["code"], 404, "{object}");
        assert!(object.get("actions").is_none(), "{object}");
    }
    // The real object goes up over the garbage, and is served once verified.
    put_unverified(&s, &auth, &oid, &body).await;
    let r = s
        .raw(BATCH, Some(&auth), batch_body("download", &oid, body.len()))
        .await;
    let download = r.json()["objects"][0]["actions"]["download"].clone();
    let got = s
        .presigned(download["href"].as_str().unwrap(), Method::GET, vec![], &[])
        .await;
    assert_eq!(got.body.as_ref(), body.as_slice());
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &oid, body.len()))
        .await;
    assert!(
        r.json()["objects"][0].get("actions").is_none(),
        "{:?}",
        r.body
    );
}

/// An object written by someone else (Hypha's own LFS endpoint writes no marker) is hashed
/// once when first needed: served when right, and the verdict recorded.
#[tokio::test]
async fn objects_without_a_marker_are_checked_once() {
    let s = server();
    s.create("ws/pub", true).await;
    let body = b"written by hypha".to_vec();
    let oid = oid(&body);
    let object = s.root.join(format!(
        "ws/artifacts/pub/git/lfs/objects/{}/{}/{oid}",
        &oid[..2],
        &oid[2..4]
    ));
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, &body).unwrap();
    let public = "/ws/git/pub/info/lfs/objects/batch";
    let r = s
        .raw(public, None, batch_body("download", &oid, body.len()))
        .await;
    assert!(
        r.json()["objects"][0]["actions"]["download"].is_object(),
        "{:?}",
        r.body
    );
    let marker = s.root.join(format!(
        "ws/artifacts/pub/git/lfs/verified/{}/{}/{oid}",
        &oid[..2],
        &oid[2..4]
    ));
    assert!(marker.is_file(), "verdict recorded beside objects/");
    // Garbage written the same way is never offered.
    let other = oid.replace(&oid[..1], if &oid[..1] == "a" { "b" } else { "a" });
    let garbage = s.root.join(format!(
        "ws/artifacts/pub/git/lfs/objects/{}/{}/{other}",
        &other[..2],
        &other[2..4]
    ));
    std::fs::create_dir_all(garbage.parent().unwrap()).unwrap();
    std::fs::write(&garbage, &body).unwrap();
    let r = s
        .raw(public, None, batch_body("download", &other, body.len()))
        .await;
    assert_eq!(r.json()["objects"][0]["error"]["code"], 404, "{:?}", r.body);
}

/// One answer per oid however often a batch names it; more than 1000 objects is a 422.
#[tokio::test]
async fn batches_are_deduplicated_and_bounded() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body = b"x".to_vec();
    let oid = oid(&body);
    let same: Vec<Value> = (0..50).map(|_| json!({"oid": oid, "size": 1})).collect();
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            json!({"operation": "download", "objects": same}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["objects"].as_array().unwrap().len(), 1);
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"oid": format!("{i:064x}"), "size": 1}))
        .collect();
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            json!({"operation": "download", "objects": many}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000"),
        "{:?}",
        r.body
    );
}

/// The LFS object routes read no body past their bound (`MAX_LFS_BODY`; a delta's chunk list
/// `MAX_LFS_DELTA_BODY`), and say so in git-lfs's shape: the bounds the plugin reads from
/// `git hypha routes`.
#[tokio::test]
async fn lfs_bodies_past_their_bound_are_refused() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let padded = json!({"operation": "download", "objects": [], "ref": {"name": "x".repeat(crate::server::lfs::MAX_LFS_BODY)}});
    let r = s.raw(BATCH, Some(&auth), padded.to_string()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert_eq!(
        message,
        format!(
            "lfs request refused: its body is larger than {} bytes (or was cut off)",
            crate::server::lfs::MAX_LFS_BODY
        )
    );
    // A delta request of the same size is read (and refused for what it says, not its size).
    let delta = format!(
        "/ws/git/repo/info/lfs/objects/parts/{}/delta",
        "a".repeat(64)
    );
    let r = s.raw(&delta, Some(&auth), padded.to_string()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(!message.contains("larger than"), "{message}");
}

/// The verify action is built on the server's public URL, never on the request's `Host`
/// (it carries the caller's `Authorization` there).
#[tokio::test]
async fn verify_links_ignore_the_host_header() {
    let s = server();
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let oid = oid(b"y");
    let req = Request::builder()
        .method(Method::POST)
        .uri(BATCH)
        .header(header::HOST, "evil.example")
        .header("x-forwarded-proto", "https")
        .header(header::AUTHORIZATION, &auth)
        .body(Body::from(batch_body("upload", &oid, 1)))
        .unwrap();
    let r = s.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let href = r.json()["objects"][0]["actions"]["verify"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        href,
        format!("{BASE}/ws/git/repo.git/info/lfs/objects/verify/{oid}")
    );
}

/// A client that offers our transfer gets it: a large upload becomes an action on the parts
/// routes (past `max_single_put`, which still bounds `basic`), whose plan, parts and
/// completion store the object whole and verified; a small one stays a presigned `PUT`.
#[tokio::test]
async fn our_transfer_sends_large_objects_through_the_parts_routes() {
    const MIB: usize = 1024 * 1024;
    let s = server_with(|st| {
        st.max_single_put(MIB as u64)
            .multipart(crate::repo::upload::MultipartPolicy {
                threshold: 5 * MIB as u64,
                part_size: 5 * MIB as u64,
            })
    });
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body: Vec<u8> = (0..6 * MIB).map(|i| (i % 241) as u8).collect();
    let big = oid(&body);
    let ours = |size: usize| {
        json!({
            "operation": "upload",
            "transfers": ["basic", "lfs-standalone-file", "hypha"],
            "objects": [{"oid": big, "size": size}],
        })
        .to_string()
    };
    // Without our transfer, the object is over one PUT.
    let r = s
        .raw(BATCH, Some(&auth), batch_body("upload", &big, body.len()))
        .await;
    assert_eq!(r.json()["objects"][0]["error"]["code"], 422);

    let r = s.raw(BATCH, Some(&auth), ours(body.len())).await;
    let answer = r.json();
    assert_eq!(answer["transfer"], "hypha", "{answer}");
    let upload = &answer["objects"][0]["actions"]["upload"];
    let href = upload["href"].as_str().unwrap();
    assert!(href.ends_with(&format!("/ws/git/repo.git/info/lfs/objects/parts/{big}")));
    assert_eq!(upload["header"]["X-Hypha-Transfer"], "parts");
    assert_eq!(upload["header"]["X-Hypha-Delta"], "chunks");
    assert_eq!(upload["header"]["Authorization"], auth);
    let route = format!("/ws/git/repo.git/info/lfs/objects/parts/{big}");

    // The parts routes need write access.
    let r = s
        .raw(&route, None, json!({"size": body.len()}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let reader = basic(&token("ws", Permission::Read));
    let r = s
        .raw(
            &route,
            Some(&reader),
            json!({"size": body.len()}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = s
        .raw(&route, Some(&auth), json!({"size": body.len()}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let plan = r.json();
    assert_eq!(plan["part_size"], 5 * MIB);
    let parts = plan["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    for part in parts {
        let n = part["number"].as_u64().unwrap() as usize;
        let range = (n - 1) * 5 * MIB..(n * 5 * MIB).min(body.len());
        let put = s
            .presigned(
                part["href"].as_str().unwrap(),
                Method::PUT,
                body[range].to_vec(),
                &action_headers(part),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "part {n}: {:?}", put.body);
    }
    let done = json!({"size": body.len(), "upload_id": plan["upload_id"], "part_size": 5 * MIB});
    let r = s
        .raw(&format!("{route}/complete"), Some(&auth), done.to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stored = std::fs::read(s.root.join(format!(
        "ws/artifacts/repo/git/lfs/objects/{}/{}/{big}",
        &big[..2],
        &big[2..4]
    )))
    .unwrap();
    assert!(stored == body, "assembled whole at its key");
    // Stored and verified: the next batch and the next plan have nothing to send.
    let r = s.raw(BATCH, Some(&auth), ours(body.len())).await;
    assert!(r.json()["objects"][0]["actions"].is_null(), "{}", r.json());
    let r = s
        .raw(&route, Some(&auth), json!({"size": body.len()}).to_string())
        .await;
    assert_eq!(r.json()["done"], true);

    // A small object with our transfer: one presigned PUT, as with basic.
    let small = oid(b"small");
    let r = s
        .raw(
            BATCH,
            Some(&auth),
            json!({"operation": "upload", "transfers": ["hypha"],
                   "objects": [{"oid": small, "size": 5}]})
            .to_string(),
        )
        .await;
    let upload = &r.json()["objects"][0]["actions"]["upload"];
    assert!(
        upload["href"].as_str().unwrap().contains("/_store/"),
        "{upload}"
    );
    assert!(upload["header"]["X-Hypha-Transfer"].is_null());
}

/// The delta routes (issue 22 part 4) check the caller, then every field a writer controls,
/// before they read anything; each refusal names what failed. A chunk list that finds no
/// stored base gets no plan (the agent then uses parts).
#[tokio::test]
async fn delta_requests_are_checked_before_anything_is_read() {
    use base64::Engine as _;
    const MIB: usize = 1024 * 1024;
    let s = server_with(|st| {
        st.multipart(crate::repo::upload::MultipartPolicy {
            threshold: 5 * MIB as u64,
            part_size: 5 * MIB as u64,
        })
    });
    s.create("ws/repo", false).await;
    let auth = basic(&token("ws", Permission::ReadWrite));
    let body: Vec<u8> = (0..6 * MIB).map(|i| (i % 239) as u8).collect();
    let big = oid(&body);
    let route = format!("/ws/git/repo.git/info/lfs/objects/parts/{big}/delta");
    let mut chunker = crate::lfs_chunks::Chunker::new();
    chunker.feed(&body);
    let list = crate::lfs_chunks::encode(body.len() as u64, &chunker.finish());
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let request = |size: usize, chunks: String, bases: Vec<String>| {
        json!({"size": size, "chunks": chunks, "bases": bases}).to_string()
    };
    let good = request(body.len(), b64(&list), vec!["a".repeat(64)]);

    let r = s.raw(&route, None, good.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let reader = basic(&token("ws", Permission::Read));
    let r = s.raw(&route, Some(&reader), good.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let refused = [
        (request(body.len(), "%%%".into(), vec![]), "chunks"),
        (
            request(body.len(), b64(b"HYCDC01\n"), vec![]),
            "bad chunk index",
        ),
        (
            request(body.len() + 1, b64(&list), vec![]),
            "the chunks are of another size",
        ),
        (
            request(body.len(), b64(&list), vec!["a".repeat(64); 5]),
            "5 bases, at most 4",
        ),
        ("{".to_owned(), "invalid lfs delta request"),
    ];
    for (req, why) in refused {
        let r = s.raw(&route, Some(&auth), req).await;
        assert!(r.status.is_client_error(), "{why}: {}", r.status);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(why), "{why}: {message}");
    }

    // No base stored: no plan.
    let r = s.raw(&route, Some(&auth), good).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.json()["id"].is_null(), "{}", r.json());

    // A completion of a plan that does not exist, or with an id that is no id of ours.
    let done = format!("{route}/complete");
    let r = s
        .raw(
            &done,
            Some(&auth),
            json!({"size": body.len(), "id": "0".repeat(32)}).to_string(),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("no such delta plan"));
    let r = s
        .raw(
            &done,
            Some(&auth),
            json!({"size": body.len(), "id": "../../x"}).to_string(),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("invalid lfs delta id"));
}

/// Plugin mode (Hypha's plugin serves our LFS endpoint and forwards here): the `verify` and
/// `parts` links point where the plugin says (never at this child's loopback address or the
/// request's `Host`), carry the caller's `Authorization` back, and objects land at Hypha's
/// own key beside the artifact's `.git/`. Without a usable base the batch is refused.
#[tokio::test]
async fn plugin_mode_links_on_the_plugins_address_and_stores_at_hyphas_key() {
    const MIB: usize = 1024 * 1024;
    let s = server_with(|st| {
        st.plugin_key(PLUGIN_KEY.as_bytes())
            .multipart(crate::repo::upload::MultipartPolicy {
                threshold: 5 * MIB as u64,
                part_size: 5 * MIB as u64,
            })
    });
    let repo = s.state.store.repo_at("ws/r", PREFIX).unwrap();
    repo.create(false, None).await.unwrap();
    let base = "https://hypha.example/ws/git/r/remote/v1/lfs/objects/";
    let auth = "Basic Z2l0OmEtaHlwaGEtdG9rZW4=";
    let batch = "/ws/git/r/info/lfs/objects/batch";
    let send = |permission: &'static str, lfs_base: Option<&'static str>, body: String| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(batch)
            .header(header::HOST, "evil.example")
            .header(header::AUTHORIZATION, auth);
        for (k, v) in plugin_headers(permission, PREFIX) {
            req = req.header(k, v);
        }
        if let Some(b) = lfs_base {
            req = req.header("x-hypha-lfs-base", b);
        }
        s.send(req.body(Body::from(body)).unwrap())
    };
    let body = b"weights through hypha".to_vec();
    let small = oid(&body);
    let big = "ab".repeat(32);
    let upload = json!({
        "operation": "upload",
        "transfers": ["basic", "hypha"],
        "objects": [{"oid": small, "size": body.len()}, {"oid": big, "size": 6 * MIB}],
    })
    .to_string();

    let r = send("write", Some(base), upload.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let answer = r.json();
    let verify = &answer["objects"][0]["actions"]["verify"];
    assert_eq!(verify["href"], format!("{base}verify/{small}"));
    assert_eq!(verify["header"]["Authorization"], auth);
    let parts = &answer["objects"][1]["actions"]["upload"];
    assert_eq!(parts["href"], format!("{base}parts/{big}"));
    assert_eq!(parts["header"]["Authorization"], auth);

    // The object goes to Hypha's key, `{prefix without .git/}git/lfs/objects/aa/bb/<oid>`.
    let put = &answer["objects"][0]["actions"]["upload"];
    let r = s
        .presigned(
            put["href"].as_str().unwrap(),
            Method::PUT,
            body.clone(),
            &action_headers(put),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let key = format!(
        "ws/artifacts/01abc-uuid/git/lfs/objects/{}/{}/{small}",
        &small[..2],
        &small[2..4]
    );
    assert_eq!(std::fs::read(s.root.join(key)).unwrap(), body);

    // Hypha granted read: no upload.
    let r = send("read", Some(base), upload.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // No base, or one that is not an http(s) URL ending in /objects/: refused, named.
    for bad in [
        None,
        Some("ftp://hypha.example/ws/git/r/remote/v1/lfs/objects/"),
        Some("https://hypha.example/ws/git/r/remote/v1/lfs/"),
        Some("https://hypha.example/ws/git/r/remote/v1/lfs/objects/?x=1"),
        Some("not a url"),
    ] {
        let r = send("write", bad, upload.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("x-hypha-lfs-base"), "{message}");
    }
}
