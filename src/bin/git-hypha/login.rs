//! `git hypha login`, `logout` and the hidden `credential`: the tokens `git hypha login` keeps
//! per server under the user's configuration directory, and git-lfs's way to read them.

use hypha_git::config;
use hypha_git::login;
use std::collections::HashMap;
use std::time::Duration;

/// `git hypha login`'s arguments.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// Server URL; default HYPHA_SERVER_URL, then `git config hypha.server`.
    server: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// `git hypha logout`'s arguments.
#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Server URL; default HYPHA_SERVER_URL, then `git config hypha.server`.
    server: Option<String>,
}

/// `git hypha credential`'s arguments: what git-lfs passes the helper line the remote helper
/// recorded.
#[derive(clap::Args)]
pub struct CredentialArgs {
    /// The hypha server the recorded helper line is for.
    #[arg(long)]
    server: String,
    /// get, store or erase (git's credential helper actions).
    action: String,
}

/// Show the login URL, wait for the browser login to finish, and store the token.
pub fn login(args: LoginArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let LoginArgs { server, timeout } = args;
    let server = login::resolve_server(server.as_deref(), env, config::git_config("hypha.server"))?;
    let path = login::logins_path().ok_or(login::Error::NoConfigDir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let http = reqwest::Client::new();
    let started = runtime.block_on(login::start(&http, &server))?;
    eprintln!("Open this URL in a browser to log in to {server}:");
    eprintln!("  {}", started.login_url);
    eprintln!("Waiting for the login to complete...");
    let token = runtime.block_on(login::wait(
        &http,
        &server,
        &started.key,
        Duration::from_secs(timeout),
    ))?;
    login::store_token(&path, &server, &token)?;
    eprintln!("logged in to {server}; token kept in {}", path.display());
    Ok(())
}

/// Forget the server's stored token; having none is not an error.
pub fn logout(args: LogoutArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let LogoutArgs { server } = args;
    let server = login::resolve_server(server.as_deref(), env, config::git_config("hypha.server"))?;
    let path = login::logins_path().ok_or(login::Error::NoConfigDir)?;
    if login::remove_token(&path, &server)? {
        eprintln!("logged out of {server}");
    } else {
        eprintln!("no stored login for {server}");
    }
    Ok(())
}

/// Answer git's credential request on stdin (the answer itself is the library's).
pub fn credential(args: CredentialArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let CredentialArgs { server, action } = args;
    // The url crate: this binary's own `url` module is the `url` subcommand.
    let server = ::url::Url::parse(&server)?;
    let mut request = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut request)?;
    let answer = hypha_git::credential_helper::answer(&action, &request, &server, env, |s| {
        login::stored_token(&login::logins_path()?, s)
    });
    if let Some(answer) = answer {
        #[allow(clippy::print_stdout)]
        {
            print!("{answer}");
        }
    }
    Ok(())
}
