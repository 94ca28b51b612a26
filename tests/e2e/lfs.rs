//! Git LFS over `hypha::` remotes (issue 15) with the real git-lfs: after `git lfs install`
//! and nothing else, push, clone (smudged at checkout), pull, `git lfs fetch --all`,
//! `git lfs push --all` and `git lfs ls-files` work; `GIT_LFS_SKIP_SMUDGE=1` is honoured; a
//! missing object fails naming the file; `git hypha gc` keeps the LFS objects refs reach and
//! prunes the others after the grace period (issue 22); a remote given as a bare URL carries
//! its LFS objects (issue 22); no token lands on disk; a `git hypha login` token serves
//! git-lfs too. Objects live where Hypha keeps them (`{id}/git/lfs/objects/aa/bb/oid`).
//!
//! Runs on every backend of the suite: against `git hypha serve` (local disk, S3) the LFS
//! routes are ours; in Hypha mode they are Hypha's own LFS endpoint over the same storage.
//! git-lfs is required: test.sh installs it, and these tests fail (never skip) without it.
//! Files are small (64 KiB) because the point is the wiring; bench/lfs.sh measures size.

use crate::harness::{noise, TestEnv};
use std::path::{Path, PathBuf};

/// The end of the LFS endpoint the helper records for repository `alias`: the default path
/// on `git hypha serve`; through Hypha, the plugin's own endpoint, which its `refs` names.
fn endpoint_path(alias: &str) -> String {
    if crate::harness::hypha::target().is_some() {
        format!("/git/{alias}/remote/v1/lfs")
    } else {
        format!("/git/{alias}.git/info/lfs")
    }
}

const SIZE: usize = 64 * 1024;

/// `git lfs install` in the hermetic HOME: the one step a user takes once.
pub(crate) fn lfs_install(env: &TestEnv) {
    let out = env.git(&env.path(""), &["lfs", "install", "--skip-repo"]);
    assert!(out.stdout.contains("Git LFS initialized"), "{out}");
}

/// SHA-256 of `bytes` as git-lfs names objects, through `git lfs pointer` (no extra crate).
pub(crate) fn oid_of(env: &TestEnv, file: &Path) -> String {
    let out = env.git(
        &env.path(""),
        &["lfs", "pointer", "--file", &file.to_string_lossy()],
    );
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("oid sha256:"))
        .unwrap_or_else(|| panic!("no oid in `git lfs pointer` output\n{out}"))
        .trim()
        .to_string()
}

/// Where the store keeps LFS object `oid` of `alias` (Hypha's layout, beside `.git/`).
pub(crate) fn stored_object(env: &TestEnv, alias: &str, oid: &str) -> PathBuf {
    env.stored_repo(alias)
        .parent()
        .expect(".git has a parent")
        .join("git/lfs/objects")
        .join(&oid[..2])
        .join(&oid[2..4])
        .join(oid)
}

/// A work tree tracking `*.bin` with LFS, with `files` (name, seed) committed, remote
/// `origin` = `url`.
fn lfs_repo(env: &TestEnv, name: &str, url: &str, files: &[(&str, u64)]) -> PathBuf {
    let work = env.init(name);
    env.git(&work, &["lfs", "track", "*.bin"]);
    for (file, seed) in files {
        std::fs::write(work.join(file), noise(SIZE, *seed)).expect("write lfs file");
    }
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "lfs files"]);
    env.git(&work, &["remote", "add", "origin", url]);
    work
}

