//! The body of a push event and its signature, in the shape CI systems already parse
//! (GitHub's `push` event: `ref`, `before`, `after`, `created`, `deleted`, `repository`,
//! `pusher`, `sender`; GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`).
//!
//! One event per push: the top-level `ref`/`before`/`after` are the push's first updated ref
//! (what a one-branch push, the common case, is about), and `refs` lists every ref the push
//! changed. A deleted ref's `after` (and a created one's `before`) is forty zeros, as in
//! GitHub's payload. Owns no I/O and no secret storage.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// Git's (and GitHub's) "no object" id.
pub const ZERO_ID: &str = "0000000000000000000000000000000000000000";

/// One ref a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    pub name: String,
    /// `None`: created by this push.
    pub before: Option<String>,
    /// `None`: deleted by this push.
    pub after: Option<String>,
}

/// What happened: who pushed which refs of which repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub workspace: String,
    pub alias: String,
    /// The subject of the pusher's token (Hypha's user id through the plugin).
    pub pusher: String,
    pub refs: Vec<RefChange>,
    /// `git push -o` strings, in order.
    pub push_options: Vec<String>,
}

impl Push {
    pub fn ref_names(&self) -> Vec<String> {
        self.refs.iter().map(|r| r.name.clone()).collect()
    }

    /// The JSON body of the event; `None` when the push changed no ref.
    pub fn body(&self) -> Option<Vec<u8>> {
        let first = self.refs.first()?;
        let change = |r: &RefChange| {
            json!({
                "ref": r.name,
                "before": r.before.as_deref().unwrap_or(ZERO_ID),
                "after": r.after.as_deref().unwrap_or(ZERO_ID),
                "created": r.before.is_none(),
                "deleted": r.after.is_none(),
            })
        };
        let mut body = change(first);
        let fields = [
            (
                "repository",
                json!({
                    "name": self.alias,
                    "full_name": format!("{}/{}", self.workspace, self.alias),
                    "owner": {"name": self.workspace, "login": self.workspace},
                }),
            ),
            ("pusher", json!({"name": self.pusher})),
            ("sender", json!({"login": self.pusher})),
            ("refs", Value::from_iter(self.refs.iter().map(change))),
            ("push_options", json!(self.push_options)),
        ];
        if let Value::Object(map) = &mut body {
            for (key, value) in fields {
                map.insert(key.to_owned(), value);
            }
        }
        serde_json::to_vec(&body).ok()
    }
}

/// `sha256=<hex>`: the value of `X-Hub-Signature-256` for `body` signed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh delivery id in GitHub's GUID form (random, version 4 layout).
pub fn delivery_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_shape() {
        let push = Push {
            workspace: "ws".into(),
            alias: "repo".into(),
            pusher: "alice".into(),
            refs: vec![
                RefChange {
                    name: "refs/heads/main".into(),
                    before: None,
                    after: Some("a".repeat(40)),
                },
                RefChange {
                    name: "refs/tags/old".into(),
                    before: Some("b".repeat(40)),
                    after: None,
                },
            ],
            push_options: vec!["ci.skip".into()],
        };
        let body: Value = serde_json::from_slice(&push.body().expect("body")).expect("json");
        assert_eq!(body["ref"], "refs/heads/main");
        assert_eq!(body["before"], ZERO_ID);
        assert_eq!(body["after"], "a".repeat(40));
        assert_eq!(body["created"], true);
        assert_eq!(body["repository"]["full_name"], "ws/repo");
        assert_eq!(body["pusher"]["name"], "alice");
        assert_eq!(body["refs"][1]["deleted"], true);
        assert_eq!(body["refs"][1]["after"], ZERO_ID);
        assert_eq!(body["push_options"][0], "ci.skip");
        let empty = Push {
            refs: vec![],
            ..push
        };
        assert!(empty.body().is_none());
    }

    #[test]
    fn signature_matches_githubs_example() {
        // GitHub's documented example ("Validating webhook deliveries").
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let id = delivery_id();
        assert_eq!(id.len(), 36);
        assert_ne!(id, delivery_id());
    }
}
