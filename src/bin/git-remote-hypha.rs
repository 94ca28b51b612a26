//! `git-remote-hypha <remote> [<url>]`: the remote helper git runs for `hypha::` URLs.
//!
//! Parses git's fixed argv, resolves the remote and token, asks once whether the server has
//! remote API v1 (else hands the session to git's smart HTTP), runs the session on stdin/stdout,
//! and turns a session error into `fatal: ...` lines and exit code 128.

use hypha_git::client::{Api, Client};
use hypha_git::config;
use hypha_git::helper::{handoff, Session, Ui};
use hypha_git::progress::Progress;
use std::io::IsTerminal as _;
use tracing_subscriber::filter::LevelFilter;

#[path = "shared/logging.rs"]
mod logging;
#[path = "shared/report.rs"]
mod report;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (remote, address) = match args.as_slice() {
        [flag] if flag == "--version" || flag == "-V" => {
            eprintln!("git-remote-hypha {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [remote] => (remote.clone(), remote.clone()),
        [remote, url] => (remote.clone(), url.clone()),
        _ => {
            eprintln!("usage: git-remote-hypha <remote> [<url>] (run by git for hypha:: URLs)");
            return ExitCode::from(129);
        }
    };
    match run(&remote, &address) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report::print("fatal", e.as_ref());
            ExitCode::from(128)
        }
    }
}

/// The session, on remote API v1 or handed to git's smart HTTP; answers the exit code.
fn run(remote_name: &str, address: &str) -> Result<u8, Box<dyn std::error::Error>> {
    // Before any pack is received: on SIGINT/SIGTERM gix deletes its temporary pack files, so
    // an interrupted fetch leaves no partial pack behind.
    gix_tempfile::signal::setup(Default::default());
    let env: HashMap<String, String> = std::env::vars().collect();
    let short_form = !address.trim_start_matches("hypha::").contains("://");
    let configured = if short_form && !env.contains_key("HYPHA_SERVER_URL") {
        config::git_config("hypha.server")
    } else {
        None
    };
    let remote = config::resolve(address, &env, configured.as_deref())?;
    let token = config::env_token(&env);
    // GIT_DIR is relative when git runs from a work tree and unset outside a repository.
    let git_dir = match env.get("GIT_DIR") {
        Some(dir) if !dir.is_empty() => Some(std::path::absolute(PathBuf::from(dir))?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Sent with the listing, so that a fetch after it needs no `packs` round trip. Both are
    // read where fetches write (a linked worktree shares its main repository's).
    let common = git_dir.as_deref().map(hypha_git::helper::common_dir);
    let known_packs = common
        .as_deref()
        .map(|dir| hypha_git::helper::known_packs(dir, &remote));
    let inline_max = common
        .as_deref()
        .map_or(0, hypha_git::helper::clone_inline_max);
    let client = Client::new(remote, token)?
        .with_git_remote(remote_name)
        .with_known_packs(known_packs)
        .with_inline_max(inline_max);
    let stdout = std::io::stdout();
    // git's verbosity: 0 with -q, 1 by default, 2 with -v, 3 with -vv. Warnings show at
    // every level (git's own warnings survive -q); the helper's notes need -v, details -vv.
    let levels = logging::install(LevelFilter::WARN);
    let ui = Ui {
        progress: Progress::terminal(std::io::stderr().is_terminal()),
        set_verbosity: Box::new(move |verbosity| {
            let level = match verbosity {
                0 | 1 => LevelFilter::WARN,
                2 => LevelFilter::INFO,
                _ => LevelFilter::DEBUG,
            };
            // Fails only if the subscriber is gone (process exit): nothing left to filter.
            let _ = levels.modify(|filter| *filter = level);
        }),
    };
    // Decided before git's `capabilities` is answered: a server without remote API v1 (a
    // stock Hypha) gets the whole session through git's own smart HTTP.
    if runtime.block_on(client.probe_or_defer()) == Api::Absent {
        // After the logger: a failure to record is a warning the user should see. Hypha's own
        // LFS endpoint, the only one a stock Hypha has.
        if let Some(dir) = &git_dir {
            hypha_git::helper::lfs::record(dir, remote_name, client.remote(), None);
        }
        let input = std::io::stdin().lock();
        return Ok(handoff::run(
            client,
            runtime,
            remote_name,
            git_dir,
            input,
            stdout.lock(),
            ui,
        )?);
    }
    // The session records git-lfs's settings at its first `list`, from the `refs` answer.
    let mut session =
        Session::new(stdout.lock(), client, git_dir, runtime, ui).with_lfs_remote(remote_name);
    session.run(std::io::stdin().lock())?;
    Ok(0)
}
