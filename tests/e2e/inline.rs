//! Issue 25: a small push carries its pack in the `update` request (`inline_max` in the
//! server's listing for a push), saving the `uploads`, `PUT` and `fix-thin` round trips; a
//! large one still goes through presigned uploads. A server without inline packs (an older
//! one, or `--inline-max 0`) gets uploads. Whatever the path, the stored packs are
//! self-contained and the clone is the pushed history.

use crate::crash::{Job, WAIT};
use crate::faults::{skip_without_proxied_transfers, Faulty};
use crate::harness::proxy::{Fault, Gate, HoldAt};
use crate::harness::{noise, TestEnv};
use std::path::Path;
use std::time::{Duration, Instant};

/// The access-log lines of one API route of this repository (in Hypha mode a log every test
/// shares: the workspace, this test's own, tells them apart).
pub fn routes(env: &TestEnv, alias: &str, route: &str) -> Vec<String> {
    let ws = env
        .url(alias)
        .rsplit('/')
        .nth(1)
        .expect("hypha::<server>/<workspace>/<alias>")
        .to_owned();
    let path = format!("/{ws}/git/{alias}/remote/v1/{route} ");
    env.server_log()
        .lines()
        .filter(|l| l.contains(&path))
        .map(str::to_owned)
        .collect()
}

fn check_clone(env: &TestEnv, url: &str, src: &Path, name: &str) {
    let clone = env.path(name);
    env.clone(url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(src, "HEAD"));
    env.fsck(&clone);
    crate::thin::assert_packs_self_contained(env, name.trim_end_matches("-clone"));
}

/// A first push and a one-commit push go inline; a push of 2 MiB of noise (over the 1 MiB
/// default) goes through an upload.
#[test]
fn small_pushes_go_inline_and_large_ones_are_uploaded() {
    let env = TestEnv::new();
    let url = env.create("small");
    let src = env.init("src");
    env.commit(&src, "first");
    env.git(&src, &["push", "-q", &url, "main"]);
    env.commit(&src, "second");
    env.git(&src, &["push", "-q", &url, "main"]);
    let inline = routes(&env, "small", "update")
        .iter()
        .filter(|l| l.contains(" 200 ") && l.contains("inline "))
        .count();
    assert_eq!(inline, 2, "both pushes inline\n{}", env.server.log_tail());
    assert!(routes(&env, "small", "uploads").is_empty(), "no upload");

    std::fs::write(src.join("noise.bin"), noise(2 << 20, 7)).expect("write");
    env.git(&src, &["add", "noise.bin"]);
    env.git(&src, &["commit", "-q", "-m", "noise"]);
    env.git(&src, &["push", "-q", &url, "main"]);
    assert_eq!(
        routes(&env, "small", "uploads").len(),
        1,
        "the large push was uploaded"
    );
    check_clone(&env, &url, &src, "small-clone");
}

/// An edit beside 8 MiB of zeros: the inline thin pack is refused as too dense (issue 21),
/// and the helper sends the push again as a self-contained pack, which arrives whole.
#[test]
fn dense_data_inline_falls_back_to_a_full_pack() {
    let env = TestEnv::new();
    let url = env.create("dense");
    let src = env.init("src");
    let text = crate::thin::csv(3000);
    std::fs::write(src.join("data.csv"), &text).expect("write");
    env.git(&src, &["add", "data.csv"]);
    env.git(&src, &["commit", "-q", "-m", "data"]);
    env.git(&src, &["push", "-q", &url, "main"]);
    std::fs::write(src.join("zeros.bin"), vec![0u8; 8 << 20]).expect("write");
    std::fs::write(src.join("data.csv"), text.replacen("\n100,", "\n100,x", 1)).expect("edit");
    env.git(&src, &["add", "."]);
    env.git(&src, &["commit", "-q", "-m", "zeros"]);
    let out = env.git(&src, &["push", "-v", &url, "main"]);
    assert!(
        out.stderr.contains("did not complete the thin pack"),
        "the thin pack was refused and the push sent again\n{out}"
    );
    check_clone(&env, &url, &src, "dense-clone");
    assert_eq!(
        std::fs::metadata(env.path("dense-clone").join("zeros.bin"))
            .expect("zeros")
            .len(),
        8 << 20
    );
}

/// A server that takes no inline packs (as one from before them) is sent uploads.
#[test]
fn a_server_without_inline_packs_gets_uploads() {
    let env = TestEnv::with_serve_args(&["--inline-max".to_owned(), "0".to_owned()]);
    let url = env.create("old");
    let src = env.init("src");
    env.commit(&src, "first");
    env.git(&src, &["push", "-q", &url, "main"]);
    env.commit(&src, "second");
    env.git(&src, &["push", "-q", &url, "main"]);
    assert_eq!(routes(&env, "old", "uploads").len(), 2);
    assert!(!env.server_log().contains("inline "), "nothing inline");
    check_clone(&env, &url, &src, "old-clone");
}

