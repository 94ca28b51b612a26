//! A pack whose upload was cut, kept for the next push of the same thing (issue 22).
//!
//! `git pack-objects` with threads is not byte-for-byte repeatable: a push built again gets
//! another pack, of another name, and the server could not continue the cut multipart upload
//! of the first. So before a large self-contained pack goes up, it and its idx move to
//! `$GIT_DIR/hypha/push/` with a digest of what they were built for: the remote, the pushed
//! tips and the remote tips excluded; they go once the upload succeeded. A failed upload, a
//! Ctrl-C or a kill leaves them. The next push that would build a pack for exactly
//! those inputs takes them instead, and the server presigns only the parts it lacks. A push
//! for other inputs discards them: its objects differ, and the kept pack is of no further use.
//!
//! Bound: one pack at a time (a newer cut replaces it), only packs from
//! [`partial::resume_min`] bytes on (64 MiB, as for downloads; `HYPHA_RESUME_MIN_BYTES` for
//! tests), and none older than [`MAX_AGE`] since its last attempt. So the directory holds at
//! most the largest pack one push builds, for at most 70 minutes after that push. Two pushes
//! of one repository at once share the directory: the second one's pack replaces the first's,
//! whose upload then fails on reading its parts (push it again).

use crate::fetch_packs::partial;
use crate::pack;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A kept pack older than this is discarded: the server's default grace for uploads (URL
/// lifetime, one hour, plus ten minutes; `server::state::default_gc_grace`). After it the
/// server may have removed the cut upload's marker and parts, and the pack would go up whole
/// anyway.
pub const MAX_AGE: Duration = Duration::from_secs(3600 + 600);

/// The record beside a kept pack: its name and the digest of its inputs.
const RECORD: &str = "kept";

/// What a push's pack is built for.
pub struct Inputs<'a> {
    /// The remote's `hypha::` URL.
    pub remote: String,
    pub tips: &'a [String],
    pub exclude: &'a [String],
}

impl<'a> Inputs<'a> {
    /// The inputs of a push to `client`'s remote.
    pub fn of(client: &crate::client::Client, tips: &'a [String], exclude: &'a [String]) -> Self {
        Inputs {
            remote: client.remote().url(),
            tips,
            exclude,
        }
    }

    /// SHA-256 over the remote and the sorted tips and exclusions, in hex: the same push gives
    /// the same digest whatever the order of its refspecs.
    fn digest(&self) -> String {
        let mut tips = self.tips.to_vec();
        let mut exclude = self.exclude.to_vec();
        tips.sort();
        exclude.sort();
        let mut h = Sha256::new();
        h.update(format!("remote {}\n", self.remote));
        for t in &tips {
            h.update(format!("tip {t}\n"));
        }
        for e in &exclude {
            h.update(format!("exclude {e}\n"));
        }
        hex::encode(h.finalize())
    }
}

/// Where kept packs live.
pub fn dir(git_dir: &Path) -> PathBuf {
    git_dir.join("hypha").join("push")
}

/// The kept pack built for `inputs`, moved into `out_dir` (the push's staging directory, so
/// that it goes with it once uploaded); `None` when there is none, or only one for other
/// inputs or too old, which is discarded.
pub fn take(git_dir: &Path, inputs: &Inputs<'_>, out_dir: &Path) -> Option<pack::Built> {
    let dir = dir(git_dir);
    let record = read_record(&dir)?;
    let (name, digest) = parse_record(&record)?;
    let fresh = std::fs::metadata(dir.join(RECORD))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age <= MAX_AGE);
    if !fresh || digest != inputs.digest() {
        tracing::info!("hypha: discarding the pack {name} kept from a cut push (another push now)");
        discard(git_dir);
        return None;
    }
    // The record goes first: two pushes at once cannot both take the pack.
    std::fs::remove_file(dir.join(RECORD)).ok()?;
    let mut built = pack::Built {
        name: name.to_owned(),
        pack_path: out_dir.join(format!("{name}.pack")),
        idx_path: out_dir.join(format!("{name}.idx")),
        pack_size: 0,
        idx_size: 0,
    };
    let moved = move_file(&dir.join(format!("{name}.pack")), &built.pack_path)
        .and_then(|()| move_file(&dir.join(format!("{name}.idx")), &built.idx_path))
        .and_then(|()| {
            built.pack_size = std::fs::metadata(&built.pack_path)?.len();
            built.idx_size = std::fs::metadata(&built.idx_path)?.len();
            Ok(())
        });
    if moved.is_err() || built.pack_size == 0 || built.idx_size == 0 {
        discard(git_dir);
        return None;
    }
    tracing::info!(
        "hypha: using {name} ({} bytes), kept from a cut push of the same refs",
        built.pack_size
    );
    Some(built)
}

