//! Issue 22 with the real git-lfs: large LFS objects go through our transfer agent (`git
//! hypha lfs-agent`, which the helper records and git-lfs picks because our server offers
//! it): up in parallel parts, down in parallel ranges, with no step from the user; a
//! transfer that is cut resumes with what is missing only; a client without the agent still
//! gets `basic`.
//!
//! The server runs with 5 MiB parts from 5 MiB on, so that a 12 MiB object is three parts
//! (the default is 16 MiB parts above 64 MiB; `bench/lfs-big.sh` moves 12 GiB).

use crate::faults::Faulty;
use crate::harness::proxy::Fault;
use crate::harness::{noise, TestEnv};
use crate::lfs::{lfs_install, oid_of, stored_object};
use std::path::{Path, PathBuf};

const MIB: usize = 1024 * 1024;

/// `git hypha serve` arguments: parts of 5 MiB (S3's smallest) for objects above 5 MiB.
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

/// A work tree tracking `*.bin` with `files` (name, size, seed) committed, `origin` = `url`;
/// git-lfs gives up on a failed object at once (so that a cut shows in one run).
fn big_repo(env: &TestEnv, name: &str, url: &str, files: &[(&str, usize, u64)]) -> PathBuf {
    let work = env.init(name);
    env.git(&work, &["lfs", "track", "*.bin"]);
    for (file, size, seed) in files {
        std::fs::write(work.join(file), noise(*size, *seed)).expect("write lfs file");
    }
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "big files"]);
    env.git(&work, &["remote", "add", "origin", url]);
    env.git(&work, &["config", "lfs.transfer.maxretries", "0"]);
    work
}

/// Runs `args` in `dir` with git's trace going to a file (git-lfs traces presigned URLs,
/// which the harness rightly refuses to see in a command's output); returns the
/// adapters git-lfs started.
fn adapters(env: &TestEnv, dir: &Path, args: &[&str]) -> String {
    let trace = env.path("trace.log");
    let _ = std::fs::remove_file(&trace);
    env.cmd(dir, args).env("GIT_TRACE", &trace).ok();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once("starting transfer adapter ").map(|(_, a)| a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (
        std::fs::read(a).expect("read"),
        std::fs::read(b).expect("read"),
    );
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn big_lfs_objects_go_up_in_parts_and_down_in_ranges() {
    let env = TestEnv::with_serve_args(&small_parts());
    lfs_install(&env);
    let url = env.create("big");
    let work = big_repo(
        &env,
        "work",
        &url,
        &[("model.bin", 40 * MIB + 3, 1), ("small.bin", 64 * 1024, 2)],
    );
    let used = adapters(&env, &work, &["push", "-u", "origin", "main"]);
    assert_eq!(used, "\"hypha\"", "git-lfs used our transfer");
    let oid = oid_of(&env, &work.join("model.bin"));
    let log = env.server_log_when(|log| log.contains(&format!("parts/{oid}/complete 200")));
    assert!(log.contains("lfs multipart started"), "{log}");
    same_file(&work.join("model.bin"), &stored_object(&env, "big", &oid));
    let small = oid_of(&env, &work.join("small.bin"));
    same_file(&work.join("small.bin"), &stored_object(&env, "big", &small));

    // A clone's checkout gets both (the model in three ranges), checked by git-lfs.
    let copy = env.path("copy");
    let used = adapters(
        &env,
        &env.path(""),
        &["clone", &url, &copy.to_string_lossy()],
    );
    assert_eq!(used, "\"hypha\"");
    same_file(&work.join("model.bin"), &copy.join("model.bin"));
    same_file(&work.join("small.bin"), &copy.join("small.bin"));

    // A push of the same objects again moves nothing: the server has them, verified.
    env.git(&work, &["lfs", "push", "--all", "origin"]);

    // Without the agent (another client, or git-lfs alone) the same objects come by `basic`.
    let plain = env.path("plain");
    env.cmd(&env.path(""), &["clone", &url, &plain.to_string_lossy()])
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .ok();
    for key in [
        "lfs.customtransfer.hypha.path",
        "lfs.customtransfer.hypha.args",
    ] {
        env.git(&plain, &["config", "--unset", key]);
    }
    let used = adapters(&env, &plain, &["lfs", "pull"]);
    assert_eq!(used, "\"basic\"");
    same_file(&work.join("model.bin"), &plain.join("model.bin"));
}

/// An upload cut in its third part fails the push (no ref moves); the next push sends the
/// third part only. A download whose first range is cut resumes with that range only.
#[test]
fn cut_lfs_transfers_resume_with_what_is_missing() {
    let f = Faulty::with_serve_args(&[
        "--multipart-threshold",
        "5242880",
        "--multipart-part-size",
        "5242880",
    ]);
    let env = &f.env;
    lfs_install(env);
    env.create("resume");
    let url = f.url("resume");
    let work = big_repo(env, "work", &url, &[("data.bin", 12 * MIB + 5, 3)]);
    f.proxy.inject("PUT", "part-00003", None, Fault::Reset);
    let failed = env.cmd(&work, &["push", "origin", "main"]).fails();
    assert!(
        failed.stderr.contains("part 3"),
        "the error names the part: {failed}"
    );
    let remote = env.git(&work, &["ls-remote", "origin"]).stdout;
    assert!(remote.trim().is_empty(), "no ref moved: {remote}");
    assert_eq!(f.proxy.count("PUT", "part-00001"), 1);
    assert_eq!(f.proxy.count("PUT", "part-00002"), 1);

    f.proxy.clear();
    env.git(&work, &["push", "origin", "main"]);
    assert_eq!(f.proxy.count("PUT", "part-00001"), 1, "part 1 kept");
    assert_eq!(f.proxy.count("PUT", "part-00002"), 1, "part 2 kept");
    let oid = oid_of(env, &work.join("data.bin"));
    let log = env.server_log_when(|log| log.contains(&format!("parts/{oid}/complete 200")));
    assert!(log.contains("lfs multipart resumed"), "{log}");

    // 40 MiB down: three ranges; the first one to start is cut halfway.
    std::fs::write(work.join("more.bin"), noise(40 * MIB, 4)).expect("write");
    env.git(&work, &["add", "more.bin"]);
    env.git(&work, &["commit", "-q", "-m", "more"]);
    env.git(&work, &["push", "-q", "origin", "main"]);
    let more = oid_of(env, &work.join("more.bin"));
    let copy = env.path("copy");
    env.cmd(&env.path(""), &["clone", &url, &copy.to_string_lossy()])
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .ok();
    env.git(&copy, &["config", "lfs.transfer.maxretries", "0"]);
    let object_path = format!("/git/lfs/objects/{}/{}/{more}", &more[..2], &more[2..4]);
    let before = f.proxy.count("GET", &object_path);
    f.proxy
        .inject("GET", &object_path, Some(1), Fault::Truncate);
    let cut = env.cmd(&copy, &["lfs", "pull", "-I", "more.bin"]).run();
    assert!(!cut.success(), "the cut range fails the pull: {cut}");
    assert_eq!(f.proxy.count("GET", &object_path) - before, 3);
    env.git(&copy, &["lfs", "pull"]);
    assert_eq!(
        f.proxy.count("GET", &object_path) - before,
        4,
        "only the cut range was read again"
    );
    same_file(&work.join("more.bin"), &copy.join("more.bin"));
    same_file(&work.join("data.bin"), &copy.join("data.bin"));
}