#[test]
fn lfs_push_clone_pull_need_no_setup() {
    let env = TestEnv::new();
    lfs_install(&env);
    let url = env.create("lfs");
    let work = lfs_repo(&env, "work", &url, &[("a.bin", 1), ("b.bin", 2)]);
    env.git(&work, &["push", "-q", "-u", "origin", "main"]);
    for file in ["a.bin", "b.bin"] {
        let oid = oid_of(&env, &work.join(file));
        let stored = stored_object(&env, "lfs", &oid);
        assert_eq!(
            std::fs::read(&stored).ok().as_deref(),
            Some(noise(SIZE, if file == "a.bin" { 1 } else { 2 }).as_slice()),
            "{file} is stored at {} (Hypha's layout)",
            stored.display()
        );
    }

    // A clone's checkout already has the content (smudge found the endpoint and a token).
    let copy = env.path("copy");
    env.clone(&url, &copy);
    assert_eq!(
        std::fs::read(copy.join("a.bin")).expect("a.bin"),
        noise(SIZE, 1)
    );
    let listed = env.git(&copy, &["lfs", "ls-files"]).stdout;
    assert!(
        listed.contains("* a.bin") && listed.contains("* b.bin"),
        "both files present: {listed}"
    );

    // Push from the clone, pull into the first work tree.
    std::fs::write(copy.join("c.bin"), noise(SIZE, 3)).expect("write");
    env.git(&copy, &["add", "c.bin"]);
    env.git(&copy, &["commit", "-q", "-m", "c"]);
    env.git(&copy, &["push", "-q"]);
    env.git(&work, &["pull", "-q", "--ff-only"]);
    assert_eq!(
        std::fs::read(work.join("c.bin")).expect("c.bin"),
        noise(SIZE, 3)
    );
    env.git(&work, &["lfs", "fetch", "--all"]);
    env.git(&work, &["lfs", "push", "--all", "origin"]);

    // gc merges packs and keeps every LFS object a ref reaches.
    env.git_hypha(&["gc", &url]).ok();
    let oid = oid_of(&env, &work.join("a.bin"));
    assert!(stored_object(&env, "lfs", &oid).is_file(), "gc kept a.bin");

    // The token is nowhere on disk: the config names a helper, not a secret.
    for repo in [&work, &copy] {
        let config = std::fs::read_to_string(repo.join(".git/config")).expect("config");
        assert!(!config.contains(env.token()), "token in {}", repo.display());
        assert!(config.contains("lfsurl = "), "lfsurl recorded: {config}");
    }
    let global = std::fs::read_to_string(env.home().join(".gitconfig")).expect("gitconfig");
    assert!(!global.contains(env.token()), "token in ~/.gitconfig");

    // The remote moves: the recorded endpoint follows; one set by hand stays.
    let moved = env.create("lfs-moved");
    env.git(&work, &["remote", "set-url", "origin", &moved]);
    env.git(&work, &["fetch", "-q", "origin"]);
    let lfsurl = env.git(&work, &["config", "remote.origin.lfsurl"]).stdout;
    assert!(
        lfsurl.trim().ends_with(&endpoint_path("lfs-moved")),
        "{lfsurl}"
    );
    env.git(
        &work,
        &["config", "remote.origin.lfsurl", "https://lfs.example/x"],
    );
    env.git(&work, &["fetch", "-q", "origin"]);
    let lfsurl = env.git(&work, &["config", "remote.origin.lfsurl"]).stdout;
    assert_eq!(lfsurl.trim(), "https://lfs.example/x");

    // No HYPHA_TOKEN, only the token `git hypha login` keeps: the helper and git-lfs both
    // find it (git-lfs through `git hypha credential`).
    let server = format!("{}/", env.server.url().trim_end_matches('/'));
    let logins = env.home().join(".config").join("git-hypha");
    std::fs::create_dir_all(&logins).expect("config directory");
    let stored = serde_json::json!({ server.as_str(): env.token() });
    std::fs::write(logins.join("logins.json"), stored.to_string()).expect("logins.json");
    env.cmd(&env.path(""), &["clone", "-q", &url, "by-login"])
        .no_token()
        .ok();
    assert_eq!(
        std::fs::read(env.path("by-login/c.bin")).expect("c.bin"),
        noise(SIZE, 3)
    );
}

