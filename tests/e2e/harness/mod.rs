//! The end-to-end harness: hermetic git, a server per test, and commands that explain themselves
//! when they fail.
//!
//! Every command runs with a cleared environment (only what [`TestEnv::command`] sets), `HOME`
//! in the test's scratch directory, `GIT_CONFIG_NOSYSTEM=1`, a fixed identity and clock, and the
//! directory of the freshly built binaries first on `PATH`, so git finds `git-remote-hypha` and
//! `git-hypha` exactly as it would once they are installed. Nothing of the developer's own git
//! configuration, credentials or Hypha login can leak in.
//!
//! Every captured stdout and stderr is scanned for secrets (each token minted in the test, and
//! presigned-URL signatures): docs/design.md §6 says they are never printed, so a leak fails whichever
//! test happens to trigger it.
//!
//! With `HYPHA_E2E_HYPHA_ENV` set, the tests run against a running Hypha with the plugin
//! instead of a `git hypha serve` of their own ([`hypha`], tests/hypha/run.sh).

pub mod hypha;
pub mod oracle;
pub mod proxy;
pub mod receiver;
pub mod server;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub use server::Server;

/// Workspace every test uses unless it needs a second one.
pub const WS: &str = "ws";

/// One command may take this long before the harness kills it (and its helper) and fails the
/// test with what it printed so far: a hung helper must not hang the suite.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Fixed dates and identities make object ids reproducible, which is what lets the `file://`
/// oracle compare `--porcelain` lines that contain ids.
const DATE: &str = "1700000000 +0000";

/// Substrings that only a presigned URL would contain; none may ever reach a terminal.
const PRESIGNED_MARKERS: &[&str] = &["sig=", "x-amz-signature", "x-amz-credential"];

/// Directory holding `git-remote-hypha` and `git-hypha` as cargo built them for this test run.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_git-remote-hypha"))
        .parent()
        .expect("a binary path has a parent")
        .to_path_buf()
}

/// The `PATH` every command gets: our binaries first, then the system's (for git, gpg, sh).
fn search_path() -> OsString {
    let mut dirs = vec![bin_dir()];
    if let Some(system) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&system));
    }
    std::env::join_paths(dirs).expect("PATH entries contain no separator")
}

/// One test's world: a scratch directory (home, work trees, oracle repositories), a running
/// server, and the default token for [`WS`].
pub struct TestEnv {
    // Field order is drop order: the server dies before its root directory is removed.
    pub server: Server,
    token: String,
    secrets: RefCell<Vec<String>>,
    /// Hypha mode: this test's namespace (see [`hypha`]); `None` against `git hypha serve`.
    hypha: Option<Namespace>,
    scratch: Option<tempfile::TempDir>,
    scratch_path: PathBuf,
}

impl TestEnv {
    /// Starts a server with a fresh secret and mints a `rw` token for [`WS`], which every command
    /// gets as `HYPHA_TOKEN` unless it says otherwise.
    pub fn new() -> TestEnv {
        TestEnv::with_serve_args(&[])
    }

    /// As [`TestEnv::new`], with extra `git hypha serve` arguments for this test's server.
    pub fn with_serve_args(extra: &[String]) -> TestEnv {
        let scratch = tempfile::Builder::new()
            .prefix("hypha-e2e-")
            .tempdir()
            .expect("create scratch directory");
        let scratch_path = scratch.path().to_path_buf();
        let home = scratch_path.join("home");
        std::fs::create_dir_all(home.join(".config")).expect("create HOME");
        // The global config of the hermetic HOME. Only what makes runs reproducible; advice
        // stays on because tests check git's hints.
        std::fs::write(
            home.join(".gitconfig"),
            "[init]\n\tdefaultBranch = main\n\
             [user]\n\tname = A U Thor\n\temail = author@example.com\n\
             [core]\n\tpager = cat\n",
        )
        .expect("write global git config");
        let (server, hypha) = match hypha::target() {
            Some(target) => {
                if !extra.is_empty() {
                    hypha::excluded(&format!("`git hypha serve` arguments {extra:?}"));
                }
                (Server::hypha(target), Some(Namespace::new(target)))
            }
            None => (
                Server::start_with(&scratch_path.join("server"), &base_env(&home), extra),
                None,
            ),
        };
        let mut env = TestEnv {
            server,
            token: String::new(),
            secrets: RefCell::new(Vec::new()),
            hypha,
            scratch: Some(scratch),
            scratch_path,
        };
        env.token = env.mint(WS, "rw");
        env
    }

