//! Git LFS file locks over `hypha::` remotes with the real git-lfs, two users with their own
//! tokens: `git lfs lock`, `git lfs locks` (`--path`, `--id`, `--json`, `--verify`),
//! `git lfs unlock` (refused for another user's lock, done with `--force`), a push of a file
//! another user locked refused by git-lfs when `lfs.<url>.locksverify` is on, readers unable
//! to lock, and racing `lock`s of one path with exactly one winner.
//!
//! `git hypha serve` only (local disk, S3): they need two users with write on one workspace
//! (tests/hypha/run.sh leaves them out; tests/hypha/test_plugin_locks.py runs the plugin's).

use crate::harness::{noise, TestEnv, WS};
use std::path::{Path, PathBuf};

/// `git lfs install`, then a work tree tracking `*.bin` with `files` committed and pushed to a
/// new repository as `owner`; returns the URL and the work tree.
fn pushed_repo(env: &TestEnv, alias: &str, owner: &str, files: &[&str]) -> (String, PathBuf) {
    let out = env.git(&env.path(""), &["lfs", "install", "--skip-repo"]);
    assert!(out.stdout.contains("Git LFS initialized"), "{out}");
    let url = env.create(alias);
    let work = env.init("ann");
    env.git(&work, &["lfs", "track", "*.bin"]);
    for (seed, file) in files.iter().enumerate() {
        std::fs::write(work.join(file), noise(4096, seed as u64)).expect("write lfs file");
    }
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "lfs files"]);
    env.git(&work, &["remote", "add", "origin", &url]);
    env.cmd(&work, &["push", "-q", "-u", "origin", "main"])
        .token(owner)
        .ok();
    (url, work)
}

/// `git lfs locks ARGS` as `token`: its stdout.
fn locks(env: &TestEnv, dir: &Path, token: &str, args: &[&str]) -> String {
    let mut full = vec!["lfs", "locks"];
    full.extend_from_slice(args);
    env.cmd(dir, &full).token(token).ok().stdout
}

/// The id `git lfs locks` shows for `path` (`path<TAB>owner<TAB>ID:<id>`).
fn lock_id(listing: &str, path: &str) -> String {
    listing
        .lines()
        .find(|l| l.trim_start_matches(['O', ' ']).starts_with(path))
        .and_then(|l| l.rsplit_once("ID:"))
        .map(|(_, id)| id.trim().to_string())
        .unwrap_or_else(|| panic!("no lock on {path} in:\n{listing}"))
}

