//! The client operations as a library caller runs them (docs/design.md §2, "Client
//! operations"): `helper::push`, `helper::fetch` (whole packs, and shallow by range) and `gc`
//! against a real `git hypha serve` on `127.0.0.1:0`, on repositories real git made, and the
//! LFS agent's `upload` and `download` on objects the server's batch route hands out. Each
//! `Outcome` is checked against what the server lists or serves afterwards, so the numbers an
//! operation reports are the ones that happened. (tests/e2e drives the same code only through
//! git and git-lfs.)

use hypha_git::api::{PacksRequest, PacksResponse, RefsResponse, Route};
use hypha_git::client::Client;
use hypha_git::gc;
use hypha_git::helper::protocol::{FetchSpec, PushSpec, PushStatus};
use hypha_git::helper::{fetch, push};
use hypha_git::lfs_agent::{self, download, protocol::Action, upload};
use hypha_git::progress::Progress;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `git hypha serve` on local disk; killed on drop.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &Path, secret: &str, extra: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_git-hypha"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra)
        .env("HYPHA_JWT_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start git-hypha serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = lines.next().expect("a first line").expect("readable");
    std::thread::spawn(move || for _ in lines {});
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {first:?}"))
        .to_owned();
    Serve { child, url }
}

/// Hermetic git: its own HOME, no system config, fixed author and dates.
struct Git {
    home: PathBuf,
}

impl Git {
    fn run(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "A U Thor")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_NAME", "A U Thor")
            .env("GIT_COMMITTER_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn init(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir");
        self.run(dir, &["init", "-q", "-b", "main"]);
        dir.join(".git")
    }

    fn commit(&self, dir: &Path, name: &str) -> String {
        std::fs::write(dir.join(name), format!("{name}\n").repeat(50)).expect("write");
        self.run(dir, &["add", name]);
        self.run(dir, &["commit", "-q", "-m", name]);
        self.run(dir, &["rev-parse", "HEAD"])
    }
}

async fn packs(client: &Client) -> PacksResponse {
    client
        .call(Route::Packs, &PacksRequest::default())
        .await
        .expect("packs listing")
}

async fn refs(client: &Client) -> RefsResponse {
    client
        .call(Route::Refs, &client.refs_request(false))
        .await
        .expect("refs listing")
}

/// A token for workspace `ws` signed with `secret`, and the repository `ws/<alias>` created.
fn create(server: &Serve, secret: &str, alias: &str) -> (String, String) {
    let token = hypha_git::auth::mint(
        secret.as_bytes(),
        "ops",
        &[("ws".to_owned(), hypha_git::auth::Permission::ReadWrite)],
        Duration::from_secs(600),
    );
    let url = format!("hypha::{}/ws/{alias}", server.url);
    let created = Command::new(env!("CARGO_BIN_EXE_git-hypha"))
        .args(["create", &url])
        .env("HYPHA_TOKEN", &token)
        .output()
        .expect("git hypha create");
    assert!(created.status.success(), "{created:?}");
    (token, url)
}

fn push_main(force: bool) -> Vec<PushSpec> {
    vec![PushSpec {
        force,
        src: "refs/heads/main".into(),
        dst: "refs/heads/main".into(),
    }]
}

/// A fetch of `tip` as `refs/heads/main`, against the listing as it is now.
async fn fetch_main(
    client: &Client,
    git_dir: &Path,
    tip: &str,
    options: &fetch::Options,
) -> fetch::Outcome {
    let wants = vec![FetchSpec {
        oid: tip.to_owned(),
        name: "refs/heads/main".into(),
    }];
    let listed = refs(client).await;
    fetch::run(
        client,
        git_dir,
        &wants,
        &listed,
        options,
        Progress::hidden(),
    )
    .await
    .expect("fetch")
}

