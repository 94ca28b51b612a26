//! Running commands: [`Cmd`], a git (or other) command about to run in the hermetic environment,
//! with its timeout, its output captured and scanned for secrets, and the checks of its exit
//! status; and the [`TestEnv`] methods that start one.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{Out, TestEnv};

/// One command may take this long before the harness kills it (and its helper) and fails the
/// test with what it printed so far: a hung helper must not hang the suite.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

impl TestEnv {
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

    /// `git hypha ARGS` run through git, as a user types it.
    pub fn git_hypha(&self, args: &[&str]) -> Cmd<'_> {
        let mut full = vec!["hypha"];
        full.extend_from_slice(args);
        self.cmd(&self.scratch_path, &full)
    }
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
