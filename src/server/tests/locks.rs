//! Handler tests of the LFS locks API (`server::locks`): lock, the 409 naming the holder,
//! list with its filters and pages, verify split by owner, unlock by the owner only unless
//! forced, the access rules, racing locks of one path, and hostile input. git-lfs itself
//! drives them end to end in tests/e2e/lfs_locks.rs.

use super::*;
use std::sync::Arc;

const LOCKS: &str = "/ws/git/repo.git/info/lfs/locks";

fn as_user(user: &str, p: Permission) -> String {
    format!(
        "Bearer {}",
        auth::mint(
            SECRET,
            user,
            &[("ws".to_owned(), p)],
            Duration::from_secs(600)
        )
    )
}

impl Server {
    async fn get(&self, uri: &str, auth: Option<&str>) -> Reply {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn lock(&self, auth: &str, path: &str) -> Reply {
        self.raw(LOCKS, Some(auth), json!({"path": path}).to_string())
            .await
    }
}

fn message(r: &Reply) -> String {
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        crate::api::lfs::MEDIA_TYPE,
        "{:?}",
        r.body
    );
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn lock_list_verify_unlock() {
    let s = server();
    s.create("ws/repo", false).await;
    let ann = as_user("ann", Permission::ReadWrite);
    let bob = as_user("bob", Permission::ReadWrite);

    let r = s.lock(&ann, "models/a.bin").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], crate::api::lfs::MEDIA_TYPE);
    let lock = r.json()["lock"].clone();
    assert_eq!(lock["path"], "models/a.bin");
    assert_eq!(lock["owner"]["name"], "ann");
    let locked_at = lock["locked_at"].as_str().unwrap();
    assert!(
        locked_at.len() == 20 && locked_at.ends_with('Z') && &locked_at[10..11] == "T",
        "RFC 3339: {locked_at}"
    );
    let id = lock["id"].as_str().unwrap().to_owned();

    // Taken: 409 with the lock that holds it, whoever asks.
    for who in [&ann, &bob] {
        let r = s.lock(who, "models/a.bin").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        assert_eq!(r.json()["lock"]["id"], id.as_str());
        assert!(
            message(&r).contains("already locked by ann"),
            "{:?}",
            r.body
        );
    }
    s.lock(&bob, "b.bin").await;

    let r = s.get(LOCKS, Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["locks"].as_array().unwrap().len(), 2);
    let r = s
        .get(&format!("{LOCKS}?path=models%2Fa.bin"), Some(&bob))
        .await;
    assert_eq!(r.json()["locks"][0]["id"], id.as_str());
    let r = s.get(&format!("{LOCKS}?id={id}"), Some(&bob)).await;
    assert_eq!(r.json()["locks"][0]["path"], "models/a.bin");
    let r = s
        .get(&format!("{LOCKS}?path=nothing.bin"), Some(&bob))
        .await;
    assert_eq!(r.json(), json!({"locks": []}));

    let r = s
        .raw(&format!("{LOCKS}/verify"), Some(&bob), "{}".to_owned())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["ours"][0]["path"], "b.bin");
    assert_eq!(v["theirs"][0]["path"], "models/a.bin");

    // Someone else's lock: 403 without force, removed with it.
    let unlock = format!("{LOCKS}/{id}/unlock");
    let r = s.raw(&unlock, Some(&bob), "{}".to_owned()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(message(&r).contains("locked by ann"), "{:?}", r.body);
    let r = s
        .raw(&unlock, Some(&bob), json!({"force": true}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["lock"]["id"], id.as_str());
    let r = s.raw(&unlock, Some(&ann), "{}".to_owned()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert!(message(&r).contains("no lock"), "{:?}", r.body);
}

#[tokio::test]
async fn access_rules() {
    let s = server();
    s.create("ws/repo", false).await;
    s.create("ws/open", true).await;
    let reader = as_user("rita", Permission::Read);
    let writer = as_user("wes", Permission::ReadWrite);

    // Lock and unlock need write.
    let r = s.lock(&reader, "a.bin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = s
        .raw(LOCKS, None, json!({"path": "a.bin"}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.headers.contains_key("lfs-authenticate"));
    let id = s.lock(&writer, "a.bin").await.json()["lock"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .raw(
            &format!("{LOCKS}/{id}/unlock"),
            Some(&reader),
            json!({"force": true}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);

    // Listing needs read: anonymous only on a public repository.
    assert_eq!(s.get(LOCKS, Some(&reader)).await.status, StatusCode::OK);
    let r = s.get(LOCKS, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let open = "/ws/git/open.git/info/lfs/locks";
    assert_eq!(s.get(open, None).await.status, StatusCode::OK);

    // Verify needs a caller, even on a public repository: it splits by owner.
    let r = s
        .raw(&format!("{open}/verify"), None, "{}".to_owned())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.headers.contains_key("lfs-authenticate"));
    assert!(message(&r).contains("authentication required"));
    let r = s
        .raw(&format!("{LOCKS}/verify"), Some(&reader), "{}".to_owned())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // A missing repository is 404 for a writer of the workspace.
    let r = s
        .raw(
            "/ws/git/nope.git/info/lfs/locks",
            Some(&writer),
            json!({"path": "a.bin"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

#[tokio::test]
async fn pages_are_bounded_and_cursors_checked() {
    let s = server();
    s.create("ws/repo", false).await;
    let ann = as_user("ann", Permission::ReadWrite);
    for i in 0..5 {
        assert_eq!(
            s.lock(&ann, &format!("f{i}.bin")).await.status,
            StatusCode::CREATED
        );
    }
    let mut seen = 0;
    let mut uri = format!("{LOCKS}?limit=2");
    loop {
        let page = s.get(&uri, Some(&ann)).await.json();
        let n = page["locks"].as_array().unwrap().len();
        assert!(n <= 2, "{page}");
        seen += n;
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("{LOCKS}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, 5);
    // Verify pages the same way, with the limit in the body.
    let v = s
        .raw(
            &format!("{LOCKS}/verify"),
            Some(&ann),
            json!({"limit": 3}).to_string(),
        )
        .await
        .json();
    assert_eq!(v["ours"].as_array().unwrap().len(), 3);
    assert!(v["next_cursor"].is_string());

    // A huge limit is capped, not an error; nonsense is a clear 422.
    let r = s
        .get(&format!("{LOCKS}?limit=99999999999"), Some(&ann))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for (query, says) in [
        ("limit=-1", "invalid lock listing limit"),
        ("limit=ten", "invalid lock listing limit"),
        ("cursor=..%2F..%2Fx", "invalid lock cursor"),
        ("id=..%2F..%2Fetc%2Fpasswd", "invalid lock id"),
    ] {
        let r = s.get(&format!("{LOCKS}?{query}"), Some(&ann)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(message(&r).contains(says), "{query}: {:?}", r.body);
    }
}

#[tokio::test]
async fn hostile_bodies_paths_and_ids() {
    let s = server();
    s.create("ws/repo", false).await;
    let ann = as_user("ann", Permission::ReadWrite);
    let long = "a".repeat(crate::repo::MAX_LOCK_PATH + 1);
    let huge = format!(
        "{{\"path\": \"a\", \"pad\": \"{}\"}}",
        "x".repeat(crate::server::locks::MAX_LOCK_BODY)
    );
    for (body, says) in [
        (json!({"path": long}).to_string(), "longer than 4096 bytes"),
        (json!({"path": ""}).to_string(), "empty"),
        (json!({"path": "a\u{0}b"}).to_string(), "NUL"),
        (json!({"nopath": 1}).to_string(), "invalid lfs lock request"),
        ("[".to_owned(), "invalid lfs lock request"),
        (huge, "larger than 65536 bytes"),
    ] {
        let r = s.raw(LOCKS, Some(&ann), body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{says}");
        let text = message(&r);
        assert!(
            text.contains(says) && !text.contains('\n'),
            "{says}: {text}"
        );
    }
    for id in ["..", "%2E%2E%2Fx", &"A".repeat(44), &"a".repeat(45)] {
        let r = s
            .raw(&format!("{LOCKS}/{id}/unlock"), Some(&ann), "{}".to_owned())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id}: {:?}",
            r.body
        );
        assert!(message(&r).contains("invalid lock id"), "{id}");
    }
    // A path with a newline is lockable, and messages about it stay on one line.
    let odd = "odd\nname.bin";
    assert_eq!(s.lock(&ann, odd).await.status, StatusCode::CREATED);
    let bob = as_user("bob", Permission::ReadWrite);
    let r = s
        .get(&format!("{LOCKS}?path=odd%0Aname.bin"), Some(&bob))
        .await;
    let id = r.json()["locks"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .raw(&format!("{LOCKS}/{id}/unlock"), Some(&bob), "{}".to_owned())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        message(&r).starts_with("odd\\nname.bin is locked by ann"),
        "{:?}",
        r.body
    );

    // A token without a subject cannot own a lock.
    let nameless = format!(
        "Bearer {}",
        auth::mint(
            SECRET,
            "",
            &[("ws".to_owned(), Permission::ReadWrite)],
            Duration::from_secs(600)
        )
    );
    let r = s.lock(&nameless, "a.bin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(message(&r).contains("names its user"));
}

/// Many callers lock one path at once: exactly one gets it, every other one is told who.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_locks_of_one_path_have_one_winner() {
    let s = Arc::new(server());
    s.create("ws/repo", false).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let who = as_user(&format!("user{i}"), Permission::ReadWrite);
                s.lock(&who, "contested.bin").await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut holders = std::collections::BTreeSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        match r.status {
            StatusCode::CREATED => winners.push(r.json()["lock"]["id"].clone()),
            StatusCode::CONFLICT => {
                holders.insert(r.json()["lock"]["id"].to_string());
            }
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!(winners.len(), 1, "one winner");
    assert_eq!(
        holders.into_iter().collect::<Vec<_>>(),
        vec![winners[0].to_string()],
        "every loser names the winner's lock"
    );
}

/// Through the plugin, Hypha checked the caller and names its user (`x-hypha-user`, none for
/// Hypha's anonymous user): a lock's owner is that user; what a route asks is the one table's
/// (`api::lfs_routes`), so an anonymous caller Hypha lets read lists locks but cannot verify
/// them (401 with `LFS-Authenticate`, as standalone), one refused a write gets 401, and one
/// Hypha lets write still cannot lock or unlock.
#[tokio::test]
async fn through_the_plugin_owners_are_hypha_users_and_anonymity_is_kept() {
    let s = plugin_server().await;
    let locks = "/ws/git/r/info/lfs/locks";
    let send = |method: Method, uri: String, permission: &'static str, user: bool, body: Value| {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in plugin_headers(permission, PREFIX) {
            if user || k != "x-hypha-user" {
                req = req.header(k, v);
            }
        }
        s.send(req.body(Body::from(body.to_string())).unwrap())
    };
    let r = send(
        Method::POST,
        locks.into(),
        "write",
        true,
        json!({"path": "a.bin"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.json()["lock"]["owner"]["name"], "u-carol");

    let r = send(Method::GET, locks.into(), "read", false, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["locks"][0]["path"], "a.bin");
    let verify = format!("{locks}/verify");
    let r = send(Method::POST, verify.clone(), "read", false, json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.headers.contains_key("lfs-authenticate"));
    let r = send(Method::POST, verify, "read", true, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["ours"][0]["path"], "a.bin", "{:?}", r.body);

    // Hypha granted read only: a named user is forbidden to lock, an anonymous one asked to
    // authenticate; nothing is locked.
    let body = json!({"path": "b.bin"});
    let r = send(Method::POST, locks.into(), "read", true, body.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = send(Method::POST, locks.into(), "read", false, body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let count = |r: Reply| r.json()["locks"].as_array().map(Vec::len);
    let r = send(Method::GET, locks.into(), "read", true, json!({})).await;
    assert_eq!(count(r), Some(1));

    // Hypha may grant anonymous callers write (`"*": "rw"`): they still neither lock nor
    // unlock (a lock belongs to who takes it; two anonymous callers are not one owner).
    let body = json!({"path": "c.bin"});
    let r = send(Method::POST, locks.into(), "write", false, body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.headers.contains_key("lfs-authenticate"));
    let repo = s.state.store.repo_at("ws/r", PREFIX).unwrap();
    let id = repo.lock_by_path("a.bin").await.unwrap().unwrap().id;
    let unlock = format!("{locks}/{id}/unlock");
    let r = send(Method::POST, unlock, "write", false, json!({"force": true})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = send(Method::GET, locks.into(), "read", true, json!({})).await;
    assert_eq!(count(r), Some(1));
}
