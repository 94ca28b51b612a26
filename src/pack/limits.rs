//! Memory bounds for the `git pack-objects` / `git repack` the helper runs.
//!
//! With git's defaults, packing a history of large binary files costs memory in proportion to
//! the files: pack-objects maps whole existing packs (`core.packedGitWindowSize` is 1 GiB on
//! 64-bit), keeps an unbounded delta window of whole blobs per thread, and tries deltas on
//! every blob up to `core.bigFileThreshold` (512 MiB). Measured on this project's machines
//! (`/usr/bin/time -v`, git 2.47): pushing a 500 MiB already-packed history peaked at 505 MiB
//! and a fresh 300 MiB history of ten 30 MiB binaries at 690 MiB (161 s). With the bounds
//! below: 70 MiB for the first with a byte-identical pack, 35 MiB (13 s) for the second, and
//! the text benchmark's pack is byte-identical too.
//!
//! The cost: blobs over 16 MiB are stored deflated without delta compression (git does the same
//! above 512 MiB). A user who wants deltas for large files sets `core.bigFileThreshold` (or any
//! of these keys) in their git config, and then that value is used instead: a bound is only
//! added for a key the user has not set.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// (key, value) pairs given to git as `-c key=value` unless the user configured the key.
const BOUNDS: &[(&str, &str)] = &[
    ("core.packedgitwindowsize", "16m"),
    ("core.packedgitlimit", "128m"),
    ("core.bigfilethreshold", "16m"),
    ("pack.windowmemory", "64m"),
];

/// In place of [`BOUNDS`]' values when merging packs (`git hypha gc`, the server's auto-gc),
/// where the point is to turn whole copies of edited files into deltas:
///
/// - one delta-search thread. With two or more, git splits the object list between threads,
///   and when one path holds more versions than a boundary can be found in (the history of
///   one large edited file), an idle thread steals half of them: two delta chains, two whole
///   copies. Measured on 30 versions of an 8 MiB CSV (git 2.47, `--stdin-packs` and
///   `repack -a` alike): 6.69 MB with 2, 4 or 8 threads, 3.36 MB with one, in about the same
///   time (10.7 s vs 11.2 s) and less memory (peak RSS 314 MB vs 210 MB). On the text history
///   of the benchmark (one pack of 1500 commits and 20 push packs) the merged pack is
///   byte-identical and the time within the noise of a loaded 2-core machine (24-49 s either
///   way), as most deltas are reused; with many cores a full `git hypha gc` of a large source
///   history searches its new objects' deltas slower. A compaction runs in the background,
///   one at a time, so the cores it leaves free serve requests meanwhile.
/// - deltas for files up to 64 MiB, not 16. Two versions of a 40 MiB CSV merge into 16.6 MB
///   instead of 33.1 MB (4.1 s, peak RSS 238 MB, against 0.45 s and 37 MB without deltas); of
///   a 60 MiB CSV into 24.8 MB (3.9 s, 346 MB). `pack.windowMemory` keeps one such object in
///   the window, so the peak stays near six times the largest file deltified: under 400 MB.
const COMPACTION: &[(&str, &str)] = &[("pack.threads", "1"), ("core.bigfilethreshold", "64m")];

/// `core.bigFileThreshold` for thin pushes, where the delta window holds the remote's version
/// of a file and the new one: deltas for files up to this size. Measured on a one-line edit of
/// a CSV (`/usr/bin/time -v`, git 2.47; docs/design.md §15): 40 MiB goes up as 1.4 KB instead
/// of 16.4 MB, with pack-objects at 221 MiB and index-pack at 161 MiB peak; pack-objects peaks
/// at about 5.5 times the file, so 128 MiB keeps a push under about 700 MiB. A 400 MiB file
/// stays whole (161 MB up, 176 MiB peak) unless the user raises the key: deltas then cost
/// 2.1 GiB of memory for 10 KB up.
const THIN_PUSH: &[(&str, &str)] = &[("core.bigfilethreshold", "128m")];

/// `-c key=value` arguments for every bound in [`BOUNDS`] that the configuration seen from
/// `git_dir` (system, global, repository) does not set. One `git config` call.
pub fn config_args(git_dir: &Path) -> Vec<OsString> {
    args(git_dir, BOUNDS.iter())
}

