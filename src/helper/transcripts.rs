//! What each git version sends its helper, replayed through the line parser and the option
//! table: `tests/transcripts/<version>/<operation>.in` holds every line git 2.25.5, 2.30.9,
//! 2.34.8, 2.39.5, 2.43.7 and 2.47.3 sent to `git-remote-hypha` for one operation (ls-remote,
//! clone, every push form, fetches, shallow and partial clones; recorded with a logging
//! wrapper, docs/protocol.md §7). So versions CI does not run are still covered: every line
//! parses, and every option git sends gets `ok` (or `unsupported` where git expects that).

use super::options::Options;
use super::protocol::{parse, Command, OptionReply};
use std::path::PathBuf;

const VERSIONS: [&str; 6] = ["2.25", "2.30", "2.34", "2.39", "2.43", "2.47"];

fn transcripts(version: &str) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/transcripts")
        .join(version);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&path).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// Every option line of one helper session (a transcript may hold several: `# helper
/// started` separates them), with the reply a fresh session gives.
fn replay(text: &str) -> Vec<(String, Option<String>, OptionReply)> {
    let mut replies = Vec::new();
    let mut options = Options::default();
    for line in text.lines() {
        if line.starts_with("# helper started") {
            options = Options::default();
            continue;
        }
        match parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}")) {
            Command::Option { name, value } => {
                let reply = options.set(&name, value.as_deref());
                replies.push((name, value, reply));
            }
            Command::Fetch(_) | Command::Push(_) | Command::Blank => {}
            Command::Capabilities | Command::List { .. } => {}
        }
    }
    replies
}

#[test]
fn every_line_of_every_git_parses_and_every_option_is_answered() {
    for version in VERSIONS {
        let all = transcripts(version);
        assert!(all.len() >= 20, "{version}: {} transcripts", all.len());
        for (op, text) in &all {
            for (name, value, reply) in replay(text) {
                // `unsupported` only for what git downgrades on its own: none of these.
                assert_eq!(
                    reply,
                    OptionReply::Ok,
                    "git {version}, {op}: option {name} {value:?}"
                );
            }
        }
    }
}

#[test]
fn object_format_by_version() {
    for version in VERSIONS {
        let asked: Vec<Option<String>> = transcripts(version)
            .iter()
            .flat_map(|(_, text)| replay(text))
            .filter(|(name, ..)| name == "object-format")
            .map(|(_, value, _)| value)
            .collect();
        match version {
            // git before 2.28 does not know the capability and never asks.
            "2.25" => assert!(asked.is_empty(), "{asked:?}"),
            // 2.28-2.44: a bare `option object-format`.
            "2.30" | "2.34" | "2.39" | "2.43" => {
                assert!(
                    !asked.is_empty() && asked.iter().all(Option::is_none),
                    "{version}"
                )
            }
            _ => assert!(
                !asked.is_empty() && asked.iter().all(|v| v.as_deref() == Some("true")),
                "{version}"
            ),
        }
    }
}

#[test]
fn a_lazy_fetch_of_git_2_25_fetches_only_the_named_objects() {
    // 2.25 asks for a partial clone's missing blobs (the checkout after `clone --filter`, the
    // clone's second helper session) with no filter, but `no-dependents`.
    let (_, text) = transcripts("2.25")
        .into_iter()
        .find(|(op, _)| op == "clone-filter")
        .expect("transcript");
    let lazy = text
        .split("# helper started")
        .nth(2)
        .expect("a second session");
    assert!(lazy.contains("option no-dependents 1"), "{lazy}");
    let mut options = Options::default();
    for line in lazy.lines().filter(|l| l.starts_with("option ")) {
        if let Ok(Command::Option { name, value }) = parse(line) {
            options.set(&name, value.as_deref());
        }
    }
    assert!(options.shape.from_promisor);
    assert_eq!(
        options.shape.filter,
        Some(crate::negotiate::shallow::Filter::TreeZero)
    );
}
