//! `git-remote-hypha <remote> [<url>]`: the remote helper git runs for `hypha::` URLs.
//!
//! Parses git's fixed argv, resolves the remote and token, runs the session on stdin/stdout,
//! and turns a session error into `fatal: ...` lines and exit code 128.

use hypha_git::client::Client;
use hypha_git::config;
use hypha_git::helper::{Session, Ui};
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
    // git passes the remote's name first (the URL itself for an unnamed remote).
    let name = args.first().cloned().unwrap_or_default();
    let address = match args.as_slice() {
        [flag] if flag == "--version" || flag == "-V" => {
            eprintln!("git-remote-hypha {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [remote] => remote.clone(),
        [_remote, url] => url.clone(),
        _ => {
            eprintln!("usage: git-remote-hypha <remote> [<url>] (run by git for hypha:: URLs)");
            return ExitCode::from(129);
        }
    };
    match run(&name, &address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::print("fatal", e.as_ref());
            ExitCode::from(128)
        }
    }
}

fn run(name: &str, address: &str) -> Result<(), Box<dyn std::error::Error>> {
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
    if let Some(dir) = &git_dir {
        hypha_git::helper::lfs::record(dir, name, &remote);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client = Client::new(remote, token)?;
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
    let mut session = Session::new(stdout.lock(), client, git_dir, runtime, ui);
    session.run(std::io::stdin().lock())?;
    Ok(())
}
