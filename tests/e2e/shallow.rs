//! Shallow clones and fetches (issue 14 item 1): `--depth`, `--deepen`, `--unshallow` and a
//! fetch into a shallow clone read the stored packs by range (idx files whole, entries by
//! range), so a depth-1 clone downloads a fraction of the history; `$GIT_DIR/shallow` is kept
//! as git's fetch-pack keeps it. A damaged stored pack fails the fetch in one line and leaves
//! the clone as it was.

use crate::faults::{assert_failed_cleanly, LocalState};
use crate::harness::{noise, TestEnv};
use std::path::Path;

/// Five commits, one push each (five stored packs), each adding 40 KB of incompressible data,
/// so the history is about 200 KB and its newest commit's tree still names every file.
fn history(env: &TestEnv, alias: &str) -> (String, std::path::PathBuf) {
    let url = env.create(alias);
    let src = env.init("src");
    env.git(&src, &["remote", "add", "origin", &url]);
    for i in 0..5u64 {
        std::fs::write(src.join(format!("data{i}.bin")), noise(40_000, 2 * i + 1)).expect("write");
        env.git(&src, &["add", "-A"]);
        env.git(&src, &["commit", "-q", "-m", &format!("v{i}")]);
        env.git(&src, &["push", "-q", "origin", "main"]);
    }
    (url, src)
}

fn count(env: &TestEnv, repo: &Path) -> String {
    env.git(repo, &["rev-list", "--count", "HEAD"])
        .stdout
        .trim()
        .to_owned()
}

fn shallow_lines(repo: &Path) -> Option<Vec<String>> {
    std::fs::read_to_string(repo.join(".git/shallow"))
        .ok()
        .map(|t| t.lines().map(str::to_owned).collect())
}

#[test]
fn depth_deepen_fetch_and_unshallow() {
    let env = TestEnv::new();
    let (url, src) = history(&env, "shallow");
    let stored: u64 = env.remote_packs("shallow").values().sum();
    let dir = env.mkdir("clones");
    let out = env.git(&dir, &["clone", "--depth", "1", &url, "one"]);
    assert!(!out.stderr.contains("warning"), "{out}");
    let one = dir.join("one");
    env.fsck(&one);
    assert_eq!(count(&env, &one), "1");
    assert_eq!(
        shallow_lines(&one),
        Some(vec![env.rev(&src, "HEAD")]),
        "the tip is the boundary"
    );
    // Every file of the tip is there (the checkout needs them), older versions are not: the
    // local pack is the tip's 200 KB, and no stored pack came down whole.
    let local: u64 = env.local_packs(&one).values().sum();
    assert!(
        local < stored * 11 / 10 && env.local_packs(&one).len() == 1,
        "{local} of {stored}"
    );
    for i in 0..5 {
        assert!(one.join(format!("data{i}.bin")).exists());
    }

    // A tip-only history: now with versions edited, so depth 1 is far below the whole.
    for i in 0..3u64 {
        std::fs::write(src.join("data0.bin"), noise(40_000, 200 + 2 * i)).expect("write");
        env.git(&src, &["commit", "-q", "-am", &format!("edit {i}")]);
        env.git(&src, &["push", "-q", "origin", "main"]);
    }
    let stored: u64 = env.remote_packs("shallow").values().sum();
    env.git(&dir, &["clone", "-q", "--depth", "1", &url, "tip"]);
    let tip = dir.join("tip");
    env.fsck(&tip);
    let local: u64 = env.local_packs(&tip).values().sum();
    assert!(local * 10 < stored * 7, "depth 1 takes {local} of {stored}");

    // Fetch into a shallow clone: only the new commits, the boundary stays.
    env.git(&one, &["fetch", "-q", "origin"]);
    env.git(&one, &["merge", "-q", "--ff-only", "origin/main"]);
    env.fsck(&one);
    assert_eq!(count(&env, &one), "4");
    assert_eq!(shallow_lines(&one).map(|l| l.len()), Some(1));

    // --deepen 2 moves the boundary two commits down.
    env.git(&one, &["fetch", "-q", "--deepen", "2", "origin"]);
    env.fsck(&one);
    assert_eq!(count(&env, &one), "6");
    assert_eq!(
        shallow_lines(&one),
        Some(vec![env.rev(&src, "HEAD~5")]),
        "{}",
        env.git(&one, &["log", "--oneline"])
    );

    // --unshallow: the whole history, and no shallow file.
    env.git(&one, &["fetch", "-q", "--unshallow", "origin"]);
    env.fsck(&one);
    assert_eq!(count(&env, &one), "8");
    assert_eq!(shallow_lines(&one), None);
    assert!(!one.join(".git/shallow.lock").exists());

    // --depth on an existing shallow clone counts from the tips again.
    env.git(&tip, &["fetch", "-q", "--depth", "3", "origin"]);
    env.fsck(&tip);
    assert_eq!(count(&env, &tip), "3");
    assert_eq!(shallow_lines(&tip), Some(vec![env.rev(&src, "HEAD~2")]));
}

