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

/// `--depth` is not supported yet: git would silently clone everything, so the helper warns.
#[test]
fn shallow_clone_warns_and_fetches_full_history() {
    let env = TestEnv::new();
    let url = env.create("shallow");
    let work = env.init("work");
    for i in 0..3 {
        env.commit(&work, &format!("c{i}"));
    }
    env.git(&work, &["push", "-q", &url, "main"]);
    let dir = env.mkdir("clones");
    let out = env.git(&dir, &["clone", "--depth", "1", &url, "full"]);
    assert!(
        out.stderr
            .contains("warning: hypha remotes do not support shallow fetches yet"),
        "{out}"
    );
    let count = env
        .git(&dir.join("full"), &["rev-list", "--count", "HEAD"])
        .stdout;
    assert_eq!(count.trim(), "3", "full history despite --depth");
}
