//! `git hypha lfs-agent`: our Git LFS custom transfer agent (issue 22), which git-lfs runs
//! when our server picks the `hypha` transfer in a batch answer (the helper records
//! `lfs.customtransfer.hypha.*` in the repository, `helper::lfs`). It moves what `basic`
//! cannot: objects past S3's 5 GiB single `PUT`, in parallel parts, and resumes a transfer
//! that was cut where it stopped.
//!
//! - Uploads ([`upload`]): small objects are one presigned `PUT`, as with `basic`; large ones
//!   ask the server's parts route for the parts still missing, send them in parallel from
//!   their ranges of the file (memory: a few read buffers, whatever the size), and ask it to
//!   assemble and check the object. A rerun after a cut sends only the missing parts.
//! - New versions of large objects ([`delta`]): where the server offers it, only the byte
//!   ranges its stored bases lack (content-defined chunks); anything else, the parts.
//! - Downloads ([`download`]): parallel byte ranges of the presigned `GET` into a file under
//!   `.git/lfs/incomplete/`, with a record of the ranges done beside it, so that a rerun
//!   reads only the rest; git-lfs checks the SHA-256 and moves the file into place.
//!
//! Owns the protocol loop and progress events. Uploads and downloads are operations shaped
//! as the helper's (`upload::run`, `download::run`: their `Options`, `Outcome` and the one
//! [`Error`] of the agent, the progress counter handed in). An error of one object is that
//! object's `complete` event, on one line (git-lfs names the file); only a broken protocol
//! stops the agent. Never prints an href or a header: they are credentials.

pub mod delta;
pub mod download;
mod error;
pub mod protocol;
pub mod upload;

pub use error::Error;

use crate::api::lfs::Operation;
use crate::progress::Bar;
use protocol::{ErrorBody, Event, InitAnswer, Request};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Parts or ranges in flight at once for one object.
pub const PARALLEL: usize = 4;

/// How often progress is reported while bytes move.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The error code of a failed object (git-lfs shows the message).
const FAILED: u32 = 2;

/// Largest error body read from a server or store: enough for any message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one session knows: set by `init`.
#[derive(Debug)]
pub struct Session {
    pub operation: Operation,
    /// git-lfs's remote name, for git's `remote.<name>.proxy`.
    pub remote: Option<String>,
    /// The repository's common git directory (downloads keep their partial files there).
    pub git_dir: PathBuf,
    /// HTTP clients by origin and read timeout: one per session, not one per object and
    /// round (each reads git's HTTP settings and, for TLS, the system's roots).
    clients: Mutex<HashMap<(String, Option<Duration>), reqwest::Client>>,
}

