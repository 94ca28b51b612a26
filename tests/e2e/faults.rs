//! docs/scenarios.md H45 and H38/H43 over the network: faults between the helper and the server,
//! injected by [`crate::harness::proxy`] on API calls and on presigned pack transfers.
//!
//! A transient fault (one 500, a 503 with `Retry-After`, a 429, a reset connection, a stall
//! past the read timeout, a truncated answer, a lost answer) is retried and the command
//! succeeds with a complete, `fsck`-clean result. A persistent fault gives one `fatal:` line
//! that names the repository, a non-zero exit, and leaves both sides as they were: remote refs
//! unchanged, every stored pack complete, local refs and objects unchanged.
//!
//! The snapshot types and failure checks here are shared with `corruption`, `crash` and
//! `hostile`.

use crate::harness::proxy::{Fault, Proxy};
use crate::harness::{Out, TestEnv, WS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Read timeout the helper gets in tests that stall a connection (HYPHA_READ_TIMEOUT_SECS).
pub const SHORT_READ_TIMEOUT: &str = "1";

/// A test server whose API and presigned URLs are reached through a fault proxy.
pub struct Faulty {
    pub env: TestEnv,
    pub proxy: Proxy,
}

impl Faulty {
    pub fn new() -> Faulty {
        Faulty::with_serve_args(&[])
    }

    /// As [`Faulty::new`], with extra `git hypha serve` arguments.
    pub fn with_serve_args(extra: &[&str]) -> Faulty {
        let proxy = Proxy::start();
        let mut args = proxy.serve_args();
        // Faults are injected into presigned transfers: every pack goes through them, none
        // inline in its `update` (tests/e2e/inline.rs covers that path).
        args.extend(["--inline-max".to_owned(), "0".to_owned()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = TestEnv::with_serve_args(&args);
        proxy.set_upstream(env.server.url());
        Faulty { env, proxy }
    }

    /// Adds a fault on presigned pack transfers when they pass the proxy (see
    /// [`transfers_proxied`]); returns how many faults that rule will inject (0 when not).
    pub fn inject_transfer(&self, method: &str, path: &str, times: usize, fault: Fault) -> usize {
        if !transfers_proxied() {
            return 0;
        }
        self.proxy.inject(method, path, Some(times), fault);
        times
    }

    /// `hypha::http://<proxy>/ws/alias`: every request of the helper passes the proxy.
    pub fn url(&self, alias: &str) -> String {
        format!("hypha::{}/{WS}/{alias}", self.proxy.url())
    }

    /// Creates `alias` (directly, not through the proxy) and a work tree `src` with one
    /// pushed commit and `origin` pointing through the proxy.
    pub fn pushed(&self, alias: &str) -> (String, PathBuf) {
        self.env.create(alias);
        let url = self.url(alias);
        let src = self.env.init(&format!("{alias}-src"));
        self.env.commit(&src, "c1");
        self.env.git(&src, &["remote", "add", "origin", &url]);
        self.env.git(&src, &["push", "-q", "-u", "origin", "main"]);
        (url, src)
    }
}

/// Whether presigned URLs point at the test server (the local-disk store), so that pack
/// transfers pass the fault proxy. With the suite on S3 (`HYPHA_E2E_SERVE_ARGS`, see
/// test.sh) they go straight to the S3 endpoint: the parts of these tests that disturb
/// transfers are then skipped, and the API parts still run.
pub fn transfers_proxied() -> bool {
    std::env::var("HYPHA_E2E_SERVE_ARGS").map_or(true, |a| a.trim().is_empty())
}

/// For tests that only make sense when pack transfers pass the proxy: says why it returns.
pub fn skip_without_proxied_transfers(test: &str) -> bool {
    if transfers_proxied() {
        return false;
    }
    eprintln!("{test}: skipped, pack transfers go straight to S3 and cannot be disturbed");
    true
}

/// Everything a failed command must leave untouched in a local repository: the files under
/// `.git/objects` (names and sizes, so a partial or extra pack or a `.keep` shows), every ref
/// and `HEAD`, and the helper's record of fetched packs. Leftover push staging directories
/// (`.git/hypha-push-*`) are listed too.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalState {
    pub objects: Vec<(String, u64)>,
    pub refs: String,
    pub head: String,
    pub hypha: Vec<(String, u64)>,
    pub staging: Vec<String>,
}

impl LocalState {
    pub fn of(env: &TestEnv, repo: &Path) -> LocalState {
        let git_dir = git_dir(env, repo);
        let mut staging: Vec<String> = std::fs::read_dir(&git_dir)
            .expect("read .git")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hypha-push"))
            .collect();
        staging.sort();
        LocalState {
            objects: files_under(&git_dir.join("objects")),
            refs: env.refs(repo, &[]),
            head: std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default(),
            hypha: files_under(&git_dir.join("hypha")),
            staging,
        }
    }
}

pub fn git_dir(env: &TestEnv, repo: &Path) -> PathBuf {
    let out = env.git(repo, &["rev-parse", "--absolute-git-dir"]);
    PathBuf::from(out.stdout.trim())
}

/// Relative path and size of every file below `root`, sorted.
pub fn files_under(root: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(root, &path, out),
                Ok(m) => out.push((
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned(),
                    m.len(),
                )),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Files of `objects/pack/` of a local repository that must never be there after a command
/// ended: a `.pack` without its `.idx`, any `.keep`, gix or git temporary files.
pub fn unsafe_pack_files(git_dir: &Path) -> Vec<String> {
    let dir = git_dir.join("objects/pack");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names
        .iter()
        .filter(|n| {
            if let Some(stem) = n.strip_suffix(".pack") {
                !names.contains(&format!("{stem}.idx"))
            } else {
                !n.ends_with(".idx") && !n.ends_with(".rev") && !n.ends_with(".bitmap")
            }
        })
        .cloned()
        .collect()
}

/// The refs and `HEAD` of a stored repository, as files: name -> content.
pub fn remote_refs(env: &TestEnv, alias: &str) -> BTreeMap<String, String> {
    let root = env.stored_repo(alias);
    let mut refs: BTreeMap<String, String> = files_under(&root.join("refs"))
        .into_iter()
        .map(|(name, _)| {
            let content =
                std::fs::read_to_string(root.join("refs").join(&name)).unwrap_or_default();
            (format!("refs/{name}"), content)
        })
        .collect();
    refs.insert(
        "HEAD".into(),
        std::fs::read_to_string(root.join("HEAD")).unwrap_or_default(),
    );
    refs
}

/// A stored repository is consistent when every `.pack` has its `.idx`, nothing else but
/// `pack-*.{pack,idx}` (and the store's `.gitkeep`) is visible in `objects/pack/`, and a fresh
/// clone of it is `fsck`-clean.
pub fn assert_remote_consistent(env: &TestEnv, alias: &str, url: &str) {
    let dir = env.stored_repo(alias).join("objects/pack");
    let names: Vec<String> = files_under(&dir).into_iter().map(|(n, _)| n).collect();
    for name in &names {
        let ok = name == ".gitkeep"
            || name.strip_suffix(".pack").is_some_and(|stem| {
                names.contains(&format!("{stem}.idx")) && stem.starts_with("pack-")
            })
            || (name.ends_with(".idx") && name.starts_with("pack-"));
        assert!(
            ok,
            "stored objects/pack/{name} should not be there: {names:?}"
        );
    }
    let check = env.path(&format!("consistency-{alias}-{}", names.len()));
    let _ = std::fs::remove_dir_all(&check);
    env.clone(url, &check);
    let _ = std::fs::remove_dir_all(&check);
}

/// A failed command: non-zero exit, exactly one `fatal:` line, which names every needle, no
/// panic, no backtrace.
#[track_caller]
pub fn assert_failed_cleanly(out: &Out, needles: &[&str]) {
    assert_ne!(out.code, Some(0), "the command fails\n{out}");
    let fatal: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("fatal:"))
        .collect();
    assert_eq!(fatal.len(), 1, "exactly one fatal line\n{out}");
    for needle in needles {
        assert!(
            fatal[0].contains(needle),
            "the fatal line names {needle:?}\n{out}"
        );
    }
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("stack backtrace"),
        "an error message, not a crash\n{out}"
    );
}

/// Figures for the closing note: one line per test, collected from `--no-capture` runs.
pub fn figures(test: &str, what: &[(&str, usize)]) {
    let parts: Vec<String> = what.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("figures {test}: {}", parts.join(" "));
}

const fn status(code: u16) -> Fault {
    Fault::Status {
        code,
        retry_after: None,
    }
}

/// One of each transient fault, each on its own request, during one push, one clone and one
/// incremental fetch: all retried, all three succeed, and the results are complete.
#[test]
fn transient_faults_are_retried_and_everything_succeeds() {
    let f = Faulty::new();
    let (url, src) = f.pushed("flaky");
    let p = &f.proxy;
    env_commit_twice(&f.env, &src, "push");
    p.inject("POST", "/refs", Some(1), status(500));
    p.inject(
        "POST",
        "/uploads",
        Some(1),
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
    );
    let mut expected = 2;
    expected += f.inject_transfer("PUT", ".idx", 1, status(429));
    expected += f.inject_transfer("PUT", ".pack", 1, Fault::Reset);
    expected += f.inject_transfer("PUT", ".pack", 1, status(502));
    p.inject("POST", "/update", Some(1), Fault::Reset);
    p.inject("POST", "/update", Some(1), status(500));
    expected += 2;
    f.env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(
        p.injected(),
        expected,
        "every push fault fired: {:#?}",
        p.seen()
    );
    assert_eq!(
        f.env.ls_remote(&src, &url),
        f.env.ls_remote(&src, &f.env.url("flaky")),
        "the proxy and the server agree"
    );

    // The clone's pack listing comes with its refs (no `packs` call).
    p.inject("POST", "/refs", Some(1), Fault::Reset);
    expected += 1;
    expected += f.inject_transfer("GET", ".pack", 1, Fault::Truncate);
    expected += f.inject_transfer("GET", ".pack", 1, status(503));
    expected += f.inject_transfer("GET", ".pack", 1, Fault::Reset);
    let clone = f.env.path("clone");
    f.env.clone(&url, &clone);
    assert_eq!(
        p.injected(),
        expected,
        "every clone fault fired: {:#?}",
        p.seen()
    );
    assert_eq!(f.env.rev(&clone, "HEAD"), f.env.rev(&src, "HEAD"));
    assert!(unsafe_pack_files(&git_dir(&f.env, &clone)).is_empty());

    env_commit_twice(&f.env, &src, "fetch");
    f.env.git(&src, &["push", "-q", "origin", "main"]);
    expected += f.inject_transfer("GET", ".idx", 1, Fault::Reset);
    expected += f.inject_transfer("GET", ".idx", 1, Fault::Truncate);
    expected += f.inject_transfer("GET", ".pack", 1, status(429));
    p.inject("POST", "/refs", Some(1), status(503));
    expected += 1;
    f.env.git(&clone, &["fetch", "-q", "origin"]);
    assert_eq!(
        p.injected(),
        expected,
        "every fetch fault fired: {:#?}",
        p.seen()
    );
    assert_eq!(f.env.rev(&clone, "origin/main"), f.env.rev(&src, "HEAD"));
    f.env.fsck(&clone);
    assert!(unsafe_pack_files(&git_dir(&f.env, &clone)).is_empty());
    assert_remote_consistent(&f.env, "flaky", &url);
    figures("transient_faults", &[("faults", p.injected())]);
}

/// Two commits, the second with 1.5 MiB of noise: their pack is over the size a fetch takes
/// without reading its idx first (`fetch_packs::DIRECT_MAX`), so faults on the idx fire.
fn env_commit_twice(env: &TestEnv, repo: &Path, label: &str) {
    env.commit(repo, &format!("{label}-1"));
    std::fs::write(
        repo.join(format!("{label}.bin")),
        // A seed per label: the same noise twice would be one blob, already on the remote.
        crate::harness::noise(3 << 19, label.bytes().fold(7, |h, b| h * 31 + u64::from(b))),
    )
    .expect("write");
    env.commit(repo, &format!("{label}-2"));
}

/// A `503` with `Retry-After: 2` makes the helper wait at least that long before retrying
/// (its own first backoff is a quarter second).
#[test]
fn retry_after_is_honoured() {
    let f = Faulty::new();
    let (url, src) = f.pushed("patient");
    f.proxy.inject(
        "POST",
        "/refs",
        Some(1),
        Fault::Status {
            code: 503,
            retry_after: Some(2),
        },
    );
    let before = f.proxy.count("POST", "/refs");
    let started = Instant::now();
    let out = f.env.git(&src, &["ls-remote", &url]);
    let took = started.elapsed();
    assert!(out.stdout.contains("refs/heads/main"), "{out}");
    assert!(
        took >= Duration::from_secs(2),
        "waited {took:?}, less than Retry-After"
    );
    assert_eq!(
        f.proxy.count("POST", "/refs") - before,
        2,
        "one refused, one retried: {:#?}",
        f.proxy.seen()
    );
    figures("retry_after", &[("faults", f.proxy.injected())]);
}

/// A server that accepts a request and then says nothing is cut off by the read timeout and
/// the request retried; a server that always does so makes the command fail in bounded time.
/// The clone sets the timeout as a git user does (`http.lowSpeedLimit`/`lowSpeedTime`).
#[test]
fn stalled_connections_are_cut_by_the_read_timeout() {
    let f = Faulty::new();
    let (url, src) = f.pushed("stalled");
    let stall = Fault::Stall(Duration::from_secs(30));
    f.proxy.inject("POST", "/refs", Some(1), stall.clone());
    f.inject_transfer("GET", ".pack", 1, stall.clone());
    let started = Instant::now();
    let clone = f.env.path("clone");
    f.env
        .cmd(
            &f.env.path(""),
            &[
                "-c",
                "http.lowSpeedLimit=1000",
                "-c",
                &format!("http.lowSpeedTime={SHORT_READ_TIMEOUT}"),
                "clone",
                &url,
                "clone",
            ],
        )
        .ok();
    f.env.fsck(&clone);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "two stalls of 30 s were cut short: {:?}",
        started.elapsed()
    );

    env_commit_twice(&f.env, &src, "more");
    let remote = remote_refs(&f.env, "stalled");
    let local = LocalState::of(&f.env, &src);
    f.proxy.inject("POST", "/update", None, stall);
    let started = Instant::now();
    let out = f
        .env
        .cmd(&src, &["push", "origin", "main"])
        .env("HYPHA_READ_TIMEOUT_SECS", SHORT_READ_TIMEOUT)
        .fails();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a server that never answers fails the push in bounded time: {:?}",
        started.elapsed()
    );
    assert_failed_cleanly(&out, &[&format!("{WS}/stalled"), "update"]);
    assert_eq!(
        remote_refs(&f.env, "stalled"),
        remote,
        "remote refs unchanged"
    );
    assert_eq!(LocalState::of(&f.env, &src), local, "local state unchanged");
    f.proxy.clear();
    assert_remote_consistent(&f.env, "stalled", &url);
    figures("stalls", &[("faults", f.proxy.injected())]);
}

