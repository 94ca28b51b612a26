//! Issue 5, item 6 end to end: who may do what, through git.
//!
//! A matrix of callers (anonymous, `r`, `rw`, `a`, a token for another workspace, an expired
//! token, a token with a bad signature) against a public and a private repository, for
//! `ls-remote`, `clone`, `fetch` and `push`. Each cell either works (and the result is
//! complete) or fails with one `fatal:` line that names the repository and says why
//! (`authentication failed` or `permission denied`), and then nothing changed on either side:
//! no clone directory, local refs and objects as they were, remote refs and packs as they
//! were. No token appears in any output or in the server log (the harness scans every
//! command, the expired token included).
//!
//! Presigned URLs are checked too: one URL works for its key and method only, and not once
//! its expiry is edited.

use crate::faults::{assert_failed_cleanly, figures, remote_refs, LocalState};
use crate::harness::{Out, TestEnv, WS};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Anonymous,
    Read,
    ReadWrite,
    Admin,
    OtherWorkspace,
    Expired,
    BadSignature,
}

const EVERYONE: [Who; 7] = [
    Who::Anonymous,
    Who::Read,
    Who::ReadWrite,
    Who::Admin,
    Who::OtherWorkspace,
    Who::Expired,
    Who::BadSignature,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Works,
    /// 401: no usable credentials.
    Unauthenticated,
    /// 403: valid credentials without the grant.
    Denied,
}

impl Who {
    fn reads(self, public: bool) -> Expect {
        match self {
            Who::Read | Who::ReadWrite | Who::Admin => Expect::Works,
            // A token that does not verify is refused even where no token is needed.
            Who::Expired | Who::BadSignature => Expect::Unauthenticated,
            _ if public => Expect::Works,
            Who::Anonymous => Expect::Unauthenticated,
            Who::OtherWorkspace => Expect::Denied,
        }
    }

    fn writes(self) -> Expect {
        match self {
            Who::ReadWrite | Who::Admin => Expect::Works,
            Who::Read | Who::OtherWorkspace => Expect::Denied,
            Who::Anonymous | Who::Expired | Who::BadSignature => Expect::Unauthenticated,
        }
    }
}

struct Callers {
    tokens: Vec<(Who, Option<String>)>,
}

impl Callers {
    fn new(env: &TestEnv) -> Callers {
        let expired = env.mint_expired(WS, "rw");
        let tokens = EVERYONE
            .iter()
            .map(|who| {
                let token = match who {
                    Who::Anonymous => None,
                    Who::Read => Some(env.mint(WS, "r")),
                    Who::ReadWrite => Some(env.mint(WS, "rw")),
                    Who::Admin => Some(env.mint(WS, "a")),
                    Who::OtherWorkspace => Some(env.mint("elsewhere", "a")),
                    Who::Expired => Some(expired.clone()),
                    Who::BadSignature => Some(env.mint_foreign(WS, "rw")),
                };
                (*who, token)
            })
            .collect();
        Callers { tokens }
    }

    fn token(&self, who: Who) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, t)| t.as_deref())
    }

    /// Runs a command as `who`; also scans for every token (the expired one is not known to
    /// the harness).
    fn run(&self, env: &TestEnv, who: Who, dir: &Path, args: &[&str]) -> Out {
        let cmd = env.cmd(dir, args);
        let out = match self.token(who) {
            Some(token) => cmd.token(token).run(),
            None => cmd.no_token().run(),
        };
        for (_, token) in &self.tokens {
            if let Some(token) = token {
                assert!(
                    !out.stdout.contains(token.as_str()) && !out.stderr.contains(token.as_str()),
                    "a token was printed by `{}`",
                    out.desc
                );
            }
        }
        out
    }
}

#[track_caller]
fn check(out: &Out, expect: Expect, repo: &str, cell: &str) {
    match expect {
        Expect::Works => assert!(out.success(), "{cell}: works\n{out}"),
        Expect::Unauthenticated => {
            assert_failed_cleanly(out, &[repo]);
            assert!(
                out.stderr.contains("authentication failed"),
                "{cell}: authentication failed\n{out}"
            );
        }
        Expect::Denied => {
            assert_ne!(out.code, Some(0), "{cell}: refused\n{out}");
            assert!(
                out.stderr.contains("permission denied"),
                "{cell}: permission denied\n{out}"
            );
            assert!(!out.stderr.contains("panicked"), "{out}");
        }
    }
}