#[test]
fn lfs_skip_smudge_missing_objects_and_anonymous_reads() {
    let env = TestEnv::new();
    lfs_install(&env);
    let url = env.create_public("lfspub");
    let work = lfs_repo(&env, "work", &url, &[("model.bin", 7), ("gone.bin", 8)]);
    env.git(&work, &["push", "-q", "origin", "main"]);

    // GIT_LFS_SKIP_SMUDGE=1: pointers only, until `git lfs pull`.
    let parent = env.path("");
    let lazy = env.path("lazy");
    env.cmd(&parent, &["clone", "-q", &url, "lazy"])
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .ok();
    let pointer = std::fs::read_to_string(lazy.join("model.bin")).expect("pointer");
    assert!(
        pointer.starts_with("version https://git-lfs.github.com/spec/v1"),
        "{pointer}"
    );
    env.git(&lazy, &["lfs", "pull", "--include", "model.bin"]);
    assert_eq!(
        std::fs::read(lazy.join("model.bin")).expect("model.bin"),
        noise(SIZE, 7)
    );

    // Anonymous clone of a public repository downloads the content too.
    env.cmd(&parent, &["clone", "-q", &url, "anon"])
        .no_token()
        .ok();
    assert_eq!(
        std::fs::read(env.path("anon/model.bin")).expect("model.bin"),
        noise(SIZE, 7)
    );

    // An object missing on the server: the error names the file.
    let oid = oid_of(&env, &work.join("gone.bin"));
    std::fs::remove_file(stored_object(&env, "lfspub", &oid)).expect("remove stored object");
    // `git lfs pull` names objects by id (the batch API carries no paths), with the 404 of
    // whichever server answered (ours names the repository, Hypha's says "Object not found").
    let out = env.cmd(&lazy, &["lfs", "pull"]).fails();
    assert!(
        out.stderr.contains(&oid) && out.stderr.contains("[404]"),
        "names the object\n{out}"
    );
    let out = env.cmd(&parent, &["clone", "-q", &url, "broken"]).fails();
    assert!(out.stderr.contains("gone.bin"), "names the file\n{out}");
}

/// Bytes under an oid that are not its content (a writer's `PUT` never verified, or an
/// object replaced after its verify) are never served, and do not count as "already
/// there": the next `git lfs push` uploads the real object over them.
#[test]
fn lfs_garbage_is_never_served_and_is_replaced() {
    let env = TestEnv::new();
    lfs_install(&env);
    let url = env.create("lfsbad");
    let work = lfs_repo(&env, "work", &url, &[("w.bin", 11)]);
    env.git(&work, &["push", "-q", "origin", "main"]);
    let oid = oid_of(&env, &work.join("w.bin"));
    let stored = stored_object(&env, "lfsbad", &oid);
    std::fs::write(&stored, noise(SIZE, 12)).expect("overwrite the stored object");
    // A real store tells a replaced object by its etag (S3: the MD5 of the new bytes). s3s-fs
    // keeps the etag of its last PUT in a side file, so a file changed behind its back shows
    // only a new modification time, which S3's HEAD gives in whole seconds: moved an hour
    // back, so that it differs from the push's time and from the time of the real object's
    // upload below (two seconds on, as before, met that upload's second on a loaded machine:
    // the same seal as the garbage, and the real object was taken for it).
    std::fs::File::options()
        .write(true)
        .open(&stored)
        .and_then(|f| {
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        })
        .expect("move the stored object's modification time");

    let parent = env.path("");
    let lazy = env.path("lazy");
    env.cmd(&parent, &["clone", "-q", &url, "lazy"])
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .ok();
    let out = env.cmd(&lazy, &["lfs", "pull"]).fails();
    assert!(out.stderr.contains(&oid), "names the object\n{out}");
    // Through Hypha too: the plugin's endpoint is ours (Hypha's own would serve what is
    // stored, which git-lfs then refuses, and count it as present).
    assert!(out.stderr.contains("[404]"), "not offered at all\n{out}");
    env.git(&work, &["lfs", "push", "--all", "origin"]);
    assert_eq!(
        std::fs::read(&stored).expect("stored"),
        noise(SIZE, 11),
        "the real object replaced the garbage"
    );
    env.git(&lazy, &["lfs", "pull"]);
    assert_eq!(
        std::fs::read(lazy.join("w.bin")).expect("w.bin"),
        noise(SIZE, 11)
    );
}

