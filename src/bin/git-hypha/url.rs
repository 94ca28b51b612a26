//! `git hypha url`: print a repository's two clone URLs, the helper's `hypha::` one and
//! Hypha's smart HTTP one.

use hypha_git::config;
use std::collections::HashMap;

/// `git hypha url`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// workspace/alias (server from HYPHA_SERVER_URL or `git config hypha.server`), or a
    /// full hypha::https://host/workspace/alias.
    repo: String,
}

/// Resolve the address (no request to the server) and print both URLs on stdout.
pub fn run(args: Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let Args { repo } = args;
    let remote = config::resolve(&repo, env, config::git_config("hypha.server").as_deref())?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}", remote.url());
        println!("{}{}/git/{}", remote.server, remote.workspace, remote.alias);
    }
    Ok(())
}
