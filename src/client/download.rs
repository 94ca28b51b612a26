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
use futures_util::{Stream, StreamExt, TryStreamExt};
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

/// A whole body in memory (idx files, byte ranges: small); cut off mid-body is `Interrupted`.
async fn collect(
    stream: impl Stream<Item = std::io::Result<Bytes>>,
    what: &str,
    max: u64,
) -> Result<Vec<u8>, Error> {
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| Error::Interrupted {
            what: what.to_owned(),
            source,
        })?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(Error::TooLarge {
                what: what.to_owned(),
                limit: max,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
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

/// Start a `GET` of `url` (`object` of the pack `name`), retrying transient failures and
/// renewing a refused URL in place (see the module doc).
pub async fn get_renewing(
    client: &Client,
    name: &str,
    object: Object,
    url: &mut String,
    what: &str,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, Error> {
    renewing(client, name, object, url, |url| async move {
        download_stream(&client.http_for(&url)?, &url, what).await
    })
    .await
}

/// The whole body of `url` (`object` of the pack `name`; an idx, small), retried whole when
/// it is cut off mid-body.
/// The whole object at `url`, at most `max` bytes (what the listing said it holds: a store
/// that sends more is refused before it fills memory).
pub async fn get_whole(
    client: &Client,
    name: &str,
    object: Object,
    url: &str,
    what: &str,
    max: u64,
) -> Result<Vec<u8>, Error> {
    let url = std::sync::Mutex::new(url.to_owned());
    with_retries(|| async {
        let mut current = url.lock().map(|u| u.clone()).unwrap_or_default();
        let stream = get_renewing(client, name, object, &mut current, what).await?;
        if let Ok(mut slot) = url.lock() {
            *slot = current;
        }
        collect(stream, what, max).await
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

/// Start a `GET` of `url` (the pack `name`, `total` bytes) from byte `start` on: the whole
/// object when `start` is 0, else `Range: bytes=start-(total-1)` (a download resumed where an
/// earlier one was cut). The store must answer a range with 206 and say it sends exactly the
/// rest (`Content-Range`, `Content-Length`); anything else is [`Error::Range`], not retried.
/// Counting the bytes as they stream is the reader's business. Transient failures are
/// retried and an expired URL renewed in place, as for [`get_renewing`].
pub async fn get_from(
    client: &Client,
    name: &str,
    url: &mut String,
    (start, total): (u64, u64),
    what: &str,
) -> Result<futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>, Error> {
    if start == 0 {
        return Ok(get_renewing(client, name, Object::Pack, url, what)
            .await?
            .boxed());
    }
    let last = total.saturating_sub(1);
    let range = format!("bytes {start}-{last}");
    let resp = ranged(client, name, Object::Pack, url, (start, last), what).await?;
    let refuse = |problem: String| Error::Range {
        what: what.to_owned(),
        range: range.clone(),
        problem,
    };
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let expected = format!("bytes {start}-{last}/{total}");
    match header(reqwest::header::CONTENT_RANGE) {
        Some(got) if got.trim() == expected => {}
        got => {
            return Err(refuse(format!(
                "the store sent range {} instead",
                got.as_deref().unwrap_or("(none)")
            )))
        }
    }
    let rest = total - start;
    if let Some(len) = resp.content_length().filter(|&len| len != rest) {
        return Err(refuse(format!(
            "the store sends {len} bytes instead of {rest}"
        )));
    }
    Ok(body_stream(resp, what).boxed())
}

/// A `GET` of bytes `start..=last` of `url` (`object` of the pack `name`), renewing a refused
/// URL in place; anything but a 206 is [`Error::Range`]. What the body must hold is the
/// caller's to check.
async fn ranged(
    client: &Client,
    name: &str,
    object: Object,
    url: &mut String,
    (start, last): (u64, u64),
    what: &str,
) -> Result<reqwest::Response, Error> {
    let resp = renewing(client, name, object, url, |url| async move {
        let req = client
            .http_for(&url)?
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={start}-{last}"));
        send(req, what).await
    })
    .await?;
    let status = resp.status().as_u16();
    if status != 206 {
        return Err(Error::Range {
            what: what.to_owned(),
            range: format!("bytes {start}-{last}"),
            problem: format!("the store answered HTTP status {status} instead of 206"),
        });
    }
    Ok(resp)
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
        let resp = ranged(client, name, object, &mut url, (start, last), what).await;
        if let Ok(mut slot) = current.lock() {
            *slot = url;
        }
        let resp = resp?;
        // At most what was asked for: a store that sends more is refused as it streams.
        let body = Bytes::from(collect(body_stream(resp, what), what, len).await?);
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

/// Range reads against the real local store (`/_store` of `git hypha serve`), on a socket.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateRequest, PackInfo, RefUpdate, UpdateRequest, UpdateResponse};
    use crate::auth::{self, Permission};
    use crate::config::{Remote, Token, TokenSource};
    use crate::progress::Progress;
    use crate::server::{router, AppState};
    use crate::storage::LocalDisk;
    use std::time::Duration;

    const SECRET: &[u8] = b"jwt-secret-for-tests";

    /// Serve `app` on 127.0.0.1; the task dies with the test's runtime.
    async fn listen(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// A server whose repository `ws/repo` holds one uploaded pack; the client, the pack's
    /// listing and its bytes.
    async fn with_one_pack(dir: &std::path::Path) -> (Client, PackInfo, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let disk = LocalDisk::new(dir.join("store"), &base, b"presign-secret").expect("disk");
        let app = router(AppState::with_local_disk(disk, SECRET));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let token = auth::mint(
            SECRET,
            "tester",
            &[("ws".to_owned(), Permission::Admin)],
            Duration::from_secs(600),
        );
        let remote = Remote {
            server: format!("{base}/").parse().expect("url"),
            workspace: "ws".into(),
            alias: "repo".into(),
        };
        let token = Token {
            secret: token,
            source: TokenSource::Environment,
        };
        let client = Client::new(remote, Some(token)).expect("client");
        let _: serde_json::Value = client
            .call(Route::Create, &CreateRequest::default())
            .await
            .expect("create");

        // A real pack (the server indexes every pack an update names) of one incompressible
        // blob of about 5000 bytes, for range reads.
        let blobs = crate::pack::testing::blob_pack(3, 1, 5000);
        let (name, pack, idx) = (blobs.name, blobs.pack, blobs.idx);
        let (pack_path, idx_path) = (dir.join("p.pack"), dir.join("p.idx"));
        std::fs::write(&pack_path, &pack).expect("write");
        std::fs::write(&idx_path, &idx).expect("write");
        let bar = Progress::hidden().bytes("test", 0);
        let files = super::super::PackFiles {
            name: &name,
            pack_path: &pack_path,
            idx_path: &idx_path,
            pack_size: pack.len() as u64,
            idx_size: idx.len() as u64,
            thin: false,
            resume: false,
        };
        super::super::upload_pack(&client, files, &bar)
            .await
            .expect("upload");
        let update = UpdateRequest {
            packs: vec![name.clone()],
            updates: vec![RefUpdate {
                name: "refs/heads/main".into(),
                old: None,
                new: Some(blobs.ids[0].clone()),
            }],
            ..Default::default()
        };
        let _: UpdateResponse = client.call(Route::Update, &update).await.expect("update");
        let listing: PacksResponse = client
            .call(Route::Packs, &PacksRequest::default())
            .await
            .expect("packs");
        let info = listing.packs.into_iter().next().expect("one pack");
        (client, info, pack)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_reads_get_exactly_the_bytes_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, pack) = with_one_pack(dir.path()).await;
        let mut url = info.pack_url.clone().expect("url");
        for (start, len) in [(0, 12), (100, 1000), (pack.len() as u64 - 20, 20)] {
            let got = get_range(
                &client,
                &info.name,
                Object::Pack,
                &mut url,
                (start, len),
                "p",
            )
            .await
            .expect("range read");
            let (a, b) = (start as usize, (start + len) as usize);
            assert_eq!(got.as_ref(), &pack[a..b], "{start}+{len}");
        }
        let nothing = get_range(&client, &info.name, Object::Pack, &mut url, (5, 0), "p").await;
        assert!(nothing.expect("empty range").is_empty());
    }

    /// A resumed download: the rest of the pack from a byte on, or the whole of it from 0; a
    /// store that answers with the whole object (200) is refused, so the caller starts over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_from_streams_the_rest_of_a_pack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, pack) = with_one_pack(dir.path()).await;
        let mut url = info.pack_url.clone().expect("url");
        let total = pack.len() as u64;
        for start in [0, 1, 100, total - 1] {
            let stream = get_from(&client, &info.name, &mut url, (start, total), "p")
                .await
                .expect("get");
            let got = collect(stream, "p", total).await.expect("body");
            assert_eq!(got, &pack[start as usize..], "from {start}");
        }
        let whole =
            axum::Router::new().route("/object", axum::routing::get(|| async { vec![7u8; 64] }));
        let mut url = format!("{}/object", listen(whole).await);
        let err = get_from(&client, &info.name, &mut url, (8, 64), "p")
            .await
            .err()
            .expect("200");
        assert!(matches!(err, Error::Range { .. }), "{err:?}");
        assert!(
            err.to_string().contains("status 200 instead of 206"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_past_the_end_is_an_error_naming_pack_and_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, pack) = with_one_pack(dir.path()).await;
        let mut url = info.pack_url.clone().expect("url");
        let start = pack.len() as u64 - 10;
        let what = format!("pack {} of 'ws/repo'", info.name);
        // The store answers 206 with the 10 bytes it has: too short.
        let err = get_range(
            &client,
            &info.name,
            Object::Pack,
            &mut url,
            (start, 100),
            &what,
        )
        .await
        .expect_err("short answer");
        assert!(matches!(err, Error::Range { .. }), "{err:?}");
        assert!(!err.is_transient());
        let msg = err.to_string();
        assert!(msg.contains(&info.name), "{msg}");
        assert!(
            msg.contains(&format!("bytes {start}-{}", start + 99)),
            "{msg}"
        );
        assert!(msg.contains("10 bytes instead of 100"), "{msg}");
        assert!(!msg.contains("_store"), "a URL leaked: {msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_url_is_renewed_once_from_the_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, pack) = with_one_pack(dir.path()).await;
        let fresh = info.idx_url.clone().expect("url");
        // A tampered signature: the store says 403, as for an expired URL.
        let mut url = format!("{fresh}0");
        let got = get_range(&client, &info.name, Object::Pack, &mut url, (0, 4), "p")
            .await
            .expect("renewed");
        assert_eq!(got.as_ref(), &pack[..4]);
        assert_ne!(url, format!("{fresh}0"), "the fresh URL is kept");
        // A pack no longer listed keeps its refusal.
        let mut url = format!("{fresh}0");
        let err = get_range(&client, "pack-gone", Object::Pack, &mut url, (0, 4), "p")
            .await
            .expect_err("not listed");
        assert!(err.is_refused_url(), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_ignoring_range_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, _) = with_one_pack(dir.path()).await;
        // A store that answers every GET with the whole object (200).
        let whole =
            axum::Router::new().route("/object", axum::routing::get(|| async { vec![7u8; 64] }));
        let mut url = format!("{}/object", listen(whole).await);
        let what = format!("pack {}", info.name);
        let err = get_range(&client, &info.name, Object::Pack, &mut url, (0, 8), &what)
            .await
            .expect_err("200");
        let msg = err.to_string();
        assert!(msg.contains("status 200 instead of 206"), "{msg}");
        assert!(
            msg.contains(&info.name) && msg.contains("bytes 0-7"),
            "{msg}"
        );
    }

    /// Issue 21: a store that answers a range read (or an idx) with more than was asked is
    /// refused as the bytes come, not after they filled memory.
    #[tokio::test]
    async fn a_store_sending_more_than_asked_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, info, _) = with_one_pack(dir.path()).await;
        let flood = axum::Router::new().route(
            "/object",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::PARTIAL_CONTENT,
                    [(axum::http::header::CONTENT_RANGE, "bytes 0-7/64")],
                    vec![7u8; 1 << 20],
                )
            }),
        );
        let mut url = format!("{}/object", listen(flood).await);
        let what = format!("pack {}", info.name);
        let err = get_range(&client, &info.name, Object::Pack, &mut url, (0, 8), &what)
            .await
            .expect_err("more than asked");
        assert!(matches!(err, Error::TooLarge { limit: 8, .. }), "{err}");
        let err = get_whole(&client, &info.name, Object::Idx, &url, &what, 1000)
            .await
            .expect_err("more than listed");
        assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
    }
}
