//! `git hypha manpage DIR` (hidden): the manual pages, generated from the clap definition of
//! `git hypha` and from a description of git-remote-hypha's hand-parsed argv. The pages in
//! `man/` are this output, committed; a test keeps them current.

use crate::Cli;
use std::path::{Path, PathBuf};

/// `git hypha manpage`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the pages into.
    #[arg(default_value = "man")]
    dir: PathBuf,
}

/// Create DIR if needed and write every page into it.
pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    write_manpages(&args.dir)?;
    Ok(())
}

/// Render every page into `dir`: `git-hypha.1` (git turns `git hypha --help` into
/// `man git-hypha`), `git-hypha-<command>.1`, and `git-remote-hypha.1`.
fn write_manpages(dir: &Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    // Named `git-hypha` for the file and title, invoked as `git hypha` in the synopsis.
    let git_hypha = Cli::command().name("git-hypha").bin_name("git hypha");
    clap_mangen::generate_to(git_hypha, dir)?;
    clap_mangen::Man::new(remote_helper_command()).generate_to(dir)?;
    Ok(())
}

/// git-remote-hypha parses git's fixed argv by hand; this describes it for its manual page.
fn remote_helper_command() -> clap::Command {
    use clap::Arg;
    clap::Command::new("git-remote-hypha")
        .version(env!("CARGO_PKG_VERSION"))
        // It answers --version, but git's argv leaves no room for --help.
        .disable_help_flag(true)
        .about("The git remote helper for hypha:: URLs")
        .long_about(
            "git runs git-remote-hypha for every hypha:: URL (git clone \
             hypha::https://host/workspace/alias, git fetch, git push, git ls-remote); it is \
             not run by hand. It lists refs through the server's remote API, decides locally \
             what to send or download, and moves pack bytes straight to and from storage \
             through presigned URLs. Servers: `git hypha serve`, or Hypha with the \
             hypha_git_remote plugin; on a Hypha without the plugin it hands the session to \
             git's own smart HTTP at https://host/workspace/git/alias (-v says which).",
        )
        .arg(Arg::new("remote").required(true).help(
            "Name of the remote (or the address itself, when git has no remote of that name)",
        ))
        .arg(Arg::new("url").help(
            "hypha::https://host/workspace/alias, or hypha::workspace/alias with the server \
             from HYPHA_SERVER_URL or `git config hypha.server`",
        ))
        .after_long_help(
            "Token: HYPHA_TOKEN, then `git credential fill` for the server's host (user git), \
             then the token `git hypha login` stored for the server. Tokens and presigned URLs \
             are never printed. HYPHA_READ_TIMEOUT_SECS bounds a stalled read. See also \
             git-hypha(1), gitremote-helpers(7).",
        )
}

#[cfg(test)]
mod tests {
    /// The committed pages in `man/` are what the CLI generates today: a changed flag or help
    /// text fails here until `cargo run --bin git-hypha -- manpage man` is run and committed.
    #[test]
    fn committed_manpages_are_current() {
        let fresh = tempfile::tempdir().expect("tempdir");
        super::write_manpages(fresh.path()).expect("render the pages");
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let names = |dir: &std::path::Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let stale = "man/ is out of date with the CLI: run `cargo run --bin git-hypha -- manpage \
                     man` and commit the result";
        assert_eq!(names(fresh.path()), names(&committed), "{stale}");
        // The wheel's data directory (pyproject.toml) links each page into share/man/man1.
        let wheel = committed.join("../wheel/data/share/man/man1");
        for name in names(fresh.path()) {
            let want = std::fs::read_to_string(fresh.path().join(&name)).expect("fresh page");
            let have = std::fs::read_to_string(committed.join(&name)).expect("committed page");
            assert!(want == have, "{name}: {stale}");
            let link = wheel.join(&name);
            assert_eq!(
                link.canonicalize().ok(),
                committed.join(&name).canonicalize().ok(),
                "{} must be a symlink to ../../../../../man/{name}, so that pip installs it",
                link.display()
            );
        }
    }
}
