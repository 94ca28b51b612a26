//! One pack up to the store: ask `uploads` for URLs, `PUT` the idx, then the pack in one
//! `PUT` or, when the server started a multipart upload, in parts, and `complete` it
//! (docs/design.md §3 rule 1, §10).
//!
//! Parts go up [`PARALLEL_PARTS`] at a time, each streamed from its own range of the file on
//! disk, so memory stays at a few read buffers whatever the pack's size. A part that fails is
//! retried alone, with backoff, while its URL lives; a URL that is dead (past the expiry the
//! `uploads` answer states, or refused by the store with 403) is never tried again: the server
//! is asked for fresh URLs (for a multipart upload, of the same upload) and the transfer
//! carries on. When a multipart
//! upload cannot be finished, the server is asked to abort it, so that no parts are left.
//!
//! Does not decide what to upload (the caller built the pack) and never logs a URL.

use super::{Client, Error};
use crate::api::{
    AbortRequest, CompleteRequest, MultipartDone, PresignedRequest, Route, Upload, UploadSpec,
    UploadsRequest, UploadsResponse,
};
use crate::progress::Bar;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Parts in flight at once.
pub const PARALLEL_PARTS: usize = 4;

/// How often one object's URL may be renewed after a 403 before the transfer fails: a store
/// that refuses fresh URLs too is not refusing because of age.
pub const MAX_FRESH_URLS: u32 = 2;

/// Read buffer of one streamed `PUT`.
const CHUNK: usize = 256 * 1024;

/// A built pack on disk.
#[derive(Debug, Clone, Copy)]
pub struct PackFiles<'a> {
    pub name: &'a str,
    pub pack_path: &'a Path,
    pub idx_path: &'a Path,
    pub pack_size: u64,
    pub idx_size: u64,
    /// A thin pack, for the server to complete (`fix-thin`): stored where no reader looks.
    pub thin: bool,
    /// The caller keeps the pack when its upload fails (`helper::kept_pack`): ask the server
    /// to continue an upload of it in progress (only the missing parts go), and leave a
    /// failed multipart upload open, when the server says it continues it, for the next
    /// push to finish.
    pub resume: bool,
}

/// What to `PUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Idx,
    Pack,
    /// Part number `n` (from 1) of a multipart upload.
    Part(u32),
}

/// The URLs of one pack's upload, renewed when they expire.
struct Session<'a> {
    client: &'a Client,
    files: PackFiles<'a>,
    bar: &'a Bar,
    /// How many times the URLs were renewed, and the current ones. Workers that found a URL
    /// dead at the same moment renew it once between them.
    current: tokio::sync::Mutex<Urls>,
}

struct Urls {
    generation: u64,
    upload: Upload,
    /// Unix seconds; `None` when the server did not say.
    expires_at: Option<u64>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether URLs that expire at `expires_at` are dead by now.
fn dead(expires_at: Option<u64>) -> bool {
    expires_at.is_some_and(|at| unix_now() >= at)
}

/// Upload `files` (idx first) and, for a multipart upload, complete it; on failure a
/// multipart upload is aborted. Afterwards the pack can be named in `update`.
pub async fn upload_pack(client: &Client, files: PackFiles<'_>, bar: &Bar) -> Result<(), Error> {
    let (upload, expires_at) = match request(client, &files, None).await {
        // The repository holds this very pack already (its name is its checksum): another
        // push sent the same objects. Nothing to send; `update` names it as if just sent.
        Err(Error::Refused { detail, .. })
            if !files.thin && detail.contains(crate::repo::ALREADY_STORED) =>
        {
            return Ok(());
        }
        other => other?,
    };
    let session = Session {
        client,
        files,
        bar,
        current: tokio::sync::Mutex::new(Urls {
            generation: 0,
            upload,
            expires_at,
        }),
    };
    session.put(Target::Idx).await?;
    let multipart = session.current.lock().await.upload.multipart.clone();
    let Some(multipart) = multipart else {
        return session.put(Target::Pack).await;
    };
    let result = session.put_parts(&multipart).await;
    // Left open for the next push, which continues it; the server's sweep of stale uploads
    // aborts it if none comes.
    let leave_open = files.resume && multipart.resumable;
    if result.is_err() && !leave_open {
        // Best effort: what the server cannot abort now, its sweep of stale uploads will.
        let _ = client
            .call::<_, MultipartDone>(
                Route::Abort,
                &AbortRequest {
                    name: files.name.to_owned(),
                    upload_id: multipart.upload_id.clone(),
                },
            )
            .await;
    }
    result
}

/// Ask `uploads` for the URLs of `files` (of the upload `upload_id`, when renewing them).
async fn request(
    client: &Client,
    files: &PackFiles<'_>,
    upload_id: Option<String>,
) -> Result<(Upload, Option<u64>), Error> {
    let response: UploadsResponse = client
        .call(
            Route::Uploads,
            &UploadsRequest {
                packs: vec![UploadSpec {
                    name: files.name.to_owned(),
                    pack_size: files.pack_size,
                    idx_size: files.idx_size,
                    // Fresh URLs of a started upload are for its every part: nothing to find.
                    resume: files.resume && upload_id.is_none(),
                    upload_id,
                    thin: files.thin,
                }],
            },
        )
        .await?;
    let upload = response
        .uploads
        .into_iter()
        .find(|u| u.name == files.name)
        .ok_or_else(|| bad_answer(client, files, "no upload URLs for it"))?;
    match &upload.multipart {
        Some(mp) => {
            let expected = if mp.part_size == 0 {
                0
            } else {
                files.pack_size.div_ceil(mp.part_size)
            };
            if expected == 0 || mp.part_numbers(expected).is_none() {
                return Err(bad_answer(
                    client,
                    files,
                    "a multipart upload whose parts do not cover the pack",
                ));
            }
        }
        None if upload.pack.is_none() => {
            return Err(bad_answer(client, files, "no URL for the pack"));
        }
        None => {}
    }
    Ok((upload, response.expires_at))
}

fn bad_answer(client: &Client, files: &PackFiles<'_>, why: &str) -> Error {
    Error::Refused {
        repo: client.remote().display_name(),
        route: Route::Uploads.as_str(),
        code: crate::api::ErrorCode::Internal,
        detail: format!("{} for {}", why, files.name),
        retry_after: None,
    }
}

impl Session<'_> {
    fn repo(&self) -> String {
        self.client.remote().display_name()
    }

