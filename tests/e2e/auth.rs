//! Failures a user meets first: a repository that does not exist, a wrong or read-only token,
//! public versus private repositories (docs/scenarios.md H 42 and 44, docs/design.md §4 and §6).
//!
//! The messages must name the repository and say what is wrong in git's lower-case style, the
//! exit status must be non-zero, and nothing may be written on either side. The harness checks
//! every command's output for tokens and presigned URLs; the last test here also checks the
//! server's own log.

use crate::harness::{TestEnv, WS};
use std::path::PathBuf;

/// Asserts the "repository not found" message of docs/design.md §7 for `alias` in [`WS`].
#[track_caller]
fn assert_not_found(out: &crate::harness::Out, alias: &str) {
    assert!(
        out.stderr.contains("not found"),
        "says \"not found\"\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("{WS}/{alias}")),
        "names {WS}/{alias}\n{out}"
    );
    assert!(
        !out.stderr.contains("panicked"),
        "an error message, not a crash\n{out}"
    );
}

/// A repository with one pushed commit; returns the work tree.
fn pushed_repo(env: &TestEnv, alias: &str) -> PathBuf {
    let url = env.create(alias);
    let src = env.init("src");
    env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-u", "origin", "main"]);
    src
}

#[test]
fn ls_remote_of_missing_repository_is_not_found() {
    let env = TestEnv::new();
    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &env.url("missing")])
        .fails();
    assert_not_found(&out, "missing");
}

#[test]
fn clone_of_missing_repository_is_not_found_and_leaves_nothing() {
    let env = TestEnv::new();
    let out = env
        .cmd(&env.path(""), &["clone", &env.url("missing"), "dst"])
        .fails();
    assert_not_found(&out, "missing");
    assert!(
        !env.path("dst").exists(),
        "a failed clone leaves no directory\n{out}"
    );
}

#[test]
fn fetch_from_missing_repository_is_not_found() {
    let env = TestEnv::new();
    let repo = env.init("local");
    env.commit(&repo, "c1");
    env.git(&repo, &["remote", "add", "origin", &env.url("missing")]);
    let out = env.cmd(&repo, &["fetch", "origin"]).fails();
    assert_not_found(&out, "missing");
    assert_eq!(
        env.refs(&repo, &["refs/remotes/"]),
        "",
        "no remote-tracking refs appear"
    );
}

#[test]
fn push_to_missing_repository_is_not_found_and_creates_nothing() {
    let env = TestEnv::new();
    let repo = env.init("local");
    env.commit(&repo, "c1");
    env.git(&repo, &["remote", "add", "origin", &env.url("missing")]);
    let out = env.cmd(&repo, &["push", "origin", "main"]).fails();
    assert_not_found(&out, "missing");
    assert!(
        !env.stored_repo("missing").exists(),
        "push does not create repositories\n{out}"
    );
}

/// A token signed with another secret is an authentication failure, for reads and writes.
#[test]
fn token_with_wrong_signature_is_authentication_failure() {
    let env = TestEnv::new();
    let src = pushed_repo(&env, "private");
    let url = env.url("private");
    let wrong = env.mint_foreign(WS, "rw");
    let packs = env.remote_packs("private");

    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .token(&wrong)
        .fails();
    assert!(out.stderr.contains("authentication failed"), "{out}");
    assert!(
        out.stderr.contains(&format!("{WS}/private")),
        "names the repository\n{out}"
    );

    let out = env
        .cmd(&env.path(""), &["clone", &url, "dst"])
        .token(&wrong)
        .fails();
    assert!(out.stderr.contains("authentication failed"), "{out}");
    assert!(
        !env.path("dst").exists(),
        "a failed clone leaves no directory"
    );

    env.commit(&src, "c2");
    let out = env
        .cmd(&src, &["push", "origin", "main"])
        .token(&wrong)
        .fails();
    assert!(out.stderr.contains("authentication failed"), "{out}");
    assert_eq!(env.remote_packs("private"), packs, "nothing uploaded");

    let out = env
        .cmd(&src, &["ls-remote", &url])
        .token("not-a-jwt")
        .fails();
    assert!(
        out.stderr.contains("authentication failed"),
        "a malformed token too\n{out}"
    );
}

/// A valid token for another workspace gives no access to this one.
#[test]
fn token_for_another_workspace_gives_no_access() {
    let env = TestEnv::new();
    let src = pushed_repo(&env, "mine");
    let url = env.url("mine");
    // The other workspace's token is valid: it reads a repository of its own workspace.
    let theirs = env.create_in("other-ws", "theirs");
    let other = env.mint("other-ws", "rw");
    env.cmd(&env.mkdir("outside"), &["ls-remote", &theirs])
        .token(&other)
        .ok();
    let packs = env.remote_packs("mine");
    let refs = env.ls_remote(&src, &url);

    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .token(&other)
        .fails();
    assert!(
        out.stderr.contains(&format!("{WS}/mine")),
        "names the repository\n{out}"
    );
    assert!(
        !out.stdout.contains("refs/heads/main"),
        "lists nothing\n{out}"
    );

    env.commit(&src, "c2");
    let out = env
        .cmd(&src, &["push", "origin", "main"])
        .token(&other)
        .fails();
    assert!(
        out.stderr.contains(&format!("{WS}/mine")),
        "names the repository\n{out}"
    );
    assert_eq!(env.remote_packs("mine"), packs, "nothing uploaded");
    assert_eq!(env.ls_remote(&src, &url), refs, "refs unchanged");
}

