//! Git LFS with no setup: the helper records, in the repository's own config, where git-lfs
//! finds the remote's LFS endpoint and how it gets a token (README "Git LFS").
//!
//! git-lfs cannot derive an endpoint from a `hypha::` URL, so during every session with a
//! named remote the helper makes sure that
//!
//! - `remote.<name>.lfsurl` is the endpoint the server names in its `refs` answer
//!   (`lfs_endpoint`: the Hypha plugin's `{server}{ws}/git/{alias}/remote/v1/lfs`, which
//!   offers our agent), checked to stay in the remote's workspace ([`endpoint_for`]); else
//!   `{server}{ws}/git/{alias}.git/info/lfs`: Hypha's own LFS endpoint (`basic` only, for a
//!   stock Hypha or an older plugin), and the same path on `git hypha serve`;
//! - `lfs.<lfsurl>.locksverify` is `false`: checking locks costs every push a request, and a
//!   Hypha without the plugin has no locks API (opt-in where there is, README "Git LFS");
//!   unless the user set `lfs.locksverify` themselves, which then decides;
//! - `lfs.<lfsurl>.access` is `basic`: git-lfs sends credentials from the first request on,
//!   as it would itself after a 401 (Hypha answers an anonymous request for a private
//!   repository with 403, on which git-lfs would never ask for credentials);
//! - `lfs.customtransfer.hypha.path` / `.args` run `git hypha lfs-agent`, our transfer
//!   agent (`crate::lfs_agent`): git-lfs offers it in every batch request, and uses it where
//!   the server picks it (ours and the plugin's do; Hypha's own answers `basic`), for objects past
//!   5 GiB, in parallel parts, resumable;
//! - `credential.<scheme://host>.helper` includes `!git hypha credential --server <server>`:
//!   git-lfs asks `git credential` for the LFS host, and that answers with the token the
//!   helper itself would use ([`crate::credential_helper`]); no token is written anywhere.
//!
//! They are recorded at the session's first `list` (its `refs` answer names the endpoint),
//! which git sends before a clone's checkout and before the pre-push hook, so smudge and
//! `git lfs pre-push` already find these; a session handed to git's smart HTTP (a stock
//! Hypha) records the default before it starts. A `remote.<name>.lfsurl` the user set to
//! something else is left alone (the helper's own is remembered in
//! `remote.<name>.hyphaLfsUrl`, and follows the remote's URL and the server's answer).
//!
//! A remote given as a URL on the command line (`git push hypha::https://host/ws/repo main`)
//! has no name: git passes the URL itself as the name, the pre-push hook receives it too, and
//! git-lfs then looks up `remote.<that URL>.lfsurl` (lfsapi/endpoint_finder.go
//! `RemoteEndpoint`; git-lfs keeps the case of the part between the first and the last dot).
//! So the same settings are recorded under the URL, once per URL (the check below finds them
//! on every later session), plus `remote.<URL>.skipDefaultUpdate = true`: git takes any
//! `remote.<x>` section for a remote, and without it `git fetch --all` and `git remote
//! update` would contact every URL ever pushed to. `hyphaLfsUrl` too (since the plugin names
//! its endpoint; before, the endpoint was a function of the URL and none was written). URLs with
//! credentials never get here (`config::resolve` refuses them), so no token is written.
//! Failures to write are warnings: git itself works without them.

use crate::api;
use crate::config::Remote;
use std::path::Path;
use std::process::{Command, Stdio};

/// `remote.<name>.hyphaLfsUrl`: the endpoint the helper last recorded, so that a later URL
/// change of the remote moves `lfsurl` along while a `lfsurl` set by hand stays.
const OURS: &str = "hyphaLfsUrl";

/// How git-lfs runs our transfer agent (git-lfs `docs/custom-transfers.md`): `git hypha
/// lfs-agent`, found wherever `git hypha` is.
const AGENT_PATH: &str = "lfs.customtransfer.hypha.path";
const AGENT_ARGS: &str = "lfs.customtransfer.hypha.args";

/// Longest LFS endpoint path a server may name (`api::RefsResponse::lfs_endpoint`): a
/// workspace and an alias are short names, and the plugin's path adds 24 bytes to them.
const MAX_ENDPOINT_PATH: usize = 1024;

