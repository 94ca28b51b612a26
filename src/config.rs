//! Where a `hypha::` remote lives and how to authenticate (docs/design.md §6).
//!
//! [`resolve`] is a pure function from explicit inputs (the URL git passed, the environment, the
//! `hypha.server` git config value) to a [`Remote`], so precedence is unit-tested. Looking up a
//! token through `git credential` needs a subprocess and lives in [`credential`].

use std::collections::HashMap;
use url::Url;

/// A resolved remote repository: a server root plus `workspace/alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Server root, always ending in `/` so that joining a relative path keeps any base path.
    pub server: Url,
    pub workspace: String,
    pub alias: String,
}

impl Remote {
    /// `ws/alias`, the name users know the repository by; used in every error message.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.workspace, self.alias)
    }

    /// The full `hypha::` URL, for messages and `git hypha url`.
    pub fn url(&self) -> String {
        format!("hypha::{}{}/{}", self.server, self.workspace, self.alias)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("'{0}' is not a hypha address: expected hypha::https://host/workspace/alias or hypha::workspace/alias")]
    BadAddress(String),
    #[error(
        "'{0}' names no server: set HYPHA_SERVER_URL or `git config hypha.server https://host`"
    )]
    NoServer(String),
    #[error("invalid server URL '{0}'")]
    BadServer(String),
    #[error("invalid workspace or repository name in '{0}'")]
    BadName(String),
}

/// Resolve the address git passed as the helper's second argument (or the first, when git
/// passes only one). `hypha::` may still be present when a user runs the helper by hand.
pub fn resolve(
    address: &str,
    env: &HashMap<String, String>,
    configured_server: Option<&str>,
) -> Result<Remote, Error> {
    let address = address.strip_prefix("hypha::").unwrap_or(address);
    let bad = || Error::BadAddress(address.to_owned());
    if address.starts_with("http://") || address.starts_with("https://") {
        let url = Url::parse(address).map_err(|_| bad())?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad());
        }
        let mut segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if segments.len() < 2 {
            return Err(bad());
        }
        let alias = segments.pop().ok_or_else(bad)?.to_owned();
        let workspace = segments.pop().ok_or_else(bad)?.to_owned();
        let mut server = url.clone();
        server.set_path(&format!("{}/", segments.join("/")));
        server.set_fragment(None);
        return finish(server, &workspace, &alias, address);
    }
    let (workspace, alias) = address.split_once('/').ok_or_else(bad)?;
    if alias.contains('/') {
        return Err(bad());
    }
    let server = env
        .get("HYPHA_SERVER_URL")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .or(configured_server.filter(|s| !s.is_empty()))
        .ok_or_else(|| Error::NoServer(address.to_owned()))?;
    let mut server = Url::parse(server).map_err(|_| Error::BadServer(server.to_owned()))?;
    // A query or fragment is refused as in the full form: the API's URLs are joined under the
    // server's path and would not start with it (found by the names fuzz target).
    if !matches!(server.scheme(), "http" | "https")
        || server.query().is_some()
        || server.fragment().is_some()
    {
        return Err(Error::BadServer(server.to_string()));
    }
    // The same base path as the full form reads from `url()`: empty segments dropped, one
    // trailing slash (the server fuzz target found `https://h//base` naming two servers).
    let segments: Vec<String> = server
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let path = if segments.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}/", segments.join("/"))
    };
    server.set_path(&path);
    finish(server, workspace, alias, address)
}

fn finish(server: Url, workspace: &str, alias: &str, address: &str) -> Result<Remote, Error> {
    // Hypha strips `.git` from aliases; so do we, so both spellings name one repository.
    let alias = alias.strip_suffix(".git").unwrap_or(alias);
    // One `.git` is stripped: `x.git.git` would name `x.git` here and `x` once written back
    // by `url()` (found by the names fuzz target), so it names nothing.
    if !crate::api::is_valid_repo_segment(workspace)
        || !crate::api::is_valid_repo_segment(alias)
        || alias.ends_with(".git")
    {
        return Err(Error::BadName(address.to_owned()));
    }
    if !server.username().is_empty() || server.password().is_some() {
        // A token in the URL would end up in .git/config and in process listings.
        return Err(Error::BadServer(
            "credentials in the URL are not accepted; use HYPHA_TOKEN".into(),
        ));
    }
    Ok(Remote {
        server,
        workspace: workspace.to_owned(),
        alias: alias.to_owned(),
    })
}

/// Set by the remote helper on its own `git credential` calls, so that `git hypha credential`
/// (`credential_helper`, recorded for git-lfs) stays out of them: it would otherwise answer
/// with the login token under another name. Here, not there, so that `config` never imports
/// the credential helper that imports it.
pub const FROM_REMOTE_HELPER_ENV: &str = "HYPHA_GIT_CREDENTIAL_FROM_HELPER";

/// `git config --get <key>` in the current repository (or the user's config), if set.
pub fn git_config(key: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", key])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Where the token came from decides what happens when the server refuses it, and what an
/// error message tells the user to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Environment,
    /// From `git credential fill`: approve on success, reject on 401.
    CredentialHelper,
    /// Stored by `git hypha login`; the last source, used when the others have none.
    Login,
}

#[derive(Clone)]
pub struct Token {
    pub secret: String,
    pub source: TokenSource,
}

/// The place, as messages name it: "the token from {source}".
impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenSource::Environment => "HYPHA_TOKEN",
            TokenSource::CredentialHelper => "the git credential helper",
            TokenSource::Login => "`git hypha login`",
        })
    }
}