impl Session {
    /// A session for `operation` in the repository whose common git directory is `git_dir`
    /// (`remote`: git-lfs's remote name, for its proxy settings).
    pub fn new(operation: Operation, remote: Option<String>, git_dir: PathBuf) -> Session {
        Session {
            operation,
            remote,
            git_dir,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `url` (git's HTTP settings for its origin), with `read_timeout`
    /// instead of the default when given.
    pub fn http(
        &self,
        url: &str,
        read_timeout: Option<Duration>,
    ) -> Result<reqwest::Client, Error> {
        let origin = url::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| url.to_owned());
        let key = (origin, read_timeout);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = crate::client::http_client_for(url, self.remote.as_deref(), read_timeout)
            .map_err(Error::HttpSettings)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Run the agent over `input` and `output` until `terminate` or the end of input.
pub fn run(input: &mut impl BufRead, output: impl Write + Send + 'static) -> Result<(), Error> {
    let out = Arc::new(Mutex::new(output));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let mut session: Option<Session> = None;
    while let Some(request) = protocol::read_request(input)? {
        match request {
            Request::Init { operation, remote } => {
                let answer = match git_common_dir() {
                    Ok(git_dir) => {
                        session = Some(Session::new(operation, remote, git_dir));
                        InitAnswer { error: None }
                    }
                    Err(e) => InitAnswer {
                        error: Some(ErrorBody {
                            code: FAILED,
                            message: e.one_line(),
                        }),
                    },
                };
                write_line(&out, &answer)?;
            }
            Request::Upload {
                oid,
                size,
                path,
                action,
            } => {
                let session = session.as_ref().ok_or(Error::BeforeInit("upload"))?;
                let bar = Bar::hidden();
                let result = runtime.block_on(with_progress(&out, &oid, size, &bar, async {
                    let action = action.ok_or(Error::NoAction("upload"))?;
                    let object = upload::Object {
                        oid: &oid,
                        size,
                        path: Path::new(&path),
                    };
                    let options = upload::Options::default();
                    upload::run(session, &object, &action, &options, &bar).await
                }));
                if let Ok(outcome) = &result {
                    tracing::debug!("lfs object {oid}: {outcome:?}");
                }
                complete(&out, &oid, result.map(|_| None))?;
            }
            Request::Download { oid, size, action } => {
                let session = session.as_ref().ok_or(Error::BeforeInit("download"))?;
                let bar = Bar::hidden();
                let result = runtime.block_on(with_progress(&out, &oid, size, &bar, async {
                    let action = action.ok_or(Error::NoAction("download"))?;
                    let options = download::Options::default();
                    download::run(session, &oid, size, &action, &options, &bar).await
                }));
                if let Ok(outcome) = &result {
                    tracing::debug!("lfs object {oid}: {outcome:?}");
                }
                complete(&out, &oid, result.map(|o| Some(o.path)))?;
            }
            Request::Terminate => break,
        }
    }
    Ok(())
}

/// Run `transfer`, reporting `bar`'s count as progress events while it runs and once more at
/// the end.
async fn with_progress<T, W: Write + Send>(
    out: &Arc<Mutex<W>>,
    oid: &str,
    size: u64,
    bar: &Bar,
    transfer: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let mut last = 0u64;
    let mut report = |now: u64| {
        let now = now.min(size);
        if now > last {
            let _ = write_line(
                out,
                &Event::Progress {
                    oid,
                    bytes_so_far: now,
                    bytes_since_last: now - last,
                },
            );
            last = now;
        }
    };
    tokio::pin!(transfer);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let result = loop {
        tokio::select! {
            result = &mut transfer => break result,
            _ = tick.tick() => report(bar.position()),
        }
    };
    if result.is_ok() {
        report(size);
    }
    result
}

fn complete<W: Write>(
    out: &Arc<Mutex<W>>,
    oid: &str,
    result: Result<Option<PathBuf>, Error>,
) -> Result<(), Error> {
    let event = match result {
        Ok(path) => Event::Complete {
            oid,
            path: path.map(|p| p.to_string_lossy().into_owned()),
            error: None,
        },
        Err(e) => {
            let message = e.one_line();
            tracing::debug!("lfs object {oid}: {message}");
            Event::Complete {
                oid,
                path: None,
                error: Some(ErrorBody {
                    code: FAILED,
                    message,
                }),
            }
        }
    };
    write_line(out, &event)
}

fn write_line<W: Write>(out: &Arc<Mutex<W>>, value: &impl serde::Serialize) -> Result<(), Error> {
    let mut line = serde_json::to_vec(value).map_err(Error::Encode)?;
    line.push(b'\n');
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    out.write_all(&line)
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// The repository's common git directory, as git-lfs keeps its objects there (`git
/// rev-parse` from the directory git-lfs runs the agent in).
fn git_common_dir() -> Result<PathBuf, Error> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(Error::RevParse)?;
    if !out.status.success() {
        return Err(Error::RevParseFailed {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// `POST` of `body` as JSON to one of our LFS routes with the action's `header`; the answer
/// if it is a success. Errors: [`Error::Send`] (`what` failed) when it was not answered,
/// [`Error::Refused`] (`refused`: the server's message) when it was refused.
pub(crate) async fn post_action<T: serde::Serialize>(
    api: &reqwest::Client,
    url: &str,
    header: &std::collections::BTreeMap<String, String>,
    body: &T,
    what: &str,
    refused: &str,
) -> Result<reqwest::Response, Error> {
    let mut req = api.post(url).json(body);
    for (k, v) in header {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| Error::Send {
        what: what.to_owned(),
        source: e.without_url(),
    })?;
    if !resp.status().is_success() {
        return Err(server_error(refused, resp).await);
    }
    Ok(resp)
}

/// A plan the server answered (`what`: "lfs parts plan"), read to at most `max` bytes.
pub(crate) async fn read_plan<R: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    max: usize,
    what: &'static str,
) -> Result<R, Error> {
    let body = read_bounded(resp, max, what).await?;
    serde_json::from_slice(&body).map_err(|source| Error::Unreadable { what, source })
}

/// The `message` of a server's error body, else the status: what git-lfs shows the user.
pub(crate) async fn server_error(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    // At most MAX_ERROR_BODY: a body too long or cut short leaves just the status.
    let body = read_bounded(resp, MAX_ERROR_BODY, what)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<crate::api::lfs::ErrorBody>(&body)
        .map(|b| b.message)
        .ok()
        .filter(|m| !m.is_empty());
    let message = match message {
        Some(m) => crate::storage::shorten(&m),
        None => format!("HTTP {status}"),
    };
    Error::Refused {
        what: what.to_owned(),
        message,
    }
}

/// The whole body of the answer to `what`, refused past `max` bytes (a server's answer is
/// never trusted to be small).
pub(crate) async fn read_bounded(
    resp: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Cut {
            what: what.to_owned(),
            source: e.without_url(),
        })?;
        if body.len() + chunk.len() > max {
            return Err(Error::AnswerTooLarge {
                what: what.to_owned(),
                max,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
