//! git's own HTTP settings for one URL, read the way git's `http.c` reads them, and applied to
//! a reqwest client: `http.sslCAInfo`, `http.sslCAPath`, `http.sslVerify`, `http.sslCert`,
//! `http.sslKey`, `http.proxy` (and `remote.<name>.proxy` before it), `http.lowSpeedLimit`,
//! `http.lowSpeedTime`, `http.version`, each also in the URL-matched `http.<url>.*` form, and
//! the environment variables that override them (`GIT_SSL_CAINFO`, `GIT_SSL_CAPATH`,
//! `GIT_SSL_NO_VERIFY`, `GIT_SSL_CERT`, `GIT_SSL_KEY`, `GIT_HTTP_LOW_SPEED_LIMIT`,
//! `GIT_HTTP_LOW_SPEED_TIME`). Proxies from the environment (`https_proxy`, `NO_PROXY`, ...)
//! are reqwest's own, as they are curl's for git.
//!
//! git answers the URL matching itself (`git config --get-urlmatch http <url>`), so the rules
//! are exactly git's. That is one `git` run (about 3 ms, a third of an ls-remote), so it is
//! made only when a configuration git would read can hold such a setting: a file with an
//! `[http]` or `[include]` section or a remote's `proxy`, or such a key on git's command line
//! (`git -c`). Where a file cannot be found for certain (an unknown git installation), git is
//! asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What git's configuration and environment say about HTTP for one URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `http.sslCAInfo` / `GIT_SSL_CAINFO`: the only roots trusted (as curl's CAINFO).
    pub ca_info: Option<PathBuf>,
    /// `http.sslCAPath` / `GIT_SSL_CAPATH`: a directory of more roots.
    pub ca_path: Option<PathBuf>,
    /// `http.sslVerify=false` / `GIT_SSL_NO_VERIFY`.
    pub no_verify: bool,
    /// `http.sslCert` / `GIT_SSL_CERT`: a client certificate (PEM, may hold the key too).
    pub cert: Option<PathBuf>,
    /// `http.sslKey` / `GIT_SSL_KEY`: its private key (PEM).
    pub key: Option<PathBuf>,
    /// `remote.<name>.proxy`, else `http.proxy`; `Some("")` turns every proxy off, as in git.
    pub proxy: Option<String>,
    /// `http.lowSpeedLimit` / `GIT_HTTP_LOW_SPEED_LIMIT` (bytes per second).
    pub low_speed_limit: u64,
    /// `http.lowSpeedTime` / `GIT_HTTP_LOW_SPEED_TIME` (seconds).
    pub low_speed_time: u64,
    /// `http.version`: `HTTP/1.1` keeps every connection on HTTP/1.1.
    pub http1_only: bool,
}

/// A setting that cannot be used as given: its name and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct Error {
    pub setting: String,
    pub problem: String,
}

