//! Repository-level tests over `LocalDisk`: layout bytes, `update` compare-and-swap, atomic
//! batches, races with writers outside the lock.

use super::*;
use crate::storage::conformance::{Hook, Hooked, Op};
use crate::storage::{LocalDisk, PutMode};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::new(dir.path(), "http://localhost:1", b"k").unwrap();
    Fixture {
        root: disk.root().to_owned(),
        store: Store::new(Arc::new(disk)),
        _dir: dir,
    }
}

impl Fixture {
    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join("ws/artifacts/repo/.git").join(rel)).ok()
    }
    fn write(&self, rel: &str, body: &str) {
        let path = self.root.join("ws/artifacts/repo/.git").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    /// The repository, with a live pack holding the objects these tests point refs at
    /// (a ref may only point at an object some pack holds).
    async fn repo(&self) -> Repository {
        let repo = self.repo_without_packs().await;
        let prefix = "ws/artifacts/repo/.git/";
        super::conformance::put_live_pack(self.store.backend(), prefix, 0xab, &[A, B, C]).await;
        repo
    }
    async fn repo_without_packs(&self) -> Repository {
        let repo = self.store.repo("ws", "repo").unwrap();
        repo.create(false, None).await.unwrap();
        repo
    }
}

fn up(name: &str, old: Option<&str>, new: Option<&str>) -> RefUpdate {
    RefUpdate {
        name: name.to_owned(),
        old: old.map(str::to_owned),
        new: new.map(str::to_owned),
    }
}

fn req(updates: Vec<RefUpdate>, atomic: bool) -> Update {
    Update {
        updates,
        atomic,
        ..Default::default()
    }
}

fn statuses(res: &UpdateOutcome) -> Vec<(RefStatus, Option<&str>, Option<&str>)> {
    res.results
        .iter()
        .map(|r| (r.status, r.current.as_deref(), r.detail.as_deref()))
        .collect()
}

#[tokio::test]
async fn create_writes_hypha_layout_and_refuses_twice() {
    let f = fixture();
    let repo = f.store.repo("ws", "repo").unwrap();
    assert!(!repo.exists().await.unwrap());
    repo.create(true, Some("trunk")).await.unwrap();
    assert_eq!(f.file("HEAD").as_deref(), Some("ref: refs/heads/trunk\n"));
    assert_eq!(f.file("objects/pack/.gitkeep").as_deref(), Some(""));
    assert!(f.file("hypha-remote/config.json").is_some());
    assert!(!f.root.join("ws/artifacts/repo/.git/refs").exists());
    let config = repo.config().await.unwrap();
    assert!(config.public);
    assert_eq!(repo.default_branch().await.unwrap(), "trunk");
    assert!(matches!(
        repo.create(false, None).await,
        Err(Error::AlreadyExists { key }) if key == "ws/repo"
    ));
    assert!(matches!(
        f.store
            .repo("ws", "x")
            .unwrap()
            .create(false, Some("a..b"))
            .await,
        Err(Error::Invalid { .. })
    ));
    assert!(f.store.repo("..", "x").is_err());
    assert!(f.store.repo("ws", "a/b").is_err());
}

#[tokio::test]
async fn update_creates_replaces_and_deletes_with_cas() {
    let f = fixture();
    let repo = f.repo().await;
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", None, Some(A)),
                up("refs/tags/v1", None, Some(B)),
            ],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        statuses(&res),
        [(RefStatus::Ok, None, None), (RefStatus::Ok, None, None)]
    );
    assert_eq!(f.file("refs/heads/main"), Some(format!("{A}\n")));
    assert_eq!(f.file("refs/tags/v1"), Some(format!("{B}\n")));

    // Create of an existing ref, update with a wrong old: stale with the current value.
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", None, Some(B)),
                up("refs/tags/v1", Some(C), Some(A)),
            ],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Stale, Some(A), None),
            (RefStatus::Stale, Some(B), None)
        ]
    );
    assert_eq!(f.file("refs/heads/main"), Some(format!("{A}\n")));

    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", Some(A), Some(C)),
                up("refs/tags/v1", Some(B), None),
                up("refs/heads/gone", None, None),
            ],
            false,
        ))
        .await
        .unwrap();
    assert!(res.results.iter().all(|r| r.status == RefStatus::Ok));
    assert_eq!(f.file("refs/heads/main"), Some(format!("{C}\n")));
    assert_eq!(f.file("refs/tags/v1"), None);
    assert_eq!(
        repo.refs().await.unwrap(),
        BTreeMap::from([("refs/heads/main".to_owned(), C.to_owned())])
    );
}

