//! One line per request on stderr: method, path, status, time, and a note the handler adds
//! (push options, the cause of an internal error).
//!
//! Logs the path only, never the query string (presigned signatures live there) and never a
//! header (tokens live there).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Extra text for the log line, attached to a response by a handler.
#[derive(Debug, Clone)]
pub struct LogNote(pub String);

/// Longest path or note logged; hostile names can be kilobytes long.
const MAX_LOGGED: usize = 300;

pub async fn request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = cut(req.uri().path());
    let started = Instant::now();
    let response = next.run(req).await;
    let note = response
        .extensions()
        .get::<LogNote>()
        .map(|n| format!(" {}", cut(&n.0)))
        .unwrap_or_default();
    tracing::info!(
        target: "access",
        "{method} {path} {} {}ms{note}",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
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
