//! The one storage conformance suite: what every [`Backend`] must do, as plain async
//! functions taking `Arc<dyn Backend>`. `LocalDisk` runs them in its unit tests; an S3
//! backend runs the same functions against a bucket.
//!
//! Each function works under its own random prefix, so the suite can share a bucket with
//! other runs. Presigned URLs are checked for shape here; fetching them needs an HTTP server
//! and is tested with the server's `/_store` routes.
//!
//! This is test code compiled into the library so that integration tests and other crates'
//! backends can call it; it panics on the first failed expectation.

use super::{Backend, Error, PresignMethod, PutMode};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Every check, in order.
pub async fn run_all(backend: Arc<dyn Backend>) {
    get_put_head(backend.clone()).await;
    conditional_put(backend.clone()).await;
    delete(backend.clone()).await;
    list(backend.clone()).await;
    range(backend.clone()).await;
    presign(backend.clone()).await;
    invalid_keys(backend).await;
}

fn unique_prefix(test: &str) -> String {
    format!(
        "conformance/{test}-{}/",
        hex::encode(rand::random::<[u8; 8]>())
    )
}

pub async fn get_put_head(backend: Arc<dyn Backend>) {
    let p = unique_prefix("get-put-head");
    let key = format!("{p}a/b");
    assert!(matches!(
        backend.get(&key).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        backend.head(&key).await,
        Err(Error::NotFound { .. })
    ));
    let etag = backend
        .put(&key, Bytes::from_static(b"hello"), PutMode::Overwrite)
        .await
        .expect("put creates");
    let got = backend.get(&key).await.expect("get after put");
    assert_eq!(&got.body[..], b"hello");
    assert_eq!(got.etag, etag, "get returns the etag put returned");
    let meta = backend.head(&key).await.expect("head after put");
    assert_eq!(meta.size, 5);
    assert_eq!(meta.etag.as_deref(), Some(etag.as_str()));

    let etag2 = backend
        .put(&key, Bytes::from_static(b"world!"), PutMode::Overwrite)
        .await
        .expect("put replaces");
    assert_ne!(etag, etag2, "new content, new etag");
    assert_eq!(&backend.get(&key).await.expect("get").body[..], b"world!");

    // Empty objects exist (`.gitkeep`).
    let empty = format!("{p}.gitkeep");
    backend
        .put(&empty, Bytes::new(), PutMode::Overwrite)
        .await
        .expect("put empty");
    assert_eq!(backend.head(&empty).await.expect("head empty").size, 0);
}