fn error(setting: &str, problem: impl Into<String>) -> Error {
    Error {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

impl Settings {
    /// The settings for `url` (the remote git named `remote_name`, when it has a name), with
    /// the `git config` runs `wanted` (from [`Wanted::look`], once a session) says may find some.
    pub fn read(url: &str, remote_name: Option<&str>, wanted: Wanted) -> Result<Settings, Error> {
        let env = |k: &str| std::env::var(k).ok();
        let mut config = BTreeMap::new();
        if wanted.http {
            config = git_urlmatch(url)?;
        }
        if wanted.remote_proxy {
            if let Some(name) = remote_name.filter(|n| is_remote_name(n)) {
                if let Some(proxy) = git_get(&format!("remote.{name}.proxy"))? {
                    config.insert("remote.proxy".to_owned(), proxy);
                }
            }
        }
        Settings::from_parts(&config, &env)
    }

    /// Settings from `git config --get-urlmatch http` output (keys lower-cased, plus
    /// `remote.proxy` for the remote's own) and the environment, with git's precedence: the
    /// environment over the configuration, the remote's proxy over `http.proxy`.
    pub fn from_parts(
        config: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Error> {
        let get = |key: &str, var: Option<&str>| {
            var.and_then(env)
                .or_else(|| config.get(key).cloned())
                .filter(|v| !v.is_empty())
        };
        let mut s = Settings {
            ca_info: get("http.sslcainfo", Some("GIT_SSL_CAINFO")).map(expand_home),
            ca_path: get("http.sslcapath", Some("GIT_SSL_CAPATH")).map(expand_home),
            cert: get("http.sslcert", Some("GIT_SSL_CERT")).map(expand_home),
            key: get("http.sslkey", Some("GIT_SSL_KEY")).map(expand_home),
            ..Settings::default()
        };
        if let Some(v) = config.get("http.sslverify") {
            s.no_verify = !parse_bool(v).ok_or_else(|| error("http.sslVerify", bad_bool(v)))?;
        }
        // git: "GIT_SSL_NO_VERIFY ... if set, whatever its value".
        if env("GIT_SSL_NO_VERIFY").is_some() {
            s.no_verify = true;
        }
        s.proxy = config
            .get("remote.proxy")
            .or_else(|| config.get("http.proxy"))
            .cloned();
        s.low_speed_limit = number(
            &get("http.lowspeedlimit", Some("GIT_HTTP_LOW_SPEED_LIMIT")),
            "http.lowSpeedLimit",
        )?;
        s.low_speed_time = number(
            &get("http.lowspeedtime", Some("GIT_HTTP_LOW_SPEED_TIME")),
            "http.lowSpeedTime",
        )?;
        if let Some(v) = config.get("http.version") {
            match v.as_str() {
                "HTTP/1.1" => s.http1_only = true,
                "HTTP/2" => {}
                other => {
                    return Err(error(
                        "http.version",
                        format!("{other:?} is not HTTP/1.1 or HTTP/2"),
                    ))
                }
            }
        }
        Ok(s)
    }

    /// Whether these settings need the TLS client for a plain `http://` URL (a proxy reached
    /// over TLS).
    pub fn proxy_needs_tls(&self) -> bool {
        self.proxy.as_deref().is_some_and(|p| {
            p.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
    }

    /// The stall after which a transfer is given up: `http.lowSpeedTime` when a low-speed
    /// limit is set. curl averages the rate over that time; reqwest bounds the time between
    /// two reads, so a transfer that trickles below the limit but never stalls goes on.
    pub fn read_timeout(&self) -> Option<Duration> {
        (self.low_speed_limit > 0 && self.low_speed_time > 0)
            .then(|| Duration::from_secs(self.low_speed_time))
    }

    /// Apply to a builder: `tls` says whether this client speaks TLS at all (see
    /// `Client::http_for`).
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
        tls: bool,
    ) -> Result<reqwest::ClientBuilder, Error> {
        if let Some(timeout) = self.read_timeout() {
            builder = builder.read_timeout(timeout);
        }
        if self.http1_only {
            builder = builder.http1_only();
        }
        match self.proxy.as_deref() {
            None => {}
            Some("") => builder = builder.no_proxy(),
            Some(proxy) => {
                let url = if proxy.contains("://") {
                    proxy.to_owned()
                } else {
                    // curl's default scheme for a proxy written as host:port.
                    format!("http://{proxy}")
                };
                let proxy = reqwest::Proxy::all(&url)
                    .map_err(|e| error("http.proxy", format!("{url}: {e}")))?
                    // git applies NO_PROXY to a configured proxy too (http.c).
                    .no_proxy(reqwest::NoProxy::from_env());
                builder = builder.proxy(proxy);
            }
        }
        if !tls {
            return Ok(builder);
        }
        if self.no_verify {
            tracing::warn!(
                "warning: http.sslVerify is false (or GIT_SSL_NO_VERIFY is set): \
                 the server's TLS certificate is not checked"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let mut extra = Vec::new();
        if let Some(dir) = &self.ca_path {
            extra = certificates_in(dir)?;
        }
        if let Some(file) = &self.ca_info {
            let pem = read("http.sslCAInfo", file)?;
            let mut roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| error("http.sslCAInfo", format!("{}: {e}", file.display())))?;
            if roots.is_empty() {
                return Err(error(
                    "http.sslCAInfo",
                    format!("{}: no PEM certificate in it", file.display()),
                ));
            }
            roots.extend(extra);
            builder = builder.tls_certs_only(roots);
        } else {
            for cert in extra {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(cert) = &self.cert {
            let mut pem = read("http.sslCert", cert)?;
            if let Some(key) = &self.key {
                pem.push(b'\n');
                pem.extend(read("http.sslKey", key)?);
            }
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                error(
                    "http.sslCert",
                    format!(
                        "{}: not a PEM certificate with an unencrypted key (http.sslKey): {e}",
                        cert.display()
                    ),
                )
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| error(setting, format!("cannot read {}: {e}", path.display())))
}

/// Every PEM certificate in the files of `dir` (curl's CAPATH holds hashed links to them).
fn certificates_in(dir: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        error(
            "http.sslCAPath",
            format!("cannot read {}: {e}", dir.display()),
        )
    })?;
    let mut certs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        // Files that are no certificates (a README, a CRL) are skipped, as OpenSSL skips them.
        if let Ok(pem) = std::fs::read(&path) {
            certs.extend(reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default());
        }
    }
    Ok(certs)
}

fn expand_home(path: String) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn bad_bool(value: &str) -> String {
    format!("{value:?} is not a boolean")
}

fn number(value: &Option<String>, setting: &str) -> Result<u64, Error> {
    match value {
        None => Ok(0),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| error(setting, format!("{v:?} is not a number"))),
    }
}

/// A remote name git could have in `remote.<name>.*` (git passes a URL as the name of an
/// unnamed remote).
fn is_remote_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '/', '\n'])
}

/// `git config -z --get-urlmatch http <url>`: every `http.*` key with the value of its best
/// match for `url`, keys lower-cased.
fn git_urlmatch(url: &str) -> Result<BTreeMap<String, String>, Error> {
    let out = git_config(&["-z", "--get-urlmatch", "http", url])?;
    Ok(parse_z(&out))
}

fn git_get(key: &str) -> Result<Option<String>, Error> {
    let out = git_config(&["-z", "--get", key])?;
    Ok(out
        .split('\0')
        .next()
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

/// Runs `git config <args>`; nothing found (exit 1) is an empty answer.
fn git_config(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .arg("config")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| error("git config", format!("cannot run git: {e}")))?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(1) => Ok(String::new()),
        _ => Err(error(
            "git config",
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )),
    }
}

/// `-z` output: `key\nvalue\0` per entry, `key\0` for a key without a value (true).
fn parse_z(out: &str) -> BTreeMap<String, String> {
    out.split('\0')
        .filter(|e| !e.is_empty())
        .map(|entry| match entry.split_once('\n') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_owned()),
            None => (entry.to_ascii_lowercase(), "true".to_owned()),
        })
        .collect()
}

