//! Servers without remote API v1: telling them apart, and the few requests the client makes
//! to a stock Hypha itself (issue 16, docs/design.md §12).
//!
//! [`Client::probe`] is the one request that decides, before the helper answers git's
//! `capabilities`, whether a remote speaks API v1 (`git hypha serve`, Hypha with the plugin) or
//! only Hypha's own smart HTTP. Any answer in our error shape (`not_found`, `unauthenticated`,
//! ...) means the API is there: the session reports it as it always has.
//! [`Client::check_smart_http`] asks Hypha once whether the token may read (or push), so that a
//! wrong token, a read-only token or a missing repository is our clear error rather than git's
//! "returned error: 403".
//! [`Client::create_in_artifact_manager`] is Hypha's own `create` with `config.storage = "git"`.
//! [`Client::upload_pack`] sends a fetch's one upload-pack request (built by
//! `negotiate::upload_pack`) and streams the answer back.
//!
//! Owns these HTTP exchanges only; handing the session to git's `remote-http` is
//! `helper::handoff`. Never logs or returns the token.

use super::{retry_after, with_retries, AuthProblem, Client, Error};
use crate::api::{self, ErrorBody, ErrorCode, Route};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use url::Url;

/// The answer of Hypha's upload-pack: its body as it arrives, and its length when Hypha said
/// it (it buffers answers up to 8 MiB and streams larger ones).
pub struct UploadPackAnswer {
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    pub length: Option<u64>,
}

/// The probe's answer, kept so that the session's first `list` costs no second request.
pub(super) struct Probed {
    for_push: bool,
    token: Option<String>,
    refs: api::RefsResponse,
}

/// What answered at `…/remote/v1/refs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Remote API v1 answered, possibly with one of its errors (the session reports those).
    V1,
    /// No such route: a stock Hypha (405, its page route takes only GET) or another 404.
    Absent,
}

/// What a session will ask of a stock Hypha: reading (clone, fetch, ls-remote) or pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// The LFS batch operation Hypha checks the same permission for: `download` needs
    /// `read`, `upload` needs `commit`, as upload-pack and receive-pack do.
    fn lfs_operation(self) -> &'static str {
        match self {
            Access::Read => "download",
            Access::Write => "upload",
        }
    }
}

/// Decide from one answer to `POST …/remote/v1/refs`. `None`: neither can be told (a 5xx or
/// 429 from something in front of the server), worth asking again.
pub fn classify(status: u16, body: &[u8]) -> Option<Api> {
    if (200..300).contains(&status) || serde_json::from_slice::<ErrorBody>(body).is_ok() {
        return Some(Api::V1);
    }
    match status {
        // Hypha's catch-all `GET /{page:path}` matches the path, so POST gets 405; a server or
        // proxy that knows no such path says 404. Neither is our API (it always answers
        // in its own error shape, a missing repository included).
        404 | 405 => Some(Api::Absent),
        429 | 500..=599 => None,
        // A 401/403 from something in front of our API: the session's first call reports it.
        _ => Some(Api::V1),
    }
}