/// The server applied `update` but its answer never arrived (connection dropped, or the body
/// cut short). The helper retries; the retry finds the ref already at the pushed value, which
/// is success, not a rejection.
#[test]
fn lost_update_answer_is_success_not_rejection() {
    let f = Faulty::new();
    let (url, src) = f.pushed("lost");
    for (round, fault) in [Fault::LoseResponse, Fault::Truncate]
        .into_iter()
        .enumerate()
    {
        let head = f.env.commit(&src, &format!("lost-{round}"));
        f.proxy.inject("POST", "/update", Some(1), fault);
        let out = f.env.git(&src, &["push", "origin", "main"]);
        assert!(
            out.stderr.contains("main -> main") && !out.stderr.contains("rejected"),
            "{out}"
        );
        assert!(
            f.env
                .ls_remote(&src, &url)
                .contains(&format!("{head}\trefs/heads/main")),
            "{out}"
        );
        assert_eq!(f.env.rev(&src, "origin/main"), head);
        let again = f.env.git(&src, &["push", "origin", "main"]);
        assert!(again.stderr.contains("Everything up-to-date"), "{again}");
    }
    // A lost answer to a delete is the same: the ref is already gone.
    f.env
        .git(&src, &["push", "-q", "origin", "main:refs/heads/doomed"]);
    f.proxy
        .inject("POST", "/update", Some(1), Fault::LoseResponse);
    let out = f.env.git(&src, &["push", "origin", ":doomed"]);
    assert!(out.stderr.contains("[deleted]"), "{out}");
    assert!(!f.env.ls_remote(&src, &url).contains("doomed"));
    assert_eq!(f.proxy.injected(), 3);
    figures("lost_answers", &[("faults", f.proxy.injected())]);
}

