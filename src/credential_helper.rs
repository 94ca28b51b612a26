//! `git hypha credential get`: a git credential helper (gitcredentials(7)) that hands git-lfs
//! the token the remote helper would use, so LFS transfers to a `hypha::` remote need no
//! token typed or stored anywhere (`helper::lfs` records it for the server's host).
//!
//! Answers `get` from `HYPHA_TOKEN`, then the token `git hypha login` stored for the server,
//! else with an empty password (anonymous: public repositories still download, no prompt);
//! `store` and `erase` do nothing (those tokens have their own homes, and writing one into
//! another helper's store is git's business, not ours). Never calls `git credential` itself,
//! and answers nothing when the remote helper is the one asking (it reads both sources
//! itself, in its own order, see `config::credential`). Pure apart from the login file,
//! which the caller looks up.

use crate::config::{self, Token};
use std::collections::HashMap;
use url::Url;

pub use config::FROM_REMOTE_HELPER_ENV;

/// The lines to print for `action` with git's request `input`, or `None` to print nothing.
/// `stored` looks up the login token of a server.
pub fn answer(
    action: &str,
    input: &str,
    server: &Url,
    env: &HashMap<String, String>,
    stored: impl FnOnce(&Url) -> Option<String>,
) -> Option<String> {
    if action != "get" || env.contains_key(FROM_REMOTE_HELPER_ENV) {
        return None;
    }
    let field = |name: &str| {
        input
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    };
    // Only the server we were recorded for: the helper line is scoped to its host already,
    // and this keeps a copied config from sending the token anywhere else.
    let mut host = server.host_str().unwrap_or_default().to_owned();
    if let Some(port) = server.port() {
        host = format!("{host}:{port}");
    }
    if field("protocol") != Some(server.scheme()) || field("host") != Some(host.as_str()) {
        return None;
    }
    if field("username").is_some_and(|u| !u.is_empty() && u != "git") {
        return None;
    }
    // No token: an empty password, which both servers read as anonymous (public
    // repositories download), instead of letting git prompt on the terminal.
    let token = config::env_token(env)
        .map(|Token { secret, .. }| secret)
        .or_else(|| stored(server))
        .unwrap_or_default();
    Some(format!("username=git\npassword={token}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn answers_get_for_its_server_only() {
        let server = Url::parse("http://127.0.0.1:9527/").expect("url");
        let req = "protocol=http\nhost=127.0.0.1:9527\n";
        let e = env(&[("HYPHA_TOKEN", "tok")]);
        assert_eq!(
            answer("get", req, &server, &e, |_| None).as_deref(),
            Some("username=git\npassword=tok\n")
        );
        // The login token comes second.
        assert_eq!(
            answer("get", req, &server, &env(&[]), |_| Some("stored".into())).as_deref(),
            Some("username=git\npassword=stored\n")
        );
        assert_eq!(
            answer("get", req, &server, &env(&[]), |_| None).as_deref(),
            Some("username=git\npassword=\n")
        );
        for other in [
            "protocol=https\nhost=127.0.0.1:9527\n",
            "protocol=http\nhost=127.0.0.1:9528\n",
            "protocol=http\nhost=evil.example\n",
            "protocol=http\nhost=127.0.0.1:9527\nusername=alice\n",
        ] {
            assert_eq!(answer("get", other, &server, &e, |_| None), None, "{other}");
        }
        assert_eq!(answer("store", req, &server, &e, |_| None), None);
        assert_eq!(answer("erase", req, &server, &e, |_| None), None);
        let nested = env(&[("HYPHA_TOKEN", "tok"), (FROM_REMOTE_HELPER_ENV, "1")]);
        assert_eq!(answer("get", req, &server, &nested, |_| None), None);
    }
}
