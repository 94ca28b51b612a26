//! Webhooks (issue 16 item 3): `git hypha hook add|list|remove` and the signed push event
//! `git hypha serve` sends after a push, to a real HTTP receiver on loopback (allowed with
//! `--webhook-allow 127.0.0.1`; no test targets any other address).
//!
//! Checked: the payload (GitHub's push shape, push options), the signature verified with the
//! secret, no token in the request, retries after a 500, the delivery log `hook list` shows,
//! a loopback target refused without the operator's allowance, non-admin tokens refused, and
//! a push that returns while one target still holds the delivery and another is down.

use crate::harness::receiver::{Receiver, Reply};
use crate::harness::{TestEnv, WS};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, Instant};

const SECRET: &str = "hook-secret-for-e2e-7f3a";

/// Generous: deliveries run in the background of a server on a busy machine.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

fn allowing_loopback() -> TestEnv {
    TestEnv::with_serve_args(&["--webhook-allow".into(), "127.0.0.1".into()])
}

fn add_hook(env: &TestEnv, url: &str, target: &str) {
    let admin = env.mint(WS, "a");
    let out = env
        .git_hypha(&["hook", "add", url, target])
        .env("HYPHA_HOOK_SECRET", SECRET)
        .token(&admin)
        .ok();
    assert!(
        !out.stderr.contains(SECRET) && !out.stdout.contains(SECRET),
        "{out}"
    );
}

fn hook_list(env: &TestEnv, url: &str) -> String {
    let admin = env.mint(WS, "a");
    let out = env.git_hypha(&["hook", "list", url]).token(&admin).ok();
    assert!(
        !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
        "secret listed\n{out}"
    );
    out.stdout
}

/// `hook list` until its log has a delivery line containing `needle` (the log is written
/// after each delivery ends); returns the last listing.
fn wait_for_log(env: &TestEnv, url: &str, needle: &str) -> String {
    let deadline = Instant::now() + DELIVERY_WAIT;
    loop {
        let listed = hook_list(env, url);
        let found = listed
            .lines()
            .any(|l| l.contains(" attempts ") && l.contains(needle));
        if found || Instant::now() > deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn push_sends_a_signed_event_and_the_log_shows_it() {
    let env = allowing_loopback();
    let url = env.create("hooked");
    let receiver = Receiver::start(vec![]);
    add_hook(&env, &url, &receiver.url("/ci/hook"));
    let listed = hook_list(&env, &url);
    assert!(listed.contains(&receiver.url("/ci/hook")), "{listed}");

    let repo = env.init("work");
    let tip = env.commit(&repo, "first");
    env.git(&repo, &["push", "-q", "-o", "ci.skip", &url, "main"]);

    let got = receiver.wait_for(1, DELIVERY_WAIT);
    assert_eq!(got.len(), 1, "one push, one event: {got:?}");
    let req = &got[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/ci/hook")
    );
    assert_eq!(
        req.header("x-hub-signature-256"),
        Some(sign(&req.body).as_str())
    );
    assert_eq!(req.header("x-github-event"), Some("push"));
    let id = req.header("x-hypha-delivery").expect("delivery id header");
    assert_eq!(req.header("x-github-delivery"), Some(id));
    assert!(req.header("authorization").is_none(), "{req:?}");
    let text = String::from_utf8_lossy(&req.body);
    assert!(
        !text.contains(env.token()),
        "the event carries a token: {text}"
    );
    let event: serde_json::Value = serde_json::from_slice(&req.body).expect("JSON body");
    assert_eq!(event["ref"], "refs/heads/main");
    assert_eq!(event["before"], "0".repeat(40));
    assert_eq!(event["after"], tip.as_str());
    assert_eq!(event["created"], true);
    assert_eq!(event["repository"]["full_name"], format!("{WS}/hooked"));
    assert_eq!(event["pusher"]["name"], "git-hypha");
    assert_eq!(event["push_options"], serde_json::json!(["ci.skip"]));

    let listed = wait_for_log(&env, &url, id);
    let line = listed
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("delivery {id} not in the log:\n{listed}"));
    assert!(
        line.contains("delivered") && line.contains("status 200"),
        "{line}"
    );

    // A second push names the old tip as `before`; then the hook goes and nothing more is sent.
    let second = env.commit(&repo, "second");
    env.git(&repo, &["push", "-q", &url, "main"]);
    let got = receiver.wait_for(2, DELIVERY_WAIT);
    let event: serde_json::Value = serde_json::from_slice(&got[1].body).expect("JSON body");
    assert_eq!(
        (event["before"].as_str(), event["after"].as_str()),
        (Some(tip.as_str()), Some(second.as_str()))
    );
    let admin = env.mint(WS, "a");
    let target = receiver.url("/ci/hook");
    env.git_hypha(&["hook", "remove", &url, &target])
        .token(&admin)
        .ok();
    assert!(hook_list(&env, &url).contains("no webhooks"));
}

#[test]
fn a_failed_delivery_is_retried() {
    let env = allowing_loopback();
    let url = env.create("retried");
    let receiver = Receiver::start(vec![Reply::Status(500)]);
    add_hook(&env, &url, &receiver.url("/flaky"));
    let repo = env.init("work");
    env.commit(&repo, "first");
    env.git(&repo, &["push", "-q", &url, "main"]);
    let got = receiver.wait_for(2, DELIVERY_WAIT);
    assert_eq!(got.len(), 2, "a 500, then a retry: {got:?}");
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(
        got[0].header("x-hypha-delivery"),
        got[1].header("x-hypha-delivery")
    );
    let listed = wait_for_log(&env, &url, "/flaky");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("delivered") && l.contains("attempts 2")),
        "{listed}"
    );
}

