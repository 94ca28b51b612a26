//! Hostile input (issue 5, item 5) against the real processes: raw HTTP to `git hypha serve`
//! and malformed protocol lines to `git-remote-hypha`.
//!
//! HTTP requests are written byte by byte on a `TcpStream`, so nothing normalizes them on the
//! way (`..` and `%2e%2e` reach the server as sent, bodies can be longer or shorter than
//! their `Content-Length`). Every hostile request must get a 4xx and must write nothing: the
//! server's whole root directory is listed before and after each batch and must be identical
//! (a refused request has no business writing anywhere, inside the repository's prefix or
//! out of it). The server must stay up and keep its log free of tokens and signatures.
//!
//! The helper gets malformed lines on stdin, one session each: it must exit non-zero with a
//! `fatal:` line, never panic, and never write to the repository it was started in.

use crate::faults::{figures, files_under, LocalState};
use crate::harness::{bin_dir, http, noise, TestEnv, WS};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One raw HTTP/1.1 exchange ([`http::exchange`]): the status (0 if the server closed the
/// connection without an answer) and the body.
pub(crate) fn exchange(
    server: &str,
    head: &str,
    body: &[u8],
    declared: Option<Option<usize>>,
) -> (u16, String) {
    let reply = http::exchange(server, head, body, declared);
    (reply.status, reply.body)
}

pub(crate) fn post(server: &str, path: &str, token: Option<&str>, json: &str) -> (u16, String) {
    let mut head = format!("POST {path} HTTP/1.1\r\ncontent-type: application/json");
    if let Some(token) = token {
        head.push_str(&format!("\r\nauthorization: Bearer {token}"));
    }
    exchange(server, &head, json.as_bytes(), None)
}

fn route(alias: &str, route: &str) -> String {
    format!("/{WS}/git/{alias}/remote/v1/{route}")
}

/// The server root as files and sizes, and each ref file's content. Pending-upload markers
/// (written when upload URLs are handed out, removed by the update or by gc) are bookkeeping,
/// not uploaded data, and are left out.
fn server_tree(env: &TestEnv) -> Vec<(String, u64)> {
    let mut tree = files_under(env.server.root());
    tree.retain(|(name, _)| !name.contains("/.git/hypha-remote/uploads/"));
    tree
}

/// Runs each case, requires a 4xx (or, where `closed_ok`, a dropped connection), and an
/// unchanged server root. Returns how many inputs were tried.
fn expect_refused(env: &TestEnv, cases: &[(String, (u16, String))]) -> usize {
    for (what, (status, body)) in cases {
        assert!(
            (400..500).contains(status),
            "{what}: expected a 4xx, got {status} {body}\n{}",
            env.server.log_tail()
        );
    }
    cases.len()
}

/// A repository with one pushed commit; returns its head.
fn seeded(env: &TestEnv, alias: &str) -> String {
    let url = env.create(alias);
    let src = env.init(&format!("{alias}-src"));
    let head = env.commit(&src, "c1");
    env.git(&src, &["push", "-q", &url, "main"]);
    head
}

#[test]
fn hostile_ref_names_are_refused_and_write_nothing() {
    let env = TestEnv::new();
    let head = seeded(&env, "refs");
    let token = env.token().to_owned();
    let server = env.server.url().to_owned();
    let long = format!("refs/heads/{}", "a".repeat(10 * 1024));
    let names: Vec<String> = vec![
        "refs/heads/a..b".into(),
        "refs/heads/x.lock".into(),
        "refs/heads/x.lock/y".into(),
        "refs/heads/ctl\u{1}x".into(),
        "refs/heads/nl\nx".into(),
        "refs/heads/del\u{7f}".into(),
        "refs/heads/nul\u{0}x".into(),
        "-refs/heads/x".into(),
        "--upload-pack=touch /tmp/pwned".into(),
        long,
        "refs/heads/a b".into(),
        "refs/heads/a~1".into(),
        "refs/heads/a^".into(),
        "refs/heads/a:b".into(),
        "refs/heads/a?".into(),
        "refs/heads/a*".into(),
        "refs/heads/a[".into(),
        "refs/heads/a\\b".into(),
        "refs/heads/.hidden".into(),
        "refs/heads/a/".into(),
        "refs/heads//a".into(),
        "refs/heads/a.".into(),
        "refs/heads/@{1}".into(),
        "@".into(),
        "HEAD".into(),
        "main".into(),
        "refs".into(),
        "refs/".into(),
        "".into(),
        "refs/../../../../etc/passwd".into(),
        "refs/heads/../../../hypha-remote/config.json".into(),
        "refs/heads/%2e%2e/x".into(),
        "/refs/heads/abs".into(),
        "refs/heads/\u{202e}rtl".into(),
        "refs/heads/-x".into(),
    ];
    let before = server_tree(&env);
    let prefix = "ws/artifacts/refs/.git/";
    let mut refused = Vec::new();
    let mut accepted = 0;
    for name in &names {
        // git is the reference: what `git check-ref-format` refuses, the server must refuse.
        let valid = !name.chars().any(char::is_control)
            && env
                .cmd(&env.path(""), &["check-ref-format", name])
                .run()
                .success();
        let update = serde_json::json!({
            "packs": [],
            "updates": [{"ref": name, "old": null, "new": head}],
            "atomic": false,
        });
        let answer = post(
            &server,
            &route("refs", "update"),
            Some(&token),
            &update.to_string(),
        );
        let head_req = serde_json::json!({ "symref": name });
        let head_answer = post(
            &server,
            &route("refs", "head"),
            Some(&token),
            &head_req.to_string(),
        );
        if valid {
            // Legal for git (`%2e%2e` is three characters to git, not `..`): taken literally,
            // and only ever inside this repository's own prefix.
            accepted += 1;
            for (what, (status, body)) in [("update", &answer), ("head", &head_answer)] {
                assert!(
                    *status == 200 || (400..500).contains(status),
                    "{what} of valid {:?}: {status} {body}",
                    short(name)
                );
            }
        } else {
            refused.push((format!("update of {:?}", short(name)), answer));
            refused.push((format!("head -> {:?}", short(name)), head_answer));
        }
    }
    let tried = expect_refused(&env, &refused) + 2 * accepted;
    let after = server_tree(&env);
    for file in after.iter().filter(|f| !before.contains(f)) {
        assert!(
            file.0.starts_with(&format!("{prefix}refs/")) || file.0 == format!("{prefix}HEAD"),
            "written outside the repository's refs: {file:?}"
        );
    }
    for file in before.iter().filter(|f| !after.contains(f)) {
        assert!(
            file.0 == format!("{prefix}HEAD"),
            "something disappeared: {file:?}"
        );
    }
    // Put HEAD back so the health check lists main as the default branch.
    let reset = serde_json::json!({ "symref": "refs/heads/main" });
    post(
        &server,
        &route("refs", "head"),
        Some(&token),
        &reset.to_string(),
    );
    assert_server_healthy(&env, "refs");
    figures("hostile_refnames", &[("inputs", tried)]);
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The server answers the next request, and its log has no secret in it.
fn assert_server_healthy(env: &TestEnv, alias: &str) {
    let listed = env.ls_remote(&env.mkdir("healthy"), &env.url(alias));
    assert!(listed.contains("refs/heads/main"), "{listed}");
    let log = env.server_log();
    assert!(!log.contains(env.token()), "the server log has the token");
    assert!(
        !log.to_lowercase().contains("sig="),
        "the server log has a signature"
    );
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[test]
fn hostile_repository_paths_are_refused_and_write_nothing() {
    let env = TestEnv::new();
    seeded(&env, "paths");
    let admin = env.mint("*", "a");
    let token = env.token().to_owned();
    let server = env.server.url().to_owned();
    let paths = [
        "/../git/x/remote/v1/create",
        "/ws/git/../remote/v1/create",
        "/ws/git/%2e%2e/remote/v1/create",
        "/ws/git/%2E%2E/remote/v1/create",
        "/ws/git/..%2f..%2fescape/remote/v1/create",
        "/ws/git/a%2f..%2f..%2fescape/remote/v1/create",
        "/ws/git/a%2fb/remote/v1/create",
        "/ws/git/a%5cb/remote/v1/create",
        "/ws/git/.git/remote/v1/create",
        "/ws/git/.hidden/remote/v1/create",
        "/ws/git/-dash/remote/v1/create",
        "/ws/git/a..b/remote/v1/create",
        "/ws/git/%00/remote/v1/create",
        "/ws/git/a%00b/remote/v1/create",
        "/ws/git/%20/remote/v1/create",
        "/%2e%2e/git/x/remote/v1/create",
        "/..%2f..%2ftmp/git/x/remote/v1/create",
        "/ws%2f..%2f..%2ftmp/git/x/remote/v1/create",
        "/./git/x/remote/v1/create",
        "/ws/git/paths/remote/v1/%2e%2e",
        "/ws/git/paths/remote/v1/../../../x/git/y/remote/v1/create",
        "/ws/git/paths/remote/v2/refs",
        "/ws/git/paths/remote/v1/refs/extra",
        "/_store/ws/artifacts/paths/.git/../../../../etc/passwd?method=GET&expires=99999999999&sig=00",
        "/_store/..%2f..%2f..%2fetc%2fpasswd?method=GET&expires=99999999999&sig=00",
        "/_store/ws/artifacts/paths/.git/refs/heads/main",
    ];
    let long_alias = format!("/ws/git/{}/remote/v1/create", "a".repeat(4096));
    let before = server_tree(&env);
    let mut cases = Vec::new();
    for path in paths.iter().map(|p| p.to_string()).chain([long_alias]) {
        for token in [&token, &admin] {
            let method = if path.starts_with("/_store") {
                "GET"
            } else {
                "POST"
            };
            let head = format!(
                "{method} {path} HTTP/1.1\r\nauthorization: Bearer {token}\r\ncontent-type: application/json"
            );
            cases.push((
                format!("{method} {}", short(&path)),
                exchange(&server, &head, b"{}", None),
            ));
        }
    }
    // Raw `..` in the request line is what a proxy or a careless client sends; some stacks
    // normalize it away, so a 404 for a normalized path is fine too: 4xx either way.
    let tried = expect_refused(&env, &cases);
    assert_eq!(
        server_tree(&env),
        before,
        "no repository was created anywhere"
    );
    assert!(
        !env.server.root().join("escape").exists()
            && !env
                .server
                .root()
                .parent()
                .expect("root has a parent")
                .join("escape")
                .exists()
    );
    assert_server_healthy(&env, "paths");
    figures("hostile_paths", &[("inputs", tried)]);
}

#[test]
fn hostile_bodies_and_pack_names_are_refused_and_write_nothing() {
    let env = TestEnv::new();
    let head = seeded(&env, "bodies");
    let token = env.token().to_owned();
    let server = env.server.url().to_owned();
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let mut cases = Vec::new();
    let before = server_tree(&env);

    // Oversized JSON: more than the server's limit, on every route.
    let big = format!(
        "{{\"known\": [\"{}\"]}}",
        "x".repeat(hypha_git::server::MAX_JSON_BODY + 10)
    );
    for r in [
        "packs", "update", "uploads", "head", "create", "refs", "info",
    ] {
        cases.push((
            format!("oversized {r}"),
            post(&server, &route("bodies", r), Some(&token), &big),
        ));
    }
    // Malformed or mistyped JSON.
    for (r, body) in [
        ("update", "{"),
        ("update", "[]"),
        ("update", "null"),
        ("update", "{\"updates\": \"nope\"}"),
        ("update", "{\"updates\": [{\"ref\": 5}]}"),
        (
            "update",
            "{\"updates\": [{\"ref\": \"refs/heads/x\", \"old\": null, \"new\": \"nothex\"}]}",
        ),
        (
            "update",
            "{\"updates\": [{\"ref\": \"refs/heads/x\", \"old\": \"zz\", \"new\": null}]}",
        ),
        ("uploads", "{\"packs\": [{\"name\": 1}]}"),
        (
            "uploads",
            "{\"packs\": [{\"name\": \"pack-x\", \"pack_size\": -1, \"idx_size\": 1}]}",
        ),
        ("head", "{\"symref\": null}"),
        ("packs", "{\"known\": 7}"),
        ("update", "\u{0}\u{1}\u{2}"),
    ] {
        cases.push((
            format!("{r} {body:?}"),
            post(&server, &route("bodies", r), Some(&token), body),
        ));
    }
    // Pack names that are not `pack-<40 hex>`, to `uploads` and to `update`.
    let bad_names = [
        "pack-../../../x".to_string(),
        format!("../pack-{hex}"),
        format!("pack-{}", hex.to_uppercase()),
        format!("pack-{hex}.pack"),
        format!("pack-{hex}/x"),
        format!("pack-{}", &hex[..39]),
        format!("pack-{hex}0"),
        format!("x-{hex}"),
        "pack-".to_string(),
        String::new(),
        format!("pack-{}", "a".repeat(10 * 1024)),
        format!("pack-{hex}\n"),
        "pack-%2e%2e%2f%2e%2e%2fx".to_string(),
    ];
    for name in &bad_names {
        let uploads =
            serde_json::json!({"packs": [{"name": name, "pack_size": 100, "idx_size": 100}]});
        cases.push((
            format!("uploads {:?}", short(name)),
            post(
                &server,
                &route("bodies", "uploads"),
                Some(&token),
                &uploads.to_string(),
            ),
        ));
        let update = serde_json::json!({
            "packs": [name],
            "updates": [{"ref": "refs/heads/new", "old": null, "new": head}],
        });
        cases.push((
            format!("update with pack {:?}", short(name)),
            post(
                &server,
                &route("bodies", "update"),
                Some(&token),
                &update.to_string(),
            ),
        ));
    }
    // A well-formed name of a pack that was never uploaded.
    let update = serde_json::json!({
        "packs": [format!("pack-{hex}")],
        "updates": [{"ref": "refs/heads/new", "old": null, "new": head}],
    });
    cases.push((
        "update with a missing pack".into(),
        post(
            &server,
            &route("bodies", "update"),
            Some(&token),
            &update.to_string(),
        ),
    ));
    // Sizes the server must refuse to presign.
    for (pack_size, idx_size) in [(0u64, 100u64), (100, 0), (u64::MAX, 100), (1 << 60, 100)] {
        let uploads = serde_json::json!({"packs": [{"name": format!("pack-{hex}"), "pack_size": pack_size, "idx_size": idx_size}]});
        cases.push((
            format!("uploads of size {pack_size}/{idx_size}"),
            post(
                &server,
                &route("bodies", "uploads"),
                Some(&token),
                &uploads.to_string(),
            ),
        ));
    }
    let mut tried = expect_refused(&env, &cases);
    assert_eq!(server_tree(&env), before, "refused requests wrote nothing");

    if !crate::faults::transfers_proxied() {
        // On S3 the presigned PUT goes to S3, which checks lengths itself.
        assert_server_healthy(&env, "bodies");
        figures("hostile_bodies", &[("inputs", tried)]);
        return;
    }
    // Uploads longer or shorter than declared, to a genuine presigned PUT of 1000 bytes.
    let uploads = serde_json::json!({"packs": [{"name": format!("pack-{hex}"), "pack_size": 1000, "idx_size": 1000}]});
    let (status, body) = post(
        &server,
        &route("bodies", "uploads"),
        Some(&token),
        &uploads.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("uploads answer");
    let pack_put = answer["uploads"][0]["pack"]["url"]
        .as_str()
        .expect("pack url")
        .to_owned();
    let target = pack_put
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .expect("url has a path");
    let head_line = format!("PUT {target} HTTP/1.1\r\ncontent-type: application/octet-stream");
    let bytes = noise(2000, 7);
    let mut puts = vec![
        (
            "declared 1010, sent 1010",
            exchange(&server, &head_line, &bytes[..1010], None),
        ),
        (
            "declared 990, sent 990",
            exchange(&server, &head_line, &bytes[..990], None),
        ),
        (
            "declared 1000, sent 600",
            exchange(&server, &head_line, &bytes[..600], Some(Some(1000))),
        ),
        (
            "declared 1000, sent 0",
            exchange(&server, &head_line, &[], Some(Some(1000))),
        ),
    ];
    // Chunked bodies carry no length up front: the store must count.
    for len in [1500usize, 400] {
        let chunk = &bytes[..len];
        let mut body = format!("{len:x}\r\n").into_bytes();
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let head = format!("{head_line}\r\ntransfer-encoding: chunked");
        puts.push((
            if len > 1000 {
                "chunked 1500"
            } else {
                "chunked 400"
            },
            exchange(&server, &head, &body, Some(None)),
        ));
    }
    for (what, (status, body)) in &puts {
        // A body cut short ends with the client's half-close, which hyper answers by closing
        // (status 0 here) or, today, with a 500: see `short_upload_is_a_client_error`. The
        // safety property, nothing stored, is checked below for every case.
        let short = what.contains(", sent") && (*status == 0 || *status == 500);
        assert!(
            (400..500).contains(status) || short,
            "{what}: expected a 4xx, got {status} {body}\n{}",
            env.server.log_tail()
        );
    }
    tried += puts.len();
    // Nothing of those uploads is visible; a temporary file may not linger either.
    assert_eq!(server_tree(&env), before, "no partial upload is stored");
    assert_server_healthy(&env, "bodies");
    figures("hostile_bodies", &[("inputs", tried)]);
}

/// Runs the helper binary directly, as git would, with `input` on stdin.
fn helper_session(env: &TestEnv, repo: &Path, url: &str, input: &[u8]) -> (Option<i32>, String) {
    helper_session_with_path(
        env,
        repo,
        url,
        input,
        &std::env::var_os("PATH").unwrap_or_default(),
    )
}

/// [`helper_session`] with `path` as the helper's `PATH` (the git it finds there).
pub(crate) fn helper_session_with_path(
    env: &TestEnv,
    repo: &Path,
    url: &str,
    input: &[u8],
    path: &std::ffi::OsStr,
) -> (Option<i32>, String) {
    let git_dir = repo.join(".git");
    let mut child = Command::new(bin_dir().join("git-remote-hypha"))
        .args(["origin", url])
        .env_clear()
        .env("PATH", path)
        .env("HOME", env.home())
        .env("GIT_DIR", &git_dir)
        .env("HYPHA_TOKEN", env.token())
        .env("GIT_TERMINAL_PROMPT", "0")
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start git-remote-hypha");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for helper");
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains(env.token()),
        "the helper printed its token"
    );
    (out.status.code(), stderr)
}

#[test]
fn malformed_protocol_lines_fail_cleanly() {
    let env = TestEnv::new();
    seeded(&env, "proto");
    let url = env.url("proto");
    let repo = env.init("local");
    env.commit(&repo, "local");
    let before = LocalState::of(&env, &repo);
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let mut inputs: Vec<Vec<u8>> = vec![
        b"fetch nothex x\n\n".to_vec(),
        format!("fetch {hex}\n\n").into_bytes(),
        format!("fetch {hex} \n\n").into_bytes(),
        b"fetch\n".to_vec(),
        b"garbage\n".to_vec(),
        b"capabilities now\n".to_vec(),
        b"list for-pull\n".to_vec(),
        b"option\n".to_vec(),
        b"option  1\n".to_vec(),
        b"push\n".to_vec(),
        b"push nocolon\n".to_vec(),
        b"push refs/heads/main:\n".to_vec(),
        b"push refs/heads/main:refs/heads/main\nlist\n\n".to_vec(),
        format!("fetch {hex} refs/heads/main\npush a:b\n\n").into_bytes(),
        b"\xff\xfe\xfd\n".to_vec(),
        b"\0\0\0\n".to_vec(),
        {
            let mut line = vec![b'a'; 1024 * 1024];
            line.push(b'\n');
            line
        },
        {
            let mut line = b"fetch ".to_vec();
            line.extend(std::iter::repeat_n(b'f', 1024 * 1024));
            line.extend_from_slice(b" refs/heads/main\n\n");
            line
        },
    ];
    let malformed = inputs.len();
    // Odd but legal, or handled by a reply rather than an exit: must not crash either.
    inputs.push(b"option cas \"unterminated\n".to_vec());
    // A value-less option (git before 2.45 sends `option object-format` so) gets `ok` for a
    // flag, `error` for an option that needs a value, `unsupported` for an unknown name.
    inputs.push(b"option verbosity\noption object-format\noption novalue\n\n".to_vec());
    inputs.push(b"\r\nlist\n".to_vec());
    inputs.push(b"capabilities\ncapabilities\n\n".to_vec());
    inputs.push(Vec::new());
    // A 1 MB destination parses; the push refuses that ref in its reply (`error <dst> ...`).
    inputs.push({
        let mut line = b"push refs/heads/main:refs/heads/".to_vec();
        line.extend(std::iter::repeat_n(b'x', 1024 * 1024));
        line.extend_from_slice(b"\n\n");
        line
    });
    // Lines of random bytes and random mixes of real command words with junk.
    let words: [&[u8]; 8] = [
        b"fetch ",
        b"push ",
        b"option ",
        b"list",
        b"capabilities",
        b" ",
        b":",
        b"+",
    ];
    let junk = noise(64 * 1024, 42);
    for i in 0..40usize {
        let mut input = Vec::new();
        for j in 0..(1 + i % 4) {
            let k = (i * 7 + j * 13) % junk.len();
            input.extend_from_slice(words[(i + j) % words.len()]);
            input.extend_from_slice(&junk[k..(k + 1 + (i * 31 + j) % 200).min(junk.len())]);
            input.push(b'\n');
        }
        inputs.push(input);
    }
    let mut failed = 0;
    for (i, input) in inputs.iter().enumerate() {
        let (code, stderr) = helper_session(&env, &repo, &url, input);
        let shown = String::from_utf8_lossy(&input[..input.len().min(60)]).into_owned();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "input {shown:?}: the helper panicked:\n{stderr}"
        );
        if i < malformed {
            assert_ne!(
                code,
                Some(0),
                "input {shown:?}: a malformed line fails:\n{stderr}"
            );
        }
        if code != Some(0) {
            failed += 1;
            assert!(
                stderr.lines().any(|l| l.starts_with("fatal:")),
                "input {shown:?}: exit {code:?} without a fatal line:\n{stderr}"
            );
            assert!(
                stderr.len() < 4096,
                "input {shown:?}: the error echoes the input at length ({} bytes)",
                stderr.len()
            );
        }
    }
    assert_eq!(
        LocalState::of(&env, &repo),
        before,
        "the helper wrote nothing locally"
    );
    figures(
        "hostile_protocol",
        &[("inputs", inputs.len()), ("failed", failed)],
    );
}

/// An upload that ends before its declared length is the client's fault: a 4xx, like a
/// body that is too long (a 500 would also make clients retry it as a server fault).
#[test]
fn short_upload_is_a_client_error() {
    if crate::faults::skip_without_proxied_transfers("short_upload") {
        return;
    }
    let env = TestEnv::new();
    seeded(&env, "short");
    let server = env.server.url().to_owned();
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let uploads = serde_json::json!({"packs": [{"name": format!("pack-{hex}"), "pack_size": 1000, "idx_size": 1000}]});
    let (status, body) = post(
        &server,
        &route("short", "uploads"),
        Some(env.token()),
        &uploads.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("uploads answer");
    let url = answer["uploads"][0]["pack"]["url"]
        .as_str()
        .expect("pack url");
    let target = &url[url.find("/_store").expect("store url")..];
    let head = format!("PUT {target} HTTP/1.1\r\ncontent-type: application/octet-stream");
    let (status, body) = exchange(&server, &head, &noise(600, 1), Some(Some(1000)));
    assert!(
        (400..500).contains(&status),
        "expected a 4xx, got {status} {body}"
    );
}

/// Property-based fuzzing of the server's request parsing over real HTTP: random routes,
/// repository names and bodies (random text, random JSON, near-valid requests with random
/// fields). Every request gets an answer below 500, the server stays up, and anything it
/// writes (a random but valid repository name can be created) stays under the token's own
/// workspace prefix. `HYPHA_FUZZ_CASES` raises the number of cases for longer runs.
#[test]
fn fuzzed_requests_never_break_the_server() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = TestEnv::new();
    let head = seeded(&env, "fuzz");
    let token = env.token().to_owned();
    let server = env.server.url().to_owned();
    let before = server_tree(&env);
    let cases: u32 = std::env::var("HYPHA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);

    let segment = prop_oneof![
        Just("ws".to_owned()),
        Just("fuzz".to_owned()),
        "[a-z0-9._%-]{1,12}",
        "[!-~]{0,20}",
    ];
    let route_name = prop_oneof![
        Just("info".to_owned()),
        Just("refs".to_owned()),
        Just("packs".to_owned()),
        Just("uploads".to_owned()),
        Just("update".to_owned()),
        Just("head".to_owned()),
        Just("create".to_owned()),
        "[!-~]{0,12}",
    ];
    let name = prop_oneof![
        "refs/heads/[a-z./~^:?*\\[@{}-]{0,20}",
        "[\\PC]{0,40}",
        Just(format!("pack-{}", "a".repeat(40))),
    ];
    let oid = prop_oneof![
        Just(Some(head.clone())),
        Just(None),
        "[0-9a-fA-Z]{0,41}".prop_map(Some)
    ];
    let body = prop_oneof![
        "[\\PC]{0,200}",
        (name.clone(), oid.clone(), oid, any::<bool>()).prop_map(|(name, old, new, atomic)| {
            serde_json::json!({
                "packs": [],
                "updates": [{"ref": name, "old": old, "new": new}],
                "atomic": atomic,
            })
            .to_string()
        }),
        (name.clone(), any::<u64>(), any::<u64>()).prop_map(|(name, pack_size, idx_size)| {
            serde_json::json!({"packs": [{"name": name, "pack_size": pack_size, "idx_size": idx_size}]})
                .to_string()
        }),
        name.clone().prop_map(|n| serde_json::json!({"symref": n}).to_string()),
        proptest::collection::vec(name, 0..5)
            .prop_map(|known| serde_json::json!({"known": known}).to_string()),
        Just(String::new()),
    ];
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &(segment.clone(), segment, route_name, body),
        |(ws, alias, route, body)| {
            let path = format!("/{ws}/git/{alias}/remote/v1/{route}");
            let (status, answer) = post(&server, &path, Some(&token), &body);
            *statuses.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(
                status != 0 && status < 500,
                "POST {path} with {body:?}: {status} {answer}"
            );
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}\n{}", env.server.log_tail());
    }
    let after = server_tree(&env);
    for file in after.iter().filter(|f| !before.contains(f)) {
        assert!(
            file.0.starts_with(&format!("{WS}/artifacts/")),
            "written outside the workspace's prefix: {file:?}"
        );
    }
    assert_server_healthy(&env, "fuzz");
    eprintln!("statuses: {:?}", statuses.borrow());
    figures("fuzz_http", &[("inputs", cases as usize)]);
}

/// Issue 13, item 3: an `update` that would point a ref at an object no pack of the remote
/// holds is rejected for that ref, in git's words (receive-pack's "missing necessary
/// objects"), alone or in an atomic batch with a valid ref, and writes nothing: every later
/// clone still works. Moving a branch to a commit the remote already has is still fine.
#[test]
fn update_to_an_object_the_remote_lacks_is_rejected() {
    let env = TestEnv::new();
    let head = seeded(&env, "dangling");
    let token = env.token().to_owned();
    let server = env.server.url().to_owned();
    let made_up = "0123456789abcdef0123456789abcdef01234567";
    let before = server_tree(&env);
    for (atomic, updates) in [
        (
            false,
            serde_json::json!([{"ref": "refs/heads/x", "old": null, "new": made_up}]),
        ),
        (
            true,
            serde_json::json!([
                {"ref": "refs/heads/y", "old": null, "new": head},
                {"ref": "refs/heads/main", "old": head, "new": made_up},
            ]),
        ),
    ] {
        let body = serde_json::json!({"packs": [], "updates": updates, "atomic": atomic});
        let (status, answer) = post(
            &server,
            &route("dangling", "update"),
            Some(&token),
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("json answer");
        let results = answer["results"].as_array().expect("results");
        let last = results.last().expect("a result");
        assert_eq!(last["status"], "rejected", "{answer}");
        let detail = last["detail"].as_str().expect("detail");
        assert!(
            detail.contains("missing necessary objects") && detail.contains(made_up),
            "{detail}"
        );
        assert!(
            results.iter().all(|r| r["status"] == "rejected"),
            "{answer}"
        );
    }
    assert_eq!(server_tree(&env), before, "nothing written");

    let clone = env.path("dangling-clone");
    env.clone(&env.url("dangling"), &clone);
    assert_eq!(env.rev(&clone, "HEAD"), head);
    // A branch at a commit the remote has (no pack uploaded) is accepted.
    env.git(&clone, &["push", "-q", "origin", "HEAD:refs/heads/other"]);
    let listed = env.ls_remote(&clone, &env.url("dangling"));
    assert!(
        listed.contains(&format!("{head}\trefs/heads/other")),
        "{listed}"
    );
    assert_server_healthy(&env, "dangling");
}

/// `PUT` of `body` to a presigned transfer from an API answer (with its signed headers), by
/// curl, so the same code reaches the local store and S3 alike. Returns the status.
fn put_presigned(transfer: &serde_json::Value, body: &[u8], dir: &Path) -> u16 {
    let file = dir.join(format!("body-{}", body.len()));
    std::fs::write(&file, body).expect("write body");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"]);
    if let Some(headers) = transfer["headers"].as_object() {
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("content-length") {
                cmd.arg("-H")
                    .arg(format!("{name}: {}", value.as_str().unwrap_or("")));
            }
        }
    }
    cmd.arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(transfer["url"].as_str().expect("url"));
    let out = cmd.output().expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Issue 21: a writer cannot replace a stored pack. `uploads` refuses the name of a live
/// pack (it answered 200 and the PUT of zeroed bytes overwrote it: every clone failed), and
/// a presigned `PUT` never replaces a pack or idx that is there (a URL handed out while a
/// pack was pending would otherwise overwrite it once `update` made it live).
#[test]
fn stored_packs_are_never_replaced() {
    let env = TestEnv::new();
    let head = seeded(&env, "live");
    let server = env.server.url().to_owned();
    let packs = env.remote_packs("live");
    let live = packs
        .keys()
        .next()
        .expect("a pack")
        .trim_end_matches(".pack")
        .to_owned();
    let size = packs.values().next().copied().expect("size");
    let uploads = |name: &str, pack_size: u64| {
        let body = serde_json::json!({"packs": [{"name": name, "pack_size": pack_size, "idx_size": 1100}]});
        post(
            &server,
            &route("live", "uploads"),
            Some(env.token()),
            &body.to_string(),
        )
    };
    let (status, body) = uploads(&live, size);
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body.contains("already in the repository"), "{body}");

    // A pending pack: its first upload lands, a second one with other bytes does not.
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let (status, body) = uploads(&format!("pack-{hex}"), 1000);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("uploads answer");
    let pack = &answer["uploads"][0]["pack"];
    let dir = env.mkdir("bodies");
    assert_eq!(put_presigned(pack, &noise(1000, 1), &dir), 200);
    let again = put_presigned(pack, &vec![0u8; 1000], &dir);
    assert!(
        (400..500).contains(&again),
        "a second PUT replaced a stored pack: {again}"
    );

    // The committed history is whole.
    let clone = env.path("clone");
    env.clone(&env.url("live"), &clone);
    assert_eq!(env.rev(&clone, "HEAD"), head);
    env.fsck(&clone);
}