/// Which `git config` runs a session needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Some configuration may set `http.*`: ask git for the URL's match.
    pub http: bool,
    /// Some configuration may set a remote's `proxy`.
    pub remote_proxy: bool,
}

impl Wanted {
    fn all() -> Wanted {
        Wanted {
            http: true,
            remote_proxy: true,
        }
    }

    /// Look through what git would read: `git -c` settings, then the files.
    pub fn look(env: &dyn Fn(&str) -> Option<String>) -> Wanted {
        let mut wanted = Wanted::default();
        if let Some(params) = env("GIT_CONFIG_PARAMETERS") {
            wanted.merge(Wanted::of_keys(&params));
        }
        let count: usize = env("GIT_CONFIG_COUNT")
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        for i in 0..count.min(1000) {
            if let Some(key) = env(&format!("GIT_CONFIG_KEY_{i}")) {
                wanted.merge(Wanted::of_keys(&key));
            }
        }
        match config_files(env) {
            Some(files) => {
                for file in files {
                    match std::fs::read(&file) {
                        Ok(text) => wanted.merge(Wanted::of_file(&String::from_utf8_lossy(&text))),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        // Unreadable for us: git may read it (or fail); ask git.
                        Err(_) => return Wanted::all(),
                    }
                }
            }
            None => return Wanted::all(),
        }
        wanted
    }

    fn merge(&mut self, other: Wanted) {
        self.http |= other.http;
        self.remote_proxy |= other.remote_proxy;
    }

    /// Keys as `git -c` passes them (`'http.sslverify'='false'`, `GIT_CONFIG_KEY_<n>`).
    fn of_keys(text: &str) -> Wanted {
        let lower = text.to_ascii_lowercase();
        let include = lower.contains("include");
        Wanted {
            http: include || lower.contains("http."),
            remote_proxy: include || (lower.contains("remote.") && lower.contains(".proxy")),
        }
    }

    /// A config file's text: its section headers, and `proxy` keys of `[remote]` sections.
    pub fn of_file(text: &str) -> Wanted {
        let mut wanted = Wanted::default();
        let mut section = String::new();
        for line in text.lines() {
            let mut line = line.trim_start();
            if let Some(header) = line.strip_prefix('[') {
                // `[http]`, `[http "https://host"]`, the old `[http.https://host]`, and a
                // header followed by a key on the same line.
                let end = header
                    .find([']', ' ', '\t', '"', '.'])
                    .unwrap_or(header.len());
                section = header[..end].to_ascii_lowercase();
                match section.as_str() {
                    "http" => wanted.http = true,
                    "include" | "includeif" => return Wanted::all(),
                    _ => {}
                }
                line = header
                    .split_once(']')
                    .map_or("", |(_, rest)| rest.trim_start());
            }
            if section == "remote" {
                let key = line.split(['=', ' ', '\t']).next().unwrap_or("");
                if key.eq_ignore_ascii_case("proxy") {
                    wanted.remote_proxy = true;
                }
            }
        }
        wanted
    }
}