/// A fault on every attempt of one request: the push fails with one `fatal:` line naming the
/// repository, the remote refs and the local repository are unchanged, and whatever was
/// uploaded before the failure is complete and harmless.
#[test]
fn persistent_faults_fail_push_cleanly() {
    let f = Faulty::new();
    let (url, src) = f.pushed("down");
    let repo = format!("{WS}/down");
    env_commit_twice(&f.env, &src, "blocked");
    let cases: Vec<(&str, &str, Fault, &str)> = vec![
        ("POST", "/refs", Fault::Reset, "refs"),
        ("POST", "/uploads", status(429), "uploads"),
        ("PUT", ".idx", status(500), "index of pack-"),
        ("PUT", ".pack", Fault::Reset, "pack pack-"),
        ("POST", "/update", status(503), "update"),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(method, ..)| *method == "POST" || transfers_proxied())
        .collect();
    let total = cases.len();
    for (method, path, fault, needle) in cases {
        let remote = remote_refs(&f.env, "down");
        let local = LocalState::of(&f.env, &src);
        f.proxy.clear();
        f.proxy.inject(method, path, None, fault);
        let out = f.env.cmd(&src, &["push", "origin", "main"]).fails();
        assert_failed_cleanly(&out, &[&repo, needle]);
        assert!(
            out.stderr.contains("caused by:") || out.stderr.contains("HTTP status"),
            "says why\n{out}"
        );
        assert_eq!(
            remote_refs(&f.env, "down"),
            remote,
            "{method} {path}: remote refs unchanged"
        );
        assert_eq!(
            LocalState::of(&f.env, &src),
            local,
            "{method} {path}: local state unchanged"
        );
    }
    f.proxy.clear();
    assert_remote_consistent(&f.env, "down", &url);
    // Once the faults are gone the same push goes through.
    f.env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(f.env.rev(&src, "origin/main"), f.env.rev(&src, "main"));
    figures(
        "persistent_push",
        &[("faults", f.proxy.injected()), ("cases", total)],
    );
}

