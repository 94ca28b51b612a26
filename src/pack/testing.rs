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

/// A real pack of blobs, made by git, for tests that only need some pack the server accepts:
/// `count` blobs of `len` bytes each (incompressible, so the pack is about `count * len`
/// bytes), their content fixed by `seed`.
pub(crate) struct BlobPack {
    /// `pack-<40 hex>`, as git names it.
    pub name: String,
    pub pack: Vec<u8>,
    pub idx: Vec<u8>,
    /// The blobs' ids, in the order made.
    pub ids: Vec<String>,
}

pub(crate) fn blob_pack(seed: u8, count: usize, len: usize) -> BlobPack {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q", "--bare"]);
    // xorshift64: the same bytes for the same seed, and zlib cannot shrink them.
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed) << 56 | 1;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let mut blob = format!("blob {seed} {i}\n").into_bytes();
        while blob.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            blob.push(state as u8);
        }
        let file = dir.path().join("blob");
        std::fs::write(&file, &blob).expect("write blob");
        let out = git(dir.path(), &["hash-object", "-w", "blob"]);
        ids.push(String::from_utf8(out).expect("utf8").trim().to_owned());
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["pack-objects", "-q", "out/pack"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pack-objects");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{}\n", ids.join("\n")).as_bytes())
        .expect("write ids");
    let out = child.wait_with_output().expect("pack");
    assert!(out.status.success(), "pack-objects: {out:?}");
    let hash = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let read = |ext: &str| std::fs::read(out_dir.join(format!("pack-{hash}.{ext}"))).expect("read");
    BlobPack {
        name: format!("pack-{hash}"),
        pack: read("pack"),
        idx: read("idx"),
        ids,
    }
}
