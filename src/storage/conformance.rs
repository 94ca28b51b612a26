//! The one storage conformance suite: what every [`Backend`] must do, as plain async
//! functions taking `Arc<dyn Backend>`. `LocalDisk` runs them in its unit tests; an S3
//! backend runs the same functions against a bucket.
//!
//! Each function works under its own random prefix, so the suite can share a bucket with
//! other runs. Presigned URLs are checked for shape here; fetching them needs an HTTP server
//! and is tested with the server's `/_store` routes.
//!
//! The `repo_*` functions check the repository layer over a backend: that an atomic update
//! survives its process dying after any of its writes, and that uploads stay hidden until an
//! update names them, that a ref never points at an object no live pack holds, and that a
//! thin upload is completed into a self-contained pack or refused leaving nothing (the thin
//! checks run real git to make real packs). They use the [`Backend`] trait only, as the repository layer does.
//!
//! This is test code compiled into the library so that integration tests and other crates'
//! backends can call it; it panics on the first failed expectation.

use super::repo::{PackUpload, RefStatus, RefUpdate, Update};
use super::{Backend, Error, Object, ObjectMeta, PresignMethod, PresignedTransfer, PutMode, Store};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every check, in order.
pub async fn run_all(backend: Arc<dyn Backend>) {
    get_put_head(backend.clone()).await;
    get_many(backend.clone()).await;
    conditional_put(backend.clone()).await;
    delete(backend.clone()).await;
    list(backend.clone()).await;
    range(backend.clone()).await;
    presign(backend.clone()).await;
    invalid_keys(backend.clone()).await;
    repo_atomic_update_survives_death(backend.clone()).await;
    repo_uploads_hidden_until_named(backend.clone()).await;
    repo_refused_update_releases_uploads(backend.clone()).await;
    repo_refs_read_again_only_when_changed(backend.clone()).await;
    repo_refs_need_objects(backend.clone()).await;
    repo_lfs_objects(backend.clone()).await;
    repo_thin_completion(backend).await;
}

fn unique_prefix(test: &str) -> String {
    format!(
        "conformance/{test}-{}/",
        hex::encode(rand::random::<[u8; 8]>())
    )
}

