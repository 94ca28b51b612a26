//! docs/scenarios.md section A: the life of a repository from `git hypha create` to everyday
//! fetch, pull and push, and the short `hypha::ws/alias` address form (docs/design.md §6).

use crate::harness::{assert_line, noise, sorted_lines, TestEnv, WS};
use std::path::PathBuf;

/// A1: an empty repository lists nothing, from inside a repository and from a directory where
/// git sets no `GIT_DIR` at all (some helpers break there).
#[test]
fn ls_remote_of_empty_repository_lists_nothing_inside_and_outside_a_repository() {
    let env = TestEnv::new();
    let url = env.create("empty");

    let repo = env.init("local");
    let out = env.git(&repo, &["ls-remote", &url]);
    assert_eq!(out.stdout, "", "an empty repository has no refs\n{out}");

    let outside = env.mkdir("outside");
    let out = env.git(&outside, &["ls-remote", &url]);
    assert_eq!(out.stdout, "", "an empty repository has no refs\n{out}");
}

/// docs/design.md §6: `hypha::ws/alias` takes the server from `HYPHA_SERVER_URL`, else from
/// `git config hypha.server`.
#[test]
fn short_url_takes_server_from_env_then_git_config() {
    let env = TestEnv::new();
    let url = env.create("short");
    let repo = env.init("src");
    let head = env.commit(&repo, "one");
    env.git(&repo, &["push", &url, "main"]);
    // Sorted: git prints refs in the order the transport lists them, which the contract
    // leaves open.
    let expected = format!("{head}\tHEAD\n{head}\trefs/heads/main\n");

    let outside = env.mkdir("outside");
    let short = format!("hypha::{}/short", env.workspace(WS));
    let out = env
        .cmd(&outside, &["ls-remote", &short])
        .env("HYPHA_SERVER_URL", env.server.url())
        .ok();
    assert_eq!(
        sorted_lines(&out.stdout),
        expected,
        "short form with HYPHA_SERVER_URL\n{out}"
    );

    env.git(
        &outside,
        &["config", "--global", "hypha.server", env.server.url()],
    );
    let out = env.git(&outside, &["ls-remote", &short]);
    assert_eq!(
        sorted_lines(&out.stdout),
        expected,
        "short form with git config hypha.server\n{out}"
    );

    let clone = env.path("short-clone");
    env.clone(&short, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), head);
}

/// A2: cloning an empty repository is not an error; git's own warning tells the user.
#[test]
fn clone_of_empty_repository_warns_and_sets_origin() {
    let env = TestEnv::new();
    let url = env.create("empty");
    let out = env.git(&env.path(""), &["clone", &url, "dst"]);
    assert!(
        out.stderr
            .contains("warning: You appear to have cloned an empty repository."),
        "git's empty-clone warning is missing\n{out}"
    );
    let dst = env.path("dst");
    let origin = env.git(&dst, &["config", "remote.origin.url"]);
    assert_eq!(origin.stdout.trim(), url);
    let head = env.git(&dst, &["symbolic-ref", "HEAD"]);
    assert_eq!(
        head.stdout.trim(),
        "refs/heads/main",
        "unborn HEAD follows the remote default"
    );
}

/// A3: the first push creates the branch, sets up tracking with `-u`, and leaves the remote
/// HEAD pointing at it, stored in Hypha's layout (docs/design.md §3).
#[test]
fn first_push_creates_branch_and_remote_head() {
    let env = TestEnv::new();
    let url = env.create("first");
    env.git(&env.path(""), &["clone", "-q", &url, "work"]);
    let work = env.path("work");
    let head = env.commit(&work, "first");

    let out = env.git(&work, &["push", "-u", "origin", "main"]);
    assert_line(&out, &out.stderr, &["* [new branch]", "main -> main"]);
    assert!(
        out.stdout
            .contains("branch 'main' set up to track 'origin/main'."),
        "push -u must set the upstream\n{out}"
    );
    assert_eq!(
        env.git(&work, &["config", "branch.main.remote"])
            .stdout
            .trim(),
        "origin"
    );

    // Sorted: git prints refs in the order the transport lists them (see above).
    let out = env.git(&work, &["ls-remote", "--symref", "origin"]);
    assert_eq!(
        sorted_lines(&out.stdout),
        format!("{head}\tHEAD\n{head}\trefs/heads/main\nref: refs/heads/main\tHEAD\n"),
        "ls-remote --symref\n{out}"
    );

    let stored = env.stored_repo("first");
    let read = |rel: &str| {
        std::fs::read_to_string(stored.join(rel)).unwrap_or_else(|e| {
            panic!(
                "stored repository lacks {rel}: {e}\n{}",
                env.server.log_tail()
            )
        })
    };
    assert_eq!(read("HEAD"), "ref: refs/heads/main\n");
    assert_eq!(read("refs/heads/main"), format!("{head}\n"));
    let packs = env.remote_packs("first");
    assert!(!packs.is_empty(), "a push stores at least one pack");
    for name in packs.keys() {
        let idx = stored
            .join("objects/pack")
            .join(name.replace(".pack", ".idx"));
        assert!(
            idx.exists(),
            "{name} has no .idx next to it (docs/design.md §3 rule 1)"
        );
    }
}

