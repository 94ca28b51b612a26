//! `git hypha token`: print a token signed with HYPHA_JWT_SECRET, for tests and CI.

use hypha_git::auth::{self, Permission};
use std::collections::HashMap;
use std::time::Duration;

/// `git hypha token`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Workspace the token grants access to ("*" for all).
    #[arg(long)]
    workspace: String,
    /// r (read), rw (read and write) or a (admin).
    #[arg(long, default_value = "rw")]
    permission: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    expires_in: u64,
    /// Subject (user id) written into the token.
    #[arg(long, default_value = "git-hypha")]
    subject: String,
}

/// Mint the token and print it on stdout, its only output.
pub fn run(args: Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let Args {
        workspace,
        permission,
        expires_in,
        subject,
    } = args;
    let secret = env
        .get("HYPHA_JWT_SECRET")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("HYPHA_JWT_SECRET is not set"))?;
    let permission: Permission = permission.parse()?;
    let token = auth::mint(
        secret.as_bytes(),
        &subject,
        &[(workspace, permission)],
        Duration::from_secs(expires_in),
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{token}");
    }
    Ok(())
}
