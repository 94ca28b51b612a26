//! `git index-pack` for packs holding objects too big for the gix indexer's memory bound.
//!
//! gix resolves every object whole in memory, two at a time on two cores, so a pack of 30 MiB
//! objects peaked at 166 MiB resident. `git index-pack` streams objects over
//! `core.bigFileThreshold` and keeps memory near one object; it hashes on one core, so it is
//! used only when the server's idx shows an entry over [`BIG_ENTRY`] (the same 16 MiB above
//! which `pack::limits` stores files undeltified).

use super::receive::{Error, Indexed};
use std::path::Path;

/// Packs with an entry larger than this (compressed) go to `git index-pack`.
pub const BIG_ENTRY: u64 = 16 * 1024 * 1024;

/// Index a pack stream with `git index-pack --stdin --keep` for the repository that holds
/// `pack_dir`: it verifies every object as gix does. git writes into a private object
/// directory under `$GIT_DIR` (it leaves its temporary file behind when the stream is cut
/// short); only a complete, verified pack is moved into `pack_dir`, `.keep` first.
pub fn index(
    input: &mut dyn std::io::BufRead,
    pack_dir: &Path,
    name: &str,
) -> Result<Indexed, Error> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let invalid = |reason: String| Error::Invalid {
        pack: name.to_owned(),
        reason,
    };
    let objects_dir = pack_dir
        .parent()
        .ok_or_else(|| invalid(format!("no object directory above {}", pack_dir.display())))?;
    let git_dir = objects_dir
        .parent()
        .ok_or_else(|| invalid(format!("no repository above {}", objects_dir.display())))?;
    let staging = tempfile::Builder::new()
        .prefix("hypha-index-")
        .tempdir_in(git_dir)
        .map_err(|e| invalid(format!("cannot create a staging directory: {e}")))?;
    let staged_packs = staging.path().join("pack");
    std::fs::create_dir_all(&staged_packs)
        .map_err(|e| invalid(format!("cannot create a staging directory: {e}")))?;
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "index-pack",
            "--stdin",
            "--no-rev-index",
            "--keep=hypha fetch",
        ])
        .env("GIT_OBJECT_DIRECTORY", staging.path())
        // The repository's own objects stay visible, for git's collision check.
        .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", objects_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| invalid(format!("cannot run git index-pack: {e}")))?;
    let copied = match child.stdin.take() {
        // Dropping stdin at the end tells git the pack is complete (or cut short).
        Some(mut stdin) => std::io::copy(input, &mut stdin).map(drop),
        None => Ok(()),
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| invalid(format!("git index-pack failed: {e}")))?;
    if let Err(e) = copied {
        return Err(invalid(format!("download interrupted: {e}")));
    }
    if !output.status.success() {
        let why = stderr.lines().last().unwrap_or("").trim();
        return Err(invalid(format!("git index-pack: {why}")));
    }
    // `keep\t<hash>`: the pack's trailer checksum, which names its files.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let hash = stdout
        .split_whitespace()
        .nth(1)
        .filter(|h| crate::names::is_object_id(h))
        .ok_or_else(|| invalid(format!("unexpected git index-pack output {stdout:?}")))?;
    let file = |dir: &Path, ext: &str| dir.join(format!("pack-{hash}.{ext}"));
    let idx = std::fs::read(file(&staged_packs, "idx"))
        .map_err(|e| invalid(format!("cannot read the idx: {e}")))?;
    let objects = super::idx_file::object_ids(&idx, name)
        .map_err(|e| invalid(e.to_string()))?
        .len();
    // `.keep` first, so that no repack can take the pack before git updates refs; the idx
    // last, since a pack is visible to git once its idx is.
    for ext in ["keep", "pack", "idx"] {
        std::fs::rename(file(&staged_packs, ext), file(pack_dir, ext))
            .map_err(|e| invalid(format!("cannot move the {ext} into place: {e}")))?;
    }
    Ok(Indexed {
        pack_path: Some(file(pack_dir, "pack")),
        idx_path: Some(file(pack_dir, "idx")),
        keep_path: Some(file(pack_dir, "keep")),
        objects: u32::try_from(objects).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::testing::{bare, git, pack_of_history};

    /// The path large packs take: `git index-pack` writes a verified pack, idx and `.keep`;
    /// a pack cut short is refused and leaves nothing.
    #[test]
    fn large_packs_are_indexed_by_git() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pack = pack_of_history(&tmp.path().join("src"), 1);
        let dst = tmp.path().join("dst");
        let pack_dir = bare(&dst);

        let cut = &pack[..pack.len() - 10];
        let err = index(&mut &cut[..], &pack_dir, "pack-x").expect_err("truncated");
        assert!(err.to_string().contains("pack-x"), "{err}");
        for dir in [&pack_dir, &dst] {
            let leftovers: Vec<_> = std::fs::read_dir(dir)
                .expect("ls")
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("tmp_") || n.starts_with("hypha-index-")
                })
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        assert_eq!(std::fs::read_dir(&pack_dir).expect("ls").count(), 0);

        let indexed = index(&mut &pack[..], &pack_dir, "pack-x").expect("indexed");
        assert_eq!(indexed.objects, 4, "commit, tree, two blobs");
        for path in [indexed.pack_path, indexed.idx_path, indexed.keep_path] {
            assert!(path.expect("path").exists());
        }
        git(&dst, &["fsck", "--full"]);
    }
}