#[test]
fn a_push_never_waits_for_its_webhook() {
    let env = allowing_loopback();
    let url = env.create("slow");
    let (release, hold) = std::sync::mpsc::channel();
    let receiver = Receiver::start(vec![Reply::HoldUntil(hold)]);
    add_hook(&env, &url, &receiver.url("/slow"));
    // And a target that is down: a loopback port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = format!(
        "http://127.0.0.1:{}/down",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    add_hook(&env, &url, &down);
    let repo = env.init("work");
    env.commit(&repo, "first");
    // The push returns while one target holds the delivery unanswered and the other is
    // being retried.
    env.git(&repo, &["push", "-q", &url, "main"]);
    assert_eq!(receiver.wait_for(1, DELIVERY_WAIT).len(), 1);
    let listed = hook_list(&env, &url);
    assert!(
        !listed
            .lines()
            .any(|l| l.contains(" attempts ") && l.contains("/slow")),
        "the delivery is still held, yet the push returned and nothing is logged\n{listed}"
    );
    drop(release);
    let listed = wait_for_log(&env, &url, "/slow");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("delivered") && l.contains("/slow")),
        "{listed}"
    );
}

#[test]
fn targets_and_rights_are_checked() {
    // No --webhook-allow: loopback targets are refused.
    let env = TestEnv::new();
    let url = env.create("guarded");
    let admin = env.mint(WS, "a");
    for target in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
    ] {
        let out = env
            .git_hypha(&["hook", "add", &url, target])
            .env("HYPHA_HOOK_SECRET", SECRET)
            .token(&admin)
            .fails();
        assert!(
            out.stderr.contains("non-public address") && out.stderr.contains("--webhook-allow"),
            "{out}"
        );
    }
    // A rw token may push, not manage hooks.
    let out = env
        .git_hypha(&["hook", "add", &url, "https://example.com/hook"])
        .env("HYPHA_HOOK_SECRET", SECRET)
        .fails();
    assert!(out.stderr.contains("admin"), "{out}");
    let out = env.git_hypha(&["hook", "list", &url]).fails();
    assert!(out.stderr.contains("permission denied"), "{out}");
    // The secret comes from the environment only.
    let out = env
        .git_hypha(&["hook", "add", &url, "https://example.com/hook"])
        .token(&admin)
        .fails();
    assert!(out.stderr.contains("HYPHA_HOOK_SECRET"), "{out}");
    assert!(hook_list(&env, &url).contains("no webhooks"));
}
