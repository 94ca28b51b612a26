//! The headline check: a repository with several branches, lightweight and annotated tags
//! and a few hundred commits survives a push and a clone bit for bit.
//!
//! 200+ commits because the dulwich-based server this project replaces broke on deep
//! histories (docs/design.md §1); the exact ref comparison because a remote helper that loses a tag,
//! peels an annotated tag, or rewrites an id is otherwise easy to miss.

use crate::harness::{import_commits, noise, TestEnv};

#[test]
fn full_history_with_branches_and_tags_round_trips_identically() {
    let env = TestEnv::new();
    let url = env.create("big");
    let src = env.init("src");

    import_commits(&env, &src, "main", None, 150, "main");
    let fork = env.rev(&src, "main~40");
    import_commits(&env, &src, "release", Some(&fork), 30, "release");
    let old = env.rev(&src, "main~100");
    import_commits(&env, &src, "feature/deep", Some(&old), 25, "feature");
    env.git(&src, &["reset", "-q", "--hard", "main"]);
    env.git(&src, &["tag", "v0.1", "main~120"]);
    env.git(&src, &["tag", "-a", "v0.9", "-m", "almost", "main~30"]);
    env.git(
        &src,
        &[
            "tag",
            "-a",
            "v1.0",
            "-m",
            "release 1.0\n\nwith a body",
            "release",
        ],
    );
    env.git(&src, &["tag", "nightly", "feature/deep"]);
    let commits = env
        .git(&src, &["rev-list", "--all", "--count"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(commits, "205", "fixture has the intended size");

    env.git(&src, &["remote", "add", "origin", &url]);
    let out = env.git(&src, &["push", "--all", "origin"]);
    for branch in ["main", "release", "feature/deep"] {
        crate::harness::assert_line(
            &out,
            &out.stderr,
            &["* [new branch]", &format!("{branch} -> {branch}")],
        );
    }
    let out = env.git(&src, &["push", "--tags", "origin"]);
    for tag in ["v0.1", "v0.9", "v1.0", "nightly"] {
        crate::harness::assert_line(
            &out,
            &out.stderr,
            &["* [new tag]", &format!("{tag} -> {tag}")],
        );
    }
    let source_refs = env.refs(&src, &["refs/heads/", "refs/tags/"]);

    // A mirror clone has exactly the remote's refs: the comparison is byte for byte.
    let mirror = env.path("mirror.git");
    env.git(
        &env.path(""),
        &["clone", "--mirror", &url, &mirror.to_string_lossy()],
    );
    env.fsck(&mirror);
    assert_eq!(
        env.refs(&mirror, &[]),
        source_refs,
        "mirror clone has the pushed refs, unpeeled"
    );
    assert_eq!(
        env.git(&mirror, &["rev-list", "--all", "--count"])
            .stdout
            .trim(),
        commits
    );

    // An ordinary clone: branches become remote-tracking refs, tags stay tags.
    let work = env.path("work");
    env.clone(&url, &work);
    assert_eq!(env.rev(&work, "HEAD"), env.rev(&src, "main"));
    let tracking: String = env
        .refs(&work, &["refs/remotes/origin/"])
        .lines()
        .filter(|l| !l.ends_with("refs/remotes/origin/HEAD"))
        .map(|l| format!("{}\n", l.replace("refs/remotes/origin/", "refs/heads/")))
        .collect();
    assert_eq!(tracking, env.refs(&src, &["refs/heads/"]));
    assert_eq!(
        env.refs(&work, &["refs/tags/"]),
        env.refs(&src, &["refs/tags/"])
    );
    assert_eq!(
        env.git(&work, &["cat-file", "-p", "v1.0"]).stdout,
        env.git(&src, &["cat-file", "-p", "v1.0"]).stdout,
        "annotated tag object is stored verbatim"
    );
}

/// A file over 16 MiB: its pack goes to `git index-pack`, which streams big objects (gix holds
/// each object whole, twice over on two cores); the next push's small pack goes to gix. The
/// clone is fsck-clean with the same bytes.
#[test]
fn a_file_over_16_mib_round_trips_through_git_index_pack() {
    let env = TestEnv::new();
    let url = env.create("huge");
    let src = env.init("src");
    let huge = noise(17 * 1024 * 1024, 7);
    std::fs::write(src.join("huge.bin"), &huge).expect("write file");
    env.git(&src, &["add", "-A"]);
    env.git(&src, &["commit", "-q", "-m", "huge"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "origin", "main"]);
    let tip = env.commit(&src, "small");
    env.git(&src, &["push", "-q", "origin", "main"]);

    let out = env.git(&env.path(""), &["clone", "-vv", &url, "dst"]);
    let dst = env.path("dst");
    env.fsck(&dst);
    assert_eq!(env.rev(&dst, "HEAD"), tip);
    assert_eq!(std::fs::read(dst.join("huge.bin")).expect("read"), huge);
    for indexer in ["indexed by git index-pack", "indexed by gix"] {
        assert_eq!(
            out.stderr.matches(indexer).count(),
            1,
            "one pack each way ({indexer}): {}",
            out.stderr
        );
    }
}
