//! [`Metered`]: a [`Backend`] that tells a [`StoreObserver`] about every request it passes
//! to the store it wraps: which operation, how many requests, how long, whether it failed.
//! `git hypha serve` counts its store requests with it (the round trips a push or a fetch
//! costs on S3, docs/design.md §18, §19).
//!
//! Owns the operation names only; what is done with them is the observer's business (the
//! server's metrics). Changes nothing a request does: each call goes to the wrapped store as
//! it came, `get_many` included (local disk reads a batch in one task; it is reported as one
//! `GET` per key).

use super::{
    Backend, Error, Multipart, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode,
};
use crate::storage::s3::multipart::MultipartUpload;
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kind of store request, named as S3 names its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `get`, `get_range` and each key of `get_many`.
    Get,
    Head,
    /// `put` and `put_file`.
    Put,
    Delete,
    List,
    MultipartCreate,
    MultipartComplete,
    MultipartAbort,
    MultipartList,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "GET",
            Operation::Head => "HEAD",
            Operation::Put => "PUT",
            Operation::Delete => "DELETE",
            Operation::List => "LIST",
            Operation::MultipartCreate => "MULTIPART_CREATE",
            Operation::MultipartComplete => "MULTIPART_COMPLETE",
            Operation::MultipartAbort => "MULTIPART_ABORT",
            Operation::MultipartList => "MULTIPART_LIST",
        }
    }
}

/// Told about each request (or batch of `requests` reads) once it has an answer.
pub trait StoreObserver: Send + Sync {
    /// `failed` is a store failure ([`Error::Backend`]): not a missing key or a lost
    /// condition, which are answers.
    fn observe(&self, operation: Operation, requests: u64, took: Duration, failed: bool);
}

/// The store `inner`, observed. Presigning is not a request (the URL is signed here) and is
/// not reported.
pub struct Metered {
    inner: Arc<dyn Backend>,
    observer: Arc<dyn StoreObserver>,
    /// Whether `inner` reads a `get_many` batch its own way (local disk: one task); otherwise
    /// the batch goes through this wrapper's `get`, one observed request per key, as the
    /// trait's default would send them.
    batched_reads: bool,
}

impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Metered {
    /// `batched_reads`: `inner` overrides [`Backend::get_many`] (local disk does, S3 not).
    pub fn new(
        inner: Arc<dyn Backend>,
        observer: Arc<dyn StoreObserver>,
        batched_reads: bool,
    ) -> Metered {
        Metered {
            inner,
            observer,
            batched_reads,
        }
    }

    async fn timed<T>(
        &self,
        operation: Operation,
        request: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = request.await;
        let failed = matches!(result, Err(Error::Backend { .. }));
        self.observer
            .observe(operation, 1, started.elapsed(), failed);
        result
    }

    fn multipart_inner(&self, key: &str) -> Result<&dyn Multipart, Error> {
        self.inner.multipart().ok_or_else(|| Error::Invalid {
            detail: format!("{key}: this store has no multipart uploads"),
        })
    }
}