/// A4: a clone is complete, consistent, and has the same refs as the pushing repository.
#[test]
fn clone_has_identical_refs_and_passes_fsck() {
    let env = TestEnv::new();
    let url = env.create("repo");
    let src = env.init("src");
    for name in ["a", "b", "c"] {
        env.commit(&src, name);
    }
    env.git(&src, &["checkout", "-q", "-b", "topic"]);
    env.commit(&src, "t1");
    env.git(&src, &["checkout", "-q", "main"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "origin", "main", "topic"]);

    let dst = env.path("dst");
    env.clone(&url, &dst);
    assert_eq!(
        env.git(&dst, &["symbolic-ref", "HEAD"]).stdout.trim(),
        "refs/heads/main"
    );
    assert_eq!(env.rev(&dst, "HEAD"), env.rev(&src, "main"));
    assert_eq!(
        std::fs::read_to_string(dst.join("c.txt")).expect("checked out"),
        "content of c\n"
    );
    assert_eq!(
        env.git(&dst, &["status", "--porcelain"]).stdout,
        "",
        "a fresh clone has a clean work tree"
    );
    let cloned = env
        .refs(&dst, &["refs/remotes/origin/"])
        .replace("refs/remotes/origin/", "refs/heads/")
        .lines()
        .filter(|l| !l.ends_with("refs/heads/HEAD"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    assert_eq!(cloned, env.refs(&src, &["refs/heads/"]));
}

/// A5: the second push uploads only the new objects and the fetch downloads only the new
/// pack. A large incompressible blob in the first commit makes "only the new objects"
/// measurable from pack sizes alone.
#[test]
fn incremental_push_and_fetch_move_only_new_objects() {
    let env = TestEnv::new();
    let url = env.create("inc");
    let src = env.init("src");
    std::fs::write(src.join("big.bin"), noise(512 * 1024, 7)).expect("write blob");
    env.commit(&src, "base");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-u", "origin", "main"]);
    let first = env.remote_packs("inc");
    let first_size: u64 = first.values().sum();
    assert!(
        first_size > 400 * 1024,
        "first push stores the big blob: {first:?}"
    );

    let dst = env.path("dst");
    env.clone(&url, &dst);
    let local_before = env.local_packs(&dst);

    let head = env.commit(&src, "small change");
    env.git(&src, &["push"]);
    let after = env.remote_packs("inc");
    let new: Vec<_> = after
        .iter()
        .filter(|(n, _)| !first.contains_key(*n))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "the second push stores exactly one new pack: {after:?}"
    );
    assert!(
        *new[0].1 < 16 * 1024,
        "the second pack holds only the new objects: {new:?}"
    );
    assert_eq!(
        first.iter().collect::<Vec<_>>(),
        after
            .iter()
            .filter(|(n, _)| first.contains_key(*n))
            .collect::<Vec<_>>(),
        "existing packs are untouched"
    );

    env.git(&dst, &["fetch"]);
    env.fsck(&dst);
    let local_after = env.local_packs(&dst);
    let fetched: Vec<_> = local_after
        .iter()
        .filter(|(n, _)| !local_before.contains_key(*n))
        .collect();
    assert_eq!(
        fetched.len(),
        1,
        "fetch downloads exactly the new pack: {local_after:?}"
    );
    assert!(
        *fetched[0].1 < 16 * 1024,
        "fetch downloads only the new pack: {fetched:?}"
    );

    let out = env.git(&dst, &["pull"]);
    assert!(
        out.stdout.contains("Fast-forward"),
        "pull fast-forwards\n{out}"
    );
    assert_eq!(env.rev(&dst, "HEAD"), head);
    assert_eq!(
        env.local_packs(&dst),
        local_after,
        "pull after fetch downloads nothing"
    );
    env.fsck(&dst);
}

/// A6: nothing to do means nothing moves, in either direction.
#[test]
fn noop_push_and_fetch_transfer_nothing() {
    let env = TestEnv::new();
    let url = env.create("noop");
    let src = env.init("src");
    env.commit(&src, "one");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-u", "origin", "main"]);
    let packs = env.remote_packs("noop");

    let out = env.git(&src, &["push"]);
    assert!(
        out.stderr.contains("Everything up-to-date"),
        "no-op push\n{out}"
    );
    assert_eq!(
        env.remote_packs("noop"),
        packs,
        "a no-op push uploads nothing"
    );

    let dst = env.path("dst");
    env.clone(&url, &dst);
    let local = env.local_packs(&dst);
    let out = env.git(&dst, &["fetch"]);
    assert_eq!(
        env.local_packs(&dst),
        local,
        "a no-op fetch downloads no pack\n{out}"
    );
    let out = env.git(&dst, &["fetch", "origin"]);
    assert_eq!(
        env.local_packs(&dst),
        local,
        "a no-op fetch downloads no pack\n{out}"
    );
}

/// A7: `remote set-head --auto` reads the remote's HEAD symref.
#[test]
fn remote_set_head_auto_finds_default_branch() {
    let env = TestEnv::new();
    let url = env.create("sethead");
    pushed_repo(&env, &url, &["main", "other"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    env.git(&dst, &["remote", "set-head", "origin", "-d"]);
    let out = env.git(&dst, &["remote", "set-head", "origin", "--auto"]);
    assert!(
        out.stdout.contains("origin/HEAD set to main"),
        "set-head --auto\n{out}"
    );
    let out = env.git(&dst, &["symbolic-ref", "refs/remotes/origin/HEAD"]);
    assert_eq!(out.stdout.trim(), "refs/remotes/origin/main");
}

/// A7: a branch deleted on the remote disappears locally with `fetch --prune`.
#[test]
fn fetch_prune_removes_deleted_remote_branch() {
    let env = TestEnv::new();
    let url = env.create("prune");
    let src = pushed_repo(&env, &url, &["main", "feature"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    assert!(!env.refs(&dst, &["refs/remotes/origin/feature"]).is_empty());

    env.git(&src, &["push", "origin", "--delete", "feature"]);
    let out = env.git(&dst, &["fetch", "--prune"]);
    assert_line(&out, &out.stderr, &["[deleted]", "origin/feature"]);
    assert_eq!(
        env.refs(&dst, &["refs/remotes/origin/feature"]),
        "",
        "pruned\n{out}"
    );
    assert!(
        !env.refs(&dst, &["refs/remotes/origin/main"]).is_empty(),
        "main survives"
    );
    env.fsck(&dst);
}

/// A7: `git fetch origin HEAD` fetches what the remote HEAD points at into FETCH_HEAD.
#[test]
fn fetch_origin_head_fetches_default_branch() {
    let env = TestEnv::new();
    let url = env.create("fetchhead");
    let src = pushed_repo(&env, &url, &["main"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    let new = env.commit(&src, "newer");
    env.git(&src, &["push", "origin", "main"]);

    let out = env.git(&dst, &["fetch", "origin", "HEAD"]);
    let fetch_head = std::fs::read_to_string(dst.join(".git/FETCH_HEAD")).expect("FETCH_HEAD");
    assert!(
        fetch_head.starts_with(&format!("{new}\t")),
        "FETCH_HEAD: {fetch_head}\n{out}"
    );
    env.git(&dst, &["cat-file", "-e", &format!("{new}^{{commit}}")]);
    env.fsck(&dst);
}

/// A7: fetching by URL (git passes the URL, not a remote name, as the helper's first argument).
#[test]
fn fetch_by_url_without_a_configured_remote() {
    let env = TestEnv::new();
    let url = env.create("byurl");
    let src = pushed_repo(&env, &url, &["main"]);
    let head = env.rev(&src, "main");

    let local = env.init("local");
    let out = env.git(&local, &["fetch", &url, "main"]);
    let fetch_head = std::fs::read_to_string(local.join(".git/FETCH_HEAD")).expect("FETCH_HEAD");
    assert!(
        fetch_head.starts_with(&format!("{head}\t")) && fetch_head.contains("branch 'main' of"),
        "FETCH_HEAD: {fetch_head}\n{out}"
    );
    assert_eq!(
        env.git(&local, &["cat-file", "-t", &head]).stdout.trim(),
        "commit"
    );
    env.git(&local, &["merge", "-q", "--ff-only", "FETCH_HEAD"]);
    assert_eq!(env.rev(&local, "HEAD"), head);
    env.fsck(&local);
}

/// A7: `pull --rebase` replays a local commit on top of the fetched one; the result pushes.
#[test]
fn pull_rebase_then_push() {
    let env = TestEnv::new();
    let url = env.create("rebase");
    let a = pushed_repo(&env, &url, &["main"]);
    let b = env.path("b");
    env.clone(&url, &b);

    let theirs = env.commit(&a, "from-a");
    env.git(&a, &["push", "origin", "main"]);
    env.commit(&b, "from-b");

    env.git(&b, &["pull", "--rebase"]);
    assert_eq!(
        env.rev(&b, "HEAD^"),
        theirs,
        "local commit replayed on top of the fetched one"
    );
    assert_eq!(
        env.git(&b, &["log", "-1", "--format=%s"]).stdout.trim(),
        "from-b"
    );
    assert_eq!(
        env.git(&b, &["rev-list", "--merges", "HEAD"]).stdout,
        "",
        "history is linear"
    );
    env.fsck(&b);

    env.git(&b, &["push", "origin", "main"]);
    let out = env.git(&b, &["ls-remote", "origin", "refs/heads/main"]);
    assert_eq!(
        out.stdout,
        format!("{}\trefs/heads/main\n", env.rev(&b, "HEAD"))
    );
}

/// A repository `src` with one commit per branch name (the first is the base of the others),
/// `origin` set to `url`, all branches pushed.
fn pushed_repo(env: &TestEnv, url: &str, branches: &[&str]) -> PathBuf {
    let src = env.init("src");
    env.commit(&src, "base");
    for branch in branches.iter().filter(|b| **b != "main") {
        env.git(&src, &["branch", branch]);
        env.git(&src, &["checkout", "-q", branch]);
        env.commit(&src, &format!("on-{branch}"));
        env.git(&src, &["checkout", "-q", "main"]);
    }
    env.git(&src, &["remote", "add", "origin", url]);
    let mut args = vec!["push", "origin"];
    args.extend_from_slice(branches);
    env.git(&src, &args);
    assert_eq!(
        env.git(&src, &["branch", "--show-current"]).stdout.trim(),
        "main"
    );
    src
}

/// A fetch after several pushes takes every new pack (the wanted tip is in the last one, its
/// parents in the others); with the known-pack record gone, every pack is unseen and it still
/// downloads only the pack that holds objects it lacks.
#[test]
fn fetch_after_several_pushes_takes_exactly_the_new_packs() {
    let env = TestEnv::new();
    let url = env.create("several");
    let src = env.init("src");
    env.commit(&src, "base");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-u", "origin", "main"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    let before = env.local_packs(&dst);

    for name in ["one", "two", "three"] {
        env.commit(&src, name);
        env.git(&src, &["push"]);
    }
    env.git(&dst, &["fetch"]);
    env.fsck(&dst);
    assert_eq!(env.rev(&dst, "origin/main"), env.rev(&src, "main"));
    let after = env.local_packs(&dst);
    assert_eq!(
        after.len(),
        before.len() + 3,
        "fetch takes the three new packs: {after:?}"
    );

    let head = env.commit(&src, "four");
    env.git(&src, &["push"]);
    std::fs::remove_dir_all(dst.join(".git/hypha")).expect("remove the known-pack record");
    env.git(&dst, &["fetch"]);
    env.fsck(&dst);
    assert_eq!(env.rev(&dst, "origin/main"), head);
    let last = env.local_packs(&dst);
    assert_eq!(
        last.len(),
        after.len() + 1,
        "without the record, fetch still takes only the new pack: {last:?}"
    );
}

/// `git worktree add`: a linked worktree's `$GIT_DIR` (`.git/worktrees/<name>`) holds no
/// objects, so a fetch there writes its packs where git reads objects (the main repository's
/// directory), and a push from a detached `HEAD` in the worktree sends the worktree's `HEAD`,
/// not the main checkout's. It failed with "cannot create a temporary pack file" before.
#[test]
fn fetch_and_push_from_a_linked_worktree() {
    let env = TestEnv::new();
    let url = env.create("worktree");
    let src = pushed_repo(&env, &url, &["main"]);
    let dst = env.path("dst");
    env.clone(&url, &dst);
    let wt = env.path("wt");
    env.git(
        &dst,
        &["worktree", "add", "-q", "--detach", &wt.to_string_lossy()],
    );

    let tip = env.commit(&src, "after-worktree");
    env.git(&src, &["push", "-q", "origin", "main"]);
    env.git(&wt, &["fetch", "-q", "origin"]);
    assert_eq!(env.rev(&wt, "origin/main"), tip, "fetched in the worktree");
    assert_eq!(
        env.rev(&dst, "origin/main"),
        tip,
        "the main checkout sees it too"
    );
    env.fsck(&dst);

    env.git(&wt, &["checkout", "-q", "--detach", "origin/main"]);
    let mine = env.commit(&wt, "from-worktree");
    assert_ne!(env.rev(&dst, "HEAD"), mine);
    env.git(&wt, &["push", "-q", "origin", "HEAD:refs/heads/from-wt"]);
    let listed = env.ls_remote(&wt, &url);
    assert!(
        listed.contains(&format!("{mine}\trefs/heads/from-wt")),
        "the worktree's HEAD was pushed\n{listed}"
    );
    let check = env.path("check");
    env.clone(&url, &check);
    assert_eq!(env.rev(&check, "origin/from-wt"), mine);
}
