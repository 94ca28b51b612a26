//! `git hypha hook add|list|remove`: manage a repository's webhooks through one `hooks` call,
//! then print the hooks and their last deliveries.

use hypha_git::api::{HooksRequest, HooksResponse, Route};
use hypha_git::auth;
use hypha_git::client::{self, Client};
use hypha_git::config;
use std::collections::HashMap;

/// `git hypha hook`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Add a webhook (or replace its secret); the signing secret is read from
    /// HYPHA_HOOK_SECRET, never from the command line, and is never shown again.
    Add {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
        /// The http(s) URL the server POSTs push events to.
        target: String,
    },
    /// List the webhooks (without their secrets) and the last deliveries.
    List {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
    },
    /// Remove a webhook.
    Remove {
        /// hypha::https://host/workspace/alias, or hypha::workspace/alias with HYPHA_SERVER_URL.
        url: String,
        /// The target URL given to `hook add`.
        target: String,
    },
}

/// `git hypha hook ...`: one `hooks` call, then the hooks and deliveries on stdout.
pub fn run(command: Command, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let (url, request, done) = match command {
        Command::Add { url, target } => {
            let secret = env
                .get("HYPHA_HOOK_SECRET")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "HYPHA_HOOK_SECRET is not set: put the webhook's signing secret there \
                         (it is never taken from the command line)"
                    )
                })?
                .clone();
            let done = format!("added webhook {target}");
            (
                url,
                HooksRequest::Add {
                    url: target,
                    secret,
                },
                Some(done),
            )
        }
        Command::List { url } => (url, HooksRequest::List, None),
        Command::Remove { url, target } => {
            let done = format!("removed webhook {target}");
            (url, HooksRequest::Remove { url: target }, Some(done))
        }
    };
    let remote = config::resolve(&url, env, config::git_config("hypha.server").as_deref())?;
    let client = Client::new(remote, config::env_token(env))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer: HooksResponse = runtime
        .block_on(client.call(Route::Hooks, &request))
        .map_err(|e| match e {
            client::Error::Forbidden { repo } => anyhow::anyhow!(
                "permission denied for '{repo}': managing webhooks needs admin rights (a) on \
                 the workspace"
            ),
            e => e.into(),
        })?;
    if let Some(done) = done {
        eprintln!("{done}");
        return Ok(());
    }
    #[allow(clippy::print_stdout)]
    {
        if answer.hooks.is_empty() {
            println!("no webhooks");
        }
        for h in &answer.hooks {
            println!("{}  (added {})", h.url, auth::format_utc(h.added_at));
        }
        if !answer.deliveries.is_empty() {
            println!("last deliveries (oldest first):");
        }
        for d in &answer.deliveries {
            let status = d.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
            println!(
                "  {}  {}  status {status}  attempts {}  {}  {}  {}{}",
                auth::format_utc(d.at),
                if d.ok { "delivered" } else { "failed" },
                d.attempts,
                d.id,
                d.url,
                d.refs.join(","),
                d.error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
