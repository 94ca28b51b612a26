//! `git hypha gc` (issue 4): after many pushes, one pack serves clones; retired packs stay
//! readable for the grace period and are deleted after it; clones made before and after keep
//! fetching correctly.

use crate::harness::TestEnv;

const PUSHES: usize = 12;

/// Pushes `PUSHES` single commits from a fresh work tree; returns it.
fn many_pushes(env: &TestEnv, url: &str) -> std::path::PathBuf {
    let work = env.init("work");
    env.git(&work, &["remote", "add", "origin", url]);
    for i in 0..PUSHES {
        env.commit(&work, &format!("c{i}"));
        env.git(&work, &["push", "-q", "origin", "main"]);
    }
    work
}

#[test]
fn gc_merges_packs_and_deletes_them_after_the_grace_period() {
    let env = TestEnv::with_serve_args(&["--gc-grace-secs".into(), "0".into()]);
    let url = env.create("gc");
    let work = many_pushes(&env, &url);
    let before_gc = env.path("before");
    env.clone(&url, &before_gc);
    let originals = env.remote_packs("gc");
    assert_eq!(originals.len(), PUSHES, "one pack per push: {originals:?}");

    let out = env.git_hypha(&["gc", &url]).ok();
    assert!(
        out.stderr.contains(&format!("merged {PUSHES} packs")),
        "{out}"
    );

    // A fresh clone downloads the merged pack only, and has every ref and object.
    let after = env.path("after");
    env.clone(&url, &after);
    assert_eq!(env.local_packs(&after).len(), 1, "one pack after gc");
    assert_eq!(
        env.refs(&after, &["refs/remotes/origin/main"]),
        env.refs(&before_gc, &["refs/remotes/origin/main"])
    );

    // A clone from before keeps fetching: only the new push's pack comes down.
    env.commit(&work, "after-gc");
    env.git(&work, &["push", "-q", "origin", "main"]);
    let packs_before = env.local_packs(&before_gc).len();
    env.git(&before_gc, &["pull", "-q", "--ff-only"]);
    assert_eq!(env.local_packs(&before_gc).len(), packs_before + 1);
    assert_eq!(env.rev(&before_gc, "HEAD"), env.rev(&work, "HEAD"));
    env.fsck(&before_gc);

    // The next gc (grace 0) deletes the packs retired by the first one.
    env.git_hypha(&["gc", &url]).ok();
    let remaining = env.remote_packs("gc");
    assert!(
        originals.keys().all(|p| !remaining.contains_key(p)),
        "retired packs are deleted after the grace period: {remaining:?}"
    );
    let last = env.path("last");
    env.clone(&url, &last);
    assert_eq!(env.rev(&last, "origin/main"), env.rev(&work, "HEAD"));
}

#[test]
fn gc_keeps_retired_packs_during_the_grace_period() {
    let env = TestEnv::new();
    let url = env.create("grace");
    many_pushes(&env, &url);
    let originals = env.remote_packs("grace");
    env.git_hypha(&["gc", &url]).ok();
    env.git_hypha(&["gc", &url]).ok();
    let on_disk = env.remote_packs("grace");
    assert!(
        originals.keys().all(|p| on_disk.contains_key(p)),
        "retired packs stay in storage for readers that listed them: {on_disk:?}"
    );
    let clone = env.path("clone");
    env.clone(&url, &clone);
    assert_eq!(env.local_packs(&clone).len(), 1, "but are no longer listed");
}

#[test]
fn gc_needs_write_access() {
    let env = TestEnv::new();
    let url = env.create("ro");
    many_pushes(&env, &url);
    let reader = env.mint(crate::harness::WS, "r");
    let out = env.git_hypha(&["gc", &url]).token(&reader).fails();
    assert!(out.stderr.contains("permission denied"), "{out}");
    assert_eq!(env.remote_packs("ro").len(), PUSHES, "nothing changed");
}