/// The LFS endpoint git-lfs should use for `remote`: the one the server named in its `refs`
/// answer (`advertised`, the Hypha plugin's) if it is a plain path below the remote's own
/// workspace, else the default one ([`endpoint`]: Hypha's own, and `git hypha serve`'s).
pub fn endpoint_for(remote: &Remote, advertised: Option<&str>) -> String {
    match advertised {
        None => endpoint(remote),
        Some(path) => match check_advertised(remote, path) {
            Ok(()) => format!("{}{path}", remote.server),
            Err(why) => {
                tracing::warn!(
                    "warning: the server names an LFS endpoint {:?} that is {why}; git-lfs uses {}",
                    crate::storage::shorten(path),
                    endpoint(remote)
                );
                endpoint(remote)
            }
        },
    }
}

/// A path from the server is taken only if it stays on the remote's server, in the remote's
/// workspace (so that git-lfs sends the credentials recorded for that server nowhere else):
/// relative, of plain URL characters, without empty, `.` or `..` segments.
fn check_advertised(remote: &Remote, path: &str) -> Result<(), &'static str> {
    if path.len() > MAX_ENDPOINT_PATH {
        return Err("too long");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err("not a plain path");
    }
    if path
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Err("not a plain path");
    }
    if !path.starts_with(&format!("{}/git/", remote.workspace)) {
        return Err("outside the repository's workspace");
    }
    Ok(())
}

/// The default LFS endpoint of `remote` (Hypha's own, and `git hypha serve`'s).
pub fn endpoint(remote: &Remote) -> String {
    format!(
        "{}{}",
        remote.server,
        api::lfs::endpoint_path(&remote.workspace, &remote.alias)
    )
}

/// `scheme://host[:port]`: the URL git's credential matching scopes the helper to (git-lfs
/// asks for the host, not the path).
fn credential_scope(remote: &Remote) -> String {
    let server = &remote.server;
    let mut scope = format!(
        "{}://{}",
        server.scheme(),
        server.host_str().unwrap_or_default()
    );
    if let Some(port) = server.port() {
        scope.push_str(&format!(":{port}"));
    }
    scope
}

/// The credential helper line recorded for `remote`. git runs a `!` helper through the
/// shell, and a URL path may hold `;`, `$` or `'`: the server is single-quoted.
pub fn credential_helper(remote: &Remote) -> String {
    let quoted = remote.server.as_str().replace('\'', "'\\''");
    format!("!git hypha credential --server '{quoted}'")
}

/// `remote.<URL>.skipDefaultUpdate`: keeps the section recorded for an unnamed remote out of
/// `git fetch --all` and `git remote update` (git 2.25 reads it; newer gits also read it).
const SKIP_FETCH_ALL: &str = "skipDefaultUpdate";

/// Which remote git runs the helper for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A configured remote (`origin`).
    Named,
    /// A URL on the command line: git passes the URL as the remote's name. A configured
    /// remote's name can hold neither `:` nor `/` (git requires it to be a valid ref
    /// component, and takes a name with `/` for a URL).
    Url,
}

/// What `name` is, or `None` when git config cannot hold it as a subsection (empty, or with
/// a newline or NUL, which no URL git passes holds).
fn kind(name: &str) -> Option<Kind> {
    if name.is_empty() || name.contains(['\n', '\0']) {
        None
    } else if name.contains([':', '/']) {
        Some(Kind::Url)
    } else {
        Some(Kind::Named)
    }
}