    /// Absolute path of `rel` inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch_path.join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// Creates (and returns) an empty directory that is not inside any repository.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        std::fs::create_dir_all(&dir).expect("create directory");
        dir
    }

    /// The default `rw` token for [`WS`].
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Mints a token signed with the server's secret and remembers it as a secret to scan for.
    pub fn mint(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, None, None));
        }
        let secret = self.server.secret().to_string();
        self.mint_with_secret(&secret, workspace, permission)
    }

    /// Mints a well-formed token signed with a secret the server does not know.
    pub fn mint_foreign(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, None, Some(FOREIGN_SECRET)));
        }
        self.mint_with_secret(FOREIGN_SECRET, workspace, permission)
    }

    /// Mints a token, signed with the server's secret, that expired a minute ago.
    pub fn mint_expired(&self, workspace: &str, permission: &str) -> String {
        if let Some(ns) = &self.hypha {
            return self.remember(ns.mint(workspace, permission, Some(-60), None));
        }
        let out = self
            .git_hypha(&[
                "token",
                "--workspace",
                workspace,
                "--permission",
                permission,
                "--expires-in",
                "0",
            ])
            .env("HYPHA_JWT_SECRET", self.server.secret())
            .no_token()
            .unscanned()
            .ok();
        self.remember(out.stdout.trim().to_string())
    }

    fn remember(&self, token: String) -> String {
        self.secrets.borrow_mut().push(token.clone());
        token
    }

    /// The server's name of test workspace `workspace`: the same against `git hypha serve`,
    /// this test's own Hypha workspace in Hypha mode (whose name ends in `-{workspace}`).
    pub fn workspace(&self, workspace: &str) -> String {
        match &self.hypha {
            Some(ns) => ns.workspace(workspace),
            None => workspace.to_string(),
        }
    }

    /// `git hypha token --workspace WS --permission P` with `HYPHA_JWT_SECRET=secret`.
    fn mint_with_secret(&self, secret: &str, workspace: &str, permission: &str) -> String {
        let out = self
            .git_hypha(&[
                "token",
                "--workspace",
                workspace,
                "--permission",
                permission,
            ])
            .env("HYPHA_JWT_SECRET", secret)
            .no_token()
            .unscanned()
            .ok();
        let token = out.stdout.trim().to_string();
        assert!(
            !token.is_empty() && !token.contains('\n'),
            "`git hypha token` must print the token as one line\n{out}"
        );
        self.secrets.borrow_mut().push(token.clone());
        token
    }

    /// `hypha::http://127.0.0.1:PORT/ws/alias`.
    pub fn url(&self, alias: &str) -> String {
        self.url_in(WS, alias)
    }

    pub fn url_in(&self, workspace: &str, alias: &str) -> String {
        format!(
            "hypha::{}/{}/{alias}",
            self.server.url(),
            self.workspace(workspace)
        )
    }

    /// `git hypha create` of a private repository in [`WS`]; returns its URL.
    pub fn create(&self, alias: &str) -> String {
        let url = self.url(alias);
        self.git_hypha(&["create", &url]).ok();
        url
    }

    /// `git hypha create --public`; returns its URL.
    pub fn create_public(&self, alias: &str) -> String {
        let url = self.url(alias);
        self.git_hypha(&["create", &url, "--public"]).ok();
        url
    }

    /// Creates a repository in another workspace with a token for that workspace.
    pub fn create_in(&self, workspace: &str, alias: &str) -> String {
        let url = self.url_in(workspace, alias);
        let token = self.mint(workspace, "rw");
        self.git_hypha(&["create", &url]).token(&token).ok();
        url
    }

    /// `git hypha ARGS` run through git, as a user types it.
    pub fn git_hypha(&self, args: &[&str]) -> Cmd<'_> {
        let mut full = vec!["hypha"];
        full.extend_from_slice(args);
        self.cmd(&self.scratch_path, &full)
    }

    /// The `.git` directory of a repository in the server's storage (docs/design.md §3). In Hypha
    /// mode: Hypha's `{ws}/artifacts/{uuid}/.git` in s3s-fs's directory, or a path that does
    /// not exist when Hypha has no such artifact.
    pub fn stored_repo(&self, alias: &str) -> PathBuf {
        if let Some(ns) = &self.hypha {
            return ns.stored_repo(WS, alias);
        }
        self.server
            .root()
            .join(WS)
            .join("artifacts")
            .join(alias)
            .join(".git")
    }

    /// Pack files of a stored repository: file name -> size. The way to prove "nothing was
    /// uploaded" or "only a small pack was uploaded" without counters in the product.
    pub fn remote_packs(&self, alias: &str) -> BTreeMap<String, u64> {
        packs_in(&self.stored_repo(alias).join("objects/pack"))
    }

    /// Pack files of a local repository (work tree or bare).
    pub fn local_packs(&self, repo: &Path) -> BTreeMap<String, u64> {
        let git_dir = self.git(repo, &["rev-parse", "--absolute-git-dir"]).stdout;
        packs_in(&Path::new(git_dir.trim()).join("objects/pack"))
    }

    /// A git command in `dir`, not yet run.
    pub fn cmd(&self, dir: &Path, args: &[&str]) -> Cmd<'_> {
        Cmd {
            env: self,
            program: OsString::from("git"),
            dir: dir.to_path_buf(),
            args: args.iter().map(OsString::from).collect(),
            vars: Vec::new(),
            token: Some(self.token.clone()),
            stdin: None,
            scan: true,
        }
    }

    /// Runs git and requires success.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Out {
        self.cmd(dir, args).ok()
    }

    /// `git init NAME` in the scratch directory; returns the work tree.
    pub fn init(&self, name: &str) -> PathBuf {
        self.init_at(&self.path(name))
    }

    pub fn init_at(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create work tree");
        self.git(dir, &["init", "-q"]);
        dir.to_path_buf()
    }

    /// `git init --bare` and the `file://` URL of the result: the oracle remote.
    pub fn init_bare(&self, dir: &Path) -> String {
        std::fs::create_dir_all(dir).expect("create bare repository");
        self.git(dir, &["init", "-q", "--bare"]);
        format!("file://{}", dir.display())
    }

    /// Clones `url` into `dir` (absolute) and checks the result with `git fsck --full`.
    pub fn clone(&self, url: &str, dir: &Path) -> Out {
        let parent = dir.parent().expect("clone target has a parent");
        std::fs::create_dir_all(parent).expect("create clone parent");
        let out = self.git(parent, &["clone", url, &dir.to_string_lossy()]);
        self.fsck(dir);
        out
    }

    /// Writes `name.txt` with content derived from `name`, commits it with message `name`, and
    /// returns the new `HEAD`.
    pub fn commit(&self, repo: &Path, name: &str) -> String {
        let file = repo.join(format!("{}.txt", name.replace('/', "-")));
        std::fs::write(&file, format!("content of {name}\n")).expect("write file");
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-q", "-m", name]);
        self.rev(repo, "HEAD")
    }

    /// `git rev-parse --verify REV`.
    pub fn rev(&self, repo: &Path, rev: &str) -> String {
        self.git(repo, &["rev-parse", "--verify", "--end-of-options", rev])
            .stdout
            .trim()
            .to_string()
    }

    /// `git for-each-ref` with ids, types and names of the given patterns.
    pub fn refs(&self, repo: &Path, patterns: &[&str]) -> String {
        let mut args = vec![
            "for-each-ref",
            "--format=%(objectname) %(objecttype) %(refname)",
        ];
        args.extend_from_slice(patterns);
        self.git(repo, &args).stdout
    }

    /// `git ls-remote URL` run from `dir`, lines sorted so transports that list in different
    /// orders compare equal.
    pub fn ls_remote(&self, dir: &Path, url: &str) -> String {
        sorted_lines(&self.git(dir, &["ls-remote", url]).stdout)
    }

    /// `git fsck --full` must pass and report nothing (dangling objects aside: a rebase leaves
    /// some legitimately).
    pub fn fsck(&self, repo: &Path) {
        let out = self.git(repo, &["fsck", "--full", "--no-dangling"]);
        assert!(
            out.stdout.trim().is_empty(),
            "git fsck reported problems\n{out}"
        );
    }

    /// Everything the server printed so far. In Hypha mode: Hypha's log, which holds what every
    /// test of the run did (enough to show that this test's secrets never reach it).
    pub fn server_log(&self) -> String {
        self.server.log()
    }

    /// The environment every command starts from.
    fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut vars = base_env(&self.home());
        // Stops git from looking for a repository above the scratch directory, so "outside a
        // repository" means outside even if /tmp happened to be inside one.
        vars.push((
            "GIT_CEILING_DIRECTORIES".into(),
            self.scratch_path.clone().into(),
        ));
        vars
    }

    fn check_secrets(&self, out: &Out) {
        let secrets = self.secrets.borrow();
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            for (i, secret) in secrets.iter().enumerate() {
                if !secret.is_empty() && text.contains(secret.as_str()) {
                    panic!(
                        "token #{i} minted by this test appears in {stream} (tokens are never \
                         printed, docs/design.md §6)\n{}",
                        out.redacted(&secrets)
                    );
                }
            }
            let lower = text.to_lowercase();
            for marker in PRESIGNED_MARKERS {
                if lower.contains(marker) {
                    panic!(
                        "{stream} contains {marker:?}: a presigned URL was printed (docs/design.md §6)\n{}",
                        out.redacted(&secrets)
                    );
                }
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if thread::panicking() && std::env::var_os("HYPHA_E2E_KEEP").is_some() {
            if let Some(scratch) = self.scratch.take() {
                eprintln!(
                    "HYPHA_E2E_KEEP: scratch directory kept at {}",
                    scratch.keep().display()
                );
            }
        }
    }
}