/// `get_many` answers each key as `get` would, in the order asked.
pub async fn get_many(backend: Arc<dyn Backend>) {
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

/// A process that dies: the first `budget` writes (puts and deletes) reach the store, then
/// every operation fails, as if the server had been killed at that moment.
#[derive(Debug)]
struct Dying {
    budget: usize,
    writes: AtomicUsize,
}

#[async_trait]
impl Hook for Dying {
    async fn before(&self, _: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        let done = match op {
            // Signing needs no store: a dead process signs nothing, but nothing is lost either.
            Op::Presign => return Ok(()),
            Op::Put(_) | Op::Delete => self.writes.fetch_add(1, Ordering::SeqCst),
            Op::Read => self.writes.load(Ordering::SeqCst),
        };
        if done >= self.budget {
            return Err(Error::backend(key, "the process died (simulated)"));
        }
        Ok(())
    }
}

const ONES: &str = "1111111111111111111111111111111111111111";

fn ref_update(name: &str, old: Option<&str>, new: Option<&str>) -> RefUpdate {
    RefUpdate {
        name: name.to_owned(),
        old: old.map(str::to_owned),
        new: new.map(str::to_owned),
    }
}

/// A unique repository alias under the `conformance` workspace.
fn unique_alias(test: &str) -> String {
    format!("{test}-{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// What is stored under a repository's `refs/`, object by object: key (from `refs/`) -> body.
async fn stored_refs(backend: &Arc<dyn Backend>, alias: &str) -> BTreeMap<String, String> {
    let prefix = format!("conformance/artifacts/{alias}/.git/");
    let mut out = BTreeMap::new();
    for meta in backend.list(&format!("{prefix}refs/")).await.expect("list") {
        let body = backend.get(&meta.key).await.expect("get ref").body;
        out.insert(
            meta.key[prefix.len()..].to_owned(),
            String::from_utf8(body.to_vec()).expect("utf-8 ref"),
        );
    }
    out
}

/// An atomic update of seven refs (replace, create, delete) whose server dies after each
/// possible number of its writes: a fresh server then lists either every ref of the update
/// or none; the next locked operation finishes it, after which the stored ref objects say
/// the same, with Hypha's exact bodies and nothing else under `refs/`.
pub async fn repo_atomic_update_survives_death(backend: Arc<dyn Backend>) {
    let old = "1111111111111111111111111111111111111111";
    let new = "2222222222222222222222222222222222222222";
    let other = "3333333333333333333333333333333333333333";
    let updates = vec![
        ref_update("refs/heads/b0", Some(old), Some(new)),
        ref_update("refs/heads/b1", Some(old), Some(new)),
        ref_update("refs/heads/b2", Some(old), Some(new)),
        ref_update("refs/heads/c0", None, Some(new)),
        ref_update("refs/heads/c1", None, Some(new)),
        ref_update("refs/tags/c2", None, Some(new)),
        ref_update("refs/heads/gone", Some(old), None),
    ];
    let before: BTreeMap<String, String> = ["b0", "b1", "b2", "gone", "main"]
        .iter()
        .map(|b| (format!("refs/heads/{b}"), old.to_owned()))
        .collect();
    let mut after = before.clone();
    for u in &updates {
        match &u.new {
            Some(n) => after.insert(u.name.clone(), n.clone()),
            None => after.remove(&u.name),
        };
    }
    // The record, seven refs, the record finished: nine writes. Dying after each of 0..=9.
    for budget in 0..=9 {
        let alias = unique_alias(&format!("crash{budget}"));
        let store = Store::new(backend.clone());
        let repo = store.repo("conformance", &alias).expect("repo");
        repo.create(false, None).await.expect("create");
        let prefix = format!("conformance/artifacts/{alias}/.git/");
        put_live_pack(&backend, &prefix, 1, &[old, new, other]).await;
        let setup: Vec<RefUpdate> = before
            .keys()
            .map(|name| ref_update(name, None, Some(old)))
            .collect();
        let res = repo
            .update(&Update {
                updates: setup,
                ..Default::default()
            })
            .await
            .expect("setup");
        assert!(res.results.iter().all(|r| r.status == RefStatus::Ok));

        let dying: Arc<dyn Backend> = Arc::new(Hooked {
            inner: backend.clone(),
            hook: Dying {
                budget,
                writes: AtomicUsize::new(0),
            },
        });
        let doomed = Store::new(dying).repo("conformance", &alias).expect("repo");
        let answered = doomed
            .update(&Update {
                updates: updates.clone(),
                atomic: true,
                ..Default::default()
            })
            .await;
        let ok = answered
            .as_ref()
            .is_ok_and(|r| r.results.iter().all(|r| r.status == RefStatus::Ok));
        // Once every ref is written the push is answered `ok`, finished record or not.
        assert_eq!(ok, budget >= 8, "budget {budget}: {answered:?}");

        // A restarted server: a new store over the same backend.
        let fresh = Store::new(backend.clone())
            .repo("conformance", &alias)
            .expect("repo");
        let seen = fresh.refs().await.expect("refs");
        let expected = if budget == 0 { &before } else { &after };
        assert_eq!(
            &seen, expected,
            "budget {budget}: readers see all or nothing"
        );

        // The next locked operation finishes the update; then storage agrees with readers.
        fresh
            .update(&Update {
                updates: vec![ref_update("refs/heads/later", None, Some(other))],
                ..Default::default()
            })
            .await
            .expect("next update");
        let mut want: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.clone(), format!("{v}\n")))
            .collect();
        want.insert("refs/heads/later".into(), format!("{other}\n"));
        assert_eq!(
            stored_refs(&backend, &alias).await,
            want,
            "budget {budget}: stored refs after roll-forward"
        );
        let record = fresh.read_record().await.expect("record");
        assert!(
            record.is_none_or(|r| r.record.is_finished()),
            "budget {budget}: the record is finished"
        );
    }
}

/// A version 2 idx listing `ids` (40 hex each), for a pack whose trailer is `pack_checksum`:
/// all the server reads of a pack's objects. CRCs and offsets are zeros: nothing here reads
/// the pack itself.
pub fn idx_listing(ids: &[&str], pack_checksum: [u8; 20]) -> Vec<u8> {
    let mut ids: Vec<[u8; 20]> = ids
        .iter()
        .map(|id| <[u8; 20] as hex::FromHex>::from_hex(id).expect("40 hex"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut idx = vec![0xffu8, b't', b'O', b'c', 0, 0, 0, 2];
    for byte in 0..=255u8 {
        let count = ids.iter().filter(|id| id[0] <= byte).count() as u32;
        idx.extend(count.to_be_bytes());
    }
    for id in &ids {
        idx.extend(id);
    }
    idx.extend(vec![0u8; ids.len() * 8]);
    idx.extend(pack_checksum);
    idx.extend([0x55u8; 20]);
    idx
}

/// Pack and idx bytes whose trailers tie them together (all `update` checks of a pack), the
/// idx listing `ids`.
pub(crate) fn fake_pack(checksum: u8, ids: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    pack.extend([7u8; 10]);
    pack.extend([checksum; 20]);
    (pack, idx_listing(ids, [checksum; 20]))
}

/// Store a pack holding `ids` straight into the repository at `prefix` (`.../.git/`), live
/// at once, as a push committed long ago (or Hypha itself) left it; its name.
pub async fn put_live_pack(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    checksum: u8,
    ids: &[&str],
) -> String {
    let (pack, idx) = fake_pack(checksum, ids);
    let name = format!("pack-{}", hex::encode([checksum; 20]));
    put_idx_and_pack(backend, &format!("{prefix}objects/pack"), &name, pack, idx).await;
    name
}

/// Store `dir/{name}.idx`, then `dir/{name}.pack`, as an uploader does.
async fn put_idx_and_pack(
    backend: &Arc<dyn Backend>,
    dir: &str,
    name: &str,
    pack: Vec<u8>,
    idx: Vec<u8>,
) {
    for (ext, body) in [("idx", idx), ("pack", pack)] {
        backend
            .put(
                &format!("{dir}/{name}.{ext}"),
                body.into(),
                PutMode::Overwrite,
            )
            .await
            .unwrap_or_else(|e| panic!("put {dir}/{name}.{ext}: {e}"));
    }
}

/// Ask for upload URLs of a fake pack, then store it (as its uploader would); its name.
async fn upload_fake_pack(
    repo: &super::Repository,
    backend: &Arc<dyn Backend>,
    alias: &str,
    checksum: u8,
    ids: &[&str],
) -> String {
    let (pack, idx) = fake_pack(checksum, ids);
    let name = format!("pack-{}", hex::encode([checksum; 20]));
    let spec = PackUpload {
        name: name.clone(),
        pack_size: pack.len() as u64,
        idx_size: idx.len() as u64,
        upload_id: None,
    };
    repo.presign_upload(&spec, Duration::from_secs(60))
        .await
        .expect("presign");
    let dir = format!("conformance/artifacts/{alias}/.git/objects/pack");
    put_idx_and_pack(backend, &dir, &name, pack, idx).await;
    name
}

/// Packs whose upload URLs were handed out stay hidden from `packs` until an update names
/// them; a pack already live is never hidden again; compaction's purge removes uploads no
/// update named once the grace period is over, and nothing else.
pub async fn repo_uploads_hidden_until_named(backend: Arc<dyn Backend>) {
    let alias = unique_alias("uploads");
    let repo = Store::new(backend.clone())
        .repo("conformance", &alias)
        .expect("repo");
    repo.create(false, None).await.expect("create");
    let names = |packs: Vec<super::PackEntry>| -> Vec<String> {
        packs.into_iter().map(|p| p.name).collect()
    };
    let named = upload_fake_pack(&repo, &backend, &alias, 1, &[ONES]).await;
    let orphan = upload_fake_pack(&repo, &backend, &alias, 2, &[ONES]).await;
    assert_eq!(
        names(repo.packs().await.expect("packs")),
        Vec::<String>::new()
    );

    let res = repo
        .update(&Update {
            packs: vec![named.clone()],
            updates: vec![ref_update(
                "refs/heads/main",
                None,
                Some("1111111111111111111111111111111111111111"),
            )],
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok);
    assert_eq!(
        names(repo.packs().await.expect("packs")),
        vec![named.clone()]
    );

    // The same pack uploaded again (another push with the same objects): refused, so no
    // writer gets a URL that could replace it; it stays visible.
    let (pack, idx) = fake_pack(1, &[ONES]);
    let refused = repo
        .presign_upload(
            &PackUpload {
                name: named.clone(),
                pack_size: pack.len() as u64,
                idx_size: idx.len() as u64,
                upload_id: None,
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::Invalid { detail }) if detail.contains(super::repo::ALREADY_STORED)),
        "{refused:?}"
    );
    assert_eq!(
        names(repo.packs().await.expect("packs")),
        vec![named.clone()]
    );

    let now = crate::auth::unix_now();
    let kept = repo
        .purge_abandoned_uploads(now, Duration::from_secs(3600))
        .await
        .expect("purge");
    assert!(kept.is_empty(), "within the grace period: {kept:?}");
    let purged = repo
        .purge_abandoned_uploads(now + 3600, Duration::from_secs(3600))
        .await
        .expect("purge");
    assert_eq!(purged, vec![orphan.clone()]);
    let dir = format!("conformance/artifacts/{alias}/.git/objects/pack/");
    let left: Vec<String> = backend
        .list(&dir)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key[dir.len()..].to_owned())
        .collect();
    assert_eq!(
        left,
        vec![
            ".gitkeep".to_owned(),
            format!("{named}.idx"),
            format!("{named}.pack")
        ]
    );
    assert!(repo.pending_uploads().await.expect("pending").is_empty());

    // An update naming a purged upload is refused, naming the pack, and writes no ref.
    let res = repo
        .update(&Update {
            packs: vec![orphan.clone()],
            updates: vec![ref_update(
                "refs/heads/late",
                None,
                Some("1111111111111111111111111111111111111111"),
            )],
            ..Default::default()
        })
        .await;
    let err = res.expect_err("the pack is gone");
    assert!(err.to_string().contains(&orphan), "{err}");
    assert!(!repo
        .refs()
        .await
        .expect("refs")
        .contains_key("refs/heads/late"));
}

/// An update that writes no ref (its compare-and-swap lost, or an atomic batch failed)
/// deletes its pending uploads at once: the losers of a race on a busy repository must not
/// hold the limit of staged uploads until the grace period ends. A live pack it names stays.
pub async fn repo_refused_update_releases_uploads(backend: Arc<dyn Backend>) {
    let alias = unique_alias("release");
    let repo = Store::new(backend.clone())
        .repo("conformance", &alias)
        .expect("repo");
    repo.create(false, None).await.expect("create");
    const TWOS: &str = "2222222222222222222222222222222222222222";
    let live = upload_fake_pack(&repo, &backend, &alias, 1, &[ONES]).await;
    let res = repo
        .update(&Update {
            packs: vec![live.clone()],
            updates: vec![ref_update("refs/heads/main", None, Some(ONES))],
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok);

    let dir = format!("conformance/artifacts/{alias}/.git/objects/pack/");
    let stored = || async {
        backend
            .list(&dir)
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key[dir.len()..].to_owned())
            .filter(|k| k != ".gitkeep")
            .collect::<Vec<String>>()
    };
    // Lost compare-and-swap: `main` is no longer absent.
    let loser = upload_fake_pack(&repo, &backend, &alias, 2, &[TWOS]).await;
    assert_eq!(repo.staged_uploads().await.expect("staged"), 1);
    let res = repo
        .update(&Update {
            packs: vec![loser.clone(), live.clone()],
            updates: vec![ref_update("refs/heads/main", None, Some(TWOS))],
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Stale);
    assert_eq!(repo.staged_uploads().await.expect("staged"), 0);
    assert_eq!(
        stored().await,
        vec![format!("{live}.idx"), format!("{live}.pack")]
    );

    // An atomic batch of which one ref fails writes none, and releases its upload too.
    let batch = upload_fake_pack(&repo, &backend, &alias, 3, &[TWOS]).await;
    let res = repo
        .update(&Update {
            packs: vec![batch],
            updates: vec![
                ref_update("refs/heads/main", Some(ONES), Some(TWOS)),
                ref_update("refs/heads/other", Some(TWOS), Some(TWOS)),
            ],
            atomic: true,
            ..Default::default()
        })
        .await
        .expect("update");
    assert!(
        res.results.iter().all(|r| r.status != RefStatus::Ok),
        "{res:?}"
    );
    assert_eq!(repo.staged_uploads().await.expect("staged"), 0);
    assert_eq!(
        stored().await,
        vec![format!("{live}.idx"), format!("{live}.pack")]
    );
    assert_eq!(
        repo.refs().await.expect("refs").get("refs/heads/main"),
        Some(&ONES.to_owned())
    );
}

/// Counts the reads of keys under `refs/` (ref `GET`s; listings are under `refs/` too, but
/// are told apart by their trailing `/`).
#[derive(Debug, Default)]
struct RefReads(AtomicUsize);

#[async_trait]
impl Hook for RefReads {
    async fn before(&self, _: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        if op == Op::Read && key.contains("/.git/refs/") && !key.ends_with('/') {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// `refs` lists the right values whoever changed them, and, where listings carry etags (S3),
/// reads again only the refs that changed since this server last read them.
pub async fn repo_refs_read_again_only_when_changed(backend: Arc<dyn Backend>) {
    let alias = unique_alias("ref-cache");
    let counted = Arc::new(Hooked {
        inner: backend.clone(),
        hook: RefReads::default(),
    });
    let repo = Store::new(counted.clone())
        .repo("conformance", &alias)
        .expect("repo");
    repo.create(false, None).await.expect("create");
    let one = "1111111111111111111111111111111111111111";
    let two = "2222222222222222222222222222222222222222";
    put_live_pack(
        &backend,
        &format!("conformance/artifacts/{alias}/.git/"),
        1,
        &[one],
    )
    .await;
    let updates = (0..5)
        .map(|i| ref_update(&format!("refs/heads/b{i}"), None, Some(one)))
        .collect();
    repo.update(&Update {
        updates,
        ..Default::default()
    })
    .await
    .expect("update");
    let want = |changed: &str| -> BTreeMap<String, String> {
        (0..5)
            .map(|i| {
                let name = format!("refs/heads/b{i}");
                let oid = if name == changed { two } else { one };
                (name, oid.to_owned())
            })
            .collect()
    };
    assert_eq!(repo.refs().await.expect("refs"), want(""));
    let etags = backend
        .list(&format!("conformance/artifacts/{alias}/.git/refs/"))
        .await
        .expect("list")
        .iter()
        .all(|meta| meta.etag.is_some());

    // Read again: with etags in the listing, no ref is read.
    let before = counted.hook.0.load(Ordering::SeqCst);
    assert_eq!(repo.refs().await.expect("refs"), want(""));
    let reads = counted.hook.0.load(Ordering::SeqCst) - before;
    if etags {
        assert_eq!(reads, 0, "unchanged refs are not read again");
    }

    // Another writer (Hypha itself) changes one ref behind this server's back.
    backend
        .put(
            &format!("conformance/artifacts/{alias}/.git/refs/heads/b3"),
            Bytes::from(format!("{two}\n")),
            PutMode::Overwrite,
        )
        .await
        .expect("outside write");
    let before = counted.hook.0.load(Ordering::SeqCst);
    assert_eq!(repo.refs().await.expect("refs"), want("refs/heads/b3"));
    let reads = counted.hook.0.load(Ordering::SeqCst) - before;
    if etags {
        assert_eq!(reads, 1, "only the changed ref is read again");
    }
}

/// Counts the reads of idx files.
#[derive(Debug, Default)]
struct IdxReads(AtomicUsize);

#[async_trait]
impl Hook for IdxReads {
    async fn before(&self, _: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        if op == Op::Read && key.ends_with(".idx") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A ref never points at an object no live pack holds (git: "missing necessary objects"):
/// an id in no pack, or only in a retired pack or an upload no update named, is refused for
/// that ref, and an atomic batch with such a ref writes nothing. An id in the packs the update
/// names or in an older live pack is accepted; the latter, asked again, reads no idx (cached).
pub async fn repo_refs_need_objects(backend: Arc<dyn Backend>) {
    let alias = unique_alias("objects");
    let counted = Arc::new(Hooked {
        inner: backend.clone(),
        hook: IdxReads::default(),
    });
    let repo = Store::new(counted.clone())
        .repo("conformance", &alias)
        .expect("repo");
    repo.create(false, None).await.expect("create");
    let prefix = format!("conformance/artifacts/{alias}/.git/");
    let (old, new, nowhere) = (
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "9999999999999999999999999999999999999999",
    );
    let (retired_only, pending_only) = (
        "3333333333333333333333333333333333333333",
        "4444444444444444444444444444444444444444",
    );
    put_live_pack(&backend, &prefix, 1, &[old]).await;
    let retired = put_live_pack(&backend, &prefix, 3, &[retired_only]).await;
    backend
        .put(
            &format!("{prefix}hypha-remote/retired/{retired}"),
            Bytes::from("1\n"),
            PutMode::Overwrite,
        )
        .await
        .expect("retire");
    upload_fake_pack(&repo, &backend, &alias, 4, &[pending_only]).await;
    let pushed = upload_fake_pack(&repo, &backend, &alias, 2, &[new]).await;
    let update = |packs: &[&str], updates: Vec<RefUpdate>, atomic: bool| Update {
        packs: packs.iter().map(|p| p.to_string()).collect(),
        updates,
        atomic,
        ..Default::default()
    };
    let missing = |r: &super::repo::RefOutcome, id: &str| {
        r.status == RefStatus::Rejected
            && r.detail
                .as_deref()
                .is_some_and(|d| d.contains(super::repo::MISSING_OBJECTS) && d.contains(id))
    };

    // In no pack at all, no pack named: refused, nothing written.
    for id in [nowhere, retired_only, pending_only] {
        let res = repo
            .update(&update(
                &[],
                vec![ref_update("refs/heads/x", None, Some(id))],
                false,
            ))
            .await
            .expect("update");
        assert!(missing(&res.results[0], id), "{id}: {res:?}");
        let detail = res.results[0].detail.as_deref().unwrap_or_default();
        assert!(!detail.contains('\n'), "one line: {detail:?}");
    }
    assert!(stored_refs(&backend, &alias).await.is_empty());

    // An older live pack holds it: a branch made at an existing commit.
    let res = repo
        .update(&update(
            &[],
            vec![ref_update("refs/heads/main", None, Some(old))],
            false,
        ))
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok, "{res:?}");
    // Again: the pack's ids are cached, no idx is read.
    let before = counted.hook.0.load(Ordering::SeqCst);
    let res = repo
        .update(&update(
            &[],
            vec![ref_update("refs/heads/other", None, Some(old))],
            false,
        ))
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok, "{res:?}");
    assert_eq!(counted.hook.0.load(Ordering::SeqCst), before, "idx reads");

    // Atomic, one ref missing: that ref says why, the others fail with it, nothing written,
    // and the named pack is deleted (the push is over; pushed again, it goes up again).
    let res = repo
        .update(&update(
            &[&pushed],
            vec![
                ref_update("refs/heads/main", Some(old), Some(new)),
                ref_update("refs/heads/bad", None, Some(nowhere)),
            ],
            true,
        ))
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Rejected, "{res:?}");
    assert_eq!(
        res.results[0].detail.as_deref(),
        Some(super::repo::ATOMIC_FAILED)
    );
    assert!(missing(&res.results[1], nowhere), "{res:?}");
    let refs = repo.refs().await.expect("refs");
    assert_eq!(refs.get("refs/heads/main").map(String::as_str), Some(old));
    assert!(!refs.contains_key("refs/heads/bad"));
    assert!(!repo
        .packs()
        .await
        .expect("packs")
        .iter()
        .any(|p| p.name == pushed));
    assert_eq!(repo.pending_uploads().await.expect("pending").len(), 1);
    let pushed = upload_fake_pack(&repo, &backend, &alias, 2, &[new]).await;

    // Not atomic: the good ref (its object in the named pack) moves, the bad one does not.
    let res = repo
        .update(&update(
            &[&pushed],
            vec![
                ref_update("refs/heads/main", Some(old), Some(new)),
                ref_update("refs/heads/bad", None, Some(nowhere)),
                ref_update("refs/heads/other", Some(old), None),
            ],
            false,
        ))
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok, "{res:?}");
    assert!(missing(&res.results[1], nowhere), "{res:?}");
    assert_eq!(
        res.results[2].status,
        RefStatus::Ok,
        "deletions need no object"
    );
    let refs = repo.refs().await.expect("refs");
    assert_eq!(refs.get("refs/heads/main").map(String::as_str), Some(new));
    assert!(!refs.contains_key("refs/heads/bad"));
    assert!(!refs.contains_key("refs/heads/other"));
}

/// LFS objects live where Hypha keeps them (beside `.git/`, for the standalone layout and
/// for a Hypha artifact's prefix alike); `verify` keeps a right object (a wrong size in the
/// request changes nothing) and deletes one whose SHA-256 is wrong; a missing one is
/// `NotFound`.
pub async fn repo_lfs_objects(backend: Arc<dyn Backend>) {
    use super::repo::LfsMismatch;
    use sha2::Digest;
    let alias = unique_alias("lfs");
    let store = Store::new(backend.clone());
    let repo = store.repo("conformance", &alias).expect("repo");
    let body = Bytes::from_static(b"large file content\n");
    let oid = hex::encode(sha2::Sha256::digest(&body));
    let key = repo.lfs_key(&oid).expect("lfs key");
    assert_eq!(
        key,
        format!(
            "conformance/artifacts/{alias}/git/lfs/objects/{}/{}/{oid}",
            &oid[..2],
            &oid[2..4]
        )
    );
    let hypha = store
        .repo_at("conformance/x", "ws/artifacts/0190-uuid/.git/")
        .expect("repo_at");
    assert_eq!(
        hypha.lfs_key(&oid).expect("lfs key"),
        format!(
            "ws/artifacts/0190-uuid/git/lfs/objects/{}/{}/{oid}",
            &oid[..2],
            &oid[2..4]
        )
    );
    assert!(repo.lfs_key("../../etc/passwd").is_err());
    assert!(repo.lfs_key(&oid.to_uppercase()).is_err());

    assert_eq!(repo.lfs_size(&oid).await.expect("size"), None);
    assert!(matches!(
        repo.verify_lfs(&oid, body.len() as u64).await,
        Err(Error::NotFound { .. })
    ));
    backend
        .put(&key, body.clone(), PutMode::Overwrite)
        .await
        .expect("put");
    assert_eq!(
        repo.lfs_size(&oid).await.expect("size"),
        Some(body.len() as u64)
    );
    let url = repo
        .presign_lfs_upload(&oid, body.len() as u64, Duration::from_secs(60))
        .await
        .expect("presign upload");
    assert_eq!(url.method, "PUT");
    assert_eq!(
        repo.verify_lfs(&oid, body.len() as u64)
            .await
            .expect("verify"),
        None
    );
    assert_eq!(
        repo.verify_lfs(&oid, 3).await.expect("verify"),
        Some(LfsMismatch::Size {
            stored: body.len() as u64
        })
    );
    assert_eq!(
        repo.lfs_size(&oid).await.expect("size"),
        Some(body.len() as u64),
        "a right object is kept whatever size a verify names"
    );
    // Same size, other content: refused and deleted.
    backend
        .put(
            &key,
            Bytes::from_static(b"LARGE FILE CONTENT\n"),
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    assert_eq!(
        repo.verify_lfs(&oid, body.len() as u64)
            .await
            .expect("verify"),
        Some(LfsMismatch::Hash)
    );
    assert_eq!(repo.lfs_size(&oid).await.expect("size"), None, "deleted");
}

/// Real packs by real git for the thin-pack checks: a live pack holding a 2000-line file, and
/// a thin pack of a one-line edit with deltas against it (its idx as the helper makes it).
struct ThinFixture {
    _tmp: tempfile::TempDir,
    base: (String, Vec<u8>, Vec<u8>),
    thin: (String, Vec<u8>, Vec<u8>),
    /// The edit commit, which only the completed pack (with the thin one's objects) holds.
    head: String,
}

fn thin_fixture() -> ThinFixture {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("r");
    let git = |args: &[&str], stdin: Option<&[u8]>| -> Vec<u8> {
        let mut child = Command::new("git")
            .args(["-c", "user.name=a", "-c", "user.email=a@b", "-C"])
            .arg(&dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git runs");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input)
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("git");
        assert!(out.status.success(), "git {args:?}");
        out.stdout
    };
    std::fs::create_dir_all(&dir).expect("mkdir");
    git(&["init", "-q"], None);
    let text: String = (0..2000)
        .map(|i| format!("{i},{},row {i} of the data set\n", i * 7919 % 1000))
        .collect();
    std::fs::write(dir.join("data.csv"), &text).expect("write");
    git(&["add", "-A"], None);
    git(&["commit", "-q", "-m", "base"], None);
    let base_pack = git(
        &[
            "pack-objects",
            "--revs",
            "--stdout",
            "-q",
            "--delta-base-offset",
        ],
        Some(b"HEAD\n"),
    );
    let base_path = tmp.path().join("base.pack");
    std::fs::write(&base_path, &base_pack).expect("write base");
    let hash = String::from_utf8(git(
        &["index-pack", base_path.to_str().expect("utf-8")],
        None,
    ))
    .expect("utf-8");
    let base_idx = std::fs::read(base_path.with_extension("idx")).expect("idx");
    let base_name = format!("pack-{}", hash.trim());

    std::fs::write(dir.join("data.csv"), text.replacen("row 7 ", "ROW 7 ", 1)).expect("edit");
    git(&["commit", "-q", "-am", "edit"], None);
    let head = String::from_utf8(git(&["rev-parse", "HEAD"], None)).expect("utf-8");
    let base_commit = String::from_utf8(git(&["rev-parse", "HEAD~1"], None)).expect("utf-8");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let built = crate::pack::build_thin(
        &dir.join(".git"),
        &[head.trim().to_owned()],
        &[base_commit.trim().to_owned()],
        &out,
        false,
    )
    .expect("build thin")
    .expect("something to send");
    let crate::pack::ThinBuilt::Thin(thin) = built else {
        panic!("a one-line edit makes a thin pack");
    };
    let thin_pack = std::fs::read(&thin.pack_path).expect("thin pack");
    let thin_idx = std::fs::read(&thin.idx_path).expect("thin idx");
    assert!(
        thin_pack.len() * 20 < base_pack.len(),
        "thin {} vs full {}",
        thin_pack.len(),
        base_pack.len()
    );
    ThinFixture {
        _tmp: tmp,
        base: (base_name, base_pack, base_idx),
        thin: (thin.name, thin_pack, thin_idx),
        head: head.trim().to_owned(),
    }
}

/// Thin uploads: completed into a self-contained pending pack that git reads without
/// `--fix-thin` (and whose idx is the one git writes); a missing base, a corrupt or truncated
/// thin pack and an idx that does not match are refused in one line and leave no pack, no
/// pending upload, no ref; abandoned thin uploads are purged after the grace period.
pub async fn repo_thin_completion(backend: Arc<dyn Backend>) {
    let fx = thin_fixture();
    let store = Store::new(backend.clone());
    let (thin_name, thin_pack, thin_idx) = &fx.thin;
    let put_thin = |alias: String, pack: Vec<u8>, idx: Vec<u8>| {
        let backend = backend.clone();
        let name = thin_name.clone();
        async move {
            let dir = format!("conformance/artifacts/{alias}/.git/hypha-remote/thin");
            put_idx_and_pack(&backend, &dir, &name, pack, idx).await;
        }
    };
    let refused =
        |res: Result<super::repo::ThinCompleted, Error>, what: &str, needle: &str| match res {
            Err(Error::Invalid { detail }) => {
                assert!(detail.contains(needle), "{what}: {detail}");
                assert!(!detail.contains('\n'), "{what}: one line: {detail:?}");
            }
            other => panic!("{what}: {other:?}"),
        };
    let nothing_visible = |repo: super::Repository, what: &'static str| async move {
        assert!(repo.packs().await.expect("packs").len() <= 1, "{what}");
        assert!(
            repo.pending_uploads().await.expect("pending").is_empty(),
            "{what}: pending"
        );
        assert!(repo.refs().await.expect("refs").is_empty(), "{what}: refs");
    };

    // No base anywhere: refused as git refuses it.
    let alias = unique_alias("thin-nobase");
    let repo = store.repo("conformance", &alias).expect("repo");
    repo.create(false, None).await.expect("create");
    refused(
        repo.complete_thin(thin_name).await,
        "not uploaded",
        "upload it first",
    );
    put_thin(alias.clone(), thin_pack.clone(), thin_idx.clone()).await;
    refused(
        repo.complete_thin(thin_name).await,
        "no base",
        super::repo::MISSING_OBJECTS,
    );
    nothing_visible(repo, "no base").await;

    // With the base live: damaged uploads are refused first.
    let alias = unique_alias("thin");
    let repo = store.repo("conformance", &alias).expect("repo");
    repo.create(false, None).await.expect("create");
    let prefix = format!("conformance/artifacts/{alias}/.git/");
    let (base_name, base_pack, base_idx) = &fx.base;
    for (ext, body) in [("idx", base_idx), ("pack", base_pack)] {
        backend
            .put(
                &format!("{prefix}objects/pack/{base_name}.{ext}"),
                body.clone().into(),
                PutMode::Overwrite,
            )
            .await
            .expect("put base");
    }
    let mut flipped = thin_pack.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let mut other_idx = thin_idx.clone();
    let count = crate::pack::idx_file::object_ids(thin_idx, "t")
        .expect("ids")
        .len();
    other_idx[8 + 1024 + count * 20] ^= 1; // a CRC32
    for (what, pack, idx, needle) in [
        ("corrupt", flipped, thin_idx.clone(), "thin pack"),
        (
            "truncated",
            thin_pack[..thin_pack.len() - 25].to_vec(),
            thin_idx.clone(),
            "thin pack",
        ),
        (
            "idx mismatch",
            thin_pack.clone(),
            other_idx,
            "idx does not match",
        ),
    ] {
        put_thin(alias.clone(), pack, idx).await;
        refused(repo.complete_thin(thin_name).await, what, needle);
        nothing_visible(repo.clone(), what).await;
    }

    // The good one: a pending pack, hidden until the update names it.
    put_thin(alias.clone(), thin_pack.clone(), thin_idx.clone()).await;
    let done = repo.complete_thin(thin_name).await.expect("complete");
    assert!(done.appended >= 1, "{done:?}");
    assert!(repo
        .pending_uploads()
        .await
        .expect("pending")
        .contains(&done.name));
    assert_eq!(
        repo.packs().await.expect("packs").len(),
        1,
        "hidden until named"
    );
    let thin_left = backend
        .list(&format!("{prefix}hypha-remote/thin/"))
        .await
        .expect("list");
    assert!(thin_left.is_empty(), "thin upload deleted: {thin_left:?}");
    let stored = |ext: &str| {
        let key = format!("{prefix}objects/pack/{}.{ext}", done.name);
        let backend = backend.clone();
        async move { backend.get(&key).await.expect("stored").body }
    };
    let (pack, idx) = (stored("pack").await, stored("idx").await);
    assert_eq!(pack.len() as u64, done.pack_size);
    assert_eq!(idx.len() as u64, done.idx_size);
    // git reads it as a self-contained pack and writes the very same idx.
    let check = tempfile::tempdir().expect("tempdir");
    let path = check.path().join("c.pack");
    std::fs::write(&path, &pack).expect("write");
    let out = std::process::Command::new("git")
        .arg("index-pack")
        .arg(&path)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git index-pack");
    assert!(out.status.success(), "index-pack: {out:?}");
    assert_eq!(std::fs::read(path.with_extension("idx")).expect("idx"), idx);

    let res = repo
        .update(&Update {
            packs: vec![done.name.clone()],
            updates: vec![ref_update("refs/heads/main", None, Some(&fx.head))],
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(res.results[0].status, RefStatus::Ok, "{res:?}");
    assert_eq!(repo.packs().await.expect("packs").len(), 2);

    // An abandoned thin upload goes once older than the grace period, not before.
    put_thin(alias.clone(), thin_pack.clone(), thin_idx.clone()).await;
    let now = std::time::SystemTime::now();
    assert_eq!(
        repo.purge_thin_uploads(now, Duration::from_secs(3600))
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        repo.purge_thin_uploads(now + Duration::from_secs(3600), Duration::from_secs(3600))
            .await
            .expect("purge"),
        2
    );
}
