//! Issue 22 part 4 with the real git-lfs: a new version of a large LFS object goes up as the
//! chunks the server's stored version lacks (our agent's delta, offered by `git hypha serve`
//! beside its parts), and the server keeps only what hashes to the oid: a base whose chunk
//! index lies, or a base that is gone, still ends with the right object (sent whole).
//!
//! Bytes sent are read from the server's log line for the plan (`sending=`): the presigned
//! `PUT`s of the plan's ranges are all the object bytes the agent sends on that path.

use crate::harness::{noise, TestEnv};
use crate::lfs::{lfs_install, oid_of, stored_object};
use std::path::{Path, PathBuf};

const MIB: usize = 1024 * 1024;

/// Objects from 5 MiB on go through parts (and so may go as a delta).
fn small_parts() -> Vec<String> {
    [
        "--multipart-threshold",
        "5242880",
        "--multipart-part-size",
        "5242880",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn lfs_work(env: &TestEnv, url: &str) -> PathBuf {
    let work = env.init("work");
    env.git(&work, &["lfs", "track", "*.bin"]);
    env.git(&work, &["remote", "add", "origin", url]);
    env.git(&work, &["config", "lfs.transfer.maxretries", "0"]);
    work
}

/// Write `bytes` as `data.bin`, commit and push; returns its oid.
fn push_version(env: &TestEnv, work: &Path, bytes: &[u8], message: &str) -> String {
    std::fs::write(work.join("data.bin"), bytes).expect("write data.bin");
    env.git(work, &["add", "-A"]);
    env.git(work, &["commit", "-q", "-m", message]);
    env.git(work, &["push", "-q", "origin", "main"]);
    oid_of(env, &work.join("data.bin"))
}

/// `data` with `len` bytes at `at` rewritten.
fn edited(data: &[u8], at: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    out[at..at + len].copy_from_slice(&noise(len, seed));
    out
}

/// The server's plan line for `oid`: (reused, sending).
fn planned(log: &str, oid: &str) -> Option<(u64, u64)> {
    let line = log
        .lines()
        .find(|l| l.contains("lfs delta planned") && l.contains(oid))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    Some((field("reused=")?, field("sending=")?))
}

fn same_bytes(path: &Path, expected: &[u8], what: &str) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(got == expected, "{what}: {} differs", path.display());
}

#[test]
fn a_new_version_of_a_big_file_sends_only_its_changed_chunks() {
    let env = TestEnv::with_serve_args(&small_parts());
    lfs_install(&env);
    let url = env.create("delta");
    let work = lfs_work(&env, &url);
    let v1 = noise(24 * MIB, 1);
    let o1 = push_version(&env, &work, &v1, "v1");
    env.server_log_when(|log| log.contains(&format!("parts/{o1}/complete 200")));
    // The completion's check cut v1's chunks as it hashed it: its index is stored already.
    let index = stored_object(&env, "delta", &o1)
        .to_string_lossy()
        .replace("/git/lfs/objects/", "/git/lfs/chunks/");
    assert!(Path::new(&index).is_file(), "v1 indexed at its completion");

    // 100 KiB rewritten in the middle: a few chunks around it go up, the rest is v1's.
    let v2 = edited(&v1, 12 * MIB, 100 * 1024, 2);
    let o2 = push_version(&env, &work, &v2, "v2");
    let log = env.server_log_when(|log| log.contains("delta/complete 200"));
    assert!(
        !log.contains(&format!("lfs chunk index of {o1}")),
        "v1 not read again to index it: {log}"
    );
    let (reused, sending) = planned(&log, &o2).unwrap_or_else(|| panic!("no plan: {log}"));
    assert_eq!(reused + sending, v2.len() as u64);
    assert!(sending < MIB as u64, "sent {sending} of {} bytes", v2.len());
    assert!(
        !log.contains(&format!("parts/{o2}/complete")),
        "not sent whole"
    );
    same_bytes(&stored_object(&env, "delta", &o2), &v2, "stored v2");

    // v3 appends 1 MiB to v2: v2 (composed, indexed on the way) is its base.
    let mut v3 = v2.clone();
    v3.extend_from_slice(&noise(MIB, 3));
    let o3 = push_version(&env, &work, &v3, "v3");
    let log = env.server_log_when(|log| log.matches("delta/complete 200").count() == 2);
    let (_, sending) = planned(&log, &o3).unwrap_or_else(|| panic!("no plan: {log}"));
    assert!(
        sending < 2 * MIB as u64,
        "sent {sending} of {} bytes",
        v3.len()
    );

    // A fresh clone gets v3 byte for byte (git-lfs checks the SHA-256 too), and v1 and v2
    // are still whole in the store.
    let copy = env.path("copy");
    env.git(
        &env.path(""),
        &["clone", "-q", &url, &copy.to_string_lossy()],
    );
    same_bytes(&copy.join("data.bin"), &v3, "cloned v3");
    same_bytes(&stored_object(&env, "delta", &o1), &v1, "stored v1");
    env.git(&copy, &["checkout", "-q", "HEAD~1"]);
    same_bytes(&copy.join("data.bin"), &v2, "cloned v2");
}

#[test]
fn a_lying_or_missing_base_still_stores_the_right_object() {
    let env = TestEnv::with_serve_args(&small_parts());
    lfs_install(&env);
    let url = env.create("liar");
    let work = lfs_work(&env, &url);
    let v1 = noise(12 * MIB, 4);
    let o1 = push_version(&env, &work, &v1, "v1");
    env.server_log_when(|log| log.contains(&format!("parts/{o1}/complete 200")));

    // v1's chunk index in the store claims that v1 holds every chunk of v2 where v2 has it:
    // the plan asks for nothing, the assembly makes v1's bytes, the server refuses to store
    // them, and the agent sends v2 whole.
    let v2 = edited(&v1, 6 * MIB, 4096, 5);
    let mut chunker = hypha_git::lfs_chunks::Chunker::new();
    chunker.feed(&v2);
    let lie = hypha_git::lfs_chunks::encode(v2.len() as u64, &chunker.finish());
    let index = stored_object(&env, "liar", &o1)
        .to_string_lossy()
        .replace("/git/lfs/objects/", "/git/lfs/chunks/");
    std::fs::create_dir_all(Path::new(&index).parent().expect("parent")).expect("mkdir");
    std::fs::write(&index, lie).expect("write the lying index");
    let o2 = push_version(&env, &work, &v2, "v2");
    let log = env.server_log_when(|log| log.contains(&format!("parts/{o2}/complete 200")));
    assert!(log.contains("made other content"), "{log}");
    let (_, sending) = planned(&log, &o2).unwrap_or_else(|| panic!("no plan: {log}"));
    assert_eq!(sending, 0, "the lie says every chunk is stored");
    same_bytes(&stored_object(&env, "liar", &o2), &v2, "stored v2");

    // The index that lied was dropped. v2 is gone from the store (its index stays): v3, an
    // edit of v2, finds v2 missing and v1 indexed afresh from its bytes, and goes up as a
    // delta of v1 (two edits' worth of chunks).
    std::fs::remove_file(stored_object(&env, "liar", &o2)).expect("remove v2");
    let v3 = edited(&v2, 3 * MIB, 4096, 6);
    let o3 = push_version(&env, &work, &v3, "v3");
    let log = env.server_log_when(|log| log.contains("delta/complete 200"));
    assert!(log.contains(&format!("lfs chunk index of {o1}")), "{log}");
    let (_, sending) = planned(&log, &o3).unwrap_or_else(|| panic!("no plan: {log}"));
    assert!(sending > 0 && sending < MIB as u64, "sent {sending}");
    same_bytes(&stored_object(&env, "liar", &o3), &v3, "stored v3");

    // Every version gone from the store: v4 finds no base and goes up whole, in parts.
    for oid in [&o1, &o3] {
        std::fs::remove_file(stored_object(&env, "liar", oid)).expect("remove");
    }
    let v4 = edited(&v3, MIB, 4096, 7);
    let o4 = push_version(&env, &work, &v4, "v4");
    let log = env.server_log_when(|log| log.contains(&format!("parts/{o4}/complete 200")));
    assert!(log.contains("lfs delta declined"), "{log}");
    same_bytes(&stored_object(&env, "liar", &o4), &v4, "stored v4");

    let copy = env.path("copy");
    env.git(
        &env.path(""),
        &["clone", "-q", &url, &copy.to_string_lossy()],
    );
    same_bytes(&copy.join("data.bin"), &v4, "cloned v4");
}