/// Record the LFS settings for the remote `name` (a configured remote's name, or the URL git
/// passes for an unnamed one) in the repository at `git_dir`, unless they are there already
/// (one read of the config file in the usual case).
pub fn record(git_dir: &Path, name: &str, remote: &Remote, advertised: Option<&str>) {
    let Some(kind) = kind(name) else {
        return;
    };
    let lfsurl = endpoint_for(remote, advertised);
    let key = format!("remote.{name}.lfsurl");
    let ours_key = format!("remote.{name}.{OURS}");
    // The usual case, every session after the first: already recorded. Read from the config
    // file itself (about 0.1 ms) rather than by a `git config` run (about 3 ms, measured).
    let file = local_config(git_dir);
    let first = |key: &str| file.as_ref().and_then(|f| first_value(f, key));
    if first(&key).is_some_and(|current| current == lfsurl) && first(AGENT_PATH).is_some() {
        return;
    }
    match get_all(git_dir, &key).first() {
        Some(current) if *current == lfsurl && !get_all(git_dir, AGENT_PATH).is_empty() => return,
        // Recorded by a version without the agent (the arms below): the writes add it.
        // Ours from before (the remote's URL changed since, or the server now names another
        // endpoint, or no longer does): follow it.
        Some(current) if get_all(git_dir, &ours_key).first() == Some(current) => {}
        // Recorded for a URL before `hyphaLfsUrl` was written there too: the default endpoint,
        // a function of the URL, is ours.
        Some(current)
            if kind == Kind::Url && (*current == lfsurl || *current == endpoint(remote)) => {}
        Some(_) => {
            tracing::info!("{key} is set by hand: leaving git-lfs's endpoint alone");
            return;
        }
        None => {}
    }
    if kind == Kind::Named && get_all(git_dir, &format!("remote.{name}.url")).is_empty() {
        return;
    }
    let helper = credential_helper(remote);
    let helper_key = format!("credential.{}.helper", credential_scope(remote));
    let mut writes = Vec::new();
    // Per endpoint, so shared by every remote (named or a URL) that reaches it: a value
    // already there (a team that turned lock verification on) is left as it is.
    for (setting, value) in [("locksverify", "false"), ("access", "basic")] {
        let key = format!("lfs.{lfsurl}.{setting}");
        // A user's own `lfs.locksverify` (global or the repository's) decides for every
        // endpoint; a per-endpoint value would override it.
        let users = setting == "locksverify" && configured(git_dir, "lfs.locksverify");
        if !users && get_all(git_dir, &key).is_empty() {
            writes.push(vec![key, value.to_owned()]);
        }
    }
    writes.push(vec![AGENT_PATH.to_owned(), "git".to_owned()]);
    writes.push(vec![AGENT_ARGS.to_owned(), "hypha lfs-agent".to_owned()]);
    if !get_all(git_dir, &helper_key).contains(&helper) {
        writes.push(vec!["--add".to_owned(), helper_key, helper]);
    }
    if kind == Kind::Url {
        let skip_key = format!("remote.{name}.{SKIP_FETCH_ALL}");
        if get_all(git_dir, &skip_key).is_empty() {
            writes.push(vec![skip_key, "true".to_owned()]);
        }
    }
    writes.push(vec![ours_key, lfsurl.clone()]);
    // Last: it marks the others as done (see the check above).
    writes.push(vec![key, lfsurl.clone()]);
    for args in writes {
        if let Err(why) = set(git_dir, &args) {
            tracing::warn!(
                "warning: cannot record git-lfs settings in the repository config: {why}"
            );
            return;
        }
    }
    tracing::info!("git-lfs endpoint of {name}: {lfsurl}");
}

