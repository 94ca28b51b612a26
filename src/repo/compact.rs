//! Compaction: one pack replaces many, and the old ones are retired, then deleted after a grace
//! period (docs/design.md §3 rules, §9).
//!
//! A client uploads the merged pack and asks to retire the packs it merged. The server indexes
//! the new pack itself (`git index-pack` over its bytes, [`verify`](super::verify)), requires
//! the ids it finds to be exactly those its idx lists, and checks that they cover every object
//! of each retired pack, so no ref (nor a push that uploaded its pack but has not updated refs
//! yet) can lose an object, whatever idx a writer uploads.
//! Retired packs stop being listed to this API's readers at once, but stay in storage for the
//! grace period: readers who listed packs before hold presigned URLs to them, and Hypha's own
//! readers list `*.pack` and read them lazily. Markers live under `.git/hypha-remote/retired/`.
//!
//! Compaction also deletes abandoned uploads (packs no update named within the grace period,
//! see [`uploads`](super::uploads)), and finishes an interrupted atomic update first, as every
//! holder of the repository lock does (see [`journal`](super::journal)).

use super::{check_pack_name, Repository, LOCK_TIMEOUT};
use crate::names;
use crate::storage::{Error, PutMode};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

/// A compaction asked for: `pack` (already uploaded) holds every object of the `retire`
/// packs, which stop being listed now and are deleted after the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub pack: String,
    pub retire: Vec<String>,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Packs retired by this compaction.
    pub retired: Vec<String>,
    /// Packs whose grace period had passed and that are now deleted.
    pub deleted: Vec<String>,
    /// How long a retired pack stays readable for clients that listed it before.
    pub grace: Duration,
}

impl Repository {
    fn retired_dir(&self) -> String {
        self.key("hypha-remote/retired/")
    }

