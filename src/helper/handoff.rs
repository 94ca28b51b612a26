//! The session with git for a remote whose server has no remote API v1 (a stock Hypha, issue
//! 16): handed to git's own smart-HTTP transport, `git remote-http(s) <remote>
//! {server}/{ws}/git/{alias}`, so listing, pushing, deletes, tags and non-fast-forward hints
//! are git's own (docs/design.md §12); fetches are the helper's ([`super::smart_fetch`]).
//!
//! The child inherits stdout and stderr; its stdin is a pipe through which this module passes
//! git's commands on, line by line, keeping three for itself:
//! - `stateless-connect` (protocol v2) is answered `fallback` here: Hypha speaks v0 only, and
//!   the fetch must stay with the helper;
//! - `fetch` batches run in one upload-pack request of the helper's own and are answered from
//!   here (git's fetch-pack over stateless HTTP needs rounds Hypha answers wrongly, issue 23);
//!   the `option` lines before them go to the child, which answers them, and are noted here;
//! - from `list for-push` (or `push`) on, git's input is copied to the child as bytes.
//!
//! Each of these is written only when git waits for its answer, so the child, which answered
//! the line before, is not writing at the same time. Before handing over it asks Hypha once
//! whether our token may read, and whether it may push when git lists for a push
//! (`Client::check_smart_http`), so a missing repository, a wrong, expired or read-only token
//! (even on a push with nothing to send) end in our one-line errors, not in git's "returned
//! error: 403" or a prompt.
//!
//! The token reaches the child as `http.extraHeader` through `GIT_CONFIG_PARAMETERS` in its
//! environment (the form every git since before 2.25 reads): never in argv (which `ps`
//! shows), never in a log line (git's own traces redact `Authorization`).

use super::options::Options;
use super::protocol::{self, Replies};
use super::{Error, Ui};
use crate::client::{self, Access, Client};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
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

/// What the session does with one line from git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Passed on to the child, which answers it.
    Child,
    /// `option`: passed on (the child answers) and noted for the helper's own fetches.
    Option,
    /// `stateless-connect`: answered `fallback` here.
    Fallback,
    /// A `fetch` batch: run and answered here.
    Fetch,
    /// A push (or a command that leaves the line protocol): the rest of the input is the
    /// child's, copied as bytes.
    HandOver,
}

fn route(command: &str) -> Route {
    match command.split(' ').next().unwrap_or_default() {
        "option" => Route::Option,
        "stateless-connect" => Route::Fallback,
        "fetch" => Route::Fetch,
        "push" | "connect" | "import" | "export" => Route::HandOver,
        "list" if command.trim_end() == "list for-push" => Route::HandOver,
        _ => Route::Child,
    }
}

