//! docs/scenarios.md H41: a corrupt repository on the server. The stored files are damaged on disk
//! (`{root}/{ws}/artifacts/{alias}/.git/objects/pack/`), the way a bad disk, a broken copy or
//! a buggy writer would, and then `git fetch` and `git clone` run against it.
//!
//! Every case must fail loudly (non-zero exit, one `fatal:` line naming the pack, or the
//! missing object when no pack holds it, and the repository) and leave the local repository
//! exactly as it was: same files under `.git/objects`, same refs, no partial pack, no `.keep`.
//! A clone must leave no directory.
//!
//! The helper recomputes every object id from content while indexing a download and then
//! compares them with the server's idx, so a pack whose content and idx disagree (a forged
//! object, an idx belonging to another pack) is refused even when each file is well formed.
//! (A pack of at most 1 MiB is fetched without its idx, `fetch_packs::DIRECT_MAX`: its ids
//! are what its content hashes to, and a forged object there leaves a hole git's
//! connectivity check refuses. The damaged packs here are larger, so the idx is read.)

use crate::faults::{assert_failed_cleanly, LocalState};
use crate::harness::{TestEnv, WS};
use std::path::{Path, PathBuf};

/// A repository with two packs on the server (`c1`, then `c2` on top), and a clone `old` made
/// between the pushes, so `old` fetching needs exactly the second pack.
struct Damaged {
    env: TestEnv,
    url: String,
    src: PathBuf,
    old: PathBuf,
    /// The second pack's name (`pack-<hex>`), the one each case damages.
    second: String,
    first: String,
}

fn two_packs(alias: &str) -> Damaged {
    let env = TestEnv::new();
    let url = env.create(alias);
    let src = env.init("src");
    env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "origin", "main"]);
    let first = single(env.remote_packs(alias).keys());
    let old = env.path("old");
    env.clone(&url, &old);
    // Over the size a fetch takes without the server's idx (`fetch_packs::DIRECT_MAX`): the
    // idx is read, so a damaged one is seen.
    std::fs::write(src.join("c2.bin"), crate::harness::noise(3 << 19, 2)).expect("write");
    env.commit(&src, "c2");
    env.git(&src, &["push", "-q", "origin", "main"]);
    let second = single(
        env.remote_packs(alias)
            .keys()
            .filter(|name| **name != first),
    );
    Damaged {
        env,
        url,
        src,
        old,
        second: second.trim_end_matches(".pack").to_owned(),
        first: first.trim_end_matches(".pack").to_owned(),
    }
}

fn single<'a>(mut names: impl Iterator<Item = &'a String>) -> String {
    let name = names.next().expect("a pack").clone();
    assert!(names.next().is_none(), "exactly one new pack");
    name
}

impl Damaged {
    fn stored(&self, alias: &str, name: &str, ext: &str) -> PathBuf {
        self.env
            .stored_repo(alias)
            .join("objects/pack")
            .join(format!("{name}.{ext}"))
    }

    /// `git fetch` in `old` fails, names what it must, and changes nothing locally.
    fn fetch_fails(&self, needles: &[&str]) {
        let before = LocalState::of(&self.env, &self.old);
        let out = self.env.cmd(&self.old, &["fetch", "origin"]).fails();
        assert_failed_cleanly(&out, needles);
        assert_eq!(
            LocalState::of(&self.env, &self.old),
            before,
            "a failed fetch leaves the repository as it was\n{out}"
        );
        self.env.fsck(&self.old);
    }

    /// `git clone` fails, names what it must, and leaves no directory.
    fn clone_fails(&self, needles: &[&str]) {
        let out = self
            .env
            .cmd(&self.env.path(""), &["clone", &self.url, "fresh"])
            .fails();
        assert_failed_cleanly(&out, needles);
        assert!(
            !self.env.path("fresh").exists(),
            "a failed clone leaves no directory\n{out}"
        );
    }
}

fn flip_bit(path: &Path, offset_from: impl Fn(usize) -> usize) {
    let mut bytes = std::fs::read(path).expect("read stored pack");
    let at = offset_from(bytes.len());
    bytes[at] ^= 0x04;
    std::fs::write(path, bytes).expect("write stored pack");
}

