//! Issue 24: request rate limits. With `git hypha serve --rate-limit-token 60` (a burst of ten,
//! then one a second), a token that spent its burst gets 429 with `Retry-After: 1` and a
//! detail naming the limit; a real `git push` and `git fetch` with that token meet the 429,
//! wait it out and succeed, in a few seconds. The address limit counts anonymous callers by
//! the connection's peer, or by `X-Forwarded-For` when the operator trusts it.

use crate::harness::{http, TestEnv, WS};
use std::time::{Duration, Instant};

/// `POST /ws/git/{alias}/remote/v1/refs` with `token`: status, `Retry-After`, body.
fn refs(base: &str, alias: &str, token: &str) -> (u16, Option<String>, String) {
    let auth = format!("authorization: Bearer {token}\r\n");
    post_refs(base, alias, &auth)
}

/// `POST /ws/git/{alias}/remote/v1/refs` with these extra header lines (each ending in CRLF).
fn post_refs(base: &str, alias: &str, headers: &str) -> (u16, Option<String>, String) {
    let head = format!(
        "POST /{WS}/git/{alias}/remote/v1/refs HTTP/1.1\r\n{headers}content-type: application/json"
    );
    let reply = http::exchange(base, &head, b"{}", None);
    let retry_after = reply.header("retry-after").map(str::to_owned);
    (reply.status, retry_after, reply.body)
}

/// Spends what is left of `token`'s burst: `refs` until the server answers 429, which is
/// returned (its `Retry-After` and body).
fn exhaust(base: &str, alias: &str, token: &str) -> (String, String) {
    let (retry_after, body) =
        until_refused(base, alias, &format!("authorization: Bearer {token}\r\n"));
    (retry_after.expect("429 without Retry-After"), body)
}

/// `refs` with these header lines until the server answers 429: its `Retry-After` and body.
fn until_refused(base: &str, alias: &str, headers: &str) -> (Option<String>, String) {
    for _ in 0..50 {
        let (status, retry_after, body) = post_refs(base, alias, headers);
        match status {
            200 => continue,
            429 => return (retry_after, body),
            other => panic!("refs answered {other}: {body}"),
        }
    }
    panic!("50 requests and no 429: is the limit on?");
}

/// Lines of `log` that answered 429.
fn count_refused(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("/remote/v1/") && l.contains(" 429 "))
        .count()
}

/// Lines of the server's log that answered 429 so far.
fn refused(env: &TestEnv) -> usize {
    count_refused(&env.server_log())
}

/// Whether the server logs more 429 lines than `before` (the line of a request comes when its
/// answer is done, possibly after the command that sent it ends).
fn refused_more_than(env: &TestEnv, before: usize) -> bool {
    count_refused(&env.server_log_when(|log| count_refused(log) > before)) > before
}

#[test]
fn a_push_and_a_fetch_wait_out_the_token_limit() {
    let env = TestEnv::with_serve_args(&["--rate-limit-token".into(), "60".into()]);
    let base = env.server.url().to_owned();
    let url = env.create("limited");
    let src = env.init("src");
    let head = env.commit(&src, "first");

    let (retry_after, body) = exhaust(&base, "limited", env.token());
    assert_eq!(retry_after, "1");
    assert!(
        body.contains(
            r#""detail":"rate limit of 60 requests a minute for this token reached; retry in 1 s""#
        ),
        "{body}"
    );
    assert!(body.contains(r#""error":"busy""#), "{body}");

    // The push's first request meets the empty bucket, waits the second it was told, and goes
    // on. (The bucket refills one request a second: on a loaded machine git may start later
    // than that, and then meets no 429; the bucket is emptied again and the push repeated.)
    let met_429 = |before: usize, stderr: &str| {
        stderr.contains(": 429 (request id ") && refused_more_than(&env, before)
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = refused(&env);
        let started = Instant::now();
        let out = env.git(&src, &["push", "-v", &url, "main"]);
        let took = started.elapsed();
        if met_429(before, &out.stderr) {
            assert!(took >= Duration::from_millis(900), "{took:?}");
            assert!(took < Duration::from_secs(20), "{took:?}");
            break;
        }
        assert!(attempts < 3, "the helper saw no 429:\n{}", out.stderr);
        exhaust(&base, "limited", env.token());
    }

    // The same for a fetch.
    let dst = env.init("dst");
    for attempt in 1.. {
        exhaust(&base, "limited", env.token());
        let before = refused(&env);
        let out = env.git(&dst, &["fetch", "-v", &url, "main:refs/heads/fetched"]);
        assert_eq!(env.rev(&dst, "refs/heads/fetched"), head);
        if met_429(before, &out.stderr) {
            break;
        }
        assert!(attempt < 3, "the fetch met no 429:\n{}", out.stderr);
        env.git(&dst, &["update-ref", "-d", "refs/heads/fetched"]);
    }

    // Another subject was never limited.
    let other = env.mint_as("someone-else", WS, "r");
    let (status, _, body) = refs(&base, "limited", &other);
    assert_eq!(status, 200, "{body}");
}

/// The address limit, on the real listener: anonymous callers are counted by their peer
/// address, token holders by their token; `X-Forwarded-For` is believed only with
/// `--trust-forwarded-for`.
#[test]
fn anonymous_callers_are_limited_by_address() {
    let env = TestEnv::with_serve_args(&[
        "--rate-limit-token".into(),
        "600".into(),
        "--rate-limit-address".into(),
        "60".into(),
    ]);
    let base = env.server.url().to_owned();
    env.create_public("open");
    let (retry_after, body) = until_refused(&base, "open", "");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        body.contains("rate limit of 60 requests a minute for this address reached"),
        "{body}"
    );
    // Without --trust-forwarded-for the header changes nothing.
    let (status, _, body) = post_refs(&base, "open", "x-forwarded-for: 192.0.2.7\r\n");
    assert_eq!(status, 429, "{body}");
    // A token holder at the same address is counted by its token.
    let (status, _, body) = refs(&base, "open", env.token());
    assert_eq!(status, 200, "{body}");

    let proxied = TestEnv::with_serve_args(&[
        "--rate-limit-address".into(),
        "60".into(),
        "--trust-forwarded-for".into(),
    ]);
    let base = proxied.server.url().to_owned();
    proxied.create_public("open");
    until_refused(&base, "open", "x-forwarded-for: 10.1.1.1, 192.0.2.7\r\n");
    // Another client behind the same proxy has its own bucket.
    let (status, _, body) = post_refs(&base, "open", "x-forwarded-for: 192.0.2.8\r\n");
    assert_eq!(status, 200, "{body}");
}