/// The files git reads configuration from here, or `None` when they cannot be known (then git
/// is asked). The system file's place depends on how git was built: git puts its exec path
/// first on the helper's `PATH`, which gives its prefix.
fn config_files(env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<PathBuf>> {
    let mut files = Vec::new();
    let truthy = |v: String| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    };
    if !env("GIT_CONFIG_NOSYSTEM").is_some_and(truthy) {
        match env("GIT_CONFIG_SYSTEM") {
            Some(file) => files.push(PathBuf::from(file)),
            None => files.extend(system_files(env)?),
        }
    }
    match env("GIT_CONFIG_GLOBAL") {
        Some(file) => files.push(PathBuf::from(file)),
        None => {
            let home = env("HOME").map(PathBuf::from);
            match env("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
                Some(xdg) => files.push(PathBuf::from(xdg).join("git/config")),
                None => files.extend(home.as_ref().map(|h| h.join(".config/git/config"))),
            }
            files.extend(home.map(|h| h.join(".gitconfig")));
        }
    }
    files.extend(repository_files(env)?);
    Some(files)
}

/// `/etc/gitconfig` and the files of git's own prefix: `<prefix>/etc/gitconfig` (a git built
/// with prefix /usr/local, Homebrew's), `<prefix>/share/git-core/gitconfig` (Apple's git).
fn system_files(env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<PathBuf>> {
    let exec_path = env("GIT_EXEC_PATH").map(PathBuf::from).or_else(|| {
        let path = env("PATH")?;
        std::env::split_paths(&path)
            .next()
            .filter(|first| first.ends_with("git-core"))
    })?;
    let prefix = exec_path.parent()?.parent()?;
    Some(vec![
        PathBuf::from("/etc/gitconfig"),
        prefix.join("etc/gitconfig"),
        prefix.join("share/git-core/gitconfig"),
    ])
}

/// The repository's `config` and `config.worktree` (a linked worktree's config is its common
/// directory's). git sets `GIT_DIR` for its helpers whenever it has a repository; without it,
/// the working directory is searched upwards as git does.
fn repository_files(env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<PathBuf>> {
    let git_dir = match env("GIT_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cwd = std::env::current_dir().ok()?;
            let found = cwd.ancestors().map(|d| d.join(".git")).find(|g| g.exists());
            match found {
                None => return Some(Vec::new()),
                Some(dot_git) if dot_git.is_dir() => dot_git,
                // A gitfile (`gitdir: ...`): let git resolve it.
                Some(_) => return None,
            }
        }
    };
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    Some(vec![common.join("config"), git_dir.join("config.worktree")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_files_that_can_set_http() {
        let none = Wanted::default();
        let http = Wanted {
            http: true,
            remote_proxy: false,
        };
        for (text, expected) in [
            (
                "[user]\n\tname = x\n[remote \"origin\"]\n\turl = hypha::https://h/ws/r\n",
                none,
            ),
            ("[http]\n\tsslVerify = false\n", http),
            ("[HTTP \"https://h\"]\n\tsslCAInfo = /ca.pem\n", http),
            ("  [http.https://h/]\n sslcainfo = x\n", http),
            ("[https]\n", none),
            ("[include]\n\tpath = other\n", Wanted::all()),
            ("[includeIf \"gitdir:~/w/\"]\n\tpath = w\n", Wanted::all()),
            (
                "[remote \"origin\"]\n\tproxy = http://p:3128\n",
                Wanted {
                    http: false,
                    remote_proxy: true,
                },
            ),
            (
                "[remote \"origin\"] proxy = p\n",
                Wanted {
                    http: false,
                    remote_proxy: true,
                },
            ),
            ("[core]\n\tproxy = x\n", none),
        ] {
            assert_eq!(Wanted::of_file(text), expected, "{text:?}");
        }
        assert_eq!(Wanted::of_keys("'http.sslverify'='false'"), http);
        assert_eq!(Wanted::of_keys("'user.name'='x'"), none);
        assert!(Wanted::of_keys("'remote.origin.proxy'='p'").remote_proxy);
    }

    #[test]
    fn git_command_line_and_unknown_installations() {
        let dir = tempfile::tempdir().expect("tmp");
        let git_dir = dir.path().join("repo.git");
        std::fs::create_dir_all(&git_dir).expect("mkdir");
        std::fs::write(git_dir.join("config"), "[core]\n\tbare = true\n").expect("write");
        let home = dir.path().join("home");
        let git_dir_s = git_dir.to_string_lossy().into_owned();
        let home_s = home.to_string_lossy().into_owned();
        let base = [
            ("GIT_DIR", git_dir_s.as_str()),
            ("HOME", home_s.as_str()),
            ("PATH", "/usr/lib/git-core:/usr/bin"),
        ];
        // Nothing sets http here (this machine's /etc/gitconfig aside).
        let plain = Wanted::look(&env_of(
            &[&base[..], &[("GIT_CONFIG_NOSYSTEM", "1")]].concat(),
        ));
        assert_eq!(plain, Wanted::default());
        // `git -c http.sslVerify=false` reaches the helper in GIT_CONFIG_PARAMETERS.
        let with_c = Wanted::look(&env_of(
            &[
                &base[..],
                &[
                    ("GIT_CONFIG_NOSYSTEM", "1"),
                    ("GIT_CONFIG_PARAMETERS", "'http.sslverify'='false'"),
                ],
            ]
            .concat(),
        ));
        assert!(with_c.http);
        // A global file with [http].
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(home.join(".gitconfig"), "[http]\n\tproxy = p:1\n").expect("write");
        let global = Wanted::look(&env_of(
            &[&base[..], &[("GIT_CONFIG_NOSYSTEM", "1")]].concat(),
        ));
        assert!(global.http);
        // git not found on PATH first (the helper run by hand): ask git.
        let unknown = Wanted::look(&env_of(&[
            ("GIT_DIR", git_dir_s.as_str()),
            ("PATH", "/bin"),
        ]));
        assert_eq!(unknown, Wanted::all());
    }

    #[test]
    fn precedence_is_gits() {
        let cfg = config(&[
            ("http.sslcainfo", "/from/config.pem"),
            ("http.sslverify", "false"),
            ("http.proxy", "http://global:1"),
            ("remote.proxy", "remote:2"),
            ("http.lowspeedlimit", "1000"),
            ("http.lowspeedtime", "7"),
            ("http.version", "HTTP/1.1"),
        ]);
        let s = Settings::from_parts(&cfg, &env_of(&[])).expect("valid");
        assert_eq!(s.ca_info.as_deref(), Some(Path::new("/from/config.pem")));
        assert!(s.no_verify && s.http1_only);
        assert_eq!(s.proxy.as_deref(), Some("remote:2"));
        assert_eq!(s.read_timeout(), Some(Duration::from_secs(7)));
        let s = Settings::from_parts(
            &cfg,
            &env_of(&[
                ("GIT_SSL_CAINFO", "/from/env.pem"),
                ("GIT_HTTP_LOW_SPEED_TIME", "3"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.ca_info.as_deref(), Some(Path::new("/from/env.pem")));
        assert_eq!(s.read_timeout(), Some(Duration::from_secs(3)));
        // GIT_SSL_NO_VERIFY turns verification off whatever its value, as in git.
        let s = Settings::from_parts(&BTreeMap::new(), &env_of(&[("GIT_SSL_NO_VERIFY", "0")]))
            .expect("valid");
        assert!(s.no_verify);
        assert_eq!(s.read_timeout(), None);
        for (key, bad) in [
            ("http.sslverify", "maybe"),
            ("http.lowspeedlimit", "fast"),
            ("http.version", "HTTP/3"),
        ] {
            let e = Settings::from_parts(&config(&[(key, bad)]), &env_of(&[])).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn z_output() {
        let parsed = parse_z("http.sslverify\nfalse\0http.proxy\nhttp://p:1\0http.emptyauth\0");
        assert_eq!(parsed["http.sslverify"], "false");
        assert_eq!(parsed["http.proxy"], "http://p:1");
        assert_eq!(parsed["http.emptyauth"], "true");
    }

    #[test]
    fn git_answers_the_url_match() {
        // git's own rules: the longest matching URL wins, per key.
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "[http]\n\tsslVerify = true\n\tproxy = http://all:1\n\
             [http \"https://git.example\"]\n\tsslVerify = false\n\
             [http \"https://git.example/ws\"]\n\tproxy = http://ws:2\n",
        )
        .expect("write");
        let out = Command::new("git")
            .args(["config", "--file"])
            .arg(&cfg)
            .args([
                "-z",
                "--get-urlmatch",
                "http",
                "https://git.example/ws/repo",
            ])
            .output()
            .expect("git");
        let m = parse_z(&String::from_utf8_lossy(&out.stdout));
        let s = Settings::from_parts(&m, &env_of(&[])).expect("valid");
        assert!(s.no_verify);
        assert_eq!(s.proxy.as_deref(), Some("http://ws:2"));
    }
}