    /// Retired packs and when they were retired (unix seconds).
    pub(crate) async fn retired(&self) -> Result<BTreeMap<String, u64>, Error> {
        let dir = self.retired_dir();
        let mut out = BTreeMap::new();
        for meta in self.backend.list(&dir).await? {
            let Some(name) = meta.key.strip_prefix(&dir) else {
                continue;
            };
            if !names::is_valid_pack_name(name) {
                continue;
            }
            let at = match self.backend.get(&meta.key).await {
                Ok(obj) => String::from_utf8_lossy(&obj.body)
                    .trim()
                    .parse()
                    .unwrap_or(0),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.insert(name.to_owned(), at);
        }
        Ok(out)
    }

    /// Retire `req.retire` in favour of `req.pack`, then delete retired packs older than
    /// `grace`. Refuses the whole request if any retired pack holds an object the new pack
    /// lacks.
    pub async fn compact(&self, req: &Compaction, grace: Duration) -> Result<Compacted, Error> {
        check_pack_name(&req.pack)?;
        for name in &req.retire {
            check_pack_name(name)?;
            if *name == req.pack {
                return Err(Error::Invalid {
                    detail: format!("{name} cannot replace itself"),
                });
            }
        }
        let checked = self
            .check_packs_sized(
                std::slice::from_ref(&req.pack),
                super::packs::Check::Trailers,
            )
            .await?;
        let (keep_idx_size, pack_size) = checked
            .first()
            .map_or((0, 0), |(_, idx, pack)| (*idx, *pack));
        // What the pack really holds, from its bytes: its writer's idx is only a claim (a
        // merge this server made itself was checked when it was made).
        let keep = self
            .verified_stored_pack(&req.pack, keep_idx_size, pack_size)
            .await?;

        let _guard = tokio::time::timeout(LOCK_TIMEOUT, self.lock.lock())
            .await
            .map_err(|_| Error::Busy {
                key: self.name.clone(),
            })?;
        self.roll_forward().await?;
        // The new pack was uploaded through `uploads` like a push's: it is live from now on.
        self.commit_uploads(std::slice::from_ref(&req.pack)).await?;
        let retired = self.retired().await?;
        if retired.contains_key(&req.pack) {
            return Err(Error::Invalid {
                detail: format!("{} is retired in {}", req.pack, self.name),
            });
        }
        let live: BTreeMap<String, u64> = self
            .packs()
            .await?
            .into_iter()
            .map(|p| (p.name, p.idx_size))
            .collect();
        let mut to_retire = Vec::new();
        for name in &req.retire {
            let Some(&idx_size) = live.get(name) else {
                // Already retired or gone: nothing to check or mark.
                continue;
            };
            if let Some(missing) = self
                .pack_ids(name, idx_size)
                .await?
                .iter()
                .find(|id| keep.binary_search(id).is_err())
            {
                return Err(Error::Invalid {
                    detail: format!(
                        "{} lacks object {} of {name} in {}",
                        req.pack, missing, self.name
                    ),
                });
            }
            to_retire.push(name.clone());
        }
        let now = crate::auth::unix_now();
        for name in &to_retire {
            let marker = format!("{}{name}", self.retired_dir());
            self.backend
                .put(&marker, Bytes::from(format!("{now}\n")), PutMode::Overwrite)
                .await?;
        }
        let mut deleted = self.purge_retired(&retired, now, grace).await?;
        deleted.extend(self.purge_abandoned_uploads(now, grace).await?);
        // Delta plans never completed, in the same wave as the thin uploads (the server's
        // timer sweeps only repositories it handed a plan since it started). Best effort: a
        // plan left costs storage until the next sweep, and the compaction is done.
        let clock = std::time::SystemTime::now();
        let (thin, deltas) = tokio::join!(
            self.purge_thin_uploads(clock, grace),
            self.sweep_lfs_deltas(clock, grace)
        );
        thin?;
        if let Err(e) = deltas {
            tracing::warn!(
                "warning: cannot sweep lfs delta plans of {}: {e}",
                self.name
            );
        }
        Ok(Compacted {
            retired: to_retire,
            deleted,
            grace,
        })
    }

    /// Delete packs retired more than `grace` ago: `.pack` first (a lone `.idx` is invisible
    /// to every reader), then `.idx`, then the marker, so an interrupted purge is resumed by
    /// the next one.
    async fn purge_retired(
        &self,
        retired: &BTreeMap<String, u64>,
        now: u64,
        grace: Duration,
    ) -> Result<Vec<String>, Error> {
        let mut deleted = Vec::new();
        for (name, at) in retired {
            if now < at.saturating_add(grace.as_secs()) {
                continue;
            }
            for key in [
                self.pack_key(name, "pack"),
                self.pack_key(name, "idx"),
                format!("{}{name}", self.retired_dir()),
            ] {
                match self.backend.delete(&key, None).await {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            deleted.push(name.clone());
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Store;
    use crate::storage::LocalDisk;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    }

    /// Real packs from git: one per commit, and one holding both commits.
    fn packs(dir: &Path) -> (String, String, String) {
        git(dir, &["init", "-q"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let one = git(dir, &["rev-parse", "HEAD"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let two = git(dir, &["rev-parse", "HEAD"]);
        let pack = |input: String, out: &str| -> String {
            std::fs::create_dir_all(dir.join(out).parent().expect("parent")).expect("mkdir");
            let mut child = Command::new("git")
                .args(["pack-objects", "--revs", "-q", out])
                .current_dir(dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("pack-objects runs");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
                .expect("write revs");
            let out = child.wait_with_output().expect("pack-objects ends");
            format!("pack-{}", String::from_utf8_lossy(&out.stdout).trim())
        };
        let first = pack(format!("{one}\n"), "p1/pack");
        let second = pack(format!("{two}\n^{one}\n"), "p2/pack");
        let both = pack(format!("{two}\n"), "p3/pack");
        (first, second, both)
    }

    /// An empty repository on a local-disk store (the directory lives as long as the guard).
    async fn new_repo() -> (tempfile::TempDir, Repository) {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let disk = LocalDisk::new(store_dir.path(), "http://localhost:1", b"k").expect("disk");
        let repo = Store::new(Arc::new(disk)).repo("ws", "r").expect("repo");
        repo.create(false, None).await.expect("create");
        (store_dir, repo)
    }

    async fn upload(repo: &Repository, dir: &Path, sub: &str, name: &str) {
        for ext in ["idx", "pack"] {
            let body = std::fs::read(dir.join(sub).join(format!("{name}.{ext}"))).expect("pack");
            repo.backend
                .put(
                    &repo.pack_key(name, ext),
                    Bytes::from(body),
                    PutMode::Overwrite,
                )
                .await
                .expect("put");
        }
    }

    /// Retiring, and purging past the grace period, with an abandoned LFS delta plan swept
    /// on the way (`lfs_delta_sweep`).
    #[tokio::test]
    async fn retires_only_packs_whose_objects_the_new_pack_holds() {
        let work = tempfile::tempdir().expect("tempdir");
        let (first, second, both) = packs(work.path());
        let (_store_dir, repo) = new_repo().await;
        upload(&repo, work.path(), "p1", &first).await;
        upload(&repo, work.path(), "p2", &second).await;

        // `second` lacks the first commit: retiring `first` in its favour must fail.
        let refused = repo
            .compact(
                &Compaction {
                    pack: second.clone(),
                    retire: vec![first.clone()],
                },
                Duration::ZERO,
            )
            .await;
        assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
        assert_eq!(
            repo.packs().await.expect("packs").len(),
            2,
            "nothing retired"
        );

        upload(&repo, work.path(), "p3", &both).await;
        // A delta plan whose `complete` never came: swept with the rest, past the grace.
        let plan = format!(
            "{}{}/{}/plan",
            repo.lfs_delta_root(),
            "a".repeat(64),
            "1".repeat(32)
        );
        repo.backend
            .put(&plan, Bytes::from_static(b"{}"), PutMode::Overwrite)
            .await
            .expect("put plan");
        let done = repo
            .compact(
                &Compaction {
                    pack: both.clone(),
                    retire: vec![first.clone(), second.clone()],
                },
                Duration::from_secs(3600),
            )
            .await
            .expect("compact");
        assert_eq!(done.retired, vec![first.clone(), second.clone()]);
        assert!(done.deleted.is_empty(), "within the grace period");
        let live: Vec<String> = repo
            .packs()
            .await
            .expect("packs")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(live, vec![both.clone()]);
        // Still in storage for readers that listed them before.
        assert!(repo
            .backend
            .head(&repo.pack_key(&first, "pack"))
            .await
            .is_ok());
        assert!(repo.backend.head(&plan).await.is_ok(), "plan kept");

        // A later compaction after the grace period deletes them, pack before idx.
        let purged = repo
            .compact(
                &Compaction {
                    pack: both.clone(),
                    retire: vec![],
                },
                Duration::ZERO,
            )
            .await
            .expect("purge");
        assert_eq!(purged.deleted.len(), 2);
        assert!(repo.backend.head(&plan).await.is_err(), "plan swept");
        for name in [&first, &second] {
            for ext in ["pack", "idx"] {
                assert!(repo.backend.head(&repo.pack_key(name, ext)).await.is_err());
            }
        }
    }

    /// Issue 21: an empty pack whose idx lists every id of the real pack (ids any reader can
    /// get) retired the real pack. The server now indexes the new pack itself.
    #[tokio::test]
    async fn an_idx_that_lies_retires_nothing() {
        let work = tempfile::tempdir().expect("tempdir");
        let (_, _, both) = packs(work.path());
        let (_store_dir, repo) = new_repo().await;
        upload(&repo, work.path(), "p3", &both).await;

        // An empty pack (header and trailer) with the real pack's idx entries.
        let mut empty = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
        let mut h = gix_hash::hasher(gix_hash::Kind::Sha1);
        h.update(&empty);
        let sum = h.try_finalize().expect("sha1");
        empty.extend_from_slice(sum.as_slice());
        let mut checksum = [0u8; 20];
        checksum.copy_from_slice(sum.as_slice());
        let real_idx =
            std::fs::read(work.path().join("p3").join(format!("{both}.idx"))).expect("idx");
        let mut entries = crate::pack::idx_file::entries(&real_idx, "real").expect("entries");
        let lie = crate::pack::idx_file::write(&mut entries, &checksum, "lie").expect("idx");
        let fake = format!("pack-{}", sum.to_hex());
        for (ext, body) in [("idx", lie), ("pack", empty)] {
            repo.backend
                .put(
                    &repo.pack_key(&fake, ext),
                    Bytes::from(body),
                    PutMode::Overwrite,
                )
                .await
                .expect("put");
        }
        let refused = repo
            .compact(
                &Compaction {
                    pack: fake.clone(),
                    retire: vec![both.clone()],
                },
                Duration::ZERO,
            )
            .await;
        let Err(Error::Invalid { detail }) = refused else {
            panic!("{refused:?}");
        };
        assert!(detail.contains(&fake), "{detail}");
        let live: Vec<String> = repo
            .packs()
            .await
            .expect("packs")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(live.contains(&both), "the real pack stays live: {live:?}");
    }
}