/// [`config_args`] for a compaction's repack: [`COMPACTION`]'s settings, and the bounds it
/// does not replace.
pub fn compaction_config_args(git_dir: &Path) -> Vec<OsString> {
    overridden(git_dir, COMPACTION)
}

/// [`config_args`] for a thin push: the same bounds, with `core.bigFileThreshold` from
/// [`THIN_PUSH`] (unless the user set it).
pub fn thin_config_args(git_dir: &Path) -> Vec<OsString> {
    overridden(git_dir, THIN_PUSH)
}

/// [`BOUNDS`] with `over`'s values in place of theirs, and `over`'s other keys added.
fn overridden(git_dir: &Path, over: &'static [(&'static str, &'static str)]) -> Vec<OsString> {
    let kept = BOUNDS
        .iter()
        .filter(|(key, _)| !over.iter().any(|(k, _)| k == key));
    args(git_dir, kept.chain(over))
}

fn args<'a>(git_dir: &Path, bounds: impl Iterator<Item = &'a (&'a str, &'a str)>) -> Vec<OsString> {
    let configured = configured_keys(git_dir);
    bounds
        .filter(|(key, _)| !configured.iter().any(|k| k == key))
        .flat_map(|(key, value)| {
            [
                OsString::from("-c"),
                OsString::from(format!("{key}={value}")),
            ]
        })
        .collect()
}

/// Which of the bounded keys are set; git prints keys lower-cased. A failing `git config`
/// (no such repository yet) means none are: the bounds then apply, which is always safe.
fn configured_keys(git_dir: &Path) -> Vec<String> {
    let pattern = format!(
        "^({})$",
        BOUNDS
            .iter()
            .chain(COMPACTION)
            .chain(THIN_PUSH)
            .map(|(key, _)| key.replace('.', "\\."))
            .collect::<Vec<_>>()
            .join("|")
    );
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["config", "--get-regexp"])
        .arg(pattern)
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_ascii_lowercase)
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    /// A new bare repository (and the directory that holds it).
    fn bare() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("r.git");
        git(
            tmp.path(),
            &["init", "-q", "--bare", dir.to_str().expect("utf-8")],
        );
        (tmp, dir)
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect()
    }

    #[test]
    fn bounds_apply_unless_the_user_set_the_key() {
        let (_tmp, dir) = bare();
        let args = |dir: &Path| strings(config_args(dir));
        let all = args(&dir);
        assert_eq!(all.len(), 2 * BOUNDS.len(), "{all:?}");
        assert!(all.contains(&"core.bigfilethreshold=16m".to_string()));

        git(&dir, &["config", "core.bigFileThreshold", "1g"]);
        let some = args(&dir);
        assert_eq!(some.len(), 2 * (BOUNDS.len() - 1), "{some:?}");
        assert!(!some.iter().any(|a| a.starts_with("core.bigfilethreshold")));
        assert!(some.contains(&"pack.windowmemory=64m".to_string()));
        assert!(!some.iter().any(|a| a.starts_with("pack.threads")));
    }

    #[test]
    fn compaction_replaces_the_threshold_and_adds_one_thread_unless_the_user_set_them() {
        let (_tmp, dir) = bare();
        let args = |dir: &Path| strings(compaction_config_args(dir));
        let all = args(&dir);
        for expected in [
            "pack.threads=1",
            "core.bigfilethreshold=64m",
            "pack.windowmemory=64m",
            "core.packedgitlimit=128m",
        ] {
            assert!(all.contains(&expected.to_string()), "{all:?}");
        }
        assert_eq!(
            all.iter()
                .filter(|a| a.starts_with("core.bigfilethreshold"))
                .count(),
            1,
            "{all:?}"
        );

        git(&dir, &["config", "pack.threads", "4"]);
        git(&dir, &["config", "core.bigFileThreshold", "1g"]);
        let some = args(&dir);
        assert!(
            !some
                .iter()
                .any(|a| a.starts_with("pack.threads") || a.starts_with("core.bigfilethreshold")),
            "{some:?}"
        );
        assert!(some.contains(&"pack.windowmemory=64m".to_string()));
    }
}
