//! HTTP client of remote API v1 and of the presigned URLs it hands out.
//!
//! Owns retries, timeouts and authentication (bearer token; the credential helper is asked
//! only when the server says 401). Never logs or returns a presigned URL or a token: every
//! `reqwest::Error` is stripped of its URL before it is kept. Knows nothing of git.

mod transfer;

pub use transfer::{download_stream, upload_file};

use crate::api::{self, ErrorBody, ErrorCode, Route};
use crate::config::{self, Remote, Token, TokenSource};
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Mutex;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// No byte for this long means the peer is gone; a slow but live transfer keeps going.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository '{repo}' not found")]
    NotFound { repo: String },
    #[error("authentication failed for '{repo}'")]
    Unauthenticated { repo: String },
    #[error("permission denied for '{repo}'")]
    Forbidden { repo: String },
    #[error("server refused {route} for '{repo}': {detail}")]
    Refused {
        repo: String,
        route: &'static str,
        code: ErrorCode,
        detail: String,
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
    TransferStatus { what: String, status: u16 },
    #[error("{what}")]
    Transfer {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Worth retrying: the same request may succeed in a moment.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { source, .. } | Error::Transfer { source, .. } => {
                source.is_timeout() || source.is_connect() || source.is_request()
            }
            Error::Refused { code, .. } => *code == ErrorCode::Busy || *code == ErrorCode::Internal,
            Error::TransferStatus { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
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
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A session with one repository's remote API.
pub struct Client {
    http: reqwest::Client,
    remote: Remote,
    token: Mutex<Option<Token>>,
    /// Whether `git credential fill` was already asked in this session.
    asked_credentials: Mutex<bool>,
}

impl Client {
    pub fn new(remote: Remote, token: Option<Token>) -> Result<Client, Error> {
        let http = http_client().map_err(|source| Error::Http {
            repo: remote.display_name(),
            route: "setup",
            source,
        })?;
        Ok(Client {
            http,
            remote,
            token: Mutex::new(token),
            asked_credentials: Mutex::new(false),
        })
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn current_token(&self) -> Option<Token> {
        self.token.lock().map(|t| t.clone()).unwrap_or(None)
    }

    /// POST one API route; on 401 without a token, ask the credential helper once and retry.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: Route,
        body: &Req,
    ) -> Result<Resp, Error> {
        let first = with_retries(|| self.call_once(route, body)).await;
        match first {
            Err(Error::Unauthenticated { .. }) if self.try_credentials() => {
                let token = self.current_token();
                let second = with_retries(|| self.call_once(route, body)).await;
                if let Some(token) = token.filter(|t| t.source == TokenSource::CredentialHelper) {
                    match &second {
                        Err(Error::Unauthenticated { .. }) => {
                            config::credential::reject(&self.remote, &token)
                        }
                        Ok(_) => config::credential::approve(&self.remote, &token),
                        Err(_) => {}
                    }
                }
                second
            }
            other => other,
        }
    }

    /// Fill a token from `git credential` if we have none and have not asked yet.
    fn try_credentials(&self) -> bool {
        let Ok(mut asked) = self.asked_credentials.lock() else {
            return false;
        };
        if *asked || self.current_token().is_some() {
            return false;
        }
        *asked = true;
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
            .map_err(|_| Error::NotFound { repo: repo.clone() })?;
        let mut req = self.http.post(url).json(body);
        if let Some(token) = self.current_token() {
            req = req.bearer_auth(&token.secret);
        }
        let http_err = |source: reqwest::Error| Error::Http {
            repo: repo.clone(),
            route: route.as_str(),
            source: source.without_url(),
        };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(http_err)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                repo,
                route: route.as_str(),
                source,
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let code = body
            .as_ref()
            .map(|b| b.error)
            .unwrap_or(match status.as_u16() {
                401 => ErrorCode::Unauthenticated,
                403 => ErrorCode::Forbidden,
                404 => ErrorCode::NotFound,
                409 => ErrorCode::Stale,
                422 | 400 | 413 => ErrorCode::Invalid,
                503 | 429 => ErrorCode::Busy,
                _ => ErrorCode::Internal,
            });
        Err(match code {
            ErrorCode::NotFound => Error::NotFound { repo },
            ErrorCode::Unauthenticated => Error::Unauthenticated { repo },
            ErrorCode::Forbidden => Error::Forbidden { repo },
            code => Error::Refused {
                repo,
                route: route.as_str(),
                code,
                detail: body
                    .map(|b| b.detail)
                    .unwrap_or_else(|| format!("HTTP status {}", status.as_u16())),
            },
        })
    }
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("git-remote-hypha/", env!("CARGO_PKG_VERSION")))
        // Presigned URLs must not be followed to other places with our headers.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
