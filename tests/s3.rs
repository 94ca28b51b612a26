//! The S3 backend against real S3 servers (issue 3).
//!
//! - s3s-fs checks SigV4 signatures, presigned-URL expiry and `Range`, but its conditional
//!   writes are check-then-write: every test that needs a strict server but no race runs there.
//! - moto applies conditional writes atomically but checks no signatures.
//!
//! The conformance suites (`storage::conformance`, `repo::conformance`, with the refs
//! compare-and-swap race of 16 replicas) run on both servers as the library's own unit tests,
//! with the same settings (`src/storage/test_services.rs`). Here: what needs the public API
//! only or the built binaries.
//!
//! Both come from `scripts/s3-services.sh start` (test.sh and CI run it), which writes
//! `HYPHA_TEST_S3_ENDPOINT`, `HYPHA_TEST_S3_BUCKET`, `HYPHA_TEST_S3_DIR`,
//! `HYPHA_TEST_MOTO_ENDPOINT`, `HYPHA_TEST_MOTO_BUCKET` and the `AWS_*` credentials. When a
//! server's endpoint is unset, its tests print a note and pass, so that a plain `cargo test`
//! on a machine without the services still works; under CI (`CI` set) they fail instead.
//! Every test works under its own random key prefix, so runs share the buckets.

use bytes::Bytes;
use hypha_git::storage::s3::{self, multipart};
use hypha_git::storage::{Backend, PresignMethod, PutMode, S3};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

// `Server`: the S3 test servers' settings, the same file the library's own S3 tests use.
#[path = "../src/storage/test_services.rs"]
mod test_services;
use test_services::Server;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Send a presigned request with exactly its headers and `body`.
async fn send(
    req: &hypha_git::storage::PresignedTransfer,
    body: Option<Vec<u8>>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("method");
    let mut builder = http().request(method, &req.url);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    builder.send().await.expect("request reaches the server")
}

/// A PUT the store must refuse: a 403, or the store cutting the connection before reading the
/// body (s3s-fs answers as soon as the signature fails, and the client may still be writing).
async fn assert_refused(req: &hypha_git::storage::PresignedTransfer, body: Vec<u8>) {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("method");
    let mut builder = http().request(method, &req.url).body(body);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    match builder.send().await {
        Ok(resp) => assert_eq!(resp.status(), 403, "a wrong length is refused"),
        Err(e) => assert!(e.is_request() || e.is_body(), "refused by closing: {e}"),
    }
}

#[tokio::test]
async fn conditional_writes_on_s3s_fs() {
    let Some(store) = Server::S3sFs.store("conditional") else {
        return;
    };
    let etag = store
        .put("r", Bytes::from_static(b"1\n"), PutMode::IfNoneMatch)
        .await
        .expect("create");
    assert!(matches!(
        store
            .put("r", Bytes::from_static(b"2\n"), PutMode::IfNoneMatch)
            .await,
        Err(hypha_git::storage::Error::AlreadyExists { .. })
    ));
    let etag2 = store
        .put(
            "r",
            Bytes::from_static(b"2\n"),
            PutMode::IfMatch(etag.clone()),
        )
        .await
        .expect("replace");
    assert!(matches!(
        store
            .put(
                "r",
                Bytes::from_static(b"3\n"),
                PutMode::IfMatch(etag.clone())
            )
            .await,
        Err(hypha_git::storage::Error::Conflict { .. })
    ));
    assert!(matches!(
        store.delete("r", Some(&etag)).await,
        Err(hypha_git::storage::Error::Conflict { .. })
    ));
    store.delete("r", Some(&etag2)).await.expect("delete");
}