/// Issue 22: a remote given only as a URL (`git push hypha::URL main`, no `git remote add`)
/// carries its LFS objects with no setup: the helper records git-lfs's settings under the
/// URL, which is the name git and the pre-push hook give such a remote. Then `git lfs push
/// URL --all`, and on the reading side `git fetch URL` followed by `git lfs fetch URL`.
/// `git fetch --all` does not contact the recorded URL, and a second push writes nothing.
#[test]
fn lfs_bare_url_pushes_and_fetches_need_no_setup() {
    let env = TestEnv::new();
    lfs_install(&env);
    let url = env.create("lfsurl");
    let work = env.init("work");
    env.git(&work, &["lfs", "track", "*.bin"]);
    std::fs::write(work.join("a.bin"), noise(SIZE, 21)).expect("write");
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "a"]);
    env.git(&work, &["push", "-q", &url, "main"]);
    let a = oid_of(&env, &work.join("a.bin"));
    assert!(
        stored_object(&env, "lfsurl", &a).is_file(),
        "a.bin uploaded"
    );
    let key = format!("remote.{url}.lfsurl");
    let lfsurl = env.git(&work, &["config", &key]).stdout;
    assert!(
        lfsurl.trim().ends_with(&endpoint_path("lfsurl")),
        "{lfsurl}"
    );
    let config = std::fs::read_to_string(work.join(".git/config")).expect("config");
    assert!(!config.contains(env.token()), "no token on disk: {config}");

    // Recorded once: a second push changes no byte of the config.
    std::fs::write(work.join("b.bin"), noise(SIZE, 22)).expect("write");
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "b"]);
    env.git(&work, &["push", "-q", &url, "main"]);
    let b = oid_of(&env, &work.join("b.bin"));
    assert!(
        stored_object(&env, "lfsurl", &b).is_file(),
        "b.bin uploaded"
    );
    assert_eq!(
        std::fs::read_to_string(work.join(".git/config")).expect("config"),
        config
    );

    // `git lfs push URL --all` uploads what the store lacks.
    std::fs::remove_file(stored_object(&env, "lfsurl", &a)).expect("remove a.bin's object");
    env.git(&work, &["lfs", "push", &url, "--all"]);
    assert!(stored_object(&env, "lfsurl", &a).is_file(), "a.bin again");

    // The URL's section is no remote to `git fetch --all`: the helper does not run.
    let out = env
        .cmd(&work, &["fetch", "--all"])
        .env("GIT_TRACE", "1")
        .ok();
    assert!(!out.stderr.contains("remote-hypha"), "{out}");

    // A repository that only fetches by URL: `git fetch URL` records, `git lfs fetch URL`
    // and a checkout find the content.
    let reader = env.init("reader");
    env.git(
        &reader,
        &["fetch", "-q", &url, "main:refs/remotes/by-url/main"],
    );
    env.git(&reader, &["lfs", "fetch", &url, "refs/remotes/by-url/main"]);
    env.git(&reader, &["checkout", "-q", "by-url/main"]);
    assert_eq!(
        std::fs::read(reader.join("b.bin")).expect("b.bin"),
        noise(SIZE, 22)
    );
}

/// Where the store keeps the verification marker of LFS object `oid` of `alias`.
fn stored_marker(env: &TestEnv, alias: &str, oid: &str) -> PathBuf {
    let object = stored_object(env, alias, oid);
    let rel = object
        .strip_prefix(env.stored_repo(alias).parent().expect("parent"))
        .expect("under the repository")
        .to_string_lossy()
        .replace("git/lfs/objects/", "git/lfs/verified/");
    env.stored_repo(alias).parent().expect("parent").join(rel)
}

