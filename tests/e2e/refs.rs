//! docs/scenarios.md section B: the shapes of refs a push can name, create, move and delete.
//!
//! git sends the helper a `<src>` that may be a ref, `HEAD`, a revision expression or a raw id
//! (docs/protocol.md §3), and decides tag and deletion rules itself; so most tests here replay the
//! scenario against a `file://` remote and require the same porcelain output and final refs.

use crate::harness::oracle::{assert_same_as_file_remote, porcelain_line, remote_refs, Side};
use crate::harness::{assert_line, TestEnv};
use std::path::{Path, PathBuf};

/// `side.init("src")` with commits `c1`..`cN` on main.
fn repo_with_commits(side: &Side, n: usize) -> PathBuf {
    let src = side.init("src");
    for i in 1..=n {
        side.env.commit(&src, &format!("c{i}"));
    }
    src
}

fn branch_at(env: &TestEnv, repo: &Path, name: &str, rev: &str) {
    env.git(repo, &["branch", "-f", name, rev]);
}

/// B8: every form of `<src>` git may send creates the right ref. The order makes each form
/// the first to carry some objects (a revision expression, a ref under another name, a raw id
/// of a commit on no pushed branch), and the final clone proves they all arrived.
#[test]
fn push_accepts_ref_head_revision_and_raw_id_sources() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "srcforms", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 3);
        env.git(&src, &["checkout", "-q", "-b", "side", "HEAD~2"]);
        let loose = env.commit(&src, "on-no-pushed-branch");
        env.git(&src, &["checkout", "-q", "main"]);
        let pushes: [(&str, String); 5] = [
            ("HEAD~1", "HEAD~1:refs/heads/y".into()),
            ("ref to other name", "main:refs/heads/other".into()),
            ("HEAD", "HEAD:refs/heads/x".into()),
            ("main", "main".into()),
            ("raw id", format!("{loose}:refs/heads/z")),
        ];
        for (label, refspec) in &pushes {
            let out = side.push(&src, label, &["origin", refspec]);
            assert!(out.success(), "{out}");
        }

        let refs = remote_refs(side);
        for (name, rev) in [
            ("y", "HEAD~1"),
            ("other", "HEAD"),
            ("x", "HEAD"),
            ("main", "HEAD"),
            ("z", "side"),
        ] {
            let line = format!("{}\trefs/heads/{name}\n", env.rev(&src, rev));
            assert!(
                refs.contains(&line),
                "refs/heads/{name} should be {rev}: {refs}"
            );
        }
        let check = side.clone("check");
        env.git(&check, &["cat-file", "-e", &format!("{loose}^{{commit}}")]);
    });
}

/// B9: `push --all` and `push --tags`.
#[test]
fn push_all_and_push_tags() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "alltags", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 3);
        branch_at(env, &src, "dev", "HEAD~1");
        branch_at(env, &src, "feat/x", "HEAD~2");
        env.git(&src, &["tag", "light", "HEAD~1"]);
        env.git(&src, &["tag", "-a", "heavy", "-m", "annotated", "HEAD~2"]);
        let out = side.push(&src, "--all", &["--all", "origin"]);
        assert!(out.success(), "{out}");
        assert!(
            !remote_refs(side).contains("refs/tags/"),
            "--all pushes no tags"
        );
        let out = side.push(&src, "--tags", &["--tags", "origin"]);
        assert!(out.success(), "{out}");
        let refs = remote_refs(side);
        assert!(refs.contains(&format!(
            "{}\trefs/tags/heavy\n",
            env.rev(&src, "refs/tags/heavy")
        )));
        assert!(refs.contains(&format!(
            "{}\trefs/tags/light\n",
            env.rev(&src, "refs/tags/light")
        )));
    });
}