/// The whole matrix, on one server: 7 callers x 2 repositories x 4 commands.
#[test]
fn permission_matrix_through_git() {
    let env = TestEnv::new();
    let callers = Callers::new(&env);
    let mut cells = 0;
    for public in [false, true] {
        let alias = if public { "open" } else { "closed" };
        let url = if public {
            env.create_public(alias)
        } else {
            env.create(alias)
        };
        let repo = format!("{WS}/{alias}");
        let src = env.init(&format!("{alias}-src"));
        let head = env.commit(&src, "c1");
        env.git(&src, &["remote", "add", "origin", &url]);
        env.git(&src, &["push", "-q", "origin", "main"]);
        // A clone to fetch into, a step behind.
        let fetcher = env.path(&format!("{alias}-fetcher"));
        env.clone(&url, &fetcher);
        let tip = env.commit(&src, "c2");
        env.git(&src, &["push", "-q", "origin", "main"]);
        let outside = env.mkdir(&format!("{alias}-outside"));

        for who in EVERYONE {
            let cell = |op: &str| format!("{who:?} {op} on {alias}");
            let reads = who.reads(public);

            let out = callers.run(&env, who, &outside, &["ls-remote", &url]);
            check(&out, reads, &repo, &cell("ls-remote"));
            if reads == Expect::Works {
                assert!(
                    out.stdout.contains(&format!("{tip}\trefs/heads/main")),
                    "{out}"
                );
            } else {
                assert!(!out.stdout.contains("refs/heads"), "lists nothing\n{out}");
            }

            let dst = format!("clone-{alias}-{who:?}");
            let out = callers.run(&env, who, &outside, &["clone", &url, &dst]);
            check(&out, reads, &repo, &cell("clone"));
            if reads == Expect::Works {
                env.fsck(&outside.join(&dst));
                assert_eq!(env.rev(&outside.join(&dst), "HEAD"), tip);
            } else {
                assert!(!outside.join(&dst).exists(), "no clone directory\n{out}");
            }

            let before = LocalState::of(&env, &fetcher);
            let out = callers.run(&env, who, &fetcher, &["fetch", "origin"]);
            check(&out, reads, &repo, &cell("fetch"));
            if reads == Expect::Works {
                assert_eq!(env.rev(&fetcher, "origin/main"), tip);
                // Back one step, so the next caller has something to fetch again.
                env.git(&fetcher, &["update-ref", "refs/remotes/origin/main", &head]);
            } else {
                assert_eq!(LocalState::of(&env, &fetcher), before, "{}", cell("fetch"));
            }

            let remote = remote_refs(&env, alias);
            let packs = env.remote_packs(alias);
            let branch = format!("refs/heads/by-{who:?}");
            let local = env.commit(&src, &format!("by {who:?} on {alias}"));
            let out = callers.run(
                &env,
                who,
                &src,
                &["push", "origin", &format!("HEAD:{branch}")],
            );
            check(&out, who.writes(), &repo, &cell("push"));
            if who.writes() == Expect::Works {
                assert_eq!(
                    remote_refs(&env, alias).get(&branch).map(|s| s.trim()),
                    Some(local.as_str())
                );
            } else {
                assert_eq!(
                    remote_refs(&env, alias),
                    remote,
                    "{}: refs unchanged",
                    cell("push")
                );
                assert_eq!(
                    env.remote_packs(alias),
                    packs,
                    "{}: nothing uploaded",
                    cell("push")
                );
            }
            cells += 4;
        }
    }
    let log = env.server_log();
    for (who, token) in &callers.tokens {
        if let Some(token) = token {
            assert!(
                !log.contains(token.as_str()),
                "the server log has the {who:?} token"
            );
        }
    }
    assert!(
        !log.to_lowercase().contains("sig="),
        "the server log has a presigned URL"
    );
    figures("permissions", &[("cells", cells)]);
}