    fn what(&self, target: Target) -> String {
        let name = self.files.name;
        let repo = self.repo();
        match target {
            Target::Idx => format!("index of {name} to '{repo}'"),
            Target::Pack => format!("pack {name} to '{repo}'"),
            Target::Part(n) => format!("part {n} of pack {name} to '{repo}'"),
        }
    }

    /// The current URL for `target`, the generation it belongs to, and whether it is dead.
    async fn url(&self, target: Target) -> Result<(u64, PresignedRequest, bool), Error> {
        let current = self.current.lock().await;
        let upload = &current.upload;
        let req = match target {
            Target::Idx => Some(upload.idx.clone()),
            Target::Pack => upload.pack.clone(),
            Target::Part(n) => upload.multipart.as_ref().and_then(|mp| {
                // `request` checked that the answer's parts add up.
                let numbers = mp.part_numbers(self.files.pack_size.div_ceil(mp.part_size))?;
                let at = numbers.binary_search(&n).ok()?;
                mp.parts.get(at).cloned()
            }),
        };
        let req = req.ok_or_else(|| {
            bad_answer(
                self.client,
                &self.files,
                "fresh URLs that lack one the first answer had",
            )
        })?;
        Ok((current.generation, req, dead(current.expires_at)))
    }

    /// Replace URLs of generation `seen` by fresh ones, unless another worker already did.
    async fn renew(&self, seen: u64) -> Result<(), Error> {
        let mut current = self.current.lock().await;
        if current.generation != seen {
            return Ok(());
        }
        let started = current.upload.multipart.as_ref();
        let upload_id = started.map(|mp| mp.upload_id.clone());
        let (fresh, expires_at) = request(self.client, &self.files, upload_id).await?;
        let same =
            |m: Option<&crate::api::MultipartUpload>| m.map(|m| (m.upload_id.clone(), m.part_size));
        if same(fresh.multipart.as_ref()) != same(started) {
            return Err(bad_answer(
                self.client,
                &self.files,
                "fresh URLs for another upload than the one started",
            ));
        }
        *current = Urls {
            generation: seen + 1,
            upload: fresh,
            expires_at,
        };
        Ok(())
    }

    /// The file range `target` covers.
    async fn range(&self, target: Target) -> (&Path, (u64, u64)) {
        match target {
            Target::Idx => (self.files.idx_path, (0, self.files.idx_size)),
            Target::Pack => (self.files.pack_path, (0, self.files.pack_size)),
            Target::Part(n) => {
                let current = self.current.lock().await;
                let part_size = current
                    .upload
                    .multipart
                    .as_ref()
                    .map_or(0, |mp| mp.part_size);
                let start = part_size * u64::from(n.saturating_sub(1));
                let len = part_size.min(self.files.pack_size.saturating_sub(start));
                (self.files.pack_path, (start, len))
            }
        }
    }