#[tokio::test]
async fn non_atomic_refs_are_independent_atomic_ones_are_not() {
    let f = fixture();
    let repo = f.repo().await;
    repo.update(&req(vec![up("refs/heads/main", None, Some(A))], false))
        .await
        .unwrap();

    let batch = vec![
        up("refs/heads/new", None, Some(B)),
        up("refs/heads/main", Some(B), Some(C)),
    ];
    let res = repo.update(&req(batch.clone(), true)).await.unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Rejected, None, Some(ATOMIC_FAILED)),
            (RefStatus::Stale, Some(A), None)
        ]
    );
    assert_eq!(f.file("refs/heads/new"), None, "atomic: nothing written");

    let res = repo.update(&req(batch, false)).await.unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Ok, None, None),
            (RefStatus::Stale, Some(A), None)
        ]
    );
    assert_eq!(f.file("refs/heads/new"), Some(format!("{B}\n")));
}

#[tokio::test]
async fn refuses_to_delete_the_current_branch() {
    let f = fixture();
    let repo = f.repo().await;
    repo.update(&req(
        vec![
            up("refs/heads/main", None, Some(A)),
            up("refs/heads/other", None, Some(A)),
        ],
        false,
    ))
    .await
    .unwrap();
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", Some(A), None),
                up("refs/heads/other", Some(A), None),
            ],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Rejected, None, Some(DENY_DELETE_CURRENT)),
            (RefStatus::Ok, None, None)
        ]
    );
    assert!(f.file("refs/heads/main").is_some());
    // After moving HEAD away, the branch can go.
    repo.set_head("refs/heads/dev").await.unwrap();
    let res = repo
        .update(&req(vec![up("refs/heads/main", Some(A), None)], false))
        .await
        .unwrap();
    assert_eq!(res.results[0].status, RefStatus::Ok);
    assert!(
        !f.root.join("ws/artifacts/repo/.git/refs").exists(),
        "empty ref directories are pruned"
    );
}

#[tokio::test]
async fn set_head_if_missing_only_when_missing() {
    let f = fixture();
    let repo = f.repo().await;
    let mut r = req(vec![up("refs/heads/dev", None, Some(A))], false);
    r.set_head_if_missing = Some("refs/heads/dev".into());
    repo.update(&r).await.unwrap();
    assert_eq!(f.file("HEAD").as_deref(), Some("ref: refs/heads/main\n"));

    std::fs::remove_file(f.root.join("ws/artifacts/repo/.git/HEAD")).unwrap();
    assert_eq!(repo.head().await.unwrap(), None);
    let mut r = req(vec![up("refs/heads/dev2", None, Some(A))], false);
    r.set_head_if_missing = Some("refs/heads/dev2".into());
    repo.update(&r).await.unwrap();
    assert_eq!(f.file("HEAD").as_deref(), Some("ref: refs/heads/dev2\n"));
}

