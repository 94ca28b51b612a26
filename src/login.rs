//! `git hypha login` / `logout`: a token from Hypha's login service, kept per server under the
//! user's configuration directory (docs/design.md §6, docs/hypha.md §3.3).
//!
//! The flow is Hypha's own: `GET {server}/public/services/hypha-login/start` gives a
//! `login_url` (shown to the user) and a `key`; `GET .../check?key=K&timeout=0` answers JSON
//! `null` until the user has logged in in a browser, then the token as a JSON string (once).
//!
//! Tokens live in `git-hypha/logins.json` under the user's configuration directory as the
//! `dirs` crate finds it (Linux: `$XDG_CONFIG_HOME`, else `$HOME/.config`; macOS:
//! `~/Library/Application Support`; Windows: `%APPDATA%`), a map from server URL to token,
//! written with mode 0600 through a temporary file and a rename.
//! The helper reads it last, after `HYPHA_TOKEN` and `git credential` ([`stored_token`]).
//! A token never reaches a message or an error here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use url::Url;

/// How often `check` is asked while the user logs in.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no configuration directory: set HOME (or XDG_CONFIG_HOME)")]
    NoConfigDir,
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid login file", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot reach the login service of {server}")]
    Http {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the login service of {server} answered HTTP {status} to {step}")]
    Status {
        server: String,
        step: &'static str,
        status: u16,
    },
    #[error("the login service of {server} sent an unreadable answer to {step}")]
    Decode { server: String, step: &'static str },
    #[error("login at {server} was not completed within {secs} s")]
    TimedOut { server: String, secs: u64 },
}

/// The key a server's token is stored under: its URL with a trailing `/`, so that
/// `https://h` and `https://h/` are one server.
pub fn server_key(server: &Url) -> String {
    let s = server.as_str();
    if s.ends_with('/') {
        s.to_owned()
    } else {
        format!("{s}/")
    }
}

/// Where `git hypha login` keeps its tokens: `git-hypha/logins.json` under the user's
/// configuration directory; `None` when the platform names none (no home directory).
pub fn logins_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("git-hypha").join("logins.json"))
}

