//! Which Git LFS objects a repository's refs reach: the oids named by the LFS pointers among
//! the blobs reachable from any ref, found with git in a local copy that holds every pack
//! (docs/design.md §14, "Pruning"). The server prunes the LFS objects outside this set.
//!
//! Owns the walk and the pointer grammar. Does not fetch packs, set refs or delete anything:
//! `repo::lfs_prune` does. A walk that cannot finish (an object missing from the packs, git
//! failing) is an error, never a smaller set: a smaller set would delete reachable content.
//!
//! Cost: one `git rev-list --objects --all` with `--filter=blob:limit` (git skips large blobs
//! from their headers, without inflating them), one `cat-file --batch-check` over its output
//! and one `cat-file --batch` over the small blobs only.

use crate::names;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Largest blob read as a possible pointer. The pointer spec says pointer files are smaller
/// than 1024 bytes, and git-lfs itself reads no more of a blob to tell (its `blobSizeCutoff`).
/// Larger blobs are never pointers, so they are skipped unread: the walk's memory and time
/// stay bounded by the number of small blobs, not by the repository's bytes.
pub const MAX_POINTER: u64 = 1024;

/// The first line of a pointer: git-lfs accepts the current spec and two older names of it.
/// A blob that merely looks like a pointer only keeps an object alive (safe); missing a real
/// one would delete it, so every version git-lfs reads counts.
const VERSIONS: [&str; 3] = [
    "version https://git-lfs.github.com/spec/v1",
    "version https://hawser.github.com/spec/v1",
    "version http://git-media.io/v/2",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run git {command} on the copy of '{repo}'")]
    Spawn {
        command: &'static str,
        repo: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {command} failed on the copy of '{repo}': {stderr}")]
    Git {
        command: &'static str,
        repo: String,
        stderr: String,
    },
    #[error("git cat-file answered {line:?} for a blob of '{repo}'")]
    Unexpected { repo: String, line: String },
}

/// The LFS oid a pointer blob names, or `None` when `blob` is no pointer.
pub fn pointer_oid(blob: &[u8]) -> Option<&str> {
    if blob.len() as u64 > MAX_POINTER {
        return None;
    }
    let text = std::str::from_utf8(blob).ok()?;
    let mut lines = text.lines();
    let first = lines.next()?.trim_end();
    if !VERSIONS.contains(&first) {
        return None;
    }
    lines
        .filter_map(|l| l.strip_prefix("oid sha256:"))
        .map(str::trim_end)
        .find(|oid| names::is_lfs_oid(oid))
}

/// The LFS oids named by pointers in blobs reachable from the refs of the repository at
/// `git_dir` (`repo` names it in errors).
///
/// One pipeline, so that memory does not grow with the number of small blobs (a source tree
/// has many): `rev-list` feeds `cat-file --batch-check`, a thread passes the ids of the small
/// blobs on to `cat-file --batch`, and this thread reads the blobs and keeps only the oids.
/// With `among`, only those oids are kept: a prune needs no pointer to an object that is not
/// stored, and a writer pushing pointer blobs by the thousand must not grow the set with them.
pub fn reachable(
    repo: &str,
    git_dir: &Path,
    among: Option<&BTreeSet<String>>,
) -> Result<BTreeSet<String>, Error> {
    let mut walk = spawn(
        repo,
        "rev-list",
        git(git_dir)
            .args(["rev-list", "--objects", "--no-object-names", "--all"])
            .arg(format!("--filter=blob:limit={}", MAX_POINTER + 1))
            .stdout(Stdio::piped()),
    )?;
    let ids = walk.stdout.take().expect("stdout is piped");
    let mut check = spawn(
        repo,
        "cat-file",
        git(git_dir)
            .args([
                "cat-file",
                "--batch-check=%(objecttype) %(objectsize) %(objectname)",
            ])
            .stdin(Stdio::from(ids))
            .stdout(Stdio::piped()),
    )?;
    let checked = check.stdout.take().expect("stdout is piped");
    let mut cat = spawn(
        repo,
        "cat-file",
        git(git_dir)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let input = cat.stdin.take().expect("stdin is piped");
    let name = repo.to_owned();
    let feeder = std::thread::spawn(move || small_blobs(&name, checked, input));
    let found = pointers(repo, cat.stdout.take().expect("stdout is piped"), among);
    if found.is_err() {
        // The feeder may be blocked writing to `cat`: its end of the pipe must go.
        let _ = cat.kill();
    }
    let fed = feeder.join().unwrap_or_else(|_| {
        Err(Error::Unexpected {
            repo: repo.to_owned(),
            line: "(the thread passing blob ids on panicked)".to_owned(),
        })
    });
    // The walk's own failure says most (a missing object): reported first.
    finish(repo, "rev-list", walk)?;
    finish(repo, "cat-file", check)?;
    fed?;
    let found = found?;
    finish(repo, "cat-file", cat)?;
    Ok(found)
}

fn git(git_dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(git_dir);
    cmd
}

fn spawn(repo: &str, command: &'static str, cmd: &mut Command) -> Result<Child, Error> {
    cmd.stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command,
            repo: repo.to_owned(),
            source,
        })
}

