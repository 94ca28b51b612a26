//! [`Out`], what a command did and the report a failing test prints, and the checks tests make
//! on output text ([`assert_line`], [`sorted_lines`]).

use std::fmt;
use std::path::PathBuf;

/// What a command did. `Display` is the full report a failing test prints.
pub struct Out {
    pub desc: String,
    pub dir: PathBuf,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.desc)?;
        writeln!(f, "dir:     {}", self.dir.display())?;
        match self.code {
            Some(code) => writeln!(f, "status:  exit {code}")?,
            None => writeln!(f, "status:  killed by a signal")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        writeln!(f, "--- stderr ---\n{}", self.stderr)?;
        writeln!(f, "--------------")
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Fails with `what` unless some line of `text` contains every one of `needles`.
#[track_caller]
pub fn assert_line(out: &Out, text: &str, needles: &[&str]) {
    let found = text
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)));
    assert!(
        found,
        "expected a line containing all of {needles:?}\n{out}"
    );
}