fn main_ok(outcome: &push::Outcome) {
    assert_eq!(
        outcome.statuses,
        vec![("refs/heads/main".to_owned(), PushStatus::Ok)],
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_reports_what_it_did() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let secret = format!("ops-{}", hex::encode(rand::random::<[u8; 8]>()));
    let server = serve(&scratch.path().join("store"), &secret, &[]);
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let git = Git { home };
    let (token, url) = create(&server, &secret, "ops");
    let env = HashMap::from([("HYPHA_TOKEN".to_owned(), token)]);
    let remote = hypha_git::config::resolve(&url, &env, None).expect("url");
    let client = Client::new(remote, hypha_git::config::env_token(&env)).expect("client");
    let hidden = Progress::hidden;

    // A first push: one self-contained pack, the one the server lists now.
    let work = scratch.path().join("work");
    let work_git = git.init(&work);
    git.commit(&work, "a");
    let first_tip = git.commit(&work, "b");
    let listed = refs(&client).await;
    let options = push::Options::default();
    let pushed = push::run(
        &client,
        &work_git,
        &listed,
        &push_main(false),
        &options,
        hidden(),
    )
    .await
    .expect("first push");
    main_ok(&pushed);
    let sent = pushed.pack.clone().expect("a pack was sent");
    assert!(!sent.thin, "nothing to be thin against: {sent:?}");
    let listing = packs(&client).await;
    assert_eq!(listing.packs.len(), 1, "{listing:?}");
    assert_eq!(
        (&listing.packs[0].name, listing.packs[0].pack_size),
        (&sent.name, sent.size),
        "the outcome names the stored pack and its size"
    );

    // A dry run decides the statuses and sends nothing.
    git.commit(&work, "c");
    let listed = refs(&client).await;
    let dry = push::Options {
        dry_run: true,
        ..push::Options::default()
    };
    let dried = push::run(
        &client,
        &work_git,
        &listed,
        &push_main(false),
        &dry,
        hidden(),
    )
    .await
    .expect("dry run");
    main_ok(&dried);
    assert_eq!(dried.pack, None, "a dry run sends no pack");
    assert_eq!(packs(&client).await.packs.len(), 1);

    // A fetch into an empty repository takes the one pack, and says how many bytes.
    let other = scratch.path().join("other");
    let other_git = git.init(&other);
    let fetched = fetch_main(&client, &other_git, &first_tip, &fetch::Options::default()).await;
    assert_eq!(
        (fetched.packs, fetched.pack_bytes, fetched.by_range),
        (1, listing.packs[0].pack_size, None),
        "{fetched:?}"
    );
    let lock = fetched
        .lock
        .expect("a new pack, kept until git writes refs");
    assert!(lock.exists(), "{}", lock.display());
    std::fs::remove_file(&lock).expect("git removes the lock");
    git.run(&other, &["cat-file", "-e", &first_tip]);

    // The second push sends the new commit's pack; the next fetch takes only that one.
    let listed = refs(&client).await;
    let pushed = push::run(
        &client,
        &work_git,
        &listed,
        &push_main(false),
        &options,
        hidden(),
    )
    .await
    .expect("second push");
    main_ok(&pushed);
    let second = pushed.pack.expect("a pack was sent");
    let listing = packs(&client).await;
    let stored = listing
        .packs
        .iter()
        .find(|p| p.name == second.name)
        .unwrap_or_else(|| panic!("{second:?} not in {listing:?}"));
    if !second.thin {
        assert_eq!(stored.pack_size, second.size, "{second:?}");
    }
    let tip = git.run(&work, &["rev-parse", "HEAD"]);
    let fetched = fetch_main(&client, &other_git, &tip, &fetch::Options::default()).await;
    assert_eq!(
        (fetched.packs, fetched.pack_bytes),
        (1, stored.pack_size),
        "only the pack not fetched before: {fetched:?}"
    );
    if let Some(lock) = fetched.lock {
        std::fs::remove_file(lock).expect("git removes the lock");
    }
    git.run(&other, &["cat-file", "-e", &tip]);

    // A shallow fetch reads by range and downloads no whole pack.
    let shallow = scratch.path().join("shallow");
    let shallow_git = git.init(&shallow);
    let depth_one = fetch::Options {
        shape: fetch::Shape {
            depth: Some(1),
            ..fetch::Shape::default()
        },
        ..fetch::Options::default()
    };
    let fetched = fetch_main(&client, &shallow_git, &tip, &depth_one).await;
    let by_range = fetched.by_range.expect("a shallow fetch reads by range");
    assert_eq!((fetched.packs, fetched.pack_bytes), (0, 0), "{fetched:?}");
    // The tip commit, its tree and its three blobs.
    assert_eq!(by_range.objects, 5, "{by_range:?}");
    assert_eq!(by_range.boundaries, 1, "{by_range:?}");
    assert!(by_range.bytes_read > 0, "{by_range:?}");
    let boundary = std::fs::read_to_string(shallow_git.join("shallow")).expect("shallow file");
    assert_eq!(boundary.trim(), tip);

    // gc merges the two packs into one, the one listed afterwards.
    let merged = gc::run(
        &client,
        &gc::Options {
            mode: gc::Mode::All,
        },
        hidden(),
    )
    .await
    .expect("gc");
    let gc::Outcome::Compacted {
        merged, kept, pack, ..
    } = merged
    else {
        panic!("nothing compacted: {merged:?}");
    };
    assert_eq!((merged, kept), (2, 0));
    let listing = packs(&client).await;
    assert_eq!(
        listing.packs.iter().map(|p| &p.name).collect::<Vec<_>>(),
        vec![&pack]
    );
}

/// One object through the batch route: the action it hands out for `operation` (the agent's
/// transfer offered, as git-lfs offers it), or `None` when the server needs nothing.
async fn batch(
    http: &reqwest::Client,
    lfs: &str,
    token: &str,
    operation: &str,
    oid: &str,
    size: u64,
) -> Option<(Action, Option<Action>)> {
    let body = serde_json::json!({
        "operation": operation,
        "transfers": ["hypha", "basic"],
        "objects": [{ "oid": oid, "size": size }],
        "hash_algo": "sha256",
    });
    let answer: serde_json::Value = http
        .post(format!("{lfs}/objects/batch"))
        .bearer_auth(token)
        .header("Content-Type", "application/vnd.git-lfs+json")
        .json(&body)
        .send()
        .await
        .expect("batch")
        .error_for_status()
        .expect("batch answered")
        .json()
        .await
        .expect("batch answer");
    let object = &answer["objects"][0];
    assert!(object.get("error").is_none(), "{answer}");
    let action = |name: &str| {
        object["actions"]
            .get(name)
            .map(|a| serde_json::from_value::<Action>(a.clone()).expect("action"))
    };
    Some((action(operation)?, action("verify")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_uploads_and_downloads_report_what_they_did() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let secret = format!("ops-{}", hex::encode(rand::random::<[u8; 8]>()));
    // Parts of 5 MiB (S3's smallest) above 5 MiB, as tests/e2e/lfs_parts.rs serves.
    let parts = [
        "--multipart-threshold",
        "5242880",
        "--multipart-part-size",
        "5242880",
    ];
    let server = serve(&scratch.path().join("store"), &secret, &parts);
    let (token, _) = create(&server, &secret, "lfs");
    let lfs = format!("{}/ws/git/lfs/info/lfs", server.url);
    let http = reqwest::Client::new();
    let git_dir = scratch.path().join("repo.git");
    std::fs::create_dir_all(&git_dir).expect("git dir");
    let options_up = upload::Options::default();
    let options_down = download::Options::default();
    let counter = hypha_git::progress::Bar::hidden;

    // A small object: one presigned PUT, then git-lfs's verify.
    let small: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
    let small_path = scratch.path().join("small");
    std::fs::write(&small_path, &small).expect("write");
    let small_oid = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&small));
    let size = small.len() as u64;
    let (put, verify) = batch(&http, &lfs, &token, "upload", &small_oid, size)
        .await
        .expect("an upload action");
    let session = lfs_agent::Session::new(
        hypha_git::api::lfs::Operation::Upload,
        None,
        git_dir.clone(),
    );
    let object = upload::Object {
        oid: &small_oid,
        size,
        path: &small_path,
    };
    let bar = counter();
    let sent = upload::run(&session, &object, &put, &options_up, &bar)
        .await
        .expect("small upload");
    assert_eq!(sent, upload::Outcome::Whole);
    assert_eq!(bar.position(), size);
    let verify = verify.expect("a verify action");
    let mut req = http
        .post(&verify.href)
        .json(&serde_json::json!({ "oid": small_oid, "size": size }));
    for (k, v) in &verify.header {
        req = req.header(k, v);
    }
    req.send()
        .await
        .expect("verify")
        .error_for_status()
        .expect("verified");

    // A large object: four parts of 5 MiB, sent in one round (no delta: no bases here).
    let large: Vec<u8> = (0..20 * 1024 * 1024u32 / 4)
        .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
        .collect();
    let large_path = scratch.path().join("large");
    std::fs::write(&large_path, &large).expect("write");
    let large_oid = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&large));
    let size = large.len() as u64;
    let (parts_href, _) = batch(&http, &lfs, &token, "upload", &large_oid, size)
        .await
        .expect("an upload action");
    let object = upload::Object {
        oid: &large_oid,
        size,
        path: &large_path,
    };
    let sent = upload::run(&session, &object, &parts_href, &options_up, &counter())
        .await
        .expect("large upload");
    assert_eq!(sent, upload::Outcome::Parts { sent: 4, rounds: 1 });
    assert!(
        batch(&http, &lfs, &token, "upload", &large_oid, size)
            .await
            .is_none(),
        "stored and checked: nothing more to upload"
    );

    // Down again: the small one in one GET, the large one in two ranges.
    let session = lfs_agent::Session::new(
        hypha_git::api::lfs::Operation::Download,
        None,
        git_dir.clone(),
    );
    let (get, _) = batch(
        &http,
        &lfs,
        &token,
        "download",
        &small_oid,
        small.len() as u64,
    )
    .await
    .expect("a download action");
    let got = download::run(
        &session,
        &small_oid,
        small.len() as u64,
        &get,
        &options_down,
        &counter(),
    )
    .await
    .expect("small download");
    assert_eq!((got.bytes_read, got.resumed), (small.len() as u64, 0));
    assert_eq!(std::fs::read(&got.path).expect("read"), small);

    let (get, _) = batch(&http, &lfs, &token, "download", &large_oid, size)
        .await
        .expect("a download action");
    let got = download::run(&session, &large_oid, size, &get, &options_down, &counter())
        .await
        .expect("large download");
    assert_eq!((got.bytes_read, got.resumed), (size, 0));
    assert_eq!(std::fs::read(&got.path).expect("read"), large);

    // A download cut after its first range: the record says range 0 is done, the rest of the
    // file is garbage; the next attempt reads only the second range.
    let record = got.path.with_extension("hypha-ranges");
    std::fs::write(
        &record,
        format!("size {size} range {}\n0\n", download::RANGE),
    )
    .expect("record");
    let mut cut = large.clone();
    cut[download::RANGE as usize..].fill(0);
    std::fs::write(&got.path, &cut).expect("cut file");
    let again = download::run(&session, &large_oid, size, &get, &options_down, &counter())
        .await
        .expect("resumed download");
    assert_eq!(
        (again.bytes_read, again.resumed),
        (size - download::RANGE, download::RANGE)
    );
    assert_eq!(std::fs::read(&again.path).expect("read"), large);
    assert!(!record.exists(), "the record goes once the object is whole");
}
