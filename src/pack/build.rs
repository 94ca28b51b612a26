//! `git pack-objects --revs` into a temporary directory.
//!
//! Never `--thin`: packs at rest must be self-contained (docs/design.md §3 rule 1). The tip and
//! exclusion lists travel on stdin, so no object id list is limited by the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run git pack-objects")]
    Spawn(#[source] std::io::Error),
    #[error("git pack-objects failed ({status})")]
    Failed { status: std::process::ExitStatus },
    #[error("git pack-objects printed an unexpected pack name {0:?}")]
    BadName(String),
    #[error("cannot read the pack written by git pack-objects at {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A pack and its index on local disk, ready to upload.
#[derive(Debug, Clone)]
pub struct Built {
    /// `pack-<40 hex>`.
    pub name: String,
    pub pack_path: PathBuf,
    pub idx_path: PathBuf,
    pub pack_size: u64,
    pub idx_size: u64,
}

/// Pack every object reachable from `tips` and not from `exclude` into `out_dir`.
/// Returns `None` when there is nothing to send (all objects are already on the remote).
/// `exclude` must hold only objects present locally: git refuses unknown ones.
pub fn build(
    git_dir: &Path,
    tips: &[String],
    exclude: &[String],
    out_dir: &Path,
    progress: bool,
) -> Result<Option<Built>, Error> {
    let mut child = Command::new("git")
        .args(super::limits::config_args(git_dir))
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "pack-objects",
            "--revs",
            "--delta-base-offset",
            "--non-empty",
            if progress { "--progress" } else { "-q" },
        ])
        .arg(out_dir.join("pack"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::Spawn)?;
    let mut input = String::new();
    for tip in tips {
        input.push_str(tip);
        input.push('\n');
    }
    for ex in exclude {
        input.push('^');
        input.push_str(ex);
        input.push('\n');
    }
    {
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Spawn(std::io::Error::other("git pack-objects has no stdin")))?;
        stdin.write_all(input.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Failed { status: out.status });
    }
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if hash.is_empty() {
        return Ok(None);
    }
    let name = format!("pack-{hash}");
    if !crate::names::is_valid_pack_name(&name) {
        return Err(Error::BadName(hash));
    }
    let pack_path = out_dir.join(format!("{name}.pack"));
    let idx_path = out_dir.join(format!("{name}.idx"));
    let size = |path: &PathBuf| {
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })
    };
    Ok(Some(Built {
        pack_size: size(&pack_path)?,
        idx_size: size(&idx_path)?,
        name,
        pack_path,
        idx_path,
    }))
}
