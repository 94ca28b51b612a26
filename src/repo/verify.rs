//! What a stored pack really holds: the object ids computed from its bytes by `git
//! index-pack`, not read from the idx its writer uploaded (issue 21: a 32-byte empty pack
//! whose idx listed every id of the real pack retired it, and every clone failed once the
//! grace period deleted it). Compaction retires a pack only when the new pack verifiably holds
//! each of its objects.
//!
//! Cost: the new pack is read once from the store into a temporary file and indexed (every
//! object inflated and hashed, deltas resolved): about what `git index-pack` takes for that
//! pack, on one compaction. Memory stays near git's: objects above 16 MiB are streamed
//! (`core.bigFileThreshold`), deltas resolved through git's bounded base cache.

use super::Repository;
use crate::storage::Error;
use std::io::Write as _;

/// Bytes read from the store per request while copying a pack out.
const CHUNK: u64 = 8 << 20;

impl Repository {
    /// The sorted ids of the objects stored in pack `name` (`pack_size` bytes), as git
    /// computes them from the pack itself. A pack git cannot index (corrupt, truncated, thin,
    /// empty) is refused with git's reason.
    pub(super) async fn verified_pack_ids(
        &self,
        name: &str,
        pack_size: u64,
    ) -> Result<Vec<[u8; 20]>, Error> {
        let key = self.pack_key(name, "pack");
        let refuse = |why: String| Error::Invalid {
            detail: format!("{name} in {}: {why}", self.name),
        };
        let dir = tempfile::Builder::new()
            .prefix("hypha-verify-")
            .tempdir()
            .map_err(|e| Error::backend(&key, e))?;
        let pack_path = dir.path().join("p.pack");
        let idx_path = dir.path().join("p.idx");
        {
            let mut file =
                std::fs::File::create(&pack_path).map_err(|e| Error::backend(&key, e))?;
            let mut at = 0;
            while at < pack_size {
                let end = (at + CHUNK).min(pack_size);
                let bytes = self.backend.get_range(&key, at..end).await?;
                if bytes.len() as u64 != end - at {
                    return Err(refuse("shorter than its listed size".into()));
                }
                file.write_all(&bytes)
                    .map_err(|e| Error::backend(&key, e))?;
                at = end;
            }
        }
        let out = tokio::process::Command::new("git")
            .args(["-c", "core.bigFileThreshold=16m", "index-pack", "-o"])
            .arg(&idx_path)
            .arg(&pack_path)
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                Error::backend(
                    &key,
                    format!("cannot run git index-pack to check the pack: {e}"),
                )
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.lines().last().unwrap_or("").trim();
            return Err(refuse(format!("git index-pack refuses it: {why}")));
        }
        let idx = std::fs::read(&idx_path).map_err(|e| Error::backend(&key, e))?;
        let mut ids = crate::pack::idx_file::object_ids(&idx, name)
            .map_err(|e| refuse(format!("its computed idx is unreadable: {e}")))?;
        if ids.is_empty() {
            return Err(refuse("it holds no objects".into()));
        }
        ids.sort_unstable();
        Ok(ids)
    }
}
