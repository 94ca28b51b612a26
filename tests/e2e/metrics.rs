//! Issue 24: what an operator watches. `git hypha serve --metrics-listen` serves `/metrics`
//! on a second address; after a real push and a real clone its counters moved by exactly what
//! the two commands cost (API requests by route, store requests by operation, presigned
//! bytes); `/readyz` goes false while the store cannot be reached and true again after; the
//! request id the helper prints under `-v` is on the server's log line of that request.

use crate::harness::{http, TestEnv};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A server with its metrics on a second loopback address.
fn env_with_metrics() -> (TestEnv, String) {
    let env = TestEnv::with_serve_args(&["--metrics-listen".into(), "127.0.0.1:0".into()]);
    let log = env.server_log();
    let base = log
        .lines()
        .find_map(|l| l.strip_prefix("[stdout] metrics on "))
        .unwrap_or_else(|| panic!("no `metrics on` line\n{log}"))
        .trim()
        .trim_end_matches("/metrics")
        .to_owned();
    (env, base)
}

/// `GET path` on `base` (`http://127.0.0.1:PORT`): status and body.
fn get(base: &str, path: &str) -> (u16, String) {
    let reply = http::exchange(base, &format!("GET {path} HTTP/1.1"), b"", Some(None));
    (reply.status, reply.body)
}

