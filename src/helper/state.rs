//! What this repository already fetched from a remote: `$GIT_DIR/hypha/<remote>/known-packs`.
//!
//! The file of [`Known`] packs (what the record means is `negotiate::fetch`'s). The file is a
//! cache: losing it costs a slower fetch, never a wrong one, and the fetch falls back to all
//! packs when a wanted object is still missing.

use crate::config::Remote;
use crate::negotiate::fetch::Known;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

fn file(git_dir: &Path, remote: &Remote) -> PathBuf {
    // Keyed by the resolved URL: git passes a remote name or a URL, and both must agree.
    let key = hex::encode(&Sha256::digest(remote.url().as_bytes())[..8]);
    git_dir.join("hypha").join(key).join("known-packs")
}

/// The record as [`Known`] packs; a missing or unreadable file is an empty record, and lines
/// that are not pack names are left out.
pub fn load(git_dir: &Path, remote: &Remote) -> Known {
    let names: BTreeSet<String> = std::fs::read_to_string(file(git_dir, remote))
        .map(|s| {
            s.lines()
                .filter(|l| crate::api::is_valid_pack_name(l))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Known::from_names(names)
}

/// Replace the record atomically (temp file + rename), so a killed fetch leaves the old one.
pub fn save(git_dir: &Path, remote: &Remote, known: &Known) -> std::io::Result<()> {
    let path = file(git_dir, remote);
    let dir = path.parent().unwrap_or(git_dir);
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    for name in known.names() {
        writeln!(tmp, "{name}")?;
    }
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}