// Tokens are secrets: Debug prints their origin only.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<redacted> from {})", self.source)
    }
}

/// The token from the environment, if any; the credential helper is asked only when the
/// server demands authentication, so public repositories never prompt.
pub fn env_token(env: &HashMap<String, String>) -> Option<Token> {
    env.get("HYPHA_TOKEN")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| Token {
            secret: t.to_owned(),
            source: TokenSource::Environment,
        })
}

pub mod credential {
    //! `git credential fill|approve|reject` for the server's host with user `git`.
    //!
    //! The token travels on the subprocess's stdin/stdout, never on its command line.

    use super::{Remote, Token, TokenSource};
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn description(remote: &Remote, password: Option<&str>) -> String {
        let mut host = remote.server.host_str().unwrap_or_default().to_owned();
        if let Some(port) = remote.server.port() {
            host = format!("{host}:{port}");
        }
        let mut s = format!(
            "protocol={}\nhost={}\nusername=git\n",
            remote.server.scheme(),
            host
        );
        if let Some(p) = password {
            s.push_str(&format!("password={p}\n"));
        }
        s.push('\n');
        s
    }

    fn run(action: &str, input: &str) -> Option<String> {
        let mut child = Command::new("git")
            .args(["credential", action])
            // Never block a CI job on a terminal prompt; askpass programs still work.
            .env("GIT_TERMINAL_PROMPT", "0")
            // `git hypha credential` (recorded for git-lfs) stays out: the login token is
            // read below as what it is, and HYPHA_TOKEN was read before.
            .env(super::FROM_REMOTE_HELPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(input.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Ask the configured credential helpers for a token, then fall back to the token that
    /// `git hypha login` stored for this server (the last source, docs/design.md §6); `None` when
    /// neither has one.
    pub fn fill(remote: &Remote) -> Option<Token> {
        from_helpers(remote).or_else(|| {
            let logins = crate::login::logins_path()?;
            crate::login::stored_token(&logins, &remote.server).map(|secret| Token {
                secret,
                source: TokenSource::Login,
            })
        })
    }

    fn from_helpers(remote: &Remote) -> Option<Token> {
        let out = run("fill", &description(remote, None))?;
        out.lines()
            .find_map(|l| l.strip_prefix("password="))
            .filter(|p| !p.is_empty())
            .map(|p| Token {
                secret: p.to_owned(),
                source: TokenSource::CredentialHelper,
            })
    }

    pub fn approve(remote: &Remote, token: &Token) {
        let _ = run("approve", &description(remote, Some(&token.secret)));
    }

    pub fn reject(remote: &Remote, token: &Token) {
        let _ = run("reject", &description(remote, Some(&token.secret)));
    }
}

/// An environment of `pairs`, for tests of code that reads one.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_env as env;
    use super::*;

    #[test]
    fn full_urls() {
        let r = resolve("hypha::https://hypha.example/ws/repo", &env(&[]), None).expect("ok");
        assert_eq!(r.server.as_str(), "https://hypha.example/");
        assert_eq!(r.display_name(), "ws/repo");
        let r = resolve("http://127.0.0.1:9000/base/ws/repo.git/", &env(&[]), None).expect("ok");
        assert_eq!(r.server.as_str(), "http://127.0.0.1:9000/base/");
        assert_eq!((r.workspace.as_str(), r.alias.as_str()), ("ws", "repo"));
    }

    #[test]
    fn short_form_precedence() {
        let e = env(&[("HYPHA_SERVER_URL", "https://from-env")]);
        let r = resolve("ws/repo", &e, Some("https://from-config")).expect("ok");
        assert_eq!(r.server.as_str(), "https://from-env/");
        let r = resolve("hypha::ws/repo", &env(&[]), Some("https://cfg/sub")).expect("ok");
        assert_eq!(r.server.as_str(), "https://cfg/sub/");
        assert_eq!(
            resolve("ws/repo", &env(&[]), None),
            Err(Error::NoServer("ws/repo".into()))
        );
        // Empty segments of a base path are dropped, as the full form drops them, so that
        // `url()` names the same remote (found by the names fuzz target).
        let r = resolve("ws/repo", &env(&[]), Some("https://h//base//")).expect("ok");
        assert_eq!(r.server.as_str(), "https://h/base/");
        assert_eq!(resolve(&r.url(), &env(&[]), None), Ok(r));
        assert!(matches!(
            resolve("hypha::https://h/ws/x.git.git", &env(&[]), None),
            Err(Error::BadName(_))
        ));
        for server in ["https://h/#frag", "https://h/?q=1"] {
            assert!(matches!(
                resolve("ws/repo", &env(&[]), Some(server)),
                Err(Error::BadServer(_))
            ));
        }
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "https://host/onlyone",
            "ws",
            "ws/a/b",
            "https://host/ws/..",
            "https://host/ws/%2e%2e",
            "https://git:secret@host/ws/repo",
            "https://host/ws/repo?x=1",
            "../x",
        ] {
            assert!(resolve(bad, &env(&[]), Some("https://h")).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_precedence_and_redaction() {
        assert!(env_token(&env(&[])).is_none());
        assert!(env_token(&env(&[("HYPHA_TOKEN", "  ")])).is_none());
        let t = env_token(&env(&[("HYPHA_TOKEN", "s3cret\n")])).expect("token");
        assert_eq!(t.secret, "s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
