//! Pack bytes from presigned URLs: streaming, never whole files in memory (uploads: `upload`).
//!
//! URLs are credentials: errors name the pack, never the URL.

use super::Error;
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};

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
