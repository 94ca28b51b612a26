//! Older gits (issue 27): the suite itself runs once more with Debian's git 2.39 (test.sh);
//! here, what a git older than the helper supports sees. Every git since 2.28 asks for the
//! object format before its first `list`; one that does not is asked its version, and one
//! below 2.25 gets one line naming the git found and the git needed instead of a protocol
//! error. The dialogue of each git from 2.25 to 2.47 is replayed in
//! `src/helper/transcripts.rs`.

use crate::harness::{bin_dir, TestEnv};
use crate::hostile::helper_session_with_path;
use std::os::unix::fs::PermissionsExt;

/// A `git` that says it is `version` and passes everything else to the real git.
fn git_claiming(env: &TestEnv, version: &str) -> std::ffi::OsString {
    let dir = env.mkdir(&format!("git-{version}"));
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("utf-8");
    let script = dir.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = version ] || [ \"$1\" = --version ]; then echo 'git version {version}'; exit 0; fi\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut dirs = vec![dir, bin_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

#[test]
fn a_git_below_the_floor_is_named_in_one_line() {
    let env = TestEnv::new();
    let url = env.create("floor");
    let repo = env.init("local");
    // git 2.20 sends no `option object-format`.
    let old = git_claiming(&env, "2.20.1");
    let input = b"capabilities\noption progress false\noption verbosity 1\nlist\n\n";
    let (code, stderr) = helper_session_with_path(&env, &repo, &url, input, &old);
    assert_eq!(code, Some(128), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "fatal: git version 2.20.1 is too old for hypha remotes: git 2.25 or newer is needed"
    );
    // A line the helper cannot read, from that git: the same line, not a protocol error.
    let (code, stderr) =
        helper_session_with_path(&env, &repo, &url, b"capabilities\nconnect x\n\n", &old);
    assert_eq!(code, Some(128), "{stderr}");
    assert!(stderr.contains("git version 2.20.1 is too old"), "{stderr}");

    // git 2.25-2.27 do not ask for the object format either, and are served.
    let supported = git_claiming(&env, "2.25.5");
    let (code, stderr) = helper_session_with_path(&env, &repo, &url, input, &supported);
    assert_eq!(code, Some(0), "{stderr}");
}
