//! Hypha mode: the suite against a running Hypha 0.21.137 with the git-remote-hypha plugin
//! (issue 6) instead of a `git hypha serve` per test.
//!
//! `HYPHA_E2E_HYPHA_ENV=<env file of scripts/hypha-services.sh>` switches it on. Then every
//! [`super::TestEnv`] talks to that one Hypha server:
//!
//! - each test workspace name `W` becomes a Hypha user workspace of its own,
//!   `ws-user-e2e<unique>-W`, unique per test, so tests run in parallel and still find
//!   `W/alias` in the messages they check;
//! - tokens are Hypha's own JWTs (the claims `hypha.core.auth.generate_auth_token` writes),
//!   signed with the server's `JWT_SECRET`: permission `a` is the workspace owner, `rw` and `r`
//!   are other users granted exactly that workspace permission, so Hypha's own checks decide;
//! - repositories are created through the plugin's `create` route (`git hypha create`), and
//!   `stored_repo` is the repository's `.git/` as s3s-fs (Hypha's S3 in this mode) keeps it on
//!   disk, found through Hypha's artifact manager (Hypha keys repositories by artifact UUID).
//!
//! What only our own server has (its process, its store root, its JWT secret, `serve`
//! arguments such as the fault proxy or `--gc-grace-secs`) is not there: asking for it panics
//! through [`excluded`], and tests/hypha/run.sh leaves those tests out, each group with its
//! reason. The server log is Hypha's log, shared by all tests of the run.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Hypha's defaults for `AUTH0_ISSUER` / `AUTH0_AUDIENCE` / `AUTH0_NAMESPACE`; its
/// `valid_token` checks issuer and audience.
const ISSUER: &str = "https://amun.ai/";
const AUDIENCE: &str = "https://amun-ai.eu.auth0.com/api/v2/";
const CLAIMS_NS: &str = "https://amun.ai/";
const TOKEN_LIFETIME_SECS: u64 = 5 * 3600;

/// The running Hypha server, from the env file `scripts/hypha-services.sh start` wrote.
pub struct Hypha {
    url: String,
    secret: String,
    /// s3s-fs's directory of Hypha's bucket (one file per key), when Hypha runs on s3s-fs.
    store: Option<PathBuf>,
    log: PathBuf,
}

/// The Hypha server of this run, or `None` when the suite runs against `git hypha serve`.
pub fn target() -> Option<&'static Hypha> {
    static TARGET: OnceLock<Option<Hypha>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let file = std::env::var_os("HYPHA_E2E_HYPHA_ENV").filter(|v| !v.is_empty())?;
            Some(Hypha::load(Path::new(&file)))
        })
        .as_ref()
}

/// Fails the test: it needs something only `git hypha serve` offers.
#[track_caller]
pub fn excluded(what: &str) -> ! {
    panic!(
        "Hypha mode (HYPHA_E2E_HYPHA_ENV): this test needs {what}, which a Hypha server with \
         the plugin does not offer; it belongs in the exclusion filter of tests/hypha/run.sh"
    )
}

impl Hypha {
    fn load(file: &Path) -> Hypha {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
            panic!(
                "HYPHA_E2E_HYPHA_ENV={}: cannot read it ({e}); start Hypha with \
                 scripts/hypha-services.sh start",
                file.display()
            )
        });
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let need = |key: &str| -> String {
            match vars.get(key) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => panic!("{}: no {key}= line", file.display()),
            }
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        Hypha {
            url: need("HYPHA_TEST_SERVER").trim_end_matches('/').to_string(),
            secret: need("HYPHA_TEST_JWT_SECRET"),
            store: vars
                .get("HYPHA_TEST_STORE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            log: dir.join("hypha.log"),
        }
    }

    /// `http://127.0.0.1:PORT` of Hypha.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A Hypha token for `user` with `permission` (`r`, `rw` or `a`) on `workspace`, which is
    /// also its current workspace (what `create` needs). `expires_in` may be negative
    /// (expired). Signed with `secret`, or with the server's when `None`.
    pub fn token(
        &self,
        user: &str,
        workspace: &str,
        permission: &str,
        expires_in: i64,
        secret: Option<&str>,
    ) -> String {
        assert!(
            matches!(permission, "r" | "rw" | "a"),
            "Hypha permission levels are r, rw and a; got {permission:?}"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let current = if workspace == "*" {
            format!("ws-user-{user}")
        } else {
            workspace.to_string()
        };
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + expires_in,
            "scope": format!("ws:{workspace}#{permission} wid:{current}"),
            "gty": "client-credentials",
            format!("{CLAIMS_NS}roles"): [],
            format!("{CLAIMS_NS}email"): serde_json::Value::Null,
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{body}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.unwrap_or(&self.secret).as_bytes())
            .expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    pub fn default_lifetime() -> i64 {
        TOKEN_LIFETIME_SECS as i64
    }

    /// `POST /public/services/artifact-manager/<function>` (Hypha's HTTP RPC): status, body.
    pub fn artifact_rpc(&self, token: &str, function: &str, body: &str) -> (u16, String) {
        self.post(
            &format!("/public/services/artifact-manager/{function}"),
            token,
            body,
        )
    }

    /// One plain HTTP/1.1 POST to Hypha on loopback.
    fn post(&self, path: &str, token: &str, body: &str) -> (u16, String) {
        let head = format!(
            "POST {path} HTTP/1.1\r\ncontent-type: application/json\r\n\
             authorization: Bearer {token}"
        );
        let reply = super::http::exchange(&self.url, &head, body.as_bytes(), None);
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(&reply.body)
        } else {
            reply.body
        };
        (reply.status, body)
    }

    /// Where s3s-fs keeps Hypha's bucket; panics when Hypha runs on an S3 without files.
    pub fn store(&self) -> &Path {
        self.store.as_deref().unwrap_or_else(|| {
            excluded("the stored files (Hypha's S3 is not s3s-fs: HYPHA_TEST_STORE_DIR unset)")
        })
    }

    /// Hypha's log so far (its stdout and stderr, shared by every test of the run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| panic!("read Hypha's log {}: {e}", self.log.display()))
    }

    /// The last lines of Hypha's log (shared by every test of the run), for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!(
            "--- Hypha log {} (last {} lines, all tests) ---\n{}\n",
            self.log.display(),
            lines.len() - start,
            lines[start..].join("\n")
        )
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