const FOREIGN_SECRET: &str = "not-the-server-secret-0123456789abcdef";

/// One test's names on a shared Hypha server: test workspace `W` is the user workspace
/// `ws-user-e2e<unique>-W`, owned by user `e2e<unique>-W`.
struct Namespace {
    target: &'static hypha::Hypha,
    unique: String,
    /// Workspaces already made to exist on Hypha.
    made: RefCell<BTreeSet<String>>,
}

impl Namespace {
    fn new(target: &'static hypha::Hypha) -> Namespace {
        Namespace {
            target,
            unique: server::unique_id(),
            made: RefCell::new(BTreeSet::new()),
        }
    }

    fn owner(&self, workspace: &str) -> String {
        let w: String = workspace
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("e2e{}-{w}", self.unique)
    }

    fn workspace(&self, workspace: &str) -> String {
        if workspace == "*" {
            return "*".into();
        }
        format!("ws-user-{}", self.owner(workspace))
    }

    /// `a` is the owner (Hypha makes a user admin of `ws-user-<id>`); `rw` and `r` are
    /// other users with just that grant, so Hypha's workspace permission check decides.
    fn mint(
        &self,
        workspace: &str,
        permission: &str,
        expires_in: Option<i64>,
        secret: Option<&str>,
    ) -> String {
        let lifetime = expires_in.unwrap_or_else(hypha::Hypha::default_lifetime);
        let owner = self.owner(workspace);
        if workspace == "*" {
            return self
                .target
                .token(&format!("{owner}-any"), "*", permission, lifetime, secret);
        }
        let ws = self.workspace(workspace);
        if permission == "a" {
            return self.target.token(&owner, &ws, "a", lifetime, secret);
        }
        // Granted users act in a workspace that exists: its owner's first call creates it.
        self.make(workspace);
        self.target.token(
            &format!("{owner}-{permission}"),
            &ws,
            permission,
            lifetime,
            secret,
        )
    }

