//! The session with git for a remote whose server has no remote API v1 (a stock Hypha, issue
//! 16): handed whole to git's own smart-HTTP transport, `git remote-http(s) <remote>
//! {server}/{ws}/git/{alias}`, so depth, non-fast-forward hints and every other smart-HTTP
//! feature Hypha has work as git does them (docs/design.md §12).
//!
//! The child inherits stdout and stderr; its stdin is a pipe through which this module passes
//! git's commands on, reading them only until the first one that says what git wants (`list`,
//! `stateless-connect`, ...) and copying bytes after that. Before handing over it asks Hypha
//! once whether our token may read, and whether it may push when git lists for a push
//! (`Client::check_smart_http`), so a missing repository, a wrong, expired or read-only token (even on a push with nothing to
//! send) end in our one-line errors, not in git's "returned error: 403" or a prompt.
//!
//! The token reaches the child as `http.extraHeader` through `GIT_CONFIG_PARAMETERS` in its
//! environment (the form every git since before 2.25 reads): never in argv (which `ps`
//! shows), never in a log line (git's own traces redact `Authorization`).
//!
//! Does not speak the remote-helper protocol itself and never writes stdout.

use super::{Error, Ui};
use crate::client::{self, Access, Client};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `GIT_CONFIG_PARAMETERS` (what `git -c` sets for its children) with
/// `http.extraHeader=Authorization: Bearer <token>` after whatever the caller's environment
/// already holds there. In the `'key=value'` form every git reads: `GIT_CONFIG_COUNT` would
/// need git 2.31, and git 2.25-2.30 would then send no token.
pub fn config_env(env: &HashMap<String, String>, token: &str) -> Vec<(String, String)> {
    let entry = sq_quote(&format!("http.extraHeader=Authorization: Bearer {token}"));
    let value = match env
        .get("GIT_CONFIG_PARAMETERS")
        .filter(|v| !v.trim().is_empty())
    {
        Some(existing) => format!("{existing} {entry}"),
        None => entry,
    };
    vec![("GIT_CONFIG_PARAMETERS".into(), value)]
}

/// git's `sq_quote_buf` (quote.c): single quotes, with `'` and `!` taken out of them.
fn sq_quote(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '!' => out.push_str("'\\!'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The first command after which git's input is no longer lines we need to read.
fn decides(command: &str) -> bool {
    let word = command.split(' ').next().unwrap_or_default();
    matches!(
        word,
        "list" | "stateless-connect" | "connect" | "fetch" | "push" | "import" | "export"
    )
}

/// Run the session through `git remote-http(s)`; returns the exit code the helper should end
/// with. `remote` is the remote name git passed (the child reads its `remote.<name>.*`).
///
/// Once the child runs, a thread waits for it and ends this process with its exit code: the
/// child holds git's stdout, and when it ends early git waits for nothing more from us.
pub fn run(
    client: Client,
    runtime: tokio::runtime::Runtime,
    remote: &str,
    input: impl BufRead,
    ui: Ui,
) -> Result<u8, Error> {
    let name = client.remote().display_name();
    if client.token_secret().is_none() {
        // The child gets its token at start, before git says whether it pushes: the whole
        // resolution (credential helper, then `git hypha login`) happens now.
        client.fill_credentials();
    }
    runtime.block_on(client.check_smart_http(Access::Read))?;
    let url = client.smart_http_url();
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut command = Command::new("git");
    command
        .arg(format!("remote-{}", url.scheme()))
        .arg(remote)
        .arg(url.as_str())
        .stdin(Stdio::piped());
    if let Some(token) = client.token_secret() {
        command.envs(config_env(&env, &token));
    }
    let mut child = command.spawn().map_err(|source| Error::Handoff {
        repo: name.clone(),
        source,
    })?;
    let mut child_in = child.stdin.take().ok_or_else(|| Error::Handoff {
        repo: name.clone(),
        source: std::io::Error::other("no pipe to its standard input"),
    })?;
    let failed = Arc::new(AtomicBool::new(false));
    let waiter_failed = failed.clone();
    std::thread::spawn(move || {
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(128);
        // A failed check below reports its own error and exit code.
        if !waiter_failed.load(Ordering::SeqCst) {
            std::process::exit(code);
        }
    });
    let announce = || {
        tracing::info!(
            "hypha: {} has no remote API v1 for {name}; using Hypha's smart HTTP at {url}",
            client.remote().server
        )
    };
    match pump(input, &mut child_in, &client, &runtime, &ui, announce) {
        // Before the child sees end of input, so its exit cannot win the race.
        Err(e @ (Error::Client(_) | Error::ReadOnly { .. })) => {
            failed.store(true, Ordering::SeqCst);
            Err(e)
        }
        // git closed our input, or the child's (it ended): the waiter exits with its code.
        _ => {
            drop(child_in);
            loop {
                std::thread::park();
            }
        }
    }
}

/// Pass git's commands on to the child, checking push access when git lists for a push.
fn pump(
    mut input: impl BufRead,
    child_in: &mut ChildStdin,
    client: &Client,
    runtime: &tokio::runtime::Runtime,
    ui: &Ui,
    announce: impl Fn(),
) -> Result<(), Error> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end();
        if let Some(level) = command.strip_prefix("option verbosity ") {
            if let Ok(level) = level.trim().parse() {
                (ui.set_verbosity)(level);
            }
        }
        if decides(command) {
            announce();
            if command == "list for-push" {
                check_push(client, runtime)?;
            }
            child_in.write_all(&line)?;
            child_in.flush()?;
            std::io::copy(&mut input, child_in)?;
            return Ok(());
        }
        child_in.write_all(&line)?;
        child_in.flush()?;
    }
}

