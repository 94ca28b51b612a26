//! `git hypha create`: an empty repository, through remote API v1 or, on a Hypha without the
//! plugin, through its artifact manager.

use hypha_git::api::{CreateRequest, Route};
use hypha_git::client::{Api, Client};
use hypha_git::config;
use std::collections::HashMap;

/// `git hypha create`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
    url: String,
    /// Allow anonymous reads.
    #[arg(long)]
    public: bool,
    /// Default branch.
    #[arg(long, default_value = "main")]
    default_branch: String,
}

/// Create the repository and say so on stderr.
pub fn run(args: Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let Args {
        url,
        public,
        default_branch,
    } = args;
    let remote = config::resolve(&url, env, None)?;
    let name = remote.display_name();
    let client = Client::new(remote, config::env_token(env))?;
    let runtime = tokio::runtime::Runtime::new()?;
    if runtime.block_on(client.probe())? == Api::Absent {
        // A stock Hypha: its artifact manager makes the git repository itself.
        if !hypha_git::names::refname::is_valid(&format!("refs/heads/{default_branch}")) {
            anyhow::bail!("invalid default branch '{default_branch}'");
        }
        let git_url =
            runtime.block_on(client.create_in_artifact_manager(public, &default_branch))?;
        eprintln!("created {name} (no remote API v1 on this server: git uses {git_url})");
        return Ok(());
    }
    let _: serde_json::Value = runtime.block_on(client.call(
        Route::Create,
        &CreateRequest {
            public,
            default_branch: Some(default_branch),
        },
    ))?;
    eprintln!("created {name}");
    Ok(())
}