/// Run the session through `git remote-http(s)`; returns the exit code the helper should end
/// with. `remote` is the remote name git passed (the child reads its `remote.<name>.*`);
/// `out` is git's stdout, for the answers given here.
///
/// Once the child runs, a thread waits for it and ends this process with its exit code: the
/// child holds git's stdout, and when it ends early git waits for nothing more from us.
pub fn run<W: Write>(
    client: Client,
    runtime: tokio::runtime::Runtime,
    remote: &str,
    git_dir: Option<PathBuf>,
    input: impl BufRead,
    out: W,
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
    let child_in = child.stdin.take().ok_or_else(|| Error::Handoff {
        repo: name.clone(),
        source: std::io::Error::other("no pipe to its standard input"),
    })?;
    let failed = Arc::new(AtomicBool::new(false));
    let waiter_failed = failed.clone();
    std::thread::spawn(move || {
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(128);
        // A failure of the helper's own reports its own error and exit code.
        if !waiter_failed.load(Ordering::SeqCst) {
            std::process::exit(code);
        }
    });
    let mut session = Handed {
        client: &client,
        runtime: &runtime,
        git_dir,
        ui,
        replies: Replies::new(out),
        options: Options::default(),
        announced: false,
        child_in,
    };
    match session.pump(input) {
        // git closed our input or the child's (it ended): the waiter exits with its code.
        Ok(()) | Err(Error::Io(_)) => {
            drop(session);
            loop {
                std::thread::park();
            }
        }
        // Before the child sees end of input, so its exit cannot win the race.
        Err(e) => {
            failed.store(true, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// A session handed to the child: what the helper keeps of it.
struct Handed<'a, W: Write> {
    client: &'a Client,
    runtime: &'a tokio::runtime::Runtime,
    git_dir: Option<PathBuf>,
    ui: Ui,
    replies: Replies<W>,
    /// The options git set, as the child got them, for the helper's own fetches.
    options: Options,
    /// `-v` said once which path this session takes.
    announced: bool,
    child_in: ChildStdin,
}

impl<W: Write> Handed<'_, W> {
    /// Pass git's commands on to the child, answering those the helper keeps.
    fn pump(&mut self, mut input: impl BufRead) -> Result<(), Error> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let command = text.trim_end_matches(['\n', '\r']);
            match route(command) {
                Route::Child => {
                    if command.starts_with("list") {
                        self.announce();
                    }
                    self.pass_on(&line)?;
                }
                Route::Option => {
                    if let Ok(protocol::Command::Option { name, value }) = protocol::parse(command)
                    {
                        // The child answers; the helper's copy only remembers.
                        let _ = self.options.set(&name, value.as_deref());
                        if name == "verbosity" {
                            (self.ui.set_verbosity)(self.options.verbosity);
                        }
                    }
                    self.pass_on(&line)?;
                }
                Route::Fallback => {
                    self.announce();
                    self.replies.fallback()?;
                }
                Route::Fetch => {
                    self.announce();
                    let batch = read_batch(command, &mut input)?;
                    self.fetch(&batch)?;
                }
                Route::HandOver => {
                    self.announce();
                    if command == "list for-push" {
                        check_push(self.client, self.runtime)?;
                    }
                    self.pass_on(&line)?;
                    std::io::copy(&mut input, &mut self.child_in)?;
                    return Ok(());
                }
            }
        }
    }

    fn pass_on(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.child_in.write_all(line)?;
        self.child_in.flush()
    }

    fn announce(&mut self) {
        if !std::mem::replace(&mut self.announced, true) {
            let url = self.client.smart_http_url();
            tracing::info!(
                "hypha: {} has no remote API v1 for {}; using Hypha's smart HTTP at {url}",
                self.client.remote().server,
                self.client.remote().display_name()
            );
        }
    }

    fn fetch(&mut self, batch: &[protocol::FetchSpec]) -> Result<(), Error> {
        let git_dir = self
            .git_dir
            .clone()
            .ok_or(Error::NoRepository { command: "fetch" })?;
        let lock = super::smart_fetch::run(
            self.client,
            self.runtime,
            &git_dir,
            batch,
            &self.options.fetch_options(),
            self.options.progress(self.ui.progress),
        )?;
        self.options.end_batch();
        let lock = lock.map(|p| p.to_string_lossy().into_owned());
        self.replies.fetch_done(lock.as_deref())?;
        Ok(())
    }
}

/// The `fetch` lines of one batch, from `first` to the blank line that ends it.
fn read_batch(first: &str, input: &mut impl BufRead) -> Result<Vec<protocol::FetchSpec>, Error> {
    let mut batch = Vec::new();
    let mut line = first.to_owned();
    loop {
        match protocol::parse(&line)? {
            protocol::Command::Fetch(spec) => batch.push(spec),
            protocol::Command::Blank => return Ok(batch),
            _ => {
                return Err(protocol::Error::Malformed {
                    command: "fetch",
                    line: "a different command inside the batch".into(),
                }
                .into())
            }
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(batch);
        }
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
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
    fn keeps_fetches_and_v2_and_hands_pushes_over() {
        assert_eq!(route("stateless-connect git-upload-pack"), Route::Fallback);
        assert_eq!(route("fetch 0123 refs/heads/main"), Route::Fetch);
        assert_eq!(route("option depth 1"), Route::Option);
        assert_eq!(route("list for-push"), Route::HandOver);
        assert_eq!(
            route("push refs/heads/main:refs/heads/main"),
            Route::HandOver
        );
        for command in ["capabilities", "list", ""] {
            assert_eq!(route(command), Route::Child, "{command}");
        }
        let oid = "0123456789abcdef0123456789abcdef01234567";
        let first = format!("fetch {oid} refs/heads/main");
        let rest = format!("fetch {oid} refs/tags/v1\n\nlist\n");
        let mut input = rest.as_bytes();
        let batch = read_batch(&first, &mut input).expect("batch");
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].name, "refs/tags/v1");
        assert_eq!(input, b"list\n");
        assert!(read_batch(&first, &mut &b"list\n"[..]).is_err());
    }
}
