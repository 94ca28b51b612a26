//! Pack bytes to and from presigned URLs: streaming, never whole files in memory.
//!
//! URLs are credentials: errors name the pack, never the URL.

use super::Error;
use crate::api::PresignedRequest;
use crate::progress::Bar;
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use std::path::Path;

/// Start a `GET` of a presigned URL and return its body as a stream of chunks.
pub async fn download_stream(
    http: &reqwest::Client,
    url: &str,
    what: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, Error> {
    let resp = http.get(url).send().await.map_err(|e| Error::Transfer {
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
    let what = what.to_owned();
    Ok(resp.bytes_stream().map_err(move |e| {
        std::io::Error::other(format!(
            "download of {what} interrupted: {}",
            e.without_url()
        ))
    }))
}

/// `PUT` a file to a presigned URL with exactly the signed headers and its length.
pub async fn upload_file(
    http: &reqwest::Client,
    req: &PresignedRequest,
    path: &Path,
    what: &str,
    bar: &Bar,
) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        what: format!("cannot read {what} at {}", path.display()),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let len = file.metadata().await.map_err(io_err)?.len();
    let method =
        reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| Error::TransferStatus {
            what: format!("upload of {what}: server asked for method {:?}", req.method),
            status: 0,
            retry_after: None,
        })?;
    let bar = bar.clone();
    let body = reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
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
    if !resp.status().is_success() {
        return Err(Error::TransferStatus {
            what: format!("upload of {what} failed"),
            status: resp.status().as_u16(),
            retry_after: super::retry_after(resp.headers()),
        });
    }
    Ok(())
}
