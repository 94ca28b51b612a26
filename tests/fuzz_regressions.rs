//! Replays every input under `fuzz/regressions/<target>/` through the body of fuzz target
//! `<target>` (`fuzz/harness/`, the very code `cargo fuzz run <target>` runs), on stable and
//! without cargo-fuzz: every input that ever crashed a target, and the seeds, stay checked in
//! CI. `fuzz/run.sh` copies new crashes into those directories; see fuzz/README.md.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    files_in(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target),
    )
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let run = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .expect("target");
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "fuzz/regressions/{target}/ holds no input"
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of target {target} fail (panic messages above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

macro_rules! targets {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            replay(stringify!($name));
        }
    )*};
}

targets!(
    delta,
    pack_entries,
    thin,
    idx,
    protocol,
    api_json,
    names,
    upload_pack,
    lfs_delta,
    delta_compose
);

/// The table in the harness and the tests above name the same targets.
#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = harness::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "delta",
            "pack_entries",
            "thin",
            "idx",
            "protocol",
            "api_json",
            "names",
            "upload_pack",
            "lfs_delta",
            "delta_compose"
        ]
    );
}
