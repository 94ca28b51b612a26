//! `GET` and `PUT /_store/{key}`: the presigned URLs of the local-disk store, answered the
//! way S3 answers its own (format in `storage::presign`).
//!
//! Owns the HTTP side only: signature check (403 when missing, tampered, expired or for
//! another method), the address byte limit (429, `limits::charge_transfer`), `Range` (206 /
//! 416), and streaming both ways, so that no file is ever held in memory. Where bytes go is `LocalDisk`'s business. With another backend these
//! routes answer 404: its URLs point elsewhere.

use super::error::ApiError;
use super::limits;
use super::state::AppState;
use crate::auth;
use crate::storage::{self, presign, LocalDisk, PresignMethod, PutMode};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// The connection's peer, for the address byte limit (absent in router tests).
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer_ip(peer: Peer) -> Option<std::net::IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// `GET /_store/{key}`, honouring `Range: bytes=a-b | a- | -n`.
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
    query: Result<Query<presign::Query>, QueryRejection>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    match get_inner(&state, &key, query, &headers, peer_ip(peer)).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// `PUT /_store/{key}`: stream the body into place if it has exactly the signed size.
pub async fn put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    query: Result<Query<presign::Query>, QueryRejection>,
    headers: HeaderMap,
    peer: Peer,
    body: Body,
) -> Response {
    match put_inner(&state, &key, query, &headers, peer_ip(peer), body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// The local store and the verified size for a request on `key`.
fn authorize(
    state: &AppState,
    key: &str,
    method: PresignMethod,
    query: Result<Query<presign::Query>, QueryRejection>,
) -> Result<(LocalDisk, Option<u64>), ApiError> {
    let Some(disk) = state.local.clone() else {
        return Err(ApiError::not_found("this server stores no objects itself"));
    };
    // A query that does not even parse grants nothing: 403 like any bad signature.
    let Query(query) = query.map_err(|_| ApiError::forbidden("malformed presigned url"))?;
    let size = disk.verify_presigned(method, key, &query, auth::unix_now())?;
    // Signed keys were valid when signed; checking again costs nothing.
    storage::check_key(key)?;
    Ok((disk, size))
}

async fn get_inner(
    state: &AppState,
    key: &str,
    query: Result<Query<presign::Query>, QueryRejection>,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Result<Response, ApiError> {
    let (disk, _) = authorize(state, key, PresignMethod::Get, query)?;
    let (mut file, size) = disk.open(key).await?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(ByteRange::Full, |v| ByteRange::parse(v, size));
    let (status, start, len) = match range {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    // The bytes go through this server: the mover's address pays for them.
    limits::charge_transfer(state, headers, peer, len)?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| storage::Error::backend(key, e))?;
    }
    let body = Body::from_stream(ReaderStream::new(file.take(len)));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

async fn put_inner(
    state: &AppState,
    key: &str,
    query: Result<Query<presign::Query>, QueryRejection>,
    headers: &HeaderMap,
    peer: Option<std::net::IpAddr>,
    body: Body,
) -> Result<Response, ApiError> {
    // The URL says whether it may replace what is stored (`Put`) or only create (`Create`:
    // a pack or idx, never replaced once stored, issue 21, where the same bytes again are a
    // retried upload and succeed). The method is signed, so the holder cannot choose.
    let method = match query.as_ref().ok().and_then(|q| q.method.as_deref()) {
        Some(m) if m == PresignMethod::Create.as_str() => PresignMethod::Create,
        _ => PresignMethod::Put,
    };
    let (disk, size) = authorize(state, key, method, query)?;
    let size = size.ok_or_else(|| ApiError::forbidden("presigned url lacks size"))?;
    // Refuse a declared length that cannot match before reading a byte.
    if let Some(declared) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if declared != size {
            return Err(ApiError::invalid(format!(
                "{key}: Content-Length {declared} differs from the signed size {size}"
            )));
        }
    }
    limits::charge_transfer(state, headers, peer, size)?;
    let mode = match method {
        PresignMethod::Create => PutMode::IfNoneMatch,
        _ => PutMode::Overwrite,
    };
    let etag = disk
        .put_stream(key, body.into_data_stream(), size, mode)
        .await?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// A single byte range, resolved against the object size (RFC 9110 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// No usable range: send everything (also for syntax we do not serve, such as several
    /// ranges, which RFC 9110 lets a server ignore).
    Full,
    /// Inclusive bounds, within the object.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

impl ByteRange {
    fn parse(header: &str, size: u64) -> ByteRange {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return ByteRange::Full;
        };
        if spec.contains(',') {
            return ByteRange::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return ByteRange::Full;
        };
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            // `-n`: the last n bytes.
            (true, false) => match number(last) {
                Some(0) => ByteRange::Unsatisfiable,
                Some(_) if size == 0 => ByteRange::Unsatisfiable,
                Some(n) => ByteRange::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                },
                None => ByteRange::Full,
            },
            // `a-`: from a to the end.
            (false, true) => match number(first) {
                Some(a) if a >= size => ByteRange::Unsatisfiable,
                Some(a) => ByteRange::Partial {
                    start: a,
                    end: size - 1,
                },
                None => ByteRange::Full,
            },
            // `a-b`, b clamped to the end.
            (false, false) => match (number(first), number(last)) {
                (Some(a), Some(b)) if a <= b => {
                    if a >= size {
                        ByteRange::Unsatisfiable
                    } else {
                        ByteRange::Partial {
                            start: a,
                            end: b.min(size - 1),
                        }
                    }
                }
                _ => ByteRange::Full,
            },
            (true, true) => ByteRange::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, *};

    #[test]
    fn ranges() {
        let p = |h| ByteRange::parse(h, 10);
        assert_eq!(p("bytes=0-3"), Partial { start: 0, end: 3 });
        assert_eq!(p("bytes=5-"), Partial { start: 5, end: 9 });
        assert_eq!(p("bytes=-4"), Partial { start: 6, end: 9 });
        assert_eq!(p("bytes=-40"), Partial { start: 0, end: 9 });
        assert_eq!(p("bytes=8-100"), Partial { start: 8, end: 9 });
        assert_eq!(p("bytes=10-"), Unsatisfiable);
        assert_eq!(p("bytes=10-12"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(p("bytes=5-3"), Full);
        assert_eq!(p("bytes=0-1,4-5"), Full);
        assert_eq!(p("items=0-1"), Full);
        assert_eq!(p("bytes=x-1"), Full);
        assert_eq!(ByteRange::parse("bytes=-1", 0), Unsatisfiable);
        assert_eq!(ByteRange::parse("bytes=0-", 0), Unsatisfiable);
    }
}