/// B9: `--follow-tags` pushes annotated tags reachable from what is pushed, not lightweight ones.
#[test]
fn push_follow_tags_pushes_reachable_annotated_tags_only() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "follow", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 3);
        env.git(
            &src,
            &[
                "tag",
                "-a",
                "v-follow",
                "-m",
                "at the pushed commit",
                "HEAD~1",
            ],
        );
        env.git(
            &src,
            &["tag", "-a", "v-old", "-m", "at an ancestor", "HEAD~2"],
        );
        env.git(
            &src,
            &[
                "tag",
                "-a",
                "v-head",
                "-m",
                "after the pushed commit",
                "HEAD",
            ],
        );
        env.git(&src, &["tag", "lw-stays", "HEAD~1"]);
        env.git(&src, &["checkout", "-q", "-b", "unpushed", "HEAD~2"]);
        env.commit(&src, "elsewhere");
        env.git(
            &src,
            &["tag", "-a", "v-elsewhere", "-m", "on an unpushed branch"],
        );
        env.git(&src, &["checkout", "-q", "main"]);
        let out = side.push(
            &src,
            "--follow-tags",
            &["--follow-tags", "origin", "HEAD~1:refs/heads/main"],
        );
        assert!(out.success(), "{out}");
        let refs = remote_refs(side);
        assert!(
            refs.contains("\trefs/tags/v-follow\n") && refs.contains("\trefs/tags/v-old\n"),
            "{refs}"
        );
        for absent in ["lw-stays", "v-head", "v-elsewhere"] {
            assert!(
                !refs.contains(absent),
                "{absent} must not be pushed: {refs}"
            );
        }
    });
}

/// B9: wildcard refspecs, including one that renames a hierarchy.
#[test]
fn push_wildcard_refspecs() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "wild", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 3);
        branch_at(env, &src, "feat/a", "HEAD~1");
        branch_at(env, &src, "feat/b", "HEAD~2");
        let out = side.push(&src, "all heads", &["origin", "refs/heads/*:refs/heads/*"]);
        assert!(out.success(), "{out}");
        let out = side.push(
            &src,
            "renamed",
            &["origin", "refs/heads/feat/*:refs/heads/imported/*"],
        );
        assert!(out.success(), "{out}");
        let refs = remote_refs(side);
        for name in ["main", "feat/a", "feat/b", "imported/a", "imported/b"] {
            assert!(
                refs.contains(&format!("\trefs/heads/{name}\n")),
                "{name} missing: {refs}"
            );
        }
    });
}

/// B10: tag objects arrive verbatim: same id and same `cat-file -p`, and a signed tag still
/// verifies. The signed part needs gpg; without it the test says so and checks the rest.
#[test]
fn tag_objects_round_trip_verbatim() {
    let env = TestEnv::new();
    let url = env.create("tags");
    let src = env.init("src");
    env.commit(&src, "c1");
    env.commit(&src, "c2");
    env.git(&src, &["tag", "light", "HEAD~1"]);
    env.git(
        &src,
        &[
            "tag",
            "-a",
            "annotated",
            "-m",
            "an annotated tag\n\nwith a body",
        ],
    );
    // A tag of a tag: the pushed object is the outer tag, never peeled.
    env.git(
        &src,
        &["tag", "-a", "nested", "-m", "tag of a tag", "annotated"],
    );
    let mut tags = vec!["light", "annotated", "nested"];

    let gpg = Gpg::setup(&env);
    if let Some(gpg) = &gpg {
        gpg.cmd(&env, &src, &["tag", "-s", "signed", "-m", "a signed tag"])
            .ok();
        tags.push("signed");
    } else {
        eprintln!("note: gpg not found; the signed-tag part of tag_objects_round_trip_verbatim is skipped");
    }

    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "origin", "main", "--tags"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    for tag in &tags {
        let r = format!("refs/tags/{tag}");
        assert_eq!(
            env.rev(&dst, &r),
            env.rev(&src, &r),
            "{tag}: same object id"
        );
        assert_eq!(
            env.git(&dst, &["cat-file", "-p", &r]).stdout,
            env.git(&src, &["cat-file", "-p", &r]).stdout,
            "{tag}: same object content"
        );
    }
    if let Some(gpg) = &gpg {
        gpg.cmd(&env, &dst, &["verify-tag", "signed"]).ok();
    }
}

/// B11: a moved tag is `(already exists)` without force and a forced update with it.
#[test]
fn moved_tag_needs_force() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "movetag", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 2);
        env.git(&src, &["tag", "v1", "HEAD~1"]);
        env.git(&src, &["tag", "-a", "v2", "-m", "annotated", "HEAD~1"]);
        let out = side.push(&src, "tags", &["origin", "main", "v1", "v2"]);
        assert!(out.success(), "{out}");

        env.git(&src, &["tag", "-f", "v1", "HEAD"]);
        env.git(&src, &["tag", "-f", "-a", "v2", "-m", "moved", "HEAD"]);
        let out = side.push(&src, "moved without force", &["origin", "v1", "v2"]);
        assert_eq!(out.code, Some(1), "{out}");
        let line = porcelain_line(&out, "refs/tags/v1").unwrap_or_default();
        assert!(line.contains("(already exists)"), "{out}");

        let out = side.push(&src, "moved with force", &["--force", "origin", "v1", "v2"]);
        assert!(out.success(), "{out}");
        let line = porcelain_line(&out, "refs/tags/v1").unwrap_or_default();
        assert!(
            line.starts_with('+') && line.contains("(forced update)"),
            "{out}"
        );
    });
}

