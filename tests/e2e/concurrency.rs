//! docs/scenarios.md D20-D21: concurrent pushes. Exactly one of several clients pushing to the same
//! branch at once wins; the others get git's `(fetch first)` and lose nothing once they rebase
//! and push again. Pushes to different branches all succeed.
//!
//! The pushes start together from one shell (`&` + `wait`), so they really overlap in the
//! server's `update`; the server's compare-and-swap, not timing, decides the winner. A fetch
//! races every round's pushes, and its result must be `git fsck --full` clean: no ref whose
//! objects are missing.
//!
//! Size: issue 5 asks for 16 clients x 20 rounds. `HYPHA_E2E_RACE=CLIENTSxROUNDS` (e.g.
//! `16x20`) sets it; the default is what fits CI's time on two cores (see [`race_size`]).

use std::path::{Path, PathBuf};

/// Clients and rounds when `HYPHA_E2E_RACE` is unset: 16 clients as the issue asks, and the
/// rounds that fit CI's time on two cores. (Measured on two cores shared with other jobs:
/// 16 x 20 took 573 s wall and 4.6 min of CPU, about 14 s of CPU per round; 16 x 6 took 130 s
/// in a full `./test.sh` on an idle machine, which with the S3 and Hypha passes went over the
/// 20 minutes CI allows for build and tests.)
const DEFAULT_RACE: (usize, usize) = (16, 4);

/// Clients of the different-branches race.
const CLIENTS: usize = 16;

/// `(clients, rounds)` from `HYPHA_E2E_RACE` (`CxR`), else [`DEFAULT_RACE`].
fn race_size() -> (usize, usize) {
    let Ok(spec) = std::env::var("HYPHA_E2E_RACE") else {
        return DEFAULT_RACE;
    };
    let parsed = spec
        .split_once('x')
        .and_then(|(c, r)| Some((c.trim().parse().ok()?, r.trim().parse().ok()?)))
        .filter(|&(c, r): &(usize, usize)| c >= 2 && r >= 1);
    parsed.unwrap_or_else(|| panic!("HYPHA_E2E_RACE={spec:?}: expected CLIENTSxROUNDS, e.g. 16x20"))
}

/// Runs `git push <args>` in every clone at once, and `git fetch` in `observer` alongside;
/// returns each push's exit code and stderr.
fn push_all(
    env: &crate::harness::TestEnv,
    clones: &[PathBuf],
    args: &str,
    observer: Option<&Path>,
) -> Vec<(i32, String)> {
    let dir = env.mkdir("race");
    let mut script = String::new();
    if let Some(observer) = observer {
        // Its failure shows in its own files; its result is checked by fsck afterwards.
        script.push_str(&format!(
            "(git -C '{}' fetch -q origin >'{}/fetch-out' 2>'{}/fetch-err'; echo $? >'{}/fetch-rc') &\n",
            observer.display(),
            dir.display(),
            dir.display(),
            dir.display()
        ));
    }
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
    if observer.is_some() {
        let rc = std::fs::read_to_string(dir.join("fetch-rc")).expect("fetch exit code");
        let err = std::fs::read_to_string(dir.join("fetch-err")).unwrap_or_default();
        assert_eq!(rc.trim(), "0", "a fetch racing the pushes succeeds: {err}");
    }
    (0..clones.len())
        .map(|i| {
            let rc = std::fs::read_to_string(dir.join(format!("rc{i}"))).expect("exit code");
            let err = std::fs::read_to_string(dir.join(format!("err{i}"))).expect("stderr");
            (rc.trim().parse().expect("numeric exit code"), err)
        })
        .collect()
}

fn clones(env: &crate::harness::TestEnv, url: &str, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let dir = env.path(&format!("c{i}"));
            env.clone(url, &dir);
            dir
        })
        .collect()
}

/// D20: one winner per round, `(fetch first)` for the rest, every commit reachable at the end;
/// a fetch racing each round's pushes gets a `fsck`-clean repository.
#[test]
fn concurrent_pushes_to_one_branch_lose_nothing() {
    let (clients, rounds) = race_size();
    let started = std::time::Instant::now();
    let env = crate::harness::TestEnv::new();
    let url = env.create("race");
    let seed = env.init("seed");
    env.commit(&seed, "base");
    env.git(&seed, &["push", "-q", &url, "main"]);
    let clones = clones(&env, &url, clients);
    let observer = env.path("observer");
    env.clone(&url, &observer);
    for round in 0..rounds {
        for (i, c) in clones.iter().enumerate() {
            env.git(c, &["pull", "-q", "--rebase", "origin", "main"]);
            env.commit(c, &format!("r{round}-c{i}"));
        }
        let results = push_all(&env, &clones, "-q origin main", Some(&observer));
        env.fsck(&observer);
        let winners = results.iter().filter(|(rc, _)| *rc == 0).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one push wins: {results:#?}"
        );
        for (rc, err) in results.iter().filter(|(rc, _)| *rc != 0) {
            assert_eq!(*rc, 1, "a lost race is a rejection, not a failure: {err}");
            assert!(
                err.contains("! [rejected]") && err.contains("(fetch first)"),
                "round {round}: losers see git's fetch-first rejection: {err}\n{}",
                env.server.log_tail()
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
    env.fsck(&check);
    // Losers rebased, so their commits have new ids: find every commit by its message.
    let log = env
        .git(&check, &["log", "--format=%s", "origin/main"])
        .stdout;
    for round in 0..rounds {
        for i in 0..clients {
            assert!(
                log.lines().any(|l| l == format!("r{round}-c{i}")),
                "commit r{round}-c{i} is on main:\n{log}"
            );
        }
    }
    crate::faults::figures(
        "push_race",
        &[
            ("clients", clients),
            ("rounds", rounds),
            ("seconds", started.elapsed().as_secs() as usize),
        ],
    );
}

/// D21: clients pushing different branches at the same moment all succeed.
#[test]
fn concurrent_pushes_to_different_branches_all_succeed() {
    let env = crate::harness::TestEnv::new();
    let url = env.create("branches");
    let seed = env.init("seed");
    env.commit(&seed, "base");
    env.git(&seed, &["push", "-q", &url, "main"]);
    let clones = clones(&env, &url, CLIENTS);
    for (i, c) in clones.iter().enumerate() {
        env.git(c, &["checkout", "-q", "-b", &format!("topic-{i}")]);
        env.commit(c, &format!("topic-{i}"));
    }
    let results = push_all(&env, &clones, "-q origin HEAD", None);
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