#[tokio::test]
async fn listing_follows_continuation_tokens() {
    let Some(store) = Server::S3sFs.store("pagination") else {
        return;
    };
    let store = store.with_page_size(2);
    for i in 0..7 {
        store
            .put(
                &format!("dir/k{i}"),
                Bytes::from(vec![b'x'; i]),
                PutMode::Overwrite,
            )
            .await
            .expect("put");
    }
    store
        .put("dirt", Bytes::new(), PutMode::Overwrite)
        .await
        .expect("put");
    let listed = store.list("dir/").await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        ["dir/k0", "dir/k1", "dir/k2", "dir/k3", "dir/k4", "dir/k5", "dir/k6"]
    );
    assert_eq!(
        listed.iter().map(|m| m.size).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6]
    );
    assert_eq!(store.list("").await.expect("list all").len(), 8);

    // Listed again, every page is asked at once, each from where it started last time
    // (`StartAfter`); keys added inside a page and keys removed are listed right all the same.
    let keys_of = |listed: Vec<hypha_git::storage::ObjectMeta>| -> Vec<String> {
        listed.into_iter().map(|m| m.key).collect()
    };
    assert_eq!(keys_of(store.list("dir/").await.expect("list")), keys);
    for added in ["dir/k1a", "dir/k1b", "dir/k1c", "dir/k7"] {
        store
            .put(added, Bytes::new(), PutMode::Overwrite)
            .await
            .expect("put");
    }
    store.delete("dir/k4", None).await.expect("delete");
    store.delete("dir/k5", None).await.expect("delete");
    assert_eq!(
        keys_of(store.list("dir/").await.expect("list")),
        [
            "dir/k0", "dir/k1", "dir/k1a", "dir/k1b", "dir/k1c", "dir/k2", "dir/k3", "dir/k6",
            "dir/k7"
        ]
    );
    assert_eq!(
        keys_of(store.list("dir/").await.expect("list")).len(),
        9,
        "and again, from the new pages"
    );
}