/// Persistent faults during fetch and clone: one `fatal:` line, local repository unchanged
/// (no new objects, no `.keep`, no refs), no clone directory left.
#[test]
fn persistent_faults_fail_fetch_and_clone_cleanly() {
    let f = Faulty::new();
    let (url, src) = f.pushed("gone");
    let repo = format!("{WS}/gone");
    let old = f.env.path("old");
    f.env.clone(&url, &old);
    env_commit_twice(&f.env, &src, "new");
    f.env.git(&src, &["push", "-q", "origin", "main"]);
    // (method, path, fault, what the fatal line names, also try a clone)
    let cases: Vec<(&str, &str, Fault, &str, bool)> = vec![
        ("POST", "/refs", Fault::Truncate, "refs", false),
        ("GET", ".idx", Fault::Reset, "index of pack-", true),
        ("GET", ".pack", Fault::Truncate, "pack-", true),
        ("GET", ".pack", status(503), "pack-", false),
        // What S3 answers for an expired URL: not worth retrying, a clear message, and the
        // next command (with fresh URLs) works.
        ("GET", ".pack", status(403), "pack-", true),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(method, ..)| *method == "POST" || transfers_proxied())
        .collect();
    let total = cases.len();
    for (method, path, fault, needle, clone_too) in cases {
        let local = LocalState::of(&f.env, &old);
        f.proxy.clear();
        f.proxy.inject(method, path, None, fault.clone());
        let out = f.env.cmd(&old, &["fetch", "origin"]).fails();
        assert_failed_cleanly(&out, &[&repo, needle]);
        assert_eq!(
            LocalState::of(&f.env, &old),
            local,
            "{method} {path}: fetch changed nothing"
        );
        if clone_too {
            let out = f
                .env
                .cmd(&f.env.path(""), &["clone", &url, "fresh"])
                .fails();
            assert_failed_cleanly(&out, &[&repo, needle]);
            assert!(
                !f.env.path("fresh").exists(),
                "no clone directory left\n{out}"
            );
        }
    }
    f.proxy.clear();
    f.env.git(&old, &["fetch", "-q", "origin"]);
    assert_eq!(f.env.rev(&old, "origin/main"), f.env.rev(&src, "main"));
    f.env.fsck(&old);
    figures(
        "persistent_fetch",
        &[("faults", f.proxy.injected()), ("cases", total)],
    );
}

