//! [`TestEnv`], one test's world: the type, its constructors (scratch directory, hermetic `HOME`,
//! server, default token), paths inside the scratch directory, the server's log, and the clean-up
//! that keeps the scratch directory of a failing test on request.

use std::cell::RefCell;
use std::path::PathBuf;
use std::thread;

use super::hermetic::base_env;
use super::namespace::Namespace;
use super::{hypha, Server, WS};

/// One test's world: a scratch directory (home, work trees, oracle repositories), a running
/// server, and the default token for [`WS`].
pub struct TestEnv {
    // Field order is drop order: the server dies before its root directory is removed.
    pub server: Server,
    pub(super) token: String,
    pub(super) secrets: RefCell<Vec<String>>,
    /// Hypha mode: this test's namespace (see [`hypha`]); `None` against `git hypha serve`.
    pub(super) hypha: Option<Namespace>,
    scratch: Option<tempfile::TempDir>,
    pub(super) scratch_path: PathBuf,
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

    /// Everything the server printed so far. In Hypha mode: Hypha's log, which holds what every
    /// test of the run did (enough to show that this test's secrets never reach it).
    pub fn server_log(&self) -> String {
        self.server.log()
    }

    /// The server's log once `done` says it holds what a test looks for, or after 10 s: the
    /// access-log line of a request is written when its answer is done, and a thread reads it
    /// from the server's stderr, so it may come after the command that sent the request ends.
    pub fn server_log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = self.server_log();
            if done(&log) || std::time::Instant::now() > deadline {
                return log;
            }
            thread::sleep(std::time::Duration::from_millis(50));
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