/// A stored pack whose bytes were replaced (same size: the range reads succeed, the entries
/// are garbage): the shallow fetch fails in one line and the clone is unchanged.
#[test]
fn damaged_pack_fails_a_shallow_fetch_cleanly() {
    let env = TestEnv::new();
    let (url, src) = history(&env, "damaged");
    let dir = env.mkdir("clones");
    env.git(&dir, &["clone", "-q", "--depth", "1", &url, "one"]);
    let one = dir.join("one");
    let before = LocalState::of(&env, &one);
    let packs = env.stored_repo("damaged").join("objects/pack");
    // On every backend the test servers keep the stored files on this machine's disk (S3 and
    // Hypha on s3s-fs): the damage is done there.
    assert!(packs.exists(), "stored packs at {}", packs.display());
    // Overwrite every entry of every stored pack (header and trailer stay).
    for entry in std::fs::read_dir(&packs).expect("packs").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "pack") {
            let len = std::fs::metadata(&path).expect("size").len() as usize;
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[12..len - 20].copy_from_slice(&noise(len - 32, 7)[..]);
            std::fs::write(&path, bytes).expect("damage");
        }
    }
    let out = env.cmd(&one, &["fetch", "--deepen", "2", "origin"]).fails();
    assert_failed_cleanly(&out, &["corrupt"]);
    assert_eq!(LocalState::of(&env, &one).refs, before.refs);
    assert_eq!(LocalState::of(&env, &one).objects, before.objects);
    assert_eq!(shallow_lines(&one), Some(vec![env.rev(&src, "HEAD")]));
}

/// `--filter=blob:none` (issue 14 item 2): the clone takes commits and trees only, in a
/// promisor pack; the checkout and `git log -p` fetch the blobs they need lazily (git's `fetch
/// <oid>` lines), by range reads; a lazy fetch of an id the remote does not have fails in one
/// line and changes nothing. `tree:0` takes commits only.
#[test]
fn blob_none_clone_with_lazy_fetches() {
    let env = TestEnv::new();
    let (url, src) = history(&env, "partial");
    let dir = env.mkdir("clones");
    let out = env.git(
        &dir,
        &["clone", "--no-checkout", "--filter=blob:none", &url, "p"],
    );
    assert!(!out.stderr.contains("warning"), "{out}");
    let p = dir.join("p");
    let packs = env.local_packs(&p);
    let promisors = std::fs::read_dir(p.join(".git/objects/pack"))
        .expect("pack dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".promisor"))
        .count();
    assert_eq!(promisors, 1, "{packs:?}");
    let before: u64 = packs.values().sum();
    assert!(before < 10_000, "commits and trees only: {packs:?}");
    // Not one blob came.
    let objects = env.git(&p, &["cat-file", "--batch-all-objects", "--batch-check"]);
    assert!(!objects.stdout.contains(" blob "), "{objects}");

    env.git(&p, &["checkout", "-q", "main"]);
    assert_eq!(
        std::fs::read(p.join("data4.bin")).expect("checked out"),
        std::fs::read(src.join("data4.bin")).expect("source")
    );
    env.git(&p, &["log", "-p", "--stat"]);
    env.fsck(&p);
    assert_eq!(count(&env, &p), "5");

    // An id nobody has: git's lazy fetch asks the helper, which says so in one line.
    let refs = env.refs(&p, &[]);
    let out = env
        .cmd(
            &p,
            &["cat-file", "-p", "0123456789abcdef0123456789abcdef01234567"],
        )
        .fails();
    assert!(
        out.stderr
            .contains("object 0123456789abcdef0123456789abcdef01234567 is in no pack"),
        "{out}"
    );
    assert_eq!(env.refs(&p, &[]), refs);

    // blob:limit=<n>: blobs under n bytes come with the clone (sizes from 1 KiB range reads).
    let blobs = |name: &str| {
        let out = env.git(
            &dir.join(name),
            &["cat-file", "--batch-all-objects", "--batch-check"],
        );
        out.stdout.lines().filter(|l| l.contains(" blob ")).count()
    };
    env.git(
        &dir,
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:limit=50k",
            &url,
            "big",
        ],
    );
    assert_eq!(blobs("big"), 5);
    env.git(
        &dir,
        &[
            "clone",
            "-q",
            "--no-checkout",
            "--filter=blob:limit=39999",
            &url,
            "small",
        ],
    );
    assert_eq!(blobs("small"), 0);

    // tree:0: commits only; the checkout fetches its trees and blobs lazily.
    env.git(&dir, &["clone", "-q", "--filter=tree:0", &url, "t"]);
    let t = dir.join("t");
    env.fsck(&t);
    assert_eq!(count(&env, &t), "5");
}

