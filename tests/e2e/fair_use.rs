//! Issue 24 part 4: byte rate limits and per-workspace quotas, met by real git through the
//! helper. A push past the token's byte budget waits (429, `Retry-After`) and succeeds; a push
//! that would take the workspace past its stored-bytes quota fails at once with the server's
//! message and leaves the remote's refs as they were; a push while the workspace's pending
//! uploads are at their quota is refused the same way; `/metrics` counts each refusal by
//! reason. In-process tests of what is charged: src/server/tests/fair_use.rs.

use crate::harness::noise;
use crate::harness::{http, TestEnv, WS};
use std::time::{Duration, Instant};

/// The address of `/metrics` of a server started with `--metrics-listen 127.0.0.1:0`.
fn metrics_base(env: &TestEnv) -> String {
    let log = env.server_log();
    log.lines()
        .find_map(|l| l.strip_prefix("[stdout] metrics on "))
        .unwrap_or_else(|| panic!("no `metrics on` line\n{log}"))
        .trim()
        .trim_end_matches("/metrics")
        .to_owned()
}

/// A request to `base` (`http://127.0.0.1:PORT`): status and body.
fn http(base: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let head = format!("{method} {path} HTTP/1.1\r\n{headers}content-type: application/json");
    let reply = http::exchange(base, &head, body.as_bytes(), None);
    (reply.status, reply.body)
}

