//! Local repositories: `git init` (work tree or bare), clone, commit, and the reads tests compare
//! (rev-parse, for-each-ref, ls-remote) or require to be clean (fsck).

use std::path::{Path, PathBuf};

use super::{sorted_lines, Out, TestEnv};

impl TestEnv {
    /// `git init NAME` in the scratch directory; returns the work tree.
    pub fn init(&self, name: &str) -> PathBuf {
        self.init_at(&self.path(name))
    }

    pub fn init_at(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create work tree");
        self.git(dir, &["init", "-q"]);
        dir.to_path_buf()
    }

    /// `git init --bare` and the `file://` URL of the result: the oracle remote.
    pub fn init_bare(&self, dir: &Path) -> String {
        std::fs::create_dir_all(dir).expect("create bare repository");
        self.git(dir, &["init", "-q", "--bare"]);
        format!("file://{}", dir.display())
    }

    /// Clones `url` into `dir` (absolute) and checks the result with `git fsck --full`.
    pub fn clone(&self, url: &str, dir: &Path) -> Out {
        let parent = dir.parent().expect("clone target has a parent");
        std::fs::create_dir_all(parent).expect("create clone parent");
        let out = self.git(parent, &["clone", url, &dir.to_string_lossy()]);
        self.fsck(dir);
        out
    }

    /// Writes `name.txt` with content derived from `name`, commits it with message `name`, and
    /// returns the new `HEAD`.
    pub fn commit(&self, repo: &Path, name: &str) -> String {
        let file = repo.join(format!("{}.txt", name.replace('/', "-")));
        std::fs::write(&file, format!("content of {name}\n")).expect("write file");
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-q", "-m", name]);
        self.rev(repo, "HEAD")
    }

    /// `git rev-parse --verify REV`.
    pub fn rev(&self, repo: &Path, rev: &str) -> String {
        self.git(repo, &["rev-parse", "--verify", "--end-of-options", rev])
            .stdout
            .trim()
            .to_string()
    }

    /// `git for-each-ref` with ids, types and names of the given patterns.
    pub fn refs(&self, repo: &Path, patterns: &[&str]) -> String {
        let mut args = vec![
            "for-each-ref",
            "--format=%(objectname) %(objecttype) %(refname)",
        ];
        args.extend_from_slice(patterns);
        self.git(repo, &args).stdout
    }

    /// `git ls-remote URL` run from `dir`, lines sorted so transports that list in different
    /// orders compare equal.
    pub fn ls_remote(&self, dir: &Path, url: &str) -> String {
        sorted_lines(&self.git(dir, &["ls-remote", url]).stdout)
    }

    /// `git fsck --full` must pass and report nothing (dangling objects aside: a rebase leaves
    /// some legitimately).
    pub fn fsck(&self, repo: &Path) {
        let out = self.git(repo, &["fsck", "--full", "--no-dangling"]);
        assert!(
            out.stdout.trim().is_empty(),
            "git fsck reported problems\n{out}"
        );
    }
}
