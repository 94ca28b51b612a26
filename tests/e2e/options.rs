//! docs/scenarios.md section E, items 25-29: push and clone options git passes to the helper
//! (`atomic`, `dry-run`, `push-option`, `pushcert`, `progress`, `verbosity`) and what the user
//! sees with each.
//!
//! Several of these are fatal in git when the helper answers `unsupported` (docs/protocol.md §4),
//! so a passing run is itself the proof that the option is accepted.

use crate::harness::oracle::{assert_same_as_file_remote, porcelain_line, remote_refs, Side};
use crate::harness::TestEnv;
use std::path::PathBuf;

/// `a` has pushed `main` and `topic`; `b` (a clone) then pushed a commit on `topic`. Returns
/// `a`, which has fetched, so its `topic` is a known non-fast-forward.
fn two_branches(side: &Side) -> PathBuf {
    let env = side.env;
    let a = side.init("a");
    env.commit(&a, "base");
    env.git(&a, &["branch", "topic"]);
    let out = side.push(&a, "setup", &["-u", "origin", "main", "topic"]);
    assert!(out.success(), "{out}");
    let b = side.clone("b");
    env.git(&b, &["checkout", "-q", "topic"]);
    env.commit(&b, "topic-from-b");
    let out = side.push(&b, "b topic", &["origin", "topic"]);
    assert!(out.success(), "{out}");
    env.git(&a, &["fetch", "-q", "origin"]);
    a
}

/// E25: one non-fast-forward ref fails the whole atomic push.
#[test]
fn atomic_push_with_one_rejected_ref_updates_nothing() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "atomicfail", |side| {
        let env = side.env;
        let a = two_branches(side);
        env.commit(&a, "main-ff");
        env.git(&a, &["checkout", "-q", "topic"]);
        env.commit(&a, "topic-diverged");
        env.git(&a, &["checkout", "-q", "main"]);
        let before = remote_refs(side);
        let snapshot = side.remote_snapshot();

        let out = side.push(&a, "atomic", &["--atomic", "origin", "main", "topic"]);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/topic")
                .is_some_and(|l| l.contains("(non-fast-forward)")),
            "{out}"
        );
        assert!(
            porcelain_line(&out, "refs/heads/main")
                .is_some_and(|l| l.contains("(atomic push failed)")),
            "{out}"
        );
        assert_eq!(remote_refs(side), before, "nothing updated");
        assert_eq!(side.remote_snapshot(), snapshot, "nothing written");
    });
}

/// E25: all refs fast-forward -> the atomic push updates all of them.
#[test]
fn atomic_push_with_all_refs_ok_updates_all() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "atomicok", |side| {
        let env = side.env;
        let a = two_branches(side);
        env.commit(&a, "main-ff");
        env.git(&a, &["checkout", "-q", "topic"]);
        env.git(&a, &["merge", "-q", "--ff-only", "origin/topic"]);
        env.commit(&a, "topic-ff");
        env.git(&a, &["checkout", "-q", "main"]);

        let out = side.push(&a, "atomic", &["--atomic", "origin", "main", "topic"]);
        assert!(out.success(), "{out}");
        let refs = remote_refs(side);
        for branch in ["main", "topic"] {
            assert!(
                refs.contains(&format!("{}\trefs/heads/{branch}\n", env.rev(&a, branch))),
                "{branch}: {refs}"
            );
        }
    });
}

/// E26: `--dry-run` reports what would happen and writes nothing.
#[test]
fn dry_run_push_reports_and_writes_nothing() {
    let env = TestEnv::new();
    assert_same_as_file_remote(&env, "dryrun", |side| {
        let env = side.env;
        let a = two_branches(side);
        env.commit(&a, "main-ff");
        env.git(&a, &["branch", "brand-new"]);
        env.git(&a, &["tag", "-a", "v1", "-m", "tag"]);
        let before = remote_refs(side);
        let snapshot = side.remote_snapshot();

        let out = side.push(
            &a,
            "dry-run",
            &["--dry-run", "origin", "main", "brand-new", "v1", ":topic"],
        );
        assert!(out.success(), "{out}");
        for dst in [
            "refs/heads/main",
            "refs/heads/brand-new",
            "refs/tags/v1",
            "refs/heads/topic",
        ] {
            assert!(
                porcelain_line(&out, dst).is_some(),
                "dry-run reports {dst}\n{out}"
            );
        }
        assert_eq!(remote_refs(side), before, "refs unchanged");
        assert_eq!(side.remote_snapshot(), snapshot, "nothing uploaded");

        let out = side.push(
            &a,
            "dry-run non-ff",
            &[
                "--dry-run",
                "origin",
                "+main:refs/heads/topic",
                "brand-new:main",
            ],
        );
        assert_eq!(side.remote_snapshot(), snapshot, "nothing uploaded\n{out}");
    });
}

