//! A real `git hypha serve` for one test: local-disk store in the test's scratch directory,
//! `127.0.0.1:0`, its own JWT secret, killed on `Drop`.
//!
//! Both output streams are drained in background threads for the whole life of the server
//! (a full pipe would block it) and kept, so a failing test can show what the server said.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::hypha::{excluded, Hypha};

/// Generous: the first test of a run may start while the machine is busy linking.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    /// `None` in Hypha mode: the server is the shared Hypha, not ours to start or kill.
    child: Option<Child>,
    url: String,
    root: PathBuf,
    secret: String,
    /// What `{unique}` of `HYPHA_E2E_SERVE_ARGS` became (e.g. its S3 bucket).
    unique: String,
    log: Arc<Mutex<String>>,
    hypha: Option<&'static Hypha>,
}

impl Server {
    /// Starts the server with a fresh secret and extra `git hypha serve` arguments, and waits
    /// for its `listening on` line. The whole suite can also
    /// run against another backend: `HYPHA_E2E_SERVE_ARGS` adds arguments to every server a
    /// test starts (`{unique}` becomes a string unique to this server, e.g. for an S3 bucket),
    /// and `AWS_*` variables are passed through to it.
    pub fn start_with(root: &Path, env: &[(OsString, OsString)], extra: &[String]) -> Server {
        Server::start_on(root, env, extra, None)
    }

    /// Another server on the same store as `self` (same `--root`, same `{unique}`, hence the
    /// same S3 prefix), with a fresh secret: for tests that kill a server and restart it.
    pub fn start_again(&self, root: &Path, env: &[(OsString, OsString)]) -> Server {
        assert!(
            self.hypha.is_none(),
            "Hypha mode cannot restart the server: this test belongs on the exclusion list in \
             tests/hypha/run.sh"
        );
        Server::start_on(root, env, &[], Some(&self.unique))
    }

    fn start_on(
        root: &Path,
        env: &[(OsString, OsString)],
        extra: &[String],
        unique: Option<&str>,
    ) -> Server {
        std::fs::create_dir_all(root).expect("create server root");
        let secret = fresh_secret();
        let program = super::bin_dir().join("git-hypha");
        let unique = unique
            .unwrap_or(secret.trim_start_matches("e2e-secret-"))
            .to_owned();
        // With the suite on S3, `HYPHA_E2E_STORE_ROOT` names the directory where the store
        // keeps this server's objects (s3s-fs keeps each key as a file), so that tests that
        // look at stored files find them there. Made before the server starts: test.sh gives
        // each server its own s3s-fs bucket (a directory of s3s-fs's data root), because
        // s3s-fs walks a whole bucket on every LIST, and one bucket shared by a hundred tests
        // made the S3 pass spend most of its time there.
        let store_root = std::env::var("HYPHA_E2E_STORE_ROOT")
            .ok()
            .filter(|dir| !dir.is_empty())
            .map(|dir| PathBuf::from(dir.replace("{unique}", &unique)));
        if let Some(dir) = &store_root {
            std::fs::create_dir_all(dir).expect("create the S3 store's directory");
        }
        let from_env: Vec<String> = std::env::var("HYPHA_E2E_SERVE_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(|a| a.replace("{unique}", &unique))
            .collect();
        let passthrough: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        let mut command = Command::new(&program);
        command
            .args(["serve", "--root"])
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(&from_env)
            .args(extra)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(passthrough)
            .env("HYPHA_JWT_SECRET", &secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} serve: {e}", program.display()));

        let log = Arc::new(Mutex::new(String::new()));
        let (first_line, first) = mpsc::channel::<String>();
        drain_lines(
            child.stdout.take().expect("stdout was piped"),
            "stdout",
            log.clone(),
            Some(first_line),
        );
        drain_lines(
            child.stderr.take().expect("stderr was piped"),
            "stderr",
            log.clone(),
            None,
        );

        let line = match first.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`git hypha serve` printed no first line within {STARTUP_TIMEOUT:?} \
                     (exit status: {status:?})\nserver log:\n{}",
                    log.lock().expect("log lock")
                );
            }
        };
        let url = match line.strip_prefix("listening on ") {
            Some(url) if url.starts_with("http://127.0.0.1:") => {
                url.trim().trim_end_matches('/').to_string()
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "first line of `git hypha serve` must be `listening on http://127.0.0.1:PORT` \
                     (docs/design.md §7), got {line:?}\nserver log:\n{}",
                    log.lock().expect("log lock")
                );
            }
        };
        let root = store_root.unwrap_or_else(|| root.to_path_buf());
        Server {
            child: Some(child),
            url,
            root,
            secret,
            unique,
            log,
            hypha: None,
        }
    }

    /// The running Hypha of Hypha mode, standing in for a server of this test's own.
    pub fn hypha(target: &'static Hypha) -> Server {
        Server {
            child: None,
            url: target.url().to_string(),
            root: PathBuf::new(),
            secret: String::new(),
            unique: String::new(),
            log: Arc::new(Mutex::new(String::new())),
            hypha: Some(target),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `--root` the server stores repositories under (or `HYPHA_E2E_STORE_ROOT`).
    pub fn root(&self) -> &Path {
        if self.hypha.is_some() {
            excluded("our server's store root (Hypha stores repositories by artifact UUID)");
        }
        &self.root
    }

    /// The `HYPHA_JWT_SECRET` the server was started with.
    pub fn secret(&self) -> &str {
        if self.hypha.is_some() {
            excluded("our server's JWT secret");
        }
        &self.secret
    }

    /// What the server printed so far; in Hypha mode, Hypha's whole log (all tests').
    pub fn log(&self) -> String {
        if let Some(hypha) = self.hypha {
            return hypha.log();
        }
        self.log.lock().expect("log lock").clone()
    }

    /// The last lines of the log, formatted for a failure message.
    pub fn log_tail(&self) -> String {
        if let Some(hypha) = self.hypha {
            return hypha.log_tail();
        }
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!(
            "--- server log (last {} lines) ---\n{}\n",
            lines.len() - start,
            lines[start..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain_lines(
    pipe: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<String>>,
    mut first_line: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = first_line.take() {
                let _ = sender.send(line.clone());
            }
            let mut log = log.lock().expect("log lock");
            log.push_str(&format!("[{stream}] {line}\n"));
        }
    });
}

/// Unique per server: tokens of one test must not be accepted by another test's server.
fn fresh_secret() -> String {
    format!("e2e-secret-{}", unique_id())
}

/// Unique across the processes and tests of a run (pid, counter, clock); `[0-9a-f-]` only.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
