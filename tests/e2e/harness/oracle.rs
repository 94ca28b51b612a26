//! The differential oracle: run one push scenario against a hypha repository and against a
//! `file://` bare repository, and require the same outcome.
//!
//! git decides most push outcomes itself (fast-forward checks, tag rules, leases, atomic
//! failure, dry-run) from what the transport lists, and the helper's status words feed git's
//! own reporting (docs/protocol.md §3). So the reference for "what should the user see" is git with
//! its native transport. Compared per recorded step: exit status, the `--porcelain` stdout
//! (the URL replaced by `<remote>`), and git's `hint:` lines; at the end, `git ls-remote` of
//! both remotes.

use super::{sorted_lines, Out, TestEnv};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One side of the comparison: where its remote is, and a private work area for its clones.
pub struct Side<'e> {
    pub env: &'e TestEnv,
    /// The remote URL (`hypha::http://...` or `file:///...`).
    pub url: String,
    /// `Some(alias)` on the hypha side, for checks of the server's storage.
    pub alias: Option<String>,
    /// On the file side, the bare repository.
    bare: Option<PathBuf>,
    work: PathBuf,
    steps: RefCell<Vec<(String, Out)>>,
}

impl<'e> Side<'e> {
    /// A directory of this side's work area (not created).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// `git init` of a work tree in this side's area with `origin` pointing at the remote.
    pub fn init(&self, name: &str) -> PathBuf {
        let dir = self.env.init_at(&self.dir(name));
        self.env.git(&dir, &["remote", "add", "origin", &self.url]);
        dir
    }

    /// `git clone` of the remote into this side's area, fsck-checked.
    pub fn clone(&self, name: &str) -> PathBuf {
        let dir = self.dir(name);
        self.env.clone(&self.url, &dir);
        dir
    }

    /// Runs `git push --porcelain ARGS` in `dir`, records it under `label`, and returns it
    /// whatever its status: the comparison decides what is right.
    pub fn push(&self, dir: &Path, label: &str, args: &[&str]) -> Out {
        let mut full = vec!["push", "--porcelain"];
        full.extend_from_slice(args);
        let out = self.env.cmd(dir, &full).run();
        self.steps
            .borrow_mut()
            .push((label.to_string(), self.env.cmd_copy(&out)));
        out
    }

    /// The remote's refs and objects as files: equal snapshots mean nothing was written.
    /// For the hypha side that is the stored `.git` (docs/design.md §3); private server state under
    /// `hypha-remote/` is left out.
    pub fn remote_snapshot(&self) -> Vec<(String, u64)> {
        let root = match (&self.alias, &self.bare) {
            (Some(alias), _) => self.env.stored_repo(alias),
            (None, Some(bare)) => bare.clone(),
            (None, None) => unreachable!("a side is hypha or file"),
        };
        let mut files = Vec::new();
        for sub in ["HEAD", "refs", "objects", "packed-refs"] {
            collect_files(&root, &root.join(sub), &mut files);
        }
        files.sort();
        files
    }

    fn normalize(&self, text: &str) -> String {
        text.replace(&self.url, "<remote>")
    }
}

fn collect_files(root: &Path, path: &Path, files: &mut Vec<(String, u64)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            collect_files(root, &entry.path(), files);
        }
    } else {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        files.push((rel, meta.len()));
    }
}

impl TestEnv {
    /// `Out` is not `Clone` on purpose (tests should not juggle copies); the oracle needs one.
    fn cmd_copy(&self, out: &Out) -> Out {
        Out {
            desc: out.desc.clone(),
            dir: out.dir.clone(),
            code: out.code,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        }
    }
}

/// Runs `scenario` once against a new hypha repository `alias` and once against a `file://`
/// bare repository, then fails unless every recorded push and the final `ls-remote` agree.
/// The file side runs first: if the scenario itself is wrong, it fails there, on plain git.
pub fn assert_same_as_file_remote(env: &TestEnv, alias: &str, scenario: impl Fn(&Side)) {
    let bare = env.path(&format!("oracle/{alias}.git"));
    let file = Side {
        env,
        url: env.init_bare(&bare),
        alias: None,
        bare: Some(bare),
        work: env.path(&format!("oracle/{alias}-work")),
        steps: RefCell::new(Vec::new()),
    };
    let hypha = Side {
        env,
        url: env.create(alias),
        alias: Some(alias.to_string()),
        bare: None,
        work: env.path(&format!("hypha/{alias}-work")),
        steps: RefCell::new(Vec::new()),
    };
    scenario(&file);
    scenario(&hypha);

    let mut report = String::new();
    let file_steps = file.steps.borrow();
    let hypha_steps = hypha.steps.borrow();
    assert_eq!(
        file_steps.len(),
        hypha_steps.len(),
        "the scenario recorded different step counts"
    );
    for ((label, f), (_, h)) in file_steps.iter().zip(hypha_steps.iter()) {
        let f_stdout = file.normalize(&f.stdout);
        let h_stdout = hypha.normalize(&h.stdout);
        let f_hints = hints(&f.stderr);
        let h_hints = hints(&h.stderr);
        if f.code != h.code || f_stdout != h_stdout || f_hints != h_hints {
            let _ = writeln!(
                report,
                "=== step {label:?} differs ===\n\
                 exit status: file {:?}, hypha {:?}\n\
                 porcelain (file):\n{f_stdout}porcelain (hypha):\n{h_stdout}\
                 hints (file):\n{f_hints}hints (hypha):\n{h_hints}\
                 --- file run ---\n{f}--- hypha run ---\n{h}",
                f.code, h.code
            );
        }
    }
    let scratch = env.mkdir("oracle-ls-remote");
    let f_refs = unpeeled(&env.ls_remote(&scratch, &file.url));
    let h_refs = unpeeled(&env.ls_remote(&scratch, &hypha.url));
    if f_refs != h_refs {
        let _ = writeln!(
            report,
            "=== final ls-remote differs ===\nfile:\n{f_refs}hypha:\n{h_refs}"
        );
    }
    if !report.is_empty() {
        panic!(
            "hypha remote behaves differently from a file:// remote\n{report}{}",
            env.server.log_tail()
        );
    }
}

/// Drops the `<tag>^{}` lines git's native transport adds for annotated tags: a remote helper
/// lists refs only (docs/protocol.md §3), and the ref values are what is compared.
fn unpeeled(refs: &str) -> String {
    refs.lines()
        .filter(|l| !l.ends_with("^{}"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn hints(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.starts_with("hint:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Convenience for scenarios: the porcelain status line for `dst`, if any.
pub fn porcelain_line<'a>(out: &'a Out, dst: &str) -> Option<&'a str> {
    out.stdout.lines().find(|l| {
        l.split('\t')
            .nth(1)
            .is_some_and(|r| r.ends_with(&format!(":{dst}")))
    })
}

/// Sorted `ls-remote` of this side's remote.
pub fn remote_refs(side: &Side) -> String {
    let dir = side.env.mkdir("ls-remote-cwd");
    sorted_lines(&side.env.git(&dir, &["ls-remote", &side.url]).stdout)
}
