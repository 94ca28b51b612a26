//! SCENARIOS.md D20-D21: concurrent pushes. Exactly one of several clients pushing to the same
//! branch at once wins; the others get git's `(fetch first)` and lose nothing once they rebase
//! and push again. Pushes to different branches all succeed.
//!
//! The pushes start together from one shell (`&` + `wait`), so they really overlap in the
//! server's `update`; the server's compare-and-swap, not timing, decides the winner.

use std::path::PathBuf;

const CLIENTS: usize = 8;
const ROUNDS: usize = 3;

/// Runs `git push <args>` in every clone at once; returns each exit code and stderr.
fn push_all(env: &crate::harness::TestEnv, clones: &[PathBuf], args: &str) -> Vec<(i32, String)> {
    let dir = env.mkdir("race");
    let mut script = String::new();
    for (i, clone) in clones.iter().enumerate() {
        script.push_str(&format!(
            "(git -C '{}' push {args} >/dev/null 2>'{}/err{i}'; echo $? >'{}/rc{i}') &\n",
            clone.display(),
            dir.display(),
            dir.display()
        ));
    }
    script.push_str("wait\n");
    env.cmd(&dir, &["-c", &script]).program("bash").ok();
    (0..clones.len())
        .map(|i| {
            let rc = std::fs::read_to_string(dir.join(format!("rc{i}"))).expect("exit code");
            let err = std::fs::read_to_string(dir.join(format!("err{i}"))).expect("stderr");
            (rc.trim().parse().expect("numeric exit code"), err)
        })
        .collect()
}

fn clones(env: &crate::harness::TestEnv, url: &str) -> Vec<PathBuf> {
    (0..CLIENTS)
        .map(|i| {
            let dir = env.path(&format!("c{i}"));
            env.clone(url, &dir);
            dir
        })
        .collect()
}

/// D20: one winner per round, `(fetch first)` for the rest, every commit reachable at the end.
#[test]
fn concurrent_pushes_to_one_branch_lose_nothing() {
    let env = crate::harness::TestEnv::new();
    let url = env.create("race");
    let seed = env.init("seed");
    env.commit(&seed, "base");
    env.git(&seed, &["push", "-q", &url, "main"]);
    let clones = clones(&env, &url);
    for round in 0..ROUNDS {
        for (i, c) in clones.iter().enumerate() {
            env.git(c, &["pull", "-q", "--rebase", "origin", "main"]);
            env.commit(c, &format!("r{round}-c{i}"));
        }
        let results = push_all(&env, &clones, "-q origin main");
        let winners = results.iter().filter(|(rc, _)| *rc == 0).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one push wins: {results:#?}"
        );
        for (rc, err) in results.iter().filter(|(rc, _)| *rc != 0) {
            assert_eq!(*rc, 1, "a lost race is a rejection, not a failure: {err}");
            assert!(
                err.contains("! [rejected]") && err.contains("(fetch first)"),
                "round {round}: losers see git's fetch-first rejection: {err}"
            );
        }
        // The losers integrate the winner's work and push again, one after another.
        for (c, (rc, _)) in clones.iter().zip(&results) {
            if *rc != 0 {
                env.git(c, &["pull", "-q", "--rebase", "origin", "main"]);
                env.git(c, &["push", "-q", "origin", "main"]);
            }
        }
    }
    let check = env.path("check");
    env.clone(&url, &check);
    // Losers rebased, so their commits have new ids: find every commit by its message.
    let log = env
        .git(&check, &["log", "--format=%s", "origin/main"])
        .stdout;
    for round in 0..ROUNDS {
        for i in 0..CLIENTS {
            assert!(
                log.lines().any(|l| l == format!("r{round}-c{i}")),
                "commit r{round}-c{i} is on main:\n{log}"
            );
        }
    }
}

/// D21: clients pushing different branches at the same moment all succeed.
#[test]
fn concurrent_pushes_to_different_branches_all_succeed() {
    let env = crate::harness::TestEnv::new();
    let url = env.create("branches");
    let seed = env.init("seed");
    env.commit(&seed, "base");
    env.git(&seed, &["push", "-q", &url, "main"]);
    let clones = clones(&env, &url);
    for (i, c) in clones.iter().enumerate() {
        env.git(c, &["checkout", "-q", "-b", &format!("topic-{i}")]);
        env.commit(c, &format!("topic-{i}"));
    }
    let results = push_all(&env, &clones, "-q origin HEAD");
    assert!(
        results.iter().all(|(rc, _)| *rc == 0),
        "every branch push succeeds: {results:#?}"
    );
    let listed = env.ls_remote(&seed, &url);
    for i in 0..CLIENTS {
        assert!(
            listed.contains(&format!("refs/heads/topic-{i}\n")),
            "{listed}"
        );
    }
}