/// Presigned URLs live 2 seconds and the proxy holds the first idx `PUT`, the first pack
/// `PUT` and the first pack `GET` for 3: the store refuses them as expired, and the helper
/// asks the API for fresh URLs (the server log shows the second `uploads` and `packs`)
/// instead of retrying a dead one; push and clone succeed. (The same on S3, with multipart
/// parts: `multipart::expired_urls_are_renewed_on_s3s_fs`.)
#[test]
fn expired_urls_are_renewed() {
    if skip_without_proxied_transfers("expired_urls_are_renewed") {
        return;
    }
    let f = Faulty::with_serve_args(&["--url-ttl-secs", "2"]);
    f.env.create("ttl");
    let url = f.url("ttl");
    let src = f.env.init("ttl-src");
    f.env.commit(&src, "c1");
    f.env.git(&src, &["remote", "add", "origin", &url]);
    let slow = Fault::Delay(Duration::from_secs(3));
    f.proxy.inject("PUT", ".idx", Some(1), slow.clone());
    f.proxy.inject("PUT", ".pack", Some(1), slow.clone());
    f.env.git(&src, &["push", "-q", "origin", "main"]);
    assert_eq!(f.proxy.injected(), 2);
    let count = |route: &str| {
        f.env
            .server_log()
            .lines()
            .filter(|l| l.contains(&format!("/remote/v1/{route} 200")))
            .count()
    };
    assert_eq!(count("uploads"), 3, "{}", f.env.server_log());
    // Each dead URL was tried once: the idx and the pack went up twice each, no more.
    assert_eq!(f.proxy.count("PUT", ".idx"), 2);
    assert_eq!(f.proxy.count("PUT", ".pack"), 2);

    let packs_before = count("packs");
    f.proxy.inject("GET", ".pack", Some(1), slow);
    let clone = f.env.path("clone");
    f.env.clone(&url, &clone);
    assert_eq!(f.proxy.injected(), 3);
    assert_eq!(f.env.rev(&clone, "HEAD"), f.env.rev(&src, "HEAD"));
    assert_eq!(count("packs"), packs_before + 2, "{}", f.env.server_log());
}