/// `git config` of the repository: its own file only (`local`), or all git reads.
fn git(git_dir: &Path, local: bool) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(git_dir).arg("config");
    if local {
        cmd.arg("--local");
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The first value of `key` in the repository's own config file, as `git config --local
/// --get-all` reads it (no includes; a linked worktree's config is its common directory's).
/// `None` when absent or unreadable: the caller then asks git.
#[cfg(test)]
fn recorded(git_dir: &Path, key: &str) -> Option<String> {
    first_value(&local_config(git_dir)?, key)
}

/// The repository's own config file, parsed once (read by `record`'s usual case).
fn local_config(git_dir: &Path) -> Option<gix::config::File> {
    let common = super::local::common_dir(git_dir);
    gix::config::File::from_path_no_includes(common.join("config"), gix::config::Source::Local).ok()
}

fn first_value(file: &gix::config::File, key: &str) -> Option<String> {
    let first = file.strings(key)?.into_iter().next()?;
    String::from_utf8(first.into()).ok()
}

/// Whether `key` is set in any configuration git reads for the repository (system, global,
/// the repository's own, `git -c`).
fn configured(git_dir: &Path, key: &str) -> bool {
    let mut cmd = git(git_dir, false);
    cmd.args(["--get", key])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn get_all(git_dir: &Path, key: &str) -> Vec<String> {
    let Ok(out) = git(git_dir, true)
        .args(["--get-all", key])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn set(git_dir: &Path, args: &[String]) -> Result<(), String> {
    let out = git(git_dir, true)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git config: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new repository in a temporary directory (kept while the guard lives): its `.git`.
    fn git_repo() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("git")
            .args(["init", "-q", "repo"])
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git init");
        let git_dir = dir.path().join("repo/.git");
        (dir, git_dir)
    }

    fn remote(url: &str) -> Remote {
        crate::config::resolve(url, &Default::default(), None).expect("valid url")
    }

    #[test]
    fn recorded_values_read_as_git_config_local_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("git runs")
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q", "repo"]);
        let git_dir = dir.path().join("repo/.git");
        let key = "remote.my.origin.lfsurl";
        assert_eq!(recorded(&git_dir, key), None);
        let url = "http://127.0.0.1:9527/ws/git/r.git/info/lfs";
        run(&["-C", "repo", "config", "--add", key, url]);
        run(&["-C", "repo", "config", "--add", key, "second"]);
        assert_eq!(recorded(&git_dir, key).as_deref(), Some(url));
        assert_eq!(get_all(&git_dir, key), vec![url, "second"]);
        // A linked worktree's git dir reads its common directory's config.
        run(&[
            "-C",
            "repo",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "c",
        ]);
        run(&["-C", "repo", "worktree", "add", "-q", "../wt"]);
        let wt_git_dir = dir.path().join("repo/.git/worktrees/wt");
        assert_eq!(recorded(&wt_git_dir, key).as_deref(), Some(url));
    }

    #[test]
    fn a_url_is_a_remote_of_its_own_and_a_name_without_one_is_skipped() {
        assert_eq!(kind("origin"), Some(Kind::Named));
        assert_eq!(kind("hypha::https://h/ws/r"), Some(Kind::Url));
        assert_eq!(kind("hypha::ws/r"), Some(Kind::Url));
        assert_eq!(kind(""), None);
        assert_eq!(kind("hypha::https://h/ws/r\nx"), None);
    }

    /// An unnamed remote's settings go under the URL git passes as its name, whatever the
    /// URL holds (dots, colons, a quote and a backslash, which git config escapes), once:
    /// the second session finds them and writes nothing.
    #[test]
    fn an_unnamed_remote_is_recorded_under_its_url_once() {
        let (_dir, git_dir) = git_repo();
        for name in [
            "hypha::http://127.0.0.1:9527/ws/Data.v2",
            "hypha::http://127.0.0.1:9527/a\"b\\c/ws/repo",
        ] {
            let r = remote(name);
            record(&git_dir, name, &r, None);
            let key = format!("remote.{name}.lfsurl");
            assert_eq!(get_all(&git_dir, &key), vec![endpoint(&r)], "{name}");
            assert_eq!(recorded(&git_dir, &key), Some(endpoint(&r)), "{name}");
            assert_eq!(
                get_all(&git_dir, &format!("remote.{name}.{SKIP_FETCH_ALL}")),
                vec!["true"]
            );
            assert_eq!(
                get_all(&git_dir, &format!("remote.{name}.{OURS}")),
                vec![endpoint(&r)]
            );
            let config = std::fs::read(git_dir.join("config")).expect("config");
            record(&git_dir, name, &r, None);
            assert_eq!(
                std::fs::read(git_dir.join("config")).expect("config"),
                config,
                "recorded once: {name}"
            );
        }
        // A URL reaching a named remote's endpoint leaves that endpoint's settings alone:
        // lock verification a team turned on stays on.
        let origin = "hypha::http://127.0.0.1:9527/ws/locked";
        let r = remote(origin);
        let verify = format!("lfs.{}.locksverify", endpoint(&r));
        set(&git_dir, &[verify.clone(), "true".to_owned()]).expect("git config");
        record(&git_dir, origin, &r, None);
        assert_eq!(get_all(&git_dir, &verify), vec!["true"]);
        // A user's own lfs.locksverify decides: no per-endpoint value overrides it.
        let mine = "hypha::http://127.0.0.1:9527/ws/mine";
        let r = remote(mine);
        set(&git_dir, &["lfs.locksverify".to_owned(), "true".to_owned()]).expect("git config");
        record(&git_dir, mine, &r, None);
        let verify = format!("lfs.{}.locksverify", endpoint(&r));
        assert!(
            get_all(&git_dir, &verify).is_empty(),
            "{verify} not written"
        );
        assert_eq!(
            get_all(&git_dir, &format!("lfs.{}.access", endpoint(&r))),
            vec!["basic"]
        );
        // One credential helper line per server root, however many sessions.
        let mut helpers = get_all(&git_dir, "credential.http://127.0.0.1:9527.helper");
        let all = helpers.len();
        helpers.dedup();
        assert_eq!(helpers.len(), all, "no duplicate helper lines: {helpers:?}");
    }

    /// The plugin's path is taken; anything that would leave the remote's workspace on its
    /// server, or is not a plain path, falls back to the default endpoint.
    #[test]
    fn an_advertised_endpoint_is_taken_only_below_the_workspace() {
        let r = remote("hypha::http://127.0.0.1:9527/base/ws-1/data");
        let plugin = "ws-1/git/data/remote/v1/lfs";
        assert_eq!(
            endpoint_for(&r, Some(plugin)),
            "http://127.0.0.1:9527/base/ws-1/git/data/remote/v1/lfs"
        );
        assert_eq!(endpoint_for(&r, None), endpoint(&r));
        let long = format!("ws-1/git/{}", "a".repeat(MAX_ENDPOINT_PATH));
        for hostile in [
            "",
            "/ws-1/git/data/lfs",
            "ws-2/git/data/remote/v1/lfs",
            "ws-1/git/../../ws-2/git/x",
            "ws-1/git/./x",
            "ws-1/git//x",
            "ws-1/git/x/",
            "ws-1/git/x?y",
            "ws-1/git/x#y",
            "ws-1/git/x%2F..",
            "ws-1/git/x\\y",
            "ws-1/git/x y",
            "ws-1/git/x\ny",
            "ws-1/git/évil",
            "//evil.example/ws-1/git/x",
            "http://evil.example/ws-1/git/x",
            "ws-1@evil.example/git/x",
            long.as_str(),
        ] {
            assert!(check_advertised(&r, hostile).is_err(), "{hostile:?}");
            assert_eq!(endpoint_for(&r, Some(hostile)), endpoint(&r), "{hostile:?}");
        }
    }

    /// A remote recorded with Hypha's endpoint (an older helper or plugin) moves to the one
    /// the server names, and back when the server no longer names one; a value set by hand
    /// stays whatever the server says.
    #[test]
    fn the_recorded_endpoint_follows_the_server_unless_set_by_hand() {
        let (_dir, git_dir) = git_repo();
        let url = "hypha::http://127.0.0.1:9527/ws/repo";
        let r = remote(url);
        let plugin = "ws/git/repo/remote/v1/lfs";
        let ours = endpoint_for(&r, Some(plugin));
        set(&git_dir, &["remote.origin.url".to_owned(), url.to_owned()]).expect("git config");
        let lfsurl = |name: &str| get_all(&git_dir, &format!("remote.{name}.lfsurl"));

        record(&git_dir, "origin", &r, None);
        assert_eq!(lfsurl("origin"), vec![endpoint(&r)]);
        record(&git_dir, "origin", &r, Some(plugin));
        assert_eq!(lfsurl("origin"), vec![ours.clone()]);
        assert_eq!(
            get_all(&git_dir, &format!("lfs.{ours}.access")),
            vec!["basic"]
        );
        record(&git_dir, "origin", &r, None);
        assert_eq!(lfsurl("origin"), vec![endpoint(&r)]);

        // An unnamed remote recorded before hyphaLfsUrl was written for URLs.
        set(&git_dir, &[format!("remote.{url}.lfsurl"), endpoint(&r)]).expect("git config");
        record(&git_dir, url, &r, Some(plugin));
        assert_eq!(lfsurl(url), vec![ours.clone()]);

        // Set by hand: left alone.
        let mine = "https://lfs.example.org/mine".to_owned();
        set(&git_dir, &["remote.origin.lfsurl".to_owned(), mine.clone()]).expect("git config");
        record(&git_dir, "origin", &r, Some(plugin));
        record(&git_dir, "origin", &r, None);
        assert_eq!(lfsurl("origin"), vec![mine]);
    }

    #[test]
    fn endpoint_is_hyphas_lfs_path() {
        let r = remote("hypha::https://hypha.example.org/ws-1/data");
        assert_eq!(
            endpoint(&r),
            "https://hypha.example.org/ws-1/git/data.git/info/lfs"
        );
        assert_eq!(credential_scope(&r), "https://hypha.example.org");
        let r = remote("hypha::http://127.0.0.1:9527/base/ws/repo.git");
        assert_eq!(
            endpoint(&r),
            "http://127.0.0.1:9527/base/ws/git/repo.git/info/lfs"
        );
        assert_eq!(credential_scope(&r), "http://127.0.0.1:9527");
        assert_eq!(
            credential_helper(&r),
            "!git hypha credential --server 'http://127.0.0.1:9527/base/'"
        );
        let r = remote("hypha::http://h/a;b$(x)'c/ws/repo");
        assert_eq!(
            credential_helper(&r),
            "!git hypha credential --server 'http://h/a;b$(x)'\\''c/'"
        );
    }
}