    fn owner_token(&self, workspace: &str) -> String {
        self.target.token(
            &self.owner(workspace),
            &self.workspace(workspace),
            "a",
            hypha::Hypha::default_lifetime(),
            None,
        )
    }

    /// Hypha creates a user's workspace on that user's first RPC call.
    fn make(&self, workspace: &str) {
        if self.made.borrow().contains(workspace) {
            return;
        }
        let (status, body) = self
            .target
            .artifact_rpc(&self.owner_token(workspace), "list", "{}");
        assert_eq!(
            status,
            200,
            "Hypha: artifact-manager.list as the owner of {} (creates the workspace): {body}",
            self.workspace(workspace)
        );
        self.made.borrow_mut().insert(workspace.to_string());
    }

    /// Hypha's artifact manager knows the UUID under which the repository is stored. (`list`
    /// filtered by alias, not `read`: `read` computes the git versions and takes a second.)
    fn stored_repo(&self, workspace: &str, alias: &str) -> PathBuf {
        let ws = self.workspace(workspace);
        let query = serde_json::json!({ "filters": { "alias": alias } }).to_string();
        let (status, body) = self
            .target
            .artifact_rpc(&self.owner_token(workspace), "list", &query);
        assert_eq!(status, 200, "Hypha: list {ws} (alias {alias}): {body}");
        let listing: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Hypha: list {ws} (alias {alias}): {e}: {body}"));
        let id = format!("{ws}/{alias}");
        let uuid = listing
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["id"].as_str() == Some(id.as_str()))
            .map(|a| {
                a["_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("Hypha: {id} is listed without _id: {body}"))
                    .to_string()
            });
        let dir = self.target.store().join(&ws).join("artifacts");
        match uuid {
            Some(uuid) => dir.join(uuid).join(".git"),
            None => dir.join(format!("no-artifact-{alias}")).join(".git"),
        }
    }
}