#[test]
fn lfs_locks_two_users_lock_verify_and_force_unlock() {
    let env = TestEnv::new();
    let ann = env.mint_as("ann", WS, "rw");
    let bob = env.mint_as("bob", WS, "rw");
    let reader = env.mint_as("rita", WS, "r");
    let (url, work) = pushed_repo(&env, "locks", &ann, &["model.bin", "free.bin"]);
    let bobs = env.path("bob");
    env.cmd(&env.path(""), &["clone", "-q", &url, "bob"])
        .token(&bob)
        .ok();

    let out = env
        .cmd(&work, &["lfs", "lock", "model.bin"])
        .token(&ann)
        .ok();
    assert!(out.stdout.contains("Locked model.bin"), "{out}");

    // Everyone sees it, with its owner; the filters and --json work; --verify tells ours.
    let listing = locks(&env, &bobs, &bob, &[]);
    assert!(
        listing.contains("model.bin") && listing.contains("ann"),
        "{listing}"
    );
    let id = lock_id(&listing, "model.bin");
    for filter in [["--path", "model.bin"], ["--id", id.as_str()]] {
        let one = locks(&env, &bobs, &bob, &filter);
        assert_eq!(lock_id(&one, "model.bin"), id, "{filter:?}");
    }
    assert_eq!(locks(&env, &bobs, &bob, &["--path", "free.bin"]).trim(), "");
    let json: serde_json::Value =
        serde_json::from_str(&locks(&env, &bobs, &bob, &["--json"])).expect("--json is JSON");
    assert_eq!(json[0]["path"], "model.bin");
    assert_eq!(json[0]["owner"]["name"], "ann");
    assert_eq!(json[0]["id"], id.as_str());
    let ours = locks(&env, &work, &ann, &["--verify"]);
    assert!(ours.contains("O model.bin"), "ann's own lock: {ours}");
    let theirs = locks(&env, &bobs, &bob, &["--verify"]);
    assert!(
        theirs.contains("model.bin") && !theirs.contains("O model.bin"),
        "not bob's: {theirs}"
    );

    // Bob cannot take it, nor can a reader take another path.
    let out = env
        .cmd(&bobs, &["lfs", "lock", "model.bin"])
        .token(&bob)
        .fails();
    assert!(out.stderr.contains("already locked by ann"), "{out}");
    let out = env
        .cmd(&bobs, &["lfs", "lock", "free.bin"])
        .token(&reader)
        .fails();
    assert!(out.stderr.contains("permission denied"), "{out}");

    // With lock verification on, git-lfs refuses bob's push of the locked file, naming it
    // and its owner; the remote does not move.
    let lfsurl = env.git(&bobs, &["config", "remote.origin.lfsurl"]).stdout;
    let verify_key = format!("lfs.{}.locksverify", lfsurl.trim());
    env.git(&bobs, &["config", &verify_key, "true"]);
    std::fs::write(bobs.join("model.bin"), noise(4096, 99)).expect("edit");
    env.git(&bobs, &["commit", "-q", "-am", "bob edits the locked file"]);
    let before = env.ls_remote(&bobs, &url);
    let out = env
        .cmd(&bobs, &["push", "origin", "main"])
        .token(&bob)
        .fails();
    // git-lfs names the file and its owner on stdout, the refusal on stderr.
    assert!(
        out.stderr.contains("Cannot update locked files") && out.stdout.contains("model.bin - ann"),
        "{out}"
    );
    assert_eq!(env.ls_remote(&bobs, &url), before, "the refs did not move");

    // Unlocking ann's lock: refused without --force, done with it; then the push goes.
    let out = env
        .cmd(&bobs, &["lfs", "unlock", "model.bin"])
        .token(&bob)
        .fails();
    assert!(out.stderr.contains("locked by ann"), "{out}");
    let out = env
        .cmd(&bobs, &["lfs", "unlock", "--force", "model.bin"])
        .token(&bob)
        .ok();
    assert!(out.stdout.contains("Unlocked model.bin"), "{out}");
    assert_eq!(locks(&env, &bobs, &bob, &[]).trim(), "");
    env.cmd(&bobs, &["push", "-q", "origin", "main"])
        .token(&bob)
        .ok();

    // A lock of one's own goes without --force, by id too.
    env.cmd(&work, &["pull", "-q", "--ff-only"])
        .token(&ann)
        .ok();
    env.cmd(&work, &["lfs", "lock", "free.bin"])
        .token(&ann)
        .ok();
    let id = lock_id(&locks(&env, &work, &ann, &[]), "free.bin");
    env.cmd(&work, &["lfs", "unlock", "--id", &id])
        .token(&ann)
        .ok();
    assert_eq!(locks(&env, &work, &ann, &[]).trim(), "");
}

/// Six users run `git lfs lock` on one path at once: one gets it, five are told who has it.
#[test]
fn lfs_locks_racing_locks_of_one_path_have_one_winner() {
    const RACERS: usize = 6;
    let env = TestEnv::new();
    let ann = env.mint_as("ann", WS, "rw");
    let (_url, work) = pushed_repo(&env, "race", &ann, &["hot.bin"]);
    // Tokens go to files, not onto a command line.
    let dir = env.mkdir("race");
    let mut script = String::new();
    for i in 0..RACERS {
        let token = env.mint_as(&format!("user{i}"), WS, "rw");
        std::fs::write(dir.join(format!("token{i}")), token).expect("token file");
        script.push_str(&format!(
            "(HYPHA_TOKEN=$(cat '{d}/token{i}') git -C '{w}' lfs lock hot.bin >'{d}/out{i}' 2>&1; echo $? >'{d}/rc{i}') &\n",
            d = dir.display(),
            w = work.display(),
        ));
    }
    script.push_str("wait\n");
    env.cmd(&dir, &["-c", &script]).program("bash").ok();
    let mut winners = Vec::new();
    for i in 0..RACERS {
        let rc = std::fs::read_to_string(dir.join(format!("rc{i}"))).expect("exit code");
        let out = std::fs::read_to_string(dir.join(format!("out{i}"))).expect("output");
        if rc.trim() == "0" {
            winners.push(format!("user{i}"));
        } else {
            assert!(out.contains("already locked by user"), "user{i}: {out}");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let listing = locks(&env, &work, &ann, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&listing).expect("--json");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{listing}");
    assert_eq!(json[0]["owner"]["name"], winners[0].as_str());
}
