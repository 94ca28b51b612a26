//! `GET`s of presigned URLs: a whole object, a stream fed to a reader, or a byte range
//! (uploads: `upload`). Owns URL renewal and retries for all of them.
//!
//! Bytes are streamed, never whole packs in memory. A transient failure is retried with the
//! same URL ([`super::with_retries`]); a URL the store refuses (403: expired) is never tried
//! again: `packs` is asked for a fresh one, at most [`MAX_FRESH_URLS`] times. Does not decide
//! which packs to get, and does not look inside them. URLs are credentials: errors name the
//! pack, never the URL.

use super::{with_retries, Client, Error, MAX_FRESH_URLS};
use crate::api::{PacksRequest, PacksResponse, Route};
use crate::progress::Bar;
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use std::future::Future;

/// Which object of a pack a presigned URL names: what a fresh URL is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Pack,
    Idx,
}

/// Start a `GET` of a presigned URL and return its body as a stream of chunks.
pub async fn download_stream(
    http: &reqwest::Client,
    url: &str,
    what: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, Error> {
    let resp = send(http.get(url), what).await?;
    Ok(body_stream(resp, what))
}

/// Send a `GET`; any status but success is an error carrying the status.
async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, Error> {
    let resp = req.send().await.map_err(|e| Error::Transfer {
        what: format!("download of {what} failed"),
        source: e.without_url(),
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::TransferStatus {
            what: format!("download of {what} failed"),
            status: status.as_u16(),
            retry_after: super::retry_after(resp.headers()),
        });
    }
    Ok(resp)
}

fn body_stream(
    resp: reqwest::Response,
    what: &str,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let what = what.to_owned();
    resp.bytes_stream().map_err(move |e| {
        std::io::Error::other(format!(
            "download of {what} interrupted: {}",
            e.without_url()
        ))
    })
}

/// Run `get` on `url` (of `object` of the pack `name`), retrying transient failures; when the
/// store refuses the URL (403: expired), ask `packs` for a fresh one, keep it in `url` and
/// carry on. A dead URL is never tried twice.
async fn renewing<T, F, Fut>(
    client: &Client,
    name: &str,
    object: Object,
    url: &mut String,
    mut get: F,
) -> Result<T, Error>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut renewed = 0;
    loop {
        let attempt = with_retries(|| get(url.clone())).await;
        match attempt {
            Err(e) if e.is_refused_url() && renewed < MAX_FRESH_URLS => {
                renewed += 1;
                let listing: PacksResponse =
                    client.call(Route::Packs, &PacksRequest::default()).await?;
                let fresh = listing
                    .packs
                    .into_iter()
                    .find(|p| p.name == name)
                    .and_then(|p| match object {
                        Object::Idx => p.idx_url,
                        Object::Pack => p.pack_url,
                    });
                match fresh {
                    Some(fresh) => *url = fresh,
                    // The pack is no longer listed (retired by gc): the refusal stands.
                    None => return Err(e),
                }
            }
            other => return other,
        }
    }
}

/// Start a `GET` of `url` (`object` of the pack `name`), renewing it as [`renewing`] does.
pub async fn get_renewing(
    client: &Client,
    name: &str,
    object: Object,
    url: &mut String,
    what: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, Error> {
    renewing(client, name, object, url, |url| async move {
        download_stream(client.http(), &url, what).await
    })
    .await
}

/// The whole body of `url` (`object` of the pack `name`; an idx, small), retried whole when
/// it is cut off mid-body.
pub async fn get_whole(
    client: &Client,
    name: &str,
    object: Object,
    url: &str,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let url = std::sync::Mutex::new(url.to_owned());
    with_retries(|| async {
        let mut current = url.lock().map(|u| u.clone()).unwrap_or_default();
        let stream = get_renewing(client, name, object, &mut current, what).await?;
        if let Ok(mut slot) = url.lock() {
            *slot = current;
        }
        let chunks: Vec<Bytes> =
            stream
                .try_collect()
                .await
                .map_err(|source| Error::Interrupted {
                    what: what.to_owned(),
                    source,
                })?;
        Ok(chunks.concat())
    })
    .await
}

/// Stream `url` (the pack `name`) into `read`, which runs on a blocking thread with a
/// buffered reader of the body; every chunk counts on `bar`. When `read` fails, the whole
/// download is tried once more (a connection cut mid-pack looks like a truncated pack), and
/// its second error is returned inside `Ok`: what it means is the caller's business.
pub async fn get_into<T, R, E, F>(
    client: &Client,
    name: &str,
    mut url: String,
    what: &str,
    bar: &Bar,
    read: F,
) -> Result<Result<T, R>, E>
where
    T: Send + 'static,
    R: Send + 'static,
    E: From<Error> + From<tokio::task::JoinError>,
    F: Fn(&mut dyn std::io::BufRead) -> Result<T, R> + Clone + Send + 'static,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stream = get_renewing(client, name, Object::Pack, &mut url, what).await?;
        let counted = bar.clone();
        let reader = tokio_util::io::StreamReader::new(
            stream.inspect_ok(move |chunk| counted.inc(chunk.len() as u64)),
        );
        let read = read.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut input = std::io::BufReader::with_capacity(
                1 << 20,
                tokio_util::io::SyncIoBridge::new(reader),
            );
            read(&mut input)
        })
        .await?;
        match result {
            Ok(done) => return Ok(Ok(done)),
            Err(_) if attempt < 2 => continue,
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Bytes `start..start + len` of `url` (`object` of the pack `name`), with `Range`. The store
/// must answer 206 with exactly those bytes: a 200 (the whole object) or a shorter body (a
/// range past the end) is an error naming the pack and the range, not retried. Transient
/// failures are retried and an expired URL renewed, as for whole downloads.
pub async fn get_range(
    client: &Client,
    name: &str,
    object: Object,
    url: &mut String,
    (start, len): (u64, u64),
    what: &str,
) -> Result<Bytes, Error> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let last = start.saturating_add(len - 1);
    let range = format!("bytes {start}-{last}");
    let current = std::sync::Mutex::new(url.clone());
    let bytes = with_retries(|| async {
        let mut url = current.lock().map(|u| u.clone()).unwrap_or_default();
        let resp = renewing(client, name, object, &mut url, |url| async move {
            let req = client
                .http()
                .get(&url)
                .header(reqwest::header::RANGE, format!("bytes={start}-{last}"));
            send(req, what).await
        })
        .await?;
        if let Ok(mut slot) = current.lock() {
            *slot = url;
        }
        let status = resp.status().as_u16();
        if status != 206 {
            return Err(Error::Range {
                what: what.to_owned(),
                range: range.clone(),
                problem: format!("the store answered HTTP status {status} instead of 206"),
            });
        }
        let chunks: Vec<Bytes> = body_stream(resp, what)
            .try_collect()
            .await
            .map_err(|source| Error::Interrupted {
                what: what.to_owned(),
                source,
            })?;
        let body = Bytes::from(chunks.concat());
        if body.len() as u64 != len {
            return Err(Error::Range {
                what: what.to_owned(),
                range: range.clone(),
                problem: format!("the store sent {} bytes instead of {len}", body.len()),
            });
        }
        Ok(body)
    })
    .await?;
    if let Ok(fresh) = current.into_inner() {
        *url = fresh;
    }
    Ok(bytes)
}
