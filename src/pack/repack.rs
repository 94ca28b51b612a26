//! Merge the packs of a repository into one, with git (`git hypha gc`): `git repack -a` for
//! a whole repository with its refs, `git pack-objects --stdin-packs` for a subset.
//!
//! Works on a local (temporary) repository only; which packs to merge, downloading them and
//! uploading the result are `gc`'s business. Every git run is a subprocess whose stderr goes
//! into the error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot prepare a temporary repository for compaction")]
    Io(#[from] std::io::Error),
    #[error("git {command} failed while compacting '{repo}': {stderr}")]
    Git {
        command: &'static str,
        repo: String,
        stderr: String,
    },
    #[error("git left {count} packs instead of one while compacting '{repo}'")]
    NotOnePack { repo: String, count: usize },
}

/// `git init --bare` at `git_dir`, where the packs of `repo` will be merged.
pub fn init_bare(repo: &str, git_dir: &Path) -> Result<(), Error> {
    git(
        repo,
        "init",
        Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(git_dir),
    )
}

/// Point the temporary repository's refs where the remote's are (`git update-ref --stdin`).
pub fn set_refs(repo: &str, git_dir: &Path, refs: &BTreeMap<String, String>) -> Result<(), Error> {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["update-ref", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        for (name, oid) in refs {
            writeln!(stdin, "create {name} {oid}")?;
        }
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Git {
            command: "update-ref",
            repo: repo.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `git repack -a -d` into one pack, unreachable objects included; returns (.pack, .idx).
pub fn repack(repo: &str, git_dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    git(
        repo,
        "repack",
        Command::new("git")
            .args(super::limits::compaction_config_args(git_dir))
            .arg("--git-dir")
            .arg(git_dir)
            .args([
                "repack",
                "-a",
                "-d",
                "--keep-unreachable",
                "--no-write-bitmap-index",
                "-q",
            ]),
    )?;
    only_pack(repo, &git_dir.join("objects").join("pack"))
}

/// Every object of every pack in `git_dir` into one new pack under `out_dir`, with
/// `git pack-objects --stdin-packs`: no refs needed, and git still walks the commits it finds
/// to give its delta search paths. The input packs are self-contained, so the output is too.
pub fn pack_subset(
    repo: &str,
    git_dir: &Path,
    out_dir: &Path,
) -> Result<(PathBuf, PathBuf), Error> {
    let pack_dir = git_dir.join("objects").join("pack");
    let mut names = String::new();
    for entry in std::fs::read_dir(&pack_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pack") {
            if let Some(file) = path.file_name() {
                names.push_str(&file.to_string_lossy());
                names.push('\n');
            }
        }
    }
    std::fs::create_dir_all(out_dir)?;
    let mut child = Command::new("git")
        .args(super::limits::compaction_config_args(git_dir))
        .arg("--git-dir")
        .arg(git_dir)
        .args(["pack-objects", "--stdin-packs", "--delta-base-offset", "-q"])
        .arg(out_dir.join("pack"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(names.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error::Git {
            command: "pack-objects",
            repo: repo.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    only_pack(repo, out_dir)
}

/// The one `.pack` (and its `.idx`) git left in `dir`.
fn only_pack(repo: &str, dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let packs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    match packs.as_slice() {
        [pack] => Ok((pack.clone(), pack.with_extension("idx"))),
        _ => Err(Error::NotOnePack {
            repo: repo.to_owned(),
            count: packs.len(),
        }),
    }
}

fn git(repo: &str, command: &'static str, cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Git {
            command,
            repo: repo.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