/// Waits for `child`; its failure (with its stderr) is the walk's.
fn finish(repo: &str, command: &'static str, child: Child) -> Result<(), Error> {
    let out = child.wait_with_output().map_err(|source| Error::Spawn {
        command,
        repo: repo.to_owned(),
        source,
    })?;
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

/// Pass the ids of the blobs of at most [`MAX_POINTER`] bytes from the batch-check's answers
/// (`checked`) on to `cat-file --batch` (`input`); closing `input` at the end ends its answers.
fn small_blobs(repo: &str, checked: impl Read, input: impl Write) -> Result<(), Error> {
    let io = |source| Error::Spawn {
        command: "cat-file",
        repo: repo.to_owned(),
        source,
    };
    let mut input = BufWriter::new(input);
    for line in BufReader::new(checked).lines() {
        let line = line.map_err(io)?;
        let mut fields = line.split(' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("blob"), Some(size), Some(id)) => {
                if size.parse::<u64>().is_ok_and(|s| s <= MAX_POINTER) {
                    writeln!(input, "{id}").map_err(io)?;
                }
            }
            (Some("commit" | "tree" | "tag"), Some(_), Some(_)) => {}
            // `<id> missing`: the walk cannot be complete.
            _ => {
                return Err(Error::Unexpected {
                    repo: repo.to_owned(),
                    line,
                })
            }
        }
    }
    input.flush().map_err(io)
}

