//! The hermetic environment every command starts from: the freshly built binaries first on
//! `PATH`, `HOME` in the scratch directory, a fixed identity and clock, nothing else inherited.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::TestEnv;

/// Fixed dates and identities make object ids reproducible, which is what lets the `file://`
/// oracle compare `--porcelain` lines that contain ids.
const DATE: &str = "1700000000 +0000";

/// Directory holding `git-remote-hypha` and `git-hypha` as cargo built them for this test run.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_git-remote-hypha"))
        .parent()
        .expect("a binary path has a parent")
        .to_path_buf()
}

/// The `PATH` every command gets: our binaries first, then the system's (for git, gpg, sh).
fn search_path() -> OsString {
    let mut dirs = vec![bin_dir()];
    if let Some(system) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&system));
    }
    std::env::join_paths(dirs).expect("PATH entries contain no separator")
}

/// The hermetic environment: nothing inherited but `PATH`.
pub(super) fn base_env(home: &Path) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), search_path()),
        ("HOME".into(), home.into()),
        ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
        ("TZ".into(), "UTC".into()),
        // A credential prompt would wait forever for a terminal: fail instead.
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ];
    for (role, name, email) in [
        ("AUTHOR", "A U Thor", "author@example.com"),
        ("COMMITTER", "C O Mitter", "committer@example.com"),
    ] {
        vars.push((format!("GIT_{role}_NAME").into(), name.into()));
        vars.push((format!("GIT_{role}_EMAIL").into(), email.into()));
        vars.push((format!("GIT_{role}_DATE").into(), DATE.into()));
    }
    vars
}

impl TestEnv {
    /// The environment every command starts from.
    pub(super) fn base_env(&self) -> Vec<(OsString, OsString)> {
        let mut vars = base_env(&self.home());
        // Stops git from looking for a repository above the scratch directory, so "outside a
        // repository" means outside even if /tmp happened to be inside one.
        vars.push((
            "GIT_CEILING_DIRECTORIES".into(),
            self.scratch_path.clone().into(),
        ));
        vars
    }
}
