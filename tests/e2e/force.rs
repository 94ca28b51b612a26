//! docs/scenarios.md section C, items 15-17: diverged pushes, `--force`, `--force-with-lease`.
//!
//! git judges these from the values `list for-push` returned and the helper's status words
//! (docs/protocol.md §3); the `file://` oracle shows what git prints with its native transport,
//! hints included, and the test requires the same.

use crate::harness::oracle::{assert_same_as_file_remote, porcelain_line, remote_refs, Side};
use std::path::PathBuf;

/// Two work trees that diverged on main: `a` pushed `base`, `b` cloned, committed `b1` and
/// pushed it, and `a` committed `a1` without fetching. Returns `(a, b)`.
fn diverged(side: &Side) -> (PathBuf, PathBuf) {
    let env = side.env;
    let a = side.init("a");
    env.commit(&a, "base");
    let out = side.push(&a, "base", &["-u", "origin", "main"]);
    assert!(out.success(), "{out}");
    let b = side.clone("b");
    env.commit(&b, "b1");
    let out = side.push(&b, "b1", &["origin", "main"]);
    assert!(out.success(), "{out}");
    env.commit(&a, "a1");
    (a, b)
}

fn remote_main(side: &Side) -> String {
    remote_refs(side)
        .lines()
        .find(|l| l.ends_with("\trefs/heads/main"))
        .map(|l| l[..40].to_string())
        .unwrap_or_default()
}

/// C15: a diverged push is refused with `status` and git's `hint`, exit 1, remote unchanged;
/// `fetched`: whether `a` fetched the remote tip first.
fn diverged_push_is_rejected(name: &str, fetched: bool, status: &str, hint: &str) {
    let env = crate::harness::TestEnv::new();
    assert_same_as_file_remote(&env, name, |side| {
        let (a, b) = diverged(side);
        if fetched {
            side.env.git(&a, &["fetch", "-q", "origin"]);
        }
        let out = side.push(&a, "diverged", &["origin", "main"]);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/main").is_some_and(|l| l.contains(status)),
            "{out}"
        );
        assert!(out.stderr.contains(hint), "{out}");
        assert_eq!(
            remote_main(side),
            side.env.rev(&b, "HEAD"),
            "remote unchanged"
        );
    });
}

/// C15: the remote tip is unknown locally -> `(fetch first)`.
#[test]
fn diverged_push_with_unknown_remote_tip_is_fetch_first() {
    diverged_push_is_rejected(
        "fetchfirst",
        false,
        "[rejected] (fetch first)",
        // git 2.39 wraps this hint one word earlier than 2.47.
        "hint: Updates were rejected because the remote contains work that you do",
    );
}

/// C15: the remote tip is known locally (fetched) -> `(non-fast-forward)`.
#[test]
fn diverged_push_with_known_remote_tip_is_non_fast_forward() {
    diverged_push_is_rejected(
        "nonff",
        true,
        "[rejected] (non-fast-forward)",
        "hint: Updates were rejected because the tip of your current branch is behind",
    );
}

/// C16: `--force` replaces the remote tip and says so.
#[test]
fn force_push_is_a_forced_update() {
    let env = crate::harness::TestEnv::new();
    assert_same_as_file_remote(&env, "force", |side| {
        let (a, b) = diverged(side);
        let env = side.env;
        let out = side.push(&a, "--force", &["--force", "origin", "main"]);
        assert!(out.success(), "{out}");
        let old = env.rev(&b, "HEAD");
        let new = env.rev(&a, "HEAD");
        let line = porcelain_line(&out, "refs/heads/main").unwrap_or_default();
        // git abbreviates ids to 7 or more digits, so match on the prefixes.
        let (status, summary) = line.rsplit_once('\t').unwrap_or_default();
        assert_eq!(status, "+\trefs/heads/main:refs/heads/main", "{out}");
        let (ids, note) = summary.split_once(' ').unwrap_or_default();
        let (from, to) = ids.split_once("...").unwrap_or_default();
        assert!(
            from.len() >= 7 && old.starts_with(from) && new.starts_with(to) && to.len() >= 7,
            "expected {old}...{new}\n{out}"
        );
        assert_eq!(note, "(forced update)", "{out}");
        assert_eq!(remote_main(side), env.rev(&a, "HEAD"));
    });
}

/// C17: `--force-with-lease` without a value leases the remote-tracking ref: stale before a
/// fetch, accepted after it (and the push line carries no `+`, docs/protocol.md §3).
#[test]
fn force_with_lease_implicit_follows_the_tracking_ref() {
    let env = crate::harness::TestEnv::new();
    assert_same_as_file_remote(&env, "leaseimplicit", |side| {
        let (a, b) = diverged(side);
        let env = side.env;
        let out = side.push(
            &a,
            "stale tracking ref",
            &["--force-with-lease", "origin", "main"],
        );
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/main").is_some_and(|l| l.contains("(stale info)")),
            "{out}"
        );
        assert_eq!(remote_main(side), env.rev(&b, "HEAD"), "remote unchanged");

        env.git(&a, &["fetch", "-q", "origin"]);
        let out = side.push(
            &a,
            "fresh tracking ref",
            &["--force-with-lease", "origin", "main"],
        );
        assert!(out.success(), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/main").is_some_and(|l| l.contains("(forced update)")),
            "{out}"
        );
        assert_eq!(remote_main(side), env.rev(&a, "HEAD"));
    });
}

/// C17: explicit leases: matching succeeds, non-matching is `(stale info)`, and `ref:` (must
/// not exist) on an existing ref is `(stale info)`.
#[test]
fn force_with_lease_explicit_values() {
    let env = crate::harness::TestEnv::new();
    assert_same_as_file_remote(&env, "leaseexplicit", |side| {
        let (a, b) = diverged(side);
        let env = side.env;
        let base = env.rev(&a, "HEAD~1");
        let b1 = env.rev(&b, "HEAD");

        let out = side.push(
            &a,
            "non-matching",
            &[&format!("--force-with-lease=main:{base}"), "origin", "main"],
        );
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/main").is_some_and(|l| l.contains("(stale info)")),
            "{out}"
        );
        assert_eq!(remote_main(side), b1, "remote unchanged");

        let out = side.push(
            &a,
            "matching",
            &[&format!("--force-with-lease=main:{b1}"), "origin", "main"],
        );
        assert!(out.success(), "{out}");
        assert_eq!(remote_main(side), env.rev(&a, "HEAD"));

        let out = side.push(&a, "create new", &["origin", "HEAD~1:refs/heads/new"]);
        assert!(out.success(), "{out}");
        let out = side.push(
            &a,
            "must not exist",
            &["--force-with-lease=new:", "origin", "main:refs/heads/new"],
        );
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            porcelain_line(&out, "refs/heads/new").is_some_and(|l| l.contains("(stale info)")),
            "{out}"
        );
        assert!(
            remote_refs(side).contains(&format!("{base}\trefs/heads/new\n")),
            "new unchanged"
        );

        let out = side.push(
            &a,
            "must not exist, absent",
            &[
                "--force-with-lease=fresh:",
                "origin",
                "main:refs/heads/fresh",
            ],
        );
        assert!(out.success(), "{out}");
    });
}
