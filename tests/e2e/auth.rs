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

/// `git hypha login <this server>`, as the hints spell it.
fn login_command(env: &TestEnv) -> String {
    format!("git hypha login {}", env.server.url().trim_end_matches('/'))
}

/// Issue 16, item 7: a few lines, git style, one `fatal:`/`error:` line naming the repository.
#[track_caller]
fn assert_short_auth_failure(out: &crate::harness::Out, repo: &str, cause: &str, hint: &str) {
    assert_ne!(out.code, Some(0), "fails\n{out}");
    let first = out
        .stderr
        .lines()
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .unwrap_or_default();
    // In Hypha mode the workspace is this test's own, whose name ends in `-{WS}`.
    assert!(
        first.contains("authentication failed for '") && first.contains(&format!("{repo}'")),
        "names the repository\n{out}"
    );
    assert!(
        out.stderr.contains(&format!("caused by: {cause}")),
        "says why: {cause}\n{out}"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("hint: ") && l.contains(hint)),
        "says what fixes it: {hint}\n{out}"
    );
    assert!(out.stderr.lines().count() <= 5, "a few lines\n{out}");
}

/// An expired token says so, when it expired, and what gets another one; for git through the
/// helper and for the `git hypha` commands that take a token.
#[test]
fn expired_token_says_when_it_expired_and_how_to_get_another() {
    let env = TestEnv::new();
    let src = pushed_repo(&env, "stale");
    let url = env.url("stale");
    let expired = env.mint_expired(WS, "rw");
    let exp = hypha_git::auth::unverified_expiry(&expired).expect("the harness mints JWTs");
    let cause = format!(
        "the token from HYPHA_TOKEN expired at {}",
        hypha_git::auth::format_utc(exp)
    );
    let hint = format!(
        "set HYPHA_TOKEN to a valid token, or unset it and run `{}`",
        login_command(&env)
    );
    let packs = env.remote_packs("stale");
    env.commit(&src, "c2");
    let outside = env.mkdir("outside");
    for (dir, args) in [
        (&outside, vec!["ls-remote", url.as_str()]),
        (&outside, vec!["clone", url.as_str(), "dst"]),
        (&src, vec!["push", "origin", "main"]),
    ] {
        let out = env.cmd(dir, &args).token(&expired).fails();
        assert_short_auth_failure(&out, &format!("{WS}/stale"), &cause, &hint);
    }
    let new_url = env.url("new");
    for (args, repo) in [
        (vec!["gc", url.as_str()], "stale"),
        (vec!["create", new_url.as_str()], "new"),
    ] {
        let out = env.git_hypha(&args).token(&expired).fails();
        assert_short_auth_failure(&out, &format!("{WS}/{repo}"), &cause, &hint);
    }
    assert!(!outside.join("dst").exists(), "no clone directory");
    assert_eq!(env.remote_packs("stale"), packs, "nothing uploaded");
}

/// No token anywhere, on a private repository: the message names the three places a token is
/// looked for and the command that puts one there.
#[test]
fn missing_token_names_where_one_is_looked_for() {
    let env = TestEnv::new();
    pushed_repo(&env, "closed");
    let url = env.url("closed");
    let cause = "no token found (looked in HYPHA_TOKEN, the git credential helper and `git hypha \
                 login`)";
    let hint = format!("run `{}`, or set HYPHA_TOKEN", login_command(&env));
    let outside = env.mkdir("outside");
    for args in [
        vec!["ls-remote", url.as_str()],
        vec!["clone", url.as_str(), "dst"],
    ] {
        let out = env.cmd(&outside, &args).no_token().fails();
        assert_short_auth_failure(&out, &format!("{WS}/closed"), cause, &hint);
    }
    let new_url = env.url("new");
    for (args, repo) in [
        (vec!["gc", url.as_str()], "closed"),
        (vec!["create", new_url.as_str()], "new"),
    ] {
        let out = env.git_hypha(&args).no_token().fails();
        assert_short_auth_failure(&out, &format!("{WS}/{repo}"), cause, &hint);
    }
}

/// A token the server refuses for another reason than its age: "rejected by the server", with
/// the server's own reason (ours: which check failed; it never carries the token).
#[test]
fn token_the_server_rejects_says_rejected_and_why() {
    let env = TestEnv::new();
    pushed_repo(&env, "guarded");
    let url = env.url("guarded");
    let hint = "set HYPHA_TOKEN to a valid token";
    let outside = env.mkdir("outside");
    let foreign = env.mint_foreign(WS, "rw");
    let out = env
        .cmd(&outside, &["ls-remote", &url])
        .token(&foreign)
        .fails();
    let cause = "the server rejected the token from HYPHA_TOKEN";
    assert_short_auth_failure(&out, &format!("{WS}/guarded"), cause, hint);
    if crate::harness::hypha::target().is_some() {
        // Hypha says only "invalid or expired token"; the rest is ours.
        return;
    }
    assert!(
        out.stderr
            .contains(&format!("{cause}: token signature does not verify")),
        "{out}"
    );
    let elsewhere = hypha_git::auth::Validation {
        audience: "https://elsewhere.example/".into(),
        ..Default::default()
    };
    let now = hypha_git::auth::unix_now();
    let wrong_audience = hypha_git::auth::mint_at(
        env.server.secret().as_bytes(),
        "t",
        &[(WS.to_owned(), hypha_git::auth::Permission::ReadWrite)],
        now,
        now + 600,
        &elsewhere,
    );
    let out = env
        .cmd(&outside, &["ls-remote", &url])
        .token(&wrong_audience)
        .fails();
    assert!(!out.stderr.contains(&wrong_audience), "never printed");
    assert_short_auth_failure(
        &out,
        &format!("{WS}/guarded"),
        &format!("{cause}: token is meant for another audience"),
        hint,
    );
}
