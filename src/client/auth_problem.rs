//! Why the server did not accept who we are (401), in words that say what to do: no token at
//! all, an expired one (and when it expired), or one the server rejected for another reason
//! (docs/design.md §6).
//!
//! Owns the wording and the hints only. It does not decide which token is used (that is
//! `Client` with `config`) and never holds or prints a token: the expiry is read from the
//! token before a problem is made, and the server's reason is dropped if it echoes the token.

use crate::config::TokenSource;

/// The longest server reason repeated to the user; a longer one is cut.
const MAX_REASON: usize = 200;

/// The cause of an `authentication failed` error (its `#[source]`); the binaries print it as
/// `caused by: ...` and its [`AuthProblem::hints`] as `hint: ...` lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthProblem {
    #[error(
        "no token found (looked in HYPHA_TOKEN, the git credential helper and `git hypha login`)"
    )]
    NoToken { server: String },
    #[error("the token from {origin} expired at {}", crate::auth::format_utc(*expired_at))]
    Expired {
        origin: TokenSource,
        /// Unix seconds, from the token's unverified `exp` claim.
        expired_at: u64,
        server: String,
    },
    #[error("the server rejected the token from {origin}{}", reason_suffix(reason))]
    Rejected {
        origin: TokenSource,
        /// What the server said, when it said something that carries no secret.
        reason: Option<String>,
        server: String,
    },
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

impl AuthProblem {
    /// Name the problem of a request the server answered 401. `token` is what was sent (the
    /// secret is only read here, for its expiry and to keep it out of the reason); `detail` the
    /// server's error detail; `server` the root `git hypha login` takes; `now` Unix seconds.
    pub fn new(
        token: Option<(&str, TokenSource)>,
        detail: Option<&str>,
        server: &str,
        now: u64,
    ) -> AuthProblem {
        let server = server.trim_end_matches('/').to_owned();
        let Some((secret, origin)) = token else {
            return AuthProblem::NoToken { server };
        };
        if let Some(expired_at) = crate::auth::unverified_expiry(secret).filter(|exp| *exp <= now) {
            return AuthProblem::Expired {
                origin,
                expired_at,
                server,
            };
        }
        AuthProblem::Rejected {
            origin,
            reason: detail.and_then(|d| clean_reason(d, secret)),
            server,
        }
    }

    /// What fixes it, one line each (without the `hint: ` prefix).
    pub fn hints(&self) -> Vec<String> {
        let (origin, server) = match self {
            AuthProblem::NoToken { server } => {
                return vec![format!(
                    "run `git hypha login {server}`, or set HYPHA_TOKEN"
                )]
            }
            AuthProblem::Expired { origin, server, .. }
            | AuthProblem::Rejected { origin, server, .. } => (origin, server),
        };
        vec![match origin {
            // HYPHA_TOKEN comes first: a new login would not be used while it is set.
            TokenSource::Environment => format!(
                "set HYPHA_TOKEN to a valid token, or unset it and run `git hypha login {server}`"
            ),
            TokenSource::CredentialHelper => format!(
                "the credential helper was told to forget it; run `git hypha login {server}`, \
                 or set HYPHA_TOKEN"
            ),
            TokenSource::Login => {
                format!("run `git hypha login {server}` for a new token, or set HYPHA_TOKEN")
            }
        }]
    }
}

/// The server's reason as one short line, or nothing when it is empty or repeats the token.
fn clean_reason(detail: &str, secret: &str) -> Option<String> {
    let secret = secret.trim();
    if !secret.is_empty() && detail.contains(secret) {
        return None;
    }
    // Our server words it `invalid token: <why>`; "rejected" already says the first half.
    let detail = detail.strip_prefix("invalid token: ").unwrap_or(detail);
    let line: String = detail
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_REASON)
        .collect();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{mint_at, Validation};

    const SERVER: &str = "http://127.0.0.1:9000/";

    fn jwt(exp: u64) -> String {
        mint_at(b"k", "u", &[], 0, exp, &Validation::default())
    }

    #[test]
    fn no_token_names_the_three_places_and_the_fix() {
        let p = AuthProblem::new(None, Some("ws/r: authentication required"), SERVER, 10);
        assert_eq!(
            p,
            AuthProblem::NoToken {
                server: "http://127.0.0.1:9000".into()
            }
        );
        let text = p.to_string();
        for place in ["HYPHA_TOKEN", "git credential helper", "git hypha login"] {
            assert!(text.contains(place), "{text}");
        }
        assert_eq!(
            p.hints(),
            ["run `git hypha login http://127.0.0.1:9000`, or set HYPHA_TOKEN"]
        );
    }

    #[test]
    fn expired_says_when_and_from_where() {
        let token = jwt(1_796_464_800);
        let p = AuthProblem::new(
            Some((&token, TokenSource::Environment)),
            Some("invalid token: token has expired"),
            SERVER,
            1_796_464_800,
        );
        assert_eq!(
            p.to_string(),
            "the token from HYPHA_TOKEN expired at 2026-12-05 10:00:00 UTC"
        );
        assert!(p.hints()[0].starts_with("set HYPHA_TOKEN to a valid token, or unset it"));
        let p = AuthProblem::new(Some((&token, TokenSource::Login)), None, SERVER, u64::MAX);
        assert_eq!(
            p.to_string(),
            "the token from `git hypha login` expired at 2026-12-05 10:00:00 UTC"
        );
        assert_eq!(
            p.hints(),
            ["run `git hypha login http://127.0.0.1:9000` for a new token, or set HYPHA_TOKEN"]
        );
    }

    #[test]
    fn rejected_repeats_the_server_reason_but_never_the_token() {
        let token = jwt(2000);
        let p = AuthProblem::new(
            Some((&token, TokenSource::CredentialHelper)),
            Some("invalid token: token signature does not verify"),
            SERVER,
            1000,
        );
        assert_eq!(
            p.to_string(),
            "the server rejected the token from the git credential helper: token signature does \
             not verify"
        );
        assert!(p.hints()[0].contains("credential helper was told to forget it"));
        // Not a JWT: no expiry to read, so "rejected".
        let p = AuthProblem::new(
            Some(("opaque", TokenSource::Environment)),
            Some("bad token opaque\nsecond line"),
            SERVER,
            1000,
        );
        assert_eq!(
            p.to_string(),
            "the server rejected the token from HYPHA_TOKEN"
        );
        let p = AuthProblem::new(
            Some(("opaque", TokenSource::Environment)),
            Some(&format!("  wrong\n audience {}", "x".repeat(500))),
            SERVER,
            1000,
        );
        let text = p.to_string();
        assert!(
            text.starts_with("the server rejected the token from HYPHA_TOKEN: wrong audience x")
        );
        assert!(text.len() < 300, "{text}");
        let p = AuthProblem::new(
            Some(("opaque", TokenSource::Environment)),
            Some(" "),
            SERVER,
            1000,
        );
        assert_eq!(
            p.to_string(),
            "the server rejected the token from HYPHA_TOKEN"
        );
    }
}