/// Presigned URLs on a server that checks signatures: PUT with the signed length, GET whole
/// and by range, and refusals for a wrong length, a tampered signature, an expired URL.
#[tokio::test]
async fn presigned_urls_are_checked_by_s3s_fs() {
    let Some(store) = Server::S3sFs.store("presign") else {
        return;
    };
    let key = "ws/artifacts/r/.git/objects/pack/pack-1.pack";
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let put = store
        .presign(
            key,
            PresignMethod::Put,
            Duration::from_secs(300),
            Some(body.len() as u64),
        )
        .await
        .expect("presign put");
    assert_eq!(
        put.headers.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Content-Length", "Content-Type"],
        "exactly the signed headers"
    );

    // Another length than the signed one is refused and stores nothing.
    let mut short = put.clone();
    short
        .headers
        .insert("Content-Length".into(), (body.len() - 1).to_string());
    assert_refused(&short, body[1..].to_vec()).await;
    assert!(store.head(key).await.is_err());

    let resp = send(&put, Some(body.clone()), &[]).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(store.head(key).await.expect("stored").size, 100_000);

    let get = store
        .presign(key, PresignMethod::Get, Duration::from_secs(300), None)
        .await
        .expect("presign get");
    assert!(get.headers.is_empty());
    let resp = send(&get, None, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").to_vec(), body);

    let resp = send(&get, None, &[("Range", "bytes=1000-1999")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes 1000-1999/100000")
    );
    assert_eq!(resp.bytes().await.expect("body"), body[1000..2000]);
    let resp = send(&get, None, &[("Range", "bytes=-20")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.expect("body"), body[body.len() - 20..]);

    // A changed signature, a changed key, an expired URL: all 403.
    let mut tampered = get.clone();
    let sig_at = tampered.url.find("X-Amz-Signature=").expect("signed url") + 16;
    let flipped = if &tampered.url[sig_at..=sig_at] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.url.replace_range(sig_at..=sig_at, flipped);
    assert_eq!(send(&tampered, None, &[]).await.status(), 403, "tampered");
    let mut other_key = get.clone();
    other_key.url = other_key.url.replace("pack-1.pack", "pack-2.pack");
    assert_eq!(send(&other_key, None, &[]).await.status(), 403, "other key");
    let expired = store
        .presign_get_at(
            key,
            SystemTime::now() - Duration::from_secs(120),
            Duration::from_secs(60),
        )
        .await
        .expect("presign");
    assert_eq!(send(&expired, None, &[]).await.status(), 403, "expired");
    // The same URL within its lifetime works: the 403 above was the expiry.
    let fresh = store
        .presign_get_at(
            key,
            SystemTime::now() - Duration::from_secs(10),
            Duration::from_secs(60),
        )
        .await
        .expect("presign");
    assert_eq!(send(&fresh, None, &[]).await.status(), 200);

    // Errors name the key and the bucket, never credentials or URLs.
    let err = store
        .presign(key, PresignMethod::Put, Duration::from_secs(60), None)
        .await
        .expect_err("a PUT needs a length");
    assert!(err.to_string().contains("pack-1.pack"), "{err}");
}

/// A pack in three parts: presigned part PUTs, completion checked against the expected sizes,
/// and abort.
#[tokio::test]
async fn multipart_upload_on_s3s_fs() {
    let Some(store) = Server::S3sFs.store("multipart") else {
        return;
    };
    let mp = store.multipart().expect("S3 has multipart uploads");
    let key = "ws/artifacts/r/.git/objects/pack/pack-big.pack";
    let total = 2 * multipart::MIN_PART_SIZE + 1234;
    let body: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
    let sizes = multipart::part_sizes(total, multipart::MIN_PART_SIZE);
    assert_eq!(sizes.len(), 3);

    let plan = mp
        .start_upload(
            key,
            total,
            multipart::MIN_PART_SIZE,
            Duration::from_secs(300),
        )
        .await
        .expect("start");
    assert_eq!(plan.parts.len(), 3);
    assert_eq!(plan.part_size, multipart::MIN_PART_SIZE);
    let id = plan.upload_id.clone();
    let mut offset = 0usize;
    for (i, part) in plan.parts.iter().enumerate() {
        let len = sizes[i] as usize;
        assert_eq!(part.headers.get("Content-Length"), Some(&len.to_string()));
        if i == 1 {
            // Before part 2 is there, completion names it and leaves the upload open.
            let err = mp
                .complete_upload(key, &id, &sizes, false)
                .await
                .expect_err("incomplete");
            // What a resumed transfer learns: part 1 is there, with its size.
            let held = mp.list_parts(key, &id).await.expect("list parts");
            assert_eq!(held.into_iter().collect::<Vec<_>>(), [(1, sizes[0])]);
            assert!(err.to_string().contains("part 2"), "{err}");
        }
        // A part of another length than signed is refused.
        if i == 0 {
            let mut wrong = part.clone();
            wrong
                .headers
                .insert("Content-Length".into(), (len - 1).to_string());
            assert_refused(&wrong, body[offset..offset + len - 1].to_vec()).await;
        }
        let resp = send(part, Some(body[offset..offset + len].to_vec()), &[]).await;
        assert!(
            resp.status().is_success(),
            "part {}: {}",
            i + 1,
            resp.status()
        );
        offset += len;
    }
    let err = mp
        .complete_upload(key, &id, &[sizes[0], sizes[1], sizes[2] + 1], false)
        .await
        .expect_err("sizes differ");
    assert!(err.to_string().contains("part 3"), "{err}");
    assert!(
        store.head(key).await.is_err(),
        "nothing visible before completion"
    );
    mp.complete_upload(key, &id, &sizes, false)
        .await
        .expect("complete");
    assert_eq!(store.head(key).await.expect("completed").size, total);
    let tail = store
        .get_range(key, total - 100..total)
        .await
        .expect("range");
    assert_eq!(tail.to_vec(), body[body.len() - 100..]);

    let abandoned = mp.create_upload(key).await.expect("create");
    mp.abort_upload(key, &abandoned).await.expect("abort");
}

/// Abandoned uploads are found and aborted (s3s-fs cannot list uploads; moto can).
#[tokio::test]
async fn stale_multipart_uploads_are_aborted_on_moto() {
    let Some(store) = Server::Moto.store("stale-uploads") else {
        return;
    };
    let mp = store.multipart().expect("multipart");
    let id = mp.create_upload("ws/a/pack.pack").await.expect("create");
    let listed = mp.list_uploads("ws/").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "ws/a/pack.pack");
    assert_eq!(listed[0].upload_id, id);
    let other = mp.create_upload("ws/b/pack.pack").await.expect("create");
    mp.abort_upload("ws/b/pack.pack", &other)
        .await
        .expect("abort");
    mp.abort_upload("ws/b/pack.pack", &other)
        .await
        .expect("aborting a gone upload is fine");
    // moto reports every upload as started in 2010, so only "older than now" is testable.
    assert_eq!(
        mp.abort_stale_uploads("ws/", Duration::ZERO)
            .await
            .expect("abort stale"),
        1
    );
    assert!(mp.list_uploads("ws/").await.expect("list").is_empty());
}

// ------------------------------------------------------------------------------------------
// Hypha-compatible bytes after real pushes.

/// Hermetic git: cleared environment, our binaries first on `PATH`.
struct Git {
    home: PathBuf,
    path: std::ffi::OsString,
    token: String,
    /// The server's stderr, shown when a command fails.
    server_log: PathBuf,
}

impl Git {
    fn run(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "A U Thor")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_NAME", "A U Thor")
            .env("GIT_COMMITTER_EMAIL", "author@example.com")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .env("HYPHA_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}\nstdout: {}\nstderr: {}\nserver log:\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.server_log).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `git hypha serve` on the S3 store; killed on drop.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &s3::Config, secret: &str, log: &Path) -> ServeProcess {
    use std::io::BufRead;
    let mut command = Command::new(env!("CARGO_BIN_EXE_git-hypha"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--s3-path-style"])
        .args([
            "--s3-endpoint",
            config.endpoint.as_deref().expect("endpoint"),
        ])
        .args(["--s3-bucket", &config.bucket])
        .args(["--s3-prefix", config.prefix.as_deref().expect("prefix")])
        .env("HYPHA_JWT_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("server log file"));
    let mut child = command.spawn().expect("start git-hypha serve");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("readable first line");
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("docs/design.md §7 first line, got {first:?}"))
        .to_owned();
    ServeProcess { child, url }
}

/// docs/design.md §3 and issue 3: after pushes, branch and tag creation and deletion through the real
/// helper and server, every key in the bucket is one Hypha writes or reads, with Hypha's bytes;
/// and the stored `.git/` copied to disk as is is a repository git accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_are_what_hypha_writes() {
    let Some(config) = Server::S3sFs.config("hypha-bytes") else {
        return;
    };
    let store = S3::new(&config).expect("store");
    let secret = format!("s3-test-{}", hex::encode(rand::random::<[u8; 8]>()));
    let scratch = tempfile::tempdir().expect("tempdir");
    let server_log = scratch.path().join("serve.log");
    let server = serve(&config, &secret, &server_log);
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".gitconfig"),
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
    )
    .expect("gitconfig");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_git-remote-hypha"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut dirs = vec![bin_dir];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let git = Git {
        home,
        path: std::env::join_paths(dirs).expect("PATH"),
        token: hypha_git::auth::mint(
            secret.as_bytes(),
            "s3-test",
            &[("ws".to_owned(), hypha_git::auth::Permission::ReadWrite)],
            Duration::from_secs(600),
        ),
        server_log,
    };
    let url = format!("hypha::{}/ws/bytes", server.url);
    let hypha = Command::new(env!("CARGO_BIN_EXE_git-hypha"))
        .args(["create", &url])
        .env("HYPHA_TOKEN", &git.token)
        .output()
        .expect("git hypha create");
    assert!(hypha.status.success(), "{hypha:?}");

    let src = scratch.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    let s = src.as_path();
    git.run(s, &["init", "-q"]);
    let commit = |name: &str| {
        std::fs::write(s.join(name), format!("{name}\n").repeat(1000)).expect("write");
        git.run(s, &["add", name]);
        git.run(s, &["commit", "-q", "-m", name]);
    };
    commit("one");
    git.run(s, &["remote", "add", "origin", &url]);
    git.run(s, &["push", "-q", "origin", "main"]);
    git.run(s, &["checkout", "-q", "-b", "feature"]);
    commit("two");
    git.run(s, &["push", "-q", "origin", "feature"]);
    git.run(s, &["tag", "-a", "-m", "release", "v1", "main"]);
    git.run(s, &["tag", "light", "feature"]);
    git.run(s, &["push", "-q", "origin", "--tags"]);
    git.run(s, &["push", "-q", "origin", "--delete", "feature", "light"]);
    git.run(s, &["checkout", "-q", "main"]);
    commit("three");
    git.run(s, &["push", "-q", "origin", "main"]);

    let base = "ws/artifacts/bytes/.git/";
    let listed = store.list("").await.expect("list bucket prefix");
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for meta in &listed {
        let rel = meta
            .key
            .strip_prefix(base)
            .unwrap_or_else(|| panic!("{}: outside the repository's .git/", meta.key));
        let body = store.get(&meta.key).await.expect("get").body.to_vec();
        files.insert(rel.to_owned(), body);
    }

    let rev = |what: &str| git.run(s, &["rev-parse", what]).trim().to_owned();
    assert_eq!(files["HEAD"], b"ref: refs/heads/main\n");
    let refs: BTreeMap<&str, &[u8]> = files
        .iter()
        .filter(|(k, _)| k.starts_with("refs/"))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let main = format!("{}\n", rev("main"));
    // The annotated tag's ref holds the tag object, not the commit (no `^{}` objects).
    let v1 = format!("{}\n", rev("v1"));
    assert_ne!(rev("v1"), rev("v1^{commit}"));
    assert_eq!(
        refs,
        BTreeMap::from([
            ("refs/heads/main", main.as_bytes()),
            ("refs/tags/v1", v1.as_bytes()),
        ]),
        "nothing but live refs under .git/refs/, deleted ones gone"
    );

    let mut packs = 0;
    for (rel, body) in &files {
        match rel.as_str() {
            "HEAD" | "objects/pack/.gitkeep" => {}
            r if r.starts_with("refs/") => {}
            r if r.starts_with("hypha-remote/") => {}
            r if r.starts_with("objects/pack/pack-") && r.ends_with(".pack") => {
                packs += 1;
                let name = &r["objects/pack/".len()..r.len() - ".pack".len()];
                assert!(hypha_git::api::is_valid_pack_name(name), "{r}");
                assert_eq!(&body[..8], b"PACK\0\0\0\x02", "{r}: pack version 2");
                let idx = files
                    .get(&format!("objects/pack/{name}.idx"))
                    .unwrap_or_else(|| panic!("{r} has no .idx"));
                assert_eq!(&idx[..8], b"\xfftOc\0\0\0\x02", "{r}: idx version 2");
                assert_eq!(
                    idx[idx.len() - 40..idx.len() - 20],
                    body[body.len() - 20..],
                    "{r}: the idx names this pack's checksum"
                );
            }
            r if r.starts_with("objects/pack/pack-") && r.ends_with(".idx") => {
                assert!(
                    files.contains_key(&r.replace(".idx", ".pack")),
                    "{r} without its pack"
                );
            }
            other => panic!(
                "{other}: not a key of docs/design.md §3 (private objects belong under hypha-remote/)"
            ),
        }
    }
    // main, feature, the annotated tag object, main again.
    assert_eq!(packs, 4, "one pack per push that sent objects");

    // The stored `.git/` as plain files is a repository git accepts as is.
    let bare = scratch.path().join("stored.git");
    for (rel, body) in &files {
        let path = bare.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, body).expect("write");
    }
    let b = bare.as_path();
    git.run(b, &["--git-dir=.", "fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        git.run(
            b,
            &[
                "--git-dir=.",
                "for-each-ref",
                "--format=%(objectname) %(refname)"
            ]
        ),
        git.run(
            s,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/heads/main",
                "refs/tags/v1"
            ]
        )
    );
    assert_eq!(
        git.run(b, &["--git-dir=.", "symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
}