/// Every sample of a scrape: `name{labels}` -> value.
fn scrape(base: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(base, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A scrape once two in a row agree: work a request leaves for after its answer (the
/// webhooks' read after `update`) is done.
fn settled(base: &str) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = scrape(base);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = scrape(base);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// What moved between two scrapes (counters only: `_total`, histogram `_count`), leaving out
/// the scrapes' own sums and buckets.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| k.contains("_total{"))
        .filter_map(|(k, v)| {
            let moved = v - before.get(k).copied().unwrap_or(0.0);
            (moved != 0.0).then(|| (k.clone(), moved as u64))
        })
        .collect()
}

fn only(d: &BTreeMap<String, u64>, prefix: &str) -> BTreeMap<String, u64> {
    d.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The expected deltas; a zero is left out, as [`delta`] leaves out what did not move.
fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// Whether the suite runs on the default store (local disk): the store request counts below
/// are that store's; another one (the S3 pass) may list or read differently.
fn on_local_disk() -> bool {
    std::env::var("HYPHA_E2E_SERVE_ARGS").map_or(true, |a| a.trim().is_empty())
}

#[test]
fn metrics_count_a_push_and_a_clone() {
    let (env, metrics) = env_with_metrics();
    let url = env.create("counted");
    let src = env.init("src");
    env.commit(&src, "first");

    let before = settled(&metrics);
    env.git(&src, &["push", "-q", &url, "main"]);
    let pushed = settled(&metrics);
    let push = delta(&before, &pushed);
    // A one-commit push: the listing and one `update` carrying the pack inline (docs/design.md
    // §18), nothing else asked of the API.
    assert_eq!(
        only(&push, "hypha_http_requests_total"),
        map(&[
            (
                "hypha_http_requests_total{route=\"refs\",status=\"200\"}",
                1
            ),
            (
                "hypha_http_requests_total{route=\"update\",status=\"200\"}",
                1
            ),
        ]),
        "{push:#?}"
    );
    assert!(only(&push, "hypha_refused").is_empty(), "{push:#?}");
    assert!(
        only(&push, "hypha_presigned").is_empty(),
        "inline: no URL {push:#?}"
    );
    let store = only(&push, "hypha_store_requests_total");
    if on_local_disk() {
        // Changing these numbers changes what a push costs on S3, where each request is a
        // round trip: do it on purpose (bench/s3-waves.sh shows the waves).
        assert_eq!(
            store,
            map(&[
                ("hypha_store_requests_total{operation=\"GET\"}", PUSH_GETS),
                ("hypha_store_requests_total{operation=\"HEAD\"}", PUSH_HEADS),
                ("hypha_store_requests_total{operation=\"LIST\"}", PUSH_LISTS),
                ("hypha_store_requests_total{operation=\"PUT\"}", PUSH_PUTS),
                (
                    "hypha_store_requests_total{operation=\"DELETE\"}",
                    PUSH_DELETES
                ),
            ]),
            "{push:#?}"
        );
    } else {
        for op in ["GET", "LIST", "PUT"] {
            let key = format!("hypha_store_requests_total{{operation=\"{op}\"}}");
            assert!(store.get(&key).copied().unwrap_or(0) > 0, "{op}: {push:#?}");
        }
    }
    // Every store request was timed.
    for (key, n) in &store {
        let op = key.trim_start_matches("hypha_store_requests_total");
        let timed = format!("hypha_store_request_duration_seconds_count{op}");
        let count =
            pushed.get(&timed).copied().unwrap_or(0.0) - before.get(&timed).copied().unwrap_or(0.0);
        assert_eq!(count as u64, *n, "{timed}");
    }

    let clone = env.path("clone");
    env.clone(&url, &clone);
    let cloned = settled(&metrics);
    let fetch = delta(&pushed, &cloned);
    // The listing carries the pack listing, and the pack itself (under 1 MiB, to a clone,
    // docs/design.md §18): no presigned `GET` follows, on any store.
    assert_eq!(
        only(&fetch, "hypha_http_requests_total"),
        map(&[(
            "hypha_http_requests_total{route=\"refs\",status=\"200\"}",
            1,
        )]),
        "{fetch:#?}"
    );
    let pack = stored_pack_size(&env, "counted");
    let idx = stored_idx_size(&env, "counted");
    assert_eq!(
        only(&fetch, "hypha_presigned"),
        map(&[
            (
                "hypha_presigned_bytes_total{direction=\"download\",kind=\"pack\"}",
                pack + idx
            ),
            (
                "hypha_presigned_urls_total{direction=\"download\",kind=\"pack\"}",
                2
            ),
        ]),
        "{fetch:#?}"
    );
    if on_local_disk() {
        assert!(
            only(&fetch, "hypha_store_url_bytes_total").is_empty(),
            "no byte through a URL {fetch:#?}"
        );
        assert_eq!(
            only(&fetch, "hypha_store_requests_total"),
            map(&[
                ("hypha_store_requests_total{operation=\"GET\"}", CLONE_GETS),
                (
                    "hypha_store_requests_total{operation=\"HEAD\"}",
                    CLONE_HEADS
                ),
                (
                    "hypha_store_requests_total{operation=\"LIST\"}",
                    CLONE_LISTS
                ),
            ]),
            "{fetch:#?}"
        );
    }
}

/// Store requests of a one-commit push into an empty repository on local disk (measured,
/// 2026-12-07: what `refs` for a push and `update` with an inline pack read and write, and
/// the webhooks' read of `hooks.json` after the answer). A `get_many` counts one `GET` per
/// key.
const PUSH_GETS: u64 = 8;
const PUSH_HEADS: u64 = 2;
const PUSH_LISTS: u64 = 6;
const PUSH_PUTS: u64 = 3;
const PUSH_DELETES: u64 = 0;
/// Store requests of a clone of it: all of them `refs` with the pack listing, and the one
/// `GET` of the pack the listing carries.
const CLONE_GETS: u64 = 6;
const CLONE_HEADS: u64 = 1;
const CLONE_LISTS: u64 = 3;

fn stored_pack_size(env: &TestEnv, alias: &str) -> u64 {
    stored_size(env, alias, ".pack")
}

fn stored_idx_size(env: &TestEnv, alias: &str) -> u64 {
    stored_size(env, alias, ".idx")
}

fn stored_size(env: &TestEnv, alias: &str, ext: &str) -> u64 {
    let dir = env.stored_repo(alias).join("objects/pack");
    let sizes: Vec<u64> = std::fs::read_dir(&dir)
        .expect("read the stored packs")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
        .map(|e| e.metadata().expect("stat").len())
        .collect();
    assert_eq!(sizes.len(), 1, "one {ext} in {}", dir.display());
    sizes[0]
}

#[test]
fn readiness_follows_the_store() {
    let (env, metrics) = env_with_metrics();
    let api = env.server.url().to_owned();
    for base in [&metrics, &api] {
        assert_eq!(get(base, "/healthz").0, 200);
        let (status, body) = get(base, "/readyz");
        assert_eq!((status, body.as_str()), (200, "{\"ready\":true}"));
    }
    // The store's root replaced by a file: every request to it fails.
    let root = env.server.root().to_owned();
    let aside = root.with_extension("aside");
    std::fs::rename(&root, &aside).expect("move the store away");
    std::fs::write(&root, "not a directory").expect("put a file in its place");
    let gone = Instant::now();
    let (status, body) = loop {
        // An answer from before may stand for a second.
        let (status, body) = get(&metrics, "/readyz");
        if status != 200 || gone.elapsed() > Duration::from_secs(5) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    assert!(body.contains("the store cannot be reached"), "{body}");
    assert_eq!(
        get(&api, "/readyz").0,
        503,
        "the API's address says the same"
    );
    assert_eq!(get(&metrics, "/healthz").0, 200, "alive all the same");
    assert!(
        scrape(&metrics).get("hypha_ready") == Some(&0.0),
        "the gauge follows"
    );

    std::fs::remove_file(&root).expect("remove the file");
    std::fs::rename(&aside, &root).expect("put the store back");
    let back = Instant::now();
    loop {
        let (status, body) = get(&metrics, "/readyz");
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still not ready: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(scrape(&metrics).get("hypha_ready"), Some(&1.0));
    assert!(env
        .server_log()
        .contains("not ready: the store cannot be reached"));
}

#[test]
fn the_request_id_of_a_push_is_in_both_logs() {
    if crate::harness::hypha::target().is_some() {
        crate::harness::hypha::excluded("our server's own request ids in its log");
    }
    let env = TestEnv::new();
    let url = env.create("traced");
    let src = env.init("src");
    env.commit(&src, "first");
    let out = env.git(&src, &["push", "-v", &url, "main"]);
    // `hypha: update of ws/traced: 200 (request id 3f9c0a1b2d4e5f60)`
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("hypha: update of ") && l.contains("request id "))
        .unwrap_or_else(|| panic!("no request id under -v:\n{}", out.stderr));
    let id = line
        .rsplit("request id ")
        .next()
        .expect("an id")
        .trim_end_matches(')');
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    let log = env.server_log_when(|log| log.contains(&format!("id={id}")));
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("id={id}")))
        .collect();
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].contains("/traced/remote/v1/update 200 "),
        "{}",
        logged[0]
    );
}

#[test]
fn json_log_lines_name_each_request() {
    let env = TestEnv::with_serve_args(&["--log-format".into(), "json".into()]);
    let url = env.create("logged");
    let src = env.init("src");
    env.commit(&src, "first");
    env.git(&src, &["push", "-q", &url, "main"]);
    let log = env.server_log_when(|log| log.contains(r#""route":"update""#));
    assert!(!log.contains(env.token()), "the log holds the token");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| l.strip_prefix("[stderr] "))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
        })
        .collect();
    let update = lines
        .iter()
        .find(|l| l["route"] == "update")
        .unwrap_or_else(|| panic!("no update line\n{log}"));
    for field in ["timestamp", "level", "request_id", "message"] {
        assert!(update[field].is_string(), "{field}: {update}");
    }
    assert_eq!(update["level"], "INFO");
    assert_eq!(update["workspace"], crate::harness::WS);
    assert_eq!(update["repository"], "logged");
    assert_eq!(update["status"], 200);
    assert!(update["duration_ms"].is_u64(), "{update}");
    assert!(update["bytes_in"].as_u64().unwrap_or(0) > 0, "{update}");
    assert!(update["bytes_out"].as_u64().unwrap_or(0) > 0, "{update}");
}
