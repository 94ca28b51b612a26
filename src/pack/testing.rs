//! Test fixtures shared by the pack tests: real git making real packs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(["-c", "user.name=a", "-c", "user.email=a@b", "-C"])
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    out.stdout
}

/// A pack of `commits` commits, each changing two files a little: deltas (OFS_DELTA) and
/// their chains for pass two to resolve.
pub(crate) fn pack_of_history(dir: &Path, commits: usize) -> Vec<u8> {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    let mut text = String::new();
    for i in 0..commits {
        for n in 0..400 {
            text.push_str(&format!("line {n} of round {i}\n"));
        }
        std::fs::write(dir.join("a.txt"), &text).expect("write");
        std::fs::write(dir.join("b.txt"), text.replace("line", "row")).expect("write");
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    pack_objects(dir, &[], "HEAD\n")
}

/// `git pack-objects --revs --stdout --delta-base-offset` in `dir`, with `extra` arguments,
/// fed `revs`: the pack's bytes.
pub(crate) fn pack_objects(dir: &Path, extra: &[&str], revs: &str) -> Vec<u8> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "pack-objects",
            "--revs",
            "--stdout",
            "-q",
            "--delta-base-offset",
        ])
        .args(extra)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pack-objects");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(revs.as_bytes())
        .expect("write revs");
    let out = child.wait_with_output().expect("pack");
    assert!(out.status.success(), "pack-objects: {out:?}");
    out.stdout
}

pub(crate) fn bare(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "--bare"]);
    dir.join("objects").join("pack")
}
