//! Progress (issue 4): git-style progress on stderr only when git asks for it and stderr is a
//! terminal. The terminal is real: the clone runs inside a detached tmux session and the test
//! reads the screen with `capture-pane`.

use crate::harness::TestEnv;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `command` in a fresh tmux server (own socket) and returns the screen once
/// `done_file` exists.
fn in_terminal(env: &TestEnv, dir: &Path, command: &str, done_file: &Path) -> String {
    let socket = format!(
        "hypha-e2e-{}-{}",
        std::process::id(),
        done_file.display().to_string().len()
    );
    let script = format!("{command}; echo $? > '{}'; sleep 60", done_file.display());
    env.cmd(
        dir,
        &[
            "-L",
            &socket,
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "40",
            "bash",
            "-c",
            &script,
        ],
    )
    .program("tmux")
    .ok();
    let started = Instant::now();
    while !done_file.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let screen = env
        .cmd(dir, &["-L", &socket, "capture-pane", "-p"])
        .program("tmux")
        .ok()
        .stdout;
    env.cmd(dir, &["-L", &socket, "kill-server"])
        .program("tmux")
        .run();
    let status = std::fs::read_to_string(done_file).unwrap_or_default();
    assert_eq!(
        status.trim(),
        "0",
        "command in the terminal failed:\n{screen}"
    );
    screen
}

#[test]
fn progress_is_drawn_in_a_terminal_and_nowhere_else() {
    let env = TestEnv::new();
    let url = env.create("progress");
    let work = env.init("work");
    for i in 0..3 {
        env.commit(&work, &format!("c{i}"));
    }
    env.git(&work, &["push", "-q", &url, "main"]);
    let dir = env.mkdir("clones");

    let screen = in_terminal(
        &env,
        &dir,
        &format!("git clone {url} tty"),
        &env.path("done-tty"),
    );
    assert!(
        screen.contains("Receiving packs: 100%") && screen.contains(", done."),
        "a terminal shows download progress:\n{screen}"
    );

    let quiet = in_terminal(
        &env,
        &dir,
        &format!("git clone -q {url} quiet"),
        &env.path("done-quiet"),
    );
    assert!(
        !quiet.contains("Receiving packs"),
        "-q silences progress even in a terminal:\n{quiet}"
    );

    // Not a terminal: no bars even when asked for, and no escape codes in logs.
    let out = env.git(&dir, &["clone", "--progress", &url, "piped"]);
    assert!(!out.stderr.contains("Receiving packs"), "{out}");
    assert!(!out.stderr.contains('\u{1b}'), "{out}");
}