    /// `PUT` one object or part. Transient failures are retried with the same URL while it
    /// lives, with backoff; a URL that is dead (past its expiry, or refused with 403) is
    /// never tried again: fresh URLs are asked for, at most [`MAX_FRESH_URLS`] times.
    async fn put(&self, target: Target) -> Result<(), Error> {
        let (path, range) = self.range(target).await;
        let what = self.what(target);
        let mut renewed = 0;
        let mut attempt = 1;
        let mut delay = std::time::Duration::from_millis(250);
        loop {
            let (generation, req, expired) = self.url(target).await?;
            if expired && renewed < MAX_FRESH_URLS {
                renewed += 1;
                self.renew(generation).await?;
                continue;
            }
            let http = self.client.http_for(&req.url)?;
            let e = match put_range(&http, &req, path, range, &what, self.bar).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let (_, _, expired) = self.url(target).await?;
            if (e.is_refused_url() || expired) && renewed < MAX_FRESH_URLS {
                renewed += 1;
                self.renew(generation).await?;
            } else if e.is_transient() && attempt < super::MAX_ATTEMPTS {
                tokio::time::sleep(e.retry_after().map_or(delay, |wait| wait.max(delay))).await;
                delay *= 2;
                attempt += 1;
            } else {
                return Err(e);
            }
        }
    }

    /// Every part not stored yet (by a push that was cut), [`PARALLEL_PARTS`] at a time,
    /// then `complete`. The first part that fails for good stops the others.
    async fn put_parts(&self, mp: &crate::api::MultipartUpload) -> Result<(), Error> {
        use futures_util::{StreamExt, TryStreamExt};
        let total = self.files.pack_size.div_ceil(mp.part_size);
        let numbers = mp.part_numbers(total).unwrap_or_default();
        if !mp.stored.is_empty() {
            let sent: u64 = numbers
                .iter()
                .map(|&n| {
                    mp.part_size
                        .min(self.files.pack_size - mp.part_size * u64::from(n - 1))
                })
                .sum();
            let kept = self.files.pack_size - sent;
            self.bar.inc(kept);
            tracing::info!(
                "hypha: continuing the upload of {}: {} of {total} parts ({kept} bytes) are stored already",
                self.files.name,
                mp.stored.len()
            );
        }
        futures_util::stream::iter(numbers)
            .map(|n| self.put(Target::Part(n)))
            .buffer_unordered(PARALLEL_PARTS)
            .try_collect::<Vec<()>>()
            .await?;
        let _: MultipartDone = self
            .client
            .call(
                Route::Complete,
                &CompleteRequest {
                    name: self.files.name.to_owned(),
                    upload_id: mp.upload_id.clone(),
                    pack_size: self.files.pack_size,
                    part_size: mp.part_size,
                },
            )
            .await?;
        Ok(())
    }
}

/// `PUT` bytes `start..start + len` of the file at `path` to a presigned URL with exactly its
/// signed headers, streamed from disk.
pub async fn put_range(
    http: &reqwest::Client,
    req: &PresignedRequest,
    path: &Path,
    (start, len): (u64, u64),
    what: &str,
    bar: &Bar,
) -> Result<(), Error> {
    use futures_util::TryStreamExt;
    let io_err = |source| Error::Io {
        what: format!("cannot read {what} from {}", path.display()),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io_err)?;
    let method =
        reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| Error::TransferStatus {
            what: format!("upload of {what}: server asked for method {:?}", req.method),
            status: 0,
            retry_after: None,
        })?;
    let bar = bar.clone();
    let body = reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK)
            .inspect_ok(move |chunk| bar.inc(chunk.len() as u64)),
    );
    let mut builder = http.request(method, &req.url).body(body);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    if !req
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-length"))
    {
        // S3 refuses streamed uploads without a length.
        builder = builder.header(reqwest::header::CONTENT_LENGTH, len);
    }
    let resp = builder.send().await.map_err(|e| Error::Transfer {
        what: format!("upload of {what} failed"),
        source: e.without_url(),
    })?;
    // A create-only PUT (`If-None-Match: *`, packs and idx files on S3) that finds the object
    // there: an earlier attempt stored it and its answer was lost. `update` checks the pack
    // against its idx, so other bytes under that name are still refused there.
    let create_only = req
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("if-none-match"));
    if create_only && resp.status() == reqwest::StatusCode::PRECONDITION_FAILED {
        return Ok(());
    }
    if !resp.status().is_success() {
        return Err(Error::TransferStatus {
            what: format!("upload of {what} failed"),
            status: resp.status().as_u16(),
            retry_after: super::retry_after(resp.headers()),
        });
    }
    Ok(())
}