/// A pushed LFS file, then history rewritten without it and force-pushed: its object is
/// unreachable (its pointer stays in the packs, which keep unreachable objects). Another
/// file stays on `main`, a third is on branch `side` only. Returns the work tree, the URL
/// and the oids: the dropped one first. (Seeds differ in more than their lowest bit: `noise`
/// sets it, so 52 and 53 would be one file.)
fn pushed_then_dropped(env: &TestEnv, alias: &str) -> (PathBuf, String, Vec<String>) {
    lfs_install(env);
    let url = env.create(alias);
    let work = lfs_repo(env, "work", &url, &[("gone.bin", 51), ("kept.bin", 52)]);
    env.git(&work, &["push", "-q", "-u", "origin", "main"]);
    let gone = oid_of(env, &work.join("gone.bin"));
    let kept = oid_of(env, &work.join("kept.bin"));
    env.git(&work, &["rm", "-q", "gone.bin"]);
    env.git(
        &work,
        &["commit", "-q", "--amend", "-m", "without gone.bin"],
    );
    env.git(&work, &["push", "-q", "--force", "origin", "main"]);
    env.git(&work, &["checkout", "-q", "-b", "side"]);
    std::fs::write(work.join("side.bin"), noise(SIZE, 54)).expect("write");
    env.git(&work, &["add", "-A"]);
    env.git(&work, &["commit", "-q", "-m", "side"]);
    env.git(&work, &["push", "-q", "origin", "side"]);
    let side = oid_of(env, &work.join("side.bin"));
    env.git(&work, &["checkout", "-q", "main"]);
    for oid in [&gone, &kept, &side] {
        assert!(stored_object(env, alias, oid).is_file(), "{oid} stored");
    }
    (work, url, vec![gone, kept, side])
}

/// Issue 22: `git hypha gc` prunes LFS objects no ref reaches, like retired packs over two
/// runs past the grace period (0 here): the first marks, the second deletes the object and
/// its verification marker; objects reached from any branch stay, and a clone still works.
#[test]
fn lfs_gc_deletes_objects_no_ref_reaches() {
    let env = TestEnv::with_serve_args(&["--gc-grace-secs".into(), "0".into()]);
    let (_work, url, oids) = pushed_then_dropped(&env, "lfsgc");
    let (gone, kept) = (&oids[0], &oids[1..]);
    assert!(
        stored_marker(&env, "lfsgc", gone).is_file(),
        "verified on push"
    );

    let out = env.git_hypha(&["gc", &url]).ok();
    assert!(
        out.stderr
            .contains("LFS: 3 object(s), 2 reachable; deleted 0 (0 bytes); 1 unreachable"),
        "first run marks\n{out}"
    );
    assert!(stored_object(&env, "lfsgc", gone).is_file(), "marked only");

    let out = env.git_hypha(&["gc", &url]).ok();
    assert!(
        out.stderr.contains(&format!(
            "LFS: 3 object(s), 2 reachable; deleted 1 ({SIZE} bytes); 0 unreachable"
        )),
        "second run deletes\n{out}"
    );
    assert!(!stored_object(&env, "lfsgc", gone).exists(), "deleted");
    assert!(!stored_marker(&env, "lfsgc", gone).exists(), "marker too");
    for oid in kept {
        assert!(stored_object(&env, "lfsgc", oid).is_file(), "kept {oid}");
    }
    let copy = env.path("copy");
    env.clone(&url, &copy);
    assert_eq!(
        std::fs::read(copy.join("kept.bin")).expect("kept.bin"),
        noise(SIZE, 52)
    );
    env.git(&copy, &["checkout", "-q", "side"]);
    assert_eq!(
        std::fs::read(copy.join("side.bin")).expect("side.bin"),
        noise(SIZE, 54)
    );

    // Nothing left to do: a third run deletes nothing and says so.
    let out = env.git_hypha(&["gc", &url]).ok();
    assert!(
        out.stderr
            .contains("LFS: 2 object(s), 2 reachable; deleted 0 (0 bytes); 0 unreachable"),
        "{out}"
    );
}

/// With the default grace period an unreachable object survives gc (it waits its grace
/// period since it was found unreachable): what keeps the objects of a push in flight, which
/// git-lfs uploads before the push moves any ref. Runs through the Hypha plugin too.
#[test]
fn lfs_gc_keeps_unreachable_objects_during_the_grace_period() {
    let env = TestEnv::new();
    let (_work, url, oids) = pushed_then_dropped(&env, "lfsyoung");
    for _ in 0..2 {
        let out = env.git_hypha(&["gc", &url]).ok();
        assert!(
            out.stderr
                .contains("LFS: 3 object(s), 2 reachable; deleted 0 (0 bytes); 1 unreachable"),
            "{out}"
        );
    }
    for oid in &oids {
        assert!(stored_object(&env, "lfsyoung", oid).is_file(), "kept {oid}");
    }
}
