//! One line per request, and the request's id and metrics.
//!
//! The line: method, path, status, time, the request id, and a note the handler adds (push
//! options, the cause of an internal error): `POST /ws/git/repo/remote/v1/update 200 12ms
//! id=3f9c0a1b2d4e5f60 ...`. The event also carries each part as a field (`request_id`,
//! `workspace`, `repository`, `route`, `status`, `duration_ms`, `bytes_in`, `bytes_out`),
//! which `serve --log-format json` writes as one JSON object per line; the text format shows
//! the message alone.
//!
//! The request id is the client's `X-Request-Id` when it is sane (at most
//! [`MAX_REQUEST_ID`] characters of `[A-Za-z0-9._-]`), otherwise one made here; it is sent
//! back as `X-Request-Id`, and the helper shows it under `-v`, so a user's failing push can
//! be found in this log.
//!
//! Logs the path only, never the query string (presigned signatures live there) and never a
//! header's value other than the request id (tokens live in headers).

use super::metrics::{self, route_label};
use super::state::AppState;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Extra text for the log line, attached to a response by a handler.
#[derive(Debug, Clone)]
pub struct LogNote(pub String);

/// Why a request was refused, attached to the response by [`super::ApiError`]: the label of
/// `hypha_refused_requests_total`.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

/// The header that carries a request's id both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 64;

/// Longest path or note logged; hostile names can be kilobytes long.
const MAX_LOGGED: usize = 300;

pub async fn request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = cut(req.uri().path());
    let route = route_label(&method, req.uri().path());
    let (workspace, repository) = repository_of(req.uri().path());
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    let bytes_in = content_length(req.headers());
    let started = Instant::now();
    let mut response = next.run(req).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let bytes_out = content_length(response.headers())
        .or_else(|| response.body().size_hint().exact())
        .unwrap_or(0);
    let bytes_in = bytes_in.unwrap_or(0);

    let m = &state.metrics;
    m.request(route, status, took);
    match response.extensions().get::<Refused>() {
        Some(Refused(reason)) => m.refused(reason),
        None => {
            if let Some(reason) = metrics::status_reason(status) {
                m.refused(reason);
            }
        }
    }
    if response.status().is_success() {
        match route {
            "store_get" => m.store_url_bytes("out", bytes_out),
            "store_put" => m.store_url_bytes("in", bytes_in),
            _ => {}
        }
    }

    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let note = response
        .extensions()
        .get::<LogNote>()
        .map(|n| cut(&n.0))
        .unwrap_or_default();
    let duration_ms = took.as_millis() as u64;
    let sep = if note.is_empty() { "" } else { " " };
    tracing::info!(
        target: "access",
        request_id = %id,
        method = %method,
        path = %path,
        workspace = %workspace,
        repository = %repository,
        route,
        status,
        duration_ms,
        bytes_in,
        bytes_out,
        note = %note,
        "{method} {path} {status} {duration_ms}ms id={id}{sep}{note}",
    );
    response
}

/// 16 hex digits (64 random bits): unique enough to find one request in a log.
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What a client may choose as its request id: short, and nothing a log line or a header
/// could be broken with.
pub fn is_sane_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The workspace and repository a path names (`/{ws}/git/{alias}/...`, or a store key
/// `/_store/{ws}/artifacts/{alias}/...`), cut for the log; empty when it names none.
fn repository_of(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or_default();
    let (ws, kind, alias) = if first == "_store" {
        (parts.next(), parts.next(), parts.next())
    } else {
        (Some(first), parts.next(), parts.next())
    };
    match (ws, kind, alias) {
        (Some(ws), Some("git" | "artifacts"), Some(alias)) if !ws.is_empty() => {
            let alias = alias.strip_suffix(".git").unwrap_or(alias);
            (cut(ws), cut(alias))
        }
        _ => (String::new(), String::new()),
    }
}

/// At most [`MAX_LOGGED`] characters, control characters replaced, so that one request is
/// one line whatever a client sends.
fn cut(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_LOGGED)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX_LOGGED).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients() {
        for ok in [
            "a",
            "3f9c0a1b2d4e5f60",
            "push-2026.12.07_1",
            &"x".repeat(64),
        ] {
            assert!(is_sane_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a\nb", "a/b", "ü", "id;drop", &"x".repeat(65)] {
            assert!(!is_sane_id(bad), "{bad:?}");
        }
        let id = new_id();
        assert!(is_sane_id(&id) && id.len() == 16, "{id}");
    }

    #[test]
    fn repository_of_paths() {
        let of = |p: &str| repository_of(p);
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(of("/ws/git/repo/remote/v1/refs"), pair("ws", "repo"));
        assert_eq!(
            of("/ws/git/repo.git/info/lfs/objects/batch"),
            pair("ws", "repo")
        );
        assert_eq!(
            of("/_store/ws/artifacts/repo/.git/objects/pack/p.pack"),
            pair("ws", "repo")
        );
        assert_eq!(of("/healthz"), pair("", ""));
        assert_eq!(of("/"), pair("", ""));
    }
}
