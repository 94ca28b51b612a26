//! The remote-helper session git runs for a `hypha::` URL (docs/protocol.md, docs/design.md §5).
//!
//! Reads commands from git, keeps per-session state (options, the refs last listed), and
//! answers through [`protocol::Replies`]. `list` is one `refs` call (for a push, it also
//! refuses a token that cannot write: git sends nothing more when there is nothing to send);
//! `fetch` and `push` batches go to [`fetch`] and [`push`]. A rejected ref is a reply, not a failure; an error that stops
//! the session is returned to the binary, which prints it and exits non-zero. [`lfs`] records
//! the git-lfs settings of the remote at the first `list`, from its `refs` answer.

mod cut;
pub mod fetch;
pub mod git_version;
pub mod handoff;
mod kept_pack;
pub mod lfs;
mod local;
mod options;
pub mod protocol;
pub mod push;
mod smart_fetch;
mod state;

use crate::api::{RefsResponse, Route};
use crate::client::{self, Client};
use crate::config::{Remote, TokenSource};
use crate::progress::Progress;
pub use local::common_dir;
use options::Options;
use protocol::{Command, OptionReply, PushStatus, Replies};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
    /// The git that runs the helper is older than any this helper was tested with.
    #[error(
        "{found} is too old for hypha remotes: git {}.{} or newer is needed",
        git_version::OLDEST.0,
        git_version::OLDEST.1
    )]
    GitTooOld { found: String },
    #[error("cannot talk to git")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    #[error(transparent)]
    Push(#[from] push::Error),
    #[error(transparent)]
    SmartFetch(#[from] smart_fetch::Error),
    #[error("git sent '{0}' before any command")]
    UnexpectedBlank(&'static str),
    #[error("{command} needs a local repository, but git set no GIT_DIR")]
    NoRepository { command: &'static str },
    /// `list for-push` learned that the token cannot write: refused before git decides that
    /// there is nothing to send, so a read-only token never passes a push silently.
    #[error(
        "permission denied for '{repo}': the token from {origin} can read but not push; \
         push with a token that has write access"
    )]
    ReadOnly { repo: String, origin: TokenSource },
    /// The server has no remote API v1 and git's own smart-HTTP transport would not start.
    #[error("cannot run `git remote-http` for '{repo}' (its server has no remote API v1)")]
    Handoff {
        repo: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the binary decided about the terminal, for the session to apply git's wishes to.
/// The library never looks at stderr itself.
pub struct Ui {
    /// Whether bars can be drawn (stderr is a terminal); narrowed by `option progress`.
    pub progress: Progress,
    /// Applies `option verbosity N` to the log lines: the library emits `tracing` events
    /// (warnings, `-v` notes at info, `-vv` at debug) and the binary's subscriber filters.
    pub set_verbosity: Box<dyn Fn(u32)>,
}

impl Ui {
    /// No bars, and verbosity changes are ignored: for tests and embedding.
    pub fn quiet() -> Ui {
        Ui {
            progress: Progress::hidden(),
            set_verbosity: Box::new(|_| {}),
        }
    }
}

/// Everything a session needs, resolved by the binary.
pub struct Session<W: Write> {
    replies: Replies<W>,
    runtime: tokio::runtime::Runtime,
    client: Client,
    git_dir: Option<PathBuf>,
    options: Options,
    ui: Ui,
    /// The refs as last listed to git: git checks fast-forwards and leases against exactly
    /// these values, so a push compare-and-swaps against them too.
    listed: Option<RefsResponse>,
    /// `-v` said once which path this session takes (handoff says the other one).
    announced: bool,
    /// The remote's name as git gave it, until the first `list` has recorded git-lfs's
    /// settings for it from the `refs` answer ([`lfs::record`]).
    lfs_remote: Option<String>,
}

impl<W: Write> Session<W> {
    pub fn new(
        out: W,
        client: Client,
        git_dir: Option<PathBuf>,
        runtime: tokio::runtime::Runtime,
        ui: Ui,
    ) -> Self {
        let options = Options::default();
        (ui.set_verbosity)(options.verbosity);
        Session {
            replies: Replies::new(out),
            runtime,
            client,
            git_dir,
            options,
            ui,
            listed: None,
            announced: false,
            lfs_remote: None,
        }
    }

    /// Record git-lfs's settings for the remote git calls `name` ([`lfs::record`]) at the
    /// first `list`, with the LFS endpoint its `refs` answer names.
    pub fn with_lfs_remote(mut self, name: &str) -> Self {
        self.lfs_remote = Some(name.to_owned());
        self
    }

    pub fn remote(&self) -> &Remote {
        self.client.remote()
    }

    pub fn verbosity(&self) -> u32 {
        self.options.verbosity
    }

    /// Serve git until it closes stdin or sends the final blank line.
    pub fn run(&mut self, input: impl BufRead) -> Result<(), Error> {
        let mut lines = input.lines();
        while let Some(line) = lines.next() {
            match protocol::parse(&line?).map_err(old_git_or)? {
                Command::Blank => return Ok(()),
                Command::Capabilities => self.replies.capabilities()?,
                Command::Option { name, value } => {
                    let reply = self.options.set(&name, value.as_deref());
                    if let OptionReply::Unsupported = reply {
                        self.options.warn_if_downgraded(&name);
                    }
                    if name == "verbosity" {
                        (self.ui.set_verbosity)(self.options.verbosity);
                    }
                    self.replies.option(&reply)?;
                }
                Command::List { for_push } => self.list(for_push)?,
                Command::Fetch(first) => {
                    let mut batch = vec![first];
                    for line in lines.by_ref() {
                        match protocol::parse(&line?).map_err(old_git_or)? {
                            Command::Fetch(spec) => batch.push(spec),
                            Command::Blank => break,
                            _ => return Err(malformed_batch("fetch")),
                        }
                    }
                    self.fetch(batch)?;
                }
                Command::Push(first) => {
                    let mut batch = vec![first];
                    for line in lines.by_ref() {
                        match protocol::parse(&line?).map_err(old_git_or)? {
                            Command::Push(spec) => batch.push(spec),
                            Command::Blank => break,
                            _ => return Err(malformed_batch("push")),
                        }
                    }
                    self.push(batch)?;
                }
            }
        }
        Ok(())
    }

    fn list(&mut self, for_push: bool) -> Result<(), Error> {
        // Every git since 2.28 asks for the object format before its first `list`.
        if !self.announced && !self.options.object_format {
            if let Some(found) = git_version::too_old() {
                return Err(Error::GitTooOld { found });
            }
        }
        if !std::mem::replace(&mut self.announced, true) {
            tracing::info!(
                "hypha: using remote API v1 at {} for {}",
                self.remote().server,
                self.remote().display_name()
            );
        }
        if for_push {
            // A push needs a token whatever the repository: ask `git credential` now, not
            // only on a 401 (a public repository lists without one).
            self.client.fill_credentials();
        }
        let refs: RefsResponse = match self.client.take_probed_refs(for_push) {
            Some(refs) => refs?,
            None => self.runtime.block_on(
                self.client
                    .call(Route::Refs, &self.client.refs_request(for_push)),
            )?,
        };
        // Before git goes on to a clone's checkout or the pre-push hook, both of which run
        // git-lfs.
        if let (Some(dir), Some(name)) = (&self.git_dir, self.lfs_remote.take()) {
            lfs::record(dir, &name, self.remote(), refs.lfs_endpoint.as_deref());
        }
        if for_push && refs.can_write == Some(false) {
            // git sends no `push` when everything is up to date: this is the last word.
            return Err(match self.client.token_source() {
                None => self.client.no_token().into(),
                Some(origin) => Error::ReadOnly {
                    repo: self.remote().display_name(),
                    origin,
                },
            });
        }
        // Only name HEAD's target when it exists: a dangling HEAD breaks clones. Not for
        // push: `git push --mirror` would take the remote HEAD for a ref to delete, and git's
        // own receive-pack never advertises HEAD either.
        let head = refs
            .head
            .as_ref()
            .map(|h| h.symref.as_str())
            .filter(|target| !for_push && refs.refs.contains_key(*target));
        let format = self.options.object_format.then_some("sha1");
        self.replies.list(
            format,
            refs.refs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            head,
        )?;
        tracing::debug!(
            "hypha: {} lists {} refs{}",
            self.remote().display_name(),
            refs.refs.len(),
            if for_push { " for push" } else { "" }
        );
        self.listed = Some(refs);
        Ok(())
    }

    fn fetch(&mut self, batch: Vec<protocol::FetchSpec>) -> Result<(), Error> {
        let git_dir = self
            .git_dir
            .clone()
            .ok_or(Error::NoRepository { command: "fetch" })?;
        // git lists before it fetches; `--shallow-exclude` resolves names in that listing.
        let asked;
        let listed = match &self.listed {
            Some(l) => l,
            None => {
                asked = if self.options.shape.deepen_not.is_empty() {
                    RefsResponse::default()
                } else {
                    self.runtime.block_on(
                        self.client
                            .call(Route::Refs, &self.client.refs_request(false)),
                    )?
                };
                &asked
            }
        };
        let outcome = self.runtime.block_on(fetch::run(
            &self.client,
            &git_dir,
            &batch,
            listed,
            &self.options.fetch_options(),
            self.options.progress(self.ui.progress),
        ))?;
        self.options.end_batch();
        tracing::debug!(
            "hypha: fetch of {} did {outcome:?}",
            self.remote().display_name()
        );
        let lock = outcome.lock.map(|p| p.to_string_lossy().into_owned());
        self.replies.fetch_done(lock.as_deref())?;
        Ok(())
    }

    fn push(&mut self, batch: Vec<protocol::PushSpec>) -> Result<(), Error> {
        let git_dir = self
            .git_dir
            .clone()
            .ok_or(Error::NoRepository { command: "push" })?;
        // git always lists for-push first; if it did not, list now so CAS has a base.
        let listed = match &self.listed {
            Some(l) => l.clone(),
            None => self
                .runtime
                .block_on(self.client.call(Route::Refs, &serde_json::json!({})))?,
        };
        let outcome = self.runtime.block_on(push::run(
            &self.client,
            &git_dir,
            &listed,
            &batch,
            &self.options.push_options(),
            self.options.progress(self.ui.progress),
        ))?;
        self.options.end_batch();
        tracing::debug!(
            "hypha: push to {} sent {:?}",
            self.remote().display_name(),
            outcome.pack
        );
        self.replies.push_done(
            outcome
                .statuses
                .iter()
                .map(|(dst, s): &(String, PushStatus)| (dst.as_str(), s)),
        )?;
        Ok(())
    }
}

/// A line the helper cannot read: from a git older than the helper speaks with, say so.
fn old_git_or(error: protocol::Error) -> Error {
    match git_version::too_old() {
        Some(found) => Error::GitTooOld { found },
        None => error.into(),
    }
}

fn malformed_batch(command: &'static str) -> Error {
    old_git_or(protocol::Error::Malformed {
        command,
        line: "a different command inside the batch".into(),
    })
}

#[cfg(test)]
mod transcripts;

/// The packs this repository has already fetched from `remote` (the record fetches keep), for
/// the session's `refs` requests ([`crate::client::Client::with_known_packs`]).
pub fn known_packs(git_dir: &std::path::Path, remote: &crate::config::Remote) -> Vec<String> {
    state::load(git_dir, remote)
        .names()
        .iter()
        .cloned()
        .collect()
}

/// How many bytes of packs a session in `git_dir` asks the `refs` answer to carry itself: a
/// repository with no objects yet (a clone) takes small packs that way, saving the `GET`s
/// after the listing; any other session asks none, since an `ls-remote` or a push in a
/// repository that is behind would receive packs it never uses (docs/design.md §18).
pub fn clone_inline_max(git_dir: &std::path::Path) -> u64 {
    if fetch::has_any_pack_or_object(git_dir) {
        0
    } else {
        crate::fetch_packs::INLINE_MAX
    }
}