/// Issue 22: a large pack whose download is cut is saved as it came, and the rest comes by a
/// range read: within one fetch (its one retry), and across fetches when the retry is cut too.
/// `HYPHA_RESUME_MIN_BYTES` lowers the size from which packs are saved (64 MiB) to 1 MB.
#[test]
fn a_cut_pack_download_resumes_where_it_was_cut() {
    if skip_without_proxied_transfers("a_cut_pack_download_resumes_where_it_was_cut") {
        return;
    }
    const RESUME_MIN: &str = "1000000";
    let f = Faulty::new();
    let env = &f.env;
    env.create("resume");
    let url = f.url("resume");
    let src = env.init("resume-src");
    // One pack of about 3 MiB: incompressible, so the pack is as large as the file.
    std::fs::write(src.join("big.bin"), crate::harness::noise(3 << 20, 22)).expect("write");
    env.git(&src, &["add", "big.bin"]);
    env.git(&src, &["commit", "-q", "-m", "big"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "origin", "main"]);
    let head = env.rev(&src, "HEAD");
    let fetch = |dir: &Path| {
        env.cmd(dir, &["fetch", "origin"])
            .env("HYPHA_RESUME_MIN_BYTES", RESUME_MIN)
    };
    let partials = |dir: &Path| files_under(&git_dir(env, dir).join("hypha/partial"));

    // Cut once: the fetch's own retry asks for the rest only.
    let once = env.init("once");
    env.git(&once, &["remote", "add", "origin", &url]);
    f.proxy.inject("GET", ".pack", Some(1), Fault::Truncate);
    fetch(&once).ok();
    let ranges = f.proxy.ranges("GET", ".pack");
    assert_eq!(ranges.len(), 1, "one range read: {:#?}", f.proxy.seen());
    assert!(!ranges[0].starts_with("bytes=0-"), "{ranges:?}");
    assert_eq!(env.rev(&once, "origin/main"), head);
    env.fsck(&once);
    assert!(partials(&once).is_empty(), "{:?}", partials(&once));

    // Cut twice: the fetch fails and says the next one resumes; the next one does, from
    // where the second cut left it.
    let twice = env.init("twice");
    env.git(&twice, &["remote", "add", "origin", &url]);
    let gets = f.proxy.count("GET", ".pack");
    f.proxy.inject("GET", ".pack", Some(2), Fault::Truncate);
    let failed = fetch(&twice).fails();
    assert!(
        failed.stderr.contains("the next fetch resumes it"),
        "{failed}"
    );
    assert!(!failed.stderr.contains("_store"), "a URL leaked: {failed}");
    assert_eq!(f.proxy.count("GET", ".pack") - gets, 2);
    let saved = partials(&twice);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let (file, len) = saved[0].clone();
    assert!(file.ends_with(".part") && len > 0, "{saved:?}");
    assert!(env.refs(&twice, &[]).trim().is_empty(), "no ref moved");

    let ok = fetch(&twice).ok();
    assert_eq!(f.proxy.count("GET", ".pack") - gets, 3, "{ok}");
    let last = f.proxy.ranges("GET", ".pack").pop().expect("a range read");
    assert!(
        last.starts_with(&format!("bytes={len}-")),
        "{last} after {len}"
    );
    assert_eq!(env.rev(&twice, "origin/main"), head);
    env.fsck(&twice);
    assert!(partials(&twice).is_empty(), "{:?}", partials(&twice));

    // A partial that is not the pack's beginning fails indexing, and goes: the next fetch
    // downloads the pack whole.
    let bad = env.init("bad");
    env.git(&bad, &["remote", "add", "origin", &url]);
    let dir = git_dir(env, &bad).join("hypha/partial");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(&file), vec![b'x'; len as usize]).expect("write");
    let failed = fetch(&bad).fails();
    assert!(failed.stderr.contains("now discarded"), "{failed}");
    assert!(partials(&bad).is_empty(), "{:?}", partials(&bad));
    let ranges = f.proxy.ranges("GET", ".pack").len();
    fetch(&bad).ok();
    assert_eq!(
        f.proxy.ranges("GET", ".pack").len(),
        ranges,
        "a whole download"
    );
    assert_eq!(env.rev(&bad, "origin/main"), head);
    env.fsck(&bad);
}

