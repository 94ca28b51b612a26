//! HTTP client of remote API v1 and of the presigned URLs it hands out: every byte to and
//! from a presigned URL goes through here (`download`, `upload`).
//!
//! Owns retries, timeouts and authentication (bearer token; the credential helper is asked
//! when the server says 401, or before a push; a 401 becomes an [`AuthProblem`] that says
//! which token failed and how). `stock` tells a server without remote API v1 (a stock Hypha)
//! from ours and makes the few requests the helper needs there. Never logs or returns a presigned URL or a token: every
//! `reqwest::Error` is stripped of its URL before it is kept. Knows nothing of git.

mod auth_problem;
mod download;
pub mod git_http;
mod stock;
mod upload;

pub use auth_problem::AuthProblem;
pub use stock::{classify as classify_probe, Access, Api, UploadPackAnswer};

pub use download::{
    download_stream, get_from, get_into, get_range, get_renewing, get_whole, Object,
};
pub use upload::{put_range, upload_pack, PackFiles, MAX_FRESH_URLS, PARALLEL_PARTS};

use crate::api::{self, ErrorBody, ErrorCode, RefsRequest, Route};
use crate::config::{self, Remote, Token, TokenSource};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// No byte for this long means the peer is gone; a slow but live transfer keeps going.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 4;
/// A server's `Retry-After` is honoured up to this long; beyond it we would rather fail.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository does not exist, or (`detail` not about the repository) the server
    /// found something else missing, which it names.
    #[error("{}", not_found(repo, detail.as_deref()))]
    NotFound {
        repo: String,
        detail: Option<String>,
    },
    #[error("authentication failed for '{repo}'")]
    Unauthenticated {
        repo: String,
        #[source]
        problem: AuthProblem,
    },
    #[error("permission denied for '{repo}'")]
    Forbidden { repo: String },
    #[error("server refused {route} for '{repo}': {detail}")]
    Refused {
        repo: String,
        route: &'static str,
        code: ErrorCode,
        detail: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    #[error("cannot reach the server for '{repo}' ({route})")]
    Http {
        repo: String,
        route: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("server sent an unreadable {route} answer for '{repo}'")]
    Decode {
        repo: String,
        route: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: HTTP status {status}")]
    TransferStatus {
        what: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{what}")]
    Transfer {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// A transfer cut off mid-body (the bytes so far are useless); worth retrying.
    #[error("{what} was interrupted")]
    Interrupted {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A range read answered with other bytes than those asked for.
    #[error("read of {range} of {what}: {problem}")]
    Range {
        what: String,
        range: String,
        problem: String,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The server failed on this request in a way that asking again would repeat (HTTP
    /// 500): a stock Hypha's upload-pack walking more than about 950 commits in a row.
    #[error("{what}: HTTP status 500")]
    ServerFailed { what: String },
    /// A server or store sent more than the helper takes for this answer.
    #[error("{what}: the answer is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// git's HTTP settings for this URL cannot be used as given.
    #[error("git's HTTP settings for '{repo}': {source}")]
    HttpSettings {
        repo: String,
        #[source]
        source: git_http::Error,
    },
}

/// "repository 'x' not found", unless the server said that something else was missing (a
/// 404 for a pack it listed, say): then its words, so that the message does not send the
/// user looking for a repository that is there.
fn not_found(repo: &str, detail: Option<&str>) -> String {
    match detail {
        Some(detail) if !detail.is_empty() && !detail.starts_with("repository ") => {
            format!("the server answered 'not found' for '{repo}': {detail}")
        }
        _ => format!("repository '{repo}' not found"),
    }
}

impl Error {
    /// Worth retrying: the same request may succeed in a moment.
    pub fn is_transient(&self) -> bool {
        match self {
            // A body cut off mid-answer is a dropped connection too; for `update` a retry is
            // safe because it compare-and-swaps (push.rs treats "already at our value" as ok).
            Error::Http { source, .. } | Error::Transfer { source, .. } => {
                source.is_timeout()
                    || source.is_connect()
                    || source.is_request()
                    || source.is_body()
                    || source.is_decode()
            }
            Error::Refused { code, .. } => *code == ErrorCode::Busy || *code == ErrorCode::Internal,
            Error::TransferStatus { status, .. } => *status == 429 || *status >= 500,
            Error::Interrupted { .. } => true,
            _ => false,
        }
    }

    /// The store refused a presigned URL (403): expired, or its signature no longer holds.
    /// Retrying it is pointless; a fresh URL from the API may work.
    pub fn is_refused_url(&self) -> bool {
        matches!(self, Error::TransferStatus { status: 403, .. })
    }

    /// How long the server asked us to wait before trying again.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Refused { retry_after, .. } | Error::TransferStatus { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by S3 or by our server).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Retry `op` while its error is transient, with exponential backoff; at most `MAX_ATTEMPTS`.
pub(crate) async fn with_retries<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(e.retry_after().map_or(delay, |wait| wait.max(delay))).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A session with one repository's remote API.
pub struct Client {
    /// HTTP clients built so far, by [`HttpKey`] (see [`Client::http_for`]).
    http: Mutex<HashMap<HttpKey, reqwest::Client>>,
    /// Which `git config` reads git's HTTP settings need in this session (mostly none).
    wanted: git_http::Wanted,
    /// The git remote's name (`remote.<name>.proxy`), when git named one.
    git_remote: Option<String>,
    /// Packs already fetched from this remote, sent with `refs` ([`Client::with_known_packs`]).
    known_packs: Option<Vec<String>>,
    /// Bytes of unseen packs the `refs` answer may carry itself ([`Client::with_inline_max`]).
    inline_max: u64,
    remote: Remote,
    token: Mutex<Option<Token>>,
    credentials: Mutex<Credentials>,
    /// The probe's `refs` answer, kept for the session's first `list` (see [`Client::probe`]).
    probed: Mutex<Option<stock::Probed>>,
    /// Why the probe failed, kept for the session's first `list` (see [`Client::probe_or_defer`]).
    probe_error: Mutex<Option<Error>>,
}

/// Where this session is with `git credential`: each step happens at most once.
#[derive(Default)]
struct Credentials {
    /// `git credential fill` was asked.
    asked: bool,
    /// The helper's token was approved or rejected.
    settled: bool,
}

/// One HTTP client serves every URL with the same settings: without git HTTP settings in the
/// configuration, one for plain HTTP and one for TLS; with them, one per URL the settings are
/// matched against (the remote's, or a store's origin; see [`Client::http_for`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HttpKey {
    tls: bool,
    /// The URL git's settings were matched against, when the configuration has any.
    origin: Option<String>,
}

impl Client {
    pub fn new(remote: Remote, token: Option<Token>) -> Result<Client, Error> {
        Ok(Client {
            http: Mutex::new(HashMap::new()),
            wanted: git_http::Wanted::look(&|k| std::env::var(k).ok()),
            git_remote: None,
            known_packs: None,
            inline_max: 0,
            remote,
            token: Mutex::new(token),
            credentials: Mutex::new(Credentials::default()),
            probed: Mutex::new(None),
            probe_error: Mutex::new(None),
        })
    }

    /// The git remote's name, for `remote.<name>.proxy` (git passes a URL as the name of an
    /// unnamed remote: then there is none).
    pub fn with_git_remote(mut self, name: &str) -> Client {
        self.git_remote = Some(name.to_owned());
        self
    }

    /// The packs this repository already has from the remote (`None`: not in a repository):
    /// every `refs` call then asks for the pack listing too, so that a fetch that follows
    /// needs no `packs` round trip.
    pub fn with_known_packs(mut self, known: Option<Vec<String>>) -> Client {
        self.known_packs = known;
        self
    }

    /// With the known packs: the `refs` answer may carry up to `bytes` of unseen packs
    /// itself (the helper asks for a clone's only), so that a fetch after it
    /// needs no `GET` for them.
    pub fn with_inline_max(mut self, bytes: u64) -> Client {
        self.inline_max = bytes;
        self
    }

    /// What this session asked a `refs` answer to carry inline at most (0: nothing).
    pub fn inline_max(&self) -> u64 {
        if self.known_packs.is_some() {
            self.inline_max
        } else {
            0
        }
    }

    /// The `refs` request of this session: a listing for a push, or one a fetch may follow.
    pub fn refs_request(&self, for_push: bool) -> RefsRequest {
        RefsRequest {
            for_push,
            known_packs: self.known_packs.clone(),
            inline_max: self.inline_max(),
        }
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The HTTP client for `url`, with git's HTTP settings (`git_http`). Loading the
    /// system's TLS roots reads every file under /etc/ssl/certs: 3-5 ms of each helper run
    /// (ls-remote 12-14 ms against 8-10 ms without, measured), wasted on a plain-HTTP server
    /// and its presigned URLs. So a TLS client is built on the first `https://` URL (or when
    /// a proxy is reached over TLS).
    ///
    /// Settings are matched against the remote's URL for every URL on the API server's
    /// origin, as git's smart HTTP matches `http.<url>.*` once against the remote URL for the
    /// whole session; a store on another origin (S3 behind presigned URLs) gets the settings
    /// matched against its own origin, as git-lfs matches its own URLs, so an internal CA
    /// configured for the API server does not replace the public roots of the store.
    pub fn http_for(&self, url: &str) -> Result<reqwest::Client, Error> {
        let origin = (self.wanted != git_http::Wanted::default()).then(|| {
            let server = self.remote.server.as_str();
            if origin_of(url) == origin_of(server) {
                format!("{server}{}/{}", self.remote.workspace, self.remote.alias)
            } else {
                format!("{}/", origin_of(url))
            }
        });
        let key = HttpKey {
            tls: needs_tls(url),
            origin,
        };
        let mut clients = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let settings = if let Some(match_url) = &key.origin {
            git_http::Settings::read(match_url, self.git_remote.as_deref(), self.wanted)
        } else {
            git_http::Settings::from_parts(&Default::default(), &|k| std::env::var(k).ok())
        }
        .map_err(|source| Error::HttpSettings {
            repo: self.remote.display_name(),
            source,
        })?;
        let tls = key.tls || settings.proxy_needs_tls();
        let client = http_client(tls, &settings).map_err(|e| match e {
            BuildError::Settings(source) => Error::HttpSettings {
                repo: self.remote.display_name(),
                source,
            },
            BuildError::Http(source) => Error::Http {
                repo: self.remote.display_name(),
                route: "setup",
                source,
            },
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The HTTP client for the remote API's own URLs.
    fn api_http(&self) -> Result<reqwest::Client, Error> {
        self.http_for(self.remote.server.as_str())
    }

    fn current_token(&self) -> Option<Token> {
        self.token.lock().map(|t| t.clone()).unwrap_or(None)
    }

    /// Where the token this session sends came from; `None` when it sends none.
    pub fn token_source(&self) -> Option<TokenSource> {
        self.current_token().map(|t| t.source)
    }

    /// The `authentication failed` error for a session that has no token at all, for when the
    /// server answered but a token is needed (a push to a public repository).
    pub fn no_token(&self) -> Error {
        Error::Unauthenticated {
            repo: self.remote.display_name(),
            problem: AuthProblem::new(None, None, self.remote.server.as_str(), 0),
        }
    }

    /// POST one API route; on 401 without a token, ask the credential helper once and retry.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: Route,
        body: &Req,
    ) -> Result<Resp, Error> {
        let mut result = with_retries(|| self.call_once(route, body)).await;
        if matches!(result, Err(Error::Unauthenticated { .. })) && self.fill_credentials() {
            result = with_retries(|| self.call_once(route, body)).await;
        }
        self.settle_credentials(&result);
        result
    }

    /// Tell the credential helpers how their token fared, once: rejected on 401 (so a stale
    /// one is not offered again), approved on success, as git does.
    fn settle_credentials<T>(&self, result: &Result<T, Error>) {
        let Some(token) = self
            .current_token()
            .filter(|t| t.source == TokenSource::CredentialHelper)
        else {
            return;
        };
        let Ok(mut state) = self.credentials.lock() else {
            return;
        };
        if state.settled {
            return;
        }
        match result {
            Err(Error::Unauthenticated { .. }) => config::credential::reject(&self.remote, &token),
            Ok(_) => config::credential::approve(&self.remote, &token),
            Err(_) => return,
        }
        state.settled = true;
    }

    /// Fill a token from `git credential` (then `git hypha login`'s store) if we have none and
    /// have not asked yet; `true` when one was found now. Called on a 401, and before a push,
    /// which always needs one.
    pub fn fill_credentials(&self) -> bool {
        let Ok(mut state) = self.credentials.lock() else {
            return false;
        };
        if state.asked || self.current_token().is_some() {
            return false;
        }
        state.asked = true;
        match config::credential::fill(&self.remote) {
            Some(token) => {
                if let Ok(mut slot) = self.token.lock() {
                    *slot = Some(token);
                }
                true
            }
            None => false,
        }
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: Route,
        body: &Req,
    ) -> Result<Resp, Error> {
        let repo = self.remote.display_name();
        let path = api::route_path(&self.remote.workspace, &self.remote.alias, route);
        let url = self
            .remote
            .server
            .join(&path)
            .map_err(|_| Error::NotFound {
                repo: repo.clone(),
                detail: None,
            })?;
        // Our id for this attempt; the server logs it (or its own, which it answers) beside
        // the request, so `-v` names the line of the server's log a failure left.
        let request_id = format!("{:016x}", rand::random::<u64>());
        let mut req = self
            .api_http()?
            .post(url)
            .header(REQUEST_ID, &request_id)
            .json(body);
        let token = self.current_token();
        if let Some(token) = &token {
            req = req.bearer_auth(&token.secret);
        }
        let http_err = |source: reqwest::Error| Error::Http {
            repo: repo.clone(),
            route: route.as_str(),
            source: source.without_url(),
        };
        let resp = req.send().await.map_err(|e| {
            tracing::info!(
                "hypha: {} of {repo}: no answer (request id {request_id})",
                route.as_str()
            );
            http_err(e)
        })?;
        let status = resp.status();
        let answered_id = resp
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64);
        tracing::info!(
            "hypha: {} of {repo}: {} (request id {})",
            route.as_str(),
            status.as_u16(),
            answered_id.unwrap_or(&request_id)
        );
        let retry_after = retry_after(resp.headers());
        let bytes = read_limited(resp, MAX_API_ANSWER)
            .await
            .map_err(|e| match e {
                Limited::Http(source) => http_err(source),
                Limited::TooLarge => Error::TooLarge {
                    what: format!("the server's {} answer for '{repo}'", route.as_str()),
                    limit: MAX_API_ANSWER,
                },
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                repo,
                route: route.as_str(),
                source,
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        // A code this helper does not know (a newer server's) means what its status means;
        // its detail is still the message.
        let code = body
            .as_ref()
            .map(|b| b.error)
            .filter(|c| *c != ErrorCode::Unknown)
            .unwrap_or_else(|| code_of_status(status.as_u16()));
        Err(match code {
            ErrorCode::NotFound => Error::NotFound {
                repo,
                detail: body.map(|b| short_detail(b.detail)),
            },
            ErrorCode::Unauthenticated => Error::Unauthenticated {
                repo,
                problem: AuthProblem::new(
                    token.as_ref().map(|t| (t.secret.as_str(), t.source)),
                    body.as_ref().map(|b| b.detail.as_str()),
                    self.remote.server.as_str(),
                    crate::auth::unix_now(),
                ),
            },
            ErrorCode::Forbidden => Error::Forbidden { repo },
            code => Error::Refused {
                repo,
                route: route.as_str(),
                code,
                detail: body
                    .map(|b| short_detail(b.detail))
                    .unwrap_or_else(|| format!("HTTP status {}", status.as_u16())),
                retry_after,
            },
        })
    }
}

/// What an error answer without a code this helper knows means, by its HTTP status.
fn code_of_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Stale,
        413 | 507 => ErrorCode::Quota,
        422 | 400 => ErrorCode::Invalid,
        503 | 429 => ErrorCode::Busy,
        _ => ErrorCode::Internal,
    }
}

/// The header that names a request in the server's log both ways (`git hypha serve` takes
/// ours, or answers its own).
const REQUEST_ID: &str = "x-request-id";

/// The largest API answer the helper reads: a refs listing of a million refs is about 100 MB.
const MAX_API_ANSWER: u64 = 512 << 20;
/// What a server's error detail may add to a message: a line, not a page.
const MAX_DETAIL: usize = 1000;

enum Limited {
    Http(reqwest::Error),
    TooLarge,
}

/// The body of `resp`, refused once it passes `max` bytes (a hostile or broken server cannot
/// fill the helper's memory).
async fn read_limited(mut resp: reqwest::Response, max: u64) -> Result<Vec<u8>, Limited> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(Limited::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Limited::Http)? {
        if (out.len() + chunk.len()) as u64 > max {
            return Err(Limited::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A server's error detail, cut to [`MAX_DETAIL`] characters.
fn short_detail(detail: String) -> String {
    if detail.chars().count() <= MAX_DETAIL {
        return detail;
    }
    let mut cut: String = detail.chars().take(MAX_DETAIL).collect();
    cut.push_str("...");
    cut
}

/// An HTTP client for `url` outside a remote session (the LFS agent, which has an href and
/// git-lfs's remote name): git's HTTP settings matched against the URL's origin, as git-lfs
/// matches them, and `read_timeout` instead of the default when given (a request the server
/// answers only after hashing a large object).
pub fn http_client_for(
    url: &str,
    remote_name: Option<&str>,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    let wanted = git_http::Wanted::look(&|k| std::env::var(k).ok());
    let settings = if wanted == git_http::Wanted::default() {
        git_http::Settings::from_parts(&Default::default(), &|k| std::env::var(k).ok())
    } else {
        git_http::Settings::read(&format!("{}/", origin_of(url)), remote_name, wanted)
    }
    .map_err(|e| e.to_string())?;
    let tls = needs_tls(url) || settings.proxy_needs_tls();
    let mut builder = http_builder(tls);
    if let Some(timeout) = read_timeout {
        builder = builder.read_timeout(timeout);
    }
    builder = settings.apply(builder, tls).map_err(|e| e.to_string())?;
    builder.build().map_err(|e| e.to_string())
}

enum BuildError {
    Settings(git_http::Error),
    Http(reqwest::Error),
}

/// `tls`: with the system's roots (or git's `http.sslCAInfo`); without, a client that only
/// speaks plain HTTP (an empty root store: any `https://` URL fails its certificate check, so
/// [`Client::http_for`] never hands it one).
fn http_client(tls: bool, settings: &git_http::Settings) -> Result<reqwest::Client, BuildError> {
    let builder = settings
        .apply(http_builder(tls), tls)
        .map_err(BuildError::Settings)?;
    builder.build().map_err(BuildError::Http)
}

/// The builder every client starts from, before git's settings.
fn http_builder(tls: bool) -> reqwest::ClientBuilder {
    let read_timeout = read_timeout(std::env::var("HYPHA_READ_TIMEOUT_SECS").ok().as_deref());
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(read_timeout)
        .user_agent(concat!("git-remote-hypha/", env!("CARGO_PKG_VERSION")))
        // Presigned URLs must not be followed to other places with our headers.
        .redirect(reqwest::redirect::Policy::none());
    if tls {
        builder
    } else {
        builder.tls_certs_only(Vec::<reqwest::Certificate>::new())
    }
}

/// `scheme://host:port` of a URL (the URL itself when it does not parse: one client for it).
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// Whether a request to `url` needs TLS: an `https://` URL, or any URL when a proxy from the
/// environment is itself reached over `https://`.
fn needs_tls(url: &str) -> bool {
    needs_tls_with(url, |var| std::env::var(var).ok())
}

fn needs_tls_with(url: &str, env: impl Fn(&str) -> Option<String>) -> bool {
    let https = |u: &str| {
        u.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    };
    https(url)
        || [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .any(|var| env(var).is_some_and(|v| https(v.trim())))
}

/// The read timeout: [`READ_TIMEOUT`], or whole seconds from `HYPHA_READ_TIMEOUT_SECS` (for
/// tests that stall a connection on purpose; 0 and garbage mean the default).
fn read_timeout(setting: Option<&str>) -> Duration {
    setting
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|secs| *secs > 0)
        .map_or(READ_TIMEOUT, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 404 names the repository only when the server said the repository is missing; a
    /// 404 for anything else (a pack gone under a push) shows what the server said.
    #[test]
    fn not_found_says_what_was_not_found() {
        let err = |detail: Option<&str>| {
            Error::NotFound {
                repo: "ws/r".into(),
                detail: detail.map(str::to_owned),
            }
            .to_string()
        };
        assert_eq!(err(None), "repository 'ws/r' not found");
        assert_eq!(
            err(Some("repository ws/r not found")),
            "repository 'ws/r' not found"
        );
        assert_eq!(err(Some("")), "repository 'ws/r' not found");
        assert_eq!(
            err(Some("ws/r/.git/hypha-remote/uploads/pack-1: not found")),
            "the server answered 'not found' for 'ws/r': \
             ws/r/.git/hypha-remote/uploads/pack-1: not found"
        );
    }

    #[test]
    fn tls_only_for_https_urls_and_https_proxies() {
        let none = |_: &str| None;
        assert!(!needs_tls_with("http://127.0.0.1:8080/ws/git/r", none));
        assert!(needs_tls_with("https://hypha.example/ws/git/r", none));
        assert!(needs_tls_with(
            "HTTPS://S3.EXAMPLE/bucket/key?X-Amz-Signature=x",
            none
        ));
        assert!(!needs_tls_with("http", none));
        let proxy = |var: &str| (var == "https_proxy").then(|| " https://proxy:3128".to_string());
        assert!(needs_tls_with("http://127.0.0.1:8080/", proxy));
        let plain_proxy = |var: &str| (var == "HTTP_PROXY").then(|| "http://proxy:3128".into());
        assert!(!needs_tls_with("http://127.0.0.1:8080/", plain_proxy));
        // The plain client builds without reading any root store.
        assert!(http_client(false, &git_http::Settings::default()).is_ok());
    }

    #[test]
    fn read_timeout_setting() {
        assert_eq!(read_timeout(None), READ_TIMEOUT);
        assert_eq!(read_timeout(Some("2")), Duration::from_secs(2));
        assert_eq!(read_timeout(Some(" 7 ")), Duration::from_secs(7));
        for bad in ["0", "", "-1", "soon", "1.5"] {
            assert_eq!(read_timeout(Some(bad)), READ_TIMEOUT, "{bad:?}");
        }
    }

    /// A newer server's error code: its status decides, and its detail is kept. A quota
    /// (413, or 507 from a store in front) is not retried.
    #[test]
    fn unknown_error_codes_fall_back_to_the_status() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":"some_new_code","detail":"why"}"#).unwrap();
        assert_eq!(body.error, ErrorCode::Unknown);
        assert_eq!(body.detail, "why");
        // It round-trips (the api_json fuzz target's check) and is never what a server says.
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text, r#"{"error":"unknown","detail":"why"}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
        let quota: ErrorBody =
            serde_json::from_str(r#"{"error":"quota","detail":"full"}"#).unwrap();
        assert_eq!(quota.error, ErrorCode::Quota);
        assert_eq!(code_of_status(413), ErrorCode::Quota);
        assert_eq!(code_of_status(507), ErrorCode::Quota);
        assert_eq!(code_of_status(429), ErrorCode::Busy);
        let refused = Error::Refused {
            repo: "ws/r".into(),
            route: "uploads",
            code: ErrorCode::Quota,
            detail: "full".into(),
            retry_after: None,
        };
        assert!(!refused.is_transient());
    }

    #[test]
    fn retry_after_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "86400".parse().expect("value"),
        );
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