fn read_logins(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(Error::Io {
            what: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replace the file: a temporary file created with mode 0600, then a rename, so the token is
/// never readable by others, not even for a moment, and a crash leaves the old file.
fn write_logins(path: &Path, logins: &BTreeMap<String, String>) -> Result<(), Error> {
    let io = |what, source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().ok_or(Error::NoConfigDir)?;
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let body = serde_json::to_vec_pretty(logins).expect("a string map serializes");
    let mut tmp = tempfile::Builder::new()
        .prefix(".logins")
        .permissions(private_permissions())
        .tempfile_in(dir)
        .map_err(|e| io("write", e))?;
    std::io::Write::write_all(&mut tmp, &body).map_err(|e| io("write", e))?;
    tmp.persist(path).map_err(|e| io("write", e.error))?;
    Ok(())
}

#[cfg(unix)]
fn private_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o600)
}

#[cfg(not(unix))]
fn private_permissions() -> std::fs::Permissions {
    std::fs::metadata(".")
        .map(|m| m.permissions())
        .expect("the current directory has metadata")
}

/// The token `git hypha login` stored for `server` in `logins` (see [`logins_path`]), if any.
/// Errors read as "none": the helper then goes on without a token and the server says what
/// is missing.
pub fn stored_token(logins: &Path, server: &Url) -> Option<String> {
    read_logins(logins)
        .ok()?
        .remove(&server_key(server))
        .filter(|t| !t.trim().is_empty())
}

/// Keep `token` for `server` in `logins`.
pub fn store_token(logins: &Path, server: &Url, token: &str) -> Result<(), Error> {
    let mut map = read_logins(logins)?;
    map.insert(server_key(server), token.trim().to_owned());
    write_logins(logins, &map)
}

/// Forget the token of `server` in `logins`; `false` when there was none.
pub fn remove_token(logins: &Path, server: &Url) -> Result<bool, Error> {
    let mut map = read_logins(logins)?;
    if map.remove(&server_key(server)).is_none() {
        return Ok(false);
    }
    write_logins(logins, &map)?;
    Ok(true)
}

/// The server to log in to: the argument, else `HYPHA_SERVER_URL`, else the configured
/// `hypha.server`. Only the origin and path matter; credentials in it are refused.
pub fn resolve_server(
    arg: Option<&str>,
    env: &HashMap<String, String>,
    configured: Option<String>,
) -> Result<Url, ServerError> {
    let raw = arg
        .map(str::to_owned)
        .or_else(|| env.get("HYPHA_SERVER_URL").cloned())
        .filter(|s| !s.is_empty())
        .or(configured)
        .ok_or(ServerError::Missing)?;
    let raw = raw.strip_prefix("hypha::").unwrap_or(&raw);
    let mut url = Url::parse(raw).map_err(|_| ServerError::Invalid(raw.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(ServerError::Invalid(raw.to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ServerError::Invalid("credentials in the URL".to_owned()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    #[error(
        "no server: pass one, set HYPHA_SERVER_URL, or `git config hypha.server https://host`"
    )]
    Missing,
    #[error("invalid server URL '{0}'")]
    Invalid(String),
}

/// What `start` returns (only the fields used).
#[derive(Debug, serde::Deserialize)]
pub struct Started {
    pub login_url: String,
    pub key: String,
}

/// Begin a login: the URL for the user to open, and the key to poll with.
pub async fn start(http: &reqwest::Client, server: &Url) -> Result<Started, Error> {
    let url = service_url(server, "start")?;
    get_json(http, server, "start", url).await
}

/// Poll `check` until the user has logged in (the token), or `timeout` passes.
pub async fn wait(
    http: &reqwest::Client,
    server: &Url,
    key: &str,
    timeout: Duration,
) -> Result<String, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut url = service_url(server, "check")?;
        url.query_pairs_mut()
            .append_pair("key", key)
            .append_pair("timeout", "0");
        let answer: Option<String> = get_json(http, server, "check", url).await?;
        if let Some(token) = answer.filter(|t| !t.is_empty()) {
            return Ok(token);
        }
        if Instant::now() >= deadline {
            return Err(Error::TimedOut {
                server: server.to_string(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn service_url(server: &Url, function: &str) -> Result<Url, Error> {
    server
        .join(&format!("public/services/hypha-login/{function}"))
        .map_err(|_| Error::Decode {
            server: server.to_string(),
            step: "start",
        })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    server: &Url,
    step: &'static str,
    url: Url,
) -> Result<T, Error> {
    let http_err = |source: reqwest::Error| Error::Http {
        server: server.to_string(),
        source: source.without_url(),
    };
    let resp = http.get(url).send().await.map_err(http_err)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::Status {
            server: server.to_string(),
            step,
            status: status.as_u16(),
        });
    }
    let bytes = resp.bytes().await.map_err(http_err)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Decode {
        server: server.to_string(),
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_per_server_privately_and_forgets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logins = dir.path().join("git-hypha").join("logins.json");
        let a = Url::parse("https://a.example").expect("url");
        let b = Url::parse("http://127.0.0.1:9000/base/").expect("url");
        assert_eq!(stored_token(&logins, &a), None);
        store_token(&logins, &a, "tok-a\n").expect("store");
        store_token(&logins, &b, "tok-b").expect("store");
        assert_eq!(stored_token(&logins, &a).as_deref(), Some("tok-a"));
        assert_eq!(stored_token(&logins, &b).as_deref(), Some("tok-b"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&logins)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(remove_token(&logins, &a).expect("remove"));
        assert!(!remove_token(&logins, &a).expect("remove"));
        assert_eq!(stored_token(&logins, &a), None);
        assert_eq!(stored_token(&logins, &b).as_deref(), Some("tok-b"));
    }

    /// Today's location on Linux, as `dirs` finds it. `dirs` reads the process environment,
    /// so each case runs this test again in a child process with exactly that environment
    /// (setting variables in this process would leak into tests running beside it).
    #[test]
    #[cfg(target_os = "linux")]
    fn config_dir_precedence() {
        const CHILD: &str = "GIT_HYPHA_TEST_LOGINS_PATH_CHILD";
        const MARK: &str = "logins_path=";
        if std::env::var_os(CHILD).is_some() {
            let path = logins_path().map(|p| p.display().to_string());
            #[allow(clippy::print_stdout)]
            {
                println!("{MARK}{}", path.unwrap_or_default());
            }
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")],
                "/x/git-hypha/logins.json",
            ),
            (
                &[("HOME", "/h"), ("XDG_CONFIG_HOME", "")],
                "/h/.config/git-hypha/logins.json",
            ),
            // The XDG spec ignores a relative XDG_CONFIG_HOME.
            (
                &[("HOME", "/h"), ("XDG_CONFIG_HOME", "rel")],
                "/h/.config/git-hypha/logins.json",
            ),
        ];
        for (vars, expected) in cases {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "login::tests::config_dir_precedence",
                    "--nocapture",
                ])
                .env_clear()
                .env(CHILD, "1")
                .envs(vars.iter().copied())
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let found = stdout
                .split(MARK)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            assert_eq!(found, Some(*expected), "{vars:?}: {stdout}");
        }
    }
}