/// The value of `hypha_refused_requests_total{reason="REASON"}` (0 when absent).
fn refusals(metrics: &str, reason: &str) -> u64 {
    let (status, body) = http(metrics, "GET", "/metrics", "", "");
    assert_eq!(status, 200, "{body}");
    let sample = format!("hypha_refused_requests_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&sample))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// Writes `name` with `len` bytes that do not compress, and commits it.
fn commit_noise(
    env: &TestEnv,
    repo: &std::path::Path,
    name: &str,
    len: usize,
    seed: u64,
) -> String {
    std::fs::write(repo.join(name), noise(len, seed)).expect("write");
    env.git(repo, &["add", name]);
    env.git(repo, &["commit", "-q", "-m", name]);
    env.rev(repo, "HEAD")
}

/// `--byte-limit-token 60000`: 1,000 bytes a second, a bucket of 10,000. A first push of
/// 20 KB goes at once and leaves the token about 10 s in debt; the next push meets a 429 with
/// `Retry-After`, waits it out and succeeds, and so does a clone after it. Inline (the
/// default) and through presigned uploads (`--inline-max 0`) alike.
#[test]
fn a_push_over_the_byte_limit_waits_and_succeeds() {
    for inline_max in ["1048576", "0"] {
        let env = TestEnv::with_serve_args(&[
            "--byte-limit-token".into(),
            "60000".into(),
            "--inline-max".into(),
            inline_max.into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ]);
        let metrics = metrics_base(&env);
        let url = env.create("bytes");
        let src = env.init("src");
        commit_noise(&env, &src, "big.bin", 20_000, 1);
        let started = Instant::now();
        env.git(&src, &["push", "-q", &url, "main"]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the first push waited"
        );
        let head = commit_noise(&env, &src, "small.bin", 2_000, 2);
        let started = Instant::now();
        let out = env.git(&src, &["push", "-v", &url, "main"]);
        let took = started.elapsed();
        eprintln!(
            "inline-max {inline_max}: the second push took {took:?}\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(": 429 (request id "),
            "the helper saw no 429 (inline-max {inline_max}):\n{}",
            out.stderr
        );
        // The debt was about 10 s: the helper waited that long, not more than its cap.
        assert!(took >= Duration::from_secs(3), "{took:?}");
        assert!(took < Duration::from_secs(60), "{took:?}");
        let listed = env.ls_remote(&src, &url);
        assert!(
            listed.contains(&format!("{head}\trefs/heads/main")),
            "{listed}"
        );
        // A clone right after: the token is in debt again (the second push), so its `packs`
        // (the listing `refs` no longer carries for a limited caller) waits, then goes.
        let before = refusals(&metrics, "byte_limited_token");
        assert!(before >= 1);
        let dst = env.path(&format!("clone-{inline_max}"));
        let out = env.git(&src, &["clone", "-v", &url, &dst.to_string_lossy()]);
        assert_eq!(env.rev(&dst, "HEAD"), head, "{out}");
        assert!(
            out.stderr.contains("hypha: packs of ws/bytes: 429"),
            "the clone did not wait:\n{}",
            out.stderr
        );
        assert!(refusals(&metrics, "byte_limited_token") > before);
        let log = env.server_log();
        assert!(
            log.contains("byte rate limit of 60000 bytes a minute for this token reached")
                || log.contains("byte_limited_token"),
            "{log}"
        );
    }
}

/// `--quota-stored-bytes`: a push that would take the workspace past it fails at once (one
/// refusal, no retries) with the quota and the numbers, and no ref moves; a push within it
/// still works, and another workspace is not affected.
#[test]
fn a_push_over_the_stored_quota_fails_and_changes_nothing() {
    let env = TestEnv::with_serve_args(&[
        "--quota-stored-bytes".into(),
        "30000".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ]);
    let metrics = metrics_base(&env);
    let url = env.create("full");
    let src = env.init("src");
    let first = commit_noise(&env, &src, "a.bin", 10_000, 3);
    env.git(&src, &["push", "-q", &url, "main"]);
    // 25 KB more would make about 35 KB: past the quota.
    env.git(&src, &["checkout", "-q", "-b", "big"]);
    commit_noise(&env, &src, "b.bin", 25_000, 4);
    let started = Instant::now();
    let out = env.cmd(&src, &["push", &url, "big"]).run();
    assert!(!out.success(), "the push over the quota succeeded\n{out}");
    assert!(
        out.stderr.contains(&format!(
            "storage quota of 30000 bytes for workspace {WS} reached"
        )),
        "{out}"
    );
    assert!(out.stderr.contains("bytes stored"), "{out}");
    // Refused, not busy: no waiting.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let listed = env.ls_remote(&src, &url);
    assert_eq!(listed, format!("{first}\tHEAD\n{first}\trefs/heads/main\n"));
    assert_eq!(refusals(&metrics, "quota_stored_bytes"), 1);
    // A small push still fits.
    env.git(&src, &["checkout", "-q", "main"]);
    let _ = first;
    let small = commit_noise(&env, &src, "small.bin", 1_000, 5);
    env.git(&src, &["push", "-q", &url, "main"]);
    let listed = env.ls_remote(&src, &url);
    assert!(
        listed.contains(&format!("{small}\trefs/heads/main")),
        "{listed}"
    );
}

/// `--quota-stored-bytes` through presigned uploads (`--inline-max 0`): the `uploads` request
/// is refused, nothing is marked, and the refs stay.
#[test]
fn an_upload_over_the_stored_quota_is_refused() {
    let env = TestEnv::with_serve_args(&[
        "--quota-stored-bytes".into(),
        "30000".into(),
        "--inline-max".into(),
        "0".into(),
    ]);
    let url = env.create("full");
    let src = env.init("src");
    let first = commit_noise(&env, &src, "a.bin", 10_000, 6);
    env.git(&src, &["push", "-q", &url, "main"]);
    commit_noise(&env, &src, "b.bin", 25_000, 7);
    let out = env.cmd(&src, &["push", &url, "main"]).run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "server refused uploads for '{WS}/full': storage quota of 30000 bytes for workspace {WS} reached"
        )),
        "{out}"
    );
    let listed = env.ls_remote(&src, &url);
    assert_eq!(listed, format!("{first}\tHEAD\n{first}\trefs/heads/main\n"));
    let log = env.server_log();
    let refused = log
        .lines()
        .filter(|l| l.contains("/remote/v1/uploads") && l.contains(" 413 "))
        .count();
    assert_eq!(refused, 1, "{log}");
}

/// `--quota-pending-uploads 1`: with one upload of the workspace in flight (handed URLs, never
/// pushed), a push through presigned uploads is refused with the quota's message; an
/// inline push (nothing pending) still goes.
#[test]
fn pending_uploads_over_the_quota_are_refused() {
    let env = TestEnv::with_serve_args(&[
        "--quota-pending-uploads".into(),
        "1".into(),
        "--inline-max".into(),
        "0".into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ]);
    let metrics = metrics_base(&env);
    let base = env.server.url().to_owned();
    let url = env.create("pending");
    env.create("other");
    let name = format!("pack-{}", "e".repeat(40));
    let (status, body) = http(
        &base,
        "POST",
        &format!("/{WS}/git/other/remote/v1/uploads"),
        &format!("authorization: Bearer {}\r\n", env.token()),
        &format!(r#"{{"packs":[{{"name":"{name}","pack_size":100,"idx_size":100}}]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let src = env.init("src");
    env.commit(&src, "first");
    let out = env.cmd(&src, &["push", &url, "main"]).run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "quota of 1 pending uploads for workspace {WS} reached: 1 uploads in flight and 1 more asked"
        )),
        "{out}"
    );
    assert_eq!(env.ls_remote(&src, &url), "");
    assert_eq!(refusals(&metrics, "quota_pending_uploads"), 1);
}