/// Keep `built` (about to go up) for a later push of `inputs` should this one be cut,
/// replacing any pack kept before, if it is large enough to be worth it: the pack at its new
/// place, to upload from there and [`discard`] once uploaded. `None` when not kept (small,
/// or it could not be moved: best effort, it is then built again next time).
pub fn keep(git_dir: &Path, inputs: &Inputs<'_>, built: &pack::Built) -> Option<pack::Built> {
    if built.pack_size < partial::resume_min_from_env() {
        return None;
    }
    discard(git_dir);
    let dir = dir(git_dir);
    let moved = pack::Built {
        pack_path: dir.join(format!("{}.pack", built.name)),
        idx_path: dir.join(format!("{}.idx", built.name)),
        ..built.clone()
    };
    let kept = std::fs::create_dir_all(&dir)
        .and_then(|()| move_file(&built.pack_path, &moved.pack_path))
        .and_then(|()| move_file(&built.idx_path, &moved.idx_path))
        .and_then(|()| {
            // Written then renamed: a record is whole or absent.
            let tmp = dir.join(format!("{RECORD}.tmp"));
            std::fs::write(&tmp, format!("{} {}\n", built.name, inputs.digest()))?;
            std::fs::rename(&tmp, dir.join(RECORD))
        });
    match kept {
        Ok(()) => {
            tracing::info!(
                "hypha: kept {} in {} until it is uploaded: a push of the same refs after a cut \
                 sends only what is missing",
                built.name,
                dir.display()
            );
            Some(moved)
        }
        Err(e) => {
            tracing::info!("hypha: cannot keep {} for the next push: {e}", built.name);
            // Whatever moved goes back, for this push to upload.
            let _ = move_file(&moved.pack_path, &built.pack_path);
            let _ = move_file(&moved.idx_path, &built.idx_path);
            discard(git_dir);
            None
        }
    }
}

/// Remove whatever is kept. Best effort.
pub fn discard(git_dir: &Path) {
    let _ = std::fs::remove_dir_all(dir(git_dir));
}

/// The record, if there is one of sane size (it is ours, but a file of any size may be
/// there).
fn read_record(dir: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(dir.join(RECORD)).ok()?;
    let mut text = String::new();
    file.take(256).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `pack-<40 hex> <64 hex>\n`: the pack's name (checked: it becomes a path) and the digest.
fn parse_record(record: &str) -> Option<(&str, &str)> {
    let (name, digest) = record.trim_end().split_once(' ')?;
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (crate::names::is_valid_pack_name(name) && hex(digest)).then_some((name, digest))
}

/// Rename, or copy and remove when `from` is on another file system (a staging directory in
/// the system's temporary directory).
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    std::fs::remove_file(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(dir: &Path, name: &str, size: usize) -> pack::Built {
        let pack_path = dir.join(format!("{name}.pack"));
        let idx_path = dir.join(format!("{name}.idx"));
        std::fs::write(&pack_path, vec![1u8; size]).unwrap();
        std::fs::write(&idx_path, b"idx").unwrap();
        pack::Built {
            name: name.into(),
            pack_path,
            idx_path,
            pack_size: size as u64,
            idx_size: 3,
        }
    }

    /// Kept for one push, taken by the same push (tips in any order), discarded by another.
    #[test]
    fn a_kept_pack_goes_only_to_the_same_push() {
        let git_dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let name = format!("pack-{}", "a".repeat(40));
        let tips = ["1".repeat(40), "2".repeat(40)].map(String::from);
        let reversed = [tips[1].clone(), tips[0].clone()];
        let inputs = Inputs {
            remote: "hypha::http://h/ws/r".into(),
            tips: &tips,
            exclude: &[],
        };
        let size = partial::resume_min_from_env() as usize;
        let kept = keep(git_dir.path(), &inputs, &built(staging.path(), &name, size));
        let kept = kept.expect("kept");
        assert!(kept.pack_path.starts_with(dir(git_dir.path())) && kept.pack_path.is_file());
        assert!(
            !staging.path().join(format!("{name}.pack")).exists(),
            "moved"
        );
        let same = Inputs {
            remote: inputs.remote.clone(),
            tips: &reversed,
            exclude: &[],
        };
        let out = tempfile::tempdir().unwrap();
        let taken = take(git_dir.path(), &same, out.path()).expect("the same push takes it");
        assert_eq!(
            (taken.name.as_str(), taken.pack_size),
            (name.as_str(), size as u64)
        );
        assert!(taken.pack_path.starts_with(out.path()) && taken.pack_path.is_file());
        assert!(
            take(git_dir.path(), &same, out.path()).is_none(),
            "taken once"
        );

        keep(git_dir.path(), &same, &taken).expect("kept again");
        let other = Inputs {
            remote: "hypha::http://h/ws/other".into(),
            ..same
        };
        assert!(take(git_dir.path(), &other, out.path()).is_none());
        assert!(!dir(git_dir.path()).exists(), "discarded");
    }

    /// Small packs are not kept; a broken record is no pack.
    #[test]
    fn small_packs_and_broken_records_are_not_kept() {
        let git_dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let inputs = Inputs {
            remote: "r".into(),
            tips: &[],
            exclude: &[],
        };
        let small = built(staging.path(), &format!("pack-{}", "b".repeat(40)), 10);
        assert!(keep(git_dir.path(), &inputs, &small).is_none());
        assert!(!dir(git_dir.path()).exists() && small.pack_path.is_file());
        assert_eq!(parse_record("pack-x 00\n"), None);
        assert_eq!(parse_record(&format!("../x {}", "0".repeat(64))), None);
        let name = format!("pack-{}", "c".repeat(40));
        let digest = "d".repeat(64);
        assert_eq!(
            parse_record(&format!("{name} {digest}\n")),
            Some((name.as_str(), digest.as_str()))
        );
    }
}