/// Issue 22: a push whose large pack is cut part way keeps the pack (`.git/hypha/push/`); the
/// next push of the same refs takes it instead of building another, and sends only the parts
/// the store lacks (parts 1 and 2 of 3 are not sent again). A push of other refs after a cut
/// one discards the kept pack and sends its own. `HYPHA_RESUME_MIN_BYTES` lowers the size from
/// which packs are kept (64 MiB) to 1 MB; the server goes to parts above 5 MiB, in 5 MiB parts.
#[test]
fn a_cut_pack_upload_resumes_on_the_next_push() {
    if skip_without_proxied_transfers("a_cut_pack_upload_resumes_on_the_next_push") {
        return;
    }
    const MIB: usize = 1 << 20;
    let f = Faulty::with_serve_args(&[
        "--multipart-threshold",
        "5242880",
        "--multipart-part-size",
        "5242880",
    ]);
    let env = &f.env;
    env.create("up");
    let url = f.url("up");
    let src = env.init("up-src");
    // About 12 MiB of pack, incompressible: parts of 5, 5 and 2 MiB.
    std::fs::write(src.join("big.bin"), crate::harness::noise(12 * MIB + 5, 23)).expect("write");
    env.git(&src, &["add", "big.bin"]);
    env.git(&src, &["commit", "-q", "-m", "big"]);
    env.git(&src, &["remote", "add", "origin", &url]);
    let push = |args: &[&str]| {
        env.cmd(&src, &[&["push", "-v"], args].concat())
            .env("HYPHA_RESUME_MIN_BYTES", "1000000")
    };
    let kept = || files_under(&git_dir(env, &src).join("hypha/push"));

    f.proxy.inject("PUT", "part-00003", None, Fault::Reset);
    let failed = push(&["origin", "main"]).fails();
    assert!(failed.stderr.contains("part 3"), "names the part: {failed}");
    assert_eq!(env.ls_remote(&src, &url), "", "no ref moved");
    let saved = kept();
    assert_eq!(saved.len(), 3, "pack, idx and record: {saved:?}");
    let (name, _) = saved
        .iter()
        .find(|(file, _)| file.ends_with(".pack"))
        .cloned()
        .expect("the kept pack");
    let name = name
        .trim_end_matches(".pack")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(f.proxy.count("PUT", "part-00001"), 1);
    assert_eq!(f.proxy.count("PUT", "part-00002"), 1);
    let third = f.proxy.count("PUT", "part-00003");

    f.proxy.clear();
    let ok = push(&["origin", "main"]).ok();
    assert!(
        ok.stderr.contains(&format!("using {name}")),
        "the kept pack: {ok}"
    );
    assert_eq!(f.proxy.count("PUT", "part-00001"), 1, "part 1 kept: {ok}");
    assert_eq!(f.proxy.count("PUT", "part-00002"), 1, "part 2 kept: {ok}");
    assert_eq!(
        f.proxy.count("PUT", "part-00003"),
        third + 1,
        "part 3 sent once"
    );
    let log = env.server_log();
    assert!(
        log.contains(&format!("multipart resumed {name}")) && log.contains("parts=1 stored=2"),
        "{log}"
    );
    assert!(kept().is_empty(), "{:?}", kept());
    let clone = env.path("up-clone");
    env.clone(&url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&src, "HEAD"));
    env.fsck(&clone);

    // Cut again, on another branch; then a push of other refs: the kept pack is discarded,
    // never sent, and that push sends its own.
    env.git(&src, &["checkout", "-q", "-b", "more"]);
    std::fs::write(src.join("more.bin"), crate::harness::noise(12 * MIB, 24)).expect("write");
    env.git(&src, &["add", "more.bin"]);
    env.git(&src, &["commit", "-q", "-m", "more"]);
    f.proxy.inject("PUT", "part-00003", None, Fault::Reset);
    push(&["origin", "more"]).fails();
    let saved = kept();
    assert_eq!(saved.len(), 3, "{saved:?}");
    let (cut, _) = saved
        .iter()
        .find(|(file, _)| file.ends_with(".idx"))
        .cloned()
        .expect("the kept idx");
    let cut = cut.rsplit('/').next().unwrap().to_owned();
    let idx_puts = f.proxy.count("PUT", &cut);
    f.proxy.clear();
    env.git(&src, &["checkout", "-q", "main"]);
    env.commit(&src, "small");
    let ok = push(&["origin", "main"]).ok();
    assert!(ok.stderr.contains("discarding the pack"), "{ok}");
    assert!(kept().is_empty(), "{:?}", kept());
    assert_eq!(
        f.proxy.count("PUT", &cut),
        idx_puts,
        "the kept pack was not sent"
    );
    assert_eq!(
        env.ls_remote(&src, &url)
            .lines()
            .find(|l| l.ends_with("refs/heads/main"))
            .map(|l| l[..40].to_owned()),
        Some(env.rev(&src, "main"))
    );
    // And the cut branch, built afresh, goes up whole.
    push(&["origin", "more"]).ok();
    let clone = env.path("up-clone-2");
    env.clone(&url, &clone);
    env.git(&clone, &["fetch", "-q", "origin", "more"]);
    assert_eq!(env.rev(&clone, "FETCH_HEAD"), env.rev(&src, "more"));
    env.fsck(&clone);
}
