//! `git hypha <command>`: serve the remote API, create repositories, mint tokens.
//!
//! Parses arguments with clap, calls the library, and turns an error into `error: ...` lines
//! and a non-zero exit code. Nothing else, except the manual pages, which are generated from
//! this clap definition (hidden `git hypha manpage DIR`; committed in `man/`, checked by a test).
//!
//! Each subcommand's module owns its arguments and what it runs; this file keeps the command
//! list (its order is the order of `--help` and of the manual page) and the dispatch.

#[path = "../shared/logging.rs"]
mod logging;
#[path = "../shared/report.rs"]
mod report;

mod create;
mod gc;
mod hook;
mod login;
mod manpage;
mod names;
mod routes;
mod serve;
mod token;
mod url;

use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::process::ExitCode;

/// Keep git repositories in Hypha's object storage.
#[derive(Parser)]
#[command(name = "git hypha", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run remote API v1 over a local directory or an S3 bucket, in Hypha's storage layout.
    // A later flag wins over an earlier one, so that a wrapper (or a test suite) can put
    // defaults first and let its caller override them.
    #[command(args_override_self = true)]
    // Boxed: the server's options outweigh every other command's.
    Serve(Box<serve::Args>),
    /// Manage a repository's webhooks (admin rights on the workspace): after every push the
    /// server POSTs a signed push event (GitHub's shape, X-Hub-Signature-256) to each.
    #[command(subcommand)]
    Hook(hook::Command),
    /// Create an empty repository (HEAD points at main). On a Hypha without the plugin, through
    /// its artifact manager (`config.storage = "git"`).
    Create(create::Args),
    /// Merge a repository's packs into one, so clones and fetches stay fast after many
    /// pushes. Old packs are deleted by the server after its grace period; after a full
    /// merge, so are the LFS objects no ref reaches any more.
    Gc(gc::Args),
    /// Log in through the server's login service (a browser) and keep the token for this
    /// server under the user's configuration directory; the helper uses it last.
    Login(login::LoginArgs),
    /// Forget the token `git hypha login` stored for a server.
    Logout(login::LogoutArgs),
    /// Print the clone URLs of a repository: the helper's and Hypha's smart HTTP.
    Url(url::Args),
    /// Git credential helper for git-lfs (the helper records it for a hypha:: remote's host):
    /// `get` answers with HYPHA_TOKEN, then the token of `git hypha login`; nothing is stored.
    #[command(hide = true)]
    Credential(login::CredentialArgs),
    /// Git LFS custom transfer agent (git-lfs runs it; the helper records it as
    /// `lfs.customtransfer.hypha`): large objects in parallel, resumable parts, past 5 GiB.
    #[command(hide = true)]
    LfsAgent,
    /// Print a token signed with HYPHA_JWT_SECRET (for tests and CI).
    Token(token::Args),
    /// Write the manual pages (git-hypha.1, one per subcommand, git-remote-hypha.1) into DIR;
    /// `git hypha --help` shows git-hypha(1) once they are where `man` looks.
    #[command(hide = true)]
    Manpage(manpage::Args),
    /// Print remote API v1's route table as JSON (what each route asks of its caller, which
    /// routes the Hypha plugin leases): the plugin reads it at startup.
    #[command(hide = true)]
    Routes,
    /// Check repository names and default branches, one JSON line at a time, with the
    /// server's rules: the Hypha plugin asks it before it asks Hypha anything.
    #[command(hide = true)]
    Names,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's access log and notes, gc's and create's notes: all at info.
    match &cli.command {
        Command::Serve(args) if args.log_format == serve::LogFormat::Json => {
            serve::install_json_log()
        }
        _ => drop(logging::install(
            tracing_subscriber::filter::LevelFilter::INFO,
        )),
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::print("error", e.as_ref());
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    // The library takes the environment as a map (its tests pass their own): read it once.
    let env: HashMap<String, String> = std::env::vars().collect();
    match command {
        Command::Serve(args) => serve::run(*args, &env),
        Command::Hook(command) => hook::run(command, &env),
        Command::Create(args) => create::run(args, &env),
        Command::Gc(args) => gc::run(args, &env),
        Command::Login(args) => login::login(args, &env),
        Command::Logout(args) => login::logout(args, &env),
        Command::Credential(args) => login::credential(args, &env),
        Command::Url(args) => url::run(args, &env),
        Command::Token(args) => token::run(args, &env),
        Command::Manpage(args) => manpage::run(args),
        Command::Routes => routes::run(),
        Command::Names => names::run(),
        Command::LfsAgent => {
            let stdin = std::io::stdin();
            Ok(hypha_git::lfs_agent::run(
                &mut stdin.lock(),
                std::io::stdout(),
            )?)
        }
    }
}