#[tokio::test]
async fn reads_tolerate_crlf_and_skip_non_refs() {
    let f = fixture();
    let repo = f.repo().await;
    f.write("refs/heads/crlf", &format!("{A}\r\n"));
    f.write("refs/heads/bare", B);
    f.write("refs/heads/garbage", "not a sha\n");
    f.write("refs/heads/x.lock", &format!("{A}\n"));
    f.write("HEAD", "ref: refs/heads/crlf\r\n");
    let refs = repo.refs().await.unwrap();
    assert_eq!(
        refs,
        BTreeMap::from([
            ("refs/heads/bare".to_owned(), B.to_owned()),
            ("refs/heads/crlf".to_owned(), A.to_owned()),
        ])
    );
    assert_eq!(
        repo.head().await.unwrap().as_deref(),
        Some("refs/heads/crlf")
    );
    // A CAS against a CRLF ref compares values, not bytes.
    let res = repo
        .update(&req(vec![up("refs/heads/crlf", Some(A), Some(B))], false))
        .await
        .unwrap();
    assert_eq!(res.results[0].status, RefStatus::Ok);
    assert_eq!(f.file("refs/heads/crlf"), Some(format!("{B}\n")));
}

#[tokio::test]
async fn refuses_bad_names_and_ids() {
    let f = fixture();
    let repo = f.repo().await;
    let long = format!("refs/heads/{}", "x".repeat(10 * 1024));
    for bad in [
        up("HEAD", None, Some(A)),
        up("refs/heads/../x", None, Some(A)),
        up(&long, None, Some(A)),
        up("refs/heads/ok", None, Some("ABC")),
        up("refs/heads/ok", Some(&A.to_uppercase()), Some(A)),
    ] {
        let err = repo.update(&req(vec![bad], false)).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().len() < 400, "messages stay short");
    }
    let dup = req(
        vec![
            up("refs/heads/a", None, Some(A)),
            up("refs/heads/a", None, Some(B)),
        ],
        false,
    );
    assert!(matches!(
        repo.update(&dup).await,
        Err(Error::Invalid { .. })
    ));
    let mut bad_head = req(vec![], false);
    bad_head.set_head_if_missing = Some("main".into());
    assert!(repo.update(&bad_head).await.is_err());
    assert!(repo.set_head("refs/heads/a b").await.is_err());
}

#[tokio::test]
async fn refuses_directory_file_conflicts() {
    let f = fixture();
    let repo = f.repo().await;
    repo.update(&req(vec![up("refs/heads/a", None, Some(A))], false))
        .await
        .unwrap();
    let res = repo
        .update(&req(vec![up("refs/heads/a/b", None, Some(A))], false))
        .await
        .unwrap();
    assert_eq!(res.results[0].status, RefStatus::Rejected);
    let res = repo
        .update(&req(vec![up("refs/heads/x/y", None, Some(A))], false))
        .await
        .unwrap();
    assert_eq!(res.results[0].status, RefStatus::Ok);
    let res = repo
        .update(&req(vec![up("refs/heads/x", None, Some(A))], false))
        .await
        .unwrap();
    assert_eq!(res.results[0].status, RefStatus::Rejected);
    // Above `refs::TOUCHED_MAX` refs, `update` lists every ref instead of reading the
    // touched ones: the same rule, and within one request too.
    let mut many = vec![
        up("refs/heads/a/c", None, Some(A)),
        up("refs/heads/x", None, Some(A)),
        up("refs/heads/n", None, Some(A)),
        up("refs/heads/n/m", None, Some(A)),
    ];
    many.extend(
        (0..super::refs::TOUCHED_MAX).map(|i| up(&format!("refs/tags/t{i}"), None, Some(A))),
    );
    let res = repo.update(&req(many, false)).await.unwrap();
    let rejected: Vec<&str> = res
        .results
        .iter()
        .filter(|r| r.status == RefStatus::Rejected)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        rejected,
        [
            "refs/heads/a/c",
            "refs/heads/x",
            "refs/heads/n",
            "refs/heads/n/m"
        ]
    );
    // And within a request of a few.
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/p", None, Some(A)),
                up("refs/heads/p/q", None, Some(A)),
            ],
            false,
        ))
        .await
        .unwrap();
    assert!(
        res.results.iter().all(|r| r.status == RefStatus::Rejected),
        "{:?}",
        statuses(&res)
    );
}

