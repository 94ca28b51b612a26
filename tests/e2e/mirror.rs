//! Issue 16 item 5: the README's recipe for mirroring from CI, `scripts/ci-mirror.sh`, run as
//! the README shows it: a repository into the server and back out (branches, tags, notes,
//! deletions), and a job without a token that fails at once with a clear error instead of
//! waiting for an answer (stdin closed, no terminal prompt, a credential helper that has none).
//!
//! The round trip (three small mirror runs: 1.2 s on local disk, 3.6 s on s3s-fs, 13.6 s through
//! Hypha, measured on a loaded 2-core machine) runs on local disk and S3; tests/hypha/run.sh
//! leaves it out in Hypha mode, where its helper path is `refs::mirror_push_and_repeat`'s. The
//! no-token test runs on all three.

use crate::harness::{sorted_lines, TestEnv};
use std::path::Path;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci-mirror.sh");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// The README shows the very file the tests run, so the two cannot drift apart.
#[test]
fn readme_shows_the_recipe_the_suite_runs() {
    let script = std::fs::read_to_string(SCRIPT).expect("read scripts/ci-mirror.sh");
    let readme = std::fs::read_to_string(README).expect("read README.md");
    assert!(
        readme.contains(&format!("```bash\n{script}```")),
        "README.md must show scripts/ci-mirror.sh verbatim in a ```bash block"
    );
}

/// `git ls-remote` without peeled lines (`^{}`): git's own transports print them, a remote
/// helper's `list` does not.
fn refs_at(env: &TestEnv, dir: &Path, url: &str) -> String {
    let listed = env.ls_remote(dir, url);
    sorted_lines(
        &listed
            .lines()
            .filter(|l| !l.ends_with("^{}"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
}

#[test]
fn mirror_into_the_server_and_back_out() {
    let env = TestEnv::new();
    let url = env.create("mirror");
    // The source, as a forge holds it: branches, an annotated and a lightweight tag, notes.
    let work = env.init("work");
    env.commit(&work, "one");
    env.git(&work, &["tag", "-a", "v1", "-m", "release one"]);
    env.git(&work, &["branch", "topic"]);
    env.commit(&work, "two");
    env.git(&work, &["tag", "light"]);
    env.git(&work, &["notes", "add", "-m", "reviewed", "HEAD"]);
    let source = env.init_bare(&env.path("source.git"));
    env.git(&work, &["push", "-q", "--mirror", &source]);

    let ci = env.mkdir("ci");
    let mirror = |from: &str, to: &str, dir: &str| {
        env.cmd(&ci, &[from, to])
            .program(SCRIPT)
            .env("MIRROR_DIR", dir)
            .ok()
    };
    mirror(&source, &url, "into.git");
    let at_source = refs_at(&env, &ci, &source);
    assert!(at_source.contains("refs/notes/commits"), "{at_source}");
    assert_eq!(refs_at(&env, &ci, &url), at_source);

    // The next run of the job: new commits and notes, a branch and a tag deleted at the source.
    env.git(&work, &["branch", "-D", "topic"]);
    env.git(&work, &["tag", "-d", "light"]);
    env.commit(&work, "three");
    env.git(&work, &["notes", "add", "-m", "reviewed again", "HEAD"]);
    env.git(&work, &["push", "-q", "--mirror", &source]);
    mirror(&source, &url, "into.git");
    let at_source = refs_at(&env, &ci, &source);
    assert!(!at_source.contains("topic") && !at_source.contains("light"));
    assert_eq!(refs_at(&env, &ci, &url), at_source);

    // And back out of the server into another forge.
    let back = env.init_bare(&env.path("back.git"));
    mirror(&url, &back, "out.git");
    assert_eq!(refs_at(&env, &ci, &back), at_source);
    env.fsck(&env.path("back.git"));
}

#[test]
fn mirror_without_a_token_fails_at_once_and_clearly() {
    let env = TestEnv::new();
    let url = env.create("mirror");
    let work = env.init("work");
    env.commit(&work, "one");
    let source = env.init_bare(&env.path("source.git"));
    env.git(&work, &["push", "-q", "--mirror", &source]);
    let ci = env.mkdir("ci");
    // A credential helper with nothing stored, as a CI runner's `store` has.
    env.cmd(&ci, &["config", "--global", "credential.helper", "store"])
        .no_token()
        .ok();

    let started = Instant::now();
    let out = env
        .cmd(&ci, &[&source, &url])
        .program(SCRIPT)
        .no_token()
        .fails();
    assert!(started.elapsed() < Duration::from_secs(60), "{out}");
    assert!(out.stderr.contains("authentication failed"), "{out}");
    assert!(out.stderr.contains("no token found"), "{out}");
    assert!(out.stderr.contains("set HYPHA_TOKEN"), "{out}");
    assert_eq!(
        refs_at(&env, &ci, &url),
        "",
        "nothing may land without a token"
    );
}
