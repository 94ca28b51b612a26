//! Git LFS with no setup: the helper records, in the repository's own config, where git-lfs
//! finds the remote's LFS endpoint and how it gets a token (README "Git LFS").
//!
//! git-lfs cannot derive an endpoint from a `hypha::` URL, so during every session with a
//! named remote the helper makes sure that
//!
//! - `remote.<name>.lfsurl` is `{server}{ws}/git/{alias}.git/info/lfs`: Hypha's own LFS
//!   endpoint, and the same path on `git hypha serve`;
//! - `lfs.<lfsurl>.locksverify` is `false`: checking locks costs every push a request, and a
//!   Hypha without the plugin has no locks API (opt-in where there is, README "Git LFS");
//! - `lfs.<lfsurl>.access` is `basic`: git-lfs sends credentials from the first request on,
//!   as it would itself after a 401 (Hypha answers an anonymous request for a private
//!   repository with 403, on which git-lfs would never ask for credentials);
//! - `lfs.customtransfer.hypha.path` / `.args` run `git hypha lfs-agent`, our transfer
//!   agent (`crate::lfs_agent`): git-lfs offers it in every batch request, and uses it where
//!   the server picks it (ours does; Hypha's own endpoint answers `basic`), for objects past
//!   5 GiB, in parallel parts, resumable;
//! - `credential.<scheme://host>.helper` includes `!git hypha credential --server <server>`:
//!   git-lfs asks `git credential` for the LFS host, and that answers with the token the
//!   helper itself would use ([`crate::credential_helper`]); no token is written anywhere.
//!
//! git runs the helper before a clone's checkout and before the pre-push hook, so smudge and
//! `git lfs pre-push` already find these. A `remote.<name>.lfsurl` the user set to something
//! else is left alone (the helper's own is remembered in `remote.<name>.hyphaLfsUrl`, and
//! follows the remote's URL), and so is everything for an unnamed remote (a URL on the
//! command line).
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

/// The LFS endpoint git-lfs should use for `remote`.
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

/// Record the LFS settings for the remote `name` in the repository at `git_dir`, unless they
/// are there already (one `git config` read in the usual case). Only for a configured remote:
/// git passes the URL itself as the name of an unnamed one.
pub fn record(git_dir: &Path, name: &str, remote: &Remote) {
    if name.is_empty() || name.contains([':', '/']) {
        return;
    }
    let lfsurl = endpoint(remote);
    let key = format!("remote.{name}.lfsurl");
    let ours_key = format!("remote.{name}.{OURS}");
    // The usual case, every session after the first: already recorded. Read from the config
    // file itself (about 0.1 ms) rather than by a `git config` run (about 3 ms, measured).
    if recorded(git_dir, &key).is_some_and(|current| current == lfsurl)
        && recorded(git_dir, AGENT_PATH).is_some()
    {
        return;
    }
    match get_all(git_dir, &key).first() {
        // Recorded by a version without the agent: the writes below add it.
        Some(current) if *current == lfsurl && !get_all(git_dir, AGENT_PATH).is_empty() => return,
        // Ours from before (the remote's URL changed since): follow it.
        Some(current) if get_all(git_dir, &ours_key).first() == Some(current) => {}
        Some(_) => {
            tracing::info!("{key} is set by hand: leaving git-lfs's endpoint alone");
            return;
        }
        None => {}
    }
    if get_all(git_dir, &format!("remote.{name}.url")).is_empty() {
        return;
    }
    let helper = credential_helper(remote);
    let helper_key = format!("credential.{}.helper", credential_scope(remote));
    let mut writes = vec![
        vec![format!("lfs.{lfsurl}.locksverify"), "false".to_owned()],
        vec![format!("lfs.{lfsurl}.access"), "basic".to_owned()],
        vec![AGENT_PATH.to_owned(), "git".to_owned()],
        vec![AGENT_ARGS.to_owned(), "hypha lfs-agent".to_owned()],
    ];
    if !get_all(git_dir, &helper_key).contains(&helper) {
        writes.push(vec!["--add".to_owned(), helper_key, helper]);
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

fn git(git_dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(git_dir)
        .args(["config", "--local"]);
    cmd.stdin(Stdio::null());
    cmd
}

/// The first value of `key` in the repository's own config file, as `git config --local
/// --get-all` reads it (no includes; a linked worktree's config is its common directory's).
/// `None` when absent or unreadable: the caller then asks git.
fn recorded(git_dir: &Path, key: &str) -> Option<String> {
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.to_path_buf(),
    };
    let file =
        gix::config::File::from_path_no_includes(common.join("config"), gix::config::Source::Local)
            .ok()?;
    let first = file.strings(key)?.into_iter().next()?;
    String::from_utf8(first.into()).ok()
}

fn get_all(git_dir: &Path, key: &str) -> Vec<String> {
    let Ok(out) = git(git_dir)
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
    let out = git(git_dir)
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
