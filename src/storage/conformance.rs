//! The one storage conformance suite: what every [`Backend`] must do, as plain async
//! functions taking `Arc<dyn Backend>`. `LocalDisk` runs them in its unit tests; an S3
//! backend runs the same functions against a bucket.
//!
//! Each function works under its own random prefix, so the suite can share a bucket with
//! other runs. Presigned URLs are checked for shape here; fetching them needs an HTTP server
//! and is tested with the server's `/_store` routes.
//!
//! The repository's rules over each backend are checked by its own conformance suite, which uses
//! [`Hooked`] from here to make a backend fail or change under a test.
//!
//! Test code: compiled for the library's own tests only (`storage` is declared with it under
//! `#[cfg(test)]`). It panics on the first failed expectation.

use super::{Backend, Error, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode};
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Every check, in order.
pub(crate) async fn run_all(backend: Arc<dyn Backend>) {
    get_put_head(backend.clone()).await;
    get_many(backend.clone()).await;
    conditional_put(backend.clone()).await;
    delete(backend.clone()).await;
    list(backend.clone()).await;
    range(backend.clone()).await;
    presign(backend.clone()).await;
    invalid_keys(backend).await;
}

pub(crate) fn unique_prefix(test: &str) -> String {
    format!(
        "conformance/{test}-{}/",
        hex::encode(rand::random::<[u8; 8]>())
    )
}

/// `get_many` answers each key as `get` would, in the order asked.
pub(crate) async fn get_many(backend: Arc<dyn Backend>) {
    let p = unique_prefix("get-many");
    let mut etags = Vec::new();
    for name in ["a", "b/c"] {
        let etag = backend
            .put(
                &format!("{p}{name}"),
                Bytes::from(format!("body of {name}")),
                PutMode::Overwrite,
            )
            .await
            .expect("put");
        etags.push(etag);
    }
    let keys = vec![format!("{p}b/c"), format!("{p}missing"), format!("{p}a")];
    let got = backend.get_many(keys, 2).await;
    assert_eq!(got.len(), 3);
    let body = |r: &Result<crate::storage::Object, Error>| match r {
        Ok(o) => (
            String::from_utf8_lossy(&o.body).into_owned(),
            o.etag.clone(),
        ),
        Err(e) => panic!("get_many: {e}"),
    };
    assert_eq!(body(&got[0]), ("body of b/c".to_owned(), etags[1].clone()));
    assert!(
        matches!(got[1], Err(Error::NotFound { .. })),
        "{:?}",
        got[1].as_ref().err()
    );
    assert_eq!(body(&got[2]), ("body of a".to_owned(), etags[0].clone()));
    assert!(backend.get_many(Vec::new(), 4).await.is_empty());
}

pub(crate) async fn get_put_head(backend: Arc<dyn Backend>) {
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

pub(crate) async fn conditional_put(backend: Arc<dyn Backend>) {
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

pub(crate) async fn delete(backend: Arc<dyn Backend>) {
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

pub(crate) async fn list(backend: Arc<dyn Backend>) {
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

pub(crate) async fn range(backend: Arc<dyn Backend>) {
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

pub(crate) async fn presign(backend: Arc<dyn Backend>) {
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

pub(crate) async fn invalid_keys(backend: Arc<dyn Backend>) {
    for key in [
        "",
        "/abs",
        "a/../b",
        "a//b",
        "a/./b",
        ".hypha-tmp/x",
        "a/.hypha-tmp-1",
    ] {
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

/// One operation on a [`Backend`], as a [`Hook`] sees it before it reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    Read,
    Put(&'a PutMode),
    Delete,
    Presign,
}

/// What a test wants to happen just before each operation: fail it, or act on the store first.
#[async_trait]
pub(crate) trait Hook: Send + Sync + std::fmt::Debug {
    async fn before(&self, inner: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error>;
}

/// A backend that runs `hook` before every operation, then hands it to `inner`: the test
/// doubles of a dying server (here) and of an outside writer (`repo/tests.rs`).
#[derive(Debug)]
pub(crate) struct Hooked<H> {
    pub inner: Arc<dyn Backend>,
    pub hook: H,
}

#[async_trait]
impl<H: Hook> Backend for Hooked<H> {
    async fn get(&self, key: &str) -> Result<Object, Error> {
        self.hook.before(&self.inner, key, Op::Read).await?;
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        self.hook.before(&self.inner, key, Op::Read).await?;
        self.inner.head(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        self.hook.before(&self.inner, key, Op::Read).await?;
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<String, Error> {
        self.hook.before(&self.inner, key, Op::Put(&mode)).await?;
        self.inner.put(key, body, mode).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error> {
        self.hook.before(&self.inner, key, Op::Delete).await?;
        self.inner.delete(key, if_match).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        self.hook.before(&self.inner, prefix, Op::Read).await?;
        self.inner.list(prefix).await
    }
    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, Error> {
        self.hook.before(&self.inner, key, Op::Presign).await?;
        self.inner
            .presign(key, method, expires_in, content_length)
            .await
    }
}

/// The suite on each backend: local disk, and both S3 test servers (each skipped, with a
/// note, where `scripts/s3-services.sh` did not start it; never under CI).
mod tests {
    use super::*;
    use crate::storage::test_services::Server;
    use crate::storage::LocalDisk;

    #[tokio::test]
    async fn on_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path().join("store"), "http://localhost:1", b"k").unwrap();
        run_all(Arc::new(disk)).await;
    }

    #[tokio::test]
    async fn on_moto() {
        if let Some(store) = Server::Moto.store("conformance") {
            store
                .check_conditional_writes()
                .await
                .expect("moto honours conditional writes");
            run_all(Arc::new(store)).await;
        }
    }

    /// Everything but the conditional-put race, which s3s-fs cannot win honestly (its
    /// conditional writes are check-then-write).
    #[tokio::test]
    async fn on_s3s_fs() {
        let Some(store) = Server::S3sFs.store("conformance") else {
            return;
        };
        // Honoured (check-then-write), which is all the startup check can see.
        store
            .check_conditional_writes()
            .await
            .expect("s3s-fs honours conditional writes");
        let backend: Arc<dyn Backend> = Arc::new(store);
        get_put_head(backend.clone()).await;
        get_many(backend.clone()).await;
        delete(backend.clone()).await;
        list(backend.clone()).await;
        range(backend.clone()).await;
        presign(backend.clone()).await;
        invalid_keys(backend).await;
    }
}