/// B12: deletions by `:ref`, `--delete`, of a tag, and of a ref that does not exist.
#[test]
fn deletes_match_git() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "deletes", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 2);
        branch_at(env, &src, "feature", "HEAD~1");
        branch_at(env, &src, "feature2", "HEAD~1");
        env.git(&src, &["tag", "-a", "t", "-m", "tag", "HEAD~1"]);
        let out = side.push(
            &src,
            "setup",
            &["origin", "main", "feature", "feature2", "t"],
        );
        assert!(out.success(), "{out}");

        let out = side.push(&src, ":feature", &["origin", ":feature"]);
        assert!(
            out.success()
                && porcelain_line(&out, "refs/heads/feature").is_some_and(|l| l.starts_with('-')),
            "{out}"
        );
        let out = side.push(&src, "--delete", &["origin", "--delete", "feature2"]);
        assert!(out.success(), "{out}");
        let out = side.push(&src, "--delete tag", &["origin", "--delete", "refs/tags/t"]);
        assert!(out.success(), "{out}");
        side.push(&src, "non-existent", &["origin", ":refs/heads/nope"]);
        let refs = remote_refs(side);
        assert!(
            !refs.contains("feature") && !refs.contains("refs/tags/t"),
            "{refs}"
        );
        assert!(refs.contains("\trefs/heads/main\n"), "{refs}");
    });
}

/// B12, policy: the server refuses to delete the branch HEAD points at (a file:// bare remote
/// allows it with a warning, so there is no oracle here).
#[test]
fn deleting_the_default_branch_is_refused() {
    let env = TestEnv::new();
    let url = env.create("nodelete");
    let src = env.init("src");
    let head = env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "origin", "main", "main:refs/heads/other"]);

    let out = env.cmd(&src, &["push", "origin", ":main"]).fails();
    assert!(
        out.stderr.contains("main"),
        "the refusal names the branch\n{out}"
    );
    let refs = env.ls_remote(&src, &url);
    assert!(
        refs.contains(&format!("{head}\trefs/heads/main\n")),
        "main is still there: {refs}\n{out}"
    );
    // Deleting another branch is still fine.
    env.git(&src, &["push", "origin", ":other"]);
}

/// B13: names that are awkward for paths, URLs and storage keys.
#[test]
fn unusual_ref_names_match_git() {
    let long = format!("long-{}", "x".repeat(195));
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "names", |side| {
        let env = side.env;
        let src = repo_with_commits(side, 2);
        let names = [
            "a/b/c",
            "feature/ü",
            long.as_str(),
            "boba",
            "boba-fett",
            "x+y",
            "c#sharp",
            "100%41",
            "dots.in.name",
        ];
        for name in names {
            branch_at(env, &src, name, "HEAD~1");
        }
        let mut args = vec!["origin", "main"];
        args.extend_from_slice(&names);
        let out = side.push(&src, "create", &args);
        assert!(out.success(), "{out}");
        let out = side.push(&src, "delete prefix", &["origin", "--delete", "boba"]);
        assert!(out.success(), "{out}");
        let refs = remote_refs(side);
        assert!(
            refs.contains("\trefs/heads/boba-fett\n") && !refs.contains("\trefs/heads/boba\n"),
            "{refs}"
        );
        assert!(
            refs.contains("\trefs/heads/100%41\n"),
            "no URL decoding of names: {refs}"
        );

        // The names also survive the way back.
        let dst = side.clone("dst");
        let cloned = env.refs(&dst, &["refs/remotes/origin/"]);
        for name in names.iter().filter(|n| **n != "boba") {
            assert!(
                cloned.contains(&format!(" refs/remotes/origin/{name}\n")),
                "{name} not cloned:\n{cloned}"
            );
        }
    });
}