/// A read-only token reads but cannot push, and the refusal writes nothing.
#[test]
fn read_only_token_reads_but_cannot_push() {
    let env = TestEnv::new();
    let src = pushed_repo(&env, "ro");
    let url = env.url("ro");
    let read_only = env.mint(WS, "r");
    let packs = env.remote_packs("ro");
    let refs = env.ls_remote(&src, &url);

    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .token(&read_only)
        .ok();
    assert!(out.stdout.contains("refs/heads/main"), "{out}");
    env.cmd(&env.path(""), &["clone", &url, "dst"])
        .token(&read_only)
        .ok();
    env.fsck(&env.path("dst"));

    env.commit(&src, "c2");
    env.git(&src, &["branch", "new-branch"]);
    let out = env
        .cmd(&src, &["push", "origin", "main", "new-branch"])
        .token(&read_only)
        .fails();
    assert!(out.stderr.contains("permission denied"), "{out}");
    assert_eq!(env.remote_packs("ro"), packs, "nothing uploaded\n{out}");
    assert_eq!(env.ls_remote(&src, &url), refs, "refs unchanged\n{out}");

    let out = env
        .cmd(&src, &["push", "origin", ":main"])
        .token(&read_only)
        .fails();
    assert!(
        out.stderr.contains("permission denied"),
        "deletes need write too\n{out}"
    );
    assert_eq!(env.ls_remote(&src, &url), refs, "refs unchanged\n{out}");
}

/// `create --public`: anyone may read, only token holders may write.
#[test]
fn public_repository_is_readable_without_token() {
    let env = TestEnv::new();
    let url = env.create_public("open");
    let src = env.init("src");
    let head = env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "origin", "main"]);

    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .no_token()
        .ok();
    assert!(
        out.stdout.contains(&format!("{head}\trefs/heads/main")),
        "{out}"
    );
    env.cmd(&env.path(""), &["clone", &url, "anon"])
        .no_token()
        .ok();
    env.fsck(&env.path("anon"));
    assert_eq!(env.rev(&env.path("anon"), "HEAD"), head);

    let packs = env.remote_packs("open");
    env.commit(&src, "c2");
    let out = env
        .cmd(&src, &["push", "origin", "main"])
        .no_token()
        .fails();
    assert_eq!(
        env.remote_packs("open"),
        packs,
        "anonymous push writes nothing\n{out}"
    );
    assert!(
        env.ls_remote(&src, &url)
            .contains(&format!("{head}\trefs/heads/main")),
        "{out}"
    );
}

/// A private repository is not readable without a token (and the helper does not hang waiting
/// for a credential prompt: `GIT_TERMINAL_PROMPT=0` is set by the harness).
#[test]
fn private_repository_is_not_readable_without_token() {
    let env = TestEnv::new();
    pushed_repo(&env, "closed");
    let url = env.url("closed");
    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .no_token()
        .fails();
    assert!(!out.stdout.contains("refs/heads"), "lists nothing\n{out}");
    assert!(
        out.stderr.contains(&format!("{WS}/closed")),
        "names the repository\n{out}"
    );
    let out = env
        .cmd(&env.path(""), &["clone", &url, "anon"])
        .no_token()
        .fails();
    assert!(
        !env.path("anon").exists(),
        "a failed clone leaves no directory\n{out}"
    );
}

/// docs/design.md §6 for the server side: its log lines carry neither tokens nor presigned URLs.
#[test]
fn server_log_contains_no_secrets() {
    let env = TestEnv::new();
    let src = pushed_repo(&env, "logged");
    let url = env.url("logged");
    env.clone(&url, &env.path("dst"));
    env.commit(&src, "c2");
    env.git(&src, &["push"]);
    env.git(&env.path("dst"), &["pull", "-q"]);
    let wrong = env.mint_foreign(WS, "r");
    env.cmd(&src, &["ls-remote", &url]).token(&wrong).fails();

    let log = env.server_log();
    for (name, token) in [
        ("rw token", env.token().to_string()),
        ("foreign token", wrong),
    ] {
        assert!(!log.contains(&token), "the server log contains the {name}");
    }
    let lower = log.to_lowercase();
    for marker in ["sig=", "x-amz-signature"] {
        assert!(
            !lower.contains(marker),
            "the server log contains a presigned URL ({marker}):\n{log}"
        );
    }
}

/// The harness's own secret scan works: a command that echoes its token fails the test.
#[test]
fn harness_catches_a_leaked_token() {
    let env = TestEnv::new();
    let dir = env.mkdir("leak");
    let leaked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.cmd(&dir, &["-c", "echo \"token is $HYPHA_TOKEN\" >&2"])
            .program("sh")
            .run();
    }));
    assert!(leaked.is_err(), "printing HYPHA_TOKEN must fail the test");
    let leaked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.cmd(&dir, &["-c", "echo 'GET http://x/y?sig=abc' >&2"])
            .program("sh")
            .run();
    }));
    assert!(
        leaked.is_err(),
        "printing a presigned URL must fail the test"
    );
}