#[tokio::test]
async fn checks_packs_before_writing_refs() {
    let f = fixture();
    let repo = f.repo_without_packs().await;
    let blobs = crate::pack::testing::blob_pack(9, 1, 64);
    let (name, pack, idx) = (blobs.name.clone(), blobs.pack, blobs.idx);
    let mut r = req(
        vec![up("refs/heads/main", None, Some(&blobs.ids[0]))],
        false,
    );
    r.packs = vec![name.clone()];
    let pack_file = f
        .root
        .join(format!("ws/artifacts/repo/.git/objects/pack/{name}.pack"));
    let idx_file = pack_file.with_extension("idx");

    let missing = repo.update(&r).await.unwrap_err();
    assert!(missing.to_string().contains(&name), "{missing}");
    f.write(&format!("objects/pack/{name}.pack"), "");
    std::fs::write(&pack_file, &pack).unwrap();
    assert!(
        repo.update(&r).await.is_err(),
        "a pack without its idx is incomplete"
    );
    assert!(repo.packs().await.unwrap().is_empty());

    // Another pack's idx.
    let other = crate::pack::testing::blob_pack(8, 1, 64);
    std::fs::write(&idx_file, &other.idx).unwrap();
    let err = repo.update(&r).await.unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert_eq!(f.file("refs/heads/main"), None);

    // An idx with the pack's trailer that lists another object (issue 21: it would let the
    // ref point at an object no pack holds), then one with the right objects at the wrong
    // offsets: both refused, nothing written.
    let mut entries = crate::pack::idx_file::entries(&idx, &name).unwrap();
    let trailer: [u8; 20] = pack[pack.len() - 20..].try_into().unwrap();
    let mut claims = entries.clone();
    claims[0].id.as_mut_slice()[0] ^= 0x01;
    let lying = crate::pack::idx_file::write(&mut claims, &trailer, &name).unwrap();
    std::fs::write(&idx_file, &lying).unwrap();
    let err = repo.update(&r).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not list the objects its pack holds"),
        "{err}"
    );
    entries[0].offset += 1;
    let shifted = crate::pack::idx_file::write(&mut entries, &trailer, &name).unwrap();
    std::fs::write(&idx_file, &shifted).unwrap();
    let err = repo.update(&r).await.unwrap_err();
    assert!(
        err.to_string().contains("does not describe its pack"),
        "{err}"
    );
    assert_eq!(f.file("refs/heads/main"), None);

    std::fs::write(&idx_file, &idx).unwrap();
    let res = repo.update(&r).await.unwrap();
    assert_eq!(res.results[0].status, RefStatus::Ok);
    let packs = repo.packs().await.unwrap();
    assert_eq!(packs.len(), 1);
    assert_eq!(packs[0].name, name);
    assert_eq!(packs[0].pack_size, pack.len() as u64);
    assert_eq!(packs[0].idx_size, idx.len() as u64);

    let mut bad = r.clone();
    bad.packs = vec!["pack-../../x".into()];
    assert!(matches!(
        repo.update(&bad).await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn concurrent_creates_one_wins() {
    let f = fixture();
    let repo = f.repo().await;
    let tasks: Vec<_> = [A, B, C, A, B, C]
        .into_iter()
        .map(|oid| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.update(&req(vec![up("refs/heads/main", None, Some(oid))], false))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().results[0].status == RefStatus::Ok {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

/// Another writer (think Hypha's own receive-pack) that changes `target` just before each
/// conditional write of it.
#[derive(Debug)]
struct Racing {
    target: String,
}

#[async_trait]
impl Hook for Racing {
    async fn before(&self, inner: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        if key.ends_with(&self.target) && matches!(op, Op::Put(mode) if *mode != PutMode::Overwrite)
        {
            inner
                .put(key, Bytes::from(format!("{C}\n")), PutMode::Overwrite)
                .await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn outside_writer_makes_stale_and_atomic_rolls_back() {
    let f = fixture();
    let plain = f.repo().await;
    plain
        .update(&req(
            vec![
                up("refs/heads/main", None, Some(A)),
                up("refs/heads/racy", None, Some(A)),
            ],
            false,
        ))
        .await
        .unwrap();
    let racing = Store::new(Arc::new(Hooked {
        inner: f.store.backend().clone(),
        hook: Racing {
            target: "refs/heads/racy".into(),
        },
    }));
    let repo = racing.repo("ws", "repo").unwrap();

    // main is written first, then racy loses its race: main must be rolled back.
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", Some(A), Some(B)),
                up("refs/heads/racy", Some(A), Some(B)),
            ],
            true,
        ))
        .await
        .unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Rejected, None, Some(ATOMIC_FAILED)),
            (RefStatus::Stale, Some(C), None)
        ]
    );
    assert_eq!(f.file("refs/heads/main"), Some(format!("{A}\n")));
    assert_eq!(f.file("refs/heads/racy"), Some(format!("{C}\n")));

    plain
        .update(&req(vec![up("refs/heads/racy", Some(C), Some(A))], false))
        .await
        .unwrap();
    let res = repo
        .update(&req(
            vec![
                up("refs/heads/main", Some(A), Some(B)),
                up("refs/heads/racy", Some(A), Some(B)),
            ],
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        statuses(&res),
        [
            (RefStatus::Ok, None, None),
            (RefStatus::Stale, Some(C), None)
        ]
    );
    assert_eq!(f.file("refs/heads/main"), Some(format!("{B}\n")));
}

/// A reader whose listing a whole atomic update slipped into (part of its refs read before,
/// part after) notices from the record's generation and reads again.
#[tokio::test]
async fn readers_repeat_a_read_that_an_atomic_update_slipped_into() {
    let f = fixture();
    let repo = f.repo().await;
    let both = |oid: &str| {
        vec![
            up("refs/heads/main", Some(oid), Some(B)),
            up("refs/heads/topic", Some(oid), Some(B)),
        ]
    };
    repo.update(&req(
        vec![
            up("refs/heads/main", None, Some(A)),
            up("refs/heads/topic", None, Some(A)),
        ],
        false,
    ))
    .await
    .unwrap();
    let reads = std::sync::atomic::AtomicUsize::new(0);
    let (seen, overlaid) = repo
        .consistent_refs(|| async {
            let mut refs = repo.stored_refs().await?;
            if reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                // `main` was read before the update, `topic` after it.
                let res = repo.update(&req(both(A), true)).await?;
                assert!(res.results.iter().all(|r| r.status == RefStatus::Ok));
                refs.insert(
                    "refs/heads/topic".into(),
                    repo.read_ref("refs/heads/topic").await?.oid.unwrap(),
                );
            }
            Ok(refs)
        })
        .await
        .unwrap();
    assert_eq!(reads.into_inner(), 2, "the torn read was repeated");
    assert!(!overlaid, "the update was finished");
    assert_eq!(seen.get("refs/heads/main").map(String::as_str), Some(B));
    assert_eq!(seen.get("refs/heads/topic").map(String::as_str), Some(B));
}

/// A record left by a server that died right after its commit point: readers see the
/// update's refs, and the next update writes them, except a ref that a writer outside the
/// lock moved meanwhile, which keeps that writer's value.
#[tokio::test]
async fn leftover_record_is_rolled_forward_around_outside_writes() {
    let f = fixture();
    let repo = f.repo().await;
    repo.update(&req(
        vec![
            up("refs/heads/main", None, Some(A)),
            up("refs/heads/other", None, Some(A)),
            up("refs/heads/gone", None, Some(A)),
        ],
        false,
    ))
    .await
    .unwrap();
    let planned = |name: &str, old: Option<&str>, new: Option<&str>| journal::Planned {
        name: name.into(),
        old: old.map(str::to_owned),
        new: new.map(str::to_owned),
    };
    let base = repo.roll_forward().await.unwrap();
    repo.commit_record(
        &base,
        vec![
            planned("refs/heads/main", Some(A), Some(B)),
            planned("refs/heads/other", Some(A), Some(B)),
            planned("refs/heads/gone", Some(A), None),
            planned("refs/tags/new", None, Some(B)),
        ],
    )
    .await
    .unwrap();
    // The server died here. Another writer (Hypha itself) moves `other`.
    f.write("refs/heads/other", &format!("{C}\n"));
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // Readers would see the committed update (`stored_refs` is what they read underneath).
    let (seen, overlaid) = repo.consistent_refs(|| repo.stored_refs()).await.unwrap();
    assert!(overlaid);
    assert_eq!(
        seen,
        expect(&[
            ("refs/heads/main", B),
            ("refs/heads/other", B),
            ("refs/tags/new", B)
        ]),
        "readers see the committed update"
    );
    assert_eq!(
        f.file("refs/heads/main"),
        Some(format!("{A}\n")),
        "not written yet"
    );

    // Any update (here: none at all) takes the lock and finishes the record first.
    repo.update(&req(vec![], false)).await.unwrap();
    assert_eq!(f.file("refs/heads/main"), Some(format!("{B}\n")));
    assert_eq!(
        f.file("refs/heads/other"),
        Some(format!("{C}\n")),
        "theirs stands"
    );
    assert_eq!(f.file("refs/heads/gone"), None);
    assert_eq!(f.file("refs/tags/new"), Some(format!("{B}\n")));
    assert_eq!(
        repo.refs().await.unwrap(),
        expect(&[
            ("refs/heads/main", B),
            ("refs/heads/other", C),
            ("refs/tags/new", B)
        ])
    );
    let record = repo.read_record().await.unwrap().expect("record kept");
    assert!(record.record.is_finished());
    assert_eq!(record.record.generation, 1);

    // Non-atomic and single-ref updates write no record (a single write is atomic).
    repo.update(&req(vec![up("refs/heads/main", Some(B), Some(A))], true))
        .await
        .unwrap();
    assert_eq!(
        repo.read_record().await.unwrap().unwrap().record.generation,
        1
    );
    // A two-ref atomic update does, and finishes it.
    repo.update(&req(
        vec![
            up("refs/heads/main", Some(A), Some(C)),
            up("refs/tags/new", Some(B), Some(C)),
        ],
        true,
    ))
    .await
    .unwrap();
    let record = repo.read_record().await.unwrap().unwrap().record;
    assert_eq!((record.generation, record.is_finished()), (2, true));
    // Nothing but refs under refs/, in Hypha's bytes.
    assert_eq!(f.file("refs/tags/new"), Some(format!("{C}\n")));

    // A record left behind again; this time a reader comes first. No update of this process
    // holds the lock, so the reader finishes it (for Hypha's reader, which reads the files).
    let base = repo.roll_forward().await.unwrap();
    repo.commit_record(
        &base,
        vec![
            planned("refs/heads/main", Some(C), Some(A)),
            planned("refs/tags/new", Some(C), Some(A)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(f.file("refs/heads/main"), Some(format!("{C}\n")));
    let seen = repo.refs().await.unwrap();
    assert_eq!(seen.get("refs/tags/new").map(String::as_str), Some(A));
    assert_eq!(f.file("refs/heads/main"), Some(format!("{A}\n")));
    assert_eq!(f.file("refs/tags/new"), Some(format!("{A}\n")));
    let record = repo.read_record().await.unwrap().unwrap().record;
    assert_eq!((record.generation, record.is_finished()), (3, true));
}

/// Counts reads of ref objects (not listings: their prefix ends in `/`).
#[derive(Debug, Default)]
struct RefReads(std::sync::atomic::AtomicUsize);

#[async_trait]
impl Hook for RefReads {
    async fn before(&self, _: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        if matches!(op, Op::Read) && key.contains("/refs/") && !key.ends_with('/') {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn refs_the_listing_lacks_are_created_without_a_read() {
    let f = fixture();
    let plain = f.repo().await;
    plain
        .update(&req(vec![up("refs/heads/main", None, Some(A))], false))
        .await
        .unwrap();
    let hooked = Arc::new(Hooked {
        inner: f.store.backend().clone(),
        hook: RefReads::default(),
    });
    let repo = Store::new(hooked.clone()).repo("ws", "repo").unwrap();

    // A mirror push: many new refs and one that moves. Only the one that exists is read.
    let mut updates = vec![up("refs/heads/main", Some(A), Some(B))];
    updates.extend((0..50).map(|i| up(&format!("refs/tags/t{i:02}"), None, Some(A))));
    let res = repo.update(&req(updates, true)).await.unwrap();
    assert!(res.results.iter().all(|r| r.status == RefStatus::Ok));
    assert_eq!(hooked.hook.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(f.file("refs/heads/main"), Some(format!("{B}\n")));
    assert_eq!(f.file("refs/tags/t49"), Some(format!("{A}\n")));

    // Created by someone else after the listing: the conditional create loses, as it would
    // after a read.
    let racing = Store::new(Arc::new(Hooked {
        inner: f.store.backend().clone(),
        hook: Racing {
            target: "refs/heads/late".into(),
        },
    }));
    let res = racing
        .repo("ws", "repo")
        .unwrap()
        .update(&req(vec![up("refs/heads/late", None, Some(A))], false))
        .await
        .unwrap();
    assert_eq!(statuses(&res), [(RefStatus::Stale, Some(C), None)]);
    assert_eq!(f.file("refs/heads/late"), Some(format!("{C}\n")));
}

/// Fails every write of an upload marker, as a store that refuses it.
#[derive(Debug)]
struct MarkersFail;

#[async_trait]
impl Hook for MarkersFail {
    async fn before(&self, _: &Arc<dyn Backend>, key: &str, op: Op<'_>) -> Result<(), Error> {
        if matches!(op, Op::Put(_)) && key.contains("/hypha-remote/uploads/") {
            return Err(Error::backend(key, "refused for the test"));
        }
        Ok(())
    }
}

/// A pack the server stores itself goes up as a pending upload: the idx beside the marker,
/// then the pack. A marker that cannot be written leaves neither idx nor pack; a pack that is
/// already live is never written over.
#[tokio::test]
async fn a_pending_pack_writes_its_idx_beside_the_marker_and_leaves_nothing_on_failure() {
    let f = fixture();
    f.repo_without_packs().await;
    let (pack, idx) = super::conformance::fake_pack(0xdd, &[A]);
    let name = format!("pack-{}", "dd".repeat(20));
    let pack_size = pack.len() as u64;
    let pack_file = || {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &pack).unwrap();
        file
    };
    let idx = Bytes::from(idx);
    let stored = |ext: &str| {
        std::fs::read(
            f.root
                .join("ws/artifacts/repo/.git/objects/pack")
                .join(format!("{name}.{ext}")),
        )
        .ok()
    };

    let failing = Store::new(Arc::new(Hooked {
        inner: f.store.backend().clone(),
        hook: MarkersFail,
    }))
    .repo("ws", "repo")
    .unwrap();
    let refused = failing
        .store_pending_file(&name, idx.clone(), pack_file(), pack_size)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(stored("idx"), None, "idx gone");
    assert_eq!(stored("pack"), None);
    assert_eq!(f.file(&format!("hypha-remote/uploads/{name}")), None);

    let repo = f.store.repo("ws", "repo").unwrap();
    repo.store_pending_file(&name, idx.clone(), pack_file(), pack_size)
        .await
        .unwrap();
    assert_eq!(stored("idx").as_deref(), Some(&idx[..]));
    assert_eq!(stored("pack").as_deref(), Some(&pack[..]));
    assert!(f.file(&format!("hypha-remote/uploads/{name}")).is_some());

    // Live (its marker gone, as `update` commits it): refused, and its idx stays as it was.
    f.write(&format!("objects/pack/{name}.idx"), "the live idx");
    std::fs::remove_file(
        f.root
            .join("ws/artifacts/repo/.git/hypha-remote/uploads")
            .join(&name),
    )
    .unwrap();
    let again = repo
        .store_pending_file(&name, idx, pack_file(), pack_size)
        .await;
    assert!(
        matches!(&again, Err(Error::Invalid { detail }) if detail.contains(ALREADY_STORED)),
        "{again:?}"
    );
    assert_eq!(stored("idx").as_deref(), Some(&b"the live idx"[..]));
}
