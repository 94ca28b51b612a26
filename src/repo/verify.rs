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
        let dir = temp_dir(&key)?;
        let pack_path = dir.path().join("p.pack");
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
        index_pack_ids(dir.path(), &key, name, refuse).await
    }

    /// [`Repository::verified_pack_ids`] for a pack in memory (one that came inline in an
    /// `update`, at most the inline limit): written to a temporary file and indexed by git
    /// there. Memory stays git's, in its own process (objects above 16 MiB streamed), not the
    /// server's; a pack git cannot index is refused with git's reason.
    pub(super) async fn verified_ids_in_memory(
        &self,
        name: &str,
        pack: &[u8],
    ) -> Result<Vec<[u8; 20]>, Error> {
        let what = format!("inline pack {name}");
        let dir = temp_dir(&what)?;
        std::fs::write(dir.path().join("p.pack"), pack).map_err(|e| Error::backend(&what, e))?;
        let refuse = |why: String| Error::Invalid {
            detail: format!("{name} in {}: {why}", self.name),
        };
        index_pack_ids(dir.path(), &what, name, refuse).await
    }
}

fn temp_dir(what: &str) -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("hypha-verify-")
        .tempdir()
        .map_err(|e| Error::backend(what, e))
}

/// `git index-pack` over `dir/p.pack`: the sorted ids of its objects, or `refuse` with why git
/// (or its idx) refuses it; `what` names the pack in a failure to run git at all.
async fn index_pack_ids(
    dir: &std::path::Path,
    what: &str,
    name: &str,
    refuse: impl Fn(String) -> Error,
) -> Result<Vec<[u8; 20]>, Error> {
    let (pack_path, idx_path) = (dir.join("p.pack"), dir.join("p.idx"));
    let out = tokio::process::Command::new("git")
        .args(["-c", "core.bigFileThreshold=16m", "index-pack", "-o"])
        .arg(&idx_path)
        .arg(&pack_path)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::backend(
                what,
                format!("cannot run git index-pack to check the pack: {e}"),
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().last().unwrap_or("").trim();
        return Err(refuse(format!(
            "corrupt or incomplete, git index-pack says: {why}"
        )));
    }
    let idx = std::fs::read(&idx_path).map_err(|e| Error::backend(what, e))?;
    let ids = super::objects::sorted_ids(&idx, name)
        .map_err(|e| refuse(format!("its computed idx is unreadable: {e}")))?;
    if ids.is_empty() {
        return Err(refuse("it holds no objects".into()));
    }
    Ok(ids)
}
