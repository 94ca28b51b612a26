//! Sweeping abandoned LFS delta plans (`repo::lfs_delta`): a plan and the runs the agent sent
//! for it stay under `git/lfs/delta/{oid}/{id}/` until its `complete` comes. An agent killed
//! in between, or a writer that plans and never completes, would leave them forever, counted
//! against the workspace's stored bytes.
//!
//! A plan is abandoned when every key of its folder is older than the grace period (the one
//! pending pack uploads get: `--gc-grace-secs`, by default a presigned URL's lifetime and 10
//! minutes, 70 min): a run still being sent keeps its plan. A key whose time the store does not
//! say counts as now, as thin uploads' do.
//!
//! Runs beside the other sweeps, never on a request: the server's timer over repositories
//! that were handed upload URLs or delta plans (`server::sweep_staged`, in the same wave as
//! the staged-uploads sweep), and compaction (best effort). One LIST of the repository's
//! `delta/` folder; deletes at most [`MAX_SWEPT_KEYS`] keys a sweep, the rest the next time.
//! Never takes the repository's lock: plans are not under it, and a completion that finds
//! its plan swept answers "no such delta plan" and the agent sends the object whole.

use super::{Error, Repository};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Most keys one sweep deletes (a plan is at most 1,025: its ranges and the plan), so that
/// a writer who left many plans cannot make one sweep run for long; the rest waits for the
/// next sweep.
const MAX_SWEPT_KEYS: usize = 16_384;

/// Deletes at once (each a round trip on S3), as a completion's cleanup does.
const DELETES_AT_ONCE: usize = 16;

/// What one sweep of delta plans found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeltaSweep {
    /// Plans deleted (all their keys).
    pub removed: usize,
    /// Plans left: within the grace period, or past [`MAX_SWEPT_KEYS`].
    pub kept: usize,
}

impl Repository {
    pub(super) fn lfs_delta_root(&self) -> String {
        format!("{}delta/", self.lfs_base())
    }

    /// Delete the delta plans whose keys are all older than `grace` at `now` (module doc).
    pub async fn sweep_lfs_deltas(
        &self,
        now: SystemTime,
        grace: Duration,
    ) -> Result<DeltaSweep, Error> {
        self.sweep_lfs_deltas_up_to(now, grace, MAX_SWEPT_KEYS)
            .await
    }

    async fn sweep_lfs_deltas_up_to(
        &self,
        now: SystemTime,
        grace: Duration,
        max_keys: usize,
    ) -> Result<DeltaSweep, Error> {
        let root = self.lfs_delta_root();
        // A plan's folder, `{oid}/{id}/`: its keys and the newest time among them.
        let mut plans: BTreeMap<String, (Vec<String>, Duration)> = BTreeMap::new();
        for meta in self.backend.list(&root).await? {
            let Some(rel) = meta.key.strip_prefix(&root) else {
                continue;
            };
            let folder = match rel.match_indices('/').nth(1) {
                Some((end, _)) => &rel[..=end],
                // Not in a plan's folder (no writer puts keys there): judged on its own.
                None => rel,
            };
            let age = meta.last_modified.map_or(Duration::ZERO, |t| {
                now.duration_since(t).unwrap_or_default()
            });
            let entry = plans
                .entry(folder.to_owned())
                .or_insert_with(|| (Vec::new(), age));
            entry.1 = entry.1.min(age);
            entry.0.push(meta.key);
        }
        let mut sweep = DeltaSweep::default();
        let mut doomed = Vec::new();
        for (keys, age) in plans.into_values() {
            if age < grace || doomed.len() + keys.len() > max_keys {
                sweep.kept += 1;
                continue;
            }
            sweep.removed += 1;
            doomed.extend(keys);
        }
        let backend = &self.backend;
        let failed: Vec<Error> = futures_util::stream::iter(doomed)
            .map(|key| async move { backend.delete(&key, None).await })
            .buffer_unordered(DELETES_AT_ONCE)
            .filter_map(|done| async move {
                match done {
                    Ok(()) | Err(Error::NotFound { .. }) => None,
                    Err(e) => Some(e),
                }
            })
            .collect()
            .await;
        match failed.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(sweep),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::repo::testing::repo_in_parts;
    use crate::storage::PutMode;
    use std::time::{Duration, SystemTime};

    /// A sweep deletes whole plans up to its bound of keys and leaves the rest, counted as
    /// kept, to the next sweep; a key outside any plan's folder is judged on its own.
    #[tokio::test]
    async fn a_sweep_deletes_whole_plans_up_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, repo) = repo_in_parts(dir.path());
        let root = repo.lfs_delta_root();
        let mut keys = vec![format!("{root}stray")];
        for plan in 0..5u8 {
            let folder = format!("{root}{}/{}/", hex::encode([plan; 32]), "1".repeat(32));
            keys.extend(["plan", "00001", "00002"].map(|k| format!("{folder}{k}")));
        }
        for key in &keys {
            let body = bytes::Bytes::from_static(b"x");
            backend.put(key, body, PutMode::Overwrite).await.unwrap();
        }
        let (late, grace) = (
            SystemTime::now() + Duration::from_secs(7200),
            Duration::ZERO,
        );
        let listed = || async { backend.list(&root).await.unwrap().len() };
        // 7 keys at most: the first two plans (6 keys), then the stray key (it sorts last
        // and still fits).
        let first = repo.sweep_lfs_deltas_up_to(late, grace, 7).await.unwrap();
        assert_eq!((first.removed, first.kept), (3, 3));
        assert_eq!(listed().await, 16 - 7);
        let second = repo.sweep_lfs_deltas_up_to(late, grace, 7).await.unwrap();
        assert_eq!((second.removed, second.kept), (2, 1));
        let third = repo.sweep_lfs_deltas_up_to(late, grace, 7).await.unwrap();
        assert_eq!((third.removed, third.kept), (1, 0));
        assert_eq!(listed().await, 0);
    }
}