/// The oids named by the pointers among the blobs `cat-file --batch` answers on `out`, up to
/// its end.
fn pointers(
    repo: &str,
    out: impl Read,
    among: Option<&BTreeSet<String>>,
) -> Result<BTreeSet<String>, Error> {
    let mut out = BufReader::new(out);
    let io = |source| Error::Spawn {
        command: "cat-file",
        repo: repo.to_owned(),
        source,
    };
    let mut found = BTreeSet::new();
    loop {
        let mut header = String::new();
        if out.read_line(&mut header).map_err(io)? == 0 {
            return Ok(found);
        }
        let mut fields = header.trim_end().split(' ');
        let size = match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some("blob"), Some(size)) => size.parse::<u64>().ok(),
            _ => None,
        };
        // Bounded before it sizes anything: the batch-check said so, and git says it again.
        let Some(size) = size.filter(|s| *s <= MAX_POINTER) else {
            return Err(Error::Unexpected {
                repo: repo.to_owned(),
                line: header.trim_end().to_owned(),
            });
        };
        let mut blob = vec![0; size as usize + 1];
        out.read_exact(&mut blob).map_err(io)?;
        blob.pop();
        if let Some(oid) = pointer_oid(&blob).filter(|o| among.is_none_or(|a| a.contains(*o))) {
            found.insert(oid.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    fn pointer(version: &str, oid: &str) -> String {
        format!("{version}\noid sha256:{oid}\nsize 12345\n")
    }

    #[test]
    fn pointers_of_every_version_name_their_oid() {
        for v in VERSIONS {
            assert_eq!(pointer_oid(pointer(v, OID).as_bytes()), Some(OID), "{v}");
        }
        // Extension lines before the oid (sorted keys, as the spec writes them).
        let ext = format!(
            "{}\next-0-foo sha256:{}\noid sha256:{OID}\nsize 3\n",
            VERSIONS[0],
            "0".repeat(64)
        );
        assert_eq!(pointer_oid(ext.as_bytes()), Some(OID));
        // CRLF from a checkout that converted line ends.
        let crlf = pointer(VERSIONS[0], OID).replace('\n', "\r\n");
        assert_eq!(pointer_oid(crlf.as_bytes()), Some(OID));
    }

    #[test]
    fn other_blobs_are_no_pointers() {
        assert_eq!(pointer_oid(b""), None);
        assert_eq!(pointer_oid(b"hello\n"), None);
        assert_eq!(
            pointer_oid(format!("oid sha256:{OID}\n").as_bytes()),
            None,
            "no version line"
        );
        let upper = pointer(VERSIONS[0], &OID.to_uppercase());
        assert_eq!(pointer_oid(upper.as_bytes()), None, "not a key we store");
        let short = pointer(VERSIONS[0], &OID[..63]);
        assert_eq!(pointer_oid(short.as_bytes()), None);
        let mut big = pointer(VERSIONS[0], OID).into_bytes();
        big.resize(MAX_POINTER as usize + 1, b'\n');
        assert_eq!(pointer_oid(&big), None, "larger than any pointer");
        assert_eq!(pointer_oid(&[0xff, 0xfe]), None, "not text");
    }

    fn run(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
        let mut child = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git runs");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input)
                .expect("write");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("git ends");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    }

    /// Pointers on a branch, in a tag's tree and in older history count; one only in a
    /// commit no ref reaches does not; a large blob that starts like a pointer is not read.
    #[test]
    fn reachable_pointers_from_every_ref_and_no_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        run(d, &["init", "-q", "-b", "main"], None);
        let oid = |n: u8| format!("{:02x}", n).repeat(32);
        let write = |name: &str, n: u8| {
            std::fs::write(d.join(name), pointer(VERSIONS[0], &oid(n))).expect("write");
        };
        write("old.bin", 1);
        run(d, &["add", "-A"], None);
        run(d, &["commit", "-q", "-m", "old"], None);
        std::fs::remove_file(d.join("old.bin")).expect("rm");
        write("main.bin", 2);
        let mut big = pointer(VERSIONS[0], &oid(5)).into_bytes();
        big.resize(4096, b' ');
        std::fs::write(d.join("big.txt"), big).expect("write");
        run(d, &["add", "-A"], None);
        run(d, &["commit", "-q", "-m", "main"], None);
        run(d, &["checkout", "-q", "-b", "side"], None);
        write("tagged.bin", 3);
        run(d, &["add", "-A"], None);
        run(d, &["commit", "-q", "-m", "tagged"], None);
        run(d, &["tag", "-a", "-m", "t", "v1"], None);
        run(d, &["checkout", "-q", "main"], None);
        run(d, &["branch", "-D", "side"], None);
        run(d, &["checkout", "-q", "-b", "gone"], None);
        write("gone.bin", 4);
        run(d, &["add", "-A"], None);
        run(d, &["commit", "-q", "-m", "gone"], None);
        run(d, &["checkout", "-q", "main"], None);
        run(d, &["branch", "-D", "gone"], None);
        run(d, &["reflog", "expire", "--expire=now", "--all"], None);
        let found = reachable("t", &d.join(".git"), None).expect("walk");
        assert_eq!(found, [oid(1), oid(2), oid(3)].into_iter().collect());
    }

    /// A ref to an object the repository lacks (a pack missing from the store) fails the
    /// walk: an incomplete set would delete reachable objects.
    #[test]
    fn a_missing_object_fails_the_walk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        run(d, &["init", "-q", "--bare"], None);
        let missing = "1234567890123456789012345678901234567890";
        std::fs::create_dir_all(d.join("refs/heads")).expect("mkdir");
        std::fs::write(d.join("refs/heads/main"), format!("{missing}\n")).expect("ref");
        let err = reachable("t", d, None).expect_err("incomplete");
        assert!(err.to_string().contains("rev-list"), "{err}");
    }
}