/// Hypha's error detail (`{"detail": "..."}`), without the `RemoteException: ` its RPC layer
/// prefixes.
fn hypha_detail(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let detail = value.get("detail")?.as_str()?;
    Some(
        detail
            .trim_start_matches("RemoteException: ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[derive(serde::Deserialize)]
struct Created {
    git_url: Option<String>,
}

impl Client {
    /// One request: does this server have remote API v1 for the repository? It is the
    /// session's `refs` call (kept for [`Client::take_probed_refs`]), so a session on API v1
    /// makes no more requests than before the probe existed.
    pub async fn probe(&self) -> Result<Api, Error> {
        with_retries(|| self.probe_once()).await
    }

    async fn probe_once(&self) -> Result<Api, Error> {
        let repo = self.remote.display_name();
        let path = api::route_path(&self.remote.workspace, &self.remote.alias, Route::Refs);
        let url = self
            .remote
            .server
            .join(&path)
            .map_err(|_| Error::NotFound {
                repo: repo.clone(),
                detail: None,
            })?;
        let token = self.current_token();
        // With a token, ask what a push needs too: a push session then lists from this answer.
        let request = self.refs_request(token.is_some());
        let mut req = self.api_http()?.post(url).json(&request);
        if let Some(token) = &token {
            req = req.bearer_auth(&token.secret);
        }
        let http_err = |source: reqwest::Error| Error::Http {
            repo: repo.clone(),
            route: "refs",
            source: source.without_url(),
        };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        let body = resp.bytes().await.map_err(http_err)?;
        let api = classify(status, &body).ok_or_else(|| Error::TransferStatus {
            what: format!("the server's answer for '{repo}' (refs)"),
            status,
            retry_after: wait,
        })?;
        if (200..300).contains(&status) {
            if let (Ok(refs), Ok(mut slot)) = (
                serde_json::from_slice::<api::RefsResponse>(&body),
                self.probed.lock(),
            ) {
                *slot = Some(Probed {
                    for_push: request.for_push,
                    token: token.map(|t| t.secret),
                    refs,
                });
            }
        }
        Ok(api)
    }

    /// The probe's `refs` answer, once, if it answers what `list` (or `list for-push`) asks
    /// with the token the session holds now (a credential helper may have filled one since).
    /// A probe that failed (server down, a fault after every retry) is reported here, once.
    pub fn take_probed_refs(&self, for_push: bool) -> Option<Result<api::RefsResponse, Error>> {
        if let Some(e) = self.probe_error.lock().ok()?.take() {
            return Some(Err(e));
        }
        let probed = self.probed.lock().ok()?.take()?;
        let token = self.current_token().map(|t| t.secret);
        (probed.token == token && (probed.for_push || !for_push)).then_some(Ok(probed.refs))
    }

    /// [`Client::probe`] for a helper session: a probe that fails says API v1 and keeps its
    /// error for the first `list`, which reports it. Failing before git's `capabilities` is
    /// answered would add git's own "remote helper aborted session" to our one `fatal:` line.
    pub async fn probe_or_defer(&self) -> Api {
        match self.probe().await {
            Ok(api) => api,
            Err(e) => {
                if let Ok(mut slot) = self.probe_error.lock() {
                    *slot = Some(e);
                }
                Api::V1
            }
        }
    }

    /// Hypha's smart-HTTP URL of the repository, `{server}/{ws}/git/{alias}` (what the artifact
    /// manager calls `git_url`).
    pub fn smart_http_url(&self) -> Url {
        let mut url = self.remote.server.clone();
        let path = format!(
            "{}{}/git/{}",
            url.path(),
            self.remote.workspace,
            self.remote.alias
        );
        url.set_path(&path);
        url
    }

    /// The token the session would send, for handing to git's own HTTP transport. The caller
    /// must keep it off command lines and out of messages.
    pub fn token_secret(&self) -> Option<String> {
        self.current_token().map(|t| t.secret)
    }

    /// Ask Hypha whether our token may read or push the repository: an empty LFS batch
    /// request (`POST {smart_http_url}.git/info/lfs/objects/batch`, no objects), which Hypha
    /// answers from its database with the same permission checks as its upload-pack and
    /// receive-pack, in about 30 ms where `info/refs` loads every ref and pack (measured
    /// 1.2-1.5 s on a loaded 2-core machine). `Ok` when allowed; otherwise the API's errors (not
    /// found, authentication failed with its [`AuthProblem`], permission denied). Without a
    /// token, asks `git credential` (then `git hypha login`'s store) on a 401, as
    /// [`Client::call`] does.
    pub async fn check_smart_http(&self, access: Access) -> Result<(), Error> {
        let mut result = with_retries(|| self.check_smart_http_once(access)).await;
        if matches!(result, Err(Error::Unauthenticated { .. })) && self.fill_credentials() {
            result = with_retries(|| self.check_smart_http_once(access)).await;
        }
        self.settle_credentials(&result);
        result
    }

    async fn check_smart_http_once(&self, access: Access) -> Result<(), Error> {
        let repo = self.remote.display_name();
        let mut url = self.smart_http_url();
        url.set_path(&format!("{}.git/info/lfs/objects/batch", url.path()));
        let body = serde_json::json!({
            "operation": access.lfs_operation(),
            "transfers": ["basic"],
            "objects": [],
        });
        let mut req = self
            .api_http()?
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/vnd.git-lfs+json",
            )
            .header(reqwest::header::ACCEPT, "application/vnd.git-lfs+json")
            .body(body.to_string());
        let token = self.current_token();
        if let Some(token) = &token {
            req = req.bearer_auth(&token.secret);
        }
        let http_err = |source: reqwest::Error| Error::Http {
            repo: repo.clone(),
            route: "lfs batch",
            source: source.without_url(),
        };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        let body = resp.bytes().await.map_err(http_err)?;
        match status {
            // 405: a Hypha without LFS routes (its page route takes only GET); git's own
            // transport will say what it finds.
            200..=299 | 405 => Ok(()),
            // Hypha answers an anonymous caller 403 where a token might do: ask for one.
            401 | 403 if token.is_none() => Err(self.no_token()),
            401 => Err(Error::Unauthenticated {
                repo,
                problem: AuthProblem::new(
                    token.as_ref().map(|t| (t.secret.as_str(), t.source)),
                    hypha_detail(&body).as_deref(),
                    self.remote.server.as_str(),
                    crate::auth::unix_now(),
                ),
            }),
            403 => Err(Error::Forbidden { repo }),
            404 => Err(Error::NotFound { repo, detail: None }),
            status => Err(Error::TransferStatus {
                what: format!("Hypha's permission check for '{repo}'"),
                status,
                retry_after: wait,
            }),
        }
    }

    /// `POST {smart_http_url}/git-upload-pack` with `body` (one stateless request, not
    /// gzipped: Hypha does not read gzip bodies) and the token. Transient failures (a 503
    /// from Hypha's pack-slot limit, 502/504, dropped connections) are asked again; a 500 is
    /// [`Error::ServerFailed`], since Hypha would fail the same way again. 401/403/404 are
    /// the API path's errors.
    pub async fn upload_pack(&self, body: Vec<u8>) -> Result<UploadPackAnswer, Error> {
        with_retries(|| self.upload_pack_once(&body)).await
    }

    async fn upload_pack_once(&self, body: &[u8]) -> Result<UploadPackAnswer, Error> {
        let repo = self.remote.display_name();
        let mut url = self.smart_http_url();
        url.set_path(&format!("{}/git-upload-pack", url.path()));
        let mut req = self
            .http_for(url.as_str())?
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-git-upload-pack-request",
            )
            .header(
                reqwest::header::ACCEPT,
                "application/x-git-upload-pack-result",
            )
            .body(body.to_vec());
        let token = self.current_token();
        if let Some(token) = &token {
            req = req.bearer_auth(&token.secret);
        }
        let what = format!("Hypha's upload-pack for '{repo}'");
        let resp = req.send().await.map_err(|source| Error::Http {
            repo: repo.clone(),
            route: "git-upload-pack",
            source: source.without_url(),
        })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 if token.is_none() => return Err(self.no_token()),
            401 => {
                return Err(Error::Unauthenticated {
                    repo,
                    problem: AuthProblem::new(
                        token.as_ref().map(|t| (t.secret.as_str(), t.source)),
                        None,
                        self.remote.server.as_str(),
                        crate::auth::unix_now(),
                    ),
                })
            }
            403 => return Err(Error::Forbidden { repo }),
            404 => return Err(Error::NotFound { repo, detail: None }),
            500 => return Err(Error::ServerFailed { what }),
            status => {
                return Err(Error::TransferStatus {
                    what,
                    status,
                    retry_after: retry_after(resp.headers()),
                })
            }
        }
        let length = resp.content_length();
        let body = resp.bytes_stream().map_err(move |e| {
            std::io::Error::other(format!(
                "upload-pack answer for '{repo}' interrupted: {}",
                e.without_url()
            ))
        });
        Ok(UploadPackAnswer {
            body: Box::pin(body),
            length,
        })
    }

    /// Hypha's own `artifact-manager.create` with `config.storage = "git"` (the repository
    /// gets HEAD and its marker from Hypha itself); answers Hypha's `git_url`.
    pub async fn create_in_artifact_manager(
        &self,
        public: bool,
        default_branch: &str,
    ) -> Result<String, Error> {
        let repo = self.remote.display_name();
        let url = self
            .remote
            .server
            .join("public/services/artifact-manager/create")
            .map_err(|_| Error::NotFound {
                repo: repo.clone(),
                detail: None,
            })?;
        let mut config =
            serde_json::json!({"storage": "git", "git_default_branch": default_branch});
        if public {
            config["permissions"] = serde_json::json!({"*": "r"});
        }
        let body = serde_json::json!({
            "alias": self.remote.alias,
            "workspace": self.remote.workspace,
            "manifest": {"name": self.remote.alias},
            "config": config,
        });
        // Not retried: a create that reached Hypha but lost its answer would fail as
        // "already exists" on a second try.
        let mut req = self.api_http()?.post(url).json(&body);
        let token = self.current_token();
        if let Some(token) = &token {
            req = req.bearer_auth(&token.secret);
        }
        let http_err = |source: reqwest::Error| Error::Http {
            repo: repo.clone(),
            route: "artifact-manager create",
            source: source.without_url(),
        };
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(http_err)?;
        if (200..300).contains(&status) {
            let created: Created =
                serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                    repo: repo.clone(),
                    route: "artifact-manager create",
                    source,
                })?;
            return Ok(created
                .git_url
                .unwrap_or_else(|| self.smart_http_url().to_string()));
        }
        let detail = hypha_detail(&bytes)
            .filter(|d| token.as_ref().is_none_or(|t| !d.contains(&t.secret)))
            .unwrap_or_else(|| format!("HTTP status {status}"));
        if status == 401 || token.is_none() {
            return Err(Error::Unauthenticated {
                repo,
                problem: AuthProblem::new(
                    token.as_ref().map(|t| (t.secret.as_str(), t.source)),
                    Some(&detail),
                    self.remote.server.as_str(),
                    crate::auth::unix_now(),
                ),
            });
        }
        let (code, detail) = if detail.contains("already exists") {
            (
                ErrorCode::Exists,
                format!("repository {repo} already exists"),
            )
        } else if detail.contains("ermission") {
            (ErrorCode::Forbidden, detail)
        } else {
            (ErrorCode::Invalid, detail)
        };
        Err(Error::Refused {
            repo,
            route: "create",
            code,
            detail,
            retry_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_stock_hypha_from_our_api() {
        // Stock Hypha 0.21.137, measured: POST to the route gives 405 from its page route.
        assert_eq!(
            classify(405, br#"{"detail":"Method Not Allowed"}"#),
            Some(Api::Absent)
        );
        assert_eq!(classify(404, b"Not Found"), Some(Api::Absent));
        // Our API, a missing repository or a refused token included: the session reports it.
        assert_eq!(classify(200, br#"{"api":1}"#), Some(Api::V1));
        let missing = br#"{"error":"not_found","detail":"repository ws/x not found"}"#;
        assert_eq!(classify(404, missing), Some(Api::V1));
        let denied = br#"{"error":"unauthenticated","detail":"invalid token"}"#;
        assert_eq!(classify(401, denied), Some(Api::V1));
        assert_eq!(classify(401, b""), Some(Api::V1));
        // A gateway in trouble decides nothing: asked again.
        assert_eq!(classify(502, b"<html>bad gateway</html>"), None);
        assert_eq!(classify(503, b""), None);
    }

    #[test]
    fn hypha_details_lose_the_rpc_prefix() {
        let body = br#"{"success":false,"detail":"RemoteException: FileExistsError: Artifact with alias 'r1' already exists"}"#;
        assert_eq!(
            hypha_detail(body).as_deref(),
            Some("FileExistsError: Artifact with alias 'r1' already exists")
        );
        assert_eq!(hypha_detail(b"nope"), None);
    }
}