/// A bit flipped inside the compressed data: inflating or hashing that object fails.
#[test]
fn flipped_bit_in_a_stored_pack_fails_fetch_and_clone() {
    let d = two_packs("flip");
    flip_bit(&d.stored("flip", &d.second, "pack"), |len| len / 2);
    let repo = format!("{WS}/flip");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

/// A bit flipped in the trailer: every object inflates, only the pack checksum is wrong.
#[test]
fn bad_trailer_checksum_fails_fetch_and_clone() {
    let d = two_packs("trailer");
    flip_bit(&d.stored("trailer", &d.second, "pack"), |len| len - 5);
    let repo = format!("{WS}/trailer");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

#[test]
fn truncated_stored_pack_fails_fetch_and_clone() {
    let d = two_packs("short");
    let path = d.stored("short", &d.second, "pack");
    let len = std::fs::metadata(&path).expect("stored pack").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open stored pack");
    file.set_len(len * 2 / 3).expect("truncate stored pack");
    let repo = format!("{WS}/short");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

/// The idx of another pack next to this pack: the index lies about what the pack holds. The
/// client recomputes every index, so it must notice the mismatch instead of trusting either.
#[test]
fn idx_of_another_pack_fails_fetch_and_clone() {
    let d = two_packs("swapped");
    std::fs::copy(
        d.stored("swapped", &d.first, "idx"),
        d.stored("swapped", &d.second, "idx"),
    )
    .expect("replace idx");
    let repo = format!("{WS}/swapped");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

/// An idx that is not an index at all.
#[test]
fn garbage_idx_fails_fetch_and_clone() {
    let d = two_packs("garbage");
    let idx = d.stored("garbage", &d.second, "idx");
    let len = std::fs::metadata(&idx).expect("stored idx").len() as usize;
    std::fs::write(&idx, vec![0x5a; len]).expect("overwrite idx");
    let repo = format!("{WS}/garbage");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

/// The pack holding the tip commit is gone (both files): the ref points at nothing.
#[test]
fn missing_pack_fails_fetch_and_clone_naming_the_object() {
    let d = two_packs("gone");
    let tip = d.env.rev(&d.src, "HEAD");
    for ext in ["pack", "idx"] {
        std::fs::remove_file(d.stored("gone", &d.second, ext)).expect("delete stored pack");
    }
    let repo = format!("{WS}/gone");
    d.fetch_fails(&[&tip, &repo]);
    d.clone_fails(&[&tip, &repo]);
}

/// The second pack replaced by a well-formed pack (valid zlib streams, valid trailer) in which
/// one blob has other content than the one its tree and the stored idx name: the content no
/// longer hashes to the name. Only comparing object ids catches this.
#[test]
fn object_not_hashing_to_its_name_fails_fetch_and_clone() {
    let d = two_packs("forged");
    let env = &d.env;
    let commit = env.rev(&d.src, "HEAD");
    let tree = env.rev(&d.src, "HEAD^{tree}");
    let blob = env.rev(&d.src, "HEAD:c2.txt");
    // Same length as "content of c2\n", different bytes.
    let forged = env
        .cmd(&d.src, &["hash-object", "-w", "--stdin"])
        .stdin("content of C2\n")
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert_ne!(forged, blob);
    let pack = d.stored("forged", &d.second, "pack");
    // With the large blob, so that the pack is still one a fetch reads the idx of first.
    let noise = env.rev(&d.src, "HEAD:c2.bin");
    let list = format!("{commit}\n{tree}\n{forged}\n{noise}\n");
    let bytes = pack_objects(env, &d.src, &list);
    std::fs::write(&pack, bytes).expect("replace stored pack");
    let repo = format!("{WS}/forged");
    d.fetch_fails(&[&d.second, &repo]);
    d.clone_fails(&[&d.second, &repo]);
}

/// `git pack-objects --stdout` of exactly the listed objects.
fn pack_objects(env: &TestEnv, repo: &Path, list: &str) -> Vec<u8> {
    let out = std::process::Command::new("git")
        .args(["pack-objects", "--stdout", "-q"])
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", env.home())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin piped")
                .write_all(list.as_bytes())?;
            child.wait_with_output()
        })
        .expect("git pack-objects");
    assert!(out.status.success(), "git pack-objects failed");
    out.stdout
}