/// Hypha checks write access when git asks for `git-receive-pack`'s refs; asking first turns
/// its 401/403 into our errors, and refuses a read-only token even when nothing would be sent
/// (stock Hypha's receive-pack itself refuses it too, but in git's words).
fn check_push(client: &Client, runtime: &tokio::runtime::Runtime) -> Result<(), Error> {
    match runtime.block_on(client.check_smart_http(Access::Write)) {
        Ok(()) => Ok(()),
        Err(client::Error::Forbidden { repo }) => match client.token_source() {
            Some(origin) => Err(Error::ReadOnly { repo, origin }),
            None => Err(client.no_token().into()),
        },
        Err(client::Error::Unauthenticated { .. }) if client.token_source().is_none() => {
            Err(client.no_token().into())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_goes_after_the_callers_config() {
        let none = config_env(&HashMap::new(), "t0k");
        assert_eq!(
            none,
            vec![(
                "GIT_CONFIG_PARAMETERS".to_owned(),
                "'http.extraHeader=Authorization: Bearer t0k'".to_owned()
            )]
        );
        let theirs: HashMap<String, String> = [(
            "GIT_CONFIG_PARAMETERS".to_owned(),
            "'core.quotepath'='false'".to_owned(),
        )]
        .into();
        let after = config_env(&theirs, "t0k");
        assert_eq!(
            after[0].1,
            "'core.quotepath'='false' 'http.extraHeader=Authorization: Bearer t0k'"
        );
        assert_eq!(sq_quote("a'b!c"), "'a'\\''b'\\!'c'");
    }

    /// Every git from 2.25 reads the header from the environment (checked with the git on
    /// PATH: `git config` shows what a child git sees).
    #[test]
    fn git_reads_the_header() {
        let env = config_env(&HashMap::new(), "t0k");
        let out = Command::new("git")
            .args(["config", "--get", "http.extraheader"])
            .envs(env)
            .output()
            .expect("git");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "Authorization: Bearer t0k"
        );
    }

    #[test]
    fn reads_lines_only_until_git_says_what_it_wants() {
        for command in [
            "list",
            "list for-push",
            "stateless-connect git-upload-pack",
            "push refs/heads/main:refs/heads/main",
            "fetch 0123 refs/heads/main",
        ] {
            assert!(decides(command), "{command}");
        }
        for command in ["capabilities", "option verbosity 2", "option depth 1", ""] {
            assert!(!decides(command), "{command}");
        }
    }
}