pub async fn conditional_put(backend: Arc<dyn Backend>) {
    let p = unique_prefix("conditional");
    let key = format!("{p}refs/heads/main");
    let etag = backend
        .put(&key, Bytes::from_static(b"one\n"), PutMode::IfNoneMatch)
        .await
        .expect("create when absent");
    assert!(matches!(
        backend
            .put(&key, Bytes::from_static(b"two\n"), PutMode::IfNoneMatch)
            .await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(&backend.get(&key).await.expect("get").body[..], b"one\n");

    let etag2 = backend
        .put(
            &key,
            Bytes::from_static(b"two\n"),
            PutMode::IfMatch(etag.clone()),
        )
        .await
        .expect("update with the current etag");
    // The etag read before the update is now stale.
    assert!(matches!(
        backend
            .put(&key, Bytes::from_static(b"three\n"), PutMode::IfMatch(etag))
            .await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(&backend.get(&key).await.expect("get").body[..], b"two\n");
    assert_eq!(backend.get(&key).await.expect("get").etag, etag2);

    let missing = format!("{p}refs/heads/missing");
    assert!(backend
        .put(&missing, Bytes::from_static(b"x"), PutMode::IfMatch(etag2))
        .await
        .expect_err("if-match on a missing key")
        .is_lost_race());

    // Racing creators: exactly one wins.
    let race = format!("{p}refs/heads/race");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let backend = backend.clone();
            let race = race.clone();
            tokio::spawn(async move {
                backend
                    .put(&race, Bytes::from(format!("{i}\n")), PutMode::IfNoneMatch)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task runs") {
            Ok(_) => wins += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1, "one create wins the race");
}

pub async fn delete(backend: Arc<dyn Backend>) {
    let p = unique_prefix("delete");
    let key = format!("{p}k");
    backend
        .delete(&key, None)
        .await
        .expect("unconditional delete of a missing key succeeds");
    assert!(matches!(
        backend.delete(&key, Some("whatever")).await,
        Err(Error::NotFound { .. })
    ));
    let etag = backend
        .put(&key, Bytes::from_static(b"v1"), PutMode::Overwrite)
        .await
        .expect("put");
    assert!(matches!(
        backend.delete(&key, Some("not-the-etag")).await,
        Err(Error::Conflict { .. })
    ));
    assert!(backend.get(&key).await.is_ok(), "failed delete keeps it");
    backend
        .delete(&key, Some(&etag))
        .await
        .expect("delete with the etag");
    assert!(matches!(
        backend.get(&key).await,
        Err(Error::NotFound { .. })
    ));
    backend
        .put(&key, Bytes::from_static(b"v2"), PutMode::Overwrite)
        .await
        .expect("put");
    backend.delete(&key, None).await.expect("delete");
    assert!(matches!(
        backend.head(&key).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn list(backend: Arc<dyn Backend>) {
    let p = unique_prefix("list");
    assert!(backend.list(&p).await.expect("list empty").is_empty());
    for (key, body) in [
        ("objects/pack/pack-1.pack", "pppp"),
        ("objects/pack/pack-1.idx", "ii"),
        ("refs/heads/main", "m"),
        ("refs/heads/feature/x", "x"),
        ("refs/tags/v1", "t"),
        ("HEAD", "h"),
    ] {
        backend
            .put(
                &format!("{p}{key}"),
                Bytes::from(body.to_owned()),
                PutMode::Overwrite,
            )
            .await
            .expect("put");
    }
    let keys = |metas: Vec<super::ObjectMeta>| -> Vec<String> {
        metas
            .into_iter()
            .map(|m| m.key[p.len()..].to_owned())
            .collect()
    };
    assert_eq!(
        keys(backend.list(&format!("{p}refs/")).await.expect("list")),
        ["refs/heads/feature/x", "refs/heads/main", "refs/tags/v1"]
    );
    let packs = backend
        .list(&format!("{p}objects/pack/"))
        .await
        .expect("list");
    assert_eq!(
        packs.iter().map(|m| m.size).collect::<Vec<_>>(),
        [2, 4],
        "sizes, sorted by key"
    );
    assert!(packs.iter().all(|m| m.last_modified.is_some()));
    // A plain string prefix, not only whole directories.
    assert_eq!(
        keys(
            backend
                .list(&format!("{p}refs/heads/ma"))
                .await
                .expect("list")
        ),
        ["refs/heads/main"]
    );
    assert_eq!(backend.list(&p).await.expect("list all").len(), 6);
}

pub async fn range(backend: Arc<dyn Backend>) {
    let p = unique_prefix("range");
    let key = format!("{p}blob");
    backend
        .put(&key, Bytes::from_static(b"0123456789"), PutMode::Overwrite)
        .await
        .expect("put");
    assert_eq!(
        &backend.get_range(&key, 0..3).await.expect("range")[..],
        b"012"
    );
    assert_eq!(
        &backend.get_range(&key, 7..10).await.expect("range")[..],
        b"789"
    );
    assert!(backend
        .get_range(&key, 4..4)
        .await
        .expect("empty")
        .is_empty());
    assert!(matches!(
        backend.get_range(&key, 8..11).await,
        Err(Error::InvalidRange { .. })
    ));
    assert!(matches!(
        backend.get_range(&format!("{p}missing"), 0..1).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn presign(backend: Arc<dyn Backend>) {
    let p = unique_prefix("presign");
    let key = format!("{p}objects/pack/pack-1.pack");
    let get = backend
        .presign(&key, PresignMethod::Get, Duration::from_secs(60), None)
        .await
        .expect("presign get");
    assert_eq!(get.method, "GET");
    assert!(get.url.starts_with("http"), "an absolute URL");
    let put = backend
        .presign(
            &key,
            PresignMethod::Put,
            Duration::from_secs(60),
            Some(1234),
        )
        .await
        .expect("presign put");
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.headers.get("Content-Length").map(String::as_str),
        Some("1234")
    );
    assert_eq!(
        put.headers.get("Content-Type").map(String::as_str),
        Some("application/octet-stream")
    );
    assert_ne!(get.url, put.url);
}

pub async fn invalid_keys(backend: Arc<dyn Backend>) {
    for key in ["", "/abs", "a/../b", "a//b", "a/./b"] {
        assert!(
            matches!(backend.get(key).await, Err(Error::InvalidKey { .. })),
            "{key:?}"
        );
        assert!(
            matches!(
                backend.put(key, Bytes::new(), PutMode::Overwrite).await,
                Err(Error::InvalidKey { .. })
            ),
            "{key:?}"
        );
    }
}