/// A presigned URL grants one method on one key until its expiry, and nothing else.
#[test]
fn presigned_urls_work_only_for_their_key_method_and_lifetime() {
    // S3's own URLs are checked by S3 (and by the S3 test server's SigV4 checks).
    if crate::faults::skip_without_proxied_transfers("presigned_urls") {
        return;
    }
    let env = TestEnv::new();
    let url = env.create("signed");
    let src = env.init("src");
    env.commit(&src, "c1");
    env.git(&src, &["push", "-q", &url, "main"]);
    env.commit(&src, "c2");
    env.git(&src, &["push", "-q", &url, "main"]);
    let server = env.server.url().to_owned();
    let (status, body) = crate::hostile::post(
        &server,
        &format!("/{WS}/git/signed/remote/v1/packs"),
        Some(env.token()),
        "{}",
    );
    assert_eq!(status, 200, "{body}");
    let listing: serde_json::Value = serde_json::from_str(&body).expect("packs answer");
    let packs = listing["packs"].as_array().expect("packs");
    assert_eq!(packs.len(), 2);
    let target = |v: &serde_json::Value| {
        let url = v.as_str().expect("url");
        url[url.find("/_store").expect("store url")..].to_owned()
    };
    let get = |path: &str| {
        crate::hostile::exchange(&server, &format!("GET {path} HTTP/1.1"), b"", Some(None)).0
    };
    let first = target(&packs[0]["pack_url"]);
    let second = target(&packs[1]["pack_url"]);
    assert_eq!(get(&first), 200, "the URL works for its key");
    let (path, query) = first.split_once('?').expect("query");
    let (other_path, _) = second.split_once('?').expect("query");
    let mut refused = vec![
        ("another key", get(&format!("{other_path}?{query}"))),
        (
            "the idx of the same pack",
            get(&format!("{}?{query}", path.replace(".pack", ".idx"))),
        ),
        ("no query", get(path)),
        (
            "no signature",
            get(&format!(
                "{path}?{}",
                query.split("&sig=").next().unwrap_or("")
            )),
        ),
    ];
    // A later expiry with the old signature.
    let later: String = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("expires", v)) => format!("expires={}", v.parse::<u64>().unwrap_or(0) + 3600),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    refused.push(("a later expiry", get(&format!("{path}?{later}"))));
    // An expiry in the past (re-signed it is not, so it fails either way; what matters is
    // that editing the lifetime never helps).
    let past = query.replace("expires=", "expires=1");
    refused.push(("an edited expiry", get(&format!("{path}?{past}"))));
    let put_head = format!("PUT {first} HTTP/1.1");
    let put = crate::hostile::exchange(&server, &put_head, b"overwrite", None).0;
    refused.push(("PUT with a GET URL", put));
    for (what, status) in &refused {
        assert_eq!(*status, 403, "{what}: refused");
    }
    let stored = env.remote_packs("signed");
    assert_eq!(stored.len(), 2, "nothing overwritten");
    env.clone(&url, &env.path("check"));
    figures("presigned", &[("inputs", refused.len() + 1)]);
}

/// Issue 16, item 8: git sends no `push` when everything is up to date, so a read-only token
/// must be refused at `list for-push`; otherwise a CI job with the wrong token passes until its
/// first real change. Reads with that token still work; a write token's no-op push is still
/// "Everything up-to-date".
#[test]
fn read_only_token_no_op_push_is_refused() {
    let env = TestEnv::new();
    let url = env.create("noop");
    let src = env.init("src");
    let tip = env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "-u", "origin", "main"]);
    let read_only = env.mint(WS, "r");
    let remote = remote_refs(&env, "noop");
    let local = LocalState::of(&env, &src);

    let out = env
        .cmd(&src, &["push", "origin", "main"])
        .token(&read_only)
        .run();
    assert_failed_cleanly(&out, &[&format!("{WS}/noop"), "permission denied"]);
    assert_eq!(out.code, Some(128), "{out}");
    assert!(
        out.stderr
            .contains("the token from HYPHA_TOKEN can read but not push")
            && out.stderr.contains("a token that has write access"),
        "says why and what fixes it\n{out}"
    );
    assert!(!out.stderr.contains("Everything up-to-date"), "{out}");
    assert_eq!(remote_refs(&env, "noop"), remote, "remote refs unchanged");
    assert_eq!(LocalState::of(&env, &src), local, "local refs unchanged");

    // The same for every form of a push that has nothing to send.
    for args in [
        &["push", "origin"][..],
        &["push", "--dry-run", "origin", "main"],
        &["push", "--tags", "origin"],
    ] {
        let out = env.cmd(&src, args).token(&read_only).run();
        assert_failed_cleanly(&out, &[&format!("{WS}/noop"), "permission denied"]);
    }
    assert_eq!(LocalState::of(&env, &src), local, "local refs unchanged");

    // Reads with the same token are unaffected.
    let out = env.cmd(&src, &["fetch", "origin"]).token(&read_only).ok();
    assert!(!out.stderr.contains("permission denied"), "{out}");
    env.cmd(&env.path(""), &["clone", "-q", &url, "ro-clone"])
        .token(&read_only)
        .ok();
    assert_eq!(env.rev(&env.path("ro-clone"), "HEAD"), tip);

    // A token that may write: nothing to send, nothing said but git's usual line.
    let out = env.cmd(&src, &["push", "origin", "main"]).ok();
    assert!(out.stderr.contains("Everything up-to-date"), "{out}");
    assert_eq!(remote_refs(&env, "noop"), remote, "remote refs unchanged");
}

/// Anonymous, a no-op push to a public repository is refused too, as needing a token.
#[test]
fn anonymous_no_op_push_to_public_repository_needs_a_token() {
    let env = TestEnv::new();
    let url = env.create_public("open-noop");
    let src = env.init("src");
    env.commit(&src, "c1");
    env.git(&src, &["remote", "add", "origin", &url]);
    env.git(&src, &["push", "-q", "-u", "origin", "main"]);
    let local = LocalState::of(&env, &src);
    let out = env.cmd(&src, &["push", "origin", "main"]).no_token().run();
    assert_failed_cleanly(&out, &[&format!("{WS}/open-noop"), "authentication failed"]);
    assert!(out.stderr.contains("no token found"), "{out}");
    assert_eq!(LocalState::of(&env, &src), local, "local refs unchanged");
}
