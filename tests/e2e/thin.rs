//! Thin pushes (issue 13 item 1): an edit push uploads only a thin pack (deltas against what
//! the remote has), the server completes it, and every pack at rest stays self-contained, which
//! is what Hypha's own reader needs. A server that does not complete thin packs gets full
//! packs. The crash case (server killed mid-completion) is in `crash.rs`, with the other kills.
//!
//! The bytes a push sent are read from the server's access log (`fix-thin` notes the size of
//! the thin pack it completed), so the test counts what arrived, not what the helper says.

use crate::harness::{Out, TestEnv};
use std::path::Path;

/// A CSV-like file of `lines` rows: large enough that a full pack of it is far bigger than
/// any thin pack of a one-line edit (a 3,000-row file packs to about 40 KB).
pub fn csv(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "{i},{},{:.6},name{}\n",
                i * 7919 % 100_003,
                i as f64 / 7.0,
                i % 977
            )
        })
        .collect()
}

/// The sizes of the thin packs the server completed for `alias`, from its access log (in Hypha
/// mode a log every test shares: the workspace, this test's own, tells them apart).
pub fn thin_sizes(env: &TestEnv, alias: &str) -> Vec<u64> {
    // Completed by `fix-thin`, or in the `update` that carried the thin pack inline.
    let mut lines = crate::inline::routes(env, alias, "fix-thin");
    lines.extend(crate::inline::routes(env, alias, "update"));
    lines
        .iter()
        .filter(|l| l.contains(" 200 "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("thin_size="))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// Every stored `.pack` of `alias` is self-contained: `git index-pack` without `--fix-thin`
/// indexes it (it refuses a pack with a delta whose base is elsewhere). Returns how many.
pub fn assert_packs_self_contained(env: &TestEnv, alias: &str) -> usize {
    let dir = env.stored_repo(alias).join("objects/pack");
    let check = tempfile::Builder::new()
        .prefix("self-contained-")
        .tempdir_in(env.path(""))
        .expect("scratch directory");
    let check = check.path();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("stored packs").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".pack") {
            continue;
        }
        let copy = check.join(&name);
        std::fs::copy(entry.path(), &copy).expect("copy pack");
        env.cmd(check, &["index-pack", &name]).ok();
        n += 1;
    }
    n
}

fn push(env: &TestEnv, repo: &Path, url: &str) -> Out {
    env.git(repo, &["push", url, "main"])
}

/// A work tree whose first commit, a 3,000-row CSV, is pushed to `url`: (work tree, CSV).
fn csv_pushed(env: &TestEnv, url: &str) -> (std::path::PathBuf, String) {
    let src = env.init("src");
    let text = csv(3000);
    std::fs::write(src.join("data.csv"), &text).expect("write");
    env.git(&src, &["add", "data.csv"]);
    env.git(&src, &["commit", "-q", "-m", "data"]);
    push(env, &src, url);
    (src, text)
}

fn edit_and_push(env: &TestEnv, src: &Path, url: &str, text: &str, round: usize) -> String {
    let edited = text.replacen(
        &format!("\n{},", 100 + round),
        &format!("\n{},edited", 100 + round),
        1,
    );
    std::fs::write(src.join("data.csv"), &edited).expect("edit");
    env.git(src, &["commit", "-q", "-am", &format!("edit {round}")]);
    push(env, src, url);
    edited
}

/// A one-line edit of a 3,000-row CSV goes up as a thin pack of a few hundred bytes, where the
/// full pack is some 30 KB (an edit of a tiny file goes up self-contained); the clone after it
/// is the pushed history and `fsck`-clean, and every stored pack is self-contained (no thin
/// upload is left either). Through presigned uploads and `fix-thin` here; inline in `update`
/// in [`one_line_edit_goes_inline_as_a_thin_pack`].
#[test]
fn one_line_edit_uploads_a_thin_pack_and_stored_packs_stay_self_contained() {
    one_line_edit(&TestEnv::with_serve_args(&[
        "--inline-max".to_owned(),
        "0".to_owned(),
    ]));
}

/// The same edits to a server that takes small packs inline (the default): each thin pack
/// travels in its `update` and is completed there.
#[test]
fn one_line_edit_goes_inline_as_a_thin_pack() {
    let env = TestEnv::new();
    one_line_edit(&env);
    if crate::harness::hypha::target().is_none() {
        assert!(
            !env.server_log().contains("/remote/v1/uploads "),
            "no upload asked for"
        );
    }
}