#[async_trait]
impl Backend for Metered {
    async fn get(&self, key: &str) -> Result<Object, Error> {
        self.timed(Operation::Get, self.inner.get(key)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, Error> {
        self.timed(Operation::Head, self.inner.head(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Error> {
        self.timed(Operation::Get, self.inner.get_range(key, range))
            .await
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<String, Error> {
        self.timed(Operation::Put, self.inner.put(key, body, mode))
            .await
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), Error> {
        self.timed(Operation::Delete, self.inner.delete(key, if_match))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        self.timed(Operation::List, self.inner.list(prefix)).await
    }

    async fn presign(
        &self,
        key: &str,
        method: PresignMethod,
        expires_in: Duration,
        content_length: Option<u64>,
    ) -> Result<PresignedTransfer, Error> {
        self.inner
            .presign(key, method, expires_in, content_length)
            .await
    }

    async fn get_many(&self, keys: Vec<String>, concurrency: usize) -> Vec<Result<Object, Error>> {
        if !self.batched_reads {
            use futures_util::StreamExt;
            return futures_util::stream::iter(keys)
                .map(|key| async move { self.get(&key).await })
                .buffered(concurrency.max(1))
                .collect()
                .await;
        }
        let n = keys.len() as u64;
        let started = Instant::now();
        let results = self.inner.get_many(keys, concurrency).await;
        let failed = results
            .iter()
            .any(|r| matches!(r, Err(Error::Backend { .. })));
        if n > 0 {
            self.observer
                .observe(Operation::Get, n, started.elapsed(), failed);
        }
        results
    }

    async fn put_file(&self, key: &str, file: std::fs::File, size: u64) -> Result<String, Error> {
        self.timed(Operation::Put, self.inner.put_file(key, file, size))
            .await
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        self.inner.multipart().map(|_| self as &dyn Multipart)
    }
}

#[async_trait]
impl Multipart for Metered {
    async fn create_upload(&self, key: &str) -> Result<String, Error> {
        let inner = self.multipart_inner(key)?;
        self.timed(Operation::MultipartCreate, inner.create_upload(key))
            .await
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedTransfer, Error> {
        self.multipart_inner(key)?
            .presign_part(key, upload_id, part_number, content_length, expires_in)
            .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: bytes::Bytes,
    ) -> Result<(), Error> {
        let inner = self.multipart_inner(key)?;
        // A part the server writes itself is a PUT to the store.
        self.timed(
            Operation::Put,
            inner.upload_part(key, upload_id, part_number, body),
        )
        .await
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        part_sizes: &[u64],
        replace: bool,
    ) -> Result<String, Error> {
        let inner = self.multipart_inner(key)?;
        self.timed(
            Operation::MultipartComplete,
            inner.complete_upload(key, upload_id, part_sizes, replace),
        )
        .await
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<std::collections::BTreeMap<u32, u64>, Error> {
        let inner = self.multipart_inner(key)?;
        self.timed(Operation::MultipartList, inner.list_parts(key, upload_id))
            .await
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        let inner = self.multipart_inner(key)?;
        self.timed(
            Operation::MultipartAbort,
            inner.abort_upload(key, upload_id),
        )
        .await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>, Error> {
        let inner = self.multipart_inner(prefix)?;
        self.timed(Operation::MultipartList, inner.list_uploads(prefix))
            .await
    }

    async fn find_upload(&self, key: &str) -> Result<Option<MultipartUpload>, Error> {
        let inner = self.multipart_inner(key)?;
        self.timed(Operation::MultipartList, inner.find_upload(key))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDisk;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Tally(Mutex<Vec<(Operation, u64, bool)>>);

    impl StoreObserver for Tally {
        fn observe(&self, operation: Operation, requests: u64, _took: Duration, failed: bool) {
            self.0.lock().unwrap().push((operation, requests, failed));
        }
    }

    #[tokio::test]
    async fn every_request_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::new(dir.path(), "http://127.0.0.1:1", b"k").unwrap();
        for batched in [true, false] {
            let tally = Arc::new(Tally::default());
            let store = Metered::new(Arc::new(disk.clone()), tally.clone(), batched);
            store
                .put("a/x", Bytes::from_static(b"1"), PutMode::Overwrite)
                .await
                .unwrap();
            store.get("a/x").await.unwrap();
            assert!(store.get("a/missing").await.is_err());
            store.head("a/x").await.unwrap();
            store.get_range("a/x", 0..1).await.unwrap();
            store.list("a/").await.unwrap();
            let many = store
                .get_many(vec!["a/x".into(), "a/missing".into()], 4)
                .await;
            assert_eq!(many.len(), 2);
            store.delete("a/x", None).await.unwrap();
            store
                .presign("a/x", PresignMethod::Get, Duration::from_secs(60), None)
                .await
                .unwrap();
            let seen = tally.0.lock().unwrap().clone();
            let reads: Vec<_> = if batched {
                vec![(Operation::Get, 2, false)]
            } else {
                vec![(Operation::Get, 1, false), (Operation::Get, 1, false)]
            };
            let mut want = vec![
                (Operation::Put, 1, false),
                (Operation::Get, 1, false),
                // A missing key is an answer, not a failure.
                (Operation::Get, 1, false),
                (Operation::Head, 1, false),
                (Operation::Get, 1, false),
                (Operation::List, 1, false),
            ];
            want.extend(reads);
            want.push((Operation::Delete, 1, false));
            assert_eq!(seen, want, "batched reads: {batched}");
            assert!(
                store.multipart().is_some(),
                "local disk has multipart uploads"
            );
        }
    }
}