/// The hermetic environment: nothing inherited but `PATH`.
fn base_env(home: &Path) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), search_path()),
        ("HOME".into(), home.into()),
        ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
        ("TZ".into(), "UTC".into()),
        // A credential prompt would wait forever for a terminal: fail instead.
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ];
    for (role, name, email) in [
        ("AUTHOR", "A U Thor", "author@example.com"),
        ("COMMITTER", "C O Mitter", "committer@example.com"),
    ] {
        vars.push((format!("GIT_{role}_NAME").into(), name.into()));
        vars.push((format!("GIT_{role}_EMAIL").into(), email.into()));
        vars.push((format!("GIT_{role}_DATE").into(), DATE.into()));
    }
    vars
}

fn packs_in(dir: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect()
}

pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Fails with `what` unless some line of `text` contains every one of `needles`.
#[track_caller]
pub fn assert_line(out: &Out, text: &str, needles: &[&str]) {
    let found = text
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)));
    assert!(
        found,
        "expected a line containing all of {needles:?}\n{out}"
    );
}

/// A command about to run. Defaults: git, in the given directory, `HYPHA_TOKEN` set to the
/// test's default token, stdin closed.
pub struct Cmd<'e> {
    env: &'e TestEnv,
    program: OsString,
    dir: PathBuf,
    args: Vec<OsString>,
    vars: Vec<(OsString, OsString)>,
    token: Option<String>,
    stdin: Option<Vec<u8>>,
    scan: bool,
}

impl<'e> Cmd<'e> {
    /// Runs another program than git (with the same hermetic environment).
    pub fn program(mut self, program: impl AsRef<OsStr>) -> Self {
        self.program = program.as_ref().to_os_string();
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.vars.push((key.as_ref().into(), value.as_ref().into()));
        self
    }