/// Where the server indexes inline thin packs itself (`thin_without_idx` in its listing), the
/// helper sends the thin pack with no idx and runs no `git index-pack --fix-thin` for it
/// (which resolved the edited file's whole base only to lend the idx its ids): the push runs
/// `pack-objects` and nothing else, and the stored pack is complete and checked.
#[test]
fn an_inline_thin_pack_goes_without_a_local_index_pack() {
    let env = TestEnv::new();
    let url = env.create("noidx");
    let (src, text) = csv_pushed(&env, &url);
    let edited = text.replacen("\n100,", "\n100,edited", 1);
    std::fs::write(src.join("data.csv"), &edited).expect("edit");
    env.git(&src, &["commit", "-q", "-am", "edit"]);
    let trace = env.path("push-trace");
    env.cmd(&src, &["push", "-q", &url, "main"])
        .env("GIT_TRACE", &trace)
        .ok();
    let trace = std::fs::read_to_string(&trace).expect("GIT_TRACE file");
    assert!(trace.contains("pack-objects"), "the push packed\n{trace}");
    assert!(
        !trace.contains("index-pack"),
        "no local index-pack for an inline thin pack\n{trace}"
    );
    assert_eq!(
        thin_sizes(&env, "noidx").len(),
        1,
        "completed by the server"
    );
    let clone = env.path("clone");
    env.clone(&url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&src, "HEAD"));
    assert_eq!(
        std::fs::read_to_string(clone.join("data.csv")).expect("read"),
        edited
    );
    env.fsck(&clone);
    assert_packs_self_contained(&env, "noidx");
}

fn one_line_edit(env: &TestEnv) {
    let url = env.create("data");
    let (src, text) = csv_pushed(env, &url);
    let first: u64 = env.remote_packs("data").values().sum();

    let mut text = text;
    for round in 0..2 {
        text = edit_and_push(env, &src, &url, &text, round);
    }
    // A change whose bases are tiny (at most 8 KiB) goes up self-contained: not worth a
    // completion round trip.
    std::fs::write(src.join("notes.txt"), "about the data\n").expect("write");
    env.git(&src, &["add", "notes.txt"]);
    env.git(&src, &["commit", "-q", "-m", "notes"]);
    push(env, &src, &url);
    std::fs::write(src.join("notes.txt"), "about the data set\n").expect("write");
    env.git(&src, &["commit", "-q", "-am", "notes edit"]);
    push(env, &src, &url);
    let sizes = thin_sizes(env, "data");
    assert_eq!(sizes.len(), 2, "two thin pushes completed: {sizes:?}");
    eprintln!("thin packs {sizes:?} bytes; first push {first} bytes (pack + idx)");
    for size in &sizes {
        assert!(
            *size < 2048 && *size * 20 < first,
            "thin pack of {size} bytes, the full pack was {first}"
        );
    }

    let clone = env.path("clone");
    env.clone(&url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&src, "HEAD"));
    assert_eq!(
        std::fs::read_to_string(clone.join("data.csv")).expect("read"),
        text
    );
    env.fsck(&clone);
    assert_eq!(assert_packs_self_contained(env, "data"), 5);
    let leftovers = crate::faults::files_under(&env.stored_repo("data").join("hypha-remote/thin"));
    assert!(leftovers.is_empty(), "thin uploads left: {leftovers:?}");
}

/// A server that does not complete thin packs (as one from before them) is sent full packs,
/// and never asked to complete one.
#[test]
fn server_without_thin_packs_gets_full_packs() {
    let env = TestEnv::with_serve_args(&["--no-thin-packs".to_owned()]);
    let url = env.create("full");
    let (src, text) = csv_pushed(&env, &url);
    let before = env.remote_packs("full");
    let first: u64 = before.values().sum();
    edit_and_push(&env, &src, &url, &text, 0);
    let after = env.remote_packs("full");
    let new: u64 = after
        .iter()
        .filter(|(name, _)| !before.contains_key(*name) && name.ends_with(".pack"))
        .map(|(_, size)| *size)
        .sum();
    assert!(
        new * 2 > first,
        "a full pack ({new} bytes) holds the whole edited file ({first} the first time)"
    );
    assert!(
        !env.server_log().contains("fix-thin"),
        "no completion asked for"
    );
    let clone = env.path("clone");
    env.clone(&url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&src, "HEAD"));
    env.fsck(&clone);
}

/// Issue 21: an uploaded thin entry that inflates to more than 64 times its bytes (a zlib
/// bomb cost the server ~1000x CPU per uploaded byte) is refused, and the helper sends that
/// push as a full pack, which the server does not inflate: a new 8 MiB file of zeros beside
/// an edit of the CSV still arrives whole.
#[test]
fn an_edit_with_very_dense_data_goes_up_as_a_full_pack() {
    let env = TestEnv::with_serve_args(&["--inline-max".to_owned(), "0".to_owned()]);
    let url = env.create("dense");
    let (src, text) = csv_pushed(&env, &url);
    std::fs::write(src.join("zeros.bin"), vec![0u8; 8 << 20]).expect("write");
    env.git(&src, &["add", "zeros.bin"]);
    edit_and_push(&env, &src, &url, &text, 0);
    assert!(
        env.server_log().contains("fix-thin") && thin_sizes(&env, "dense").is_empty(),
        "the completion was asked for and refused"
    );
    let clone = env.path("clone");
    env.clone(&url, &clone);
    assert_eq!(env.rev(&clone, "HEAD"), env.rev(&src, "HEAD"));
    assert_eq!(
        std::fs::metadata(clone.join("zeros.bin"))
            .expect("zeros")
            .len(),
        8 << 20
    );
    env.fsck(&clone);
}