/// `--shallow-since` and `--shallow-exclude` (`option deepen-since`, `deepen-not`), compared
/// with git's own upload-pack over `file://` for the same commands: the same `.git/shallow`,
/// the same commits, fsck clean. Six commits a day apart (GIT_COMMITTER_DATE), a branch at
/// the second and an annotated tag at the third. Bad requests fail in one line, as git's do,
/// and leave the clone as it was.
#[test]
fn shallow_since_and_exclude_match_git() {
    const DAY0: u64 = 1_700_000_000;
    let env = TestEnv::new();
    let url = env.create("since");
    let src = env.init("src");
    for i in 1..=6u64 {
        std::fs::write(src.join(format!("f{i}.txt")), format!("version {i}\n")).expect("write");
        env.git(&src, &["add", "-A"]);
        env.cmd(&src, &["commit", "-q", "-m", &format!("v{i}")])
            .env(
                "GIT_COMMITTER_DATE",
                format!("@{} +0000", DAY0 + i * 86_400),
            )
            .ok();
    }
    env.git(&src, &["branch", "old", "HEAD~4"]);
    env.git(&src, &["tag", "-a", "v3", "-m", "v3", "HEAD~3"]);
    let oracle = env.init_bare(&env.path("oracle.git"));
    for remote in [url.as_str(), oracle.as_str()] {
        env.git(&src, &["push", "-q", remote, "main", "old", "v3"]);
    }
    let dir = env.mkdir("clones");
    let day = |n: u64| format!("--shallow-since=@{}", DAY0 + n * 86_400);
    // What a repository holds, for the comparison.
    let state = |repo: &Path| {
        env.fsck(repo);
        let all = env.git(repo, &["rev-list", "--all"]).stdout;
        (shallow_lines(repo), all.lines().count())
    };
    // Name resolution (`old`, `refs/heads/old`, ambiguity) is negotiate::shallow's unit test.
    let cases: [(&str, Vec<String>); 4] = [
        ("since", vec![day(4)]),
        ("tag", vec!["--shallow-exclude=v3".into()]),
        ("both", vec![day(5), "--shallow-exclude=old".into()]),
        // A boundary deepened by a later fetch (below) is dropped from the shallow file.
        ("deepen", vec![day(5)]),
    ];
    for (name, args) in &cases {
        for (remote, suffix) in [(url.as_str(), ""), (oracle.as_str(), "-git")] {
            let mut clone: Vec<&str> = vec!["clone", "-q"];
            clone.extend(args.iter().map(String::as_str));
            let target = format!("{name}{suffix}");
            clone.extend([remote, target.as_str()]);
            let out = env.git(&dir, &clone);
            assert!(!out.stderr.contains("warning"), "{out}");
        }
        let ours = state(&dir.join(name));
        assert_eq!(ours, state(&dir.join(format!("{name}-git"))), "{name}");
        assert_eq!(ours.0.map(|l| l.len()), Some(1), "{name}: one boundary");
    }
    assert_eq!(state(&dir.join("since")).1, 3);
    assert_eq!(state(&dir.join("tag")).1, 3);
    assert_eq!(state(&dir.join("both")).1, 2);

    // A fetch deepening by date: the old boundary goes, the new one is two days further down.
    for repo in ["deepen", "deepen-git"] {
        env.git(&dir.join(repo), &["fetch", "-q", &day(2), "origin"]);
    }
    let deepened = state(&dir.join("deepen"));
    assert_eq!(deepened, state(&dir.join("deepen-git")));
    assert_eq!(
        deepened,
        (Some(vec![env.rev(&src, "HEAD~4")]), 5),
        "{}",
        env.git(&dir.join("deepen"), &["log", "--oneline"])
    );

    // Refused as git refuses them, in one line; the clone is unchanged.
    let repo = dir.join("since");
    let before = LocalState::of(&env, &repo);
    for (args, needles) in [
        (
            vec!["--depth=1".to_owned(), day(1)],
            vec!["cannot be used together"],
        ),
        (
            vec!["--shallow-exclude=nope".to_owned()],
            vec!["nope", "not a ref"],
        ),
        (vec![day(30)], vec!["no commits", "selected"]),
        (
            vec!["--shallow-since=garbage".to_owned()],
            vec!["garbage", "not a date"],
        ),
    ] {
        let mut fetch: Vec<&str> = vec!["fetch"];
        fetch.extend(args.iter().map(String::as_str));
        fetch.push("origin");
        let out = env.cmd(&repo, &fetch).fails();
        assert_failed_cleanly(&out, &needles);
        // git's own upload-pack refuses the same requests.
        let git = env.cmd(&dir.join("since-git"), &fetch).fails();
        assert!(git.stderr.contains("fatal"), "{git}");
        let after = LocalState::of(&env, &repo);
        assert_eq!(
            (after.refs, after.objects),
            (before.refs.clone(), before.objects.clone())
        );
        assert_eq!(shallow_lines(&repo), Some(vec![env.rev(&src, "HEAD~2")]));
    }
}