/// E27: `-o` push options are accepted (git dies if the helper refuses them) and reach the
/// server verbatim: git C-quotes a value with non-ASCII bytes on the protocol (docs/protocol.md §4),
/// and the helper must undo that.
#[test]
fn push_options_are_accepted_and_reach_the_server() {
    let env = TestEnv::new();
    let url = env.create("pushopts");
    let src = env.init("src");
    let head = env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(
        &src,
        &[
            "push", "-o", "ci.skip", "-o", "msg=a b", "-o", "note=ü", "origin", "main",
        ],
    );
    let refs = env.ls_remote(&src, &url);
    assert!(
        refs.contains(&format!("{head}\trefs/heads/main\n")),
        "{refs}"
    );

    // The server logs one line per request; the `update` line carries the push options.
    let log = env.server_log();
    let update = log
        .lines()
        .find(|l| l.contains("/remote/v1/update"))
        .unwrap_or_default();
    if update.contains("ci.skip") {
        for option in ["msg=a b", "note=ü"] {
            assert!(
                update.contains(option),
                "push option {option:?} not verbatim in {update:?}"
            );
        }
    } else {
        eprintln!(
            "note: the server log does not show push options; only acceptance was checked\n{log}"
        );
    }
}

/// E28: `--signed` cannot be honoured -> a clean fatal refusal before anything is uploaded;
/// `--signed=if-asked` pushes unsigned.
#[test]
fn signed_push_is_refused_cleanly_and_if_asked_succeeds() {
    let env = TestEnv::new();
    let url = env.create("signed");
    let src = env.init("src");
    env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "origin", "main"]);
    let head = env.commit(&src, "c2");
    let packs = env.remote_packs("signed");
    let refs = env.ls_remote(&src, &url);

    let out = env
        .cmd(&src, &["push", "--signed", "origin", "main"])
        .code(128);
    assert!(
        out.stderr.contains("signed"),
        "the refusal says what is unsupported\n{out}"
    );
    assert!(
        !out.stderr.contains("panicked"),
        "a refusal, not a crash\n{out}"
    );
    assert_eq!(env.remote_packs("signed"), packs, "nothing uploaded\n{out}");
    assert_eq!(env.ls_remote(&src, &url), refs, "refs unchanged\n{out}");

    env.git(&src, &["push", "--signed=if-asked", "origin", "main"]);
    assert!(env
        .ls_remote(&src, &url)
        .contains(&format!("{head}\trefs/heads/main\n")));
}

/// A pushed repository for the clone-option tests.
fn pushed(env: &TestEnv, alias: &str) -> String {
    let url = env.create(alias);
    let src = env.init("src");
    env.commit(&src, "c1");
    env.commit(&src, "c2");
    env.git(&src, &["tag", "-a", "v1", "-m", "tag"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "--follow-tags", "origin", "main"]);
    url
}

/// E29: `clone -q` prints nothing at all on success.
#[test]
fn quiet_clone_prints_nothing() {
    let env = TestEnv::new();
    let url = pushed(&env, "quiet");
    let out = env.git(&env.path(""), &["clone", "-q", &url, "dst"]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("", ""),
        "clone -q is silent\n{out}"
    );
    env.fsck(&env.path("dst"));
}

/// E29: progress forced on while stderr is a pipe (as with `2>file`) works; without
/// `--progress` a non-terminal stderr gets no progress meter.
#[test]
fn clone_progress_to_a_pipe() {
    let env = TestEnv::new();
    let url = pushed(&env, "progress");
    let out = env.git(
        &env.path(""),
        &["clone", "--progress", &url, "with-progress"],
    );
    assert!(
        out.stderr.contains("Cloning into 'with-progress'..."),
        "{out}"
    );
    env.fsck(&env.path("with-progress"));

    let out = env.git(&env.path(""), &["clone", &url, "without-progress"]);
    assert!(
        !out.stderr.contains('\r'),
        "no progress meter when stderr is not a terminal\n{out}"
    );
    env.fsck(&env.path("without-progress"));
}

/// E29: verbose clone, fetch and push work and, like every command here, print no token or
/// presigned URL (checked by the harness on every command).
#[test]
fn verbose_commands_work_and_show_no_secrets() {
    let env = TestEnv::new();
    let url = pushed(&env, "verbose");
    env.git(&env.path(""), &["clone", "-v", &url, "dst"]);
    let dst = env.path("dst");
    env.fsck(&dst);
    env.git(&dst, &["fetch", "-vv"]);
    env.commit(&dst, "c3");
    env.git(&dst, &["push", "-vv"]);
    env.git(&dst, &["remote", "-v", "show", "origin"]);
    env.git(&env.path(""), &["clone", "-vv", "--progress", &url, "dst2"]);
    env.fsck(&env.path("dst2"));
}

/// E29: git's wire protocol version is irrelevant to a `fetch`/`push` helper, but setting it
/// must not break anything.
#[test]
fn clone_with_protocol_version_2() {
    let env = TestEnv::new();
    let url = pushed(&env, "proto");
    env.git(
        &env.path(""),
        &["-c", "protocol.version=2", "clone", &url, "dst"],
    );
    let dst = env.path("dst");
    env.fsck(&dst);
    assert_eq!(
        env.refs(&dst, &["refs/tags/"]).lines().count(),
        1,
        "tag cloned"
    );
    env.git(&dst, &["-c", "protocol.version=2", "fetch", "origin"]);
}
