//! Where the helper gets a token when `HYPHA_TOKEN` is unset (docs/design.md §6): `git credential fill`
//! for the server's host, user `git`; and the warning for options git would drop silently.

use crate::harness::TestEnv;

/// No `HYPHA_TOKEN`: the private repository's 401 makes the helper ask the configured
/// credential helper, and the clone works.
#[test]
fn token_from_the_credential_helper() {
    let env = TestEnv::new();
    let url = env.create("cred");
    let work = env.init("work");
    env.commit(&work, "one");
    env.git(&work, &["push", "-q", &url, "main"]);

    let dir = env.mkdir("clones");
    // Without any credential helper, the clone is refused.
    let out = env
        .cmd(&dir, &["clone", &url, "refused"])
        .no_token()
        .fails();
    assert!(out.stderr.contains("authentication failed"), "{out}");

    let helper = format!(
        "!f() {{ test \"$1\" = get && echo username=git && echo password={}; }}; f",
        env.token()
    );
    env.cmd(&dir, &["config", "--global", "credential.helper", &helper])
        .no_token()
        .ok();
    env.cmd(&dir, &["clone", "-q", &url, "ok"]).no_token().ok();
    assert_eq!(env.rev(&dir.join("ok"), "HEAD"), env.rev(&work, "HEAD"));
}

/// Configures a credential helper that answers `token` for every host.
fn credential_helper(env: &TestEnv, dir: &std::path::Path, token: &str) {
    let helper =
        format!("!f() {{ test \"$1\" = get && echo username=git && echo password={token}; }}; f");
    env.cmd(dir, &["config", "--global", "credential.helper", &helper])
        .no_token()
        .ok();
}

/// Issue 16, item 8 with a token from the credential helper: a push asks for it before
/// listing (a public repository lists without one), so a write token's no-op push is still
/// "Everything up-to-date", and a read-only one is refused, naming where it came from.
#[test]
fn push_asks_the_credential_helper_and_refuses_its_read_only_token() {
    let env = TestEnv::new();
    let url = env.create_public("open");
    let work = env.init("work");
    env.commit(&work, "one");
    env.git(&work, &["remote", "add", "origin", &url]);
    env.git(&work, &["push", "-q", "-u", "origin", "main"]);

    credential_helper(&env, &work, env.token());
    let tip = env.commit(&work, "two");
    env.cmd(&work, &["push", "-q", "origin", "main"])
        .no_token()
        .ok();
    assert_eq!(
        env.ls_remote(&work, &url).split('\t').next(),
        Some(tip.as_str())
    );
    let out = env.cmd(&work, &["push", "origin", "main"]).no_token().ok();
    assert!(out.stderr.contains("Everything up-to-date"), "{out}");

    let reader = env.mint(crate::harness::WS, "r");
    credential_helper(&env, &work, &reader);
    let out = env
        .cmd(&work, &["push", "origin", "main"])
        .no_token()
        .fails();
    crate::faults::assert_failed_cleanly(&out, &["/open'", "permission denied"]);
    assert!(
        out.stderr
            .contains("the token from the git credential helper can read but not push"),
        "{out}"
    );
}

/// A token kept by `git hypha login` that has expired: the hint is to log in again.
#[test]
fn expired_login_token_says_log_in_again() {
    let env = TestEnv::new();
    let url = env.create("private");
    let expired = env.mint_expired(crate::harness::WS, "rw");
    let server = format!("{}/", env.server.url().trim_end_matches('/'));
    let logins = env.home().join(".config").join("git-hypha");
    std::fs::create_dir_all(&logins).expect("config directory");
    let stored = serde_json::json!({ server.as_str(): expired });
    std::fs::write(logins.join("logins.json"), stored.to_string()).expect("logins.json");

    let out = env
        .cmd(&env.mkdir("outside"), &["ls-remote", &url])
        .no_token()
        .fails();
    let exp = hypha_git::auth::unverified_expiry(&expired).expect("a JWT");
    assert!(
        out.stderr.contains(&format!(
            "caused by: the token from `git hypha login` expired at {}",
            hypha_git::auth::format_utc(exp)
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "hint: run `git hypha login {}` for a new token",
            server.trim_end_matches('/')
        )),
        "{out}"
    );
}