/// The `-vv` lines of packs a fetch took, and of those the listing carried.
fn fetched(stderr: &str) -> (usize, usize) {
    let lines = stderr
        .lines()
        .filter(|l| l.contains("hypha: fetched pack-"));
    let all: Vec<&str> = lines.collect();
    let carried = all
        .iter()
        .filter(|l| l.contains("carried by the listing"))
        .count();
    (all.len(), carried)
}

/// A clone takes small packs from the `refs` answer itself, with no `GET` after the listing;
/// a pack over the 1 MiB a clone asks for is still downloaded by its URL; a fetch into a
/// repository that has objects asks for none (its listing carries no pack).
#[test]
fn a_clone_takes_small_packs_from_the_listing() {
    let env = TestEnv::new();
    let url = env.create("carried");
    let src = env.init("src");
    env.commit(&src, "first");
    env.git(&src, &["push", "-q", &url, "main"]);
    env.commit(&src, "second");
    env.git(&src, &["push", "-q", &url, "main"]);
    let out = env.git(&env.path(""), &["clone", "-vv", &url, "small"]);
    assert_eq!(fetched(&out.stderr), (2, 2), "both packs carried\n{out}");
    let small = env.path("small");
    assert_eq!(env.rev(&small, "HEAD"), env.rev(&src, "HEAD"));
    env.fsck(&small);

    std::fs::write(src.join("noise.bin"), noise(2 << 20, 11)).expect("write");
    env.git(&src, &["add", "noise.bin"]);
    env.git(&src, &["commit", "-q", "-m", "noise"]);
    env.git(&src, &["push", "-q", &url, "main"]);
    let out = env.git(&env.path(""), &["clone", "-vv", &url, "mixed"]);
    assert_eq!(fetched(&out.stderr), (3, 2), "the large pack by URL\n{out}");
    let mixed = env.path("mixed");
    assert_eq!(env.rev(&mixed, "HEAD"), env.rev(&src, "HEAD"));
    env.fsck(&mixed);

    let out = env.git(&small, &["fetch", "-vv", "origin"]);
    assert_eq!(fetched(&out.stderr), (1, 0), "a fetch asks for none\n{out}");
    assert_eq!(env.rev(&small, "origin/main"), env.rev(&src, "HEAD"));
    env.fsck(&small);
}

/// A server that carries no packs in its listing (`--inline-max 0`, as one from before this
/// and as any older server, which ignores what the clone asks) is downloaded from by URL.
#[test]
fn a_clone_from_a_server_that_carries_no_packs_downloads_them() {
    let env = TestEnv::with_serve_args(&["--inline-max".to_owned(), "0".to_owned()]);
    let url = env.create("uncarried");
    let src = env.init("src");
    env.commit(&src, "first");
    env.git(&src, &["push", "-q", &url, "main"]);
    let out = env.git(&env.path(""), &["clone", "-vv", &url, "dst"]);
    assert_eq!(fetched(&out.stderr), (1, 0), "{out}");
    let dst = env.path("dst");
    assert_eq!(env.rev(&dst, "HEAD"), env.rev(&src, "HEAD"));
    env.fsck(&dst);
}

/// A clone takes every pack, so a pack between 1 and 16 MiB is asked for without waiting for
/// its idx (the round trip it would add decides nothing): the pack's `GET` goes out while the
/// idx's is held, and the idx, read beside it, is still checked against the pack (see
/// `corruption`, whose damaged idx files a clone still refuses).
#[test]
fn a_clone_asks_for_a_pack_while_its_idx_is_on_the_way() {
    if skip_without_proxied_transfers("a_clone_asks_for_a_pack_while_its_idx_is_on_the_way") {
        return;
    }
    let f = Faulty::new();
    let (url, src) = f.pushed("beside");
    std::fs::write(src.join("noise.bin"), noise(3 << 19, 11)).expect("write");
    f.env.git(&src, &["add", "noise.bin"]);
    f.env.git(&src, &["commit", "-q", "-m", "noise"]);
    f.env.git(&src, &["push", "-q", "origin", "main"]);

    let gate = Gate::new(HoldAt::BeforeForward);
    f.proxy
        .inject("GET", ".idx", Some(1), Fault::Hold(gate.clone()));
    let job = Job::start(&f.env, &f.env.path(""), "beside", &["clone", &url, "clone"]);
    assert!(gate.wait_arrival(WAIT), "the clone asked for an idx");
    let deadline = Instant::now() + WAIT;
    while f.proxy.count("GET", ".pack") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = f.proxy.count("GET", ".pack");
    // Dropped: the helper retries the idx (a transient fault) and the clone completes.
    gate.abandon();
    assert_eq!(
        asked,
        2,
        "both packs asked for while the idx was held: {:#?}",
        f.proxy.seen()
    );
    let out = job.wait(&f.env);
    assert_eq!(out.code, Some(0), "the clone completed\n{out}");
    let clone = f.env.path("clone");
    assert_eq!(f.env.rev(&clone, "HEAD"), f.env.rev(&src, "HEAD"));
    f.env.fsck(&clone);
}