    /// Uses `token` as `HYPHA_TOKEN` instead of the default one.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Runs without `HYPHA_TOKEN`: anonymous.
    pub fn no_token(mut self) -> Self {
        self.token = None;
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Skips the secret scan: only for commands whose job is to print a secret (`git hypha
    /// token`).
    pub(crate) fn unscanned(mut self) -> Self {
        self.scan = false;
        self
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.vars {
            text.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
        if self.token.is_none() {
            text.push_str("(no HYPHA_TOKEN) ");
        }
        text.push_str(&self.program.to_string_lossy());
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains([' ', '"', '\'', '*', '#']) {
                text.push_str(&format!(" '{arg}'"));
            } else {
                text.push_str(&format!(" {arg}"));
            }
        }
        text
    }

    /// Runs the command and returns what it did, whatever its status.
    pub fn run(self) -> Out {
        let desc = self.describe();
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(&self.dir).env_clear();
        for (key, value) in self.env.base_env() {
            command.env(key, value);
        }
        if let Some(token) = &self.token {
            command.env("HYPHA_TOKEN", token);
        }
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout can kill git together with the helper it ran.
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{desc}` in {}: {e}", self.dir.display()));
        let pid = child.id();

        let writer = self.stdin.clone().map(|input| {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            thread::spawn(move || {
                // git may exit before reading everything; that shows in its status instead.
                let _ = pipe.write_all(&input);
            })
        });
        let stdout = drain(child.stdout.take().expect("stdout was piped"));
        let stderr = drain(child.stderr.take().expect("stderr was piped"));

        let (done, finished) = mpsc::channel::<()>();
        let watchdog = thread::spawn(move || match finished.recv_timeout(COMMAND_TIMEOUT) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Negative pid: the whole group, i.e. git and the helper it started.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
                true
            }
            _ => false,
        });
        let status = child.wait().expect("wait for child");
        let _ = done.send(());
        let timed_out = watchdog.join().expect("watchdog thread");
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let out = Out {
            desc,
            dir: self.dir.clone(),
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
        };
        if timed_out {
            panic!(
                "command timed out after {COMMAND_TIMEOUT:?} and was killed\n{out}{}",
                self.env.server.log_tail()
            );
        }
        if self.scan {
            self.env.check_secrets(&out);
        }
        out
    }

    /// Runs and requires exit status 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        let env = self.env;
        let out = self.run();
        if out.code != Some(0) {
            panic!(
                "command failed unexpectedly\n{out}{}",
                env.server.log_tail()
            );
        }
        out
    }

    /// Runs and requires a non-zero exit status (or death by signal).
    #[track_caller]
    pub fn fails(self) -> Out {
        let env = self.env;
        let out = self.run();
        if out.code == Some(0) {
            panic!(
                "command succeeded but should have failed\n{out}{}",
                env.server.log_tail()
            );
        }
        out
    }

    /// Runs and requires exactly this exit status.
    #[track_caller]
    pub fn code(self, expected: i32) -> Out {
        let env = self.env;
        let out = self.run();
        if out.code != Some(expected) {
            panic!(
                "expected exit status {expected}\n{out}{}",
                env.server.log_tail()
            );
        }
        out
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// What a command did. `Display` is the full report a failing test prints.
pub struct Out {
    pub desc: String,
    pub dir: PathBuf,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn redacted(&self, secrets: &[String]) -> String {
        let mut text = self.to_string();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "<TOKEN>");
        }
        text
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.desc)?;
        writeln!(f, "dir:     {}", self.dir.display())?;
        match self.code {
            Some(code) => writeln!(f, "status:  exit {code}")?,
            None => writeln!(f, "status:  killed by a signal")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        writeln!(f, "--- stderr ---\n{}", self.stderr)?;
        writeln!(f, "--------------")
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `git fast-import` of a linear history: `count` commits on `branch`, starting from `from` (a
/// commit id) or as a new root. Each commit rewrites one of a few text files, so the history
/// has real deltas. One process for hundreds of commits keeps the big tests fast.
pub fn import_commits(
    env: &TestEnv,
    repo: &Path,
    branch: &str,
    from: Option<&str>,
    count: usize,
    label: &str,
) {
    let mut stream = String::new();
    for i in 0..count {
        let message = format!("{label} {i}\n");
        let mut content = String::new();
        for line in 0..(20 + i % 40) {
            content.push_str(&format!("{label} line {line} revision {i}\n"));
        }
        stream.push_str(&format!("commit refs/heads/{branch}\n"));
        stream.push_str(&format!(
            "author A U Thor <author@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        stream.push_str(&format!(
            "committer C O Mitter <committer@example.com> {} +0000\n",
            1_700_000_000 + i
        ));
        stream.push_str(&format!("data {}\n{message}", message.len()));
        if i == 0 {
            if let Some(from) = from {
                stream.push_str(&format!("from {from}\n"));
            }
        }
        stream.push_str(&format!("M 644 inline {label}/file{}.txt\n", i % 7));
        stream.push_str(&format!("data {}\n{content}\n", content.len()));
    }
    stream.push_str("done\n");
    env.cmd(repo, &["fast-import", "--quiet", "--done"])
        .stdin(stream)
        .ok();
}

/// Deterministic incompressible bytes (xorshift), for files whose pack size must be large.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