/// B14: `push --mirror` from a mirror clone, again after deletions and forced updates, and a
/// third time with nothing to do.
#[test]
fn mirror_push_and_repeat() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "mirror", |side| {
        let env = side.env;
        let upstream = env.init_at(&side.dir("upstream"));
        for i in 1..=4 {
            env.commit(&upstream, &format!("u{i}"));
        }
        branch_at(env, &upstream, "dev", "HEAD~1");
        branch_at(env, &upstream, "old", "HEAD~2");
        branch_at(env, &upstream, "rewrite", "HEAD~1");
        env.git(&upstream, &["tag", "t1", "HEAD~3"]);
        env.git(&upstream, &["tag", "-a", "t2", "-m", "two", "HEAD~2"]);

        let mirror = side.dir("mirror.git");
        env.git(
            &side.dir(""),
            &[
                "clone",
                "-q",
                "--mirror",
                &upstream.to_string_lossy(),
                &mirror.to_string_lossy(),
            ],
        );
        let out = side.push(&mirror, "first mirror", &["--mirror", &side.url]);
        assert!(out.success(), "{out}");

        env.git(&upstream, &["branch", "-D", "old"]);
        env.git(&upstream, &["tag", "-d", "t1"]);
        env.git(&upstream, &["checkout", "-q", "rewrite"]);
        env.git(&upstream, &["reset", "-q", "--hard", "HEAD~2"]);
        env.commit(&upstream, "rewritten");
        env.git(&upstream, &["checkout", "-q", "main"]);
        env.commit(&upstream, "u5");
        env.git(&upstream, &["tag", "t3"]);
        env.git(&mirror, &["fetch", "-q", "--prune", "origin"]);
        let out = side.push(&mirror, "second mirror", &["--mirror", &side.url]);
        assert!(out.success(), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/rewrite")
                .is_some_and(|l| l.contains("(forced update)")),
            "{out}"
        );

        let out = side.push(&mirror, "third mirror", &["--mirror", &side.url]);
        assert!(out.success(), "a repeated mirror push is up to date\n{out}");
        // A remote helper lists refs only, so compare without git's peeled `^{}` lines.
        let unpeeled = |refs: &str| -> String {
            refs.lines()
                .filter(|l| !l.ends_with("^{}"))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let local = env.git(&mirror, &["ls-remote", "."]).stdout;
        let mirrored = crate::harness::sorted_lines(&unpeeled(&local));
        assert_eq!(
            unpeeled(&remote_refs(side)),
            mirrored,
            "the remote mirrors the mirror clone"
        );
    });
}

/// docs/design.md §3: one file per ref under `.git/refs/`, named as the ref (unicode included), no
/// `packed-refs`: Hypha's own smart-HTTP server reads exactly this layout.
#[test]
fn ref_files_are_stored_under_their_names() {
    let env = TestEnv::new();
    let url = env.create("stored");
    let src = env.init("src");
    let head = env.commit(&src, "c1");
    env.git(&src, &["branch", "feature/ü"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    let out = env.git(&src, &["push", "origin", "main", "feature/ü"]);
    assert_line(
        &out,
        &out.stderr,
        &["* [new branch]", "feature/ü -> feature/ü"],
    );
    let stored = env.stored_repo("stored").join("refs/heads/feature/ü");
    assert_eq!(
        std::fs::read_to_string(&stored).unwrap_or_else(|e| panic!("{}: {e}", stored.display())),
        format!("{head}\n"),
        "docs/design.md §3: one file per ref, named as the ref"
    );
    assert!(
        !env.stored_repo("stored").join("packed-refs").exists(),
        "docs/design.md §3: no packed-refs"
    );
}

/// A private GnuPG home with one signing key, for the signed-tag check.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn setup(env: &TestEnv) -> Option<Gpg> {
        let available = std::process::Command::new("gpg")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            return None;
        }
        // Short path: gpg-agent's socket path must fit in sun_path.
        let home = env.mkdir("gnupg");
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod gnupg");
        let gpg = Gpg { home };
        // Started here with its output closed: an agent that gpg autostarts inherits the
        // pipes of the command that started it and would keep them open after it exits.
        let _ = std::process::Command::new("gpgconf")
            .args(["--launch", "gpg-agent"])
            .env("GNUPGHOME", &gpg.home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        gpg.cmd(
            env,
            &env.path(""),
            &[
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "Tag Signer <signer@example.com>",
                "ed25519",
                "sign",
                "never",
            ],
        )
        .program("gpg")
        .ok();
        env.git(
            &env.path(""),
            &[
                "config",
                "--global",
                "user.signingkey",
                "signer@example.com",
            ],
        );
        Some(gpg)
    }

    fn cmd<'e>(&self, env: &'e TestEnv, dir: &Path, args: &[&str]) -> crate::harness::Cmd<'e> {
        env.cmd(dir, args).env("GNUPGHOME", &self.home)
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // The agent gpg started outlives the test otherwise.
        let _ = std::process::Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.home)
            .status();
    }
}
